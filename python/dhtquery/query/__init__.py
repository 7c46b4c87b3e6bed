"""The query layer: asyncio glue around a query core (Rust, or its
pure-Python twin), one loop timer, config, metrics, and the types both cores
speak. It knows nothing of sockets, the DHT or packages."""

from typing import TYPE_CHECKING

from .backend import (
    BACKENDS,
    ENV_VAR,
    backend_of,
    load_core,
    new_core,
    new_fair_share,
    new_peer_book,
    new_record_cache,
    new_replay_cache,
)
from .clock import Clock, SystemClock
from .config import QueryConfig
from .handle import QueryHandle, QueryOutcome, QueryResult
from .manager import QueryManager
from .metrics import QueryMetrics
from .timer import ExpiryTimer
from .types import (
    HEDGE,
    MAX_EXPECTED_PEERS,
    MAX_NOW,
    MAX_RESULTS_LIMIT,
    MAX_TIMEOUT,
    RTT_BAND,
    BatchStatus,
    CoreOutcome,
    Counters,
    Latency,
    LookupFailure,
    LookupStep,
    QueryState,
    Reason,
    ResultRecord,
    SubmitStatus,
)

if TYPE_CHECKING:
    # For annotations: both cores have this interface (the Rust one too).
    from ._core_py import FairShare as FairShare
    from ._core_py import PeerBook as PeerBook
    from ._core_py import QueryCore as QueryCore
    from ._core_py import QueryId as QueryId
    from ._core_py import RecordCache as RecordCache
    from ._core_py import ReplayCache as ReplayCache

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "HEDGE",
    "MAX_EXPECTED_PEERS",
    "MAX_NOW",
    "MAX_RESULTS_LIMIT",
    "MAX_TIMEOUT",
    "RTT_BAND",
    "BatchStatus",
    "Clock",
    "CoreOutcome",
    "Counters",
    "ExpiryTimer",
    "Latency",
    "LookupFailure",
    "LookupStep",
    "QueryConfig",
    "QueryHandle",
    "QueryManager",
    "QueryMetrics",
    "QueryOutcome",
    "QueryResult",
    "QueryState",
    "Reason",
    "ResultRecord",
    "SubmitStatus",
    "SystemClock",
    "backend_of",
    "load_core",
    "new_core",
    "new_fair_share",
    "new_peer_book",
    "new_record_cache",
    "new_replay_cache",
]

"""dhtquery: collect the results of Kademlia DHT queries asynchronously.

A query fans out to several peers; results stream back as they arrive,
duplicates are dropped, and the query ends at ``max_results``, when every
peer has answered, or at its deadline with partial results. The bookkeeping
runs in a Rust core (``dhtquery._core``) with a pure-Python twin as reference
and fallback (``DHTQUERY_BACKEND=python``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._backend import load_core
from .config import QueryConfig
from .errors import (
    BackendUnavailableError,
    DhtQueryError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    ManagerClosedError,
    NoRunningLoopError,
)
from .handle import QueryHandle, QueryOutcome, QueryResult
from .manager import QueryManager, SubmitStatus
from .metrics import QueryMetrics

if TYPE_CHECKING:
    from ._core_py import QueryId
else:
    # The default backend's QueryId; a manager's ids are of its own backend.
    QueryId = load_core()[1].QueryId

__version__ = "0.1.0"

__all__ = [
    # errors
    "BackendUnavailableError",
    "DhtQueryError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "ManagerClosedError",
    "NoRunningLoopError",
    # configuration and metrics
    "QueryConfig",
    # queries
    "QueryHandle",
    "QueryId",
    "QueryManager",
    "QueryMetrics",
    "QueryOutcome",
    "QueryResult",
    "SubmitStatus",
    "__version__",
]

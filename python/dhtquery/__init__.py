"""dhtquery: collect the results of Kademlia DHT queries asynchronously.

A query fans out to several peers; results stream back as they arrive,
duplicates are dropped, and the query ends at ``max_results``, when every
peer has answered, or at its deadline with partial results. The bookkeeping
runs in a Rust core (``dhtquery._core``) with a pure-Python twin as reference
and fallback (``DHTQUERY_BACKEND=python``).

The layers, each importing only those below it (``docs/architecture.md``):
``cli`` | ``testing`` | ``bench`` > ``registry`` > ``dht`` > ``query`` > ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .dht import DhtNode, Publisher
from .errors import (
    BackendUnavailableError,
    DhtQueryError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    KeyFileError,
    ManagerClosedError,
    NoRunningLoopError,
    RecordError,
    SchemaError,
    StorageFull,
    TrustError,
    WireError,
)
from .query import (
    QueryConfig,
    QueryHandle,
    QueryManager,
    QueryMetrics,
    QueryOutcome,
    QueryResult,
    Reason,
    SubmitStatus,
    new_core,
)
from .registry import P2PRegistry, Package, PackageId, Query

if TYPE_CHECKING:
    from .query import QueryId


def _version() -> str:
    """The installed distribution's version (maturin takes it from Cargo.toml, the
    one place it is written); in a source tree with no metadata, Cargo.toml's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dhtquery")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        cargo = Path(__file__).resolve().parents[2] / "Cargo.toml"
        text = cargo.read_text() if cargo.is_file() else ""
        found = re.search(r'(?m)^version = "([^"]+)"', text)
        return found.group(1) if found else "0+unknown"


__version__ = _version()

__all__ = [
    # errors
    "BackendUnavailableError",
    # the DHT and the marketplace
    "DhtNode",
    "DhtQueryError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "KeyFileError",
    "ManagerClosedError",
    "NoRunningLoopError",
    "P2PRegistry",
    "Package",
    "PackageId",
    "Publisher",
    "Query",
    # queries
    "QueryConfig",
    "QueryHandle",
    "QueryId",
    "QueryManager",
    "QueryMetrics",
    "QueryOutcome",
    "QueryResult",
    "Reason",
    "RecordError",
    "SchemaError",
    "StorageFull",
    "SubmitStatus",
    "TrustError",
    "WireError",
    "__version__",
    "new_core",
]


def __getattr__(name: str) -> Any:
    # The default backend's QueryId, chosen on first use rather than at
    # import (a manager's ids are of its own core's backend).
    if name == "QueryId":
        from .query import load_core

        return load_core()[1].QueryId
    raise AttributeError(f"module 'dhtquery' has no attribute {name!r}")

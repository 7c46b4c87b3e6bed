"""Which query core runs: the one place that decides.

``auto`` (the default) reads ``DHTQUERY_BACKEND`` (``rust``, ``python`` or
``auto``); with no preference it takes the compiled Rust core and falls back
to the pure-Python twin, with a logged warning, when the extension cannot be
imported. Asking for ``rust`` explicitly never falls back: it raises.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from ..errors import BackendUnavailableError, InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._core_py import FairShare, PeerBook, QueryCore, RecordCache, ReplayCache

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "backend_of",
    "load_core",
    "new_core",
    "new_fair_share",
    "new_peer_book",
    "new_record_cache",
    "new_replay_cache",
]

ENV_VAR: Final = "DHTQUERY_BACKEND"
BACKENDS: Final = ("auto", "rust", "python")

_log = logging.getLogger("dhtquery")


def _import_rust() -> ModuleType:
    # import_module, not `from . import _core`: while the package is still
    # initialising, the latter blames a "circular import" for a missing file.
    return importlib.import_module("dhtquery._core")


def _import_python() -> ModuleType:
    return importlib.import_module("dhtquery.query._core_py")


def load_core(backend: str = "auto") -> tuple[str, ModuleType]:
    """Return ``(name, module)`` of the core to use; ``name`` is ``"rust"`` or
    ``"python"`` and ``module`` has ``QueryCore`` and ``QueryId``."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    source = "backend"
    if backend == "auto":
        wanted = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if wanted not in BACKENDS:
            raise InvalidArgumentError(
                f"{ENV_VAR} must be one of {BACKENDS}, got {os.environ[ENV_VAR]!r}"
            )
        backend, source = wanted, ENV_VAR
    if backend == "python":
        return "python", _import_python()
    try:
        return "rust", _import_rust()
    except ImportError as exc:
        if backend == "rust":
            raise BackendUnavailableError(
                f"{source}='rust' asks for the compiled core, which cannot be imported: {exc}"
            ) from exc
        _log.warning("dhtquery: Rust core unavailable (%s); using the pure-Python core", exc)
        return "python", _import_python()


def new_core(backend: str = "auto", grace: float = 5.0) -> QueryCore:
    """A fresh ``QueryCore`` of the chosen backend (see :func:`load_core`);
    ``grace``: seconds a finished id is remembered. This is what gets
    injected: ``QueryManager(core=new_core("python"))``."""
    core: QueryCore = load_core(backend)[1].QueryCore(grace)
    return core


def new_peer_book(backend: str = "auto", **bounds: Any) -> PeerBook:
    """A fresh ``PeerBook`` (every peer's RTT estimator and reputation
    record) of the chosen backend; ``bounds``: its keyword arguments
    (``max_rto``, ``peers_kept``, ``max_peers`` ...)."""
    book: PeerBook = load_core(backend)[1].PeerBook(**bounds)
    return book


def new_record_cache(kept: int, wall: Callable[[], float], backend: str = "auto") -> RecordCache:
    """A fresh ``RecordCache`` (the signed records a node verified, at most
    ``kept``; ``wall``: the clock their expiry is read against) of the
    chosen backend."""
    cache: RecordCache = load_core(backend)[1].RecordCache(kept, wall)
    return cache


def new_replay_cache(max_age: float, backend: str = "auto", **bounds: int) -> ReplayCache:
    """A fresh ``ReplayCache`` (the answers sent to recent requests, for a
    resend; ``bounds``: ``max_count``, ``max_bytes``) of the chosen
    backend: the one its ``DatagramEngine`` serves with."""
    cache: ReplayCache = load_core(backend)[1].ReplayCache(max_age, **bounds)
    return cache


def new_fair_share(
    queued: Callable[[], int], mark: int, backend: str = "auto", **settings: Any
) -> FairShare:
    """A fresh ``FairShare`` (which requests an overloaded node sheds:
    ``dhtquery.dht.fairness``; ``queued()`` the bytes in its receive queue,
    overloaded past ``mark``; ``settings``: ``window``, ``factor``,
    ``floor``, ``check_every``) of the chosen backend: the one its
    ``DatagramEngine`` admits requests with, no Python call."""
    fair: FairShare = load_core(backend)[1].FairShare(queued, mark, **settings)
    return fair


def backend_of(core: object) -> str:
    """``"rust"`` or ``"python"``: which implementation ``core`` is."""
    return "rust" if type(core).__module__ == "dhtquery._core" else "python"

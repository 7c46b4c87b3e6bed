"""QueryManager: the asyncio glue between a query core and its callers.

All bookkeeping (dedup, buffers, deadlines, counters) lives in the core; this
module only turns the core's status codes into wake-ups and outcomes. It keeps
a single ``loop.call_at`` timer, armed for the core's next deadline: no timer
and no Task per query.
"""

from __future__ import annotations

import asyncio
from asyncio import _get_running_loop
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InvalidArgumentTypeError, ManagerClosedError, NoRunningLoopError
from .backend import backend_of, new_core
from .clock import Clock, SystemClock
from .config import QueryConfig
from .handle import QueryHandle, QueryOutcome
from .metrics import QueryMetrics
from .timer import ExpiryTimer
from .types import BatchStatus, CoreOutcome, Reason, ResultRecord, SubmitStatus

if TYPE_CHECKING:
    # Type checkers see the Python twin; the Rust core has the same interface.
    from ._core_py import QueryCore, QueryId

__all__ = ["QueryManager"]

_NEW, _COMPLETED = SubmitStatus.NEW, SubmitStatus.COMPLETED
HandleT = TypeVar("HandleT", bound=QueryHandle)


class QueryManager:
    """Starts queries, routes results into them and ends them.

    ``core`` is the query core to run on (``new_core("rust" | "python")``;
    default: ``new_core()``, which reads ``DHTQUERY_BACKEND``). ``clock`` is
    the time it runs on (default: the event loop's monotonic clock); its
    ``timer`` may serve other cores of the same node. The manager binds to the
    event loop running when it is first used, and must then be used from
    that loop's thread.
    """

    def __init__(
        self,
        config: QueryConfig | None = None,
        *,
        core: QueryCore | None = None,
        clock: Clock | None = None,
    ) -> None:
        if config is None:
            config = QueryConfig()
        elif not isinstance(config, QueryConfig):
            raise InvalidArgumentTypeError(
                f"config must be a QueryConfig, got {type(config).__name__}"
            )
        self.config = config
        self._core: QueryCore = new_core() if core is None else core
        self._grace = self._core.grace
        self._clock: Clock = SystemClock() if clock is None else clock
        self._now = self._clock.now
        self._timer = ExpiryTimer(self._clock)
        self._timer.watch(self._core, self._on_expired)
        self._handles: dict[QueryId, QueryHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[QueryOutcome], object]] = []
        self._closed = False
        self._born = self._now()

    def __repr__(self) -> str:
        return f"<QueryManager backend={self.backend} in_flight={self.in_flight}>"

    # -- starting -----------------------------------------------------

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise ManagerClosedError("this QueryManager is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise NoRunningLoopError(
                "QueryManager.start() needs a running event loop: call it from a coroutine "
                "(asyncio.run(...) or uvloop.run(...))"
            ) from None
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise NoRunningLoopError(
                "this QueryManager belongs to another event loop; make one manager per loop"
            )
        return loop

    def start(
        self,
        *,
        expected_peers: int | None = None,
        timeout: float | None = None,
        max_results: int | None = None,
    ) -> QueryHandle:
        """Register a query and return its handle. Defaults come from the
        config: ``timeout=default_timeout``, ``max_results``, and
        ``expected_peers=fan_out`` (0 means: the caller ends it, or the
        deadline does)."""
        return self.start_as(
            QueryHandle, expected_peers=expected_peers, timeout=timeout, max_results=max_results
        )

    def start_as(
        self,
        handle_type: type[HandleT],
        *,
        expected_peers: int | None = None,
        timeout: float | None = None,
        max_results: int | None = None,
    ) -> HandleT:
        """``start``, with a handle of ``handle_type`` (a subclass of
        :class:`QueryHandle` made as ``handle_type(manager, query_id,
        loop)``), for a layer above that tells more about its queries (the
        DHT's lookups their request counts)."""
        # (_bind_loop's checks, its frame left out while the loop is the
        # bound one: callgrind, -0.3 k instructions a start)
        loop = _get_running_loop()
        if loop is not self._loop or loop is None or self._closed:
            loop = self._bind_loop()
        config = self.config
        if timeout is None:
            timeout = config.default_timeout
        now = self._now()
        query_id = self._core.register(
            timeout,
            config.max_results if max_results is None else max_results,
            config.fan_out if expected_peers is None else expected_peers,
            now,
        )
        handle = handle_type(self, query_id, loop)
        self._handles[query_id] = handle
        # (mostly armed sooner already: arm() is called only when it would
        # do something)
        when = now + timeout
        timer = self._timer
        if when < timer.armed_until:
            timer.arm(when)
        return handle

    @asynccontextmanager
    async def query(
        self,
        *,
        expected_peers: int | None = None,
        timeout: float | None = None,
        max_results: int | None = None,
    ) -> AsyncIterator[QueryHandle]:
        """``async with mgr.query(...) as handle``: the query is cancelled on
        the way out unless it has ended."""
        handle = self.start(expected_peers=expected_peers, timeout=timeout, max_results=max_results)
        try:
            yield handle
        finally:
            if not handle.done():
                self.cancel(handle.id)

    # -- feeding ------------------------------------------------------

    def submit(
        self, query_id: QueryId, peer: Hashable, key: str | bytes, item: object
    ) -> SubmitStatus:
        """Offer one result from ``peer``, deduplicated by ``key``."""
        code = self._core.offer(query_id, peer, key, item, self._now())
        if code == _NEW:
            self._handles[query_id].wake()
        elif code == _COMPLETED:
            self._end(query_id, None)
        return code

    def submit_many(
        self, query_id: QueryId, peer: Hashable, entries: Sequence[tuple[str | bytes, object]]
    ) -> BatchStatus:
        """Offer one peer response of ``(key, item)`` pairs; returns (status,
        accepted, duplicates)."""
        batch = self._core.offer_many(query_id, peer, entries, self._now())
        code = batch[0]
        if code == _NEW:
            if batch[1]:
                self._handles[query_id].wake()
        elif code == _COMPLETED:
            self._end(query_id, None)
        return batch

    def peer_finished(self, query_id: QueryId, peer: Hashable, ok: bool = True) -> SubmitStatus:
        """Say that ``peer`` has sent all it will (``ok``) or failed."""
        code = self._core.peer_done(query_id, peer, ok)
        if code == _COMPLETED:
            self._end(query_id, None)
        return code

    def submit_answer(
        self, query_id: QueryId, peer: Hashable, entries: Sequence[tuple[str | bytes, object]]
    ) -> bool:
        """One peer's whole answer in one call: its results (``entries``,
        maybe none) offered as ``submit_many`` does, then the peer done
        (ok) as ``peer_finished`` does. Returns whether the query has ended
        (by this answer, or before)."""
        core = self._core
        if entries:
            # (submit_many's handling of the batch, written out again: this
            # runs once per answer of every lookup, and a shared helper would
            # put a Python call back on that path)
            batch = core.offer_many(query_id, peer, entries, self._now())
            code = batch[0]
            if code == _NEW:
                if batch[1]:
                    self._handles[query_id].wake()
            elif code == _COMPLETED:
                self._end(query_id, None)
        if core.peer_done(query_id, peer, True) == _COMPLETED:
            self._end(query_id, None)
        # (a query's handle leaves once it has ended)
        return query_id not in self._handles

    # -- ending -------------------------------------------------------

    def finish(self, query_id: QueryId, reason: Reason | str | None = None) -> bool:
        """End a query now with what it has: ``reason`` ``all_peers`` or
        ``adaptive`` (None: the core's own, if the query is complete).
        False if it had already ended."""
        now = self._now()
        outcome = self._core.finish(query_id, now, reason)
        if outcome is None:
            return False
        # (_ended written out: once per lookup, its frame cost more than
        # the lines: callgrind, -0.5 k instructions a finish)
        result = self._handles.pop(query_id).resolve(outcome)
        for listener in self._listeners:
            listener(result)
        when = now + self._grace
        timer = self._timer
        if when < timer.armed_until:
            timer.arm(when)
        return True

    # (the same: once per lookup, finish's frame calling _end's cost more
    # than the alias)
    _end = finish

    def cancel(self, query_id: QueryId) -> bool:
        """Cancel a query: its entry is freed at once and whoever awaits or
        iterates it wakes with reason ``cancelled``. False if it had ended."""
        now = self._now()
        outcome = self._core.cancel(query_id, now)
        if outcome is None:
            return False
        self._ended(outcome, now)
        return True

    def add_listener(self, listener: Callable[[QueryOutcome], object]) -> None:
        """Call ``listener(outcome)`` for every query that ends from now on
        (for exporters and logs; it runs on the loop and must be quick)."""
        self._listeners.append(listener)

    def _resolve(self, outcome: CoreOutcome) -> None:
        result = self._handles.pop(outcome.query_id).resolve(outcome)
        for listener in self._listeners:
            listener(result)

    def _ended(self, outcome: CoreOutcome, now: float) -> None:
        # (_resolve written out: once per query, its frame cost more than
        # the three lines)
        result = self._handles.pop(outcome.query_id).resolve(outcome)
        for listener in self._listeners:
            listener(result)
        # The id's tombstone must be forgotten on time even when the timer
        # is armed for a later deadline. (Mostly it is armed sooner: arm()
        # is called only when it would do something.)
        when = now + self._grace
        timer = self._timer
        if when < timer.armed_until:
            timer.arm(when)

    def drain(self, query_id: QueryId) -> list[ResultRecord]:
        """Take the results the core holds for a query and has not handed
        out yet (a handle's stream does this); [] once it has ended."""
        return self._core.drain(query_id)

    def _on_expired(self, outcome: CoreOutcome) -> None:
        self._resolve(outcome)

    # -- state --------------------------------------------------------

    @property
    def core(self) -> QueryCore:
        """The query core this manager runs on. A layer above may offer a
        query's results into it itself (the DHT's lookups do, natively:
        ``LookupAnswers``); it then tells the manager what ``submit_many``
        and ``peer_finished`` act on: the query's handle woken
        (``handle.wake()``) when a batch is NEW with results accepted, and
        ``finish(query_id)`` when the core says COMPLETED."""
        return self._core

    @property
    def backend(self) -> str:
        """Which core runs: ``"rust"`` or ``"python"``."""
        return backend_of(self._core)

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def timer(self) -> ExpiryTimer:
        """The manager's one loop timer; another core of the same node (an
        RPC table, say) may ``watch`` it instead of arming its own."""
        return self._timer

    @property
    def in_flight(self) -> int:
        return self._core.in_flight

    @property
    def metrics(self) -> QueryMetrics:
        counters = self._core.counters()
        latency = self._core.latency()
        return QueryMetrics(
            *counters,
            latency_count=latency[0],
            latency_p50=latency[1],
            latency_p95=latency[2],
            latency_p99=latency[3],
            latency_max=latency[4],
            uptime=self._now() - self._born,
        )

    def debug_state(self) -> dict[str, int]:
        """Sizes of the core's tables, to check that nothing is left behind."""
        core = self._core
        return {
            "in_flight": core.in_flight,
            "tombstones": core.tombstones,
            "timers": core.timers,
            "handles": len(self._handles),
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Cancel every query in flight and stop the timer. Idempotent."""
        if self._closed:
            return
        for query_id in list(self._handles):
            self.cancel(query_id)
        self._closed = True
        self._timer.stop()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> QueryManager:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

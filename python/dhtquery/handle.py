"""QueryHandle and what it hands out: QueryResult and QueryOutcome.

A handle is two things: an awaitable of the whole answer (``await handle``
gives a :class:`QueryOutcome`, never raising on timeout) and an async
iterator of the results as they arrive (``async for result in handle``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ._core_py import QueryId

if TYPE_CHECKING:
    from .manager import QueryManager

__all__ = ["QueryHandle", "QueryOutcome", "QueryResult"]


class QueryResult(NamedTuple):
    """One unique result: what a peer sent, under which dedup key, and how
    long after the query started it arrived (seconds)."""

    item: Any
    peer: Hashable
    key: str | bytes
    response_time: float


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """How a query ended. ``reason`` is one of ``max_results``, ``all_peers``,
    ``adaptive``, ``timeout`` or ``cancelled``; ``results`` are every unique
    result in arrival order (partial ones too, on timeout)."""

    query_id: QueryId
    reason: str
    results: tuple[QueryResult, ...]
    duration: float
    peers_ok: int
    peers_failed: int
    duplicates: int

    @property
    def timed_out(self) -> bool:
        return self.reason == "timeout"

    @property
    def cancelled(self) -> bool:
        return self.reason == "cancelled"

    @property
    def items(self) -> list[Any]:
        """The results' items alone, in arrival order."""
        return [result.item for result in self.results]


def _as_result(record: tuple[object, object, str | bytes, float]) -> QueryResult:
    return tuple.__new__(QueryResult, record)


class QueryHandle:
    """A running query. Made by :meth:`QueryManager.start`; see module doc."""

    __slots__ = ("_future", "_manager", "_results", "_waiters", "id")

    def __init__(self, manager: QueryManager, query_id: QueryId, loop: asyncio.AbstractEventLoop):
        self.id = query_id
        self._manager = manager
        self._future: asyncio.Future[QueryOutcome] = loop.create_future()
        # Results taken out of the core so far; iterators keep their own index.
        self._results: list[QueryResult] = []
        self._waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        state = self._future.result().reason if self._future.done() else "running"
        return f"<QueryHandle {self.id} {state}, {len(self._results)} results>"

    # -- the whole answer ---------------------------------------------

    def __await__(self) -> Generator[Any, None, QueryOutcome]:
        return self._future.__await__()

    def done(self) -> bool:
        return self._future.done()

    @property
    def outcome(self) -> QueryOutcome | None:
        """The outcome once the query has ended, else None."""
        return self._future.result() if self._future.done() else None

    def cancel(self) -> bool:
        """End the query now (reason ``cancelled``); False if it had ended."""
        return self._manager.cancel(self.id)

    def add_done_callback(self, callback: Callable[[QueryOutcome], object]) -> None:
        """Call ``callback(outcome)`` from the loop once the query has ended
        (soon, if it already has): for transports that chain queries
        without a Task each."""
        self._future.add_done_callback(lambda future: callback(future.result()))

    # -- the stream ---------------------------------------------------

    def __aiter__(self) -> AsyncIterator[QueryResult]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[QueryResult]:
        index = 0
        while True:
            if index < len(self._results):
                result = self._results[index]
                index += 1
                yield result
                continue
            if not self._future.done():
                self._pull()
                if index < len(self._results):
                    continue
                waiter = self._future.get_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                continue
            return

    # -- called by the manager ----------------------------------------

    def _pull(self) -> None:
        records = self._manager._drain(self.id)
        if records:
            self._results.extend(map(_as_result, records))

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _resolve(
        self,
        outcome: tuple[
            QueryId, str, list[tuple[object, object, str | bytes, float]], float, int, int, int
        ],
    ) -> None:
        query_id, reason, remaining, duration, peers_ok, peers_failed, duplicates = outcome
        if remaining:
            self._results.extend(map(_as_result, remaining))
        if not self._future.done():
            self._future.set_result(
                QueryOutcome(
                    query_id=query_id,
                    reason=reason,
                    results=tuple(self._results),
                    duration=duration,
                    peers_ok=peers_ok,
                    peers_failed=peers_failed,
                    duplicates=duplicates,
                )
            )
        self._wake()

"""A clock that moves only when told to, for tests of deadlines, grace
periods, TTLs, RTOs and reputation decay that would otherwise sleep."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from ..errors import DhtQueryError, InvalidArgumentError

__all__ = ["FakeClock"]


class _Call:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A :class:`dhtquery.query.Clock` whose time is ``start`` until
    :meth:`advance` moves it; callbacks due by then run inside ``advance``,
    in order of their time (then of scheduling), each seeing ``now()`` at
    its own time."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._calls: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        """The epoch time, moving with ``now`` (from ``wall_start``)."""
        return self._now + self._wall_offset

    def call_at(self, when: float, callback: Callable[[], object]) -> _Call:
        call = _Call(when, callback)
        heapq.heappush(self._calls, (when, next(self._order), call))
        return call

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not cancelled."""
        return sum(1 for _, _, call in self._calls if not call.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running what falls due on the way
        (callbacks they schedule within the step run too; bounded)."""
        if seconds < 0:
            raise InvalidArgumentError(f"seconds must be >= 0, got {seconds!r}")
        target = self._now + seconds
        calls = self._calls
        for _ in range(1_000_000):
            if not calls or calls[0][0] > target:
                break
            when, _, call = heapq.heappop(calls)
            if call.cancelled:
                continue
            self._now = max(self._now, when)
            call.callback()
        else:
            raise DhtQueryError("FakeClock.advance: more than a million callbacks in one step")
        self._now = target

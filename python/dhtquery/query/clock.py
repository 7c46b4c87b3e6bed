"""The one clock a node (or a bare QueryManager) runs on.

Everything timed in dhtquery reads the same clock: query deadlines and
durations, RPC round trips and RTOs, grace periods, record TTLs, reputation's
"last seen". It is injected, so a test drives time by hand
(:class:`dhtquery.testing.FakeClock`) instead of sleeping through a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Cancellable", "Clock", "SystemClock"]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds, and a way to be called back at one of them."""

    def now(self) -> float:
        """Seconds on a monotonic clock (never goes back)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch: only for what outlives the process (a
        record's expiry on disk); everything in memory is timed by ``now``."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        """Call ``callback()`` from the running event loop once ``now() >=
        when``; the result's ``cancel()`` calls it off."""
        ...


class SystemClock:
    """The event loop's own clock, read fresh.

    asyncio's and uvloop's ``loop.time()`` both count CLOCK_MONOTONIC, so a
    ``time.monotonic()`` reading can be handed to ``loop.call_at``. It is
    read with ``time.monotonic`` rather than ``loop.time()``: uvloop's is cut
    to whole milliseconds and cached per loop iteration, which would make
    every sub-millisecond query last 0 ms and every RTT sample 0.
    """

    __slots__ = ("now", "wall")

    def __init__(self) -> None:
        # An instance attribute: ``clock.now()`` is then a direct call of
        # the C function, read on every offer and every RPC.
        self.now: Callable[[], float] = time.monotonic
        self.wall: Callable[[], float] = time.time

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_at(when, callback)

    def __repr__(self) -> str:
        return "SystemClock()"

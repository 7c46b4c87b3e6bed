"""One loop timer for every query core of a node.

Each core's expiry wheel knows its deadlines; this arms a single
``clock.call_at`` for the earliest of them and, when it fires, hands what
expired in each core to that core's callback and re-arms for the next. No
timer per query, and one per node however many cores it watches.

It is also the node's measure of its own loop's lag: it fires about once
per millisecond tick while requests are out (their deadlines and their
tombstones' ends keep it armed), so how late it fires is how long the loop
was busy elsewhere. ``lag`` sums that lateness; a request table grants it to
requests before judging them (the local loop's delay is not the peer's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .clock import Cancellable, Clock

__all__ = ["LAG_TOLERANCE", "ExpiryTimer"]

#: Lateness of a firing up to this is the loop's ordinary jitter (uvloop's
#: timers have a 1 ms resolution), not lag: not counted in ``lag``.
LAG_TOLERANCE = 0.002


class ExpiryTimer:
    __slots__ = ("_clock", "_handle", "_stopped", "_watched", "armed_until", "lag")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watched: list[tuple[Any, Callable[[Any], None]]] = []
        self._handle: Cancellable | None = None
        self._stopped = False
        #: when the timer fires (inf while it is not armed): a caller on a
        #: hot path arming for a later time may skip calling ``arm``
        self.armed_until = math.inf
        #: seconds this timer fired late beyond LAG_TOLERANCE, summed over
        #: its firings: the time the loop spent unable to run it (a
        #: synchronous stall, or a backlog of callbacks). Only grows.
        self.lag = 0.0

    def watch(self, core: Any, on_expired: Callable[[Any], None]) -> None:
        """Expire ``core``'s queries when their time comes, handing each
        outcome to ``on_expired``."""
        self._watched.append((core, on_expired))
        upcoming = core.next_deadline()
        if upcoming is not None:
            self.arm(upcoming)

    def unwatch(self, core: Any) -> None:
        """Stop expiring ``core`` (what it holds is the caller's to end)."""
        self._watched = [entry for entry in self._watched if entry[0] is not core]

    def arm(self, when: float) -> None:
        """Make sure the timer fires no later than ``when``."""
        if when >= self.armed_until or self._stopped:
            return
        if self._handle is not None:
            self._handle.cancel()
        self.armed_until = when
        self._handle = self._clock.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = self._clock.now()
        late = now - self.armed_until
        if late > LAG_TOLERANCE:
            self.lag += late - LAG_TOLERANCE
        self.armed_until = math.inf
        upcoming = math.inf
        for core, on_expired in self._watched:
            for outcome in core.expire(now):
                on_expired(outcome)
            # Never earlier than the last tick expire() processed, so it
            # always makes progress even if the loop fires a little early.
            deadline = core.next_deadline()
            if deadline is not None and deadline < upcoming:
                upcoming = deadline
        if upcoming != math.inf:
            self.arm(upcoming)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.armed_until = math.inf

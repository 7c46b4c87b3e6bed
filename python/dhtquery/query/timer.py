"""One loop timer for every query core of a node.

Each core's expiry wheel knows its deadlines; this arms a single
``clock.call_at`` for the earliest of them and, when it fires, hands what
expired in each core to that core's callback and re-arms for the next. No
timer per query, and one per node however many cores it watches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .clock import Cancellable, Clock

__all__ = ["ExpiryTimer"]


class ExpiryTimer:
    __slots__ = ("_clock", "_handle", "_stopped", "_watched", "armed_until")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watched: list[tuple[Any, Callable[[Any], None]]] = []
        self._handle: Cancellable | None = None
        self._stopped = False
        #: when the timer fires (inf while it is not armed): a caller on a
        #: hot path arming for a later time may skip calling ``arm``
        self.armed_until = math.inf

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
        self.armed_until = math.inf
        now = self._clock.now()
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

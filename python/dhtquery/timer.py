"""One loop timer for a whole query core, and the clock queries are timed by.

The core's expiry wheel knows every deadline; this arms a single
``loop.call_at`` for the earliest one and, when it fires, hands what expired
to a callback and re-arms for the next. No timer per query.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ExpiryTimer", "now"]

#: The time queries are measured in. It is the event loop's own clock
#: (asyncio's loop.time() is time.monotonic()), read fresh: uvloop's
#: loop.time() is the same monotonic clock cut to whole milliseconds and
#: cached per loop iteration, which would make every sub-millisecond query
#: last 0 ms and every RTT sample 0.
now = time.monotonic


class ExpiryTimer:
    __slots__ = ("_core", "_handle", "_loop", "_on_expired", "_stopped", "armed_until")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        core: Any,
        on_expired: Callable[[Any], None],
    ) -> None:
        self._loop = loop
        self._core = core
        self._on_expired = on_expired
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        #: when the timer fires (inf while it is not armed): a caller on a
        #: hot path arming for a later time may skip calling ``arm``
        self.armed_until = math.inf

    def arm(self, when: float) -> None:
        """Make sure the timer fires no later than ``when``."""
        if when >= self.armed_until or self._stopped:
            return
        if self._handle is not None:
            self._handle.cancel()
        self.armed_until = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.armed_until = math.inf
        on_expired = self._on_expired
        for outcome in self._core.expire(now()):
            on_expired(outcome)
        # Never earlier than the last tick expire() processed, so it always
        # makes progress even if the loop fires a timer a little early.
        upcoming = self._core.next_deadline()
        if upcoming is not None:
            self.arm(upcoming)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.armed_until = math.inf

"""A fair share of an overloaded node for each source of requests.

A node reads its requests from one kernel socket queue, first in first out.
When one source sends more than the node can serve, its requests fill that
queue and everybody else's wait behind them: in ``dhtquery bench registry``
a naive client asking all 20 nodes 500 times a second left the nodes' queues
full for 1-2.5 s after it stopped, and a well-behaved client's searches in
that time heard from no peer within their 1 s deadline.

While this node is overloaded, a request from a *heavy* source is shed
(counted as ``fair_share``) instead of served. Overloaded: the socket's
receive queue holds more than ``OVERLOAD_FRACTION`` of the buffer and more
than ``OVERLOAD_MIN_BYTES`` (hundreds of requests behind; with a smaller
buffer, as Linux's default of ~200 KiB, the kernel's own drops bound the
queue and nothing is shed here). Heavy: the source sent more than ``FLOOR``
and more than ``FACTOR`` times an equal share (the window over the number
of sources in it) of the last ``WINDOW`` requests. With two sources, one
at 99 % and one at 1 %, the first is heavy (1.5 x 50 % = 75 %); two at 50 %
each are not; one source alone never is (shedding it helps nobody).
Dropping a request costs ~1 us against tens of us to serve it, so the
queue drains and the other sources' requests are reached sooner; once it
has drained, the heavy source is served again. The window counts requests
offered, shed or not, so a source that keeps flooding stays heavy. A
source is an address (IP and port): a sender can split its flood over many
ports, and then the barrage defences apply (see the protocol); this one is
for the one greedy client.

The count is kept for every request (a deque append and a Counter update,
~0.2 us); whether the node is overloaded is read from the socket once every
``CHECK_EVERY`` requests (SO_MEMINFO, ~0.8 us), and again before a request
is shed.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Final

from ..errors import InvalidArgumentError

__all__ = [
    "CHECK_EVERY",
    "FACTOR",
    "FLOOR",
    "OVERLOAD_FRACTION",
    "OVERLOAD_MIN_BYTES",
    "WINDOW",
    "FairShare",
]

#: Requests remembered: the window whose shares are compared.
WINDOW: Final = 1024
#: A source is heavy past this many equal shares of the window (below 2,
#: so that of two sources the one sending almost everything is heavy).
FACTOR: Final = 1.5
#: A source with at most this many requests in the window is never shed.
FLOOR: Final = 64
#: Overloaded: the receive queue holds more than this fraction of the buffer
#: (SO_RCVBUF: the kernel's figure, twice what was asked) and more than
#: OVERLOAD_MIN_BYTES (a datagram of a small request takes ~800 bytes).
OVERLOAD_FRACTION: Final = 0.125
OVERLOAD_MIN_BYTES: Final = 512 * 1024
#: Requests between two looks at the receive queue.
CHECK_EVERY: Final = 32


class FairShare:
    """Which requests an overloaded node sheds (see the module's doc).

    ``queued()`` gives the bytes waiting in the node's receive queue; it is
    read once every ``check_every`` calls of ``admit`` (and before a shed).
    The node is overloaded past ``mark`` bytes. Requests are counted only
    while the queue is past half the mark (*warm*): a node that keeps up
    pays one comparison a request (~0.05 us against ~0.45 us counting), and
    a queue on its way to the mark fills the window first (1,024 requests
    arrive within ms when they come faster than they are served)."""

    __slots__ = (
        "_check_every",
        "_counts",
        "_factor",
        "_floor",
        "_mark",
        "_queued",
        "_recent",
        "_since_check",
        "_under_load",
        "_warm",
        "_window",
        "shed",
    )

    def __init__(
        self,
        queued: Callable[[], int],
        mark: int,
        *,
        window: int = WINDOW,
        factor: float = FACTOR,
        floor: int = FLOOR,
        check_every: int = CHECK_EVERY,
    ) -> None:
        if window < 1 or check_every < 1 or factor <= 0 or floor < 0 or mark < 0:
            raise InvalidArgumentError(
                f"window ({window}) and check_every ({check_every}) must be >= 1, "
                f"factor ({factor}) > 0, floor ({floor}) and mark ({mark}) >= 0"
            )
        self._queued = queued
        self._mark = mark
        self._recent: deque[Hashable] = deque()
        self._counts: Counter[Hashable] = Counter()
        self._factor = factor
        self._floor = floor
        self._check_every = check_every
        self._since_check = check_every  # look at the first request
        self._warm = False
        self._under_load = False
        #: the window's length (a deque's maxlen would drop without telling)
        self._window = window
        #: requests shed so far
        self.shed = 0

    def admit(self, source: Hashable) -> bool:
        """Count a request from ``source``; False if it is to be shed."""
        self._since_check += 1
        if self._since_check >= self._check_every:
            self._look()
        if not self._warm:
            return True
        recent = self._recent
        counts = self._counts
        recent.append(source)
        counts[source] += 1
        if len(recent) > self._window:
            oldest = recent.popleft()
            left = counts[oldest] - 1
            if left:
                counts[oldest] = left
            else:
                del counts[oldest]
        if not self._under_load:
            return True
        sent = counts[source]
        if sent <= self._floor or sent <= self._factor * len(recent) / len(counts):
            return True
        if self._since_check:
            # About to shed on a look up to check_every requests old: look
            # again, or a source would be refused after the queue drained.
            self._look()
            if not self._under_load:
                return True
        self.shed += 1
        return False

    def _look(self) -> None:
        self._since_check = 0
        queued = self._queued()
        self._under_load = queued > self._mark
        warm = 2 * queued > self._mark
        if self._warm and not warm:  # cooled down: the next warm-up counts afresh
            self._recent.clear()
            self._counts.clear()
        self._warm = warm

    @property
    def under_load(self) -> bool:
        """Whether the last look found the node overloaded."""
        return self._under_load

    def share(self, source: Hashable) -> float:
        """``source``'s fraction of the window's requests."""
        return self._counts.get(source, 0) / len(self._recent) if self._recent else 0.0

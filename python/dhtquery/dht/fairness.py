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

The count is kept for every request while the queue is warm (~0.13 us an
admit with the Rust core, ~1 us with the twin's deque and Counter); whether
the node is overloaded is read from the socket once every ``CHECK_EVERY``
requests (SO_MEMINFO, ~0.8 us), and again before a request is shed.

``FairShare`` is the query core's (Rust, or the pure-Python twin: the same
answers), so that the core's ``DatagramEngine`` admits a request it answers
without a Python call; this module's ``FairShare`` is the default core's,
and a node makes its own core's (``new_fair_share``). Its defaults are the
figures below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..query import load_core

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


if TYPE_CHECKING:
    from ..query import FairShare as FairShare


def __getattr__(name: str) -> Any:
    # (read when asked for, not at import: the default core is the one
    # DHTQUERY_BACKEND names when it is used)
    if name == "FairShare":
        return load_core()[1].FairShare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

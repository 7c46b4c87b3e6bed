"""Answers kept for resent requests: a request sent again with the same
message id (RFC 6298 retransmission, ours; or any rpcudp peer's resend) is
answered with the bytes sent the first time, not served again.

Why: a peer resends because our answer was late or lost; under load it is
late because this node is behind, and serving every copy again (a registry
``search`` sorts its catalog and packs up to 30 signed records) puts it
further behind. Measured in the registry bench on a loaded machine: 26 % of
the client's requests were resends. It also makes a resent request answered
at most once (CoAP's message deduplication, RFC 7252 4.5): a resent store
is not applied twice.

Bounded by count and bytes (oldest out first) and by age: a copy older
than ``max_age`` seconds is no longer a resend of ours (the RTO back-off
gives up well before) and is served afresh; such answers leave the cache
as the next one comes in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

__all__ = ["ReplayCache"]

#: Answers kept at most, and their bytes at most. (4096 and 4 MiB at first:
#: at 1,000 nodes in the scale bench that was ~400 KiB more per node, the
#: caches full of the join's answers, which nobody resends.)
DEFAULT_COUNT: Final = 1024
DEFAULT_BYTES: Final = 1024 * 1024


class ReplayCache:
    """(address, message id) -> the datagram answered, with when."""

    __slots__ = ("_answers", "_bytes", "_expires", "max_age", "max_bytes", "max_count")

    def __init__(
        self,
        max_age: float,
        *,
        max_count: int = DEFAULT_COUNT,
        max_bytes: int = DEFAULT_BYTES,
    ) -> None:
        self.max_age = max_age
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._answers: OrderedDict[tuple[Hashable, bytes], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        #: when the oldest answer kept passes max_age, or earlier (answers
        #: that left by count or bytes leave a younger oldest): no answer
        #: is past max_age before then, so put() looks only then
        self._expires = 0.0

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def size_bytes(self) -> int:
        """Bytes of the answers kept."""
        return self._bytes

    def get(self, address: Hashable, msg_id: bytes, now: float) -> bytes | None:
        """The answer sent to this request, if it was answered within
        ``max_age`` seconds (and is still kept)."""
        kept = self._answers.get((address, msg_id))
        if kept is None or now - kept[0] > self.max_age:
            return None
        return kept[1]

    def put(self, address: Hashable, msg_id: bytes, datagram: bytes, now: float) -> None:
        """Keep the answer sent to a request; the oldest leave first."""
        size = len(datagram)
        if size > self.max_bytes:
            return
        answers = self._answers
        old = answers.pop((address, msg_id), None)
        if old is not None:
            self._bytes -= len(old[1])
        answers[(address, msg_id)] = (now, datagram)
        self._bytes += size
        # oldest first: out go those past the bounds, and those past max_age
        # (no resend of them can come: a node that serves little keeps
        # little). (Once per request served: the oldest is read only when
        # one may be past max_age, not per put; a find_values served cost
        # 36.1 k -> 32.3 k instructions, bench profile --serve, callgrind.)
        while len(answers) > self.max_count or self._bytes > self.max_bytes:
            self._bytes -= len(answers.popitem(last=False)[1][1])
        if now < self._expires:
            return
        too_old = now - self.max_age
        while answers:
            when, dropped = next(iter(answers.values()))
            if when >= too_old:
                self._expires = when + self.max_age
                return
            answers.popitem(last=False)
            self._bytes -= len(dropped)

"""Per-peer reputation: what a peer has done for us, folded into a score in
[0, 1] that fan-out uses to pick whom to ask first.

The score is ggen's (p2p.rs)::

    0.50 * success_rate
  + 0.25 * min(1, 1000 / (rtt_ms + 1))
  + 0.15 * min(1, records_provided / 10)
  + 0.10 * min(1, 1 / (hours_since_seen + 1))

with success_rate 1.0 for a peer never tried and the RTT an EWMA
(0.7 * old + 0.3 * new), multiplied by ``INVALID_PENALTY ** invalid`` for a
peer that served ``invalid`` records failing their signature, slot or
sequence: one invalid record takes a perfect peer (1.0) to 0.25, below any
peer that never served one and answers half its requests, so it drops in
the order of whom we ask instead of by a rounding error (a plain failure
moved 0.85 to 0.80). Only answers to our own requests count: a blind
spoofer cannot forge those (their message ids are random), while an
unsolicited datagram's source address proves nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..query import new_peer_book

if TYPE_CHECKING:
    from ..query import PeerBook

__all__ = ["INVALID_PENALTY", "PeerStats", "Reputation"]

#: Factor of the score per invalid record a peer served.
INVALID_PENALTY: Final = 0.25
_INVALID_COUNTED: Final = 16  # beyond, the factor is ~0 anyway
#: Peers a Reputation remembers by default (DhtProtocol.PEERS_KEPT's twin).
#: (The records themselves live in the core's PeerBook, whose scores are
#: PeerStats.score's to the bit: tests/test_peer_book.py.)
MAX_PEERS: Final = 65_536


@dataclass(slots=True)
class PeerStats:
    successes: int = 0
    failures: int = 0
    rtt_ms: float | None = None
    provided: int = 0
    last_seen: float | None = None
    #: failures since the last success: what decides that a peer is gone
    consecutive_failures: int = 0
    #: records it served that failed their signature, slot or sequence
    invalid: int = 0

    @property
    def success_rate(self) -> float:
        tried = self.successes + self.failures
        return self.successes / tried if tried else 1.0

    def score(self, now: float) -> float:
        # (min() spelled out: a lookup scores several peers each time)
        tried = self.successes + self.failures
        success_rate = self.successes / tried if tried else 1.0
        rtt_ms = self.rtt_ms
        rtt_part = 1.0 if rtt_ms is None or rtt_ms <= 999.0 else 1000.0 / (rtt_ms + 1.0)
        provided_part = 1.0 if self.provided >= 10 else self.provided / 10.0
        last_seen = self.last_seen
        if last_seen is None:
            seen_part = 0.0
        elif now <= last_seen:
            seen_part = 1.0
        else:
            seen_part = 1.0 / ((now - last_seen) / 3600.0 + 1.0)
        score = 0.5 * success_rate + 0.25 * rtt_part + 0.15 * provided_part + 0.10 * seen_part
        if self.invalid:
            score *= INVALID_PENALTY ** min(self.invalid, _INVALID_COUNTED)
        return score


class Reputation:
    """Reputation of every peer seen, keyed by whatever identifies a peer
    (the DHT uses its (host, port) address): a facade over the records of a
    core ``PeerBook`` (dhtquery.query), which the DHT's protocol and its
    lookups' cores read and feed directly."""

    __slots__ = ("book",)

    def __init__(self, max_peers: int = MAX_PEERS, *, book: PeerBook | None = None) -> None:
        #: the records (and RTT estimators); without one given, a book of
        #: the default backend remembering ``max_peers`` peers (the oldest
        #: seen first leaves: a peer forgotten starts again as never tried)
        self.book: PeerBook = new_peer_book(max_peers=max_peers) if book is None else book

    @property
    def max_peers(self) -> int:
        return self.book.max_peers

    def __len__(self) -> int:
        return len(self.book)

    def __contains__(self, peer: object) -> bool:
        return peer in self.book

    def stats(self, peer: Hashable) -> PeerStats:
        """A copy of the peer's record now (one made for a peer never seen)."""
        return PeerStats(*self.book.stats(peer))

    def success(self, peer: Hashable, rtt: float, now: float) -> None:
        """A request answered after ``rtt`` seconds (< 0: not known, the
        request having been sent more than once: Karn's rule)."""
        self.book.success(peer, rtt, now)

    def failure(self, peer: Hashable) -> int:
        """A request timed out, or the answer was corrupt or forged; returns
        the failures in a row."""
        return self.book.failure(peer)

    def invalid(self, peer: Hashable) -> None:
        """The peer answered our request with a record that failed its
        signature, slot or sequence: a failure, and the score's penalty
        factor (call it only for answers to our own requests)."""
        self.book.invalid(peer)

    def provided(self, peer: Hashable, count: int = 1) -> None:
        """The peer gave us ``count`` valid records."""
        self.book.provided(peer, count)

    def score(self, peer: Hashable, now: float) -> float:
        return self.book.score(peer, now)

    def scores(self, peers: Iterable[Hashable], now: float) -> list[float]:
        """``score(peer, now)`` of each of ``peers``, in order (a lookup
        scores several candidates at once)."""
        return self.book.scores(list(peers), now)

    def best(self, peers: Iterable[Hashable], count: int, now: float) -> list[Hashable]:
        """The ``count`` best-scored of ``peers``; ties keep the given order."""
        listed = list(peers)
        scores = self.book.scores(listed, now)
        ranked = sorted(range(len(listed)), key=lambda i: (-scores[i], i))
        return [listed[i] for i in ranked[:count]]

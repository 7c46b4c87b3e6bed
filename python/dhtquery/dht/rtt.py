"""Per-peer retransmission timeout, as RFC 6298 computes it for TCP.

A request to a peer is given up after that peer's RTO, not after the
query's deadline: a dead peer costs a few RTTs, not the whole timeout.

The DHT keeps its peers' estimators in the core's PeerBook (the same
numbers, to the bit: tests/test_peer_book.py); ``PeerRtt`` reads one of
them as an RttEstimator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..query import PeerBook

__all__ = ["PeerRtt", "RttEstimator"]

_ALPHA = 1 / 8  # gain of the smoothed RTT (RFC 6298, 2.3)
_BETA = 1 / 4  # gain of the RTT variation
_K = 4
_INITIAL_RTO = 1.0  # seconds before any sample (RFC 6298, 2.1)


@dataclass(slots=True)
class RttEstimator:
    """SRTT and RTTVAR of one peer; ``rto`` is SRTT + 4*RTTVAR clamped to
    [min_rto, max_rto], doubled after each timeout until a sample arrives."""

    min_rto: float = 0.05
    max_rto: float = 10.0
    srtt: float | None = None
    rttvar: float = 0.0
    _backoff: int = field(default=0, repr=False)
    _backed_off_at: float = field(default=float("-inf"), repr=False)
    # rto, worked out when a sample or a timeout changes it: it is read for
    # every request sent, far more often than it changes
    _rto: float = field(default=_INITIAL_RTO, repr=False)
    _base_rto: float = field(default=_INITIAL_RTO, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.min_rto <= self.max_rto:
            raise InvalidArgumentError(
                f"min_rto and max_rto must satisfy 0 < min_rto <= max_rto, "
                f"got {self.min_rto!r} and {self.max_rto!r}"
            )
        self._update()

    def observe(self, sample: float) -> None:
        """Feed the round-trip time of a request that got its answer."""
        if sample < 0:
            raise InvalidArgumentError(f"sample must be >= 0 seconds, got {sample!r}")
        srtt = self.srtt
        if srtt is None:
            srtt = sample
            rttvar = sample / 2
        else:
            rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(srtt - sample)
            srtt = (1 - _ALPHA) * srtt + _ALPHA * sample
        self.srtt = srtt
        self.rttvar = rttvar
        self._backoff = 0
        # _update, inline and without a back-off (rto is then the base RTO):
        # this runs for every answer; 0.57 -> 0.21 us a call (timeit), and
        # a test checks it against _update.
        base = srtt + _K * rttvar
        low = self.min_rto
        high = self.max_rto
        self._rto = self._base_rto = low if base < low else high if base > high else base

    def timed_out(self, sent: float | None = None, now: float | None = None) -> None:
        """A request sent at ``sent`` went unanswered: back off (Karn's
        algorithm). Requests sent before the last back-off timed out under
        the old RTO and do not double it again, so a burst of timeouts to
        one peer backs off once, not once per request."""
        if sent is not None and sent < self._backed_off_at:
            return
        self._backoff = min(self._backoff + 1, 16)
        if sent is not None:
            self._backed_off_at = sent if now is None else now
        self._update()

    @property
    def rto(self) -> float:
        return self._rto

    @property
    def base_rto(self) -> float:
        """The RTO without the back-off of timeouts since the last sample:
        when an answer is due if the peer is as it was when last measured
        (a lookup asks someone else past it, see DhtProtocol.request_packed)."""
        return self._base_rto

    def _update(self) -> None:
        base = _INITIAL_RTO if self.srtt is None else self.srtt + _K * self.rttvar
        self._base_rto = min(max(base, self.min_rto), self.max_rto)
        base *= 1 << self._backoff
        self._rto = min(max(base, self.min_rto), self.max_rto)


class PeerRtt:
    """One address's estimator in a PeerBook (``DhtProtocol.rtt``), read
    and fed as an RttEstimator: what it says is the book's at each read."""

    __slots__ = ("_address", "_book")

    def __init__(self, book: PeerBook, address: tuple[str, int]) -> None:
        self._book = book
        self._address = address
        book.rto(address)  # (made now, as DhtProtocol.rtt always did)

    @property
    def srtt(self) -> float | None:
        return self._book.estimator_state(self._address)[0]

    @property
    def rttvar(self) -> float:
        return self._book.estimator_state(self._address)[1]

    @property
    def rto(self) -> float:
        return self._book.rto(self._address)

    @property
    def base_rto(self) -> float:
        return self._book.estimator_state(self._address)[3]

    def observe(self, sample: float) -> None:
        self._book.observe(self._address, sample)

    def timed_out(self, sent: float | None = None, now: float | None = None) -> None:
        self._book.back_off(self._address, sent, now)

    def __repr__(self) -> str:
        srtt, rttvar, rto, _ = self._book.estimator_state(self._address)
        return f"PeerRtt({self._address!r}, srtt={srtt!r}, rttvar={rttvar!r}, rto={rto!r})"

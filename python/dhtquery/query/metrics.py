"""QueryMetrics: one consistent snapshot of a manager's counters and latency."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QueryMetrics"]


@dataclass(frozen=True, slots=True)
class QueryMetrics:
    """Counters since the manager was made, and query latency from an HDR
    histogram (seconds; nearest-rank quantiles, 3 significant figures).

    ``successful`` counts queries that ended before their deadline
    (``max_results``, ``all_peers`` or ``adaptive``); ``timed_out`` those that
    hit it; ``cancelled`` those cancelled by the caller. Latency covers the
    successful and the timed-out ones.
    """

    total: int
    successful: int
    timed_out: int
    cancelled: int
    in_flight: int
    results: int
    duplicates: int
    late: int
    unknown: int
    overflow: int
    latency_count: int
    latency_p50: float
    latency_p95: float
    latency_p99: float
    latency_max: float
    uptime: float

    @property
    def finished(self) -> int:
        """Queries that ended on their own (successful or timed out)."""
        return self.successful + self.timed_out

    @property
    def success_rate(self) -> float:
        """successful / (successful + timed_out); 1.0 before any has ended."""
        finished = self.finished
        return self.successful / finished if finished else 1.0

    @property
    def average_results(self) -> float:
        """Unique results accepted per query started."""
        return self.results / self.total if self.total else 0.0

    @property
    def throughput(self) -> float:
        """Queries ended on their own per second of the manager's life."""
        return self.finished / self.uptime if self.uptime > 0 else 0.0

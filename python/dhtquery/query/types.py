"""The query layer's vocabulary, in one place: what a submit returned, why a
query ended, what state an id is in, the named shapes that cross the core's
boundary, and the limits both cores enforce.

Both cores (``dhtquery._core`` in Rust and ``dhtquery.query._core_py``)
return these very objects: the Rust core imports this module when it loads,
as it imports :mod:`dhtquery.errors`.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from ._core_py import QueryId

__all__ = [
    "FINISH_REASONS",
    "HEDGE",
    "MAX_EXPECTED_PEERS",
    "MAX_NOW",
    "MAX_RESULTS_LIMIT",
    "MAX_TIMEOUT",
    "RTT_BAND",
    "BatchStatus",
    "CoreOutcome",
    "Counters",
    "Latency",
    "LookupFailure",
    "LookupStep",
    "QueryState",
    "Reason",
    "ResultRecord",
    "SubmitStatus",
]


class SubmitStatus(enum.IntEnum):
    """What became of an offered result (or of a peer_done call)."""

    NEW = 0  # accepted; the query goes on
    COMPLETED = 1  # accepted, and it completed the query
    DUPLICATE = 2  # already had this key (or this peer had finished)
    FULL = 3  # the query was already complete
    LATE = 4  # the query ended less than the grace period ago
    UNKNOWN = 5  # no such query


class Reason(enum.StrEnum):
    """Why a query ended. A str, so ``outcome.reason == "timeout"`` holds."""

    MAX_RESULTS = "max_results"  # it holds max_results unique results
    ALL_PEERS = "all_peers"  # every expected peer has reported done
    ADAPTIVE = "adaptive"  # the remaining peers were given up after their RTO
    TIMEOUT = "timeout"  # its deadline passed
    CANCELLED = "cancelled"  # the caller cancelled it


#: The reasons a caller may pass to ``finish``.
FINISH_REASONS: Final = (Reason.MAX_RESULTS, Reason.ALL_PEERS, Reason.ADAPTIVE)


class LookupStep(enum.IntEnum):
    """What a ``LookupCore`` call tells the lookup to do next (the first of
    the ``(step, depth, asks)`` it returns)."""

    ASK = 0  # send a request to each of asks (none: wait for those out)
    QUORUM = 1  # quorum holders answered: finish (all_peers), hops = depth
    EXHAUSTED = 2  # nobody left to ask and nobody out: finish (all_peers)
    ADAPTIVE = 3  # as EXHAUSTED, some peers given up after their RTO: finish (adaptive)
    GIVE_UP = 4  # a holder answered, all still out are late: fail each of asks, finish (adaptive)
    ENDED = 5  # the query had ended: nothing to do


class LookupFailure(enum.IntEnum):
    """Why a lookup's request failed (``LookupCore.failed``'s mode)."""

    BAD_RESPONSE = 0  # an answer of the wrong shape: the peer failed
    STOCK = 1  # a stock peer did not answer our RPC: ask it again in its own
    TIMEOUT = 2  # no answer through the retransmissions: the peer failed


class QueryState(enum.IntEnum):
    """What a core knows of an id (``QueryCore.state``); asking counts nothing."""

    LIVE = 0  # registered and not yet ended
    TOMBSTONE = 1  # ended less than the grace period ago
    UNKNOWN = 2  # never registered here, or forgotten


#: One result as the core holds it: (item, peer, key, response_time), where
#: response_time is the offering call's now minus the query's start, in
#: seconds. A plain tuple (one per result, built on the hot path);
#: ``QueryHandle`` hands it out as a ``QueryResult`` with the same fields.
ResultRecord = tuple[Any, Any, "str | bytes", float]


class CoreOutcome(NamedTuple):
    """How a query ended, as the core reports it: ``results`` are those not
    yet drained, in arrival order; ``duration`` is the ending call's now
    minus the query's start, in seconds."""

    query_id: QueryId
    reason: Reason
    results: list[ResultRecord]
    duration: float
    peers_ok: int
    peers_failed: int
    duplicates: int


class BatchStatus(NamedTuple):
    """What ``offer_many`` did with one peer's batch."""

    status: SubmitStatus
    accepted: int
    duplicates: int


class Counters(NamedTuple):
    """A core's counters since it was made."""

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


class Latency(NamedTuple):
    """Query durations in seconds, from an HDR histogram of microseconds
    (1 us .. 1 h, 3 significant figures); quantiles are nearest-rank. All
    zero when nothing was recorded."""

    samples: int
    p50: float
    p95: float
    p99: float
    max: float


#: Round trips this close (seconds) count as equal when a lookup chooses
#: whom to ask (``dhtquery.dht.lookup`` says why).
RTT_BAND: Final = 0.01
#: Requests a lookup keeps in flight beyond what its quorum needs while some
#: go to peers of unknown round trip (``dhtquery.dht.lookup`` says why).
HEDGE: Final = 2

#: Seconds; the expiry wheel spans 64**6 ms, about 2.2 years.
MAX_TIMEOUT: Final = 365.0 * 86400.0
#: A query's result buffer is allocated at capacity max_results.
MAX_RESULTS_LIMIT: Final = 100_000
MAX_EXPECTED_PEERS: Final = 65_535
#: Seconds; ticks are u64 milliseconds in the Rust core, past this they would not fit.
MAX_NOW: Final = 1e15

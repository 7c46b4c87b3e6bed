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

The cache is the core's (``ReplayCache``, Rust or the pure-Python twin,
of the node's backend): the core's ``DatagramEngine`` answers a resend,
and keeps the answers it serves itself, in the call that reads the
request; the protocol keeps the answers it serves in Python there too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..query import new_replay_cache

if TYPE_CHECKING:
    from ..query import ReplayCache

__all__ = ["DEFAULT_BYTES", "DEFAULT_COUNT", "replay_cache"]

#: Answers kept at most, and their bytes at most. (4096 and 4 MiB at first:
#: at 1,000 nodes in the scale bench that was ~400 KiB more per node, the
#: caches full of the join's answers, which nobody resends.)
DEFAULT_COUNT: Final = 1024
DEFAULT_BYTES: Final = 1024 * 1024


def replay_cache(backend: str, max_age: float) -> ReplayCache:
    """A node's replay cache: of its core's ``backend``, answers younger
    than ``max_age`` seconds, within DEFAULT_COUNT and DEFAULT_BYTES."""
    return new_replay_cache(max_age, backend, max_count=DEFAULT_COUNT, max_bytes=DEFAULT_BYTES)

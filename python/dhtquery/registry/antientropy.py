"""Anti-entropy: a periodic pull reconciliation of catalogs, under the gossip.

Gossip is the fast path for package announcements, but one lost datagram
loses an announcement for the nodes behind it. Anti-entropy is what makes
every catalog converge anyway: every ``period`` seconds (jittered by
``JITTER``, on the node's clock) a node picks a random contact that speaks
the extension RPCs and pulls what it lacks:

1. ``ae_digest(root, count)``: the catalog's root digest and size (see
   :mod:`.catalog`). A peer whose catalog is equal answers ``equal``: equal
   catalogs cost one small datagram each way. Otherwise it answers its
   ``DIGEST_BUCKETS`` bucket digests.
2. ``ae_list(buckets)`` for the buckets whose digests differ (one byte
   each, in random order): the hashes of the peer's entries in them, at
   most ``MAX_LIST_ANSWER`` (``more`` says the answer was cut short: the
   next round lists the rest).
3. ``ae_fetch(hashes)`` for the hashes this catalog neither holds nor knows
   to be older than what it holds: the records, ``MAX_FETCH_ANSWER`` an
   answer (so an answer fits a datagram, as ``search``'s), at most
   ``MAX_FETCH_PER_ROUND`` a round.

A node asked for its digest by a peer whose catalog differs pulls from that
peer in turn (at once, or when its round in progress ends; not again
within ``CATCH_UP`` seconds): each round then reconciles both ways, and a
package held by one node spreads to the others twice as fast as by pulls
alone.

Records travel signed (the package key's record, as announcements do), and
every record fetched is checked as gossip checks it (signature, slot,
namespace owner, ``Package.decode``); a peer that sends a bad record, or
one it was not asked for, is penalised and the rest of its answer is
dropped (a package whose namespace another key owns here is skipped and
not fetched again). A round that stopped at one of its bounds
is followed by another after ``CATCH_UP`` seconds instead of a period, so a
node that joins late catches up in a few seconds.

The loop runs on the node's clock (a test's ``FakeClock`` too): one timer,
and while a round runs one task; ``stop()`` (or the node's ``stop()``, or a
round that finds the node's manager closed) cancels both.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, Protocol

from ..dht import DhtNode, RpcSpec
from ..errors import DhtQueryError, InvalidArgumentError
from .catalog import DIGEST_BUCKETS, HASH_SIZE, Catalog

__all__ = [
    "CATCH_UP",
    "DEFAULT_PERIOD",
    "JITTER",
    "MAX_FETCH_ANSWER",
    "MAX_FETCH_PER_ROUND",
    "MAX_LIST_ANSWER",
    "AntiEntropy",
]

log = logging.getLogger("dhtquery.registry")

Address = tuple[str, int]
#: Seconds between two rounds, on average.
DEFAULT_PERIOD: Final = 20.0
#: A period is drawn from period * [1 - JITTER, 1 + JITTER].
JITTER: Final = 0.25
#: Seconds before the next round when a round stopped at a bound.
CATCH_UP: Final = 1.0
#: Entry hashes one ``ae_list`` answer carries at most (8 KiB).
MAX_LIST_ANSWER: Final = 1024
#: Records one ``ae_fetch`` asks for and its answer carries at most (as
#: MAX_SEARCH_ANSWER: 30 records of at most MAX_DATA bytes fit a datagram).
MAX_FETCH_ANSWER: Final = 30
#: Records one round fetches at most.
MAX_FETCH_PER_ROUND: Final = 4 * MAX_FETCH_ANSWER

#: called as accept(peer, record bytes, hashes asked for): False if the
#: record was refused (bad, or not asked for); the caller penalised the peer.
Accept = Callable[[Address, bytes, frozenset[bytes]], bool]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


def _is_hash(value: Any) -> bool:
    return type(value) is bytes and len(value) == HASH_SIZE


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_buckets(value: Any) -> bool:
    return type(value) is bytes and 0 < len(value) <= DIGEST_BUCKETS


def _is_hashes(value: Any) -> bool:
    return (
        type(value) is bytes
        and len(value) % HASH_SIZE == 0
        and len(value) <= MAX_FETCH_ANSWER * HASH_SIZE
    )


def _is_digest_answer(value: Any) -> bool:
    if type(value) is not dict or type(value.get("equal")) is not bool:
        return False
    buckets = value.get("buckets")
    return bool(value["equal"]) or (
        type(buckets) is bytes and len(buckets) == DIGEST_BUCKETS * HASH_SIZE
    )


def _is_list_answer(value: Any) -> bool:
    if type(value) is not dict or type(value.get("more")) is not bool:
        return False
    hashes = value.get("hashes")
    return (
        type(hashes) is bytes
        and len(hashes) % HASH_SIZE == 0
        and len(hashes) <= MAX_LIST_ANSWER * HASH_SIZE
    )


def _is_fetch_answer(value: Any) -> bool:
    if type(value) is not dict:
        return False
    records = value.get("records")
    return (
        type(records) is list
        and len(records) <= MAX_FETCH_ANSWER
        and all(type(record) is bytes for record in records)
    )


def _split(hashes: bytes) -> list[bytes]:
    return [hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE)]


class AntiEntropy:
    """Reconciliation of ``catalog`` with the peers of ``node``; fetched
    records go to ``accept``. ``period`` None: serve the RPCs, never pull
    (``round()`` still can). ``stats`` counts rounds, equal digests,
    records fetched and refused, failed requests."""

    def __init__(
        self,
        node: DhtNode,
        catalog: Catalog,
        accept: Accept,
        *,
        period: float | None = DEFAULT_PERIOD,
        rng: random.Random | None = None,
    ) -> None:
        if period is not None and (
            isinstance(period, bool) or not isinstance(period, (int, float)) or not period > 0
        ):
            raise InvalidArgumentError(f"period must be > 0 seconds or None, got {period!r}")
        self._node = node
        self._catalog = catalog
        self._accept = accept
        self.period = period
        self._rng = rng or random.Random()
        self._timer: Cancellable | None = None
        self._task: asyncio.Task[bool] | None = None
        self._running = False
        self._last_return = -float("inf")
        self._return_to: Address | None = None
        self.stats: Counter[str] = Counter()
        node.add_rpc(
            "ae_digest", RpcSpec((_is_hash, _is_count), self._rpc_digest, _is_digest_answer)
        )
        node.add_rpc("ae_list", RpcSpec((_is_buckets,), self._rpc_list, _is_list_answer))
        node.add_rpc("ae_fetch", RpcSpec((_is_hashes,), self._rpc_fetch, _is_fetch_answer))

    # -- the loop -----------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether rounds are scheduled."""
        return self._running

    @property
    def busy(self) -> bool:
        """Whether a scheduled round is in progress."""
        return self._task is not None

    @property
    def idle(self) -> bool:
        """No timer and no round task left."""
        return self._timer is None and self._task is None

    def start(self) -> None:
        """Schedule rounds every ``period`` (the first within one period).
        On the system clock this needs the running event loop: without one
        nothing is scheduled (call it again from the loop)."""
        if self.period is None or self._running:
            return
        self._running = True
        try:
            self._schedule(self._rng.uniform(1 - JITTER, 1 + JITTER) * self.period)
        except RuntimeError:  # no running event loop
            self._running = False

    def stop(self) -> None:
        """No more rounds: the timer is cancelled, a round in progress too.
        Idempotent; ``start()`` starts again."""
        self._running = False
        self._return_to = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        """``stop()``, and wait for a cancelled round to end."""
        self.stop()
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _schedule(self, delay: float) -> None:
        clock = self._node.clock
        self._timer = clock.call_at(clock.now() + delay, self._tick)

    def _next_delay(self, bounded: bool) -> float:
        base = CATCH_UP if bounded else self.period or CATCH_UP
        return self._rng.uniform(1 - JITTER, 1 + JITTER) * base

    def _stopped_with_node(self) -> bool:
        if self._node.queries.closed:
            self.stop()
            return True
        return False

    def _tick(self) -> None:
        self._timer = None
        if not self._running or self._stopped_with_node():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not self._node.listening or self._task is not None:
            self._schedule(self._next_delay(False))
            return
        self._task = loop.create_task(self.round())
        self._task.add_done_callback(self._round_done)

    def _return_round(self, peer: Address) -> None:
        """Pull from ``peer``, which asked for our digest and differs."""
        now = self._node.clock.now()
        if not self._running or now - self._last_return < CATCH_UP:
            return
        if self._task is not None:
            self._return_to = self._return_to or peer
            return
        self._last_return = now
        self.stats["return_rounds"] += 1
        self._task = asyncio.get_running_loop().create_task(self.round(peer))
        self._task.add_done_callback(self._return_round_done)

    def _return_round_done(self, task: asyncio.Task[bool]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            self.stats["errors"] += 1
            log.warning("anti-entropy round failed: %r", task.exception())

    def _return_pending(self) -> None:
        peer, self._return_to = self._return_to, None
        if peer is not None and self._node.listening:
            self._return_round(peer)

    def _round_done(self, task: asyncio.Task[bool]) -> None:
        self._task = None
        if task.cancelled():
            return
        bounded = False
        error = task.exception()
        if error is not None:
            self.stats["errors"] += 1
            log.warning("anti-entropy round failed: %r", error)
        else:
            bounded = task.result()
        if self._running and not self._stopped_with_node():
            self._schedule(self._next_delay(bounded))
            self._return_pending()

    # -- one round ----------------------------------------------------

    def pick_peer(self) -> Address | None:
        """A random contact that may speak the extension RPCs."""
        node = self._node
        candidates = [(peer.ip, peer.port) for peer in node.peers()]
        candidates = [a for a in candidates if node.supports_extensions(a) is not False]
        return self._rng.choice(candidates) if candidates else None

    async def round(self, peer: Address | None = None) -> bool:
        """Reconcile with ``peer`` (default: a random contact) once; True if
        the round stopped at a bound with more left to fetch."""
        if peer is None:
            peer = self.pick_peer()
            if peer is None:
                return False
        self.stats["rounds"] += 1
        try:
            return await self._reconcile(peer)
        except DhtQueryError:  # the node stopped under the round
            return False

    async def _ask(self, peer: Address, name: str, *args: Any) -> Any:
        ok, answer = await self._node.request(peer, name, args)
        if not ok:
            self.stats["failed_requests"] += 1
            return None
        return answer

    async def _reconcile(self, peer: Address) -> bool:
        catalog = self._catalog
        answer = await self._ask(peer, "ae_digest", catalog.root, len(catalog))
        if answer is None:
            return False
        if answer["equal"]:
            self.stats["equal"] += 1
            return False
        theirs = _split(answer["buckets"])
        mine = _split(catalog.bucket_digests())
        differing = [bucket for bucket in range(DIGEST_BUCKETS) if theirs[bucket] != mine[bucket]]
        if not differing:
            return False
        self._rng.shuffle(differing)
        listing = await self._ask(peer, "ae_list", bytes(differing))
        if listing is None:
            return False
        wanted = [h for h in _split(listing["hashes"]) if not catalog.knows(h)]
        bounded = bool(listing["more"]) or len(wanted) > MAX_FETCH_PER_ROUND
        wanted = wanted[:MAX_FETCH_PER_ROUND]
        for start in range(0, len(wanted), MAX_FETCH_ANSWER):
            batch = wanted[start : start + MAX_FETCH_ANSWER]
            fetched = await self._ask(peer, "ae_fetch", b"".join(batch))
            if fetched is None:
                return False
            asked = frozenset(batch)
            for record in fetched["records"]:
                if not self._accept(peer, record, asked):
                    self.stats["refused"] += 1
                    return False
                self.stats["fetched"] += 1
        return bounded

    # -- serving ------------------------------------------------------

    def _rpc_digest(self, sender: Address, root: bytes, count: int) -> dict[str, Any]:
        catalog = self._catalog
        if root == catalog.root and count == len(catalog):
            return {"equal": True}
        self._return_round(sender)
        return {"equal": False, "buckets": catalog.bucket_digests()}

    def _rpc_list(self, sender: Address, buckets: bytes) -> dict[str, Any]:
        hashes: list[bytes] = []
        for bucket in dict.fromkeys(buckets):
            hashes += self._catalog.bucket_hashes(bucket % DIGEST_BUCKETS)
            if len(hashes) > MAX_LIST_ANSWER:
                break
        page = hashes[:MAX_LIST_ANSWER]
        return {"hashes": b"".join(page), "more": len(hashes) > len(page)}

    def _rpc_fetch(self, sender: Address, hashes: bytes) -> dict[str, Any]:
        records = []
        for digest in _split(hashes)[:MAX_FETCH_ANSWER]:
            package = self._catalog.by_hash(digest)
            # (the signed record: an entry without one is this node's alone)
            if package is not None and package.record:
                records.append(package.record)
        return {"records": records}

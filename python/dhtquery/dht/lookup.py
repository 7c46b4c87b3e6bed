"""The streaming lookup behind ``DhtNode.get_all``.

An iterative Kademlia lookup that keeps ``alpha`` requests in flight at all
times (kademlia's crawler waits for a whole round before the next), and
offers every record to the query the moment its datagram arrives. It stops
when the query completes (``max_results``), once ``quorum`` holders have
answered with their records (``all_peers``), when the k closest peers have
all answered or failed (``all_peers``, or ``adaptive`` if some were given up
after their RTO), or at the deadline (``timeout``).

It never waits on a silent peer: a request that passes its RTO is sent again
(RFC 6298: same message id, RTO doubled, within OVERDUE_SPAN of the peer's
RTOs, or the query's timeout when ``adaptive_timeout`` is off) and the
lookup asks the next candidate at once. The overdue request still counts:
its answer, if it comes, is read like any other (and the peer is not
charged for being slow); only a request that goes unanswered through its
retransmissions fails the peer. With nobody left to ask, an adaptive lookup
that has heard from a holder ends (``adaptive``) without waiting for peers
past their RTO; one that has heard from no holder yet waits for them.

Whom to ask: among the k closest candidates not asked yet, those expected
to answer soonest (measured SRTT over reputation score, round trips within
RTT_BAND of each other counting as equal), equals in a drawn order. Near
the key, each of the k closest is about as likely a holder as the
closest, so the lookup's critical path runs through the peers near in time,
not the closest in XOR distance (kademlia's order). A peer never measured
is expected at its IP address's round trip if another port of it was
measured (``DhtProtocol.srtt``), else at the median of the measured
candidates. Measured in ``dhtquery bench
scale --sizes 1000 --lookups 400`` (8 hosts, round trips 12-184 ms, one
run per step, get_all's p50 over stock ``Server.get``'s in the same run):
closest first 0.77x; smallest SRTT 0.74x; + the IP address's SRTT 0.37x;
+ RTT_BAND 0.21x (full runs: 0.14x and 0.11x). Every bench host is one IP
address: without the IP fallback (one node per address) 0.71x.

Where it starts: the k closest of the routing table's contacts and its
replacement caches (``ContactTable.candidates``: every peer that answered
lately, mostly of measured round trip). While some requests go to peers of
unknown round trip, HEDGE more are kept in flight. Equals (same band) are
asked in a drawn order, not the closer first: the closest nodes to the
most looked-up keys took the most requests (see ``dhtquery bench scale``,
docs/guide/scale.md, "Load").

Each lookup counts what it cost (``LookupHandle.lookup_stats``, a
:class:`LookupStats`): requests sent, retransmissions, hops, peers that
answered and peers that failed.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kademlia.node import Node

from ..errors import RecordError
from ..query import QueryHandle, QueryManager, Reason
from .records import MAX_DATA, Record
from .reputation import PeerStats
from .rpc_table import BAD_RESPONSE
from .wire import pack_request

if TYPE_CHECKING:
    from ..query import QueryId
    from .protocol import DhtProtocol

__all__ = ["HEDGE", "RTT_BAND", "LookupHandle", "LookupStats", "StreamingLookup"]

#: Round trips this close count as equal when choosing whom to ask, and two
#: such peers go in a drawn order: an SRTT differs by a few ms with the load
#: of the peer's host, and ranking on that noise sent every lookup of a host
#: to the same few nearest peers.
RTT_BAND: Final = 0.01
#: Requests a lookup keeps in flight beyond what its quorum needs while
#: some go to peers of unknown round trip (none measured, none of their IP
#: address; only where round trips differ, see _ask): near the key every
#: candidate is about as likely a holder, and the quorum is taken from the
#: first to answer, not the slowest of three drawn blind. On a network where
#: each node has an address of its own, the lookup's last hop is mostly to
#: peers never measured.
HEDGE: Final = 2
#: A peer's reputation score that ranks it as a peer never asked (0.75):
#: scores above it do not make a peer preferred, scores below make it later.
FAIR_SCORE: Final = PeerStats().score(0.0)
#: Draws the order of candidates expected at the same time (see _best_of).
_draw = random.Random().random
#: Up to this many candidates a lookup starts from are all sorted; beyond,
#: only the k closest are picked out (heapq).
_SORT_ALL: Final = 128


@dataclass(frozen=True, slots=True)
class LookupStats:
    """What one ``get_all`` lookup cost, counted until it ended.

    - ``requests``: requests sent (first sends; a peer asked again in the
      form a stock peer understands counts twice);
    - ``retransmissions``: copies of those requests sent again because one
      went unanswered within its RTO (RFC 6298), counted apart;
    - ``hops``: request rounds on the critical path. A contact from this
      node's routing table is at depth 1, one learned from an answer at
      depth d is at depth d + 1; ``hops`` is the depth of the answer that
      completed the lookup (quorum or ``max_results`` reached), else the
      deepest answer it had (0: no peer answered; records held here alone
      completed it, or nobody could be asked);
    - ``peers_answered``: peers whose answer was read (of the right shape);
    - ``peers_failed``: peers that did not answer (after the request's
      retransmissions) or answered garbage, and those still silent past
      their RTO when the lookup ended without them.
    """

    requests: int
    retransmissions: int
    hops: int
    peers_answered: int
    peers_failed: int


class LookupHandle(QueryHandle):
    """The :class:`~dhtquery.query.QueryHandle` of a ``DhtNode.get_all``
    lookup: awaitable and iterable as any handle, and ``lookup_stats`` once
    the lookup has ended."""

    # The counts live on the handle itself (the lookup writes them): a
    # lookup referencing its handle and the handle its lookup would make
    # every lookup a reference cycle, freed only by the cyclic GC.
    __slots__ = ("_answered", "_failed", "_final_depth", "_max_depth", "_requests", "_resent")

    def __init__(
        self, owner: QueryManager, query_id: QueryId, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(owner, query_id, loop)
        self._requests = 0
        self._resent = 0
        self._answered = 0
        self._failed = 0
        self._max_depth = 0
        #: depth of the answer that completed the lookup (-1: none did)
        self._final_depth = -1

    @property
    def lookup_stats(self) -> LookupStats | None:
        """The lookup's :class:`LookupStats` once it has ended (None while
        it runs). Nothing that happens after the end (a late answer, a
        retransmission of a request still out) is counted."""
        if not self.done():
            return None
        final = self._final_depth
        return LookupStats(
            requests=self._requests,
            retransmissions=self._resent,
            hops=final if final >= 0 else self._max_depth,
            peers_answered=self._answered,
            peers_failed=self._failed,
        )


class StreamingLookup:
    __slots__ = (
        "_alpha",
        "_asked",
        "_bodies",
        "_depth",
        "_ended",
        "_failed_by_rto",
        "_handle",
        "_holders",
        "_in_flight",
        "_key",
        "_ksize",
        "_late",
        "_latest",
        "_manager",
        "_peer_finished",
        "_protocol",
        "_quorum",
        "_ranked",
        "_rpc_timeout",
        "_skipped",
        "_slowest",
        "_srtts",
        "_target",
        "_unmeasured",
    )

    def __init__(
        self,
        protocol: DhtProtocol,
        manager: QueryManager,
        handle: LookupHandle,
        key: bytes,
        *,
        alpha: int,
        ksize: int,
        quorum: int,
        rpc_timeout: float | None,
    ) -> None:
        self._protocol = protocol
        self._manager = manager
        # With expected_peers 0, peer_finished only counts the outcome's
        # peers_ok / peers_failed: it never completes the query.
        self._peer_finished = manager.peer_finished
        self._handle = handle
        # (bound once: asked after every answer)
        self._ended = handle.done
        self._key = key
        # the key as kademlia's Node.long_id would read it
        self._target = int.from_bytes(key, "big")
        self._alpha = alpha
        self._ksize = ksize
        self._quorum = quorum
        # None: each peer's RTO (adaptive); else the query's whole timeout
        self._rpc_timeout = rpc_timeout
        # every request of this lookup has the same arguments: its body,
        # packed once per RPC name
        self._bodies: dict[str, bytes] = {}
        #: candidates not failed, (XOR distance, node), closest first; the
        #: first ksize of them are "the k closest"
        self._ranked: list[tuple[int, Node]] = []
        #: node id -> its SRTT (DhtProtocol.srtt) when it became a candidate
        self._srtts: dict[bytes, float | None] = {}
        #: the largest of those: below RTT_BAND, time cannot rank candidates
        self._slowest = 0.0
        self._asked: set[bytes] = set()
        #: node id -> depth of a contact learned from an answer (absent:
        #: from the routing table, depth 1)
        self._depth: dict[bytes, int] = {}
        #: requests past their RTO and still out (not in _in_flight): node
        #: id -> node
        self._late: dict[bytes, Node] = {}
        #: candidates left out as failed lately (node id -> (distance,
        #: node)): asked only if nobody else is left and no holder answered
        self._skipped: dict[bytes, tuple[int, Node]] = {}
        self._in_flight = 0
        #: ids of the requests in flight to peers whose round trip was
        #: unknown when asked (see HEDGE)
        self._unmeasured: set[bytes] = set()
        self._holders = 0
        self._failed_by_rto = False
        #: slot -> (highest sequence seen, the peer that served it first)
        self._latest: dict[tuple[bytes, str], tuple[int, Any]] = {}

    def start(self, local: list[Record], own_address: Any) -> None:
        if local:
            # This node holds the key too: it counts towards the quorum.
            self._holders += 1
            latest = self._latest
            for record in local:
                latest[record.slot] = (record.seq, None)
            entries = [(record.dedup_key, record) for record in local]
            self._manager.submit_many(self._handle.id, own_address, entries)
        if self._ended():
            return
        if self._holders >= self._quorum:
            self._handle._final_depth = 0
            self._manager.finish(self._handle.id, Reason.ALL_PEERS)
            return
        target = self._target
        # the table's contacts and its replacement caches (ContactTable.candidates)
        long_ids, nodes = self._protocol.router.candidates()
        protocol = self._protocol
        # Distances are distinct (so are ids): nodes are never compared.
        pairs = zip([long_id ^ target for long_id in long_ids], nodes, strict=True)
        if len(nodes) > _SORT_ALL and not protocol.recently_failed:
            # (a client's candidates grow to ~1,000 at 1,000 nodes: the k
            # closest alone, ~3x faster than sorting them all)
            ranked = heapq.nsmallest(self._ksize, pairs)
        else:
            ranked = sorted(pairs)
        if protocol.recently_failed:
            # Contacts that failed lately do not take places in the k
            # closest (kept aside, as a last resort: see _fill).
            failed_recently = protocol.failed_recently
            skipped = self._skipped
            kept = []
            for entry in ranked:
                if failed_recently((entry[1].ip, entry[1].port)):
                    if len(skipped) < self._ksize:
                        skipped[entry[1].id] = entry
                else:
                    kept.append(entry)
                    if len(kept) == self._ksize:
                        break
            ranked = kept
        del ranked[self._ksize :]
        self._ranked = ranked
        srtt = protocol.srtt
        srtts = self._srtts
        slowest = 0.0
        for _, node in ranked:
            rtt = srtts[node.id] = srtt((node.ip, node.port))
            if rtt is not None and rtt > slowest:
                slowest = rtt
        self._slowest = slowest
        self._fill()

    # -- choosing whom to ask -----------------------------------------

    def _learn(self, contacts: list[Any], depth: int) -> None:
        """Add the contacts of an answer not yet known as candidates, at
        ``depth``."""
        asked = self._asked
        depths = self._depth
        known = {node.id for _, node in self._ranked}
        known.add(self._protocol.source_node.id)
        ranked = self._ranked
        target = self._target
        protocol = self._protocol
        # (empty unless some request failed lately: one test per answer)
        failed = protocol.recently_failed
        skipped = self._skipped
        for contact_id, host, port in contacts:
            if contact_id not in known and contact_id not in asked and contact_id not in skipped:
                known.add(contact_id)
                node = Node(contact_id, host, port)
                depths[contact_id] = depth
                if failed and protocol.failed_recently((host, port)):
                    # failed lately: others' stale answers do not bring it
                    # back, unless nobody else is left
                    skipped[contact_id] = (node.long_id ^ target, node)
                    continue
                bisect.insort(ranked, (node.long_id ^ target, node))
                rtt = self._srtts[contact_id] = protocol.srtt((host, port))
                if rtt is not None and rtt > self._slowest:
                    self._slowest = rtt

    def _drop(self, node: Node) -> None:
        """A candidate failed: it leaves the k closest."""
        ranked = self._ranked
        for index, (_, candidate) in enumerate(ranked):
            if candidate is node:
                del ranked[index]
                return

    def _fill(self) -> None:
        # Requests in flight that may each bring a holder count towards the
        # quorum: asking more before they answer only adds traffic.
        wanted = self._quorum - self._holders
        target = self._alpha if wanted > self._alpha else wanted if wanted > 1 else 1
        count = target - self._in_flight
        unmeasured = self._unmeasured
        if unmeasured:
            # requests to peers of unknown round trip: up to HEDGE more in
            # flight, the quorum taken from the first to answer
            count += HEDGE if len(unmeasured) > HEDGE else len(unmeasured)
        if count <= 0 or self._ended():  # (count <= 0: some are in flight)
            return
        asked = self._asked
        ranked = self._ranked
        protocol = self._protocol
        # (bounded: each pass that goes on takes one candidate out of ranked)
        for _ in range(len(ranked) + 1):
            closest = ranked[: self._ksize]
            fresh = [entry for entry in closest if entry[1].id not in asked] if asked else closest
            if not protocol.recently_failed:
                break
            # An address that failed lately (another id of it, say) is not
            # asked again at once: it would cost this lookup another RTO. It
            # leaves the k closest, so that the next closest take its place.
            failed_recently = protocol.failed_recently
            stale = [entry for entry in fresh if failed_recently((entry[1].ip, entry[1].port))]
            if not stale:
                break
            for entry in stale:
                ranked.remove(entry)
                self._skipped[entry[1].id] = entry
        if not fresh:
            if self._in_flight:
                return
            late = self._late
            if not late and not self._holders and self._skipped:
                # Nobody else is left and no holder has answered: rather
                # than end with nothing, ask those that failed lately.
                for entry in sorted(self._skipped.values())[:count]:
                    del self._skipped[entry[1].id]
                    self._ask(entry[1])
                return
            if not late:
                reason = Reason.ADAPTIVE if self._failed_by_rto else Reason.ALL_PEERS
                self._manager.finish(self._handle.id, reason)
            elif self._holders and self._rpc_timeout is None:
                # Every peer still out is past its RTO and a holder has
                # answered: end with what the lookup has (adaptive), the
                # silent ones counted as failed.
                for node in late.values():
                    self._failed((node.ip, node.port))
                self._manager.finish(self._handle.id, Reason.ADAPTIVE)
            # else: wait for the overdue requests (their answer or failure)
            return
        picked = self._best_of(fresh, count)
        for _, node in picked:
            self._ask(node)
        if unmeasured and len(fresh) > len(picked):
            # the hedge's room grew with the peers of unknown round trip
            # just asked
            room = (
                target + (HEDGE if len(unmeasured) > HEDGE else len(unmeasured)) - self._in_flight
            )
            if room > 0:
                rest = [entry for entry in fresh if entry[1].id not in asked]
                for _, node in self._best_of(rest, room):
                    self._ask(node)

    def _best_of(self, fresh: list[tuple[int, Node]], count: int) -> list[tuple[int, Node]]:
        """The ``count`` to ask among ``fresh`` (the k closest candidates not
        asked yet, closest first): those expected to answer soonest, by their
        round trip (``DhtProtocol.srtt``) over their reputation score, within
        RTT_BAND counting as equal; a peer never measured is expected at the
        median of those measured among ``fresh``; equals in a drawn order
        (the closer first sent most requests to the closest nodes of the
        most looked-up keys, as kademlia's crawl does). A
        put stores on the k closest, so once the lookup has reached the key's
        neighbourhood each of its k closest candidates is about as likely a
        holder as the closest: with round trips that differ per peer, asking
        the near ones (in time) puts the lookup's critical path through them,
        where kademlia's crawl asks the closest (in XOR distance) and waits
        for the slowest of each round."""
        if len(fresh) <= count or self._slowest < RTT_BAND:
            # (every candidate measured answers within one band, as on
            # loopback or a LAN: time cannot tell them apart, closest first.
            # Ordering them all anyway cost ~50 us a lookup, 4 calls of ~12,
            # and bench dht's get_all went from 11.1k to 7.0k lookups/s.)
            return fresh[:count]
        protocol = self._protocol
        srtts = self._srtts
        addresses = [(node.ip, node.port) for _, node in fresh]
        rtts = [srtts.get(node.id) for _, node in fresh]
        known = sorted([rtt for rtt in rtts if rtt is not None])
        if not known:
            return fresh[:count]
        guess = known[len(known) // 2]
        scores = protocol.reputation.scores(addresses, protocol.clock.now())
        # A score at least a new peer's counts as a new peer's: above it the
        # score grows with answers and records served, and ranking on it
        # sent more and more of a client's lookups to the peers it had
        # asked before. Below it (failures, invalid records) it slows the
        # peer down: RTT x FAIR_SCORE / score.
        per_band = FAIR_SCORE / RTT_BAND
        draw = _draw
        # (band number, a draw, rank): within a band, the order is drawn
        order = sorted(
            [
                (
                    int(
                        (guess if rtt is None else rtt)
                        * (
                            1 / RTT_BAND
                            if score >= FAIR_SCORE
                            else per_band / (score if score > 0.01 else 0.01)
                        )
                    ),
                    draw(),
                    i,
                )
                for i, (rtt, score) in enumerate(zip(rtts, scores, strict=True))
            ]
        )
        return [fresh[i] for _, _, i in order[:count]]

    def _ask(self, node: Node) -> None:
        protocol = self._protocol
        address = (node.ip, node.port)
        self._asked.add(node.id)
        self._in_flight += 1
        if self._slowest >= RTT_BAND and self._srtts.get(node.id, 0.0) is None:
            # (only where round trips differ: on loopback every peer is as
            # near as any, and asking more would only add traffic)
            self._unmeasured.add(node.id)
        self._handle._requests += 1
        name = "find_value" if protocol.extensions.get(address) is False else "find_values"
        body = self._bodies.get(name)
        if body is None:
            body = self._bodies[name] = pack_request(name, (protocol.source_node.id, self._key))
        # (self._answered makes a bound method per request: kept on self, it
        # would make every lookup a reference cycle, freed only by the GC)
        protocol.request_packed(
            address, name, body, self._rpc_timeout, self._answered, node, self._overdue
        )

    def _overdue(self, node: Node) -> None:
        """A request to ``node`` passed its RTO and was sent again: ask the
        next candidate now. The request stays out (its answer still counts)."""
        if self._ended():
            return
        self._handle._resent += 1
        late = self._late
        if node.id in late:  # (a later retransmission)
            return
        late[node.id] = node
        self._in_flight -= 1
        if self._unmeasured:
            self._unmeasured.discard(node.id)
        self._fill()

    # -- answers ------------------------------------------------------

    def _answered(self, node: Node, address: Any, name: str, ok: bool, value: Any) -> None:
        late = self._late
        if not late or late.pop(node.id, None) is None:
            self._in_flight -= 1
            if self._unmeasured:
                self._unmeasured.discard(node.id)
        if not ok:
            if value is BAD_RESPONSE:
                # Malformed (the protocol counted it as bad_response): the
                # peer failed, though not by its RTO.
                self._drop(node)
                self._failed(address)
            elif name == "find_values" and self._protocol.extensions.get(address) is False:
                # A stock peer: ask it again the way it understands.
                self._asked.discard(node.id)
            else:
                self._failed_by_rto = self._failed_by_rto or self._rpc_timeout is None
                self._drop(node)
                self._failed(address)
            self._fill()
            return
        depth = self._depth.get(node.id, 1) if self._depth else 1
        if depth > 1:
            # Learnt from an answer, and it answered us: a live contact the
            # routing table takes in, as stock's crawl does with every peer
            # that answers (without it a client's table stayed at 22 contacts
            # against stock's ~130 at 1,000 nodes, and its lookups took 2.15
            # hops against 1.29: bench scale). Table contacts (depth 1) are
            # known already: no cost on the common path.
            self._protocol.welcome_if_new(node)
        if self._ended():
            return
        handle = self._handle
        if depth > handle._max_depth:
            handle._max_depth = depth
        handle._answered += 1
        if type(value) is dict and name == "find_values":
            # the common answer, read inline
            records = self._records(value, address)
            contacts = value.get("nodes", ())
        else:
            records, contacts = self._read(name, value, address)
        if contacts:
            self._learn(contacts, depth + 1)
        if records:
            self._holders += 1
            self._protocol.reputation.provided(address, len(records))
            self._manager.submit_many(handle.id, address, records)
        self._peer_finished(handle.id, address, True)
        if self._ended():  # max_results reached by this answer's records
            handle._final_depth = depth
            return
        if self._holders >= self._quorum:
            handle._final_depth = depth
            self._manager.finish(handle.id, Reason.ALL_PEERS)
            return
        self._fill()

    def _failed(self, address: Any) -> None:
        """A peer failed this lookup (told to the query as peers_failed)."""
        if self._ended():
            return
        self._handle._failed += 1
        self._peer_finished(self._handle.id, address, False)

    def _read(
        self, name: str, value: Any, address: Any
    ) -> tuple[list[tuple[bytes, Record]], list[Any]]:
        """Records (each checked) and contacts from a response."""
        if type(value) is list:  # find_node-style answer: only contacts
            return [], value
        if type(value) is not dict:
            return [], []
        if name == "find_value":
            plain = value.get("value")
            if isinstance(plain, bytes):
                plain_record = self._legacy_record(plain, address)
                if plain_record is None:
                    return [], []
                return [(plain_record.dedup_key, plain_record)], []
            return [], []
        return self._records(value, address), value.get("nodes", [])

    def _records(self, value: dict[str, Any], address: Any) -> list[tuple[bytes, Record]]:
        """The records of a find_values answer, each checked (signature,
        slot, expiry, and sequence against what this lookup has seen), with
        their dedup keys. A record refused is counted by kind and lowers
        the serving peer's reputation; so does an older record of a slot a
        peer served before a newer one arrived from another."""
        records = []
        protocol = self._protocol
        verifier = protocol.records.verifier
        latest = self._latest
        key = self._key
        for raw in value.get("records", ()):
            try:
                record = verifier.from_wire(raw, key)
            except RecordError as exc:
                protocol.drop(exc.kind)
                protocol.reputation.invalid(address)
                continue
            # (the slot and the dedup key spelled out: this runs per record
            # per holder; a signed record's dedup key is its signature)
            slot = (record.public_key, record.name)
            seen = latest.get(slot)
            if seen is None:
                latest[slot] = (record.seq, address)
            elif record.seq != seen[0]:
                seq, first = seen
                if record.seq < seq:
                    protocol.drop("stale_sequence")
                    protocol.reputation.invalid(address)
                    continue
                if first is not None and first != address:
                    # (already offered: latest() picks the newer one)
                    protocol.drop("stale_sequence")
                    protocol.reputation.invalid(first)
                latest[slot] = (record.seq, address)
            records.append((record.signature, record))
        return records

    def _legacy_record(self, data: bytes, address: Any) -> Record | None:
        """A stock peer's plain value, surfaced unsigned."""
        return Record.plain(data) if len(data) <= MAX_DATA else None

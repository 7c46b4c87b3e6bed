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

The decisions (the k closest, whom to ask next, when the lookup is over)
are the query core's ``LookupCore`` (Rust, or its pure-Python twin, the
backend of the node's query manager): each answer, failure and overdue
request is one call into it, which says what to do next (``LookupStep``)
and whom to send to. This module sends, times, checks records and offers
them into the query. A lookup's requests have as callback the core's
``LookupAnswers``: the common answer (a find_values dict whose records were
all verified before, read by the node's ``RecordCache.take``) it reads,
offers and counts in one native call, handed to it by the RPC table's
engine itself, and it calls this module back only to welcome a peer or act
on a step (``_answered_then``) and with any other answer (``_answered``).
The asks of a step ASK (after an answer, and the first ones) are sent from
the core too (the protocol's ``Asker``: ``DhtProtocol.ask_many``'s fast
path, the engine's ``open_asks``), with no frame of this module's unless
the protocol would queue them (then ``_act``).
Measured against the same decisions made here in Python (issue 14): see
README.md, "Client CPU per lookup".

Each lookup counts what it cost (``LookupHandle.lookup_stats``, a
:class:`LookupStats`): requests sent, retransmissions, hops, peers that
answered and peers that failed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kademlia.node import Node

from ..errors import RecordError
from ..query import (
    HEDGE,
    RTT_BAND,
    LookupFailure,
    LookupStep,
    QueryHandle,
    QueryManager,
    Reason,
    load_core,
)
from .records import MAX_DATA, Record
from .reputation import PeerStats
from .rpc_table import BAD_RESPONSE
from .wire import pack_request

if TYPE_CHECKING:
    from .._core import Asker, Candidates, LookupAnswers, LookupCore
    from ..query import QueryId
    from .protocol import DhtProtocol

__all__ = ["HEDGE", "RTT_BAND", "LookupHandle", "LookupSetup", "LookupStats", "StreamingLookup"]

# RTT_BAND: round trips this close count as equal when choosing whom to ask,
# and two such peers go in a drawn order: an SRTT differs by a few ms with
# the load of the peer's host, and ranking on that noise sent every lookup
# of a host to the same few nearest peers.
# HEDGE: requests a lookup keeps in flight beyond what its quorum needs
# while some go to peers of unknown round trip (none measured, none of their
# IP address; only where round trips differ): near the key every candidate
# is about as likely a holder, and the quorum is taken from the first to
# answer, not the slowest of three drawn blind. On a network where each node
# has an address of its own, the lookup's last hop is mostly to peers never
# measured. (Both live in dhtquery.query.types: the core reads them.)

#: A peer's reputation score that ranks it as a peer never asked (0.75):
#: scores above it do not make a peer preferred, scores below make it later.
FAIR_SCORE: Final = PeerStats().score(0.0)
#: Seeds each lookup's draw of the order of candidates expected at the same
#: time (the core's splitmix64 generator).
_seed = random.Random().getrandbits
#: backend name -> its LookupCore class (the backend of the query manager)
_CORES: dict[str, type[LookupCore]] = {}
#: LookupCore class -> its backend's Candidates (the snapshot a lookup
#: starts from: ContactTable.lookup_candidates)
_SNAPSHOTS: dict[type[LookupCore], type[Candidates]] = {}
#: LookupCore class -> its backend's LookupAnswers (a lookup's requests'
#: callback)
_ANSWERS: dict[type[LookupCore], type[LookupAnswers]] = {}
#: LookupCore class -> its backend's Asker (a lookup's asks sent from the
#: core)
_ASKERS: dict[type[LookupCore], type[Asker]] = {}
_ASK: Final = LookupStep.ASK
_QUORUM: Final = LookupStep.QUORUM
_GIVE_UP: Final = LookupStep.GIVE_UP
_ENDED: Final = LookupStep.ENDED
#: (read once a lookup: a module's constant, not an enum class's attribute)
_ALL_PEERS: Final = Reason.ALL_PEERS
#: What a lookup asks: our RPC, or a stock peer's (known not to answer ours)
_OURS: Final = "find_values"
_STOCK: Final = "find_value"
_NAMES: Final = (_OURS, _STOCK)


def _core_class(manager: QueryManager) -> type[LookupCore]:
    backend = manager.backend
    core = _CORES.get(backend)
    if core is None:
        module = load_core(backend)[1]
        core = _CORES[backend] = module.LookupCore
        _SNAPSHOTS[core] = module.Candidates
        _ANSWERS[core] = module.LookupAnswers
        _ASKERS[core] = module.Asker
    return core


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

    # The counts live on the handle itself (the lookup writes them), or in
    # the lookup's core (its answers, counted there by LookupAnswers): a
    # lookup referencing its handle and the handle its lookup would make
    # every lookup a reference cycle, freed only by the cyclic GC (the core
    # references neither).
    __slots__ = (
        "_core",
        "_failed",
        "_requests",
        "_resent",
        "ended",
    )

    def __init__(
        self, owner: QueryManager, query_id: QueryId, loop: asyncio.AbstractEventLoop
    ) -> None:
        # (QueryHandle's fields are the query layer's: set by its __init__,
        # not written out here, though that saved 1.7 k instructions a
        # lookup: callgrind, a handle made 8.5 k -> 6.8 k)
        super().__init__(owner, query_id, loop)
        #: done(), with no Python frame: asked after every answer
        self.ended: Callable[[], bool] = self.done_function()
        self._requests = 0
        self._resent = 0
        self._failed = 0
        #: the lookup's core (set by StreamingLookup): its answers, the
        #: deepest, and the depth of the answer that completed the lookup
        #: (-1: none did)
        self._core: LookupCore | None = None

    @property
    def lookup_stats(self) -> LookupStats | None:
        """The lookup's :class:`LookupStats` once it has ended (None while
        it runs). Nothing that happens after the end (a late answer, a
        retransmission of a request still out) is counted."""
        core = self._core
        if not self.done() or core is None:
            return None
        final = core.final_depth
        return LookupStats(
            requests=self._requests,
            retransmissions=self._resent,
            hops=final if final >= 0 else core.max_depth,
            peers_answered=core.answers,
            peers_failed=self._failed,
        )


class LookupSetup:
    """What every lookup of a node shares, read once rather than per lookup:
    the core's class and the arguments of its LookupCore that are the same
    for every lookup, and the bound methods each lookup keeps. Made again
    if the protocol's ``peers`` change (``bench profile --banded`` gives
    the lookups another book)."""

    __slots__ = (
        "answers_class",
        "asker",
        "core_class",
        "manager",
        "own_id",
        "peer_finished",
        "peers",
        "protocol",
        "shared",
        "tail",
        "take",
    )

    def __init__(self, protocol: DhtProtocol, manager: QueryManager):
        self.protocol = protocol
        self.manager = manager
        self.core_class = _core_class(manager)
        self.answers_class = _ANSWERS[self.core_class]
        self.own_id = protocol.source_node.id
        self.peers = protocol.peers
        #: LookupCore's last arguments
        self.tail = (
            # (read in place: no call back per candidate)
            protocol.peers,
            protocol.clock.now,
            protocol.failed_recently,
            # (the dict is never replaced: its length says whether any
            # request failed lately)
            protocol.recently_failed.__len__,
        )
        # With expected_peers 0, peer_finished only counts the outcome's
        # peers_ok / peers_failed: it never completes the query.
        self.peer_finished = manager.peer_finished
        # an answer's records read through the verified ones, in one core
        # call (RecordCache.take; timeit, best of 7, one record: 1.39 us one
        # by one through RecordVerifier.from_wire, 0.80 us taken)
        cache = protocol.records.verifier.cache
        self.take = cache.take
        #: what every lookup's LookupAnswers shares: it offers an answer's
        #: records into the manager's core itself, and tells the manager
        #: what submit_answer would act on (the handle's wake, finish)
        self.shared = (
            manager.core,
            manager.clock.now,
            manager.finish,
            cache,
            protocol.reputation.book,
        )
        #: every lookup's asks sent from the core as ask_many sends them
        #: (its first ones, and those an answer leads to: LookupAnswers);
        #: None: every ask through _act (bench scale's --trace wraps it)
        self.asker: Asker | None = protocol.asker(_NAMES, _ASKERS[self.core_class])


class StreamingLookup:
    __slots__ = (
        "_bodies",
        "_core",
        "_ended",
        "_handle",
        "_key",
        "_latest",
        "_manager",
        "_peer_finished",
        "_protocol",
        "_rpc_timeout",
        "_setup",
        "_take",
    )

    def __init__(
        self,
        setup: LookupSetup,
        handle: LookupHandle,
        key: bytes,
        *,
        alpha: int,
        ksize: int,
        quorum: int,
        rpc_timeout: float | None,
    ) -> None:
        self._protocol = setup.protocol
        self._manager = setup.manager
        self._peer_finished = setup.peer_finished
        self._setup = setup
        self._handle = handle
        # (bound once: asked after every answer)
        self._ended = handle.ended
        self._take = setup.take
        self._key = key
        # None: each peer's RTO (adaptive); else the query's whole timeout
        self._rpc_timeout = rpc_timeout
        # every request of this lookup has the same arguments: its body,
        # packed once per RPC name
        self._bodies: dict[str, bytes] = {}
        #: slot -> (highest sequence seen, the peer that served it first)
        self._latest: dict[tuple[bytes, str], tuple[int, Any]] = {}
        #: the decisions: the k closest, whom to ask, when it is over
        self._core = setup.core_class(
            setup.own_id,
            key,
            alpha,
            ksize,
            quorum,
            rpc_timeout is None,
            FAIR_SCORE,
            _seed(64),
            *setup.tail,
        )
        handle._core = self._core

    def start(self, local: list[Record], own_address: Any) -> None:
        holders = 0
        if local:
            # This node holds the key too: it counts towards the quorum.
            holders = 1
            latest = self._latest
            for record in local:
                latest[record.slot] = (record.seq, None)
            entries = [(record.dedup_key, record) for record in local]
            self._manager.submit_many(self._handle.id, own_address, entries)
        if self._ended():
            return
        # the table's contacts and its replacement caches (ContactTable.candidates),
        # read by the core once until the table changes (the snapshot read
        # in place while it is the core's kind: no Python call)
        core = self._core
        router = self._protocol.router
        make = _SNAPSHOTS[type(core)]
        candidates = router.snapshot
        if type(candidates) is not make:
            candidates = router.lookup_candidates(make)
        step, depth, asks = core.start(candidates, holders)
        if step is _ASK and not asks:
            return
        # The requests' callback: it holds this lookup, which does not hold
        # it (the requests out do, as they held a bound method before). It
        # sends the asks an answer leads to itself (setup.asker), with the
        # lookup's bodies (ours packed now, a stock peer's when first
        # needed: _ask_stock).
        # (the first asks by the asker too, not _act and ask_many:
        # cachegrind, bench profile, 235.4 k -> 233.3 k and 234.9 k ->
        # 232.2 k instructions a get_all in two pairs of runs; see
        # rust/asker.rs for the asks after an answer)
        setup = self._setup
        asker = setup.asker
        if asker is None:
            answers = setup.answers_class(
                self, core, self._handle, self._key, self._latest, setup.shared
            )
            self._act(answers, step, depth, asks)
            return
        bodies = self._bodies
        if step is _ASK:
            bodies[_OURS] = pack_request(_OURS, (self._protocol.source_node.id, self._key))
        budget = self._rpc_timeout
        answers = setup.answers_class(
            self, core, self._handle, self._key, self._latest, setup.shared, (asker, bodies, budget)
        )
        if step is _ASK:
            asked = asker.ask(answers, asks, bodies, budget)
            if asked is not None:
                if asked < len(asks):
                    self._ask_stock(answers, asks[asked:])
                return
        self._act(answers, step, depth, asks)

    def _act(
        self, answers: LookupAnswers, step: LookupStep, depth: int, asks: list[tuple[bytes, Any]]
    ) -> None:
        """Do what the core said: send to ``asks`` (``answers`` hears of
        them), or end the lookup."""
        if step is _ASK:
            if not asks:
                return
            self._handle._requests += len(asks)
            bodies = self._bodies
            if not bodies:
                bodies[_OURS] = pack_request(_OURS, (self._protocol.source_node.id, self._key))
            # (the ask, (node id, address), is each request's context)
            asked = self._protocol.ask_many(
                asks, _NAMES, bodies, self._rpc_timeout, answers, answers.overdue
            )
            if asked < len(asks):
                self._ask_stock(answers, asks[asked:])
        elif step is _ENDED:
            return
        elif step is _QUORUM:
            # (the core noted the depth: final_depth)
            self._manager.finish(self._handle.id, _ALL_PEERS)
        elif step is _GIVE_UP:
            # Every peer still out is past its RTO and a holder has
            # answered: end with what the lookup has (adaptive), the silent
            # ones counted as failed.
            for _, address in asks:
                self._failed(address)
            self._manager.finish(self._handle.id, Reason.ADAPTIVE)
        else:
            reason = Reason.ADAPTIVE if step is LookupStep.ADAPTIVE else Reason.ALL_PEERS
            self._manager.finish(self._handle.id, reason)

    def _ask_stock(self, answers: LookupAnswers, asks: list[tuple[bytes, Any]]) -> None:
        """``asks`` from the first to a peer known stock on: its body
        (find_value's) packed once per lookup, when first needed."""
        protocol = self._protocol
        self._bodies[_STOCK] = pack_request(_STOCK, (protocol.source_node.id, self._key))
        protocol.ask_many(asks, _NAMES, self._bodies, self._rpc_timeout, answers, answers.overdue)

    def _overdue(self, answers: LookupAnswers, ask: tuple[bytes, Any]) -> None:
        """A request passed its RTO and was sent again: ask the next
        candidate now. The request stays out (its answer still counts).
        (Called by ``answers.overdue`` made without an Asker: with one, it
        does this itself, ``_act`` called only where the protocol would
        queue the asks or the step is not ASK.)"""
        if self._ended():
            return
        self._handle._resent += 1
        self._act(answers, *self._core.overdue(ask[0], ask[1]))

    # -- answers ------------------------------------------------------

    def _answered(
        self,
        answers: LookupAnswers,
        ask: tuple[bytes, Any],
        address: Any,
        name: str,
        ok: bool,
        value: Any,
    ) -> None:
        """An answer ``answers`` leaves to Python (not ok, after the end,
        not a find_values dict, or records to check in full): read here,
        its records and contacts handed back to ``answers.settle``."""
        core = self._core
        if not ok:
            if value is BAD_RESPONSE:
                # Malformed (the protocol counted it as bad_response): the
                # peer failed, though not by its RTO.
                self._failed(address)
                mode = LookupFailure.BAD_RESPONSE
            elif name == "find_values" and self._protocol.extensions.get(address) is False:
                # A stock peer: ask it again the way it understands.
                mode = LookupFailure.STOCK
            else:
                self._failed(address)
                mode = LookupFailure.TIMEOUT
            self._act(answers, *core.failed(ask[0], mode, self._ended()))
            return
        if self._ended():
            depth = core.answered(ask[0], (), False, True)[1]
            if depth > 1:
                self._welcome(ask)
            return
        if type(value) is dict and name == "find_values":
            records = self._records(value, address)
            contacts = value.get("nodes", ())
        else:
            records, contacts = self._read(name, value, address)
        answers.settle(ask, address, records, contacts)

    def _answered_then(
        self,
        answers: LookupAnswers,
        ask: tuple[bytes, Any],
        depth: int,
        step: LookupStep | None,
        asks: list[tuple[bytes, Any]],
    ) -> None:
        """What an answer leaves to Python once ``answers`` has counted it:
        welcome its peer if learnt from an answer (``depth`` > 1), and act
        on ``step`` (None: nothing to do). Not for a step ASK: ``answers``
        sends those asks itself (its Asker), calling ``_welcome`` first and
        ``_act`` only if the protocol would queue them."""
        if depth > 1:
            self._welcome(ask)
        if step is not None:
            self._act(answers, step, depth, asks)

    def _welcome(self, ask: tuple[bytes, Any]) -> None:
        """Learnt from an answer, and it answered us: a live contact the
        routing table takes in, as stock's crawl does with every peer that
        answers (without it a client's table stayed at 22 contacts against
        stock's ~130 at 1,000 nodes, and its lookups took 2.15 hops against
        1.29: bench scale). Table contacts (depth 1) are known already: no
        cost on the common path."""
        host, port = ask[1]
        self._protocol.welcome_if_new(Node(ask[0], host, port))

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
        their dedup keys. Copies of records verified before, of this key,
        unexpired and of the sequence seen (or of a new slot), the core
        takes in one call (``RecordCache.take``); from the first it does
        not take on, ``_check`` reads them one by one."""
        raws = value.get("records", ())
        records, taken = self._take(raws, self._key, self._latest, address)
        if taken != len(raws):
            records += self._check(raws, taken, address)
        return records

    def _check(self, raws: list[Any], start: int, address: Any) -> list[tuple[bytes, Record]]:
        """``raws[start:]`` checked one by one. A record refused is counted
        by kind and lowers the serving peer's reputation; so does an older
        record of a slot a peer served before a newer one arrived from
        another."""
        records = []
        protocol = self._protocol
        verifier = protocol.records.verifier
        latest = self._latest
        key = self._key
        for raw in raws[start:]:
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

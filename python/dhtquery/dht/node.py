"""DhtNode: a kademlia ``Server`` on dhtquery's protocol, with multi-record
keys and streaming lookups into a QueryManager.

``listen``, ``bootstrap``, ``stop``, ``get`` and ``set`` keep kademlia's
meaning (and interoperate with stock kademlia 2.2.3 nodes: plain values stay
unsigned). New: ``await node.put(key, data, publisher=...)`` stores a record
signed by a :class:`Publisher` (default: the node's own key), one per
public key and name under a key, and ``node.get_all(key)`` returns a
QueryHandle that streams every publisher's record, verified, as holders
answer.

A node that only asks (``DhtNode(client=True)``: every CLI search and
publish) runs in client mode, as libp2p's kad-dht has it: its requests say
so (a marker in the message id, see ``wire.CLIENT_PAD``), our nodes
answer them but never add it to their routing tables nor hand it records,
and it keeps no copy of what it publishes (it leaves soon).

What a node publishes with ``put`` it republishes every
``republish_interval`` seconds (stock kademlia: 3600) and after a restart
(see :mod:`.republish`); with a ``data_dir`` it keeps that list, what it
holds and its contacts in SQLite (:mod:`.persist`), and ``table(name)``
gives the layers above a key-value table of their own in the same file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from hashlib import sha1
from pathlib import Path
from typing import Any, Final

from kademlia.crawling import NodeSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.utils import digest

from ..errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    NotListeningError,
    StorageFull,
    UnsupportedError,
)
from ..query import Clock, QueryConfig, QueryManager, backend_of, load_core
from .lookup import LookupHandle, LookupSetup, StreamingLookup
from .persist import DATABASE_NAME, KeyValueTable, NodeDatabase
from .protocol import DhtProtocol, RpcSpec, peer_book_for
from .records import Record, RecordError, RecordVerifier
from .republish import DEFAULT_INTERVAL, Republisher
from .reputation import Reputation
from .rpc_table import Reply
from .signing import Publisher
from .storage import PlainStorage, RecordStore, StoreLimits
from .transport import batch_receiver, listen_batched

__all__ = ["DhtNode"]

log = logging.getLogger("dhtquery.dht")

Address = tuple[str, int]
#: Bootstrap retries: the first pause, its cap as it doubles, and a bound on
#: the rounds whatever the clock does.
_BOOTSTRAP_FIRST_PAUSE: Final = 0.25
_BOOTSTRAP_MAX_PAUSE: Final = 2.0
_BOOTSTRAP_MAX_ATTEMPTS: Final = 1000
#: A retried bootstrap ping waits the peer's RTO, at least this long (as
#: kademlia's own RPCs do), and near the deadline at least the second.
_BOOTSTRAP_MIN_RTO: Final = 0.5
_BOOTSTRAP_MIN_PING: Final = 0.05
#: kademlia's id space (its bucket ranges) is 160 bits
_REFRESH_ID_BITS: Final = 160
#: lookups of a join's refresh at most (one per distance farther than the
#: closest contact: about log2 of the network's size)
REFRESH_MAX_LOOKUPS: Final = 32
#: of which this many run at once
REFRESH_IN_FLIGHT: Final = 2


class DhtNode(Server):  # type: ignore[misc]
    """``queries`` is the QueryManager lookups run in (its core, clock and
    timer are the node's; default: a new manager on ``config``). ``config``
    defaults to the manager's. ``client``: client mode (see the module's
    docstring). ``republish_interval``: seconds between republishing rounds
    of what this node published (None: only after a restart). ``verifier``
    checks every record the node stores or returns (default: one on the
    node's clock, remembering what it verified). ``batched_receive``: read
    the socket in batches (``transport.BatchedTransport``: one ``recvmmsg``
    a wake-up) rather than through the loop's datagram transport; None (the
    default): when the node's core is the Rust one, on Linux."""

    protocol_class = DhtProtocol
    #: the socket's transport while listening (kademlia's attribute)
    transport: Any

    def __init__(
        self,
        ksize: int = 20,
        alpha: int = 3,
        node_id: bytes | None = None,
        storage: Any = None,
        *,
        queries: QueryManager | None = None,
        config: QueryConfig | None = None,
        limits: StoreLimits | None = None,
        data_dir: Path | str | None = None,
        client: bool = False,
        republish_interval: float | None = DEFAULT_INTERVAL,
        verifier: RecordVerifier | None = None,
        batched_receive: bool | None = None,
    ) -> None:
        if queries is not None and not isinstance(queries, QueryManager):
            raise InvalidArgumentTypeError(
                f"queries must be a QueryManager, got {type(queries).__name__}"
            )
        if config is None:
            config = queries.config if queries is not None else QueryConfig()
        #: lookups (get_all) run as queries of this manager: its metrics are
        #: the node's query metrics.
        self.queries = QueryManager(config) if queries is None else queries
        self.config = config
        self.clock: Clock = self.queries.clock
        #: what every get_all shares (made on the first, and again if the
        #: protocol changes)
        self._lookup_setup: LookupSetup | None = None
        #: the node's file when it has a ``data_dir`` (None: memory only):
        #: its id, records, plain values and contacts survive a restart
        self.database = None if data_dir is None else NodeDatabase(Path(data_dir) / DATABASE_NAME)
        if self.database is not None:
            kept_id = self.database.node_id()
            node_id = node_id if node_id is not None else kept_id
        limits = limits or StoreLimits()
        if storage is None:
            storage = PlainStorage(limits, self.clock, self.database)
        super().__init__(ksize, alpha, node_id, storage)
        if self.database is not None:
            self.database.set_node_id(self.node.id)
        # kademlia's Server does ``storage or ForgetfulStorage()``: an empty
        # store (one that defines __len__) is falsy and would be replaced.
        self.storage = storage
        #: checks every record this node stores or hands to a caller, and
        #: remembers the ones it verified
        if verifier is not None and not isinstance(verifier, RecordVerifier):
            raise InvalidArgumentTypeError(
                f"verifier must be a RecordVerifier, got {type(verifier).__name__}"
            )
        self.verifier = (
            RecordVerifier(self.clock.wall, backend=self.queries.backend)
            if verifier is None
            else verifier
        )
        self.records = RecordStore(
            limits, clock=self.clock, database=self.database, verifier=self.verifier
        )
        #: the key the node signs its records with when ``put`` is given no
        #: publisher (kept in its database, if it has one)
        self.identity = self._identity()
        #: client mode: never in our peers' routing tables, holds nothing
        self.client = bool(client)
        #: what this node published, stored again periodically
        self.republisher = Republisher(
            self._store_record,
            self.clock,
            self.database,
            interval=republish_interval,
            listening=lambda: self.listening,
        )
        self.protocol: DhtProtocol | None = None
        self._extra_rpcs: dict[str, RpcSpec] = {}
        #: kept across listen()s, so a restarted socket keeps what it learnt
        self.reputation = Reputation(book=peer_book_for(self.queries))
        #: while bootstrap() retries: when it gives up
        self._bootstrap_deadline: float | None = None
        self._on_stop: list[Callable[[], object]] = []
        backend = backend_of(self.queries.core)
        if batched_receive is None:
            batched_receive = backend == "rust" and sys.platform == "linux"
        #: the core module whose BatchReceiver reads the socket (None: the
        #: loop's own datagram transport reads it)
        self._batch_core = load_core(backend)[1] if batched_receive else None

    def _identity(self) -> Publisher:
        database = self.database
        seed = None if database is None else database.publisher_seed()
        if seed is not None:
            return Publisher(seed)
        identity = Publisher.generate()
        if database is not None:
            database.set_publisher_seed(identity.seed)
        return identity

    def _create_protocol(self) -> Any:
        protocol_class: Any = self.protocol_class
        if not issubclass(protocol_class, DhtProtocol):
            # A protocol derived from stock kademlia's, as Server allows: the
            # node then runs stock's protocol, and what needs dhtquery's
            # (put, get_all, stats, extension RPCs) says so when asked.
            return protocol_class(self.node, self.storage, self.ksize)
        protocol = protocol_class(
            self.node,
            self.storage,
            self.ksize,
            records=self.records,
            queries=self.queries,
            reputation=self.reputation,
            extra_rpcs=self._extra_rpcs,
        )
        protocol.client = self.client
        return protocol

    async def listen(self, port: int, interface: str = "0.0.0.0") -> None:
        """kademlia's listen (on a ``BatchedTransport`` with
        ``batched_receive``); the republishing rounds start with it."""
        if self._batch_core is None:
            await super().listen(port, interface)
        else:
            receiver = batch_receiver(self._batch_core)
            self.transport, protocol = await listen_batched(
                self._create_protocol,
                (interface, port),
                receiver,
                self._batch_core.DatagramSocket,
            )
            self.protocol = protocol  # type: ignore[assignment]
            log.debug("node %i listening on %s:%i", self.node.long_id, interface, port)
            self.refresh_table()
        self.republisher.start()

    def add_rpc(self, name: str, spec: RpcSpec) -> None:
        """Serve an extension RPC (see :class:`RpcSpec`), now and after any
        later ``listen``. Stock kademlia peers do not answer these."""
        if self.protocol is not None:
            self.protocol.add_rpc(name, spec)
        self._extra_rpcs[name] = spec

    @property
    def listening(self) -> bool:
        """Whether the node has a socket (``listen()`` ran, ``stop()`` did not)."""
        return self.protocol is not None and self.transport is not None

    @property
    def address(self) -> Address:
        """The (host, port) this node listens on."""
        if self.transport is None:
            raise NotListeningError("the node is not listening: call listen() first")
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def publisher(self) -> str:
        """Who this node's own records are by: its identity's public key, in
        hex (``record.publisher`` of what it puts without a publisher)."""
        return self.identity.key_id

    def known_peers(self) -> list[Address]:
        """The contacts this node had when it last stopped (from its data
        directory; [] without one): a restarted node rejoins through them."""
        if self.database is None:
            return []
        return [(host, port) for _, host, port in self.database.contacts()]

    def table(self, name: str) -> KeyValueTable | None:
        """The key-value table ``name`` (bytes -> bytes) in this node's
        database, for a layer above that keeps state across restarts (the
        registry's catalog); None for a node without a data directory."""
        return None if self.database is None else self.database.table(name)

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the node stops, before its socket closes
        (a layer above ends its timers and tasks there)."""
        self._on_stop.append(callback)

    def stop(self) -> None:
        for callback in self._on_stop:
            try:
                callback()
            except Exception:  # one layer's bug must not keep the node up
                log.exception("dhtquery: error in a stop callback")
        self.republisher.stop()
        if self.database is not None:
            contacts = [(node.id, node.ip, node.port) for node in self.peers()]
            if contacts:
                self.database.save_contacts(contacts)
        self.queries.close()
        super().stop()
        # (kademlia keeps the closed transport: forget it, so ``listening``
        # and ``address`` tell the truth after a stop)
        self.transport = None

    # -- what the layers above may know and do -----------------------

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters of the node's transport: datagrams served, dropped (by
        kind: short, bad_kind, malformed, bad_utf8, oversize_request,
        unknown_rpc, bad_args, bad_request, wrong_address, unknown_id,
        late_response, bad_response, bad_record, and the records refused:
        bad_signature, stale_sequence, wrong_slot, expired, ...), timeouts."""
        return dict(self._protocol().stats)

    @property
    def drops(self) -> Mapping[str, int]:
        """Datagrams dropped, by kind only (``stats`` has them too, among
        other counters)."""
        return dict(self._protocol().drops)

    def count(self, kind: str, dropped: bool = False) -> None:
        """Count an event in ``stats`` (a layer above refusing what a peer
        sent, say); ``dropped``: also as a dropped datagram of that kind."""
        protocol = self._protocol()
        if dropped:
            protocol.drop(kind)
        else:
            protocol.stats[kind] += 1

    @property
    def peer_count(self) -> int:
        """Contacts in the routing table."""
        if self.protocol is None:
            return 0
        return sum(len(bucket) for bucket in self.protocol.router.buckets)

    def peers(self) -> list[Node]:
        """Every contact in the routing table."""
        if self.protocol is None:
            return []
        return [node for bucket in self.protocol.router.buckets for node in bucket.get_nodes()]

    def neighbors(self, target: bytes | None = None, k: int | None = None) -> list[Node]:
        """The ``k`` (default ksize) contacts closest to ``target`` (default:
        this node's id), closest first."""
        if self.protocol is None:
            return []
        node = self.node if target is None else Node(target)
        return list(self.protocol.router.find_neighbors(node, k=k or self.ksize))

    def forget(self, address: Address) -> bool:
        """Drop the contact at ``address`` from the routing table; False if
        there was none."""
        return self.protocol is not None and self.protocol.forget(address, keep_last=False)

    @property
    def pending_requests(self) -> int:
        """RPCs on the wire or waiting in the window."""
        return 0 if self.protocol is None else self.protocol.pending

    def supports_extensions(self, address: Address) -> bool | None:
        """Whether the peer answers our extension RPCs: True, False (a stock
        kademlia peer), or None (not known yet)."""
        return None if self.protocol is None else self.protocol.extensions.get(address)

    def request(
        self,
        address: Address,
        name: str,
        args: tuple[Any, ...],
        timeout: float | None = None,
        *,
        on_overdue: Callable[[], object] | None = None,
    ) -> asyncio.Future[Reply]:
        """Send RPC ``name``; the future gives (True, value), or (False, None)
        once the peer's RTO (or ``timeout``) passes or if the answer has the
        wrong shape.

        With ``on_overdue``, a request unanswered within the peer's RTO is
        sent again (same message id, RTO doubled: RFC 6298) while
        ``timeout`` lasts (None: a few RTOs), and ``on_overdue()`` is called
        at each resend, the first telling that the peer is late: the caller
        may ask another meanwhile, and an answer to any copy still counts."""
        protocol = self._protocol()
        if on_overdue is None:
            return protocol.request(address, name, args, timeout)
        return protocol.request(address, name, args, timeout, lambda _context: on_overdue())

    def _protocol(self) -> DhtProtocol:
        protocol = self.protocol
        if protocol is None:
            raise NotListeningError("the node is not listening: call listen() first")
        if not isinstance(protocol, DhtProtocol):
            raise UnsupportedError(
                f"this needs dhtquery's DhtProtocol; protocol_class is "
                f"{type(protocol).__qualname__}, a stock kademlia protocol"
            )
        return protocol

    async def bootstrap(self, addrs: Sequence[Address], *, retry_for: float = 0.0) -> list[Node]:
        """kademlia's bootstrap, with host names as well as IP literals (a
        peer answers from its address, which must be the one asked).

        ``retry_for`` > 0: until then (seconds on the node's clock), ask
        again with back-off while no peer has answered, so nodes started in
        either order find each other. Returns the nodes found ([] if none
        answered in time)."""
        if retry_for < 0 or retry_for != retry_for:
            raise InvalidArgumentError(f"retry_for must be >= 0 seconds, got {retry_for!r}")
        if retry_for == 0:
            return await self._joined(await super().bootstrap(await self._resolve(addrs)))
        deadline = self._bootstrap_deadline = self.clock.now() + retry_for
        pause = _BOOTSTRAP_FIRST_PAUSE
        try:
            for attempt in range(_BOOTSTRAP_MAX_ATTEMPTS):
                found: list[Node] = await super().bootstrap(await self._resolve(addrs))
                left = deadline - self.clock.now()
                if found or self.peer_count or left <= 0:
                    return await self._joined(found)
                log.info("bootstrap: no answer (try %d), again in %.1f s", attempt + 1, pause)
                await self._sleep(min(pause, left))
                pause = min(pause * 2, _BOOTSTRAP_MAX_PAUSE)
            return []
        finally:
            self._bootstrap_deadline = None

    async def _joined(self, found: list[Node]) -> list[Node]:
        """After a bootstrap (kademlia's: a lookup of this node's own id):
        the far buckets are refreshed, and a node restarted with
        publications on file republishes them now that it has peers again."""
        if found and not self.client and isinstance(self.protocol, DhtProtocol):
            # (a stock protocol_class runs stock kademlia's join, as it is)
            await self.refresh_buckets()
        if self.republisher.restored and (found or self.peer_count):
            self.republisher.soon()
        return found

    async def refresh_buckets(self) -> int:
        """Look up one random id at each distance farther than this node's
        closest contact: an id whose first differing bit from this node's id
        is bit ``i``, for each ``i`` above the closest contact's (kademlia's
        node crawl, from the k contacts closest to it, REFRESH_IN_FLIGHT at a
        time); returns
        how many lookups ran (at most REFRESH_MAX_LOOKUPS, about log2 of the
        network's size).

        ``bootstrap`` runs it after its lookup of the node's own id, as the
        Kademlia paper's join prescribes (section 2.3: the joining node
        "refreshes all k-buckets further away than its closest neighbor";
        by distance, as libp2p's refresh does, since kademlia's buckets
        split only near the node's own id). kademlia 2.2.3's join does not,
        and refreshes a bucket only after an hour without a lookup in it.
        Measured with ``dhtquery bench scale`` at 1,000 nodes: without a
        refresh tables held 23-80 contacts, 8 of 300 keys were stored 120-140
        ranks away from the key (a whole subtree unknown to the publisher's
        region) and 2-10 % of lookups failed; with one, ~217 contacts."""
        protocol = self._protocol()
        own = self.node.long_id
        closest = protocol.router.find_neighbors(self.node, 1, exclude=self.node)
        if not closest:
            return 0
        # bits of the id space above the first one in which the closest
        # contact differs from this node
        shared = _REFRESH_ID_BITS - (own ^ closest[0].long_id).bit_length()
        targets = []
        for bit in range(min(shared, REFRESH_MAX_LOOKUPS)):
            low_bits = _REFRESH_ID_BITS - 1 - bit
            target_id = (own ^ (1 << low_bits)) & ~((1 << low_bits) - 1)
            target_id |= random.getrandbits(low_bits) if low_bits else 0
            target = Node(target_id.to_bytes(_REFRESH_ID_BITS // 8, "big"))
            targets.append(target)
        # REFRESH_IN_FLIGHT at a time: one join costs the network little at
        # any moment (256 joins of bench scale each running ~10 crawls at
        # once kept 2 cores saturated and made requests miss their RTOs)
        pending = iter(targets)

        async def worker() -> None:
            for target in pending:
                nearest = protocol.router.find_neighbors(target, self.ksize)
                if nearest:
                    crawl = NodeSpiderCrawl(protocol, target, nearest, self.ksize, self.alpha)
                    await crawl.find()

        await asyncio.gather(*(worker() for _ in range(REFRESH_IN_FLIGHT)))
        return len(targets)

    async def bootstrap_node(self, addr: Address) -> Node | None:
        """kademlia's first ping of a bootstrap peer; while ``bootstrap``
        retries, each ping waits the peer's RTO but never past the deadline."""
        protocol = self.protocol
        deadline = self._bootstrap_deadline
        if deadline is None or not isinstance(protocol, DhtProtocol):
            return await super().bootstrap_node(addr)
        left = deadline - self.clock.now()
        wait = max(_BOOTSTRAP_MIN_PING, min(left, max(_BOOTSTRAP_MIN_RTO, protocol.rtt(addr).rto)))
        ok, node_id = await protocol.request(addr, "ping", (self.node.id,), wait)
        return Node(node_id, addr[0], addr[1]) if ok else None

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the node's clock (a test's FakeClock too)."""
        woken = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.clock.call_at(self.clock.now() + seconds, wake)
        try:
            await woken
        finally:
            timer.cancel()

    async def _resolve(self, addrs: Sequence[Address]) -> list[Address]:
        loop = asyncio.get_running_loop()
        family = socket.AF_UNSPEC
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            family = sock.family if sock is not None else family
        resolved = []
        for host, port in addrs:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                try:
                    infos = await loop.getaddrinfo(
                        host, port, family=family, type=socket.SOCK_DGRAM
                    )
                except OSError as exc:
                    log.warning("bootstrap peer %s:%s: cannot resolve (%s)", host, port, exc)
                    continue
                host = str(infos[0][4][0])
            resolved.append((host, port))
        return resolved

    # -- records ------------------------------------------------------

    async def put(
        self,
        key: str | bytes,
        data: bytes,
        *,
        publisher: Publisher | None = None,
        name: str = "",
        seq: int | None = None,
        expires: int = 0,
    ) -> int:
        """Store ``data`` as a record signed by ``publisher`` (default: this
        node's identity) under ``key`` on the k closest nodes, this one
        included if it is among them; a key holds one record per public key
        and ``name``, replaced only by a record of a higher ``seq`` (default:
        the wall clock in microseconds, above any this publisher signed for
        the slot). ``expires``: unix time after which holders drop it (0:
        their TTL only). The record is republished every
        ``republish_interval`` and after a restart (``unpublish`` stops it).
        Returns how many nodes hold it (a node whose store is full or holds
        a higher sequence, this one included, refuses and is not counted; a
        client never keeps a copy)."""
        return await self.put_record(
            self.sign(key, data, publisher=publisher, name=name, seq=seq, expires=expires)
        )

    def sign(
        self,
        key: str | bytes,
        data: bytes,
        *,
        publisher: Publisher | None = None,
        name: str = "",
        seq: int | None = None,
        expires: int = 0,
    ) -> Record:
        """The record ``put`` would store (same arguments), signed, not sent."""
        if publisher is None:
            publisher = self.identity
        elif not isinstance(publisher, Publisher):
            raise InvalidArgumentTypeError(
                f"publisher must be a Publisher (a key pair; Publisher.load(path) or "
                f"Publisher.generate()), got {type(publisher).__name__}"
            )
        if not isinstance(name, str):
            raise InvalidArgumentTypeError(f"name must be a str, got {type(name).__name__}")
        dkey = digest(_check_key(key))
        if seq is None:
            seq = publisher.next_seq(dkey, name, int(self.clock.wall() * 1_000_000))
        try:
            return Record.create(
                publisher, dkey, _check_bytes("data", data), name=name, seq=seq, expires=expires
            )
        except RecordError as exc:
            raise InvalidArgumentError(str(exc)) from None

    async def put_record(self, record: Record) -> int:
        """Store a signed record (``sign``'s) under its key on the k closest
        nodes and republish it, as ``put`` does; returns how many nodes
        hold it."""
        if not isinstance(record, Record) or not record.signed:
            raise InvalidArgumentTypeError(
                f"record must be a signed Record, got {type(record).__name__}"
            )
        self._protocol()
        self.republisher.remember(record.target, record)
        return await self._store_record(record.target, record)

    def unpublish(
        self, key: str | bytes, *, publisher: Publisher | str | None = None, name: str = ""
    ) -> bool:
        """Stop republishing the record ``put`` stored under ``key`` for
        ``publisher`` (a Publisher or its key in hex; default: this node's
        identity) and ``name`` (holders keep it until its TTL); False if
        this node did not publish it."""
        key_id = publisher.key_id if isinstance(publisher, Publisher) else publisher
        return self.republisher.forget(digest(_check_key(key)), key_id or self.publisher, name)

    async def _store_record(self, dkey: bytes, record: Record) -> int:
        """Store ``record`` on the k closest nodes to ``dkey`` (and here if
        this node is among them); how many hold it."""
        protocol = self._protocol()
        target = Node(dkey)
        nearest = protocol.router.find_neighbors(target)
        stored = 0
        if nearest:
            spider = NodeSpiderCrawl(protocol, target, nearest, self.ksize, self.alpha)
            nodes = await spider.find()
        else:
            nodes = []
        if not self.client and (
            len(nodes) < self.ksize
            or self.node.distance_to(target) < max(n.distance_to(target) for n in nodes)
        ):
            # Among the k closest (fewer than k nodes means all of them).
            # A full store here refuses as a full peer does: not stored.
            try:
                self.records.put(dkey, record, self.clock.now())
                stored += 1
            except (StorageFull, RecordError) as exc:
                self.count("store_refused")
                log.debug("kept no local copy of %s: %s", dkey.hex(), exc)
        replies = await asyncio.gather(
            *(protocol.call_store_record(node, dkey, record) for node in nodes)
        )
        stored += sum(1 for ok, value in replies if ok and value is True)
        return stored

    def get_all(
        self,
        key: str | bytes,
        *,
        max_results: int | None = None,
        timeout: float | None = None,
        quorum: int | None = None,
    ) -> LookupHandle:
        """Look up every record stored under ``key``. Await the handle for the
        QueryOutcome (items are :class:`Record`), or ``async for`` the
        records as they arrive. ``quorum`` (default: the config's
        ``fan_out``) holders answering with their records end the lookup.
        Once it has ended, ``handle.lookup_stats`` tells what it cost
        (:class:`LookupStats`: requests, retransmissions, hops)."""
        setup = self._lookup_setup
        # (made again for another protocol, or another book in its peers)
        if (
            setup is None
            or setup.protocol is not self.protocol
            or setup.peers is not setup.protocol.peers
        ):
            setup = self._lookup_setup = LookupSetup(self._protocol(), self.queries)
        config = self.config
        quorum = config.fan_out if quorum is None else quorum
        # (an int's type asked first: the isinstance calls only otherwise)
        if type(quorum) is not int and (isinstance(quorum, bool) or not isinstance(quorum, int)):
            raise InvalidArgumentTypeError(f"quorum must be an int, got {type(quorum).__name__}")
        if quorum < 1:
            raise InvalidArgumentError(f"quorum must be >= 1, got {quorum!r}")
        # (_key_digest's common case written out: callgrind, -0.35 k
        # instructions a lookup)
        dkey = sha1(key.encode()).digest() if type(key) is str else _key_digest(key)
        timeout = config.default_timeout if timeout is None else timeout
        handle = self.queries.start_as(
            LookupHandle, expected_peers=0, timeout=timeout, max_results=max_results
        )
        lookup = StreamingLookup(
            setup,
            handle,
            dkey,
            # (read per lookup: a node's alpha and ksize may be changed)
            alpha=self.alpha,
            ksize=self.ksize,
            quorum=quorum,
            rpc_timeout=None if config.adaptive_timeout else timeout,
        )
        # (a key held here or not, asked in C first: a client holds none,
        # and RecordStore.get's frame was spent to say so: callgrind, -1.2 k
        # instructions a lookup)
        records = self.records
        local = records.get(dkey, self.clock.now()) if records.holds(dkey) else []
        # (the address is read from the socket: only when it is needed)
        lookup.start(local, self.address if local else None)
        return handle


def _key_digest(key: object) -> bytes:
    """kademlia's ``digest`` of a checked key (str or bytes), in one call
    for the common types."""
    if type(key) is str:
        return sha1(key.encode()).digest()
    if type(key) is bytes:
        return sha1(key).digest()
    return digest(_check_key(key))  # type: ignore[no-any-return]


def _check_key(key: object) -> str | bytes:
    if not isinstance(key, str | bytes):
        raise InvalidArgumentTypeError(f"key must be str or bytes, got {type(key).__name__}")
    return key


def _check_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidArgumentTypeError(f"{name} must be bytes, got {type(value).__name__}")
    return value

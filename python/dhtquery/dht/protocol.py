"""DhtProtocol: kademlia's protocol on a faster, hardened transport.

What changes against stock rpcudp/kademlia:
- datagrams are decoded with msgpack's C codec and served in
  ``datagram_received`` itself (rpcudp makes a Task per datagram);
- outstanding requests live in a query core with one loop timer
  (rpcudp makes a ``call_later`` per request), each timing out after the
  peer's RTO;
- anything wrong with a datagram (framing, msgpack, UTF-8, size, unknown RPC,
  argument count or types, a response from the wrong address or for an
  unknown id) is counted by kind in ``stats`` and dropped: no exception ever
  reaches the event loop, and the node goes on answering;
- extension RPCs: ``find_values`` (every record of a key) and
  ``store_record``. A stock peer does not answer them; a peer that answers
  other RPCs but not these is marked as not supporting them, not as dead.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import functools
import inspect
import logging
import socket
import sys
import termios
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from rpcudp.protocol import RPCProtocol

from ..errors import InvalidArgumentError, NotListeningError, RecordError, StorageFull
from ..query import (
    QueryManager,
    backend_of,
    load_core,
    new_core,
    new_fair_share,
    new_peer_book,
    shapes,
)
from .fairness import OVERLOAD_FRACTION, OVERLOAD_MIN_BYTES
from .records import Record
from .replay import replay_cache
from .reputation import Reputation
from .routing import ContactTable
from .rpc_table import (
    BAD_RESPONSE,
    DATAGRAM_ANSWERED,
    DATAGRAM_BAD_SHAPE,
    DATAGRAM_CHECKED,
    DATAGRAM_DROP,
    DATAGRAM_FAILED,
    DATAGRAM_HANDLED,
    DATAGRAM_NOT_PENDING,
    DATAGRAM_REPLAYED,
    DATAGRAM_REQUEST,
    DATAGRAM_SERVED,
    DATAGRAM_SHED,
    Callback,
    Reply,
    RpcStatus,
    RpcTable,
)
from .rtt import PeerRtt
from .storage import PlainStorage, RecordStore
from .wire import (
    CLIENT_PAD,
    REQUEST,
    WireError,
    decode,
    frame_response,
    pack_request,
    pack_response,
)

if TYPE_CHECKING:
    from .._core import Asker
    from ..query import FairShare, PeerBook, ReplayCache
    from .rpc_table import _Pending

__all__ = ["STOCK_RPCS", "DhtProtocol", "RpcSpec", "peer_book_for"]

_any = shapes.any_value
_node_id = shapes.node_id
_two_ids = shapes.node_id_pair
_plain = shapes.plain

log = logging.getLogger("dhtquery.dht")

Address = tuple[str, int]
#: What a stock kademlia node answers; any other RPC is an extension of ours.
STOCK_RPCS: Final = frozenset({"stun", "ping", "store", "find_node", "find_value"})
# Bytes of records one find_values answer may carry, leaving room for its
# contacts (k of them, ~45 bytes each) within one datagram.
_RECORDS_BUDGET: Final = 62_000
# msgpack headers, public key (32), target (20), seq and
# expiry (9 each at most), signature (64)
_RECORD_FRAMING: Final = 160
_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
#: Packed find_values answers kept, and as many find_value answers (keys,
#: bytes at most, each RPC's; the oldest made leave first): a hot key is
#: answered by framing the bytes packed before.
PACKED_ANSWERS_KEPT: Final = 1024
PACKED_ANSWERS_BYTES: Final = 1024 * 1024
# getsockopt(SOL_SOCKET, SO_MEMINFO) (Linux; not in the socket module): nine
# u32 counters, the first the receive queue's bytes
_SO_MEMINFO: Final = 55
_MEMINFO_SIZE: Final = 36
#: Requests on the wire at once (see DhtProtocol.request). Small enough that
#: a window's answers are read well within the 50 ms RTO floor (256 at up to
#: ~50 us each, the slowest loop and core, take ~13 ms); large enough that
#: 64 lookups in flight, 3 requests each, never wait: a queued request costs
#: an extra ~1 us to keep and send later.
MAX_OUTSTANDING: Final = 256
#: Slots of the window that background requests (kademlia's own RPCs:
#: bootstrap, crawls, pings, stores, the hand-over of values to new nodes,
#: liveness probes) can never take: the node's own requests always have them.
RESERVED_FOR_OWN: Final = 64
#: Bounds of the queues of requests waiting for the window; a request beyond
#: them fails at once ((False, None)), counted as ``queue_full`` /
#: ``queue_full_background`` in ``drops``.
MAX_WAITING: Final = 16_384
MAX_WAITING_BACKGROUND: Final = 1024
#: Stores of values handed over to new nodes (kademlia's welcome_if_new):
#: queued at most this many, sent at most HANDOVER_IN_FLIGHT at once.
HANDOVER_QUEUE: Final = 1024
HANDOVER_IN_FLIGHT: Final = 8
#: New node ids one address may introduce: a burst of this many, then one
#: per INTRODUCE_INTERVAL seconds (one address is one node; a restarted node
#: comes back with a new id).
INTRODUCE_BURST: Final = 3
INTRODUCE_INTERVAL: Final = 2.0
_INTRODUCERS_KEPT: Final = 4096
#: A node id learned from a request (not from an answer to one of ours) is
#: added to the routing table only once a ping to that address is answered
#: by that id: a sender that never answers (a flood from silent sockets,
#: measured: 96 such ids filled a target's table and made its own lookups
#: fail, ``dhtquery bench barrage``) never becomes a contact. At most
#: VERIFY_IN_FLIGHT pings at once (beyond: ``verify_dropped``), each
#: retransmitted within VERIFY_TIMEOUT.
VERIFY_IN_FLIGHT: Final = 256
VERIFY_TIMEOUT: Final = 4.0
#: (address, id) pairs verified, remembered (the oldest forgotten first) so
#: a peer the table cannot take (its bucket full) is not pinged again for
#: every request it makes
_VERIFIED_KEPT: Final = 4096
#: Failures in a row after which a peer is probed for liveness: a ping
#: retransmitted within LIVENESS_TIMEOUT. Only a probe that goes unanswered
#: takes the peer out of the routing table, so loss alone (10 % of datagrams
#: makes 3 lost requests in a row likely over a day) does not.
FORGET_AFTER_FAILURES: Final = 3
#: Estimators kept per IP address for srtt()'s fallback (the first made).
RTT_PER_IP: Final = 8
LIVENESS_TIMEOUT: Final = 4.0
#: A peer whose request failed is not taken as a candidate from others'
#: answers for this long (unless it answers meanwhile).
RECENT_FAILURE: Final = 30.0
_RECENT_FAILURES_KEPT: Final = 4096
#: Addresses whose round-trip estimate and RPC support this node remembers
#: (and IP addresses for srtt()'s fallback): the oldest made leave first.
#: Without a bound they grew with every address ever asked, and a sender
#: can make a node ask many (a verification ping per new id and source).
#: A peer forgotten here is measured again from RFC 6298's first RTO.
PEERS_KEPT: Final = 65_536
#: A request whose caller hears when it is overdue (a lookup's, see
#: request_packed) and gives it no budget of its own is retransmitted within
#: this many of the peer's RTOs: the first try, then one copy with the RTO
#: doubled. The caller asks other peers meanwhile, so later copies would
#: only put off the verdict on a dead peer (a lookup with nobody else to ask
#: waits for it); one copy already survives 10 % loss 99 times in 100.
OVERDUE_SPAN: Final = 3.0
#: A lookup's request to a peer never measured is overdue after the RTO of
#: another port of its IP address, else of the whole network this node
#: measured (every sample pooled: SRTT + 4 RTTVAR over its peers) once it
#: took this many samples, never later than RFC 6298's first RTO (1 s,
#: FIRST_RTO_CAP). RFC 6298 waits 1 s because TCP knows nothing of a new
#: path; a node in a DHT has measured its network. With the 1 s, `bench
#: churn`'s steady phase had a get_all p99 of 1.10 s against stock's 55 ms:
#: its slow lookups each waited 1 s on one first-contact stock peer, silent
#: on find_values (a lookup one holder short keeps one request in flight).
FIRST_RTO_SAMPLES: Final = 8
FIRST_RTO_CAP: Final = 1.0
# (the span of a request to a peer never measured, see _request)
_FIRST_SPAN: Final = OVERDUE_SPAN * FIRST_RTO_CAP
_MIN_CONTACTS: Final = 3


# name -> checks of its arguments (after the sender's address)
_REQUEST_ARGS: Final[dict[str, tuple[Callable[[Any], bool], ...]]] = {
    "stun": (),
    "ping": (_node_id,),
    "store": (_node_id, _node_id, _plain),
    "find_node": (_node_id, _node_id),
    "find_value": (_node_id, _node_id),
    "find_values": (_node_id, _node_id),
    "store_record": (_node_id, _node_id, _any),
}

# name -> the shape of its answer (query.shapes: a response that fails it
# counts as no response, the caller sees (False, None), and as a failure of
# the peer). The core's DatagramEngine checks these itself (the protocol's
# engine_shapes), unless a spec replaces the check.
_RESPONSE_SHAPES: Final[dict[str, int]] = {
    "stun": shapes.ANY,
    "ping": shapes.NODE_ID,
    "store": shapes.BOOL,
    "find_node": shapes.CONTACTS,
    "find_value": shapes.FOUND_VALUE,
    "find_values": shapes.FOUND_VALUES,
    "store_record": shapes.BOOL,
}
_RESPONSE_SHAPE: Final[dict[str, Callable[[Any], bool]]] = {
    name: shapes.CHECKS[code] for name, code in _RESPONSE_SHAPES.items()
}


def peer_book_for(queries: QueryManager) -> PeerBook:
    """The PeerBook a node's protocol keeps its peers' estimators and
    reputation in: of the backend of ``queries``' core, estimators capped at
    its default timeout, bounded at PEERS_KEPT (read now: tests lower it)."""
    return new_peer_book(
        backend_of(queries.core),
        max_rto=queries.config.default_timeout,
        peers_kept=PEERS_KEPT,
        max_peers=PEERS_KEPT,
        rtt_per_ip=RTT_PER_IP,
        first_rto_samples=FIRST_RTO_SAMPLES,
        first_rto_cap=FIRST_RTO_CAP,
    )


class _Outgoing(NamedTuple):
    """A request to send: where, what (its body, packed once, whether it
    goes out now or waits in the window's queue), how long to wait, and who
    hears the end (a future, or a callback with its context)."""

    address: Address
    name: str
    body: bytes
    timeout: float | None
    future: asyncio.Future[Reply] | None
    callback: Callback | None
    context: Any
    background: bool
    overdue: Callable[[Any], object] | None


# (NamedTuple's own __new__ is a Python function)
_new_outgoing: Final = tuple.__new__


def _subclass_rpcs(protocol: Any, known: Mapping[str, Any]) -> dict[str, RpcSpec]:
    """The ``rpc_<name>(self, sender, *args)`` methods a protocol subclass
    defines, served as rpcudp serves them: any msgpack values as arguments
    (their count checked against the signature), any answer."""
    found: dict[str, RpcSpec] = {}
    for attribute in dir(type(protocol)):
        name = attribute[4:]
        if not attribute.startswith("rpc_") or name in known:
            continue
        method = getattr(protocol, attribute)
        if not callable(method):
            continue
        parameters = inspect.signature(method).parameters.values()
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        # (sender, *args): the bound method's first parameter is the sender
        found[name] = RpcSpec((_any,) * max(0, len(positional) - 1), method, _any)
    return found


class RpcSpec(NamedTuple):
    """An RPC served by the protocol: checks of its arguments (after the
    sender's address), the handler, and the check of a response's shape."""

    args: tuple[Callable[[Any], bool], ...]
    handler: Callable[..., Any]
    response: Callable[[Any], bool]


def _caller(name: str) -> Callable[..., Awaitable[Reply]]:
    """``protocol.name(address, *args)``: RPC ``name`` sent as kademlia's
    own calls are (``_call``), as rpcudp's ``__getattr__`` made them."""

    def call(self: DhtProtocol, address: Address, *args: Any) -> Awaitable[Reply]:
        return self._call(address, name, *args)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Send ``{name}`` to ``address``: (True, answer) or (False, None)."
    return call


def _add_callers(cls: type[DhtProtocol]) -> None:
    """A caller for each ``rpc_<name>`` of ``cls`` that has no ``name``."""
    for attribute in dir(cls):
        name = attribute[4:]
        if attribute.startswith("rpc_") and name.isidentifier() and not hasattr(cls, name):
            setattr(cls, name, _caller(name))


class _WithoutRpcudpBase(type):
    """The metaclass of DhtProtocol: its MRO leaves out rpcudp's
    ``RPCProtocol`` (kademlia's ``KademliaProtocol`` stays in it, and with
    it ``isinstance(protocol, KademliaProtocol)``, which kademlia's own
    suite asserts of a server's protocol).

    Why: ``RPCProtocol`` defines ``__getattr__`` (any attribute is an RPC),
    and a class with one in its MRO reads every attribute of its instances
    through a Python-level hook that CPython 3.11 cannot specialise: ~300
    instructions a read against ~20 specialised, and a lookup reads ~43
    attributes of its protocol (callgrind, bench profile: 318.8 k -> 303.3 k
    instructions a get_all). Nothing of ``RPCProtocol`` is used here: the
    transport, the request table and the callers of ``rpc_<name>``
    methods are this module's (an RPC of no ``rpc_`` method here is sent
    with ``request``)."""

    def mro(cls) -> list[type]:
        return [base for base in super().mro() if base is not RPCProtocol]


class _UntilForgotten:
    """What the core's engine checks the protocol's kept answers against
    (``DatagramEngine.serve`` reads its ``generation``, as it would a
    store's): a generation that never moves. A kept answer stays valid
    until its key's store tells the protocol the key changed (the stores'
    ``watchers``), which forgets it, or its ``until`` passes."""

    __slots__ = ()
    generation: Final = 0


#: the one the protocols give their engines
_KEPT_UNTIL_FORGOTTEN: Final = _UntilForgotten()


class DhtProtocol(KademliaProtocol, metaclass=_WithoutRpcudpBase):  # type: ignore[misc]
    """kademlia's ``KademliaProtocol``, served and called as it is (its
    RPCs, its ``call_*`` methods, ``protocol.name(address, *args)`` for each
    ``rpc_<name>``), on the transport and request table described above;
    without rpcudp's base (see ``_WithoutRpcudpBase``)."""

    #: client mode (set before listening): our requests carry the client
    #: marker (wire.CLIENT_PAD), so our peers never add this node to
    #: their routing tables nor hand it values; nor does it hand any over.
    client: bool = False
    #: while a client's request is being served (its id carries the marker)
    _serving_client: bool = False
    #: while any request is being served: its sender is not yet verified
    _serving: bool = False
    #: Records are handed to a peer not known to speak our RPCs one at a
    #: time until it answers one (a stock peer would leave each to wait out
    #: its retransmissions): the others wait here, counted in the hand-over
    #: bound. A peer that did not answer is skipped from then on. (Both made
    #: on first use; the second bounded like recently_failed.)
    #: whether a subclass replaces _serve (then every request goes to it)
    _serve_hooked: bool = False
    #: the transport that reads in batches (``BatchedTransport``) and its
    #: core socket, while ``transport`` is that one (not a wrapper)
    _native_transport: Any = None
    _native_socket: Any = None
    _parked: dict[Address, list[tuple[Node, bytes, Record]]] | None = None
    _parked_count: int = 0
    _records_refused: dict[Address, None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _add_callers(cls)
        if "_serve" in cls.__dict__:
            # a subclass that hooks serving sees every request (the engine
            # answers none itself: see _serve_in_engine)
            cls._serve_hooked = True

    def __init__(
        self,
        source_node: Node,
        storage: Any,
        ksize: int,
        *,
        records: RecordStore,
        queries: QueryManager,
        reputation: Reputation | None = None,
        extra_rpcs: dict[str, RpcSpec] | None = None,
    ) -> None:
        # (KademliaProtocol's __init__ and rpcudp's, without the stock
        # routing table this one replaces)
        self.transport: Any = None
        #: the plain values (kademlia's ``storage``; see the ``storage``
        #: property)
        self._storage = storage
        self.source_node = source_node
        self.router = ContactTable(self, ksize, source_node)
        #: the signed records (see the ``records`` property)
        self._records = records
        self.queries = queries
        self.config = queries.config
        self.clock = queries.clock
        #: the node's one expiry timer (its ``lag``, read per datagram)
        self._timer = queries.timer
        self.stats: Counter[str] = Counter()
        #: datagrams dropped, by kind (also counted in ``stats``)
        self.drops: Counter[str] = Counter()
        if reputation is None:
            reputation = Reputation(book=peer_book_for(queries))
        self.reputation = reputation
        #: every peer's RTT estimator and reputation record, the per-IP
        #: fallback (srtt, first_rto) and the network's estimator: the
        #: core's PeerBook, fed here in one call per answer or timeout and
        #: read in place by the lookups' cores. (They read ``peers``, this
        #: protocol feeds ``_peers``: the same book, unless a bench gives
        #: the lookups another, see bench/profile_client.py.)
        self.peers: PeerBook = reputation.book
        self._peers: PeerBook = reputation.book
        #: address -> whether it answers the extension RPCs (absent: unknown)
        self.extensions: dict[Address, bool] = {}
        self._requests: RpcTable | None = None
        #: requests beyond the window, unsent: the node's own, background
        self._waiting: deque[_Outgoing] = deque()
        self._waiting_background: deque[_Outgoing] = deque()
        self._background_in_flight = 0
        self.max_outstanding = MAX_OUTSTANDING
        self.reserved_for_own = RESERVED_FOR_OWN
        self.max_waiting = MAX_WAITING
        self.max_waiting_background = MAX_WAITING_BACKGROUND
        #: (node, key, value) to hand over to new nodes, and stores in flight
        self._handover: deque[tuple[Node, bytes, Any]] = deque()
        self._handover_in_flight = 0
        #: address -> (tokens, when counted) of new ids it may introduce
        self._introducers: dict[Address, tuple[float, float]] = {}
        #: address -> when a request to it last failed (cleared by an answer)
        self.recently_failed: dict[Address, float] = {}
        self._probing: set[Address] = set()
        #: address -> the node id a verification ping to it is to confirm
        self._verifying: dict[Address, bytes] = {}
        #: address -> the node id it answered a verification ping with
        self._verified: dict[Address, bytes] = {}
        self._fileno = -1
        self._fionread = array.array("i", [0])
        #: sheds a greedy source's requests while this node is overloaded
        #: (fairness.py); None without a socket to read the load from
        self._fair_share: FairShare | None = None
        #: the transport's socket, kept for _queued_bytes (an attribute read
        #: per look, not a get_extra_info call)
        self._socket: Any = None
        #: the answers to recent requests, sent again for a resent one (the
        #: core's, which its engine reads and feeds: see _serve_in_engine)
        self.replay: ReplayCache = replay_cache(
            backend_of(queries.core), self.config.default_timeout
        )
        self._rpcs: dict[str, RpcSpec] = {
            name: RpcSpec(checks, getattr(self, f"rpc_{name}"), _RESPONSE_SHAPE[name])
            for name, checks in _REQUEST_ARGS.items()
        }
        self._rpcs.update(_subclass_rpcs(self, self._rpcs))
        self._rpcs.update(extra_rpcs or {})
        #: the find_values spec served from packed answers (_find_values_body):
        #: ours, unless a subclass or an extra spec serves find_values its way
        spec = self._rpcs.get("find_values")
        own = type(self).rpc_find_values is DhtProtocol.rpc_find_values
        self._find_values_spec = (
            spec if own and spec is not None and spec.handler == (self.rpc_find_values) else None
        )
        #: the find_value spec served from packed answers (_find_value_body):
        #: stock kademlia's rpc_find_value and rpc_find_node, unless a
        #: subclass or an extra spec serves either its way (then stock's
        #: handler serves it, as before)
        spec = self._rpcs.get("find_value")
        cls = type(self)
        own = (
            cls.rpc_find_value is KademliaProtocol.rpc_find_value
            and cls.rpc_find_node is KademliaProtocol.rpc_find_node
        )
        self._find_value_spec = (
            spec
            if own
            and spec is not None
            and spec.handler == self.rpc_find_value
            and spec.args == _REQUEST_ARGS["find_value"]
            else None
        )
        #: the store those answers are made from: ``storage`` if it is our
        #: PlainStorage on this protocol's time, else None (stock's handler
        #: serves find_value from whatever ``storage`` is)
        self._plain_values = self._answering_store(storage)
        # Kept answers are forgotten key by key, as the stores' watchers
        # say a key changed (_record_changed, _value_changed), so that a
        # write to one key leaves the other keys' answers kept. (Checked
        # against a store-wide generation, one write to an unrelated key
        # every 100 requests of 256 hot keys made a find_value served cost
        # 6.2 us against 0.95 with no writes, more than the 5.9 us of no
        # kept answers at all; key by key, 1.06 us.)
        #: are find_values answers kept? (our RecordStore, which tells its
        #: watchers each key it changes; a subclass may store otherwise)
        self._keeps_records = type(records) is RecordStore
        if self._keeps_records:
            records.watchers.add(self._record_changed)
        if self._plain_values is not None:
            self._plain_values.watchers.add(self._value_changed)
        #: the body of the answer to a ping (this node's id packed), with
        #: which the core's engine answers a ping itself (as kademlia's
        #: rpc_ping: the sender welcomed, this node's id answered); None if
        #: a subclass or an extra spec serves ping its way
        spec = self._rpcs.get("ping")
        own = type(self).rpc_ping is KademliaProtocol.rpc_ping
        self._ping_answer = (
            pack_response(self.source_node.id)
            if own
            and spec is not None
            and spec.handler == self.rpc_ping
            and spec.args == _REQUEST_ARGS["ping"]
            else None
        )
        #: RPC name -> the shape code the core's DatagramEngine checks its
        #: answers against: the RPCs whose spec has the built-in check
        #: (a spec of another check is applied here; kept up by add_rpc)
        self._engine_shapes: dict[str, int] = {
            name: code
            for name, code in _RESPONSE_SHAPES.items()
            if name in self._rpcs and self._rpcs[name].response is _RESPONSE_SHAPE[name]
        }

    def add_rpc(self, name: str, spec: RpcSpec) -> None:
        """Serve (and accept answers to) RPC ``name`` from now on."""
        if name in STOCK_RPCS:
            raise InvalidArgumentError(f"name must not be one of kademlia's RPCs, got {name!r}")
        self._rpcs[name] = spec
        if name == "find_values" and self._requests is not None:
            # (served another way from now on: no kept answer of ours;
            # find_value's go too, kept again as they are asked)
            self._requests.engine.forget_answers()
        if spec.response is _RESPONSE_SHAPE.get(name):
            self._engine_shapes[name] = _RESPONSE_SHAPES[name]
        else:
            self._engine_shapes.pop(name, None)

    @property
    def fair_share(self) -> FairShare | None:
        """Sheds a greedy source's requests while this node is overloaded
        (fairness.py); None without a socket to read the load from (or
        set to None: every request served)."""
        return self._fair_share

    @fair_share.setter
    def fair_share(self, fair_share: FairShare | None) -> None:
        self._fair_share = fair_share
        self._serve_in_engine()

    @property
    def packed_answers(self) -> dict[bytes, tuple[int, float, bytes]]:
        """The find_values answers kept packed, oldest first: key -> (0,
        until when, the answer packed). A record of the key stored or
        dropped forgets its answer."""
        if self._requests is None:
            return {}
        return self._requests.engine.kept_answers()

    @property
    def storage(self) -> Any:
        """The plain values (kademlia's ``storage``: what ``store`` puts and
        ``find_value`` answers from). Set to another store, the find_value
        answers kept from the one before are forgotten, and the engine
        answers from the new one if it is a PlainStorage on this protocol's
        time (else stock's handler answers from it)."""
        return self._storage

    @storage.setter
    def storage(self, storage: Any) -> None:
        self._storage = storage
        if getattr(self, "_find_value_spec", None) is None:
            # (find_value answered by a handler, never from kept answers; or
            # set before __init__ ran, which reads its own argument)
            return
        if self._plain_values is not None:
            self._plain_values.watchers.remove(self._value_changed)
        self._plain_values = self._answering_store(storage)
        if self._plain_values is not None:
            self._plain_values.watchers.add(self._value_changed)
        self._forget_kept("find_value")  # (the old store's answers)
        self._serve_in_engine()

    @property
    def records(self) -> RecordStore:
        """The signed records this node holds for others. Set to another
        store, the find_values answers kept from the one before are
        forgotten."""
        return self._records

    @records.setter
    def records(self, records: RecordStore) -> None:
        old = self._records
        self._records = records
        if getattr(self, "_keeps_records", None) is None:
            return  # (set before __init__ ran, which reads its own argument)
        if self._keeps_records:
            old.watchers.remove(self._record_changed)
        self._keeps_records = type(records) is RecordStore
        if self._keeps_records:
            records.watchers.add(self._record_changed)
        self._forget_kept("find_values")

    def _record_changed(self, key: bytes | None) -> None:
        """The record store's watcher: ``key``'s kept find_values answer
        forgotten (None: every one)."""
        if key is None:
            self._forget_kept("find_values")
        elif self._requests is not None and isinstance(key, bytes):
            # (a str key is never asked for; a bytes subclass's is its bytes')
            self._requests.engine.forget_answer(bytes(key))

    def _value_changed(self, key: bytes | None) -> None:
        """The plain values' watcher: as ``_record_changed``, for find_value."""
        if key is None:
            self._forget_kept("find_value")
        elif self._requests is not None and isinstance(key, bytes):
            self._requests.engine.forget_answer(bytes(key), rpc="find_value")

    def _forget_kept(self, rpc: str) -> None:
        """Forget every kept answer of ``rpc``."""
        if self._requests is not None:
            engine = self._requests.engine
            for key in engine.kept_answers(rpc=rpc):
                engine.forget_answer(key, rpc=rpc)

    def _answering_store(self, storage: Any) -> PlainStorage | None:
        """``storage`` if find_value can be answered from its packed answers:
        ours to answer (``_find_value_spec``), a PlainStorage (not a
        subclass, which may store otherwise), timed by this protocol's clock
        (the engine compares a kept answer's ``until`` with this protocol's
        time; two SystemClocks read the same ``time.monotonic``)."""
        if self._find_value_spec is None or type(storage) is not PlainStorage:
            return None
        clock = storage.clock
        if clock is not self.clock and clock.now is not self.clock.now:
            return None
        return storage

    @property
    def packed_value_answers(self) -> dict[bytes, tuple[int, float, bytes]]:
        """The find_value answers (a plain value found) kept packed, oldest
        first: key -> (0, until when the value lives, the answer packed).
        The key's value stored again or dropped forgets its answer."""
        if self._requests is None:
            return {}
        return self._requests.engine.kept_answers(rpc="find_value")

    def _serve_in_engine(self) -> None:
        """Have the core's engine answer what it can of each request in the
        call that reads it (DatagramEngine.serve): a resend from the replay
        cache, a find_values or find_value from its kept answer, a ping, the
        fair share asked first; the rest is handed to _serve (unless a
        subclass replaces _serve: then it sees every request, as before)."""
        if self._requests is None or self._serve_hooked:
            return
        self._requests.engine.serve(
            self.replay,
            _KEPT_UNTIL_FORGOTTEN,
            CLIENT_PAD,
            self._fair_share,
            stats=self.stats,
            max_answers=PACKED_ANSWERS_KEPT,
            max_answer_bytes=PACKED_ANSWERS_BYTES,
            ping=self._ping_answer,
            values=None if self._plain_values is None else _KEPT_UNTIL_FORGOTTEN,
        )

    # -- transport ----------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self._fileno = -1 if sock is None else sock.fileno()
        if sock is not None:
            # A burst of lookups brings a burst of answers to this one socket:
            # the default buffer (~200 KiB, ~150 datagrams) drops most of it.
            # The kernel caps this at net.core.rmem_max.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            with contextlib.suppress(OSError):
                # Linux's SO_MEMINFO says how full the receive queue is;
                # where it is missing, no fair share (every request served)
                sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO_SIZE)
                buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                mark = max(int(buffer * OVERLOAD_FRACTION), OVERLOAD_MIN_BYTES)
                if mark < buffer:
                    self._socket = sock
                    self._fair_share = new_fair_share(
                        self._queued_bytes, mark, backend_of(self.queries.core)
                    )
        # Requests are one-result queries in a core of their own (of the
        # same backend as the node's lookups), so the node's query metrics
        # count lookups, not RPCs; both cores share the node's one timer.
        queries = self.queries
        self._requests = RpcTable(
            asyncio.get_running_loop(),
            new_core(backend_of(queries.core)),
            queries.timer,
            self.clock,
            on_timeout=self._request_timed_out,
            send=self._send,
            on_retransmit=self._retransmitted,
            client=self.client,
            backlog=self._backlog if self._fileno >= 0 else None,
            shapes=self._engine_shapes,
        )
        # (what datagram_received reads before it hands a CHECKED answer
        # to its callback: the engine hands a lookup's to it itself while
        # all say there is nothing else to do; none of these is replaced)
        self._requests.engine.dispatch_answers(
            self._waiting, self._waiting_background, self.recently_failed, self.extensions
        )
        self._serve_in_engine()
        native_socket = getattr(transport, "native_socket", None)
        core_module = load_core(backend_of(queries.core))[1]
        if native_socket is not None and type(native_socket) is core_module.DatagramSocket:
            # A wake-up's datagrams read and handled in one core call, an
            # answer served sent back in it: see _read_batch.
            self._native_socket = native_socket
            self._native_transport = transport
            transport.read_batches_with(self._read_batch)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._requests is not None:
            self._requests.close()
        self._handover.clear()
        for waiting in (self._waiting, self._waiting_background):
            while waiting:
                out = waiting.popleft()
                if out.callback is not None:
                    out.callback(out.context, out.address, out.name, False, None)
                elif out.future is not None and not out.future.done():
                    out.future.set_result((False, None))

    def error_received(self, exc: Exception) -> None:
        self.drop("socket_error")

    def _backlog(self) -> bool:
        """Do datagrams wait unread in this node's socket? (FIONREAD: the
        size of the next one; one system call, ~1 us, made only when a
        request is about to be judged: see RpcTable.)"""
        try:
            fcntl.ioctl(self._fileno, termios.FIONREAD, self._fionread, True)
        except OSError:  # (closed meanwhile)
            return False
        return self._fionread[0] > 0

    def _queued_bytes(self) -> int:
        """The bytes the socket's receive queue holds (SO_MEMINFO's first
        field: what the queued datagrams take, ~800 for a small request)."""
        try:
            meminfo = self._socket.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO_SIZE)
        except OSError:  # (closed meanwhile)
            return 0
        return int.from_bytes(meminfo[:4], sys.byteorder)

    @property
    def requests(self) -> RpcTable:
        if self._requests is None:
            raise NotListeningError(
                "the protocol has no transport yet: call DhtNode.listen() first"
            )
        return self._requests

    @property
    def pending(self) -> int:
        """Requests on the wire or waiting for room in the window."""
        return (
            len(self._waiting)
            + len(self._waiting_background)
            + (0 if self._requests is None else len(self._requests))
        )

    @property
    def waiting(self) -> int:
        """Requests waiting for room in the window (both queues)."""
        return len(self._waiting) + len(self._waiting_background)

    def drop(self, kind: str) -> None:
        """Count a datagram dropped, by kind."""
        self.drops[kind] += 1
        self.stats[kind] += 1
        self.stats["dropped"] += 1

    def shed(self, kind: str) -> None:
        """Count work refused to keep queues bounded (a request or a
        hand-over not made), by kind."""
        self.drops[kind] += 1
        self.stats[kind] += 1
        self.stats["shed"] += 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        # One call a datagram, whichever transport reads the socket: the
        # loop's (a recvfrom each) or, by default with the Rust core on
        # Linux, transport.BatchedTransport (one recvmmsg a wake-up, every
        # datagram waiting; see its docstring for the figures).
        if len(addr) != 2:
            # IPv6: asyncio gives (host, port, flowinfo, scope_id); requests
            # are made to, and contacts known by, (host, port).
            addr = addr[:2]
        requests = self._requests
        if requests is None:  # (not listening yet: nothing is pending)
            self._datagram_decoded(data, addr)
            return
        try:
            # One call reads the framing and the msgpack body and, for an
            # answer, takes its request out of the table and ends it (the
            # core's DatagramEngine.receive_at: its query finished, its RTT
            # measured). Reading and matching alone: 0.58 us against 1.1 us
            # for wire.decode and the table's lookup in Python (a
            # find_values answer with one record, timeit, Rust core; the
            # twin 0.93 us). RpcTable.receive's work, made here rather than
            # called: 464.2 k -> 448.3 k and 441.6 k instructions a get_all
            # (callgrind, bench profile; two runs of one build differed by
            # up to 9.7 k).
            # An answer whose shape it judged (5, 6), the engine tells the
            # peer book too (the peer's RTT sample and success or failure,
            # as _answered does for the others): timeit, one process, 4056
            # -> 3810 ns an answer against receive_at then PeerBook.answered.
            # With the common answer handed over below (no _answered frame)
            # and the lookup's _act skipped when nobody is to be asked:
            # 393.7 k -> 382.2 k instructions a get_all (callgrind, bench
            # profile with the manager's clock frozen, two runs each).
            now = self.clock.now()
            status, first, value, request, rtt = requests.engine.receive_at(
                data, addr, now, self._timer.lag, self._peers
            )
            # The two commonest outcomes done here, with no _dispatch frame
            # (cachegrind, bench profile --serve: 13.7 k -> 11.9 k
            # instructions a request served with it).
            if status == DATAGRAM_HANDLED:
                if value is None:  # (a lookup's answer, handled)
                    return
            elif status == DATAGRAM_SERVED and first is None:  # (to a client)
                self.transport.sendto(value, addr)
                return
        except Exception:  # a bug must cost one datagram, never the node
            log.exception("dhtquery: error handling a datagram from %s", addr)
            self.drop("handler_error")
            return
        self._dispatch(status, first, value, request, rtt, addr)

    def _read_batch(self, receiver: Any, native_socket: Any) -> bool:
        """Every datagram waiting at a wake-up, read and handled in one core
        call (``DatagramEngine.receive_batch``: one ``recvmmsg``, each
        datagram as ``receive_at`` handles it, an answer served sent back
        through ``native_socket`` at once); ``_dispatch`` is called only for
        what Python must act on. (The transport's reader, set in
        ``connection_made``: see ``BatchedTransport.read_batches_with``.)
        False, nothing read: ``datagram_received`` was replaced on this
        instance (a wrapper counting or losing datagrams), which then gets
        each, as it would from any transport."""
        # (read per wake-up: a wrapper may be set on the instance at any
        # time; the class's own function, bound, is the only one skipped)
        received = self.datagram_received
        if (
            getattr(received, "__func__", None) is not DhtProtocol.datagram_received
            # (a wrapper of the transport: its sendto sees every datagram)
            or self.transport is not self._native_transport
        ):
            return False
        requests = self._requests
        assert requests is not None  # (set in connection_made, before reading)
        # (one clock read a wake-up: every datagram of the batch was waiting
        # at it)
        router = self.router
        known = router.ids
        if known is None:  # (the table changed since: once per change)
            known = router.known_ids()
        requests.engine.receive_batch(
            receiver,
            native_socket,
            self.clock.now(),
            self._timer.lag,
            self._peers,
            self._dispatch,
            known,
        )
        return True

    def _dispatch(
        self,
        status: int,
        first: Any,
        value: Any,
        request: tuple[Any, ...] | None,
        rtt: float,
        addr: Address,
    ) -> bool:
        """Act on what the engine made of a datagram from ``addr`` (see
        ``_core.pyi``, ``DatagramEngine.receive_at``); False once the
        transport is closing (the rest of a batch is not handled)."""
        requests = self._requests
        assert requests is not None
        try:
            if status == DATAGRAM_HANDLED:
                # The common answer to a lookup's request, handed to its
                # LookupAnswers by the engine itself, which checked that
                # nothing below was to be done first (dispatch_answers in
                # connection_made): 239.9 k -> 234.1 k instructions a get_all
                # (callgrind, bench profile, frozen clock).
                if value is not None:  # a caller's bug must not cost other requests
                    log.error("dhtquery: error in a request callback", exc_info=value)
            elif status == DATAGRAM_CHECKED:
                # _answered's work for the common answer (of the right
                # shape, the book fed), written out here: a Python call
                # less per answer.
                pending: _Pending = request  # type: ignore[assignment]
                if rtt < 0:  # (Karn: sent more than once)
                    requests.answered_again(first)
                if self._waiting or self._waiting_background:
                    self._send_waiting(requests)
                if self.recently_failed:
                    self.recently_failed.pop(addr, None)
                name = pending.name
                if self.extensions.get(addr) is not True and name not in STOCK_RPCS:
                    self._supports(addr, True)
                callback = pending.callback
                if callback is None:
                    pending.deliver(True, value)
                else:
                    try:
                        callback(pending.context, addr, name, True, value)
                    except Exception:  # a caller's bug must not cost other requests
                        log.exception("dhtquery: error in a request callback")
            elif status == DATAGRAM_SERVED:
                # a find_values or find_value answered by the engine from
                # its kept answer, or a ping (framed, kept for a resend,
                # counted in stats):
                # sent here
                self.transport.sendto(value, addr)
                if first is not None:  # (the sender's id: welcomed once it answers a ping)
                    self._serving = True
                    try:
                        self.welcome_if_new(Node(first, addr[0], addr[1]))
                    finally:
                        self._serving = False
            elif status == DATAGRAM_REQUEST:
                self._serve(first, value, addr, self.clock.now())
            elif status == DATAGRAM_REPLAYED:
                # a resent request: the answer sent the first time, not
                # served again (see replay.py; counted by the engine)
                self.transport.sendto(value, addr)
            elif status == DATAGRAM_SHED:
                self.shed(first)
            elif status in (DATAGRAM_ANSWERED, DATAGRAM_BAD_SHAPE):
                pending = request  # type: ignore[assignment]
                if rtt < 0:
                    requests.answered_again(first)
                # (BAD_SHAPE: told to the book by the engine already)
                self._answered(
                    requests, pending.name, rtt, pending, value, addr, status == DATAGRAM_ANSWERED
                )
            elif status == DATAGRAM_DROP:
                self.drop(first)
            elif status == DATAGRAM_NOT_PENDING:
                self._unmatched(*requests.unmatched(first), addr)
            elif status == DATAGRAM_FAILED:
                # (receive_batch: handling it raised, value the exception)
                log.error("dhtquery: error handling a datagram from %s", addr, exc_info=value)
                self.drop("handler_error")
            else:  # a forged answer must not end the request: it waits on
                self.drop(RpcStatus.WRONG_ADDRESS.value)
        except Exception:  # a bug must cost one datagram, never the node
            log.exception("dhtquery: error handling a datagram from %s", addr)
            self.drop("handler_error")
        return not self.transport.is_closing()

    def _datagram_decoded(self, data: bytes, addr: Address) -> None:
        """The datagram path without the engine (no request table yet)."""
        try:
            kind, msg_id, body = decode(data)
        except WireError as exc:
            self.drop(exc.kind)
            return
        try:
            if kind == REQUEST:
                self._serve(msg_id, body, addr, self.clock.now())
            else:  # (no request table: no request of ours is out)
                self.drop(RpcStatus.UNKNOWN.value)
        except Exception:  # a bug must cost one datagram, never the node
            log.exception("dhtquery: error handling a datagram from %s", addr)
            self.drop("handler_error")

    # -- serving ------------------------------------------------------

    def _serve(self, msg_id: bytes, body: Any, addr: Address, now: float) -> None:
        """Answer a request read at ``now`` (the datagram's one clock read)."""
        fair_share = self._fair_share
        if fair_share is not None and not fair_share.admit(addr):
            self.shed("fair_share")
            return
        answered = self.replay.get(addr, msg_id, now)
        if answered is not None:
            # a resent request: the answer sent the first time, not served
            # again (see replay.py)
            self.stats["replayed"] += 1
            self.transport.sendto(answered, addr)
            return
        if type(body) is not list or len(body) != 2 or type(body[0]) is not str:
            self.drop("bad_request")
            return
        name, args = body
        spec = self._rpcs.get(name)
        if spec is None:
            self.drop("unknown_rpc")
            return
        checks = spec.args
        if type(args) is not list or len(args) != len(checks):
            self.drop("bad_args")
            return
        if spec is self._find_values_spec or spec is self._find_value_spec:
            # (every lookup's request: its two ids checked in one call,
            # not a call of the spec's node_id check each)
            if not _two_ids(args):
                self.drop("bad_args")
                return
        else:
            for check, arg in zip(checks, args, strict=True):
                if not check(arg):
                    self.drop("bad_args")
                    return
        # A client's request (its id carries the marker) is answered, but
        # welcome_if_new leaves it out of the routing table (and hands it
        # nothing); any other sender is welcomed once it answers a ping.
        self._serving_client = msg_id[16:] == CLIENT_PAD
        self._serving = True
        try:
            if spec is self._find_values_spec:
                packed = self._find_values_body(addr, args[0], args[1], now)
            elif spec is self._find_value_spec and self._plain_values is not None:
                packed = self._find_value_body(addr, args[0], args[1], now)
            else:
                packed = pack_response(spec.handler(addr, *args))
        except WireError as exc:
            self.drop(exc.kind)
            return
        finally:
            self._serving = self._serving_client = False
        datagram = frame_response(msg_id, packed)
        self.stats["served"] += 1
        self.replay.put(addr, msg_id, datagram, now)
        self.transport.sendto(datagram, addr)

    def rpc_store(self, sender: Address, nodeid: bytes, key: bytes, value: Any) -> bool:
        source = Node(nodeid, sender[0], sender[1])
        self.welcome_if_new(source)
        try:
            self.storage[key] = value
        except StorageFull as exc:
            self.stats["store_refused"] += 1
            log.debug("refused a store from %s: %s", sender, exc)
            return False
        return True

    def rpc_find_values(self, sender: Address, nodeid: bytes, key: bytes) -> dict[str, Any]:
        source = Node(nodeid, sender[0], sender[1])
        self.welcome_if_new(source)
        # Checked when stored; the asker checks again on receipt.
        held = self.records.get(key, self.clock.now(), verify=False)
        return self._find_values(source, key, held)

    def _find_values(self, source: Node, key: bytes, held: list[Record]) -> dict[str, Any]:
        budget = _RECORDS_BUDGET
        answer = []
        more = False
        for record in held:
            # UTF-8 names can outgrow the per-key cap's arithmetic: stop
            # before the datagram would, and say that more exist.
            budget -= len(record.data) + len(record.name.encode()) + _RECORD_FRAMING
            if budget < 0:
                more = True
                break
            answer.append(record.to_wire())
        # A holder answers with its records alone, as find_value does with a
        # value: the asker already knows the closest nodes that led it here.
        neighbors = [] if answer else self.router.find_neighbors(Node(key), exclude=source)
        return {"records": answer, "nodes": [list(node) for node in neighbors], "more": more}

    def _find_values_body(self, sender: Address, nodeid: bytes, key: bytes, now: float) -> bytes:
        """``rpc_find_values``'s answer, packed (``wire.pack_response``).
        An answer with records does not depend on who asks: it is kept and
        framed again for the next request of the key until a record of the
        key is stored or dropped or one of the records expires. Serving a
        client's find_values of one record took 16.4 -> 11.2 us of CPU
        (medians of seven interleaved pairs, pair ratio 0.67): the answer's
        packing was ~3 us of it (msgpack of the record's seven fields)."""
        source: Node | None = None
        if self._serving_client:
            # (welcome_if_new's first step, without the sender's Node, made
            # only if needed: a client is never welcomed)
            self.stats["client_requests"] += 1
        else:
            source = Node(nodeid, sender[0], sender[1])
            self.welcome_if_new(source)
        # The answers are kept in the core's engine, which answers a
        # request of a kept key itself (DatagramEngine.serve); one gets here
        # when the key's answer is not kept (or no longer valid), or for a
        # request encoded otherwise than msgpack's usual way.
        records = self.records
        table = self._requests
        if table is not None:
            kept = table.engine.kept_answer(key, _KEPT_UNTIL_FORGOTTEN.generation, now)
            if kept is not None:
                return kept
        held, until = records.live(key, now)
        if source is None:
            source = Node(nodeid, sender[0], sender[1])
        body = pack_response(self._find_values(source, key, held))
        if table is not None and self._keeps_records:
            if held:
                table.engine.keep_answer(key, _KEPT_UNTIL_FORGOTTEN.generation, until, body)
            else:  # (an answer without records names contacts for its asker)
                table.engine.forget_answer(key)
        return body

    def _find_value_body(self, sender: Address, nodeid: bytes, key: bytes, now: float) -> bytes:
        """Stock kademlia's ``rpc_find_value`` answer, packed: ``{"value":
        value}`` if this node holds a live value of ``key``, else the
        closest contacts to the key but the sender (its ``rpc_find_node``'s
        answer). The sender is welcomed once (stock's handler welcomed it
        twice when it answered with contacts, a second introduction the
        rate limit counted). An answer with a value does not depend on who
        asks: it is kept in the core's engine, which answers the next
        request of the key itself until the key's value is stored again or
        dropped (the store's watchers) and while the value lives; one gets
        here when it is not kept (or no longer valid), or for a request
        encoded otherwise than msgpack's usual way."""
        source = Node(nodeid, sender[0], sender[1])
        self.welcome_if_new(source)
        storage = self._plain_values
        assert storage is not None  # (served here only given one: see _serve)
        table = self._requests
        if table is not None:
            kept = table.engine.kept_answer(
                key, _KEPT_UNTIL_FORGOTTEN.generation, now, rpc="find_value"
            )
            if kept is not None:
                return kept
        storage.cull()  # (as stock's get: what is past its TTL leaves)
        value, until = storage.live(key, now)
        if value is None:
            if table is not None:  # (an answer of contacts names them for its asker)
                table.engine.forget_answer(key, rpc="find_value")
            neighbors = self.router.find_neighbors(Node(key), exclude=source)
            return pack_response([tuple(node) for node in neighbors])
        body = pack_response({"value": value})
        if table is not None:
            table.engine.keep_answer(
                key, _KEPT_UNTIL_FORGOTTEN.generation, until, body, rpc="find_value"
            )
        return body

    def rpc_store_record(self, sender: Address, nodeid: bytes, key: bytes, value: Any) -> bool:
        source = Node(nodeid, sender[0], sender[1])
        self.welcome_if_new(source)
        # (a refused record is counted, never held against the sender's
        # address: an unsolicited datagram's source proves nothing)
        records = self.records
        try:
            full = records.refusal(key)
            if full is not None:  # (refused before it is read and verified)
                raise full
            records.put(key, records.verifier.from_wire(value, key), self.clock.now())
        except RecordError as exc:
            self.drop(exc.kind)
            return False
        except StorageFull as exc:
            self.stats["store_refused"] += 1
            log.debug("refused a record from %s: %s", sender, exc)
            return False
        return True

    # -- asking -------------------------------------------------------

    def rtt(self, address: Address) -> PeerRtt:
        """The peer's RFC 6298 estimator (made if it had none), read and fed
        as an RttEstimator."""
        return PeerRtt(self._peers, address)

    @property
    def rtt_by_ip(self) -> bool:
        """Does srtt() of a peer never measured fall back to its IP
        address's?"""
        return self._peers.rtt_by_ip

    @rtt_by_ip.setter
    def rtt_by_ip(self, value: bool) -> None:
        self._peers.rtt_by_ip = value

    def _supports(self, address: Address, extensions: bool) -> None:
        """Remember whether ``address`` answers our extension RPCs (at most
        PEERS_KEPT addresses, the oldest out first)."""
        known = self.extensions
        known[address] = extensions
        if len(known) > PEERS_KEPT:
            del known[next(iter(known))]

    def srtt(self, address: Address) -> float | None:
        """The peer's smoothed round trip in seconds, or, never measured,
        that of another port of its IP address (the same host: the same
        path), or None; a lookup asks the peers expected to answer soonest
        first."""
        return self._peers.srtt(address)

    def first_rto(self, address: Address) -> float:
        """When a lookup's request to ``address``, a peer never measured, is
        overdue (FIRST_RTO_SAMPLES): the base RTO of another port of its IP
        address that was measured (the same host, the same path; unless
        ``rtt_by_ip`` is off), else the network's, else 1 s."""
        return self._peers.first_rto(address)

    def request(
        self,
        address: Address,
        name: str,
        args: tuple[Any, ...],
        timeout: float | None = None,
        overdue: Callable[[Any], object] | None = None,
    ) -> asyncio.Future[Reply]:
        """Send RPC ``name``; the future gives (True, value) or (False, None)
        after ``timeout`` (default: the peer's RTO, counted from the send).
        With ``overdue``, as ``request_packed``: retransmitted within
        ``timeout``, ``overdue(None)`` called at each retransmission.

        At most ``max_outstanding`` requests are on the wire at once; the
        rest wait their turn unsent. Without that window a burst (a thousand
        lookups at once) puts more answers on the socket than the loop reads
        within an RTO, and every request times out with its answer queued."""
        requests = self.requests
        future: asyncio.Future[Reply] = requests.loop.create_future()
        self._request(
            requests,
            address,
            name,
            pack_request(name, args),
            timeout,
            future,
            None,
            None,
            False,
            overdue,
        )
        return future

    def _request_background(
        self, address: Address, name: str, args: tuple[Any, ...], timeout: float
    ) -> asyncio.Future[Reply]:
        """``request`` for kademlia's own RPCs: they wait within the
        window's background share, behind the node's own requests."""
        requests = self.requests
        future: asyncio.Future[Reply] = requests.loop.create_future()
        self._request(
            requests, address, name, pack_request(name, args), timeout, future, None, None, True
        )
        return future

    def request_callback(
        self,
        address: Address,
        name: str,
        args: tuple[Any, ...],
        timeout: float | None,
        callback: Callback,
        context: Any = None,
    ) -> None:
        """As ``request``, but the end comes as ``callback(context, address,
        name, ok, value)``, called from the loop without a loop iteration in
        between: ``ok`` with the answer, or not ok with None (no answer) or
        ``requests.BAD_RESPONSE`` (an answer of the wrong shape)."""
        body = pack_request(name, args)
        self._request(self.requests, address, name, body, timeout, None, callback, context)

    def request_packed(
        self,
        address: Address,
        name: str,
        body: bytes,
        timeout: float | None,
        callback: Callback,
        context: Any = None,
        overdue: Callable[[Any], object] | None = None,
    ) -> None:
        """``request_callback`` with the body packed already by
        ``wire.pack_request(name, args)``: the same request sent to several
        peers (a lookup's asks go through ``ask_many``, which sends each as
        this does).

        With ``overdue``, the request is retransmitted (RFC 6298: same
        message id, RTO doubled) within ``timeout`` (None: OVERDUE_SPAN of
        the peer's RTOs) and ``overdue(context)`` is called at each
        retransmission, the first telling that the request passed its RTO:
        the caller may ask someone else meanwhile, and an answer to any copy
        still ends the request as usual."""
        requests = self._requests
        # (not the property: 0.12 us less a request, timeit here; the
        # property still gives the error)
        if requests is None:
            requests = self.requests
        self._request(
            requests, address, name, body, timeout, None, callback, context, False, overdue
        )

    def ask_many(
        self,
        asks: list[tuple[bytes, Address]],
        names: tuple[str, str],
        bodies: dict[str, bytes],
        timeout: float | None,
        callback: Callback,
        overdue: Callable[[Any], object],
    ) -> int:
        """A lookup's asks, each ``(node id, address)``, in order: each as
        ``request_packed(address, name, bodies[name], timeout, callback,
        ask, overdue)`` (the ask its context), ``name`` being ``names[0]``
        (an extension RPC), or ``names[1]`` for a peer known not to answer
        ours (``extensions``). Returns how many were asked: fewer than
        ``len(asks)`` when the next one's body is not in ``bodies`` (pack
        it and ask the rest).

        When the window has room for them all, they are opened (timed as
        ``_request`` times an overdue request, from the PeerBook), framed
        and sent in one call of the RPC table's engine (``open_asks``):
        a Python frame per batch, where ``request_packed`` took four per
        request (README.md, "Client CPU per lookup")."""
        if names[0] in STOCK_RPCS:
            raise InvalidArgumentError(f"names[0] must be an extension RPC, got {names[0]!r}")
        requests = self._requests
        if requests is None:
            requests = self.requests
        transport = self.transport
        if (
            self._waiting
            or len(requests.on_wire) + len(asks) > self.max_outstanding
            or transport.is_closing()
        ):
            return self._ask_each(requests, asks, names, bodies, timeout, callback, overdue)
        now = self.clock.now()
        timer = self._timer
        earliest, refused, asked = requests.engine.open_asks(
            asks,
            names,
            bodies,
            now,
            timer.lag,
            self._peers,
            self.extensions,
            timeout,
            OVERDUE_SPAN,
            _FIRST_SPAN,
            callback,
            overdue,
            # (BatchedTransport's, unless a wrapper's sendto is to see them:
            # sent with no Python call per datagram)
            self._native_socket if transport is self._native_transport else transport.sendto,
        )
        self.stats["requests"] += asked
        if timer.armed_until > now + earliest:
            timer.arm(now + earliest)
        if refused:
            # (uvloop: an address of another family than the socket's; the
            # request times out)
            for _ in range(refused):
                self.drop("socket_error")
        return asked

    def asker(self, names: tuple[str, str], make: type[Asker]) -> Asker:
        """The core's ``Asker`` (``make``, its class) for this protocol:
        ``ask_many``'s fast path (the window has room, nothing queued, the
        transport open) taken from the core, for a lookup's asks that an
        answer leads to, with no Python frame (``LookupAnswers``); it says
        None where ``ask_many`` would take ``_ask_each``. Made with what
        ask_many gives ``open_asks``: ``names`` and the spans."""
        if names[0] in STOCK_RPCS:
            raise InvalidArgumentError(f"names[0] must be an extension RPC, got {names[0]!r}")
        return make(self, names, OVERDUE_SPAN, _FIRST_SPAN)

    def _ask_each(
        self,
        requests: RpcTable,
        asks: list[tuple[bytes, Address]],
        names: tuple[str, str],
        bodies: dict[str, bytes],
        timeout: float | None,
        callback: Callback,
        overdue: Callable[[Any], object],
    ) -> int:
        """``ask_many`` one request at a time, when some wait for the window
        or the node has stopped (``_request`` queues or refuses them)."""
        extensions = self.extensions
        for index, ask in enumerate(asks):
            address = ask[1]
            name = names[1] if extensions.get(address) is False else names[0]
            body = bodies.get(name)
            if body is None:
                return index
            self._request(
                requests, address, name, body, timeout, None, callback, ask, False, overdue
            )
        return len(asks)

    # _request takes the request's parts one by one, not as an _Outgoing:
    # that is built only for a request that has to wait.

    def _request(
        self,
        requests: RpcTable,
        address: Address,
        name: str,
        body: bytes,
        timeout: float | None,
        future: asyncio.Future[Reply] | None,
        callback: Callback | None,
        context: Any,
        background: bool = False,
        overdue: Callable[[Any], object] | None = None,
        dequeued: bool = False,
    ) -> None:
        """Send the request now if the window has room (or it comes out of
        the queue: ``dequeued``), else queue it (or refuse it, the queue
        being full).

        ``timeout`` None: one try, given up after the peer's RTO (unless
        ``overdue``, see ``request_packed``). Else the caller's budget: the
        first try waits the peer's RTO and the request is retransmitted with
        the RTO doubled within the budget (``RpcTable``)."""
        if self.transport.is_closing():
            # The node stopped: no answer can come, and nothing would end the
            # request (the table is closed). kademlia's Tasks still running
            # at shutdown asked on: 10-30 sends to a closed socket per
            # `dhtquery demo`, each an asyncio warning on the terminal.
            self.stats["after_stop"] += 1
            if callback is not None:
                requests.loop.call_soon(callback, context, address, name, False, None)
            elif future is not None and not future.done():
                future.set_result((False, None))
            return
        if not dequeued:
            if background:
                if (
                    self._waiting_background
                    or len(requests.on_wire) >= self.max_outstanding
                    or self._background_in_flight >= self.max_outstanding - self.reserved_for_own
                ):
                    self._enqueue(
                        self._waiting_background,
                        self.max_waiting_background,
                        "queue_full_background",
                        (address, name, body, timeout, future, callback, context, background, None),
                    )
                    return
            elif self._waiting or len(requests.on_wire) >= self.max_outstanding:
                self._enqueue(
                    self._waiting,
                    self.max_waiting,
                    "queue_full",
                    (address, name, body, timeout, future, callback, context, background, overdue),
                )
                return
        self.stats["requests"] += 1
        if timeout is None and overdue is None:
            rto = self._peers.rto(address)
            datagram = requests.open_request(address, name, rto, future, callback, context, body)
        else:
            if overdue is not None:
                # A lookup's request is due when the peer's last measure says
                # (its RTO without back-off: RFC 6298's back-off would make it
                # wait up to max_rto on a peer that died, while it has other
                # peers to ask); it is still retransmitted with the RTO
                # doubled. Measured on 30 nodes, 9 killed, 10 % loss: p99 of
                # get_all 4.0 s with the backed-off RTO (lookups waiting on a
                # dead peer's 4 s), see the commit.
                # (one call: the base RTO if measured, else first_rto)
                _, rto, measured = self._peers.timing(address)
                # First contact: overdue (and sent again) at first_rto,
                # given up within the span RFC 6298's 1 s would give (3 s).
                # Given up within 3 first_rto, live peers behind `bench
                # churn`'s 10 % loss failed: timeouts 75 -> 241 a phase, p99
                # 1.7 -> 5.0 s. (MAX_TRIES still ends it at the fourth
                # copy's wait, 15 first_rto when that is sooner: 0.75 s at
                # the 50 ms floor; a test pins it.)
                span = OVERDUE_SPAN * (rto if measured else FIRST_RTO_CAP)
                if (
                    name not in STOCK_RPCS
                    and self.extensions.get(address) is None
                    and self._peers.successes(address)
                ):
                    # An extension RPC to a peer that answered before but not
                    # one of ours yet: silence most likely means a stock peer
                    # (see _request_timed_out), so one try, given up at its
                    # RTO, and the lookup asks it again the stock way.
                    timeout = rto
                elif timeout is None:
                    timeout = span
            else:
                rto = self._peers.rto(address)
            assert timeout is not None  # (None without overdue: the branch above)
            first = rto if rto < timeout else timeout
            # (one call: registered, framed, and retransmitted within timeout)
            datagram = requests.open_request(
                address, name, first, future, callback, context, body, timeout, overdue
            )
        if background:
            self._background_in_flight += 1
            assert future is not None
            future.add_done_callback(self._background_done)
        self._send(datagram, address)

    def _send(self, datagram: bytes, address: Any) -> None:
        try:
            self.transport.sendto(datagram, address)
        except ValueError:
            # uvloop: an address of another family than the socket's (asyncio
            # reports it to error_received); the request times out.
            self.drop("socket_error")

    def _enqueue(
        self, waiting: deque[_Outgoing], bound: int, kind: str, parts: tuple[Any, ...]
    ) -> None:
        out: _Outgoing = _new_outgoing(_Outgoing, parts)
        if len(waiting) >= bound:
            # Refused: the caller hears no answer, one loop iteration later.
            self.shed(kind)
            if out.callback is not None:
                self.requests.loop.call_soon(
                    out.callback, out.context, out.address, out.name, False, None
                )
            elif out.future is not None and not out.future.done():
                out.future.set_result((False, None))
            return
        waiting.append(out)
        self.stats["queued"] += 1

    def _background_done(self, future: asyncio.Future[Reply]) -> None:
        self._background_in_flight -= 1
        if self._waiting_background and self._requests is not None:
            self._send_waiting(self._requests)

    def _send_waiting(self, requests: RpcTable) -> None:
        """Send queued requests while the window has room: the node's own
        first, then background ones within their share."""
        waiting = self._waiting
        room = self.max_outstanding - len(requests)
        while waiting and room > 0:
            out = waiting.popleft()
            if out.future is not None and out.future.done():
                continue
            self._request(requests, *out, dequeued=True)
            room -= 1
        waiting = self._waiting_background
        share = self.max_outstanding - self.reserved_for_own
        while waiting and room > 0 and self._background_in_flight < share:
            out = waiting.popleft()
            if out.future is not None and out.future.done():
                continue
            self._request(requests, *out, dequeued=True)
            room -= 1

    def _unmatched(self, status: RpcStatus, name: str, rtt: float, addr: Address) -> None:
        """An answer that ends no request: counted by kind; a late one still
        tells about its peer."""
        self.drop(status.value)
        if status is RpcStatus.LATE and name:
            self._answered_late(addr, name, rtt)

    def _answered(
        self,
        requests: RpcTable,
        name: str,
        rtt: float,
        pending: _Pending,
        value: Any,
        addr: Address,
        judge: bool = True,
    ) -> None:
        """The answer to ``pending`` (ended in the table): judged by shape
        and handed to its caller; ``judge`` False: an answer of the wrong
        shape, judged and told to the peer book by the engine. (The engine's
        answers of the right shape datagram_received hands over itself.)"""
        if self._waiting or self._waiting_background:
            self._send_waiting(requests)
        if self.recently_failed:
            self.recently_failed.pop(addr, None)
        if name not in STOCK_RPCS and self.extensions.get(addr) is not True:
            self._supports(addr, True)
        shape = False
        if judge:
            # The shape is judged here, once: an answer of the wrong shape is
            # no answer for the caller (and a failure of the peer).
            spec = self._rpcs.get(name)
            # (no spec: an RPC this node calls but does not serve,
            # rpcudp-style, whose answer may be anything)
            shape = spec is None or spec.response(value)
            # One call: the estimator's and the network's sample (unless rtt
            # is -1, a retransmitted request's: Karn's rule) and the peer's
            # success (or failure, the shape wrong).
            self._peers.answered(addr, rtt, shape, self.clock.now())
        if shape:
            callback = pending.callback
            if callback is None:
                pending.deliver(True, value)
                return
            try:  # (deliver's work, inline: the common answer)
                callback(pending.context, addr, name, True, value)
            except Exception:  # a caller's bug must not cost other requests
                log.exception("dhtquery: error in a request callback")
        else:
            self.drop("bad_response")
            pending.deliver(False, BAD_RESPONSE)

    def _answered_late(self, address: Address, name: str, rtt: float) -> None:
        """The answer to a request we gave up on: the peer is alive, only
        slower than its RTO. Learn its real RTT (if nothing was resent, so
        the sample is unambiguous: Karn's rule) and stop counting it towards
        being forgotten; and an extension RPC answered late shows the peer
        is slow, not stock."""
        self._peers.answered_late(address, rtt)
        self.recently_failed.pop(address, None)
        if name not in STOCK_RPCS:
            self._supports(address, True)

    def _retransmitted(self, address: Address, name: str, sent: float) -> None:
        """A request went unanswered within its RTO and is sent again: back
        off (RFC 6298, 5.5)."""
        self.stats["retransmitted"] += 1
        self._peers.back_off(address, sent, self.clock.now())

    def _request_timed_out(self, address: Address, name: str, sent: float) -> None:
        self.stats["timeouts"] += 1
        if self._waiting or self._waiting_background:
            self._send_waiting(self.requests)
        known = self.extensions.get(address)
        # An extension RPC to a peer known to be stock (True), or not known
        # either way (None: stock if it answered before)
        stock = False if name in STOCK_RPCS or known is True else (None if known is None else True)
        now = self.clock.now()
        # one call: back off, count the failure (nothing if stock)
        in_a_row = self._peers.timed_out(address, sent, now, stock)
        if in_a_row < 0:
            # Alive (it answered before) but silent on our RPCs: a stock peer
            # (or one already known as such, asked before we knew).
            self._supports(address, False)
            return
        failed = self.recently_failed
        failed.pop(address, None)
        failed[address] = now
        if len(failed) > _RECENT_FAILURES_KEPT:
            del failed[next(iter(failed))]
        if in_a_row >= FORGET_AFTER_FAILURES:
            self._probe(address)

    def scores(self, addresses: list[Address]) -> list[float]:
        """The reputation scores of ``addresses`` now, in order (one call
        per ranking of a lookup's candidates)."""
        return self._peers.scores(addresses, self.clock.now())

    def failed_recently(self, address: Address) -> bool:
        """Did a request to ``address`` fail within RECENT_FAILURE seconds
        (with no answer since)?"""
        when = self.recently_failed.get(address)
        return when is not None and self.clock.now() - when < RECENT_FAILURE

    def _probe(self, address: Address) -> None:
        """Ping a peer that keeps failing, retransmitting within
        LIVENESS_TIMEOUT; only if that goes unanswered does it leave the
        routing table."""
        if address in self._probing or self.transport is None:
            return
        self._probing.add(address)
        self.stats["liveness_probes"] += 1
        probe = self._request_background(address, "ping", (self.source_node.id,), LIVENESS_TIMEOUT)

        def probed(future: asyncio.Future[Reply]) -> None:
            self._probing.discard(address)
            if not future.cancelled() and not future.result()[0]:
                self.forget(address)

        probe.add_done_callback(probed)

    def forget(self, address: Address, *, keep_last: bool = True) -> bool:
        """Drop the contact at ``address`` from the routing table (kademlia
        promotes a replacement); False if there was none. A peer that keeps
        failing is dropped so lookups stop waiting on it, but with
        ``keep_last`` never the last few contacts: they are this node's way
        back into the network when it is the one that was cut off."""
        if keep_last and sum(len(bucket.nodes) for bucket in self.router.buckets) <= _MIN_CONTACTS:
            return False
        # (its replacement-cache entries too: lookups start from those)
        if self.router.remove_address(address):
            self.stats["peers_forgotten"] += 1
            return True
        return False

    async def _call(self, address: Address, name: str, *args: Any) -> Reply:
        # kademlia's RPCs (bootstrap, crawls, stores, pings) drop a silent
        # peer from the routing table: each is retransmitted within the
        # query's default timeout (the first try waits the peer's RTO, 1 s
        # for a peer never measured). An answer of the wrong shape comes as
        # (False, None).
        return await self._request_background(address, name, args, self.config.default_timeout)

    # -- new nodes ----------------------------------------------------

    def welcome_if_new(self, node: Node) -> None:
        """kademlia's welcome_if_new (add a new node to the routing table and
        hand it the values and records it should hold), bounded: an address
        introduces at most INTRODUCE_BURST new ids, then one per
        INTRODUCE_INTERVAL (others are not welcomed: ``welcome_rate_limited``);
        what it should hold is queued (at most HANDOVER_QUEUE, beyond:
        ``handover_dropped``) and stored HANDOVER_IN_FLIGHT at a time.

        A client (a request whose message id carries the client marker) is
        served but never welcomed: it leaves soon, and a departed contact
        would cost later lookups a request each (``client_requests``). A
        client node hands nothing over: it holds nothing for others.

        The sender of a request is welcomed only once it answers a ping
        (VERIFY_IN_FLIGHT); a node that answered one of our requests, at
        once."""
        if self._serving_client:
            self.stats["client_requests"] += 1
            return
        router = self.router
        if node.id == self.source_node.id or not router.is_new_node(node):
            return  # (a sender with this node's own id is an impostor)
        address = (node.ip, node.port)
        now = self.clock.now()
        introducers = self._introducers
        tokens, since = introducers.pop(address, (float(INTRODUCE_BURST), now))
        tokens = min(float(INTRODUCE_BURST), tokens + (now - since) / INTRODUCE_INTERVAL)
        if tokens < 1.0:
            introducers[address] = (tokens, now)
            self.shed("welcome_rate_limited")
            return
        introducers[address] = (tokens - 1.0, now)
        if len(introducers) > _INTRODUCERS_KEPT:
            del introducers[next(iter(introducers))]
        if self._serving:
            self._verify(node)
            return
        self._welcome(node)

    def _welcome(self, node: Node) -> None:
        if not self.client:
            self._hand_over(node)
        self.router.add_contact(node)

    def _verify(self, node: Node) -> None:
        """Welcome ``node``, the sender of a request, once a ping to its
        address is answered with its id (see VERIFY_IN_FLIGHT)."""
        address = (node.ip, node.port)
        if self._verified.get(address) == node.id:
            self._welcome(node)
            return
        verifying = self._verifying
        if address in verifying or self.transport is None:
            return  # (one ping per address: the first id it gave is checked)
        if len(verifying) >= VERIFY_IN_FLIGHT:
            self.shed("verify_dropped")
            return
        verifying[address] = node.id
        self.stats["verify_pings"] += 1
        ping = self._request_background(address, "ping", (self.source_node.id,), VERIFY_TIMEOUT)

        def answered(future: asyncio.Future[Reply]) -> None:
            del verifying[address]
            if future.cancelled():
                return
            ok, value = future.result()
            if not ok or value != node.id:
                self.stats["verify_failed"] += 1
                return
            verified = self._verified
            verified.pop(address, None)
            verified[address] = node.id
            if len(verified) > _VERIFIED_KEPT:
                del verified[next(iter(verified))]
            if self.router.is_new_node(node) and self.transport is not None:
                self._welcome(node)

        ping.add_done_callback(answered)

    def _should_hold(self, node: Node, key: bytes) -> bool:
        """kademlia's rule (paper, 2.5): hand ``key`` to ``node`` if it is
        closer to the key than the farthest of our k closest contacts and
        this node is closer than the nearest of them (so that one holder,
        not k, hands it over). ``key`` is the stored digest itself (stock
        digests it again, and so measures closeness to an unrelated point)."""
        keynode = Node(key)
        neighbors = self.router.find_neighbors(keynode)
        if not neighbors:
            return True
        if node.distance_to(keynode) >= neighbors[-1].distance_to(keynode):
            return False
        return bool(self.source_node.distance_to(keynode) < neighbors[0].distance_to(keynode))

    def _hand_over(self, node: Node) -> None:
        """Queue the plain values, then the records (not to a peer known to
        be stock: it does not take them), that ``node`` should hold."""
        handover = self._handover
        bound = HANDOVER_QUEUE - self._parked_count
        if len(handover) >= bound:
            self.shed("handover_dropped")
            return
        for key, value in self.storage:
            if self._should_hold(node, key):
                if len(handover) >= bound:
                    self.shed("handover_dropped")
                    self._pump_handover()
                    return
                handover.append((node, key, value))
        if self.extensions.get((node.ip, node.port)) is not False:
            last_key: bytes | None = None
            wanted = False
            for key, record in self.records.items():  # (grouped by key)
                if key != last_key:
                    last_key, wanted = key, self._should_hold(node, key)
                if wanted:
                    if len(handover) >= bound:
                        self.shed("handover_dropped")
                        break
                    handover.append((node, key, record))
        self._pump_handover()

    def _pump_handover(self) -> None:
        handover = self._handover
        while handover and self._handover_in_flight < HANDOVER_IN_FLIGHT:
            node, key, value = handover.popleft()
            address: Address | None = None
            if isinstance(value, Record):
                address = (node.ip, node.port)
                known = self.extensions.get(address)
                refused = self._records_refused
                if known is False or (refused and address in refused):
                    # a stock peer (or silent): it would not take records
                    self.stats["handover_skipped"] += 1
                    continue
                if known is None:
                    parked = self._parked
                    if parked is None:
                        parked = self._parked = {}
                    waiting = parked.get(address)
                    if waiting is not None:  # its first record is on the way
                        waiting.append((node, key, value))
                        self._parked_count += 1
                        continue
                    parked[address] = []
                # (not call_store_record: a peer that does not answer a
                # hand-over, a stock one say, stays in the routing table)
                store: Awaitable[Any] = self.store_record(address, self.source_node.id, key, value)
                self.stats["records_handed_over"] += 1
            else:
                store = self.call_store(node, key, value)
            self._handover_in_flight += 1
            self.stats["handed_over"] += 1
            task = asyncio.ensure_future(store)
            task.add_done_callback(functools.partial(self._handed_over, address))

    def _handed_over(self, record_to: Address | None, task: asyncio.Future[Any]) -> None:
        self._handover_in_flight -= 1
        # (the exception retrieved: a failed store is not an error)
        failed = not task.cancelled() and (task.exception() is not None or not task.result()[0])
        waiting = self._parked.pop(record_to, None) if record_to and self._parked else None
        if waiting:
            self._parked_count -= len(waiting)
            if failed:
                self.stats["handover_skipped"] += len(waiting)
            else:  # it takes records: the rest go next
                self._handover.extendleft(reversed(waiting))
        if record_to is not None and failed:
            refused = self._records_refused
            if refused is None:
                refused = self._records_refused = {}
            refused[record_to] = None
            if len(refused) > _RECENT_FAILURES_KEPT:
                del refused[next(iter(refused))]
        if self.transport is not None:
            self._pump_handover()

    def response_ok(self, name: str, value: Any) -> bool:
        """Has an answer to ``name`` the shape that RPC answers with?"""
        spec = self._rpcs.get(name)
        return spec is not None and spec.response(value)

    # kademlia's call_* methods and crawlers call these, as rpcudp's
    # __getattr__ would have made them.
    def ping(self, address: Address, nodeid: bytes) -> Any:
        return self._call(address, "ping", nodeid)

    def store(self, address: Address, nodeid: bytes, key: bytes, value: Any) -> Any:
        return self._call(address, "store", nodeid, key, value)

    def find_node(self, address: Address, nodeid: bytes, key: bytes) -> Any:
        return self._call(address, "find_node", nodeid, key)

    def find_value(self, address: Address, nodeid: bytes, key: bytes) -> Any:
        return self._call(address, "find_value", nodeid, key)

    def find_values(self, address: Address, nodeid: bytes, key: bytes) -> Any:
        return self._call(address, "find_values", nodeid, key)

    def store_record(self, address: Address, nodeid: bytes, key: bytes, record: Record) -> Any:
        return self._call(address, "store_record", nodeid, key, record.to_wire())

    # kademlia's crawls (bootstrap, refresh, put, get) ask whom answers name,
    # this node's own id included: a peer's table keeps the address this
    # node had before a restart (a known id is not re-added), and asking it
    # waited out a dead address (10 s, seen in the restart test). Nobody
    # but this node answers for its id: such a contact is never asked.

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> Reply:
        if node_to_ask.id == self.source_node.id:
            return (False, None)
        return await super().call_find_node(node_to_ask, node_to_find)  # type: ignore[no-any-return]

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> Reply:
        if node_to_ask.id == self.source_node.id:
            return (False, None)
        return await super().call_find_value(node_to_ask, node_to_find)  # type: ignore[no-any-return]

    async def call_store_record(self, node: Node, key: bytes, record: Record) -> Reply:
        if node.id == self.source_node.id:
            return (False, None)
        address = (node.ip, node.port)
        result = await self.store_record(address, self.source_node.id, key, record)
        if not result[0] and self.extensions.get(address) is False:
            # A stock peer, alive but without our RPCs: keep it in the table.
            return result  # type: ignore[no-any-return]
        return self.handle_call_response(result, node)  # type: ignore[no-any-return]


# (``stun``: kademlia's rpc_stun has no caller of its own)
_add_callers(DhtProtocol)

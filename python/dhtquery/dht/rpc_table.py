"""Outstanding RPCs, tracked in a query core.

Each request is a one-result query in its own QueryCore: its deadline sits in
the core's expiry wheel (one loop timer for all of them, where rpcudp makes a
``call_later`` per request), a response ends it and records the RTT in the
core's latency histogram, and a response that comes after the request gave up
is told apart from one for an id never sent (late vs unknown).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ..query import Clock, CoreOutcome, ExpiryTimer, QueryState, Reason, backend_of, load_core
from .wire import CLIENT_PAD, MSG_ID_SIZE

if TYPE_CHECKING:
    from .._core import DatagramEngine
    from ..query import QueryCore, QueryId

__all__ = ["BAD_RESPONSE", "CLIENT_PAD", "Callback", "Reply", "RpcStatus", "RpcTable"]

log = logging.getLogger("dhtquery.dht")

#: The answer a caller gets: (True, value) or (False, None), as rpcudp gives.
Reply = tuple[bool, Any]
_NO_REPLY: Final[Reply] = (False, None)
_PAD: Final = bytes(MSG_ID_SIZE - 16)
#: The pad of a client's requests (``RpcTable(client=True)``): a node that
#: only asks says so, and our nodes serve it without adding it to their
#: routing tables (libp2p kad-dht's client mode). Stock kademlia echoes
#: message ids unchanged, so it costs nothing and stock peers still serve
#: it. A forged marker only keeps the forger out of routing tables: harmless.
_GIVEN_UP_KEPT: Final = 4096
_new_pending: Final = tuple.__new__
#: A request ends as a one-result query "all of whose peers answered".
_ANSWERED: Final = Reason.ALL_PEERS
# What DatagramEngine.receive says a datagram is (see _core.pyi): 5 and 6
# are an answer judged by the shape of its RPC.
DATAGRAM_DROP: Final = 0
DATAGRAM_REQUEST: Final = 1
DATAGRAM_ANSWERED: Final = 2
#: an answer from another address than the one asked (its request waits on)
DATAGRAM_WRONG_ADDRESS: Final = 3
DATAGRAM_NOT_PENDING: Final = 4
DATAGRAM_CHECKED: Final = 5
DATAGRAM_BAD_SHAPE: Final = 6
#: a CHECKED answer the engine handed to its request's callback itself (a
#: LookupAnswers: see DatagramEngine.dispatch_answers); the value is None,
#: or what the callback raised
DATAGRAM_HANDLED: Final = 7
#: (receive_at while serving, see DatagramEngine.serve) a request shed by
#: the fair share; a resend answered again from the replay cache; a
#: find_values or find_value answered from its kept answer, or a ping
DATAGRAM_SHED: Final = 8
DATAGRAM_REPLAYED: Final = 9
DATAGRAM_SERVED: Final = 10
#: (receive_batch) handling the datagram raised; the value is the exception
DATAGRAM_FAILED: Final = 11


class RpcStatus(enum.StrEnum):
    """What an arriving response was, as the protocol's drop counters name it."""

    ANSWERED = "answered"
    WRONG_ADDRESS = "wrong_address"  # from another address than the one asked
    LATE = "late_response"  # to a request given up less than the grace ago
    #: another answer to a request sent more than once, answered already
    #: (one per copy: not late, nor the peer's fault)
    DUPLICATE = "duplicate_response"
    UNKNOWN = "unknown_id"  # to no request this table made (or long forgotten)


#: called as callback(context, address, name, ok, value) once a request
#: ends: ok with the answer, or not ok with None (no answer) or BAD_RESPONSE.
Callback = Callable[[Any, Hashable, str, bool, Any], object]

#: The value a callback gets (with ok False) for an answer of the wrong
#: shape, told apart from no answer at all.
BAD_RESPONSE: Final = object()


class _Pending(NamedTuple):
    """A request on the wire. (A tuple, made by the core's engine in
    ``open_request``, one per RPC: a class with ``__init__`` cost three
    times as much to make.)"""

    query_id: QueryId
    address: Hashable
    name: str
    future: asyncio.Future[Reply] | None
    callback: Callback | None
    context: Any
    sent: float
    #: None: one try; else the state of a request retransmitted until its
    #: caller's deadline: a list (the engine's, see ``open_request``), read
    #: by the _RETRY_* indexes
    retry: list[Any] | None
    #: the timer's ``lag`` when this was sent (or last granted lag), the
    #: time granted to it so far (see RpcTable._expired), and the part of
    #: that which was the loop's lag (the rest: waits for unread datagrams)
    lag: float
    granted: float
    lagged: float

    def deliver(self, ok: bool, value: Any) -> None:
        """Hand the request's end to whoever waits: its callback (now) or
        its future ((True, value), else (False, None))."""
        callback = self.callback
        if callback is not None:
            try:
                callback(self.context, self.address, self.name, ok, value)
            except Exception:  # a caller's bug must not cost other requests
                log.exception("dhtquery: error in a request callback")
            return
        future = self.future
        if future is not None and not future.done():
            future.set_result((True, value) if ok else _NO_REPLY)


# What a retransmitted request needs, in its retry list: its datagram (same
# message id every time), the caller's deadline, the tries made, the current
# RTO, when the last copy went out, and whom to tell that it is overdue. A
# list, made by the core's engine with the request (``open_request``): an
# object of a class per request cost a Python call more on each.
_RETRY_DATAGRAM: Final = 0
_RETRY_DEADLINE: Final = 1
_RETRY_TRIES: Final = 2
_RETRY_RTO: Final = 3
_RETRY_LAST_SENT: Final = 4
_RETRY_OVERDUE: Final = 5


#: Sends of one request at most (the first and its retransmissions).
MAX_TRIES: Final = 4
# A retransmission with less time than this before the deadline is not worth it.
_MIN_RETRY: Final = 0.005
# The sent time kept for a given-up request that was retransmitted: its
# late answer gives no RTT sample (Karn's rule).
_AMBIGUOUS: Final = -1.0
#: Local lag granted to one request at most (seconds): beyond it, a loop that
#: never catches up still judges its requests (a dead peer is still found).
MAX_LAG_GRANT: Final = 1.0
#: The first wait granted to a request because datagrams sit unread in the
#: socket (doubled each time the backlog is still there, within
#: MAX_LAG_GRANT), and how long one look at the socket is taken as true.
_BACKLOG_WAIT: Final = 0.002
_BACKLOG_FRESH: Final = 0.0005


class RpcTable:
    """msg id -> pending request; the message id is the query id's 16 UUID
    bytes and 4 zero bytes (``CLIENT_PAD`` with ``client``), so a late
    response can still be looked up in the core's tombstones.

    ``core`` holds the requests (one one-result query each) and is expired
    by ``timer`` (the node's, shared with its lookups); ``on_timeout(address,
    name, sent)`` hears of each request given up.

    A request opened with a ``budget`` (see ``open_request``) that is not
    answered within its RTO is sent again (``send(datagram, address)``) with
    the RTO doubled, under the same message id, so an answer to any copy
    ends it (RFC 6298, 5.4-5.6), at most ``MAX_TRIES`` sends and never past
    the caller's deadline; ``on_retransmit(address, name, sent)`` hears of
    each, and so does the request's ``overdue(context)`` (a lookup asks
    another peer meanwhile). Its answer carries no RTT sample (Karn's rule):
    ``receive`` gives it as -1.

    The local loop's lag is not the peer's fault: a request is judged (given
    up or sent again) only once it has waited its timeout with this node's
    lag since it was sent (``timer.lag``, how late the node's one timer
    fired, see ExpiryTimer) added, up to MAX_LAG_GRANT. Why this measure
    and not only a look at the socket's buffer before each verdict: in one
    process the peers share the loop (``dhtquery demo``, the tests), so
    during a stall the request waits unread in the peer's buffer, not the
    answer in ours. The look is taken too (``backlog()``, when given): the
    loop may be on time yet behind in reading (asyncio reads one datagram
    per socket per iteration), and then a request is judged only once the
    socket is empty (waits of 2 ms, doubling, within MAX_LAG_GRANT): in
    the measured burst of 300 requests after a 300 ms stall under asyncio,
    0 to 4 of them timed out with the lag alone, 0 with both. The RTT
    sample of an answer leaves the loop's lag out too."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        core: QueryCore,
        timer: ExpiryTimer,
        clock: Clock,
        *,
        on_timeout: Callable[[Any, str, float], object] | None = None,
        send: Callable[[bytes, Any], object] | None = None,
        on_retransmit: Callable[[Any, str, float], object] | None = None,
        client: bool = False,
        backlog: Callable[[], bool] | None = None,
        shapes: dict[str, int] | None = None,
    ) -> None:
        self._core = core
        #: the last 4 bytes of every message id this table makes
        self._pad = CLIENT_PAD if client else _PAD
        core_module = load_core(backend_of(core))[1]
        self._query_id: type[QueryId] = core_module.QueryId
        self._loop = loop
        self._clock = clock
        self._now = clock.now
        self._grace = core.grace
        self._pending: dict[bytes, _Pending] = {}
        #: msg id -> request on the wire, to read only: ``len(on_wire)`` is
        #: ``len(table)`` without a Python call (read per request sent)
        self.on_wire: Mapping[bytes, _Pending] = self._pending
        #: core query id (bytes) of a retransmission (or a request granted
        #: lag) -> its request's msg id; the engine ends an answered one's
        self._resent: dict[bytes, bytes] = {}
        #: reads each arriving datagram in one call (framing, msgpack, and
        #: for an answer its request, taken out of _pending and ended: see
        #: ``receive``, and its shape if ``shapes`` names the RPC), and
        #: opens each request (``open_request``), in the core of this
        #: table's backend
        self.engine: DatagramEngine = core_module.DatagramEngine(
            self._pending, shapes, requests=(core, self._pad, self._resent, _Pending)
        )
        self._given_up: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        #: msg ids of requests sent more than once and answered (the last
        #: _GIVEN_UP_KEPT): a second answer is a duplicate, not late
        self._answered_resent: OrderedDict[bytes, None] = OrderedDict()
        self._open = self.engine.open
        self._receive_at = self.engine.receive_at
        #: times a request's verdict waited for this node's own lag
        self._lag_granted = 0
        #: whether datagrams wait unread in the node's socket (None: unknown)
        self._backlog = backlog
        self._backlog_seen = (float("-inf"), False)
        self.send = send
        self.on_retransmit = on_retransmit
        self._timer = timer
        timer.watch(core, self._expired)
        self.on_timeout = on_timeout

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def lag_granted(self) -> int:
        """Times a request's verdict waited for this node's loop lag."""
        return self._lag_granted

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def core(self) -> QueryCore:
        return self._core

    def open_request(
        self,
        address: Hashable,
        name: str,
        timeout: float,
        future: asyncio.Future[Reply] | None,
        callback: Callback | None,
        context: Any,
        body: bytes,
        budget: float | None = None,
        overdue: Callable[[Any], object] | None = None,
    ) -> bytes:
        """Register a request that ends into ``future`` or ``callback``
        (called from the loop as the answer arrives or the request gives
        up, without a loop iteration in between) after ``timeout``, and
        return its datagram (``body`` from ``wire.pack_request``), to send:
        one call of the core's engine registers the request, makes its
        message id (the UUID's 122 random bits make it unguessable), frames
        it and keeps its entry. With ``budget`` (seconds from now) it is
        retransmitted within that, ``overdue(context)`` called at each
        retransmission."""
        now = self._now()
        timer = self._timer
        datagram: bytes = self._open(
            timeout,
            now,
            timer.lag,
            address,
            name,
            future,
            callback,
            context,
            body,
            None if budget is None else now + budget,
            overdue,
        )
        if timer.armed_until > now + timeout:
            timer.arm(now + timeout)
        return datagram

    def unmatched(self, msg_id: bytes) -> tuple[RpcStatus, str, float]:
        """What an answer to no request out is: (DUPLICATE, UNKNOWN or
        LATE, with a late one's rpc name and round trip: the peer is slow,
        not gone)."""
        if msg_id in self._answered_resent:
            return RpcStatus.DUPLICATE, "", 0.0
        status = self._late_or_unknown(msg_id)
        given_up = self._given_up.pop(msg_id, None) if status is RpcStatus.LATE else None
        if given_up is None:
            return status, "", 0.0
        name, sent = given_up
        return status, name, _AMBIGUOUS if sent < 0 else self._now() - sent

    def receive(
        self, datagram: bytes, address: Hashable
    ) -> tuple[int, Any, Any, _Pending | None, float]:
        """An arriving datagram read in one call of the core's engine (see
        ``DatagramEngine.receive_at``): ``(status, first, value, pending,
        rtt)``; an answer from the address asked has ended its request
        (finished in the core, its round trip measured with this node's
        loop lag left out: -1 if it was sent more than once), and its caller is to be
        told (``deliver``). The protocol makes the engine's call itself (a
        Python call less per datagram), then ``answered_again`` as here.

        No timer arm for the ended request's tombstone: the timer was armed
        no later than the request's deadline when it was opened, and when it
        fires it arms for the wheel's next entry, tombstones included."""
        answer: tuple[int, Any, Any, _Pending | None, float]
        answer = self._receive_at(datagram, address, self._now(), self._timer.lag)
        if answer[4] < 0:  # (only an answer to a request sent more than once)
            self.answered_again(answer[1])
        return answer

    def answered_again(self, msg_id: bytes) -> None:
        """The request ``msg_id``, sent more than once, was answered: a
        second answer to it is a duplicate, not late (the last
        _GIVEN_UP_KEPT remembered)."""
        answered_resent = self._answered_resent
        answered_resent[msg_id] = None
        if len(answered_resent) > _GIVEN_UP_KEPT:
            answered_resent.popitem(last=False)

    def _late_or_unknown(self, msg_id: bytes) -> RpcStatus:
        if msg_id[16:] != self._pad:  # not an id this table made
            return RpcStatus.UNKNOWN
        # LATE while the id's tombstone lasts
        state = self._core.state(self._query_id.from_bytes(msg_id[:16]))
        if state == QueryState.TOMBSTONE:
            return RpcStatus.LATE
        # a retransmitted request outlives its first try's tombstone
        given_up = self._given_up.get(msg_id)
        return RpcStatus.LATE if given_up is not None and given_up[1] < 0 else RpcStatus.UNKNOWN

    def _expired(self, outcome: CoreOutcome) -> None:
        query_bytes = outcome.query_id.bytes
        msg_id = self._resent.pop(query_bytes, None) if self._resent else None
        if msg_id is None:
            msg_id = query_bytes + self._pad
        pending = self._pending.pop(msg_id)
        lag = self._timer.lag - pending.lag
        if pending.granted < MAX_LAG_GRANT:
            if lag > 0:
                self._grant(msg_id, pending, min(lag, MAX_LAG_GRANT - pending.granted), True)
                return
            if self._backlog is not None and self._unread():
                # Its answer may be among them: judge it once they are read.
                wait = max(_BACKLOG_WAIT, pending.granted)
                self._grant(msg_id, pending, min(wait, MAX_LAG_GRANT - pending.granted), False)
                return
        retry = pending.retry
        if retry is not None and self._retransmit(msg_id, pending, retry):
            return
        # Remember what was asked, so a late answer still tells what the
        # peer speaks.
        sent = pending.sent if retry is None or retry[_RETRY_TRIES] == 1 else _AMBIGUOUS
        self._given_up[msg_id] = (pending.name, sent)
        if len(self._given_up) > _GIVEN_UP_KEPT:
            self._given_up.popitem(last=False)
        if self.on_timeout is not None:
            self.on_timeout(pending.address, pending.name, pending.sent)
        pending.deliver(False, None)

    def _unread(self) -> bool:
        """Datagrams wait unread in the socket (looked at most once per
        _BACKLOG_FRESH: many requests fall due in one firing)."""
        now = self._now()
        when, unread = self._backlog_seen
        if now - when > _BACKLOG_FRESH:
            assert self._backlog is not None
            unread = self._backlog()
            self._backlog_seen = (now, unread)
        return unread

    def _grant(self, msg_id: bytes, pending: _Pending, lag: float, is_lag: bool) -> None:
        """``pending`` waits ``lag`` longer before it is judged (nothing is
        sent again): the loop was that late (``is_lag``: its RTT sample
        leaves it out), or datagrams wait unread (the answer may have come
        at any time: the sample keeps it)."""
        now = self._now()
        query_id = self._core.register(lag, 1, 1, now)
        self._resent[query_id.bytes] = msg_id
        self._pending[msg_id] = pending._replace(
            query_id=query_id,
            lag=self._timer.lag,
            granted=pending.granted + lag,
            lagged=pending.lagged + lag if is_lag else pending.lagged,
        )
        retry = pending.retry
        if retry is not None:
            retry[_RETRY_DEADLINE] += lag
        if self._timer.armed_until > now + lag:
            self._timer.arm(now + lag)
        self._lag_granted += 1

    def _retransmit(self, msg_id: bytes, pending: _Pending, retry: list[Any]) -> bool:
        """Send the request again with the RTO doubled (False: no try or no
        time left, the request gives up)."""
        now = self._now()
        timeout = min(2 * retry[_RETRY_RTO], retry[_RETRY_DEADLINE] - now)
        if retry[_RETRY_TRIES] >= MAX_TRIES or timeout < _MIN_RETRY or self.send is None:
            return False
        if self.on_retransmit is not None:
            self.on_retransmit(pending.address, pending.name, retry[_RETRY_LAST_SENT])
        query_id = self._core.register(timeout, 1, 1, now)
        self._resent[query_id.bytes] = msg_id
        self._pending[msg_id] = pending._replace(query_id=query_id, lag=self._timer.lag)
        retry[_RETRY_TRIES] += 1
        retry[_RETRY_RTO] = timeout
        retry[_RETRY_LAST_SENT] = now
        if self._timer.armed_until > now + timeout:
            self._timer.arm(now + timeout)
        self.send(retry[_RETRY_DATAGRAM], pending.address)
        overdue = retry[_RETRY_OVERDUE]
        if overdue is not None:
            try:
                overdue(pending.context)
            except Exception:  # a caller's bug must not cost other requests
                log.exception("dhtquery: error in a request's overdue callback")
        return True

    def close(self) -> None:
        """Give up every request now (each caller gets (False, None)); the
        timer stops watching this table's core."""
        self._timer.unwatch(self._core)
        now = self._now()
        given_up = list(self._pending.values())
        self._pending.clear()
        self._resent.clear()
        for pending in given_up:
            self._core.cancel(pending.query_id, now)
        # Told last: a caller may open another request as it learns.
        for pending in given_up:
            pending.deliver(False, None)

"""Typed interface of the compiled query core, ``dhtquery._core``.

This stub is the contract that both cores keep: the Rust extension
(``rust/``) and the pure-Python twin (``dhtquery.query._core_py``) have the
same names, arguments, return values and errors, and
``tests/test_core_equivalence.py`` drives both with the same random operations
to check it.

Both return the very objects of :mod:`dhtquery.query.types`: statuses are
``SubmitStatus`` members (an IntEnum), reasons ``Reason`` members (a StrEnum,
so ``outcome.reason == "timeout"`` holds), and the named shapes
(``BatchStatus``, ``CoreOutcome``, ``Counters``, ``Latency``) are NamedTuples,
so they also compare equal to plain tuples. A result record stays a plain
4-tuple ``(item, peer, key, response_time)``. The Rust core imports that
module when it loads.

Time never comes from a clock here: every call that needs the time takes
``now`` (seconds, as ``loop.time()`` gives it), so the core is deterministic.
Internally time is counted in ticks of 1 ms: a deadline is
``ceil((now + timeout) * 1000)`` and ``expire(now)`` is due up to
``floor(now * 1000)``.
"""

import builtins
import socket
import uuid
from collections.abc import Callable, Hashable, Sequence, Sized
from typing import Any, Final, Protocol, Self, TypeAlias, final

from dhtquery.query.types import (
    BatchStatus,
    CoreOutcome,
    Counters,
    Latency,
    LookupStep,
    QueryState,
    ResultRecord,
    SubmitStatus,
)

__all__ = [
    "MAX_EXPECTED_PEERS",
    "MAX_NOW",
    "MAX_RESULTS_LIMIT",
    "MAX_TIMEOUT",
    "Asker",
    "BatchReceiver",
    "Candidates",
    "DatagramEngine",
    "DatagramSocket",
    "FairShare",
    "LookupAnswers",
    "LookupCore",
    "PeerBook",
    "QueryCore",
    "QueryId",
    "RecordCache",
    "ReplayCache",
]

# Limits enforced on arguments (an argument past one raises
# InvalidArgumentError); equal to those of dhtquery.query.types.
MAX_TIMEOUT: Final[float]  # seconds; the wheel spans 64**6 ms, about 2.2 years
MAX_RESULTS_LIMIT: Final[int]  # the result buffer is allocated at capacity max_results
MAX_EXPECTED_PEERS: Final[int]
MAX_NOW: Final[float]  # seconds; `now` past this is refused (ticks are u64 ms)

_Key: TypeAlias = str | bytes

@final
class QueryId:
    """A query's identifier: a random UUID v4, hashable, compared by value."""

    def __new__(cls, value: str | uuid.UUID) -> Self:
        """Parse a UUID string or take a ``uuid.UUID``; InvalidArgumentError
        (naming ``value``) if the string is not a UUID, InvalidArgumentTypeError
        for any other type."""
    @property
    def uuid(self) -> uuid.UUID: ...
    @property
    def bytes(self) -> bytes:
        """The UUID's 16 bytes, big-endian (as ``uuid.UUID.bytes``), without
        building a ``uuid.UUID``."""
    @classmethod
    def from_bytes(cls, data: builtins.bytes) -> Self:
        """The id whose ``bytes`` are ``data``; InvalidArgumentError (naming
        ``data``) unless it is 16 bytes, InvalidArgumentTypeError unless
        bytes."""
    def __str__(self) -> str:
        """The canonical hyphenated lower-case form."""
    def __repr__(self) -> str:
        """``QueryId('…')``"""
    def __hash__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...

@final
class QueryCore:
    """The table of in-flight queries, their dedup sets and result buffers,
    the expiry wheel, the tombstones of finished queries, counters and the
    latency histogram.

    A query is *complete* once it holds ``max_results`` unique results
    (reason ``max_results``) or once ``expected_peers`` distinct peers have
    reported done (reason ``all_peers``; ``expected_peers=0`` disables this).
    A complete query refuses further results (``FULL``) and waits for
    ``finish``. A finished, cancelled or expired query leaves a tombstone for
    ``grace`` seconds (``state`` says ``TOMBSTONE``): offers to it are
    ``LATE`` and counted as late; after that they are ``UNKNOWN``.

    Arguments are checked before anything changes: a call that raises leaves
    the core as it was.
    """

    def __new__(cls, grace: float = 5.0) -> Self:
        """``grace``: seconds a finished id is remembered (finite, >= 0)."""
    def register(
        self, timeout: float, max_results: int, expected_peers: int, now: float
    ) -> QueryId:
        """Start a query; its deadline is now + timeout.

        Errors (InvalidArgumentError, naming the argument and its value):
        ``timeout`` not finite, <= 0 or > MAX_TIMEOUT; ``max_results`` < 1 or
        > MAX_RESULTS_LIMIT; ``expected_peers`` < 0 or > MAX_EXPECTED_PEERS;
        ``now`` not finite, < 0 or > MAX_NOW. InvalidArgumentTypeError for a non-int
        ``max_results``/``expected_peers`` (bool is refused) or a non-number
        ``timeout``/``now``.
        """
    def offer(
        self, query_id: QueryId, peer: Hashable, key: _Key, item: object, now: float
    ) -> SubmitStatus:
        """Offer one result; returns a ``SubmitStatus``: NEW, COMPLETED,
        DUPLICATE, FULL, LATE or UNKNOWN. Checked in this order: unknown/late
        id, complete query (FULL, counted as overflow), duplicate key, then
        accepted. ``key`` must be str or bytes (``"a"`` and ``b"a"`` are
        different keys). The record kept is ``(item, peer, key,
        response_time)``, response_time being now minus the query's start."""
    def offer_many(
        self, query_id: QueryId, peer: Hashable, entries: Sequence[tuple[_Key, object]], now: float
    ) -> BatchStatus:
        """Offer one peer's batch of (key, item) pairs, in order, as if by
        ``offer`` one at a time. Returns a ``BatchStatus`` (status, accepted,
        duplicates) where status is UNKNOWN or LATE (nothing accepted; LATE
        counts every entry as late), FULL (complete before the batch),
        COMPLETED (complete during it; the rest of the batch counts as
        overflow), or NEW (still open). Every entry is checked before any is
        offered."""
    def peer_done(self, query_id: QueryId, peer: Hashable, ok: bool) -> SubmitStatus:
        """Record that ``peer`` has answered everything (``ok``) or failed.
        Returns a ``SubmitStatus``: NEW (counted, still open), COMPLETED
        (counted, and now complete), FULL (counted; was already complete),
        DUPLICATE (this peer already reported: ignored), LATE or UNKNOWN
        (neither counted)."""
    def state(self, query_id: QueryId) -> QueryState:
        """What the core knows of ``query_id``: LIVE (registered, not ended),
        TOMBSTONE (ended less than ``grace`` ago: offers would be LATE) or
        UNKNOWN (never registered here, or forgotten). Asking counts
        nothing."""
    def drain(self, query_id: QueryId) -> list[ResultRecord]:
        """Take the results not yet drained, in arrival order; [] for an id
        that is not in flight."""
    def finish(
        self, query_id: QueryId, now: float, reason: str | None = None
    ) -> CoreOutcome | None:
        """End a query and return its ``CoreOutcome`` (query_id, reason,
        results not yet drained in arrival order, duration = now minus the
        query's start, peers_ok, peers_failed, duplicates). ``reason`` None
        means: ``Reason.MAX_RESULTS`` if it holds max_results results, else
        ``Reason.ALL_PEERS`` if every expected peer is done, else
        InvalidArgumentError (the query is not complete: name a reason). An
        explicit reason must be one of ``FINISH_REASONS`` (max_results,
        all_peers, adaptive): a ``Reason`` member or the equal str; the
        outcome holds the member. Counts as successful; its duration goes to
        the latency histogram. None if the id is not in flight."""
    def cancel(self, query_id: QueryId, now: float) -> CoreOutcome | None:
        """End a query with ``Reason.CANCELLED`` (counted as cancelled, not
        in the histogram). None if the id is not in flight."""
    def expire(self, now: float) -> list[CoreOutcome]:
        """End with ``Reason.TIMEOUT`` every query whose deadline tick is <=
        floor(now * 1000), ordered by deadline then registration, and forget
        the tombstones whose grace is over. Timed-out durations go to the
        histogram."""
    def next_deadline(self) -> float | None:
        """When ``expire`` should next be called, in seconds (a multiple of
        1 ms): the start of the expiry wheel's next occupied slot, which is
        never later than the earliest deadline or tombstone end; None if the
        wheel is empty."""
    def counters(self) -> Counters:
        """Counts since the core was made: total, successful, timed_out,
        cancelled, in_flight, results, duplicates, late, unknown, overflow."""
    def latency(self) -> Latency:
        """Durations of finished and timed-out queries, in seconds, from an
        HDR histogram of microseconds (1 us .. 1 h, 3 significant figures):
        samples, p50, p95, p99, max. Quantiles are nearest-rank: the smallest
        recorded value v with count(<= v) >= ceil(q * samples), reported as
        the highest value equivalent to v. All zero when nothing was
        recorded."""
    @property
    def in_flight(self) -> int:
        """Queries registered and not yet ended."""
    @property
    def tombstones(self) -> int:
        """Ended ids still remembered for their grace period."""
    @property
    def timers(self) -> int:
        """Entries in the expiry wheel (deadlines plus tombstone ends)."""
    @property
    def grace(self) -> float: ...

@final
class DatagramEngine:
    """Reads each arriving datagram in one call: rpcudp's framing (a kind
    byte, 0x00 request or 0x01 response, a 20-byte message id, a msgpack
    body), the body decoded as ``msgpack.unpackb(body, raw=False,
    strict_map_key=False, use_list=True)`` decodes it (same objects, same
    errors), and for a response the request it answers, looked up in
    ``pending``: the RPC table's own dict (message id -> a tuple whose item
    1 is the address the request went to and item 2 the RPC's name),
    shared, not copied. With ``shapes`` (a dict, shared too: RPC name -> a
    shape code of ``dhtquery.query.shapes``), an answer to an RPC it names
    has its shape checked as well.

    ``receive`` returns ``(status, first, value, pending)``:

    - ``(0, kind, None, None)``: dropped; ``kind`` names why, as
      ``dhtquery.dht.wire.decode`` does: ``short`` (no body), ``bad_kind``,
      ``oversize_request`` (a request body over 8,192 bytes), ``malformed``
      (not exactly one msgpack value), ``bad_utf8``;
    - ``(1, msg_id, body, None)``: a request, to serve;
    - ``(2, msg_id, value, request)``: the answer to ``request``, from the
      address it went to; it has been taken out of ``pending``;
    - ``(3, msg_id, value, request)``: the id of ``request``, from another
      address (``request`` stays in ``pending``);
    - ``(4, msg_id, value, None)``: no request in ``pending`` has this id;
    - ``(5, msg_id, value, request)`` or ``(6, ...)``: as 2, the RPC having
      a shape in ``shapes``: the answer has it (5), or not (6).

    InvalidArgumentError (before ``pending`` changes) if ``shapes`` maps
    the RPC to anything but a shape code (an int from 0 to 5).

    With ``requests``, ``(core, pad, resent, entry)``, the engine also
    opens the table's requests and ends them as their answers arrive, each
    request a one-result query in ``core`` (a QueryCore of the same
    backend), its message id the query id's 16 bytes and ``pad`` (4
    bytes). ``pending``'s entries are then made as ``entry`` (a tuple
    subclass, or None: tuples) of ``(query_id, address, name, future,
    callback, context, sent, retry, lag, granted, lagged)``; ``retry`` is
    None or a list ``[datagram, deadline, tries, rto, last_sent,
    overdue]``; ``resent`` (a dict, shared) maps the query id bytes of a
    request registered again to its message id.

    ``open(timeout, now, lag, address, name, future, callback, context,
    body, deadline=None, overdue=None)`` registers the query (due at ``now
    + timeout``), keeps the entry (``sent`` is ``now``, ``lag`` the timer's
    lag now, ``granted`` and ``lagged`` 0.0; with ``deadline``, ``retry``
    is ``[datagram, deadline, 1, timeout, now, overdue]``) and returns the
    request's datagram: ``b"\\x00" + msg_id + body``.

    ``receive_at(datagram, address, now, lag)`` is ``receive`` with a fifth
    item, ``rtt``: for an answer ended (2, 5, 6) its query is finished at
    ``now`` (reason ``all_peers``), its query id's bytes leave ``resent``,
    and ``rtt`` is -1.0 if ``retry``'s ``tries`` is over 1 (Karn's rule),
    else ``now - sent`` less the loop's lag since (``lag - entry lag +
    lagged``, if not 0; 0.0 if that is more); else ``rtt`` is 0.0. Given
    ``peers``, an answer whose shape the engine judged (5, 6) is told to it
    after that as ``peers.answered(address, rtt, status == 5, now)``
    (the protocol's one call per answer to its book, made in this one).

    After ``serve(replay, records, client_pad, fair_share=None, *,
    max_answers=1024, max_answer_bytes=1048576, ping=None, values=None)``, ``receive_at`` serves
    what it can of a request (a datagram of kind 0 longer than its
    header) in the same call; its answer's ``pending`` is None and its
    ``rtt`` 0.0:

    - a body over 8,192 bytes or not msgpack: dropped (0), as ``receive``;
    - ``replay.get(address, msg_id, now)`` (a ``ReplayCache`` of this core)
      holds an answer: ``(9, None, answer, None, 0.0)``, a resend, to send
      again;
    - a find_values whose body is msgpack's usual encoding of
      ``["find_values", [id, key]]`` (fixarray, fixstr, fixarray, bin 8 each;
      ``id`` and ``key`` of 1 to 64 bytes) and whose key has an answer kept
      (``keep_answer``) that is valid (its generation is ``records.generation``,
      an int, and ``now`` is before its ``until``): ``(10, sender, datagram,
      None, 0.0)``: ``datagram`` is the answer framed (``b"\\x01" + msg_id +
      body``), already put in ``replay``; ``sender`` is None for a client's
      request (its message id ends with ``client_pad``), else ``id``;
    - given ``values`` (the store of plain values: its ``generation`` is
      read per request as ``records``' is), a find_value whose body
      is msgpack's usual encoding of ``["find_value", [id, key]]`` (packed
      as a find_values') and whose key has an answer kept
      (``keep_answer(..., rpc="find_value")``) that is valid with
      ``values.generation``: ``(10, sender, datagram, None, 0.0)`` as a
      find_values answered;
    - given ``ping`` (bytes: the body of the answer to a ping, this node's
      id packed), a ping whose body is msgpack's usual encoding of
      ``["ping", [id]]`` (fixarray, fixstr, fixarray, bin 8; ``id`` of 1 to
      64 bytes): ``(10, sender, datagram, None, 0.0)`` as a find_values
      answered, ``ping`` its body;
    - else ``(1, msg_id, body, None, 0.0)``, the body decoded, as
      ``receive`` says (the fair share not asked: the caller serves it).

    Before answering a request (9 or 10), ``fair_share.admit(address)`` is
    asked (if given); False: ``(8, "fair_share", None, None, 0.0)``, shed
    (not answered, nothing kept). This core's ``FairShare`` is admitted
    without a Python call (its ``queued()`` aside).

    Kept answers: ``keep_answer(key, generation, until, body, *,
    rpc="find_values")`` (bytes, an int, a float, bytes) keeps ``body`` as
    ``key``'s answer to ``rpc`` (``"find_values"`` or ``"find_value"``;
    ``None`` is ``"find_values"``), in place of any before; at most
    ``max_answers`` of them and ``max_answer_bytes`` of bodies for each
    RPC (a larger body is not kept; the oldest kept leave first).
    """

    def __new__(
        cls,
        pending: dict[builtins.bytes, tuple[Any, ...]],
        shapes: dict[str, int] | None = None,
        *,
        requests: tuple[
            QueryCore,
            builtins.bytes,
            dict[builtins.bytes, builtins.bytes],
            type[tuple[Any, ...]] | None,
        ]
        | None = None,
    ) -> Self:
        """InvalidArgumentTypeError unless ``pending`` is a dict,
        ``shapes`` a dict or None, and ``requests`` None or a tuple as
        above (its ``pad`` of another size: InvalidArgumentError)."""
    @property
    def pending(self) -> dict[builtins.bytes, tuple[Any, ...]]: ...
    @property
    def shapes(self) -> dict[str, int] | None: ...
    def receive(
        self, datagram: builtins.bytes, address: object
    ) -> tuple[int, Any, Any, tuple[Any, ...] | None]:
        """InvalidArgumentTypeError unless ``datagram`` is bytes."""
    def receive_at(
        self,
        datagram: builtins.bytes,
        address: object,
        now: float,
        lag: float,
        peers: PeerBook | _PeerSink | None = None,
    ) -> tuple[int, Any, Any, tuple[Any, ...] | None, float]:
        """As ``receive``; InvalidArgumentTypeError if the engine was made
        without ``requests``; ``now`` and ``lag`` checked as ``now``s. Once
        told to (``dispatch_answers``), a CHECKED answer, not retransmitted
        (its rtt not -1), whose request's callback is a
        :class:`LookupAnswers` is handed to it in the call, ``callback(
        context, address, name, True, value)``, if ``waiting`` and
        ``waiting_background`` are empty, ``recently_failed`` too, and
        ``extensions`` holds True for ``address``: the status is then
        HANDLED (7), the value None or the exception the callback raised."""
    def receive_batch(
        self,
        receiver: BatchReceiver,
        socket: DatagramSocket,
        now: float,
        lag: float,
        peers: PeerBook | _PeerSink | None,
        dispatch: Callable[[int, Any, Any, tuple[Any, ...] | None, float, Any], object],
        known: set[builtins.bytes] | None = None,
    ) -> int:
        """Every datagram waiting in ``socket``'s socket (at most
        ``receiver.count``: one ``recvmmsg`` in the Rust core), each handled
        as ``receive_at(datagram, address, now, lag, peers)`` handles it, in
        the order they came (an IPv6 source as ``(host, port)``). An answer
        served to a client (SERVED with no sender id) or to a node whose id
        is in ``known`` (the routing table's contacts: nobody to welcome),
        or served again (REPLAYED), is sent back through ``socket`` after
        the batch (one ``sendmmsg`` in the Rust core), in order; a HANDLED answer whose
        callback returned is done; anything else is given to
        ``dispatch(status, first, value, request, rtt, address)`` as
        ``receive_at`` returns it, and a datagram whose handling raised as
        ``(FAILED (11), None, the exception, None, 0.0, address)``. A falsy
        return of ``dispatch`` stops the batch (the rest is dropped, as a
        closing transport drops it); what it raises propagates. Returns how
        many datagrams were read (0: none waited, or ``socket`` is closed).

        InvalidArgumentTypeError unless ``receiver`` and ``socket`` are of
        this core, ``dispatch`` callable and ``known`` a set or None, or as
        ``receive_at``; OSError
        for a socket error."""
    def dispatch_answers(
        self,
        waiting: Sized,
        waiting_background: Sized,
        recently_failed: dict[Any, Any],
        extensions: dict[Any, Any],
    ) -> None:
        """See ``receive_at`` (InvalidArgumentError if told before)."""
    def serve(
        self,
        replay: _Replay,
        records: Any,
        client_pad: builtins.bytes,
        fair_share: _FairShare | None = None,
        *,
        stats: dict[str, int] | None = None,
        max_answers: int = 1024,
        max_answer_bytes: int = 1048576,
        ping: builtins.bytes | None = None,
        values: Any = None,
    ) -> None:
        """Serve requests in ``receive_at`` (see above), and bound the kept
        answers (each RPC's). ``stats`` (a dict, or a subclass: a ``Counter``) counts
        what the engine serves itself (``served`` and ``client_requests``
        for 10, ``replayed`` for 9), written in the dict's own storage
        (``dict.__setitem__``, not the subclass's). InvalidArgumentTypeError
        if the engine was made without ``requests`` or ``replay`` is not this
        core's ReplayCache; InvalidArgumentError unless ``client_pad`` is 4
        bytes."""
    def keep_answer(
        self,
        key: builtins.bytes,
        generation: int,
        until: float,
        body: builtins.bytes,
        *,
        rpc: str | None = None,
    ) -> None:
        """InvalidArgumentTypeError unless ``key`` and ``body`` are bytes,
        ``generation`` an int and ``rpc`` a str or None;
        InvalidArgumentError unless ``rpc`` is ``"find_values"``,
        ``"find_value"`` or None (``"find_values"``), as in every kept
        answers' method."""
    def forget_answer(self, key: builtins.bytes, *, rpc: str | None = None) -> None:
        """Forget ``key``'s kept answer to ``rpc``, if any."""
    def forget_answers(self) -> None:
        """Forget every kept answer (to both RPCs)."""
    def kept_answer(
        self, key: builtins.bytes, generation: object, now: float, *, rpc: str | None = None
    ) -> builtins.bytes | None:
        """``key``'s kept answer to ``rpc`` if valid at ``now`` with the
        store at ``generation`` (an int), else None."""
    def kept_answers(
        self, *, rpc: str | None = None
    ) -> dict[builtins.bytes, tuple[int, float, builtins.bytes]]:
        """The kept answers to ``rpc``, oldest first: key -> (generation,
        until, body)."""
    @property
    def kept_bytes(self) -> int:
        """Bytes of the kept answers' bodies (to both RPCs)."""
    def open(
        self,
        timeout: float,
        now: float,
        lag: float,
        address: Any,
        name: Any,
        future: Any,
        callback: Any,
        context: Any,
        body: builtins.bytes,
        deadline: float | None = None,
        overdue: Any = None,
    ) -> builtins.bytes:
        """InvalidArgumentTypeError if the engine was made without
        ``requests`` or ``body`` is not bytes; ``timeout`` checked as
        ``QueryCore.register``'s, ``now``, ``lag`` and ``deadline`` as
        ``now``s."""
    def open_asks(
        self,
        asks: list[tuple[Any, Any]],
        names: tuple[Any, Any],
        bodies: dict[Any, builtins.bytes],
        now: float,
        lag: float,
        peers: PeerBook | Any,
        extensions: dict[Any, Any],
        budget: float | None,
        span: float,
        first_span: float,
        callback: Any,
        overdue: Any,
        send: DatagramSocket | Callable[[builtins.bytes, Any], object],
    ) -> tuple[float, int, int]:
        """A lookup's asks, each ``(node id, address)``, opened as ``open``
        opens a request retransmitted until a deadline, and sent, in order,
        in one call: ``(earliest, refused, asked)``.

        Per ask: the RPC is ``names[1]`` if ``extensions[address]`` is
        False (a peer known not to answer ours), else ``names[0]`` (an
        extension RPC); its body ``bodies[name]`` (missing: stop, nothing
        more opened, ``asked`` is the ask's index). ``peers.timing(address)``
        gives ``(rto, due, measured)`` and the request is given up after
        ``timeout``: ``due`` for ``names[0]`` to a peer ``extensions`` does
        not know that answered before (``peers.successes(address) > 0``,
        asked only then), else ``budget``, else ``span * due`` if measured,
        else ``first_span``. It is opened with ``open(min(due, timeout),
        now, lag, address, name, None, callback, ask, body, now + timeout,
        overdue)`` and its datagram given to ``send(datagram, address)``
        (``send.send``: a ``DatagramSocket``, no Python call in the Rust
        core); a ValueError from ``send`` is counted in ``refused`` (the
        request stays), any other error raised. ``earliest`` is the least first
        timeout opened (inf: none). A ``PeerBook`` of this core is read in
        place, any other object through those two methods.

        InvalidArgumentTypeError as ``open`` and unless ``asks`` is a list,
        ``names`` a tuple of two, ``bodies`` and ``extensions`` dicts, a
        body bytes and ``send`` a DatagramSocket or callable; ``budget`` checked as ``open``'s
        ``timeout``, ``span`` and ``first_span`` as positive seconds."""

@final
class DatagramSocket:
    """The core's way out to a transport's own UDP socket (``sock``: bound,
    non-blocking, AF_INET or AF_INET6): ``send`` sends at once with one
    ``sendto`` (MSG_DONTWAIT; the Rust core makes no Python call) while the
    socket is open here (no ``close()``) and ``queued`` (the transport's
    queue of datagrams waiting for room: any sized container) is empty and
    the address an IP literal of the socket's family; otherwise, or when
    the kernel refuses the datagram, it calls ``fallback(datagram,
    address)`` (the transport's ``sendto``, which queues, counts or reports
    as it always did).

    Made with ``call_soon`` (the event loop's), ``send`` defers instead: the
    datagram waits here (``waiting``), the first of a batch calls
    ``call_soon(self.flush)``, and ``flush`` sends them all (the Rust core:
    one ``sendmmsg``), what the kernel refuses through ``fallback`` in
    order. A datagram that goes to ``fallback``, and ``close()``, send what
    waits first: datagrams leave in the order they were given. If
    ``call_soon`` raises (no loop to come back), what waits is sent at once.

    InvalidArgumentTypeError unless ``sock`` is a socket, ``queued`` sized,
    ``fallback`` callable and ``call_soon`` callable or None;
    InvalidArgumentError if ``sock`` is closed or of another family."""

    def __new__(
        cls,
        sock: socket.socket,
        queued: Sized,
        fallback: Callable[[builtins.bytes, Any], object],
        call_soon: Callable[[Callable[[], object]], object] | None = None,
    ) -> Self: ...
    def send(self, datagram: builtins.bytes, address: Any) -> None:
        """Send ``datagram`` to ``address`` (see the class);
        InvalidArgumentTypeError unless ``datagram`` is bytes; what
        ``fallback`` raises propagates."""
    def flush(self) -> None:
        """Send what waits (see the class); after each has been sent or
        given to ``fallback``, the first exception ``fallback`` raised
        propagates."""
    def close(self) -> None:
        """Send what waits, then from now on every datagram goes to
        ``fallback``."""
    @property
    def closed(self) -> bool: ...
    @property
    def fileno(self) -> int: ...
    @property
    def sent(self) -> int:
        """Datagrams the kernel took from here (not through ``fallback``)."""
    @property
    def waiting(self) -> int:
        """Datagrams deferred, not sent yet."""

@final
class BatchReceiver:
    """Many datagrams from a non-blocking UDP socket in one call: the Rust
    core makes one ``recvmmsg`` system call (MSG_DONTWAIT) into buffers it
    keeps, the twin one ``recvfrom`` per datagram. For a caller that owns
    its socket (``loop.add_reader``) rather than getting a
    ``datagram_received`` call per datagram; measured by the DHT bench's
    echo rows, and read by a node's ``BatchedTransport``.

    ``count`` (1 to 1,024): datagrams per call at most; ``size`` (1 to
    65,536): bytes kept of each (a longer one comes cut, as ``recvfrom``
    cuts it). InvalidArgumentError for a value out of range.
    """

    def __new__(cls, count: int, size: int) -> Self: ...
    @property
    def count(self) -> int: ...
    @property
    def size(self) -> int: ...
    def receive(self, sock: socket.socket) -> list[tuple[builtins.bytes, Any]]:
        """``[(data, address), ...]`` of the datagrams waiting (``[]``: none),
        addresses as ``recvfrom`` gives them (an IPv6 host in the Rust core:
        without a ``%scope`` suffix). OSError for a socket error;
        InvalidArgumentError for a closed socket (or, in the Rust core, a
        call made while another runs)."""

_Address: TypeAlias = Any
#: What each LookupCore call returns: (step, depth, asks). ``asks``: the
#: (node id, address) pairs to send to now (GIVE_UP: those to count as
#: failed); ``depth``: the depth of the peer that answered (answered), else 0.
_Step: TypeAlias = tuple[LookupStep, int, list[tuple[builtins.bytes, _Address]]]

class _PeerSink(Protocol):
    def answered(self, address: Any, rtt: float, ok: bool, now: float, /) -> None: ...

class _PeerSource(Protocol):
    def srtt(self, address: _Address, /) -> float | None: ...
    def scores(self, addresses: list[_Address], now: float, /) -> list[float]: ...

@final
class Candidates:
    """The candidates a lookup starts from (a routing table's), read once
    for every lookup until they change: ``ids`` (bytes of 1 to 64, distinct)
    and ``addresses`` (their ``(host, port)``, same order), as
    ``LookupCore.start`` reads them. The Rust core keeps each id as an
    integer, each address's hash and where a ``PeerBook`` last found its
    round trip (looked for again once the book's estimators change), so
    that a lookup's start reads none of them again. Make a new one when the
    candidates change (``ContactTable.lookup_candidates``): the lists are
    read when it is made. InvalidArgumentTypeError / InvalidArgumentError
    as ``LookupCore.start`` for bad lists."""

    def __new__(cls, ids: list[builtins.bytes], addresses: list[_Address]) -> Self: ...
    def __len__(self) -> int: ...

@final
class LookupCore:
    """The decisions of one streaming lookup (``dhtquery.dht.lookup``): the
    k closest candidates to ``key`` by XOR distance (ids read as big-endian
    integers, as kademlia's ``Node.long_id``; 1 to 64 bytes), whom to ask
    next (among the k closest not asked: by SRTT over reputation score,
    round trips within RTT_BAND equal, equals in an order drawn by a
    splitmix64 generator seeded with ``seed``; up to HEDGE more in flight
    while some requests go to peers never measured), and when the lookup is
    over. The lookup sends, times and reads answers, and acts on each
    call's ``(step, depth, asks)``.

    ``peers``: a ``PeerBook`` (read in place), or any object with its
    ``srtt(address)`` (a peer's SRTT in seconds or None, asked once per
    candidate) and ``scores(addresses, now)`` (their reputation scores, in
    order, asked when time ranks candidates, at ``clock()``);
    ``failed_recently(address)``: did it fail lately (asked only while
    ``recently_failed()`` is true);
    ``fair_score``: a score at least this ranks a peer as new.
    InvalidArgumentTypeError / InvalidArgumentError (naming the argument)
    for a bad argument; both cores give the same answers to the same calls.
    """

    def __new__(
        cls,
        own_id: builtins.bytes,
        key: builtins.bytes,
        alpha: int,
        ksize: int,
        quorum: int,
        adaptive: bool,
        fair_score: float,
        seed: int,
        peers: PeerBook | _PeerSource,
        clock: Callable[[], float],
        failed_recently: Callable[[_Address], bool],
        recently_failed: Callable[[], object],
    ) -> Self: ...
    def start(
        self,
        candidates: Candidates | tuple[list[builtins.bytes], list[_Address]],
        holders: int,
    ) -> _Step:
        """Start from ``candidates`` (a :class:`Candidates`, or its ids and
        addresses, ids distinct: read as a Candidates is made) with
        ``holders`` holders already (this node's records): QUORUM at once if
        that is the quorum, else whom to ask. Ties of distance are ranked in
        the candidates' order."""
    def answered(
        self,
        node_id: builtins.bytes,
        contacts: Sequence[Sequence[Any]],
        holder: bool,
        ended: bool,
    ) -> _Step:
        """``node_id`` answered, naming ``contacts`` ((id, host, port) each),
        with records if ``holder``; ``ended``: the query had ended (ENDED)."""
    def failed(self, node_id: builtins.bytes, mode: int, ended: bool) -> _Step:
        """The request to ``node_id`` failed; ``mode`` a ``LookupFailure``."""
    def overdue(self, node_id: builtins.bytes, address: _Address) -> _Step:
        """The request to ``node_id`` passed its RTO (it stays out, late)."""
    def position(self, node_id: builtins.bytes) -> tuple[int, int]:
        """``(depth, rank)``: the depth ``node_id`` was learnt at (1: from
        the routing table) and its place among the candidates, closest
        first (-1: not one)."""
    @property
    def in_flight(self) -> int: ...
    @property
    def holders(self) -> int: ...
    @property
    def answers(self) -> int:
        """Answers counted by a :class:`LookupAnswers` of this core."""
    @property
    def max_depth(self) -> int:
        """The deepest of those answers' depths (0: none)."""
    @property
    def final_depth(self) -> int:
        """The depth at which the lookup was complete: 0 if ``start`` said
        QUORUM, else the depth of the answer that made the quorum or ended
        the query (-1: none did)."""

class _AnswersLookup(Protocol):
    """What a :class:`LookupAnswers` calls back (``dht.StreamingLookup``)."""

    def _answered(
        self,
        answers: LookupAnswers,
        ask: tuple[builtins.bytes, _Address],
        address: _Address,
        name: str,
        ok: bool,
        value: Any,
    ) -> None: ...
    def _answered_then(
        self,
        answers: LookupAnswers,
        ask: tuple[builtins.bytes, _Address],
        depth: int,
        step: LookupStep | None,
        asks: list[tuple[builtins.bytes, _Address]],
    ) -> None: ...
    def _overdue(self, answers: LookupAnswers, ask: tuple[builtins.bytes, _Address]) -> None: ...
    def _welcome(self, ask: tuple[builtins.bytes, _Address]) -> None: ...
    def _act(
        self,
        answers: LookupAnswers,
        step: LookupStep,
        depth: int,
        asks: list[tuple[builtins.bytes, _Address]],
    ) -> None: ...
    def _ask_stock(
        self, answers: LookupAnswers, asks: list[tuple[builtins.bytes, _Address]]
    ) -> None: ...

class _AnswersHandle(Protocol):
    # (a QueryId of this core: the handle's own type checkers see the twin's)
    @property
    def id(self) -> Any: ...
    @property
    def ended(self) -> Callable[[], bool]: ...
    def wake(self) -> None: ...

@final
class LookupAnswers:
    """The callbacks of a streaming lookup's requests: itself (its answers)
    and :meth:`overdue`. The common answer (ok, RPC ``find_values``, a dict, the
    query running, every record taken by ``cache.take``) is handled in the
    call: ``book.provided(address, n)`` if it has records, the records
    offered to the query (``queries.offer_many`` at ``now()``: NEW with
    some accepted wakes ``handle.wake()``, COMPLETED calls ``finish(id,
    None)``), the peer done (``queries.peer_done``, ok; COMPLETED:
    ``finish``), ``core`` told (:meth:`LookupCore.answered`, counted in
    ``answers``, ``max_depth``, ``final_depth``); then, if the lookup has
    something to do or the peer was learnt from an answer (depth > 1):
    ``finish(id, Reason.ALL_PEERS)`` if the step is QUORUM at depth 1, else
    ``lookup._answered_then(self, ask, depth, step, asks)`` (``step`` None
    if there is nothing to do: the query ended, or ASK with nobody to
    ask).
    Any other answer goes to ``lookup._answered(self, context, address,
    name, ok, value)``, which reads it and calls :meth:`settle`.
    ``shared``: ``(queries, now, finish, cache, book)``.

    With ``asking``, ``(asker, bodies, budget)`` (an :class:`Asker` of this
    core, the lookup's request bodies by RPC name, its ``rpc_timeout``),
    the step ASK with asks is done here instead of by
    ``lookup._answered_then``: ``lookup._welcome(ask)`` if depth > 1, then
    ``asker.ask(self, asks, bodies, budget)``; if that says None,
    ``lookup._act(self, step, depth, asks)``; if it asked fewer than all
    (a stock peer's body not packed yet), ``lookup._ask_stock(self, the
    rest)``."""

    def __new__(
        cls,
        lookup: _AnswersLookup,
        core: LookupCore,
        handle: _AnswersHandle,
        key: builtins.bytes,
        latest: dict[Any, Any],
        # (queries: a QueryCore of this core, which type checkers see as the
        # twin's where the manager hands it out)
        shared: tuple[Any, Callable[[], float], Callable[..., object], Any, Any],
        asking: tuple[Asker, dict[str, builtins.bytes], float | None] | None = None,
    ) -> Self: ...
    def __call__(
        self,
        context: tuple[builtins.bytes, _Address],
        address: _Address,
        name: str,
        ok: bool,
        value: Any,
    ) -> None:
        """A request's answer (the protocol's request callback, the context
        the ask ``(node id, address)``); a DatagramEngine told to
        (``dispatch_answers``) calls it itself."""
    def settle(
        self,
        ask: tuple[builtins.bytes, _Address],
        address: _Address,
        records: Sequence[tuple[builtins.bytes, Any]],
        contacts: Sequence[Sequence[Any]],
    ) -> None:
        """An answer's records (``(dedup key, record)`` pairs) and contacts,
        read: the rest of the common answer's handling."""
    def overdue(self, ask: tuple[builtins.bytes, _Address]) -> None:
        """A request passed its RTO: ``lookup._overdue(self, ask)``; with
        ``asking``, its work done here: nothing if ``handle.ended()``, else
        ``handle._resent += 1``, ``core.overdue(*ask)`` and its step ASK's
        asks sent as after an answer (no welcome), any other step to
        ``lookup._act(self, step, depth, asks)``."""

@final
class Asker:
    """A streaming lookup's asks sent from the core as
    ``DhtProtocol.ask_many`` sends them when the window has room, with no
    Python frame when :class:`LookupAnswers` calls it (one per protocol,
    shared by its lookups).

    ``protocol`` is read once for ``_waiting`` (its queue of requests
    waiting for the window: only its length), ``_peers``, ``extensions``
    (a dict), ``stats`` (a dict, a Counter), ``_timer`` (``lag``,
    ``armed_until``, ``arm``), ``clock.now`` and ``drop`` (callables), and
    per :meth:`ask` for ``_requests``, ``max_outstanding`` and
    ``transport`` (replaced at run time by tests and harnesses).
    InvalidArgumentTypeError unless ``names`` is a tuple of two str,
    ``extensions`` a dict, ``stats`` a dict, ``now`` and ``drop``
    callable; ``span`` and ``first_span`` checked as positive seconds."""

    def __new__(
        cls, protocol: Any, names: tuple[str, str], span: float, first_span: float
    ) -> Self: ...
    def ask(
        self,
        answers: LookupAnswers,
        asks: list[tuple[builtins.bytes, _Address]],
        bodies: dict[str, builtins.bytes],
        budget: float | None,
    ) -> int | None:
        """None (nothing done: the caller takes the Python path) if the
        protocol's ``_waiting`` is not empty, it has no ``_requests``,
        their ``engine`` is not a DatagramEngine of this core,
        ``len(engine.pending) + len(asks) > max_outstanding``, or
        ``transport.is_closing()``. Else the lookup's handle
        (``answers``') ``_requests += len(asks)``, then ``engine.open_asks(asks, names,
        bodies, now, timer.lag, peers, extensions, budget, span, first_span,
        answers, answers.overdue, transport.sendto)`` at ``now = clock.now()``;
        ``stats["requests"] += asked``; ``timer.arm(now + earliest)`` if
        ``timer.armed_until`` is later; ``drop("socket_error")`` per
        refused send; returns ``asked`` (fewer than ``len(asks)``: the next
        one's body is not in ``bodies``). Errors as ``open_asks``'s, and
        InvalidArgumentTypeError unless ``answers`` is a LookupAnswers of
        this core, ``asks`` a list and ``bodies`` a dict."""

#: (successes, failures, rtt_ms, provided, last_seen, consecutive_failures,
#: invalid): dht.reputation.PeerStats's fields, in order
_Stats: TypeAlias = tuple[int, int, float | None, int, float | None, int, int]

@final
class PeerBook:
    """Every peer's RFC 6298 estimator (``dht.rtt.RttEstimator``'s numbers,
    to the bit) and reputation record (``dht.reputation.PeerStats``'s), the
    per-IP fallback of unmeasured ports (the first ``rtt_per_ip``
    estimators made for each IP address answer ``srtt`` / ``first_rto``
    for its other ports) and the network's estimator (every sample pooled,
    capped at ``first_rto_cap``): what every answer and every ranking of a
    lookup touch, read by ``LookupCore`` directly.

    Estimators are keyed by ``(host, port)`` tuples (made at first use, with
    ``max_rto``; a peer's ``address[0]`` is its IP), records by any hashable
    peer; peers are told apart by ``hash()`` and ``==``. Estimators, IP
    addresses and records are each bounded (``peers_kept``, ``peers_kept``,
    ``max_peers``): the oldest made leaves first. An estimator that leaves
    (or is forgotten) stays in its IP's list, no longer fed.
    """

    rtt_by_ip: bool
    def __new__(
        cls,
        max_rto: float = 10.0,
        peers_kept: int = 65536,
        max_peers: int = 65536,
        rtt_per_ip: int = 8,
        first_rto_samples: int = 8,
        first_rto_cap: float = 1.0,
    ) -> Self: ...
    @property
    def max_rto(self) -> float: ...
    @property
    def peers_kept(self) -> int: ...
    @property
    def max_peers(self) -> int: ...
    @property
    def rtt_per_ip(self) -> int: ...
    @property
    def first_rto_samples(self) -> int: ...
    @property
    def first_rto_cap(self) -> float: ...
    # -- estimators
    def estimator_state(self, address: _Address) -> tuple[float | None, float, float, float]:
        """(srtt, rttvar, rto, base_rto), the estimator made if missing."""
    def has_estimator(self, address: _Address) -> bool: ...
    def forget_estimator(self, address: _Address) -> bool:
        """Drop the address's estimator (not from its IP's list)."""
    @property
    def estimators(self) -> int: ...
    def observe(self, address: _Address, sample: float) -> None:
        """A round trip of ``sample`` seconds (>= 0) to the estimator alone."""
    def back_off(self, address: _Address, sent: float | None, now: float | None) -> None:
        """``RttEstimator.timed_out(sent, now)`` (Karn's back-off)."""
    def rto(self, address: _Address) -> float: ...
    def timing(self, address: _Address) -> tuple[float, float, bool]:
        """(rto, when overdue: base_rto if measured else first_rto, measured)."""
    def srtt(self, address: _Address) -> float | None:
        """Its SRTT, else (``rtt_by_ip``) its IP's first measured, else None."""
    def srtts(self, addresses: Sequence[_Address]) -> list[float | None]: ...
    def first_rto(self, address: _Address) -> float:
        """Its IP's first measured base RTO (capped), else the network's
        after ``first_rto_samples`` samples, else ``first_rto_cap``."""
    @property
    def network_samples(self) -> int: ...
    @property
    def network_rto(self) -> float: ...
    # -- records
    def __len__(self) -> int: ...
    def __contains__(self, peer: object, /) -> bool: ...
    def stats(self, peer: Hashable) -> _Stats:
        """The peer's record (made if missing)."""
    def successes(self, peer: Hashable) -> int:
        """Its answers (its record made if missing)."""
    def success(self, peer: Hashable, rtt: float, now: float) -> None: ...
    def failure(self, peer: Hashable) -> int:
        """Count a failure; the failures in a row."""
    def invalid(self, peer: Hashable) -> None: ...
    def provided(self, peer: Hashable, count: int = 1) -> None: ...
    def score(self, peer: Hashable, now: float) -> float:
        """ggen's score (a peer with no record: 0.75; none made)."""
    def scores(self, peers: Sequence[Hashable], now: float) -> list[float]: ...
    # -- one call per event of a request
    def answered(self, address: _Address, rtt: float, ok: bool, now: float) -> None:
        """An answer after ``rtt`` (< 0: retransmitted, no sample): the
        estimator's and the network's sample; a success if ``ok`` (its shape
        right), else a failure."""
    def answered_late(self, address: _Address, rtt: float) -> None:
        """An answer to a request given up on: a sample, no failures in a row."""
    def timed_out(self, address: _Address, sent: float, now: float, stock: bool | None) -> int:
        """No answer to a request sent at ``sent`` (< 0: unknown): -1 if the
        peer is stock (True; None: if it answered before), else a back-off
        and a failure, and the failures in a row."""

#: A signed record's wire array, by position: public key, target, name,
#: seq, expires, data, signature (``dht.records``, ``docs/signed-records.md``)
_Wire: TypeAlias = Sequence[Any]

class _FairShare(Protocol):
    def admit(self, source: Any, /) -> bool: ...

class _Replay(Protocol):
    """A ``ReplayCache`` (the engine takes only its own core's)."""

    def get(
        self, address: Hashable, msg_id: builtins.bytes, now: float, /
    ) -> builtins.bytes | None: ...
    def put(
        self, address: Hashable, msg_id: builtins.bytes, datagram: builtins.bytes, now: float, /
    ) -> None: ...

@final
class FairShare:
    """Which requests an overloaded node sheds (``dhtquery.dht.fairness``
    says why). ``admit(source)`` counts a request from ``source`` (any
    hashable, compared as Python does) and says whether to serve it.
    ``queued()`` (the bytes in the node's receive queue) is read at the
    first ``admit``, once every ``check_every`` after, and again before a
    shed; a look that finds it past ``mark`` makes the node *under load*,
    past half of ``mark`` *warm*. Requests are counted in a window of the
    last ``window`` counted only while warm (one that finds it cold after
    a warm one forgets the window). Under load, a request is shed (False,
    ``shed`` + 1) when its source has more than ``floor`` requests in the
    window and more than ``factor`` x the window's length over its number
    of sources, unless the look before a shed (made when the last was not
    at this request) finds the node no longer under load.
    InvalidArgumentError unless ``window`` and ``check_every`` are >= 1,
    ``factor`` > 0, ``floor`` and ``mark`` >= 0."""

    shed: int
    def __new__(
        cls,
        queued: Callable[[], int],
        mark: int,
        *,
        window: int = 1024,
        factor: float = 1.5,
        floor: int = 64,
        check_every: int = 32,
    ) -> Self: ...
    def admit(self, source: Hashable) -> bool:
        """Count a request from ``source``; False if it is to be shed."""
    @property
    def under_load(self) -> bool:
        """Whether the last look found the node overloaded."""
    def share(self, source: Hashable) -> float:
        """``source``'s fraction of the window's requests (0.0 empty)."""

@final
class ReplayCache:
    """The answers sent to recent requests (``dhtquery.dht.replay`` says
    why): ``(address, msg_id)`` -> the datagram answered and when; the
    address hashed and compared as Python does, ``msg_id`` bytes. At most
    ``max_count`` answers and ``max_bytes`` of them (the oldest out first;
    an answer larger than ``max_bytes`` is not kept); an answer older than
    ``max_age`` seconds is not given, and leaves when a later ``put`` finds
    it the oldest."""

    max_age: float
    max_count: int
    max_bytes: int
    def __new__(
        cls, max_age: float, *, max_count: int = 1024, max_bytes: int = 1048576
    ) -> Self: ...
    def __len__(self) -> int: ...
    @property
    def size_bytes(self) -> int:
        """Bytes of the answers kept."""
    def get(self, address: Hashable, msg_id: builtins.bytes, now: float) -> builtins.bytes | None:
        """The answer sent to this request, if answered within ``max_age``
        (and still kept). InvalidArgumentTypeError unless ``msg_id`` is
        bytes."""
    def put(
        self, address: Hashable, msg_id: builtins.bytes, datagram: builtins.bytes, now: float
    ) -> None:
        """Keep the answer sent to a request. InvalidArgumentTypeError
        unless ``msg_id`` and ``datagram`` are bytes."""

@final
class RecordCache:
    """The signed records a node has verified (``dht.records.RecordVerifier``'s
    memory), by signature (64 bytes, Ed25519), each kept with the wire fields
    it was verified with: a wire array whose every field is of the type
    verified (exactly ``bytes``, ``str`` or ``int``) and equal gets the
    record back, without a verification. At most ``kept`` (0 to 2**32 - 1),
    the oldest out first; a record put again under a signature kept takes
    the old one's place, not a new one. ``wall()``: the wall clock (unix
    seconds) a record's expiry is read against. The record objects are the
    caller's: the core only hands them back."""

    def __new__(cls, kept: int, wall: Callable[[], float]) -> Self: ...
    def get(self, value: object) -> Any:
        """The record verified with wire array ``value`` (a list or tuple of
        7) if every field equals the one verified; else None."""
    def put(self, value: _Wire, record: Any) -> None:
        """Remember ``record``, verified with wire array ``value``.
        InvalidArgumentTypeError / InvalidArgumentError (naming the field)
        for a field of the wrong type or size."""
    def take(
        self,
        values: object,
        target: builtins.bytes,
        latest: dict[Any, Any],
        address: Any,
    ) -> tuple[list[tuple[builtins.bytes, Any]], int]:
        """A lookup's read of one answer's records ``values`` (wire arrays)
        served under DHT key ``target`` by ``address``, in order: each one
        kept, of that target, unexpired (``expires`` 0, or above ``wall()``)
        and of the sequence ``latest[(public key, name)]`` holds first (or
        of a slot not in ``latest``: noted there as ``(seq, address)``) is
        taken as ``(signature, record)``. It stops at the first that is not:
        returns ``(taken, index)``, ``index`` the position of the first
        value left to the caller's full check (``len(values)``: none; 0 if
        ``values`` is not a list or tuple)."""
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def kept(self) -> int: ...

"""The datagram engine's request side (``DatagramEngine.open`` and
``receive_at``, the engine given the RPC table's core): a request opened in
one call (its query registered, its message id made, its datagram framed,
its entry kept) and its answer ended in the same call that reads it (its
query finished, its round trip measured: the loop's lag left out, none
for a request sent twice). Both cores, and a property test driving both
with the same operations."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.dht.rpc_table import RpcTable
from dhtquery.dht.rpc_table import _Pending as Entry
from dhtquery.dht.wire import encode_response
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import ExpiryTimer, QueryState, _core_py, new_core
from dhtquery.testing import FakeClock
from tests.conftest import require_rust

DROP, REQUEST, ANSWERED, WRONG_ADDRESS, NOT_PENDING, CHECKED, BAD_SHAPE = range(7)
ADDRESS = ("127.0.0.1", 4000)
OTHER = ("127.0.0.1", 4001)
PAD = b"\x00\x00\x00\x01"
SHAPES = {"ping": 2}  # (query.shapes.NODE_ID)


def _callback(*args: Any) -> None:
    pass


def _overdue(context: Any) -> None:
    pass


def _engine(module: ModuleType, entry: type[tuple[Any, ...]] | None = Entry) -> Any:
    core = module.QueryCore()
    return module.DatagramEngine({}, dict(SHAPES), requests=(core, PAD, {}, entry)), core


@pytest.fixture(params=["rust", "python"], ids=["rs", "py"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return require_rust() if request.param == "rust" else _core_py


def test_open_frames_the_request_and_keeps_its_entry(module: ModuleType) -> None:
    engine, core = _engine(module)
    datagram = engine.open(0.5, 10.0, 0.25, ADDRESS, "ping", None, _callback, "ctx", b"body")
    assert (datagram[:1], datagram[17:21], datagram[21:]) == (b"\x00", PAD, b"body")
    msg_id = datagram[1:21]
    entry = engine.pending[msg_id]
    assert type(entry) is Entry
    assert entry.query_id.bytes == msg_id[:16]
    assert entry[1:] == (ADDRESS, "ping", None, _callback, "ctx", 10.0, None, 0.25, 0.0, 0.0)
    assert core.state(entry.query_id) == QueryState.LIVE
    # (due at 10.5: the wheel may say an earlier tick, as for any query)
    assert 10.0 < core.next_deadline() <= 10.5


def test_open_with_a_deadline_keeps_a_retry_list(module: ModuleType) -> None:
    engine, _ = _engine(module)
    datagram = engine.open(0.5, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b", 12.0, _overdue)
    retry = engine.pending[datagram[1:21]].retry
    assert retry == [datagram, 12.0, 1, 0.5, 10.0, _overdue]
    assert type(retry) is list


def test_open_makes_tuples_without_an_entry_type(module: ModuleType) -> None:
    engine, _ = _engine(module, None)
    datagram = engine.open(1, 0, 0, ADDRESS, "ping", None, None, None, b"b")
    entry = engine.pending[datagram[1:21]]
    assert type(entry) is tuple and entry[1:7] == (ADDRESS, "ping", None, None, None, 0.0)


def test_each_request_gets_its_own_message_id(module: ModuleType) -> None:
    engine, core = _engine(module)
    for _ in range(50):
        engine.open(1.0, 0.0, 0.0, ADDRESS, "ping", None, None, None, b"b")
    assert len(engine.pending) == 50 and core.in_flight == 50


def test_an_answer_ends_its_request_with_its_round_trip(module: ModuleType) -> None:
    engine, core = _engine(module)
    datagram = engine.open(1.0, 10.0, 0.0, ADDRESS, "find", None, None, None, b"b")
    msg_id = datagram[1:21]
    entry = engine.pending[msg_id]
    status, first, value, pending, rtt = engine.receive_at(
        encode_response(msg_id, "hi"), ADDRESS, 10.25, 0.0
    )
    assert (status, first, value, pending) == (ANSWERED, msg_id, "hi", entry)
    assert rtt == pytest.approx(0.25)
    assert engine.pending == {}
    assert core.state(entry.query_id) == QueryState.TOMBSTONE
    assert core.counters().successful == 1
    # again (duplicated on the way): not pending, nothing measured
    assert engine.receive_at(encode_response(msg_id, "hi"), ADDRESS, 10.3, 0.0) == (
        NOT_PENDING,
        msg_id,
        "hi",
        None,
        0.0,
    )


def test_the_loops_lag_is_left_out_of_the_round_trip(module: ModuleType) -> None:
    engine, _ = _engine(module)
    first = engine.open(1.0, 10.0, 0.5, ADDRESS, "find", None, None, None, b"b")[1:21]
    second = engine.open(1.0, 10.0, 0.5, ADDRESS, "find", None, None, None, b"b")[1:21]
    # the timer's lag grew by 0.1 s meanwhile
    assert engine.receive_at(encode_response(first, 1), ADDRESS, 10.3, 0.6)[4] == pytest.approx(0.2)
    # more lag than round trip: 0, never negative
    assert engine.receive_at(encode_response(second, 1), ADDRESS, 10.3, 1.5)[4] == 0.0


def test_a_request_sent_twice_gives_no_round_trip(module: ModuleType) -> None:
    """Karn's rule: which copy was answered is unknown."""
    engine, _ = _engine(module)
    datagram = engine.open(0.1, 10.0, 0.0, ADDRESS, "find", None, None, None, b"b", 11.0)
    msg_id = datagram[1:21]
    engine.pending[msg_id].retry[2] = 2  # (as RpcTable._retransmit counts a copy)
    assert engine.receive_at(encode_response(msg_id, 1), ADDRESS, 10.5, 0.0)[4] == -1.0


def test_an_answer_takes_its_query_out_of_resent(module: ModuleType) -> None:
    core = module.QueryCore()
    resent: dict[bytes, bytes] = {}
    engine = module.DatagramEngine({}, None, requests=(core, PAD, resent, Entry))
    msg_id = engine.open(0.1, 10.0, 0.0, ADDRESS, "find", None, None, None, b"b")[1:21]
    other = engine.open(0.1, 10.0, 0.0, ADDRESS, "find", None, None, None, b"b")[1:21]
    # (as RpcTable does when it registers a request again)
    resent[engine.pending[msg_id].query_id.bytes] = msg_id
    resent[engine.pending[other].query_id.bytes] = other
    engine.receive_at(encode_response(msg_id, 1), ADDRESS, 10.05, 0.0)
    assert list(resent.values()) == [other]


def test_an_answer_from_another_address_ends_nothing(module: ModuleType) -> None:
    engine, core = _engine(module)
    msg_id = engine.open(1.0, 10.0, 0.0, ADDRESS, "find", None, None, None, b"b")[1:21]
    status, _, _, pending, rtt = engine.receive_at(encode_response(msg_id, 1), OTHER, 10.1, 0.0)
    assert (status, rtt) == (WRONG_ADDRESS, 0.0) and pending is engine.pending[msg_id]
    assert core.in_flight == 1


def test_receive_at_judges_shapes_and_reads_requests(module: ModuleType) -> None:
    engine, core = _engine(module)
    good = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b")[1:21]
    bad = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b")[1:21]
    assert engine.receive_at(encode_response(good, b"n" * 20), ADDRESS, 10.1, 0.0)[0] == CHECKED
    assert engine.receive_at(encode_response(bad, 5), ADDRESS, 10.1, 0.0)[0] == BAD_SHAPE
    assert core.in_flight == 0  # (a wrong shape ends its request too)
    request = b"\x00" + bytes(20) + b"\xc0"
    assert engine.receive_at(request, ADDRESS, 10.2, 0.0) == (REQUEST, bytes(20), None, None, 0.0)
    assert engine.receive_at(b"\x01", ADDRESS, 10.2, 0.0) == (DROP, "short", None, None, 0.0)


def test_receive_at_feeds_the_peer_book_an_answer_it_judged(module: ModuleType) -> None:
    """Given the peer book, an answer whose shape the engine judged is told
    to it as ``book.answered(address, rtt, shape ok, now)``: the RTT
    sampled, a success; a wrong shape a failure; a request sent twice no
    sample (Karn); an answer of an RPC it does not judge, nothing."""
    engine, _ = _engine(module)
    book = module.PeerBook()
    good = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b")[1:21]
    assert engine.receive_at(encode_response(good, b"n" * 20), ADDRESS, 10.1, 0.0, book)[0] == (
        CHECKED
    )
    assert book.srtt(ADDRESS) == pytest.approx(0.1) and book.network_samples == 1
    assert book.stats(ADDRESS)[:2] == (1, 0)
    assert book.stats(ADDRESS)[4] == 10.1  # (last seen: the engine's now)
    bad = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b")[1:21]
    assert engine.receive_at(encode_response(bad, 5), ADDRESS, 10.2, 0.0, book)[0] == BAD_SHAPE
    assert book.stats(ADDRESS)[:2] == (1, 1) and book.network_samples == 2
    twice = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b", 15.0)[1:21]
    engine.pending[twice].retry[2] = 2
    assert engine.receive_at(encode_response(twice, b"n" * 20), ADDRESS, 10.3, 0.0, book)[4] == -1
    assert book.stats(ADDRESS)[:2] == (2, 1) and book.network_samples == 2
    unjudged = engine.open(1.0, 10.0, 0.0, OTHER, "find", None, None, None, b"b")[1:21]
    assert engine.receive_at(encode_response(unjudged, 1), OTHER, 10.4, 0.0, book)[0] == ANSWERED
    assert OTHER not in book and book.network_samples == 2


def test_receive_at_tells_any_book_through_its_answered_method(module: ModuleType) -> None:
    """A book of another kind (the other core's, a test's) is called."""
    engine, _ = _engine(module)
    calls = []

    class Book:
        def answered(self, address: Any, rtt: float, ok: bool, now: float) -> None:
            calls.append((address, rtt, ok, now))

    msg_id = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b")[1:21]
    engine.receive_at(encode_response(msg_id, 5), ADDRESS, 10.5, 0.0, Book())
    assert calls == [(ADDRESS, pytest.approx(0.5), False, 10.5)]
    # (None: no book, as without the argument)
    msg_id = engine.open(1.0, 10.0, 0.0, ADDRESS, "ping", None, None, None, b"b")[1:21]
    assert engine.receive_at(encode_response(msg_id, 5), ADDRESS, 10.5, 0.0, None)[0] == BAD_SHAPE


def test_an_engine_without_requests_opens_none(module: ModuleType) -> None:
    engine = module.DatagramEngine({})
    with pytest.raises(InvalidArgumentTypeError, match="without requests"):
        engine.open(1.0, 0.0, 0.0, ADDRESS, "ping", None, None, None, b"b")
    with pytest.raises(InvalidArgumentTypeError, match="without requests"):
        engine.receive_at(b"\x01" + bytes(20) + b"\xc0", ADDRESS, 0.0, 0.0)


def test_bad_requests_and_arguments_are_refused(module: ModuleType) -> None:
    core = module.QueryCore()
    for requests, error in [
        ([core, PAD, {}, None], InvalidArgumentTypeError),
        ((core, PAD, {}), InvalidArgumentTypeError),
        (("core", PAD, {}, None), InvalidArgumentTypeError),
        ((core, b"\x00", {}, None), InvalidArgumentError),
        ((core, PAD, [], None), InvalidArgumentTypeError),
        ((core, PAD, {}, dict), InvalidArgumentTypeError),
    ]:
        with pytest.raises(error, match="requests"):
            module.DatagramEngine({}, None, requests=requests)
    other = (_core_py if module is not _core_py else require_rust()).QueryCore()
    with pytest.raises(InvalidArgumentTypeError, match="QueryCore of this core"):
        module.DatagramEngine({}, None, requests=(other, PAD, {}, None))
    engine, _ = _engine(module)
    for args, error, name in [
        ((0.0, 1.0, 0.0), InvalidArgumentError, "timeout"),
        ((1e9, 1.0, 0.0), InvalidArgumentError, "timeout"),
        ((1.0, -1.0, 0.0), InvalidArgumentError, "now"),
        ((1.0, 1.0, "0"), InvalidArgumentTypeError, "lag"),
    ]:
        with pytest.raises(error, match=name):
            engine.open(*args, ADDRESS, "ping", None, None, None, b"b")
    with pytest.raises(InvalidArgumentTypeError, match="body must be bytes"):
        engine.open(1.0, 1.0, 0.0, ADDRESS, "ping", None, None, None, bytearray(b"b"))
    with pytest.raises(InvalidArgumentError, match="deadline"):
        engine.open(1.0, 1.0, 0.0, ADDRESS, "ping", None, None, None, b"b", -1.0)
    assert engine.pending == {} and engine.pending is not None
    with pytest.raises(InvalidArgumentError, match="now"):
        engine.receive_at(b"\x01" + bytes(20) + b"\xc0", ADDRESS, float("nan"), 0.0)


# -- both cores driven alike ---------------------------------------------

# ("open", timeout, lag, deadline or None) | ("answer", index of a request
# opened, or -1: an id never sent, right address?, value, lag) | ("advance",
# seconds) | ("resend", index): its retry counts a second copy
_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("open"),
            st.floats(0.001, 5.0),
            st.floats(0.0, 2.0),
            st.none() | st.floats(0.0, 20.0),
        ),
        st.tuples(
            st.just("answer"),
            st.integers(-1, 7),
            st.booleans(),
            st.sampled_from([b"n" * 20, 5, None]),
            st.floats(0.0, 3.0),
        ),
        st.tuples(st.just("advance"), st.floats(0.0, 2.0)),
        st.tuples(st.just("resend"), st.integers(0, 7)),
    ),
    max_size=30,
)


def _comparable(answer: tuple[Any, ...], ids: dict[bytes, int]) -> tuple[Any, ...]:
    """An answer with its message id and query id as the index of the
    request they belong to (the two cores draw different ids)."""
    status, first, value, pending, rtt = answer
    if type(first) is bytes:
        first = ids.get(first, first)
    if pending is not None:
        pending = (ids[pending[0].bytes], *pending[1:7], pending[7] is not None, *pending[8:])
    return (status, first, value, pending, rtt)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPS)
def test_both_cores_open_and_end_requests_alike(ops: list[tuple[Any, ...]]) -> None:
    rust = require_rust()
    sides = []
    for module in (rust, _core_py):
        engine, core = _engine(module)
        # (engine, core, msg ids, msg/query id -> index, the peer book fed)
        sides.append((engine, core, [], {}, module.PeerBook()))
    now = 100.0
    for op in ops:
        answers = []
        for engine, core, opened, ids, book in sides:
            if op[0] == "open":
                _, timeout, lag, deadline = op
                datagram = engine.open(
                    timeout, now, lag, ADDRESS, "ping", None, None, len(opened), b"b", deadline
                )
                ids[datagram[1:21]] = ids[datagram[1:17]] = len(opened)
                opened.append(datagram[1:21])
                answers.append((datagram[0], datagram[17:]))
            elif op[0] == "answer":
                _, index, right, value, lag = op
                msg_id = opened[index] if 0 <= index < len(opened) else b"\x07" * 20
                address = ADDRESS if right else OTHER
                answer = engine.receive_at(encode_response(msg_id, value), address, now, lag, book)
                answers.append(_comparable(answer, ids))
                answers.append(
                    (
                        book.network_samples,
                        book.srtt(ADDRESS),
                        book.stats(ADDRESS) if ADDRESS in book else None,
                    )
                )
            elif op[0] == "resend":
                if op[1] < len(opened) and opened[op[1]] in engine.pending:
                    retry = engine.pending[opened[op[1]]].retry
                    if retry is not None:
                        retry[2] += 1
            else:
                answers.append(len(core.expire(now + op[1])))
            answers.append((core.in_flight, core.tombstones, core.counters()))
        assert answers[: len(answers) // 2] == answers[len(answers) // 2 :], op
        if op[0] == "advance":
            now += op[1]
    (rust_engine, _, _, rust_ids, _), (py_engine, _, _, py_ids, _) = sides
    assert sorted(rust_ids[k] for k in rust_engine.pending) == sorted(
        py_ids[k] for k in py_engine.pending
    )


# -- the RPC table on the engine -------------------------------------------


def test_the_table_opens_resends_and_ends_a_request_in_the_engine(backend: str) -> None:
    """``RpcTable.open_request`` and ``receive`` (the protocol's path):
    the datagram framed by the engine, sent again unchanged past its RTO,
    the first answer ends it with no RTT (Karn), the second is a
    duplicate."""

    async def scenario() -> tuple[list[bytes], tuple[Any, ...], str, Any, int]:
        clock = FakeClock()
        sent: list[bytes] = []
        table = RpcTable(
            asyncio.get_running_loop(),
            new_core(backend),
            ExpiryTimer(clock),
            clock,
            send=lambda datagram, address: sent.append(datagram),
        )
        answered = table.loop.create_future()
        datagram = table.open_request(
            "peer", "ping", 0.05, answered, None, None, b"body", 1.0, _overdue
        )
        sent.append(datagram)
        clock.advance(0.051)  # past its RTO: sent again
        response = encode_response(datagram[1:21], "pong")
        status, msg_id, value, pending, rtt = table.receive(response, "peer")
        assert pending is not None
        pending.deliver(True, value)
        second = table.receive(response, "peer")
        assert second[3] is None
        return (
            sent,
            (status, msg_id, rtt),
            table.unmatched(second[1])[0],
            await answered,
            len(table),
        )

    sent, first, second, reply, left = asyncio.run(scenario())
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0].endswith(b"body")
    assert first == (ANSWERED, sent[0][1:21], -1.0)
    assert second == "duplicate_response"
    assert reply == (True, "pong") and left == 0


def test_the_table_measures_an_answer_without_the_loops_lag(backend: str) -> None:
    async def scenario() -> tuple[float, float, QueryState]:
        clock = FakeClock()
        timer = ExpiryTimer(clock)
        core = new_core(backend)
        table = RpcTable(asyncio.get_running_loop(), core, timer, clock)
        datagram = table.open_request("peer", "ping", 1.0, None, None, None, b"b")
        query_id = table.on_wire[datagram[1:21]].query_id
        clock.advance(0.3)
        timer.lag += 0.1  # (as if the timer had fired 0.1 s late meanwhile)
        _, _, _, _, rtt = table.receive(encode_response(datagram[1:21], 1), "peer")
        other = table.open_request("peer", "ping", 1.0, None, None, None, b"b")
        clock.advance(0.2)
        _, _, _, _, plain = table.receive(encode_response(other[1:21], 1), "peer")
        return rtt, plain, core.state(query_id)

    rtt, plain, state = asyncio.run(scenario())
    assert rtt == pytest.approx(0.2) and plain == pytest.approx(0.2)
    assert state == QueryState.TOMBSTONE


def test_an_answered_requests_tombstone_is_expired_by_the_timer(backend: str) -> None:
    """No arm for the tombstone when an answer ends a request: the timer,
    armed for the request's deadline, fires and re-arms for the wheel's
    next entry, the tombstone's end, which it then expires."""

    async def scenario() -> tuple[int, int]:
        clock = FakeClock()
        core = new_core(backend)
        table = RpcTable(asyncio.get_running_loop(), core, ExpiryTimer(clock), clock)
        datagram = table.open_request("peer", "ping", 0.5, None, None, None, b"b")
        clock.advance(0.1)
        table.receive(encode_response(datagram[1:21], 1), "peer")
        tombstones = core.tombstones
        clock.advance(0.5)  # the request's deadline: the timer fires
        clock.advance(core.grace + 0.01)  # the tombstone's end
        return tombstones, core.tombstones

    assert asyncio.run(scenario()) == (1, 0)


# -- a lookup's asks in one call (open_asks) ---------------------------------

NAMES = ("find_values", "find_value")
BODIES = {"find_values": b"ours", "find_value": b"stock"}
PEER_B = ("127.0.0.2", 4000)


def _asks(*addresses: Any) -> list[tuple[bytes, Any]]:
    return [(bytes([index]) * 20, address) for index, address in enumerate(addresses)]


def _open_asks(
    engine: Any,
    book: Any,
    asks: list[tuple[bytes, Any]],
    *,
    extensions: dict[Any, bool] | None = None,
    bodies: dict[str, bytes] | None = None,
    budget: float | None = None,
    now: float = 10.0,
    send: Any = None,
) -> tuple[tuple[float, int, int], list[tuple[bytes, Any]]]:
    sent: list[tuple[bytes, Any]] = []
    answer = engine.open_asks(
        asks,
        NAMES,
        BODIES if bodies is None else bodies,
        now,
        0.25,
        book,
        {} if extensions is None else extensions,
        budget,
        3.0,
        3.0,
        _callback,
        _overdue,
        (lambda datagram, address: sent.append((datagram, address))) if send is None else send,
    )
    return answer, sent


def test_open_asks_opens_and_sends_each_ask_in_order(module: ModuleType) -> None:
    """Peers never measured: overdue at the first RTO (1 s), retransmitted
    within OVERDUE_SPAN of it (3 s); each entry as ``open`` keeps it, the
    ask its context."""
    engine, core = _engine(module)
    asks = _asks(ADDRESS, OTHER)
    answer, sent = _open_asks(engine, module.PeerBook(), asks)
    assert answer == (1.0, 0, 2)
    assert [address for _, address in sent] == [ADDRESS, OTHER]
    for (datagram, address), ask in zip(sent, asks, strict=True):
        assert (datagram[:1], datagram[17:21], datagram[21:]) == (b"\x00", PAD, b"ours")
        entry = engine.pending[datagram[1:21]]
        assert entry[1:7] == (address, "find_values", None, _callback, ask, 10.0)
        assert entry.retry == [datagram, 13.0, 1, 1.0, 10.0, _overdue]
        assert entry[8:] == (0.25, 0.0, 0.0)
    assert core.in_flight == 2


def test_open_asks_times_a_measured_peer_by_its_base_rto(module: ModuleType) -> None:
    """Measured: overdue at the base RTO (the 50 ms floor here), within
    three of them; or within the caller's budget."""
    engine, _ = _engine(module)
    book = module.PeerBook()
    book.observe(ADDRESS, 0.01)
    (earliest, _, _), sent = _open_asks(engine, book, _asks(ADDRESS))
    assert earliest == 0.05
    assert engine.pending[sent[0][0][1:21]].retry[1:4] == [10.0 + 3.0 * 0.05, 1, 0.05]
    (earliest, _, _), sent = _open_asks(engine, book, _asks(ADDRESS), budget=2.0)
    assert engine.pending[sent[0][0][1:21]].retry[1:4] == [12.0, 1, 0.05]


def test_open_asks_gives_one_try_to_a_peer_that_answered_others(module: ModuleType) -> None:
    """A peer that answered before, not known to answer ours: given up at
    its RTO (a stock peer, most likely); known to answer ours: the span."""
    engine, _ = _engine(module)
    book = module.PeerBook()
    book.success(ADDRESS, 0.01, 5.0)
    _, sent = _open_asks(engine, book, _asks(ADDRESS), budget=2.0)
    assert engine.pending[sent[0][0][1:21]].retry[1:4] == [11.0, 1, 1.0]
    _, sent = _open_asks(engine, book, _asks(ADDRESS), extensions={ADDRESS: True}, budget=2.0)
    assert engine.pending[sent[0][0][1:21]].retry[1:4] == [12.0, 1, 1.0]


def test_open_asks_sends_a_peer_known_stock_the_stock_rpc(module: ModuleType) -> None:
    engine, _ = _engine(module)
    book = module.PeerBook()
    book.success(OTHER, 0.01, 5.0)
    _, sent = _open_asks(engine, book, _asks(ADDRESS, OTHER), extensions={OTHER: False})
    assert [datagram[21:] for datagram, _ in sent] == [b"ours", b"stock"]
    entry = engine.pending[sent[1][0][1:21]]
    # (no one-try rule: the stock RPC is what it answers)
    assert entry.name == "find_value" and entry.retry[1] == 13.0


def test_open_asks_stops_at_an_ask_whose_body_is_not_packed(module: ModuleType) -> None:
    engine, core = _engine(module)
    asks = _asks(ADDRESS, OTHER, PEER_B)
    answer, sent = _open_asks(
        engine, module.PeerBook(), asks, extensions={OTHER: False}, bodies={"find_values": b"o"}
    )
    assert answer == (1.0, 0, 1)
    assert [address for _, address in sent] == [ADDRESS]
    assert core.in_flight == 1
    # nothing opened or sent for the others: no asks, no timeout to arm
    assert _open_asks(engine, module.PeerBook(), asks[1:], extensions={OTHER: False}, bodies={})[
        0
    ] == (float("inf"), 0, 0)


def test_open_asks_counts_the_sends_refused_with_value_error(module: ModuleType) -> None:
    """uvloop refuses an address of another family with ValueError: the
    request stays (it times out); any other error is raised."""
    engine, core = _engine(module)

    def refuse(datagram: bytes, address: Any) -> None:
        if address == OTHER:
            raise ValueError("wrong family")

    answer, _ = _open_asks(engine, module.PeerBook(), _asks(ADDRESS, OTHER), send=refuse)
    assert answer == (1.0, 1, 2) and core.in_flight == 2

    def broken(datagram: bytes, address: Any) -> None:
        raise OSError("broken")

    with pytest.raises(OSError, match="broken"):
        _open_asks(engine, module.PeerBook(), _asks(ADDRESS), send=broken)


def test_open_asks_refuses_bad_arguments(module: ModuleType) -> None:
    engine, _ = _engine(module)
    book = module.PeerBook()
    good: dict[str, Any] = {
        "asks": _asks(ADDRESS),
        "names": NAMES,
        "bodies": BODIES,
        "now": 1.0,
        "lag": 0.0,
        "peers": book,
        "extensions": {},
        "budget": None,
        "span": 3.0,
        "first_span": 3.0,
        "callback": None,
        "overdue": None,
        "send": lambda *args: None,
    }
    for name, value, error in [
        ("asks", tuple(_asks(ADDRESS)), InvalidArgumentTypeError),
        ("names", ["a", "b"], InvalidArgumentTypeError),
        ("names", ("a",), InvalidArgumentTypeError),
        ("bodies", [], InvalidArgumentTypeError),
        ("extensions", None, InvalidArgumentTypeError),
        ("now", -1.0, InvalidArgumentError),
        ("lag", "0", InvalidArgumentTypeError),
        ("budget", 0.0, InvalidArgumentError),
        ("span", 0.0, InvalidArgumentError),
        ("first_span", -1.0, InvalidArgumentError),
        ("send", None, InvalidArgumentTypeError),
    ]:
        with pytest.raises(error, match=name if name != "budget" else "timeout"):
            engine.open_asks(**{**good, name: value})
    with pytest.raises(InvalidArgumentTypeError, match="a body must be bytes"):
        engine.open_asks(**{**good, "bodies": {"find_values": "text"}})
    assert engine.pending == {}
    with pytest.raises(InvalidArgumentTypeError, match="without requests"):
        module.DatagramEngine({}).open_asks(**good)


# ("asks", addresses by index, budget or None, now) | ("observe", peer,
# seconds) | ("success", peer) | ("ours", peer, bool or None): what
# extensions says of it
_PEERS = [ADDRESS, OTHER, PEER_B, ("127.0.0.1", 4002)]
_ASK_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("asks"),
            st.lists(st.integers(0, 3), max_size=5),
            st.none() | st.floats(0.01, 5.0),
            st.floats(0.0, 100.0),
        ),
        st.tuples(st.just("observe"), st.integers(0, 3), st.floats(0.0, 2.0)),
        st.tuples(st.just("success"), st.integers(0, 3)),
        st.tuples(st.just("ours"), st.integers(0, 3), st.none() | st.booleans()),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ASK_OPS)
def test_both_cores_open_asks_alike(ops: list[tuple[Any, ...]]) -> None:
    """The Rust engine with its PeerBook, the Python one with its own, and
    the Rust engine reading a Python PeerBook through its methods: the same
    answers, entries, datagrams sent and peers' timing."""
    rust = require_rust()
    sides = []
    for module, book_module in ((rust, rust), (_core_py, _core_py), (rust, _core_py)):
        engine, core = _engine(module)
        sides.append((engine, core, book_module.PeerBook(), {}, {}))
    for op in ops:
        answers: list[list[Any]] = []
        for engine, core, book, extensions, ids in sides:
            answer_of_side: list[Any] = []
            answers.append(answer_of_side)
            if op[0] == "asks":
                _, indexes, budget, now = op
                asks = _asks(*(_PEERS[index] for index in indexes))
                answer, sent = _open_asks(
                    engine, book, asks, extensions=extensions, budget=budget, now=now
                )
                for datagram, _ in sent:
                    ids[datagram[1:21]] = len(ids)
                answer_of_side.append(answer)
                answer_of_side.append(
                    [(ids[d[1:21]], d[21:], a, engine.pending[d[1:21]][1:3]) for d, a in sent]
                )
                answer_of_side.append([(*engine.pending[d[1:21]].retry[1:5],) for d, _ in sent])
            elif op[0] == "observe":
                book.observe(_PEERS[op[1]], op[2])
            elif op[0] == "success":
                book.success(_PEERS[op[1]], 0.01, 1.0)
            elif op[2] is None:
                extensions.pop(_PEERS[op[1]], None)
            else:
                extensions[_PEERS[op[1]]] = op[2]
            # (read without making an estimator or a record: which of
            # them the asks made is compared too)
            answer_of_side.append(
                (
                    [(book.has_estimator(peer), peer in book, book.srtt(peer)) for peer in _PEERS],
                    book.estimators,
                    len(book),
                    core.in_flight,
                    len(engine.pending),
                )
            )
        assert answers[0] == answers[1] == answers[2], op

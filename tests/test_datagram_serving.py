"""The datagram engine serving requests (``DatagramEngine.serve``, then
``receive_at``): a find_values of a key whose answer is kept is answered in
the engine's one call (framed, kept for a resend), so is a find_value (stock
``Server.get``'s RPC) given the store of plain values, a resend from the replay
cache, a request the fair share refuses is shed; anything else is handed
over as before. Both cores, and a property test driving both with the same
operations (well-formed, malformed, hostile and resent requests, stale
answers) comparing every answer and counter."""

from __future__ import annotations

import os
from collections import Counter
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.dht.rpc_table import DATAGRAM_DROP as DROP
from dhtquery.dht.rpc_table import DATAGRAM_REPLAYED as REPLAYED
from dhtquery.dht.rpc_table import DATAGRAM_REQUEST as REQUEST
from dhtquery.dht.rpc_table import DATAGRAM_SERVED as SERVED
from dhtquery.dht.rpc_table import DATAGRAM_SHED as SHED
from dhtquery.dht.rpc_table import _Pending as Entry
from dhtquery.dht.wire import CLIENT_PAD, frame_request, pack_request, pack_response
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import _core_py
from tests.conftest import require_rust

ADDRESS = ("127.0.0.1", 4000)
OTHER = ("127.0.0.1", 4001)
PAD = b"\x00\x00\x00\x01"
PEER_PAD = b"\x00\x00\x00\x00"
KEYS = [bytes([n]) * 20 for n in range(3)]
SENDER = b"s" * 20
PING_ANSWER = pack_response(b"n" * 20)  # (this node's id, packed)


class _Records:
    """A record store as the engine reads it: its ``generation``."""

    def __init__(self) -> None:
        self.generation = 0


class _FairShare:
    """Admits all but every ``shed_every``-th request; remembers whom it
    was asked about."""

    def __init__(self, shed_every: int = 0) -> None:
        self.asked: list[Any] = []
        self.shed_every = shed_every

    def admit(self, source: Any) -> bool:
        self.asked.append(source)
        return not (self.shed_every and len(self.asked) % self.shed_every == 0)


def _engine(
    module: ModuleType, fair_share: Any = None, stats: Any = None, **bounds: Any
) -> tuple[Any, Any, _Records]:
    engine = module.DatagramEngine({}, {}, requests=(module.QueryCore(), PAD, {}, Entry))
    replay = module.ReplayCache(5.0)
    records = _Records()
    engine.serve(replay, records, CLIENT_PAD, fair_share, stats=stats, **bounds)
    return engine, replay, records


def _find_values(
    key: bytes, msg_id: bytes | None = None, sender: bytes = SENDER, rpc: str = "find_values"
) -> bytes:
    msg_id = msg_id if msg_id is not None else os.urandom(16) + CLIENT_PAD
    return frame_request(msg_id, pack_request(rpc, (sender, key)))


@pytest.fixture(params=["rust", "python"], ids=["rs", "py"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return require_rust() if request.param == "rust" else _core_py


def test_a_kept_answer_is_served_framed_and_kept_for_a_resend(module: ModuleType) -> None:
    stats: Counter[str] = Counter()
    engine, replay, _ = _engine(module, stats=stats)
    engine.keep_answer(KEYS[0], 0, 100.0, b"answer")
    datagram = _find_values(KEYS[0])
    msg_id = datagram[1:21]
    served = engine.receive_at(datagram, ADDRESS, 10.0, 0.0)
    assert served == (SERVED, None, b"\x01" + msg_id + b"answer", None, 0.0)
    assert replay.get(ADDRESS, msg_id, 10.0) == served[2] and len(replay) == 1
    again = engine.receive_at(datagram, ADDRESS, 11.0, 0.0)
    assert again == (REPLAYED, None, served[2], None, 0.0)
    # another sender's request with that id is no resend of this one
    assert engine.receive_at(datagram, OTHER, 11.0, 0.0)[0] == SERVED
    assert stats == {"served": 2, "client_requests": 2, "replayed": 1}


def test_a_peer_sender_is_handed_back_its_id_to_welcome(module: ModuleType) -> None:
    stats: dict[str, int] = {}
    engine, _, _ = _engine(module, stats=stats)
    engine.keep_answer(KEYS[0], 0, 100.0, b"answer")
    datagram = _find_values(KEYS[0], os.urandom(16) + PEER_PAD, sender=b"p" * 7)
    status, sender, _, _, _ = engine.receive_at(datagram, ADDRESS, 10.0, 0.0)
    assert (status, sender) == (SERVED, b"p" * 7)
    assert stats == {"served": 1}  # (not a client's request)


def test_an_answer_no_longer_valid_is_handed_over(module: ModuleType) -> None:
    engine, _, records = _engine(module)
    engine.keep_answer(KEYS[0], 0, 100.0, b"answer")
    datagram = _find_values(KEYS[0])
    expired = engine.receive_at(datagram, ADDRESS, 100.0, 0.0)  # until passed
    assert expired == (REQUEST, datagram[1:21], ["find_values", [SENDER, KEYS[0]]], None, 0.0)
    records.generation = 1  # the store changed
    assert engine.receive_at(_find_values(KEYS[0]), ADDRESS, 10.0, 0.0)[0] == REQUEST
    assert engine.kept_answer(KEYS[0], 1, 10.0) is None
    assert engine.kept_answer(KEYS[0], 0, 10.0) == b"answer"
    records.generation = "not an int"  # (never valid)
    assert engine.receive_at(_find_values(KEYS[0]), ADDRESS, 10.0, 0.0)[0] == REQUEST


def test_a_request_in_another_encoding_is_handed_over_decoded(module: ModuleType) -> None:
    engine, _, _ = _engine(module)
    engine.keep_answer(KEYS[0], 0, 100.0, b"answer")
    msg_id = os.urandom(16) + CLIENT_PAD
    # the id as bin 16: the same value, read by the protocol as before
    body = b"\x92\xabfind_values\x92\xc5\x00\x14" + SENDER + b"\xc4\x14" + KEYS[0]
    assert msgpack.unpackb(body) == ["find_values", [SENDER, KEYS[0]]]
    datagram = b"\x00" + msg_id + body
    assert engine.receive_at(datagram, ADDRESS, 1.0, 0.0) == (
        REQUEST,
        msg_id,
        ["find_values", [SENDER, KEYS[0]]],
        None,
        0.0,
    )
    # an id of 65 bytes, a key of none: not served (the protocol drops them)
    for sender, key in ((bytes(65), KEYS[0]), (SENDER, b"")):
        status, _, value, _, _ = engine.receive_at(_find_values(key, sender=sender), ADDRESS, 1, 0)
        assert (status, value) == (REQUEST, ["find_values", [sender, key]])


def test_a_malformed_request_is_dropped_before_the_fair_share(module: ModuleType) -> None:
    fair_share = _FairShare()
    engine, _, _ = _engine(module, fair_share)
    msg_id = os.urandom(20)
    assert engine.receive_at(b"\x00" + msg_id + b"\xc1", ADDRESS, 1.0, 0.0) == (
        DROP,
        "malformed",
        None,
        None,
        0.0,
    )
    truncated = _find_values(KEYS[0])[:-1]
    assert engine.receive_at(truncated, ADDRESS, 1.0, 0.0)[:2] == (DROP, "malformed")
    too_big = b"\x00" + msg_id + bytes(8193)
    assert engine.receive_at(too_big, ADDRESS, 1.0, 0.0)[:2] == (DROP, "oversize_request")
    assert fair_share.asked == []


def test_a_kept_find_value_answer_is_served_given_the_store_of_values(
    module: ModuleType,
) -> None:
    """A find_value (stock ``Server.get``'s RPC) of a key whose answer is
    kept under ``rpc="find_value"`` is answered in the engine while the
    store of plain values (``serve(values=)``) keeps its generation; its
    kept answers are apart from find_values' (of the same key)."""
    stats: Counter[str] = Counter()
    values = _Records()
    engine, replay, records = _engine(module, stats=stats, values=values)
    engine.keep_answer(KEYS[0], 0, 100.0, b"value", rpc="find_value")
    datagram = _find_values(KEYS[0], os.urandom(16) + PEER_PAD, rpc="find_value")
    msg_id = datagram[1:21]
    served = engine.receive_at(datagram, ADDRESS, 10.0, 0.0)
    assert served == (SERVED, SENDER, b"\x01" + msg_id + b"value", None, 0.0)
    assert replay.get(ADDRESS, msg_id, 10.0) == served[2]
    assert stats == {"served": 1}
    # a find_values of that key: its own kept answers (none)
    handed = engine.receive_at(_find_values(KEYS[0]), ADDRESS, 10.0, 0.0)
    assert handed[0] == REQUEST and handed[2] == ["find_values", [SENDER, KEYS[0]]]
    # the record store's generation does not touch find_value's answers ...
    records.generation = 5
    assert engine.receive_at(_find_values(KEYS[0], rpc="find_value"), OTHER, 10.0, 0.0)[0] == (
        SERVED
    )
    # ... the store of values' does, as does time
    values.generation = 1
    handed = engine.receive_at(_find_values(KEYS[0], rpc="find_value"), OTHER, 10.0, 0.0)
    assert handed[0] == REQUEST and handed[2] == ["find_value", [SENDER, KEYS[0]]]
    assert engine.kept_answer(KEYS[0], 0, 10.0, rpc="find_value") == b"value"
    assert engine.kept_answer(KEYS[0], 0, 100.0, rpc="find_value") is None
    assert engine.kept_answer(KEYS[0], 0, 10.0) is None  # (find_values': none)


def test_a_find_value_is_handed_over_without_the_store_of_values(module: ModuleType) -> None:
    engine, _, _ = _engine(module)  # (no values=: stock's storage, say)
    engine.keep_answer(KEYS[0], 0, 100.0, b"value", rpc="find_value")
    datagram = _find_values(KEYS[0], rpc="find_value")
    assert engine.receive_at(datagram, ADDRESS, 1.0, 0.0) == (
        REQUEST,
        datagram[1:21],
        ["find_value", [SENDER, KEYS[0]]],
        None,
        0.0,
    )


def test_each_rpcs_kept_answers_have_their_own_bounds(module: ModuleType) -> None:
    engine, _, _ = _engine(module, max_answers=1, max_answer_bytes=10)
    engine.keep_answer(KEYS[0], 0, 9.0, b"abc")
    engine.keep_answer(KEYS[0], 1, 9.0, b"defgh", rpc="find_value")
    engine.keep_answer(KEYS[1], 2, 9.0, b"ij", rpc="find_value")  # (KEYS[0]'s leaves)
    assert engine.kept_answers() == engine.kept_answers(rpc="find_values")
    assert engine.kept_answers() == {KEYS[0]: (0, 9.0, b"abc")}
    assert engine.kept_answers(rpc="find_value") == {KEYS[1]: (2, 9.0, b"ij")}
    assert engine.kept_bytes == 5  # (both RPCs')
    engine.forget_answer(KEYS[1])  # (find_values': none kept for that key)
    assert engine.kept_answers(rpc="find_value") == {KEYS[1]: (2, 9.0, b"ij")}
    engine.forget_answer(KEYS[1], rpc="find_value")
    assert engine.kept_answers(rpc="find_value") == {} and engine.kept_bytes == 3
    engine.keep_answer(KEYS[1], 2, 9.0, b"ij", rpc="find_value")
    engine.forget_answers()  # (both RPCs')
    assert engine.kept_answers() == engine.kept_answers(rpc="find_value") == {}
    assert engine.kept_bytes == 0


def test_kept_answers_refuse_an_rpc_they_do_not_keep(module: ModuleType) -> None:
    engine, _, _ = _engine(module)
    engine.keep_answer(KEYS[0], 0, 9.0, b"abc")
    for call in (
        lambda rpc: engine.keep_answer(KEYS[1], 0, 9.0, b"x", rpc=rpc),
        lambda rpc: engine.forget_answer(KEYS[0], rpc=rpc),
        lambda rpc: engine.kept_answer(KEYS[0], 0, 1.0, rpc=rpc),
        lambda rpc: engine.kept_answers(rpc=rpc),
    ):
        with pytest.raises(InvalidArgumentError, match="find_node"):
            call("find_node")
        with pytest.raises(InvalidArgumentTypeError, match="rpc must be a str"):
            call(b"find_value")
    # (nothing kept was lost to the refusals)
    assert engine.kept_answers() == {KEYS[0]: (0, 9.0, b"abc")} and engine.kept_bytes == 3


def test_kept_answers_refuse_bad_times_and_generations_alike(module: ModuleType) -> None:
    """Both cores refuse what the Rust core's argument types refuse, with
    the same exceptions (a time read as the core's f64 before anything
    else; a generation beyond 64 bits), and lose nothing kept."""
    engine, _, _ = _engine(module)
    engine.keep_answer(KEYS[0], 0, 9.0, b"abc", rpc="find_value")
    with pytest.raises(TypeError, match="must be real number, not str"):
        engine.keep_answer(KEYS[1], 0, "9.0", b"x", rpc="find_node")
    with pytest.raises(TypeError, match="must be real number, not NoneType"):
        engine.kept_answer(KEYS[0], 0, None, rpc="find_value")
    with pytest.raises(OverflowError):
        engine.keep_answer(KEYS[1], 2**70, 9.0, b"x", rpc="find_value")
    assert engine.kept_answer(KEYS[0], 2**70, 1.0, rpc="find_value") is None
    assert engine.kept_answer(KEYS[0], 0, 1, rpc="find_value") == b"abc"  # (an int time)
    assert engine.kept_answers(rpc="find_value") == {KEYS[0]: (0, 9.0, b"abc")}


def _ping(msg_id: bytes | None = None, sender: bytes = SENDER) -> bytes:
    msg_id = msg_id if msg_id is not None else os.urandom(16) + CLIENT_PAD
    return frame_request(msg_id, pack_request("ping", (sender,)))


def test_a_ping_is_answered_with_the_nodes_id_given_its_answer(module: ModuleType) -> None:
    """Given a ping's answer (``serve(ping=)``), the engine answers a ping
    as kademlia's rpc_ping does (this node's id; the sender's id handed
    back to be welcomed unless it is a client), kept for a resend and
    counted; without one, or in another encoding, a ping is handed over."""
    fair_share = _FairShare()
    stats: Counter[str] = Counter()
    engine, replay, _ = _engine(module, fair_share, stats, ping=PING_ANSWER)
    client = _ping()
    assert engine.receive_at(client, ADDRESS, 1.0, 0.0) == (
        SERVED,
        None,
        b"\x01" + client[1:21] + PING_ANSWER,
        None,
        0.0,
    )
    assert replay.get(ADDRESS, client[1:21], 1.0) == b"\x01" + client[1:21] + PING_ANSWER
    peer = _ping(os.urandom(16) + PEER_PAD)
    assert engine.receive_at(peer, OTHER, 1.0, 0.0)[:2] == (SERVED, SENDER)
    assert engine.receive_at(peer, OTHER, 1.0, 0.0)[0] == REPLAYED
    assert stats == {"served": 2, "client_requests": 1, "replayed": 1}
    assert fair_share.asked == [ADDRESS, OTHER, OTHER]
    # an id as a str (not msgpack's usual bin 8): handed over, decoded
    other = frame_request(os.urandom(20), pack_request("ping", ("s" * 20,)))
    assert engine.receive_at(other, ADDRESS, 1.0, 0.0)[:3] == (
        REQUEST,
        other[1:21],
        ["ping", ["s" * 20]],
    )
    engine, _, _ = _engine(module)  # no ping answer: every ping handed over
    assert engine.receive_at(client, ADDRESS, 1.0, 0.0)[:3] == (
        REQUEST,
        client[1:21],
        ["ping", [SENDER]],
    )
    with pytest.raises(InvalidArgumentTypeError):
        _engine(module, ping="answer")


def test_the_cores_own_fair_share_admits_and_sheds_in_the_engine(module: ModuleType) -> None:
    """The core's FairShare (which the engine admits with, no Python call)
    given to its engine: a heavy source is shed under load, a light one
    served, the shed counted in the fair share; the load read as it says."""
    looks = []

    def queued() -> int:
        looks.append(1)
        return 10_000  # past the mark: under load

    fair_share = module.FairShare(queued, 1000, window=10, floor=1, check_every=1)
    engine, _, _ = _engine(module, fair_share)
    engine.keep_answer(KEYS[0], 0, 100.0, b"answer")
    served = [engine.receive_at(_find_values(KEYS[0]), ADDRESS, 1.0, 0.0)[0] for _ in range(3)]
    assert served == [SERVED] * 3  # one source alone is never heavy
    assert engine.receive_at(_find_values(KEYS[0]), OTHER, 1.0, 0.0)[0] == SERVED
    # 4 of 5 requests in the window, past 1.5 x an equal share (3.75)
    shed = engine.receive_at(_find_values(KEYS[0]), ADDRESS, 1.0, 0.0)
    assert shed == (SHED, "fair_share", None, None, 0.0)
    assert engine.receive_at(_find_values(KEYS[0]), OTHER, 1.0, 0.0)[0] == SERVED
    assert fair_share.shed == 1 and fair_share.under_load
    assert len(looks) == 6  # check_every=1: a look per request


def test_the_fair_share_is_asked_before_an_answer_and_what_it_refuses_is_shed(
    module: ModuleType,
) -> None:
    """The fair share is asked about each request the engine answers, before
    it does (one it hands over, the protocol asks about): each request
    once, as the protocol asked before the engine served."""
    fair_share = _FairShare(shed_every=2)
    engine, replay, _ = _engine(module, fair_share)
    engine.keep_answer(KEYS[0], 0, 100.0, b"answer")
    datagram = _find_values(KEYS[0])
    assert engine.receive_at(datagram, ADDRESS, 1.0, 0.0)[0] == SERVED
    assert engine.receive_at(datagram, ADDRESS, 1.0, 0.0) == (SHED, "fair_share", None, None, 0.0)
    assert engine.receive_at(datagram, ADDRESS, 1.0, 0.0)[0] == REPLAYED
    ping = frame_request(os.urandom(20), pack_request("ping", (SENDER,)))
    assert engine.receive_at(ping, OTHER, 1.0, 0.0)[0] == REQUEST  # (not asked here)
    refused = _find_values(KEYS[0])
    assert engine.receive_at(refused, OTHER, 1.0, 0.0)[:2] == (SHED, "fair_share")
    assert fair_share.asked == [ADDRESS, ADDRESS, ADDRESS, OTHER]
    assert len(replay) == 1  # (a request shed is not answered, nor kept)


def test_kept_answers_stay_within_their_bounds_oldest_made_out_first(module: ModuleType) -> None:
    engine, _, _ = _engine(module, max_answers=2, max_answer_bytes=10)
    for key in KEYS:
        engine.keep_answer(key, 0, 9.0, b"abc")
    assert list(engine.kept_answers()) == KEYS[1:] and engine.kept_bytes == 6
    engine.keep_answer(KEYS[1], 3, 9.0, b"abcdefg")  # made again: the newest
    assert list(engine.kept_answers().items()) == [
        (KEYS[2], (0, 9.0, b"abc")),
        (KEYS[1], (3, 9.0, b"abcdefg")),
    ]
    assert engine.kept_bytes == 10
    engine.keep_answer(KEYS[0], 0, 9.0, b"xy")  # 12 bytes: the oldest leaves
    assert list(engine.kept_answers()) == [KEYS[1], KEYS[0]] and engine.kept_bytes == 9
    engine.keep_answer(KEYS[2], 0, 9.0, b"x" * 11)  # over the byte bound: not kept
    assert KEYS[2] not in engine.kept_answers()
    engine.forget_answer(KEYS[1])
    engine.forget_answer(KEYS[1])  # (forgetting a key not kept: nothing)
    assert engine.kept_answers() == {KEYS[0]: (0, 9.0, b"xy")} and engine.kept_bytes == 2
    engine.keep_answer(KEYS[2], 0, 9.0, b"abc")
    engine.forget_answers()
    assert engine.kept_answers() == {} and engine.kept_bytes == 0


def test_serve_refuses_what_it_cannot_serve_with(module: ModuleType) -> None:
    engine, _, _ = _engine(module)
    with pytest.raises(InvalidArgumentTypeError):
        engine.serve(object(), _Records(), CLIENT_PAD)
    with pytest.raises(InvalidArgumentError):
        engine.serve(module.ReplayCache(1.0), _Records(), b"pad")
    with pytest.raises(InvalidArgumentTypeError):
        engine.keep_answer("key", 0, 1.0, b"body")
    with pytest.raises(InvalidArgumentTypeError):
        engine.keep_answer(KEYS[0], 0, 1.0, "body")
    with pytest.raises(InvalidArgumentTypeError):
        engine.serve(module.ReplayCache(1.0), _Records(), CLIENT_PAD, stats=[])
    with pytest.raises(InvalidArgumentTypeError):
        module.DatagramEngine({}).serve(module.ReplayCache(1.0), _Records(), CLIENT_PAD)


# -- both cores, the same operations -------------------------------------

_MSG_IDS = [bytes([n]) * 16 + pad for n in range(3) for pad in (CLIENT_PAD, PEER_PAD)]


@st.composite
def _requests(draw: st.DrawFn) -> tuple[bytes, Any]:
    """A request datagram: find_values or find_value of a few keys or a ping (the usual
    encoding, or hostile: truncated, a byte flipped, bytes added), another
    RPC, noise;
    message ids from a few, so that requests are often resent."""
    msg_id = draw(st.sampled_from(_MSG_IDS) | st.binary(min_size=20, max_size=20))
    how = draw(
        st.sampled_from(
            ["find_values"] * 3 + ["find_value"] * 3 + ["ping"] * 2 + ["other", "hostile", "noise"]
        )
    )
    key = draw(st.sampled_from([*KEYS, b"", bytes(64), bytes(65)]))
    sender = draw(st.sampled_from([SENDER, b"x", b"", bytes(64), bytes(65)]))
    rpc = "find_value" if how == "find_value" else draw(st.sampled_from(_KEPT_RPCS))
    body = pack_request(rpc, (sender, key))
    if how == "ping" or (how == "hostile" and draw(st.booleans())):
        body = pack_request("ping", (sender,))
    elif how == "other":
        body = pack_request(draw(st.sampled_from(["ping", "find_node", "store"])), (sender, key))
    elif how == "hostile":
        at = draw(st.integers(0, len(body) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        body = draw(
            st.sampled_from(
                [
                    body[:at],
                    body[:at] + byte + body[at + 1 :],
                    body + byte,
                    body[:at] + byte + body[at:],
                ]
            )
        )
    elif how == "noise":
        body = draw(st.binary(max_size=40))
    kind = draw(st.sampled_from([b"\x00"] * 8 + [b"\x01", b"\x02"]))
    return kind + msg_id + body, draw(st.sampled_from([ADDRESS, ADDRESS, OTHER]))


_KEPT_RPCS = ("find_values", "find_value")

_OPERATIONS = st.one_of(
    st.tuples(st.just("receive"), _requests(), st.floats(0.0, 2.0)),
    st.tuples(
        st.just("keep"),
        st.sampled_from(KEYS),
        st.integers(0, 2),
        st.floats(0.0, 30.0),
        st.binary(min_size=1, max_size=8),
        st.sampled_from(_KEPT_RPCS),
    ),
    st.tuples(st.just("forget"), st.sampled_from(KEYS), st.sampled_from(_KEPT_RPCS)),
    st.tuples(st.just("generation"), st.integers(0, 2)),
    st.tuples(st.just("values_generation"), st.integers(0, 2)),
)


def _same(left: tuple[Any, ...], right: tuple[Any, ...]) -> bool:
    if left[:2] != right[:2] or left[3:] != right[3:]:
        return False
    pack = msgpack.packb
    return type(left[2]) is type(right[2]) and pack(left[2]) == pack(right[2])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_OPERATIONS, min_size=1, max_size=30),
    st.integers(0, 4),
    st.booleans(),
    st.booleans(),
)
def test_both_engines_serve_alike(
    operations: list[Any], shed_every: int, pings: bool, plain_values: bool
) -> None:
    """The same operations on both cores (answers to find_values and
    find_value kept, forgotten, made stale by their store's generation or
    by time; requests well-formed, malformed, hostile and resent; pings and
    find_values answered by the engine or handed over): the same answer to
    every datagram, the same answers kept and resent, the fair share asked
    about the same requests."""
    sides = []
    for module in (require_rust(), _core_py):
        fair_share = _FairShare(shed_every)
        stats: Counter[str] = Counter()
        values = _Records()
        engine, replay, records = _engine(
            module,
            fair_share,
            stats,
            max_answers=2,
            max_answer_bytes=12,
            ping=PING_ANSWER if pings else None,
            values=values if plain_values else None,
        )
        sides.append((engine, replay, records, fair_share, stats, values))
    now = 1.0
    for operation in operations:
        if operation[0] == "receive":
            (datagram, address), step = operation[1], operation[2]
            now += step
            ours, twin = (side[0].receive_at(datagram, address, now, 0.0) for side in sides)
            assert _same(ours, twin), (datagram.hex(), ours, twin)
        for engine, _, records, _, _, values in sides:
            if operation[0] == "keep":
                engine.keep_answer(
                    *operation[1:3], now + operation[3], operation[4], rpc=operation[5]
                )
            elif operation[0] == "forget":
                engine.forget_answer(operation[1], rpc=operation[2])
            elif operation[0] == "generation":
                records.generation = operation[1]
            elif operation[0] == "values_generation":
                values.generation = operation[1]
        (rust, rust_replay, _, rust_fair, rust_stats, _), (python, replay, _, fair, stats, _) = (
            sides
        )
        for rpc in _KEPT_RPCS:
            assert rust.kept_answers(rpc=rpc) == python.kept_answers(rpc=rpc)
        assert rust.kept_bytes == python.kept_bytes
        assert (len(rust_replay), rust_replay.size_bytes) == (len(replay), replay.size_bytes)
        assert rust_fair.asked == fair.asked
        assert rust_stats == stats
    for msg_id in _MSG_IDS:
        for address in (ADDRESS, OTHER):
            assert sides[0][1].get(address, msg_id, now) == sides[1][1].get(address, msg_id, now)

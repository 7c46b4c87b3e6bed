"""The datagram engine (``DatagramEngine.receive``): the Rust core's and the
pure-Python twin's, on the same datagrams, give the same answers; and each
reads rpcudp's framing and matches answers to requests as the protocol
counted them before it (``wire.decode`` then ``RpcTable.answer``)."""

from __future__ import annotations

import math
import sys
import tracemalloc
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.dht.protocol import _RESPONSE_SHAPE, _RESPONSE_SHAPES
from dhtquery.dht.wire import WireError, decode, encode_request, encode_response
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import _core_py, shapes
from tests.conftest import require_rust

DROP, REQUEST, ANSWERED, WRONG_ADDRESS, NOT_PENDING, CHECKED, BAD_SHAPE = range(7)
ADDRESS = ("127.0.0.1", 4000)
OTHER = ("127.0.0.1", 4001)
# A few message ids, so that datagrams often answer a pending request.
MSG_IDS = [bytes([n]) * 20 for n in range(4)]
# the RPC each of them asked (the last: one whose shape is not checked)
NAMES = ["find_values", "find_value", "find_node", "echo"]
# (the protocol's: kademlia's RPCs and ours)
SHAPES = dict(_RESPONSE_SHAPES)


def _pending(msg_id: bytes, address: Any = ADDRESS) -> tuple[Any, ...]:
    # (the RPC table's _Pending: the address is item 1, the RPC item 2)
    return ("query-id", address, NAMES[msg_id[0] % len(NAMES)], None)


def _packed(value: Any) -> bytes:
    """A value as bytes (msgpack again), so NaNs, floats and ints, str and
    bytes compare exactly."""
    return msgpack.packb(value, use_bin_type=True, datetime=False)


def _same(left: tuple[Any, ...], right: tuple[Any, ...]) -> bool:
    if len(left) != 4 or len(right) != 4 or left[0] != right[0] or left[1] != right[1]:
        return False
    if type(left[2]) is not type(right[2]) or _packed(left[2]) != _packed(right[2]):
        return False
    return left[3] is right[3]


# -- values as msgpack would carry them ---------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.floats(width=32)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=20))
)
_KEYS = (
    st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=8) | st.binary(max_size=8)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=30,
)


# Hosts: IP literals of both families, and strings close to them.
_HOSTS = (
    st.ip_addresses().map(str)
    | st.ip_addresses().map(str)
    | st.text(alphabet="0123456789abcdefABCDEF:.%x", max_size=24)
    | st.sampled_from(["localhost", "1.2.3.04", "::ffff:1.2.3.4", "1:2:3:4:5:6:7::", "1.2.3.4\x00"])
)
_IDS = (
    st.binary(min_size=20, max_size=20)
    | st.sampled_from([b"", b"i", bytes(64), bytes(65)])
    | st.binary(max_size=66)
    | st.text(max_size=3)
)
_PORTS = (
    st.integers(1, 65535)
    | st.sampled_from([0, 1, 65535, 65536, -1, 2**64 - 1])
    | st.booleans()
    | st.floats(0, 70000)
)
_CONTACT = st.tuples(_IDS, _HOSTS, _PORTS).map(list)
_CONTACTS = st.lists(_CONTACT, max_size=4) | st.lists(_CONTACT | _SCALARS, max_size=4)
_ANSWERS = (
    st.fixed_dictionaries(
        {"records": st.lists(st.binary(max_size=4), max_size=2) | _SCALARS},
        optional={"nodes": _CONTACTS | _SCALARS, "more": st.booleans()},
    )
    | st.fixed_dictionaries({}, optional={"value": _SCALARS | _CONTACTS})
    | _CONTACTS
    | st.binary(min_size=0, max_size=66)
)


def _pack_value(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """A msgpack body: well-formed, or hostile (truncated, bytes flipped,
    inserted or appended, or plain noise)."""
    how = draw(
        st.sampled_from(
            ["answer", "answer", "value", "truncate", "flip", "insert", "extra", "noise"]
        )
    )
    if how == "noise":
        return draw(st.binary(max_size=64))
    body = _pack_value(draw(_ANSWERS if how == "answer" or draw(st.booleans()) else _VALUES))
    if how == "answer":
        return body
    if how == "truncate":
        return body[: draw(st.integers(0, len(body)))]
    if how in ("flip", "insert") and body:
        at = draw(st.integers(0, len(body) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        return body[:at] + byte + body[at + (how == "flip") :]
    if how == "extra":
        return body + draw(st.binary(min_size=1, max_size=4))
    return body


@st.composite
def _datagrams(draw: st.DrawFn) -> tuple[bytes, Any]:
    kind = draw(st.sampled_from([0, 1, 1, 1, 1, 1, 1, 2, 0xFF]))
    known = draw(st.booleans())
    msg_id = draw(st.sampled_from(MSG_IDS) if known else st.binary(min_size=20, max_size=20))
    head = bytes([kind]) + msg_id
    if draw(st.integers(0, 20)) == 0:  # short: the header or part of it
        return head[: draw(st.integers(0, len(head)))], ADDRESS
    return head + draw(_bodies()), draw(st.sampled_from([ADDRESS, ADDRESS, OTHER]))


def _engines(rust: ModuleType) -> tuple[Any, Any]:
    pending = {msg_id: _pending(msg_id) for msg_id in MSG_IDS}
    return (
        rust.DatagramEngine(dict(pending), dict(SHAPES)),
        _core_py.DatagramEngine(dict(pending), dict(SHAPES)),
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_datagrams(), min_size=1, max_size=12))
def test_both_engines_agree_on_every_datagram(datagrams: list[tuple[bytes, Any]]) -> None:
    """Same datagrams, in the same order (answers of every shape, right or
    wrong, late and duplicated ones, wrong addresses, malformed and hostile
    bodies): the same answer every time and the same requests left
    pending."""
    rust, python = _engines(require_rust())
    for datagram, address in datagrams:
        ours, twin = rust.receive(datagram, address), python.receive(datagram, address)
        assert _same(ours, twin), (datagram.hex(), ours, twin)
        assert ours[3] is None or ours[3] == _pending(ours[1])
    assert rust.pending == python.pending


@settings(max_examples=400, deadline=None)
@given(_bodies())
def test_the_twin_reads_bodies_as_wire_decode_does(body: bytes) -> None:
    """The twin's answer to a response body is what the protocol made of it
    before the engine: wire.decode's value, or its error's kind."""
    datagram = b"\x01" + MSG_IDS[3] + body
    status, first, value, _ = _core_py.DatagramEngine({}).receive(datagram, ADDRESS)
    try:
        frame = decode(datagram)
    except WireError as exc:
        assert (status, first) == (DROP, exc.kind)
        return
    assert (status, first) == (NOT_PENDING, MSG_IDS[3])
    assert _packed(value) == _packed(frame.body)


@pytest.fixture(params=["rust", "python"], ids=["rs", "py"])
def engine_module(request: pytest.FixtureRequest) -> ModuleType:
    return require_rust() if request.param == "rust" else _core_py


def _response(msg_id: bytes, value: Any) -> bytes:
    return encode_response(msg_id, value)


def test_an_answer_from_the_address_asked_takes_its_request(engine_module: ModuleType) -> None:
    pending = {MSG_IDS[0]: _pending(MSG_IDS[0])}
    engine = engine_module.DatagramEngine(pending)
    value = {"records": [], "nodes": [[b"n" * 20, "127.0.0.1", 5]], "more": False}
    status, msg_id, got, request = engine.receive(_response(MSG_IDS[0], value), ADDRESS)
    assert (status, msg_id, got, request) == (ANSWERED, MSG_IDS[0], value, _pending(MSG_IDS[0]))
    assert pending == {}
    # the same answer again (duplicated on the way, or late): not pending
    assert engine.receive(_response(MSG_IDS[0], value), ADDRESS) == (
        NOT_PENDING,
        MSG_IDS[0],
        value,
        None,
    )


def test_an_answer_from_another_address_leaves_the_request(engine_module: ModuleType) -> None:
    pending = {MSG_IDS[0]: _pending(MSG_IDS[0])}
    engine = engine_module.DatagramEngine(pending)
    status, _, _, request = engine.receive(_response(MSG_IDS[0], True), OTHER)
    assert (status, request) == (WRONG_ADDRESS, _pending(MSG_IDS[0]))
    assert pending == {MSG_IDS[0]: _pending(MSG_IDS[0])}
    assert engine.pending is pending


def test_a_request_is_handed_over_with_its_body(engine_module: ModuleType) -> None:
    engine = engine_module.DatagramEngine({})
    datagram = encode_request(MSG_IDS[1], "find_values", (b"a" * 20, b"k" * 20))
    assert engine.receive(datagram, ADDRESS) == (
        REQUEST,
        MSG_IDS[1],
        ["find_values", [b"a" * 20, b"k" * 20]],
        None,
    )


# The strs the wire repeats (the Rust engine hands out one interned object
# for each; msgpack-python interns every map key).
WIRE_KEYS = ["records", "nodes", "more", "value"]
RPC_NAMES = ["stun", "ping", "store", "find_node", "find_value", "find_values", "store_record"]


def test_wire_words_are_read_as_plain_equal_strs(engine_module: ModuleType) -> None:
    engine = engine_module.DatagramEngine({})
    value = {key: [key, *RPC_NAMES] for key in WIRE_KEYS}
    _, _, got, _ = engine.receive(_response(MSG_IDS[0], value), ADDRESS)
    assert got == value
    for key, items in got.items():
        # a map key is the interned str (as msgpack makes it), so a caller's
        # constant finds it by identity; and it is a plain str
        assert key is sys.intern("".join(key))
        assert type(key) is str and hash(key) == hash("".join(key))
        for item in items:
            assert type(item) is str
            assert item == "".join(item) and hash(item) == hash("".join(item))
    # a fresh equal str finds what an interned one keyed, and the other way
    fresh = {"".join(key): index for index, key in enumerate(got)}
    assert [fresh[key] for key in got] == list(range(len(WIRE_KEYS)))


def test_a_request_names_its_rpc_with_an_equal_str(engine_module: ModuleType) -> None:
    engine = engine_module.DatagramEngine({})
    for name in [*RPC_NAMES, "find_values_", "find_valuez", "fin", ""]:
        datagram = encode_request(MSG_IDS[1], name, (b"a" * 20,))
        status, _, body, _ = engine.receive(datagram, ADDRESS)
        assert (status, body) == (REQUEST, [name, [b"a" * 20]])
        assert type(body[0]) is str


def test_distinct_keys_by_the_thousand_leave_nothing_behind(engine_module: ModuleType) -> None:
    """A hostile datagram of many distinct str keys and values: read as any
    other, and once dropped nothing of it is kept (no table of strs grows
    with what peers send)."""
    engine = engine_module.DatagramEngine({})

    def hostile(round_: int) -> bytes:
        keys = [f"k{round_}-{index}" for index in range(2_000)]
        return _response(MSG_IDS[0], {key: [key, key + "!"] for key in keys})

    def read(round_: int) -> None:
        status, _, value, _ = engine.receive(hostile(round_), ADDRESS)
        assert status == NOT_PENDING and len(value) == 2_000

    read(0)  # (the first round's one-off allocations)
    tracemalloc.start()
    try:
        read(1)
        # Two windows of four rounds: a table that kept what peers send
        # grows in both; a one-off growth (the interpreter's table of
        # interned strs resizing: msgpack interns map keys, and after
        # other tests it was near a resize; 1.9 MB once) shows in one.
        marks = [tracemalloc.get_traced_memory()[0]]
        for window in range(2):
            for round_ in range(2 + 4 * window, 6 + 4 * window):
                read(round_)
            marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    kept = min(marks[1] - marks[0], marks[2] - marks[1])
    # (2,000 strs kept a round would be ~500 KB over four)
    assert kept < 32_000


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (b"", "short"),
        (b"\x01" + MSG_IDS[0], "short"),
        (b"\x02" + MSG_IDS[0] + b"\xc0", "bad_kind"),
        (b"\x00" + MSG_IDS[0] + b"\xc4" + bytes(8192), "oversize_request"),
        (b"\x01" + MSG_IDS[0] + b"\xc1", "malformed"),
        (b"\x01" + MSG_IDS[0] + b"\x91", "malformed"),  # truncated
        (b"\x01" + MSG_IDS[0] + b"\x01\x02", "malformed"),  # extra data
        (b"\x01" + MSG_IDS[0] + b"\x81\x90\x01", "malformed"),  # unhashable key
        (b"\x01" + MSG_IDS[0] + b"\xd6\xff\x00", "malformed"),  # short timestamp
        (b"\x01" + MSG_IDS[0] + b"\x92\xa1\xff\xc1", "bad_utf8"),  # (the first error)
        # an array longer than the body is refused at its header, before
        # the bad str inside it (msgpack's max_array_len)
        (b"\x01" + MSG_IDS[0] + b"\xdd\x00\x00\x00\x10\xa1\xff", "malformed"),
        (b"\x01" + MSG_IDS[0] + b"\x91" * 1025 + b"\x01", "malformed"),  # its stack
    ],
)
def test_what_is_wrong_with_a_datagram_is_named(
    engine_module: ModuleType, datagram: bytes, kind: str
) -> None:
    pending = {MSG_IDS[0]: _pending(MSG_IDS[0])}
    engine = engine_module.DatagramEngine(pending)
    assert engine.receive(datagram, ADDRESS) == (DROP, kind, None, None)
    assert MSG_IDS[0] in pending  # a bad datagram ends no request


def test_a_body_as_deep_as_msgpacks_stack_is_read(engine_module: ModuleType) -> None:
    engine = engine_module.DatagramEngine({})
    status, _, value, _ = engine.receive(b"\x01" + MSG_IDS[0] + b"\x91" * 1024 + b"\x01", ADDRESS)
    assert status == NOT_PENDING
    depth = 0
    for _ in range(2000):
        if type(value) is not list:
            break
        value, depth = value[0], depth + 1
    assert (depth, value) == (1024, 1)


def test_ext_types_come_as_msgpack_makes_them(engine_module: ModuleType) -> None:
    engine = engine_module.DatagramEngine({})
    value = [msgpack.ExtType(5, b"ab"), msgpack.Timestamp(1, 2), 1.5, -(2**63), 2**64 - 1]
    _, _, got, _ = engine.receive(_response(MSG_IDS[0], value), ADDRESS)
    assert got == value
    _, _, nan, _ = engine.receive(_response(MSG_IDS[0], math.nan), ADDRESS)
    assert math.isnan(nan)


def test_arguments_of_the_wrong_type_are_refused(engine_module: ModuleType) -> None:
    with pytest.raises(InvalidArgumentTypeError, match="pending must be a dict"):
        engine_module.DatagramEngine([])
    engine = engine_module.DatagramEngine({})
    with pytest.raises(InvalidArgumentTypeError, match="datagram must be bytes"):
        engine.receive(bytearray(30), ADDRESS)


@settings(max_examples=300, deadline=None)
@given(_ANSWERS, st.sampled_from(sorted(SHAPES)))
def test_the_twin_judges_shapes_as_the_protocol_does(value: Any, name: str) -> None:
    """CHECKED or BAD_SHAPE as the protocol's own check of that RPC's
    answers says (the shapes the engine checks are the protocol's)."""
    pending = {MSG_IDS[0]: ("query-id", ADDRESS, name, None)}
    engine = _core_py.DatagramEngine(pending, dict(SHAPES))
    status = engine.receive(_response(MSG_IDS[0], value), ADDRESS)[0]
    assert status == (CHECKED if _RESPONSE_SHAPE[name](value) else BAD_SHAPE)


def test_an_answer_of_the_wrong_shape_still_ends_its_request(engine_module: ModuleType) -> None:
    pending = {MSG_IDS[2]: _pending(MSG_IDS[2])}  # find_node: contacts
    engine = engine_module.DatagramEngine(pending, dict(SHAPES))
    bad = [[b"n" * 20, "example.org", 5]]  # a name, not an IP literal
    assert engine.receive(_response(MSG_IDS[2], bad), ADDRESS)[0] == BAD_SHAPE
    assert pending == {}
    pending[MSG_IDS[2]] = _pending(MSG_IDS[2])
    good = [[b"n" * 20, "::1", 5], [b"m" * 20, "10.0.0.1", 65535]]
    assert engine.receive(_response(MSG_IDS[2], good), ADDRESS)[0] == CHECKED


@pytest.mark.parametrize(
    ("entries", "status"),
    [
        # a key repeated: the dict keeps its last value, and so is judged
        ([("records", []), ("records", 5)], BAD_SHAPE),
        ([("records", 5), ("records", [])], CHECKED),
        ([("records", []), ("nodes", [[b"n" * 20, "::1", 5]]), ("nodes", 1)], BAD_SHAPE),
        # the words inside a nested map are not the answer's
        ([("x", {"records": []})], BAD_SHAPE),
        ([("records", []), ("x", {"nodes": 1})], CHECKED),
    ],
)
def test_an_answer_is_judged_on_the_map_as_the_dict_keeps_it(
    engine_module: ModuleType, entries: list[tuple[str, Any]], status: int
) -> None:
    body = bytes([0x80 | len(entries)]) + b"".join(_packed(k) + _packed(v) for k, v in entries)
    pending = {MSG_IDS[0]: _pending(MSG_IDS[0])}  # find_values
    engine = engine_module.DatagramEngine(pending, dict(SHAPES))
    datagram = b"\x01" + MSG_IDS[0] + body
    assert engine.receive(datagram, ADDRESS)[0] == status


def test_an_rpc_the_shapes_do_not_name_is_left_to_the_caller(engine_module: ModuleType) -> None:
    pending = {MSG_IDS[3]: _pending(MSG_IDS[3])}  # "echo"
    engine = engine_module.DatagramEngine(pending, dict(SHAPES))
    assert engine.receive(_response(MSG_IDS[3], "x"), ADDRESS)[0] == ANSWERED


def test_a_shape_code_that_names_no_shape_is_refused(engine_module: ModuleType) -> None:
    pending = {MSG_IDS[0]: _pending(MSG_IDS[0])}
    for code in (6, -1, True, "5"):
        engine = engine_module.DatagramEngine(pending, {"find_values": code})
        with pytest.raises(InvalidArgumentError, match="find_values"):
            engine.receive(_response(MSG_IDS[0], {"records": []}), ADDRESS)
        assert MSG_IDS[0] in pending  # (refused before it changed)
    with pytest.raises(InvalidArgumentTypeError, match="shapes must be a dict"):
        engine_module.DatagramEngine({}, [])


@settings(max_examples=500, deadline=None)
@given(_ANSWERS, st.sampled_from([*sorted(SHAPES), "echo"]))
def test_both_engines_judge_every_answer_alike(value: Any, name: str) -> None:
    rust = require_rust()
    answers = []
    request = ("q", ADDRESS, name, None)
    for module in (rust, _core_py):
        engine = module.DatagramEngine({MSG_IDS[0]: request}, dict(SHAPES))
        answers.append(engine.receive(_response(MSG_IDS[0], value), ADDRESS))
    assert _same(*answers), answers


@settings(max_examples=500, deadline=None)
@given(_HOSTS)
def test_both_engines_read_ip_literals_as_inet_pton_does(host: str) -> None:
    """A contact's host: an IPv4 or IPv6 literal for both engines exactly
    when socket.inet_pton reads it as one."""
    rust = require_rust()
    contact = [[b"n" * 20, host, 4000]]
    expected = CHECKED if shapes.ip_literal(host) else BAD_SHAPE
    for module in (rust, _core_py):
        engine = module.DatagramEngine({MSG_IDS[2]: ("q", ADDRESS, "find_node", None)}, SHAPES)
        assert engine.receive(_response(MSG_IDS[2], contact), ADDRESS)[0] == expected, module


@pytest.mark.parametrize(
    "contact",
    [
        [b"n" * 20, "127.0.0.1", 1],
        [b"n" * 20, "127.0.0.1", 65535],
        [b"n" * 20, "127.0.0.1", 0],
        [b"n" * 20, "127.0.0.1", 65536],
        [b"n" * 20, "127.0.0.1", -1],
        [b"n" * 20, "127.0.0.1", 2**64 - 1],
        [b"n" * 20, "127.0.0.1", True],
        [b"n" * 20, "127.0.0.1", 80.0],
        [b"n", "::1", 80],
        [bytes(64), "::1", 80],
        [bytes(65), "::1", 80],
        [b"", "::1", 80],
        ["n" * 20, "::1", 80],
        [b"n" * 20, b"::1", 80],
        [b"n" * 20, "::1", 80, 1],
        [b"n" * 20, "::1"],
    ],
)
def test_a_contact_is_read_as_the_reference_reads_it(
    engine_module: ModuleType, contact: list[Any]
) -> None:
    """Ports 1 to 65535 (an int, not a bool), ids of 1 to 64 bytes, an IP
    literal str: both engines at each edge."""
    pending = {MSG_IDS[2]: _pending(MSG_IDS[2])}  # find_node
    engine = engine_module.DatagramEngine(pending, dict(SHAPES))
    expected = CHECKED if shapes.contacts([contact]) else BAD_SHAPE
    assert engine.receive(_response(MSG_IDS[2], [contact]), ADDRESS)[0] == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=70), st.text(max_size=3), st.integers(), st.none()),
        min_size=2,
        max_size=2,
    )
)
def test_node_id_pair_is_node_id_of_each(args: list[Any]) -> None:
    """The serving path's one-call check of find_values' two ids reads them
    as node_id does."""
    assert shapes.node_id_pair(args) == (shapes.node_id(args[0]) and shapes.node_id(args[1]))

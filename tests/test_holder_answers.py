"""A holder's ``find_values`` answer read in place by the Rust engine
(``rust/holder.rs``): for a request whose callback is a ``LookupAnswers``
with the native ``RecordCache``, an answer in msgpack's canonical encoding of
``{"records": [...], "nodes": [], "more": False}`` has its records taken from
the cache as bytes, no Python object decoded. Every test feeds the same
datagrams to three engines and compares everything they do: the Rust engine
reading in place, the Rust engine whose answerer's cache is a Python object
with ``take`` (so the body is decoded and read as before), and the
pure-Python twin. Compared: the status, value and rtt returned, what stays
pending, every call back (the lookup's, the handle's, the manager's and
``wall()``'s), the lookup core's counts, the query core's state and the
records offered, the peer book, ``latest``.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.dht.rpc_table import _Pending
from dhtquery.query import Reason, _core_py
from dhtquery.query.shapes import FOUND_VALUE, FOUND_VALUES
from tests.conftest import require_rust, typed_form
from tests.test_lookup_answers import HANDLED, KEY, NOW, WALL, Rig, addr, found, node, wire

CHECKED = 5
KINDS = ("in_place", "decoded", "twin")


class CacheByMethod:
    """A ``RecordCache`` behind Python methods: a ``LookupAnswers`` given it
    reads an answer's records through ``take`` on the decoded value, the
    path every answer took before the engine read holders' answers in
    place."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def take(self, *args: Any) -> Any:
        return self.cache.take(*args)


class Side:
    """One engine and the rig its requests' answerer works on."""

    def __init__(self, kind: str) -> None:
        module: ModuleType = _core_py if kind == "twin" else require_rust()
        self.kind = kind
        rig = self.rig = Rig(module)
        log = rig.calls.log

        def wall() -> float:
            log.append(("wall",))
            return WALL

        rig.cache = module.RecordCache(100, wall)
        cache = CacheByMethod(rig.cache) if kind == "decoded" else rig.cache
        rig.lookup.cache = rig.cache
        rig.answers = module.LookupAnswers(
            rig.lookup,
            rig.core,
            rig.handle,
            KEY,
            rig.latest,
            (rig.queries, lambda: NOW, rig.finish, cache, rig.book),
        )
        self.engine = module.DatagramEngine(
            {},
            # (find_records: an RPC of find_values' shape that is not it)
            {"find_values": FOUND_VALUES, "find_value": FOUND_VALUE, "find_records": FOUND_VALUES},
            requests=(module.QueryCore(), b"pad!", {}, _Pending),
        )
        self.waiting: deque[Any] = deque()
        self.failed: dict[Any, float] = {}
        self.extensions: dict[Any, bool] = {}
        self.engine.dispatch_answers(deque(), self.waiting, self.failed, self.extensions)
        # (the values the cache was given: a record taken in place is keyed
        # by the very signature object kept, a decoded one by a copy)
        self.kept: list[list[Any]] = []
        keep = rig.keep

        def keeping(*values: list[Any]) -> None:
            self.kept.extend(values)
            keep(*values)

        rig.keep = keeping  # type: ignore[method-assign]

    def taken_in_place(self, state: Any) -> list[bool]:
        """For each record ``state`` says was offered: whether its key is a
        signature object the cache was given (the in-place path's mark)."""
        return [any(key is kept[6] for kept in self.kept) for _, _, key in state[3]]

    def ask(
        self, ask: Any, name: str = "find_values", resent: bool = False, known: bool = True
    ) -> bytes:
        """A request to ``ask`` out (the peer ``known`` to answer our RPCs,
        or not heard of): its message id."""
        datagram = self.engine.open(
            1.0,
            NOW,
            0.0,
            ask[1],
            name,
            None,
            self.rig.answers,
            ask,
            b"b",
            NOW + 5.0 if resent else None,
            self.rig.answers.overdue,
        )
        msg_id = datagram[1:21]
        if resent:
            self.engine.pending[msg_id].retry[2] = 2
        if known:
            self.extensions[ask[1]] = True
        return msg_id

    def receive(self, msg_id: bytes, body: bytes, address: Any) -> Any:
        status, first, value, request, rtt = self.engine.receive_at(
            b"\x01" + msg_id + body, address, NOW + 0.01, 0.0, self.rig.book
        )
        if isinstance(value, BaseException):
            value = (type(value), str(value))
        seen = (status, first == msg_id, typed_form(value), request is not None, rtt)
        return seen, self.seen()

    def seen(self) -> Any:
        rig = self.rig
        return (
            typed_form(rig.calls.log),
            rig.counts(),
            rig.queries.state(rig.query_id),
            [(item, peer, key) for item, peer, key, _ in rig.queries.drain(rig.query_id)],
            [rig.book.stats(addr(n)) for n in range(1, 4)],
            sorted(rig.latest.items()),
            len(self.engine.pending),
        )


# -- msgpack packed by hand: canonical, or with a field in a wider form ------


def _str(text: bytes, wide: bool = False) -> bytes:
    size = len(text)
    if size < 32 and not wide:
        return bytes([0xA0 | size]) + text
    if size < 256:
        return b"\xd9" + bytes([size]) + text
    return b"\xda" + struct.pack(">H", size) + text


def _bin(data: bytes, wide: bool = False) -> bytes:
    if len(data) < 256 and not wide:
        return b"\xc4" + bytes([len(data)]) + data
    return b"\xc5" + struct.pack(">H", len(data)) + data


def _uint(value: int, wide: bool = False) -> bytes:
    if value < 128 and not wide:
        return bytes([value])
    if value < 256:
        return b"\xcc" + bytes([value])
    if value < 1 << 16:
        return b"\xcd" + struct.pack(">H", value)
    if value < 1 << 32:
        return b"\xce" + struct.pack(">I", value)
    return b"\xcf" + struct.pack(">Q", value)


def packed_record(fields: list[Any], wide: str = "", name: bytes | None = None) -> bytes:
    """A record's wire array, each field in its shortest form but the one
    named by ``wide``; ``name``: its name's bytes (any, UTF-8 or not)."""
    key, target, text, seq, expires, data, signature = fields
    return b"".join(
        [
            b"\x97",
            _bin(key, wide == "public_key"),
            _bin(target, wide == "target"),
            _str(text.encode() if name is None else name, wide == "name"),
            b"\xd0" + bytes([seq]) if wide == "signed_seq" else _uint(seq, wide == "seq"),
            _uint(expires, wide == "expires"),
            _bin(data, wide == "data"),
            _bin(signature, wide == "signature"),
        ]
    )


def holder_body(
    records: list[bytes],
    *,
    nodes: bytes = b"\x90",
    more: bytes = b"\xc2",
    wide_list: bool = False,
    order: tuple[str, ...] = ("records", "nodes", "more"),
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A find_values answer's body, its records packed already."""
    items = b"\xdc" + struct.pack(">H", len(records)) if wide_list else bytes([0x90 | len(records)])
    values = {"records": items + b"".join(records), "nodes": nodes, "more": more}
    extra = extra or {}
    size = len(order) + len(extra)
    return (
        bytes([0x80 | size])
        + b"".join(_str(key.encode()) + values[key] for key in order)
        + b"".join(msgpack.packb(key) + msgpack.packb(value) for key, value in extra.items())
    )


def canonical(records: list[list[Any]]) -> bytes:
    return holder_body([packed_record(fields) for fields in records])


def test_the_canonical_encoding_is_msgpacks() -> None:
    records = [wire(1), wire(2, seq=200, expires=70_000), wire(3, expires=1 << 40)]
    assert canonical(records) == msgpack.packb(found(records), use_bin_type=True)


# -- the same datagram to the three engines -----------------------------------


def _compare(
    prepare: Callable[[Side], None],
    body: bytes,
    name: str = "find_values",
    resent: bool = False,
    known: bool = True,
    in_place: bool | None = None,
) -> list[Any]:
    """``body`` answered to a request of each side (``prepare``d first):
    what each did, asserted equal; returns the in-place side's. The
    decoding engine and the twin never key a record by the object kept;
    ``in_place`` True: the in-place engine offered records and took every
    one in place; False: none (None: not asserted)."""
    seen, taken = [], []
    for kind in KINDS:
        side = Side(kind)
        ask = side.rig.start(1, 2, 3)[0]
        prepare(side)
        msg_id = side.ask(ask, name, resent, known)
        seen.append(side.receive(msg_id, body, ask[1]))
        taken.append(side.taken_in_place(seen[-1][1]))
    assert seen[0] == seen[2], "in place against the twin"
    assert seen[1] == seen[2], "decoded against the twin"
    assert not any(taken[1]) and not any(taken[2]), "a copy decoded"
    if in_place is not None:
        assert taken[0] and all(taken[0]) if in_place else not any(taken[0]), taken[0]
    return seen[0]  # type: ignore[no-any-return]


def _keep(*values: list[Any]) -> Callable[[Side], None]:
    def prepare(side: Side) -> None:
        side.rig.keep(*values)

    return prepare


def test_a_holders_answer_is_handled_with_its_records_taken_as_bytes() -> None:
    (status, *_), (log, *_rest) = _compare(_keep(wire(1)), canonical([wire(1)]), in_place=True)
    assert status == HANDLED
    assert log == typed_form([("wake",)])


def test_a_record_taken_in_place_is_keyed_by_the_signature_kept() -> None:
    # (what shows that the body was not decoded: the dedup key offered is
    # the very bytes the cache was given, not a copy read off the wire)
    signature = wire(1)[6]
    for kind in KINDS:
        side = Side(kind)
        ask = side.rig.start(1, 2, 3)[0]
        side.rig.cache.put([*wire(1)[:6], signature], "record")
        _, state = side.receive(side.ask(ask), canonical([wire(1)]), ask[1])
        [(_, _, key)] = state[3]  # (the records offered, drained)
        assert key == signature
        assert (key is signature) == (kind == "in_place"), kind


def test_a_signature_kept_of_a_bytes_subclass_keys_its_record_as_bytes() -> None:
    class Signature(bytes):
        pass

    for kind in KINDS:
        side = Side(kind)
        ask = side.rig.start(1, 2, 3)[0]
        side.rig.cache.put([*wire(1)[:6], Signature(wire(1)[6])], "record")
        _, state = side.receive(side.ask(ask), canonical([wire(1)]), ask[1])
        [(_, _, key)] = state[3]
        assert type(key) is bytes and key == wire(1)[6]


def _one_byte_off(field: int, value: list[Any] | None = None) -> list[Any]:
    """``value`` (``wire(1)``) with field ``field`` off by one bit."""
    value = list(wire(1) if value is None else value)
    old = value[field]
    if isinstance(old, bytes):
        value[field] = old[:-1] + bytes([old[-1] ^ 1])
    elif isinstance(old, str):
        value[field] = old[:-1] + chr(ord(old[-1]) ^ 1)
    else:
        value[field] = old ^ 1
    return value


@pytest.mark.parametrize(
    "field",
    range(7),
    ids=["public_key", "target", "name", "seq", "expires", "data", "signature"],
)
def test_a_record_a_byte_off_the_one_kept_goes_to_the_lookup(field: int) -> None:
    (status, *_), (log, *_rest) = _compare(_keep(wire(1)), canonical([_one_byte_off(field)]))
    assert status == HANDLED
    assert log[1][0][1][0] == "_answered"


def _latest(slot: int, seen: Any) -> Callable[[Side], None]:
    def prepare(side: Side) -> None:
        side.rig.keep(wire(1), wire(2), wire(1, seq=2))
        side.rig.latest[(wire(slot)[0], f"pkg{slot}")] = seen

    return prepare


ANOTHER = b"\x01" * 20


@pytest.mark.parametrize(
    ("prepare", "records"),
    [
        (_keep(wire(1, expires=int(WALL))), [wire(1, expires=int(WALL))]),
        (_keep(wire(1, expires=int(WALL) + 1)), [wire(1, expires=int(WALL) + 1)]),
        (_keep(wire(1, target=ANOTHER)), [wire(1, target=ANOTHER)]),
        (_latest(1, (2, addr(9))), [wire(1)]),
        (_latest(1, (1, addr(9))), [wire(1)]),
        (_latest(1, [1, addr(9)]), [wire(1)]),
        (_latest(1, (1,)), [wire(1)]),
        (_latest(2, (1, addr(9))), [wire(1), wire(2)]),
        (_keep(wire(1)), [wire(1), wire(2)]),
        (_keep(wire(1), wire(1, seq=2)), [wire(1), wire(1, seq=2)]),
        (_keep(wire(1), wire(2)), [wire(1), wire(2), wire(1)]),
        (_keep(), []),
    ],
    ids=[
        "expired",
        "not-expired",
        "another-target",
        "latest-another-seq",
        "latest-this-seq",
        "latest-not-a-tuple",
        "latest-short",
        "second-latest-another-seq",
        "second-not-kept",
        "one-slot-two-seqs",
        "three-one-twice",
        "no-records",
    ],
)
def test_takes_rules_hold_for_an_answer_read_in_place(
    prepare: Callable[[Side], None], records: list[list[Any]]
) -> None:
    (status, *_), _ = _compare(prepare, canonical(records))
    assert status == HANDLED


NINE = [node(9), "10.0.0.9", 9]
RECORD = packed_record(wire(1))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (holder_body([packed_record(wire(1), wide="name")]), HANDLED),
        (holder_body([packed_record(wire(1), wide="public_key")]), HANDLED),
        (holder_body([packed_record(wire(1), wide="seq")]), HANDLED),
        (holder_body([packed_record(wire(1), wide="signed_seq")]), HANDLED),
        (holder_body([packed_record(wire(1), wide="expires")]), HANDLED),
        (holder_body([RECORD], wide_list=True), HANDLED),
        (holder_body([RECORD], order=("nodes", "records", "more")), HANDLED),
        (holder_body([RECORD], extra={"extra": 1}), HANDLED),
        (holder_body([RECORD], order=("records", "more")), HANDLED),
        (holder_body([RECORD], order=("records", "nodes")), HANDLED),
        (holder_body([RECORD], more=b"\xc3"), HANDLED),
        (holder_body([RECORD], nodes=msgpack.packb([NINE])), HANDLED),
        (holder_body([RECORD], nodes=msgpack.packb([[b"", "h", 0]])), 6),
        (holder_body([RECORD], nodes=b"\xc0"), 6),
        (holder_body([RECORD[:-1] + b"\x00"]), HANDLED),
        (holder_body([b"\x96" + RECORD[1:-66]]), HANDLED),
        (holder_body([packed_record(wire(1), name=b"pkg\xff")]), 0),
        (canonical([wire(1)])[:-1], 0),
        (canonical([wire(1)]) + b"\x00", 0),
        (canonical([wire(1)])[:40], 0),
        (msgpack.packb({"records": {}, "nodes": []}), 6),
        (msgpack.packb([1, 2]), 6),
    ],
    ids=[
        "str8-name",
        "bin16-key",
        "uint8-seq",
        "int8-seq",
        "uint16-expires",
        "array16-records",
        "keys-reordered",
        "extra-key",
        "no-nodes",
        "no-more",
        "more-true",
        "nodes",
        "bad-nodes",
        "nil-nodes",
        "signature-off",
        "record-of-six",
        "bad-utf8",
        "truncated",
        "trailing-byte",
        "cut-short",
        "records-a-map",
        "a-list",
    ],
)
def test_any_other_encoding_or_shape_gives_what_decoding_it_gives(body: bytes, status: int) -> None:
    # (decoded: no record taken in place)
    (got, *_), _ = _compare(_keep(wire(1)), body, in_place=False)
    assert got == status


@pytest.mark.parametrize(
    ("why", "status"),
    [
        ("waiting", CHECKED),
        ("failed", CHECKED),
        ("unknown", CHECKED),
        ("resent", CHECKED),
        # (handed to the lookup's _answered, decoded)
        ("find_records", HANDLED),
        ("ended", HANDLED),
        # (another shape: judged on the decoded value)
        ("find_value", 6),
    ],
)
def test_an_answer_the_engine_does_not_take_in_place_is_decoded_as_before(
    why: str, status: int
) -> None:
    def prepare(side: Side) -> None:
        side.rig.keep(wire(1))
        if why == "waiting":
            side.waiting.append("a request")
        elif why == "failed":
            side.failed[addr(9)] = 1.0
        elif why == "ended":
            side.rig.finish(side.rig.query_id, Reason.ADAPTIVE)

    body = canonical([wire(1)])
    name = why if why.startswith("find_") else "find_values"
    # ("unknown": the peer not known to answer our RPCs)
    result = _compare(prepare, body, name, why == "resent", why != "unknown", in_place=False)[0]
    assert result[0] == status
    if status != HANDLED:
        assert result[2] == typed_form(found([wire(1)]))


def test_an_answer_from_another_address_or_after_its_request_is_decoded() -> None:
    body = canonical([wire(1)])
    seen = []
    for kind in KINDS:
        side = Side(kind)
        side.rig.keep(wire(1))
        ask = side.rig.start(1, 2, 3)[0]
        msg_id = side.ask(ask)
        wrong = side.receive(msg_id, body, addr(9))
        right = side.receive(msg_id, body, ask[1])
        late = side.receive(msg_id, body, ask[1])
        seen.append((wrong, right, late))
    assert seen[0] == seen[1] == seen[2]
    wrong, right, late = seen[0]
    assert (wrong[0][0], right[0][0], late[0][0]) == (3, HANDLED, 4)
    assert late[0][2] == typed_form(found([wire(1)]))


# -- both paths, the same random answers ----------------------------------------


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, list[list[Any]]]:
    """A find_values body: records kept or a field off, canonical mostly."""
    records = []
    for n, seq, off, expires in draw(
        st.lists(
            st.tuples(
                st.integers(1, 4),
                st.sampled_from([1, 1, 2, 200]),
                st.sampled_from([None] * 5 + list(range(7))),
                st.sampled_from([0, 0, int(WALL) - 1, int(WALL), 1 << 33]),
            ),
            max_size=4,
        )
    ):
        value = wire(n, seq=seq, expires=expires)
        records.append(value if off is None else _one_byte_off(off, value))
    wide = draw(st.sampled_from([""] * 8 + ["name", "seq", "signed_seq", "data"]))
    packed = [packed_record(fields, wide=wide) for fields in records]
    body = draw(
        st.sampled_from(
            [
                holder_body(packed),
                holder_body(packed),
                holder_body(packed),
                holder_body(packed, nodes=msgpack.packb([NINE])),
                holder_body(packed, more=b"\xc3"),
                holder_body(packed, order=("more", "nodes", "records")),
                holder_body(packed)[:-1],
            ]
        )
    )
    return body, records


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_both_paths_and_the_twin_do_the_same_with_random_answers(data: st.DataObject) -> None:
    kept = data.draw(
        st.lists(
            st.tuples(
                st.integers(1, 4),
                st.sampled_from([1, 2, 200]),
                st.sampled_from([0, int(WALL) - 1, 1 << 33]),
            ),
            max_size=6,
        ),
        label="kept",
    )
    sides = [Side(kind) for kind in KINDS]
    asks = [side.rig.start(1, 2, 3) for side in sides]
    for side in sides:
        side.rig.keep(*(wire(n, seq=seq, expires=expires) for n, seq, expires in kept))
    for index in range(data.draw(st.integers(1, 3), label="answers")):
        body, _ = data.draw(answers(), label="answer")
        seen = []
        for side, side_asks in zip(sides, asks, strict=True):
            ask = side_asks[index]
            seen.append(side.receive(side.ask(ask), body, ask[1]))
            side.rig.calls.log.clear()
        assert seen[0] == seen[2]
        assert seen[1] == seen[2]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.integers(1, 2),
    edit=st.sampled_from(["flip", "insert", "delete"]),
    at=st.integers(0, 10_000),
    byte=st.integers(0, 255),
)
def test_a_canonical_answer_with_any_byte_changed_is_read_alike_by_all_three(
    records: int, edit: str, at: int, byte: int
) -> None:
    # (a hostile or damaged body: whatever the in-place reader makes of it,
    # the decoding engine and the twin make the same; nothing panics)
    values = [wire(n) for n in range(1, records + 1)]
    body = bytearray(canonical(values))
    where = at % (len(body) + (1 if edit == "insert" else 0))
    if edit == "flip":
        body[where] = byte if body[where] != byte else byte ^ 0xFF
    elif edit == "insert":
        body.insert(where, byte)
    else:
        del body[where]
    _compare(_keep(*values), bytes(body))

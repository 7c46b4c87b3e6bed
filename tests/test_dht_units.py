"""Unit tests of the DHT layer's parts: wire codec (byte-compatible with
rpcudp's umsgpack), records, storage caps and TTL, RTT estimator,
reputation score."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import sys
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import hypothesis.strategies as st
import pytest
import umsgpack
from hypothesis import given, settings
from kademlia.node import Node

from dhtquery.dht import (
    DhtNode,
    PeerStats,
    Record,
    RecordError,
    Reputation,
    RttEstimator,
    StorageFull,
)
from dhtquery.dht.lookup import LookupHandle
from dhtquery.dht.records import MAX_DATA, latest
from dhtquery.dht.routing import ContactTable
from dhtquery.dht.rpc_table import RpcTable
from dhtquery.dht.storage import PlainStorage, RecordStore, StoreLimits
from dhtquery.dht.wire import (
    MAX_DATAGRAM,
    MAX_REQUEST_BODY,
    REQUEST,
    RESPONSE,
    WireError,
    decode,
    encode_request,
    encode_response,
    frame_request,
    new_message_id,
    pack_request,
)
from dhtquery.query import ExpiryTimer, QueryHandle, QueryManager, _core_py, new_core
from dhtquery.testing import FakeClock

from .dht_helpers import answer, open_ping, publisher_named, signed

MSG_ID = bytes(range(20))
KEY = hashlib.sha1(b"a key").digest()

# ---------------------------------------------------------------- wire

REQUESTS: list[tuple[str, tuple[Any, ...]]] = [
    ("ping", (b"\x01" * 20,)),
    ("store", (b"\x02" * 20, KEY, "a str value é")),
    ("store", (b"\x02" * 20, KEY, b"\x00\xff bytes")),
    ("store", (b"\x02" * 20, KEY, 2**40)),
    ("store", (b"\x02" * 20, KEY, -17)),
    ("store", (b"\x02" * 20, KEY, 1.25)),
    ("store", (b"\x02" * 20, KEY, True)),
    ("find_node", (b"\x03" * 20, KEY)),
    ("store_record", (b"\x04" * 20, KEY, [KEY, KEY, "", 1, 0, b"d" * 300, KEY])),
    ("stun", ()),
]
RESPONSES: list[Any] = [
    b"\x01" * 20,
    True,
    None,
    ["127.0.0.1", 4000],
    [[b"\x05" * 20, "127.0.0.1", 4000], [b"\x06" * 20, "10.0.0.1", 65535]],
    {"value": "found"},
    {"records": [[b"x", b"y", KEY]], "nodes": []},
    "x" * 60_000,
]


@pytest.mark.parametrize(("name", "args"), REQUESTS)
def test_encode_request_is_byte_compatible_with_umsgpack(name: str, args: tuple[Any, ...]) -> None:
    datagram = encode_request(MSG_ID, name, args)
    assert datagram[0] == REQUEST
    assert datagram[1:21] == MSG_ID
    # exactly what rpcudp writes: umsgpack.packb([name, args])
    assert datagram[21:] == umsgpack.packb([name, args])


@pytest.mark.parametrize("value", RESPONSES[:-1])
def test_encode_response_is_byte_compatible_with_umsgpack(value: Any) -> None:
    datagram = encode_response(MSG_ID, value)
    assert datagram[:21] == b"\x01" + MSG_ID
    assert datagram[21:] == umsgpack.packb(value)


@pytest.mark.parametrize(("name", "args"), REQUESTS)
def test_decode_reads_umsgpack_requests(name: str, args: tuple[Any, ...]) -> None:
    frame = decode(b"\x00" + MSG_ID + umsgpack.packb([name, args]))
    assert frame.kind == REQUEST
    assert frame.msg_id == MSG_ID
    # arrays come back as lists, str as str and bytes as bytes
    assert frame.body == [name, list(args)]
    assert [type(arg) for arg in frame.body[1]] == [type(arg) for arg in args]


@pytest.mark.parametrize("value", RESPONSES[:-1])
def test_decode_reads_umsgpack_responses(value: Any) -> None:
    frame = decode(b"\x01" + MSG_ID + umsgpack.packb(value))
    assert frame.kind == RESPONSE
    assert frame.body == value


def test_response_bodies_may_exceed_the_request_limit() -> None:
    value = RESPONSES[-1]
    assert decode(encode_response(MSG_ID, value)).body == value


def test_new_message_ids_are_20_random_bytes() -> None:
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert {len(msg_id) for msg_id in ids} == {20}


def _request(body: bytes) -> bytes:
    return b"\x00" + MSG_ID + body


DECODE_ERRORS: list[tuple[str, bytes]] = [
    ("short", b""),
    ("short", b"\x00"),
    ("short", b"\x00" + MSG_ID),  # header only: no body
    ("bad_kind", b"\x02" + MSG_ID + b"\xc0"),
    ("bad_kind", b"\xff" + MSG_ID + b"\xc0"),
    ("oversize_request", _request(b"\xc4" * (MAX_REQUEST_BODY + 1))),
    ("bad_utf8", _request(b"\x92\xa2\xff\xfe\x90")),
    ("malformed", _request(b"\xc1")),  # a byte msgpack never uses
    ("malformed", _request(b"\x92\xa4ping")),  # truncated
    ("malformed", _request(umsgpack.packb(["ping", []]) + b"junk")),  # trailing garbage
    ("malformed", _request(b"\x91" * 5000 + b"\xc0")),  # nested too deep
    ("malformed", _request(b"\x81\x91\x01\x02")),  # a map keyed by an array
    ("malformed", _request(b"\xdd\xff\xff\xff\xff")),  # array longer than the datagram
    ("malformed", b"\x01" + MSG_ID + b"\xc1"),
]


@pytest.mark.parametrize(("kind", "datagram"), DECODE_ERRORS)
def test_decode_errors_name_their_kind(kind: str, datagram: bytes) -> None:
    with pytest.raises(WireError) as caught:
        decode(datagram)
    assert caught.value.kind == kind
    assert isinstance(caught.value, ValueError)


def test_request_body_limit_is_inclusive() -> None:
    payload = MAX_REQUEST_BODY - 10  # ["ping", [bin16]]: 10 bytes of headers
    exact = b"\x92\xa4ping\x91\xc5" + payload.to_bytes(2, "big") + b"x" * payload
    assert len(exact) == MAX_REQUEST_BODY
    assert decode(_request(exact)).body == ["ping", [b"x" * payload]]
    with pytest.raises(WireError) as caught:
        decode(_request(exact + b"x"))
    assert caught.value.kind == "oversize_request"
    with pytest.raises(WireError) as caught:
        encode_request(MSG_ID, "ping", [b"x" * MAX_REQUEST_BODY])
    assert caught.value.kind == "oversize_request"


def test_encode_response_refuses_more_than_one_datagram() -> None:
    with pytest.raises(WireError) as caught:
        encode_response(MSG_ID, b"x" * MAX_DATAGRAM)
    assert caught.value.kind == "oversize_response"


# ---------------------------------------------------------------- records


def test_record_create_signs_and_round_trips_the_wire() -> None:
    record = signed("alice", b"payload", KEY)
    assert record.signed and record.publisher == publisher_named("alice").key_id
    assert record.signature_valid()
    assert Record.from_wire(record.to_wire()) == record
    # through msgpack as rpcudp would carry it
    assert Record.from_wire(umsgpack.unpackb(umsgpack.packb(record.to_wire()))) == record
    assert record.dedup_key == signed("alice", b"payload", KEY).dedup_key
    assert record.dedup_key != signed("bob", b"payload", KEY).dedup_key


@pytest.mark.parametrize(
    ("target", "data", "name", "field"),
    [
        (b"", b"x", "", "target"),
        (b"t" * 65, b"x", "", "target"),
        (KEY, "not bytes", "", "data"),
        (KEY, b"x" * (MAX_DATA + 1), "", "data"),
        (KEY, b"x", "n" * 161, "name"),
    ],
)
def test_record_create_errors_name_the_field(target: Any, data: Any, name: str, field: str) -> None:
    with pytest.raises(RecordError, match=field):
        Record.create(publisher_named("alice"), target, data, name=name)


def test_record_from_wire_errors_name_the_field() -> None:
    wire = signed("alice", b"payload", KEY).to_wire()

    def changed(index: int, value: Any) -> list[Any]:
        return [value if i == index else field for i, field in enumerate(wire)]

    with pytest.raises(RecordError, match="array"):
        Record.from_wire(dict(enumerate(wire)))
    with pytest.raises(RecordError, match="7 fields"):
        Record.from_wire(wire[:5])
    with pytest.raises(RecordError, match="public key"):
        Record.from_wire(changed(0, b"short"))
    with pytest.raises(RecordError, match="data"):
        Record.from_wire(changed(5, "str, not bytes"))
    with pytest.raises(RecordError, match="seq"):
        Record.from_wire(changed(3, -1))
    with pytest.raises(RecordError, match="unsigned") as unsigned:
        Record.from_wire(changed(6, b""))
    assert unsigned.value.kind == "bad_signature"


# ---------------------------------------------------------------- RecordStore


def _records(count: int, size: int = 10, key: bytes = KEY) -> list[Record]:
    return [signed(f"pub{i}", bytes([i % 256]) * size, key) for i in range(count)]


def test_record_store_caps_records_per_key_and_keeps_what_it_held() -> None:
    store = RecordStore(StoreLimits(records_per_key=2))
    first, second, third = _records(3)
    store.put(KEY, first, 0.0)
    store.put(KEY, second, 0.0)
    used = store.bytes_used
    with pytest.raises(StorageFull, match="2 records"):
        store.put(KEY, third, 0.0)
    assert store.get(KEY, 1.0) == [first, second]
    assert store.bytes_used == used
    # replacing a publisher's own record is no growth in count: accepted
    newer = signed("pub0", b"newer data", KEY, seq=2)
    store.put(KEY, newer, 0.0)
    assert store.get(KEY, 1.0) == [newer, second]


def test_record_store_caps_keys_and_keeps_what_it_held() -> None:
    store = RecordStore(StoreLimits(keys=1))
    (first,) = _records(1)
    (second,) = _records(1, key=b"\x01" * 20)
    store.put(KEY, first, 0.0)
    with pytest.raises(StorageFull, match="1 keys"):
        store.put(b"\x01" * 20, second, 0.0)
    assert store.key_count() == 1
    assert store.get(KEY, 1.0) == [first]
    assert store.get(b"\x01" * 20, 1.0) == []


def test_record_store_caps_bytes_and_keeps_what_it_held() -> None:
    first, second = _records(2, size=100)
    probe = RecordStore()
    probe.put(KEY, first, 0.0)
    store = RecordStore(StoreLimits(bytes=probe.bytes_used))
    store.put(KEY, first, 0.0)
    with pytest.raises(StorageFull, match="bytes"):
        store.put(KEY, second, 0.0)
    assert store.get(KEY, 1.0) == [first]
    assert store.bytes_used == probe.bytes_used
    assert len(store) == 1


def test_record_store_names_the_cap_that_refuses_any_record_of_a_key() -> None:
    (first,) = _records(1)
    store = RecordStore(StoreLimits(keys=1))
    assert store.refusal(KEY) is None
    store.put(KEY, first, 0.0)
    assert store.refusal(KEY) is None  # held: a record may replace its slot's
    full = store.refusal(b"\x01" * 20)
    assert isinstance(full, StorageFull) and "1 keys" in str(full)
    nothing = RecordStore(StoreLimits(bytes=1))
    full = nothing.refusal(KEY)
    assert isinstance(full, StorageFull) and "1 bytes" in str(full)
    with pytest.raises(StorageFull, match="1 bytes"):  # as put would say
        nothing.put(KEY, first, 0.0)


def test_a_store_that_cannot_take_a_record_refuses_it_before_verifying(backend: str) -> None:
    """A record sent to a node whose store is full (here a client's, which
    keeps nothing) is refused and counted as store_refused without its
    signature being verified: a flood of stores costs no Ed25519 work."""

    async def scenario() -> tuple[bool, int, int, int]:
        node = DhtNode(queries=QueryManager(core=new_core(backend)), limits=StoreLimits(bytes=1))
        protocol = node._create_protocol()
        record = signed("alice", b"data", KEY)
        stored = protocol.rpc_store_record(("127.0.0.1", 1), b"\x02" * 20, KEY, record.to_wire())
        return stored, protocol.stats["store_refused"], node.verifier.verified, len(protocol.drops)

    stored, refused, verified, drops = asyncio.run(scenario())
    assert not stored
    assert refused == 1
    assert verified == 0
    assert drops == 0


def test_record_store_refuses_a_bad_record() -> None:
    store = RecordStore()
    with pytest.raises(RecordError):
        store.put(KEY, dataclasses.replace(signed("alice", b"data", KEY), data=b"forged"), 0.0)
    assert len(store) == 0 and store.bytes_used == 0


def test_record_store_ttl_expiry() -> None:
    store = RecordStore(StoreLimits(ttl=10.0))
    first, second = _records(2)
    store.put(KEY, first, 100.0)
    store.put(KEY, second, 105.0)
    assert store.get(KEY, 109.9) == [first, second]
    assert store.get(KEY, 110.0) == [second]  # first expired at 110
    assert store.expire(115.0) == 1
    assert len(store) == 0 and store.key_count() == 0 and store.bytes_used == 0
    assert store.get(KEY, 115.0) == []


def test_record_store_holds_says_whether_any_record_of_a_key_is_kept() -> None:
    """``holds`` (what get_all asks before ``get``) is true while a key has
    records, expired ones too, and false once ``get`` or ``expire`` has
    dropped the last."""
    store = RecordStore(StoreLimits(ttl=10.0))
    (record,) = _records(1)
    assert not store.holds(KEY)
    store.put(KEY, record, 100.0)
    assert store.holds(KEY)
    assert store.holds(KEY) and store.get(KEY, 110.0) == []  # expired: get drops it
    assert not store.holds(KEY)
    store.put(KEY, record, 200.0)
    assert store.expire(300.0) == 1 and not store.holds(KEY)


def test_latest_keeps_each_slots_highest_sequence_and_every_plain_value() -> None:
    old = signed("publisher", b"old", "key", seq=1)
    new = signed("publisher", b"new", "key", seq=2)
    other = signed("other", b"other", "key", seq=1)
    plain, plain_again = Record.plain(b"plain"), Record.plain(b"plain")
    another_plain = Record.plain(b"another")
    records = [old, other, plain, new, plain_again, another_plain]
    assert latest(records) == [new, other, plain, another_plain]
    assert latest(iter([new, old])) == [new]


def test_record_store_never_returns_a_record_whose_hash_no_longer_matches() -> None:
    store = RecordStore()
    good, tampered = _records(2)
    store.put(KEY, good, 0.0)
    store.put(KEY, tampered, 0.0)
    # the held copy is altered in place (memory corruption, a bug elsewhere)
    object.__setattr__(tampered, "data", b"altered after the check")
    assert store.get(KEY, 1.0) == [good]
    assert len(store) == 1
    assert [record for _, record in store.items()] == [good]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"records_per_key": 0}, "records_per_key"),
        ({"records_per_key": 10_000}, "records_per_key"),
        ({"keys": 0}, "keys"),
        ({"bytes": 0}, "bytes"),
        ({"ttl": 0.0}, "ttl"),
    ],
)
def test_store_limits_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        StoreLimits(**kwargs)


# ---------------------------------------------------------------- PlainStorage


def test_plain_storage_caps_keys_and_keeps_what_it_held() -> None:
    storage = PlainStorage(StoreLimits(keys=2))
    storage[b"a" * 20] = "one"
    storage[b"b" * 20] = "two"
    with pytest.raises(StorageFull, match="2 values"):
        storage[b"c" * 20] = "three"
    assert storage.get(b"a" * 20) == "one" and storage.get(b"b" * 20) == "two"
    assert b"c" * 20 not in storage and len(storage) == 2
    storage[b"a" * 20] = "replaced"  # an existing key is no new key
    assert storage[b"a" * 20] == "replaced"


def test_plain_storage_caps_bytes_and_keeps_what_it_held() -> None:
    memory = PlainStorage._size(b"")  # what a value costs beyond its length
    storage = PlainStorage(StoreLimits(bytes=2 * memory + 10))
    storage[b"a" * 20] = b"12345678"
    with pytest.raises(StorageFull, match=f"{2 * memory + 10} bytes"):
        storage[b"b" * 20] = b"123"
    with pytest.raises(StorageFull, match=f"{2 * memory + 10} bytes"):
        storage[b"a" * 20] = b"x" * (memory + 11)  # growing the held value too
    assert storage.get(b"a" * 20) == b"12345678"
    assert storage.get(b"b" * 20) is None
    storage[b"b" * 20] = b"12"
    assert sorted(storage) == [(b"a" * 20, b"12345678"), (b"b" * 20, b"12")]


def test_plain_storage_ttl_culls_and_frees_room() -> None:
    clock = FakeClock()
    storage = PlainStorage(StoreLimits(keys=1, ttl=10.0), clock)
    storage[b"a" * 20] = "old"
    assert list(storage.iter_older_than(3600)) == []
    clock.advance(9.0)
    with pytest.raises(StorageFull):  # full, and what it holds is within its TTL
        storage[b"c" * 20] = "refused"
    clock.advance(2.0)
    assert [key for key, _ in storage.iter_older_than(10.0)] == [b"a" * 20]
    # full, but what it holds is past its TTL: culled to make room
    storage[b"b" * 20] = "new"
    assert storage.get(b"a" * 20) is None
    assert storage[b"b" * 20] == "new" and len(storage) == 1


def test_store_limits_apply_to_a_nodes_plain_kademlia_values() -> None:
    # kademlia's Server does `storage or ForgetfulStorage()`: an empty
    # PlainStorage is falsy, and used to be replaced by an uncapped store.
    node = DhtNode(limits=StoreLimits(keys=2))
    assert isinstance(node.storage, PlainStorage)
    for index in range(2):
        node.storage[bytes([index]) * 20] = f"value {index}"
    for index in range(2, 5):
        with pytest.raises(StorageFull, match="limit of 2"):
            node.storage[bytes([index]) * 20] = f"value {index}"
    assert len(node.storage) == 2
    assert node.storage.get(b"\x00" * 20) == "value 0"


def test_a_storage_given_to_a_node_is_the_one_it_uses_even_when_empty() -> None:
    storage = PlainStorage(StoreLimits(keys=1))
    assert not storage  # empty: falsy, which kademlia's Server mistook for "none given"
    assert DhtNode(storage=storage).storage is storage


def test_record_store_counts_the_memory_records_take() -> None:
    # The cap bounds real memory: what the store counts is within 25 % of
    # what tracemalloc sees its records, keys and their objects take.
    store = RecordStore(StoreLimits(keys=10**6, bytes=10**9))
    publisher = publisher_named("memory")
    items = [
        (key, Record.create(publisher, key, data, name=f"{per_key}-{index}"))
        for per_key, data in ((1, b"x" * 8), (10, b"y" * 300))
        for index in range(5_000)
        for key in [hashlib.sha1(str(index // per_key).encode()).digest()]
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, record in items:
            store.put(key, record, 0.0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    own = sum(
        sum(map(sys.getsizeof, (record, record.data, record.signature, record.name, record.target)))
        for _, record in items
    ) + sum(sys.getsizeof(key) for key in {key for key, _ in items})
    real = grown + own
    assert 0.8 <= store.bytes_used / real <= 1.25, (store.bytes_used, real)


# ---------------------------------------------------------------- RTT


def test_rtt_initial_rto_is_one_second() -> None:
    assert RttEstimator().rto == 1.0
    assert RttEstimator(max_rto=0.5).rto == 0.5  # clamped


def test_rtt_first_sample_and_updates_follow_rfc_6298() -> None:
    rtt = RttEstimator()
    rtt.observe(0.1)
    assert rtt.srtt == pytest.approx(0.1)
    assert rtt.rttvar == pytest.approx(0.05)
    assert rtt.rto == pytest.approx(0.1 + 4 * 0.05)
    rtt.observe(0.2)
    # RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2|; SRTT = 7/8 * 0.1 + 1/8 * 0.2
    assert rtt.rttvar == pytest.approx(0.0625)
    assert rtt.srtt == pytest.approx(0.1125)
    assert rtt.rto == pytest.approx(0.1125 + 4 * 0.0625)


def test_rtt_rto_is_clamped() -> None:
    fast = RttEstimator(min_rto=0.05, max_rto=10.0)
    fast.observe(0.001)
    assert fast.rto == 0.05
    slow = RttEstimator(min_rto=0.05, max_rto=2.0)
    slow.observe(5.0)
    assert slow.rto == 2.0


def test_rtt_backoff_doubles_until_a_sample() -> None:
    rtt = RttEstimator(max_rto=10.0)
    rtt.observe(0.1)
    base = rtt.rto
    rtt.timed_out()
    assert rtt.rto == pytest.approx(2 * base)
    rtt.timed_out()
    assert rtt.rto == pytest.approx(4 * base)
    for _ in range(40):
        rtt.timed_out()
    assert rtt.rto == 10.0  # clamped, and the backoff is bounded
    rtt.observe(0.1)
    assert rtt.rto < 2 * base  # a sample ends the backoff


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=30.0),
            st.just("timeout"),
        ),
        max_size=12,
    ),
    min_rto=st.sampled_from([0.001, 0.05, 0.2]),
    max_rto=st.sampled_from([0.2, 1.0, 10.0]),
)
def test_rtt_observe_leaves_the_rto_update_would(
    steps: list[float | str], min_rto: float, max_rto: float
) -> None:
    # observe works its RTO out inline (it runs for every answer): after any
    # mix of samples and timeouts it must leave what _update computes.
    rtt = RttEstimator(min_rto=min_rto, max_rto=max_rto)
    for step in steps:
        if step == "timeout":
            rtt.timed_out()
            continue
        assert isinstance(step, float)
        rtt.observe(step)
        inline = (rtt.rto, rtt.base_rto)
        rtt._update()
        assert (rtt.rto, rtt.base_rto) == inline


def test_rtt_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sample"):
        RttEstimator().observe(-0.001)
    with pytest.raises(ValueError, match="min_rto"):
        RttEstimator(min_rto=2.0, max_rto=1.0)
    with pytest.raises(ValueError, match="min_rto"):
        RttEstimator(min_rto=0.0)


# ---------------------------------------------------------------- reputation

NOW = 1_000_000.0


def test_score_of_a_never_tried_peer() -> None:
    # success rate 1.0, no RTT (full marks), nothing provided, never seen
    assert Reputation().score("peer", NOW) == pytest.approx(0.5 + 0.25)
    assert PeerStats().score(NOW) == pytest.approx(0.75)


def test_score_formula() -> None:
    reputation = Reputation()
    reputation.success("p", 0.1, NOW)  # 100 ms: 1000/101 > 1, full marks
    assert reputation.score("p", NOW) == pytest.approx(0.5 + 0.25 + 0.0 + 0.10)
    reputation.failure("p")  # success rate 1/2
    assert reputation.score("p", NOW) == pytest.approx(0.25 + 0.25 + 0.10)
    reputation.provided("p", 5)
    assert reputation.score("p", NOW) == pytest.approx(0.25 + 0.25 + 0.075 + 0.10)
    reputation.provided("p", 20)  # capped at 10 records
    assert reputation.score("p", NOW) == pytest.approx(0.25 + 0.25 + 0.15 + 0.10)
    # last seen an hour ago: 1 / (1 + 1)
    assert reputation.score("p", NOW + 3600) == pytest.approx(0.25 + 0.25 + 0.15 + 0.05)


def test_rtt_is_an_ewma_and_scores_slow_peers_lower() -> None:
    reputation = Reputation()
    reputation.success("p", 1.0, NOW)
    reputation.success("p", 4.0, NOW)
    stats = reputation.stats("p")
    assert stats.rtt_ms == pytest.approx(0.7 * 1000 + 0.3 * 4000)
    assert stats.successes == 2 and stats.last_seen == NOW
    rtt_part = 1000 / (1900 + 1)
    assert reputation.score("p", NOW) == pytest.approx(0.5 + 0.25 * rtt_part + 0.10)


def test_an_answer_of_unknown_rtt_counts_without_moving_the_rtt() -> None:
    # (a resent request's answer: which copy it answers is unknown, Karn)
    reputation = Reputation()
    reputation.success("p", 0.2, NOW)
    reputation.success("p", -1.0, NOW + 1)
    stats = reputation.stats("p")
    assert stats.rtt_ms == pytest.approx(200.0)
    assert stats.successes == 2 and stats.last_seen == NOW + 1
    reputation.success("q", -1.0, NOW)
    assert reputation.stats("q").rtt_ms is None


def test_best_orders_by_score_and_keeps_order_on_ties() -> None:
    reputation = Reputation()
    for peer in ("fast", "slow", "flaky"):
        reputation.success(peer, 0.01 if peer != "slow" else 3.0, NOW)
    reputation.failure("flaky")
    reputation.provided("fast", 10)
    peers = ["flaky", "unknown-a", "slow", "fast", "unknown-b"]
    # fast 1.0; unknown 0.75; slow 0.5+0.25*1000/3001+0.1; flaky 0.25+0.25+0.1
    assert reputation.best(peers, 5, NOW) == ["fast", "unknown-a", "unknown-b", "slow", "flaky"]
    assert reputation.best(peers, 2, NOW) == ["fast", "unknown-a"]
    assert reputation.best([], 3, NOW) == []


def test_scores_are_each_peers_score_in_order() -> None:
    reputation = Reputation()
    reputation.success("fast", 0.01, NOW)
    reputation.provided("fast", 4)
    reputation.success("slow", 3.0, NOW)
    reputation.failure("slow")
    peers = ["slow", "never-seen", "fast", "slow"]
    assert reputation.scores(peers, NOW + 60) == [reputation.score(p, NOW + 60) for p in peers]
    assert reputation.scores([], NOW) == []


# ---------------------------------------------------------------- routing


def test_contact_table_lists_every_contact_and_follows_changes() -> None:
    own = Node(bytes(20))
    table = ContactTable(None, 4, own)
    nodes = [Node(bytes([i + 1]) * 20, "127.0.0.1", 4000 + i) for i in range(12)]
    for node in nodes[:6]:
        table.add_contact(node)
    long_ids, contacts = table.contacts()
    assert {node.id for node in contacts} == {node.id for node in nodes[:6]}
    assert long_ids == [node.long_id for node in contacts]
    assert table.contacts()[1] is contacts  # kept while nothing changes

    # Adds (with bucket splits: k is 4), removals, and a known id at a new
    # address each show in the next list.
    for node in nodes[6:]:
        table.add_contact(node)
    table.remove_contact(nodes[0])
    moved = Node(nodes[1].id, "127.0.0.2", 5000)
    table.add_contact(moved)
    expected = {(n.id, n.ip, n.port) for b in table.buckets for n in b.nodes.values()}
    long_ids, contacts = table.contacts()
    assert {(n.id, n.ip, n.port) for n in contacts} == expected
    assert (moved.id, "127.0.0.2", 5000) in expected and len(table.buckets) > 1
    assert long_ids == [node.long_id for node in contacts]
    table.flush()
    assert table.contacts() == ([], [])


# ---------------------------------------------------------------- requests


def test_a_request_body_packed_once_frames_as_encode_request_does() -> None:
    for name, args in REQUESTS:
        assert frame_request(MSG_ID, pack_request(name, args)) == encode_request(MSG_ID, name, args)
    with pytest.raises(WireError, match="limit") as caught:
        pack_request("ping", [b"x" * MAX_REQUEST_BODY])
    assert caught.value.kind == "oversize_request"


def test_expiry_timer_says_when_it_is_armed_until() -> None:
    clock = FakeClock()
    fired: list[Any] = []
    core = _core_py.QueryCore()
    timer = ExpiryTimer(clock)
    timer.watch(core, fired.append)
    assert timer.armed_until == math.inf
    now = clock.now()
    core.register(0.02, 1, 1, now)
    timer.arm(now + 0.02)
    assert timer.armed_until == now + 0.02
    timer.arm(now + 5.0)  # later: unchanged
    assert timer.armed_until == now + 0.02
    timer.arm(now + 0.01)  # earlier: re-armed
    assert timer.armed_until == now + 0.01
    clock.advance(0.015)
    assert fired == []  # fired at +10 ms, found nothing due, re-armed
    clock.advance(0.01)
    assert len(fired) == 1 and fired[0].reason == "timeout"
    # re-armed for what the core's wheel waits for next (the slot of the
    # id's tombstone, which ends 5 s on)
    upcoming = core.next_deadline()
    assert upcoming is not None and timer.armed_until == upcoming
    timer.arm(clock.now() + 1.0)
    timer.stop()
    assert timer.armed_until == math.inf
    assert clock.pending == 0


def test_one_expiry_timer_serves_several_cores() -> None:
    clock = FakeClock()
    fired: list[tuple[str, Any]] = []
    first, second = _core_py.QueryCore(), _core_py.QueryCore()
    timer = ExpiryTimer(clock)
    timer.watch(first, lambda outcome: fired.append(("first", outcome.query_id)))
    timer.watch(second, lambda outcome: fired.append(("second", outcome.query_id)))
    early = second.register(0.01, 1, 1, clock.now())
    late = first.register(0.03, 1, 1, clock.now())
    timer.arm(clock.now() + 0.01)
    clock.advance(0.02)
    assert fired == [("second", early)]
    clock.advance(0.02)
    assert fired == [("second", early), ("first", late)]
    assert clock.pending == 1  # one timer, armed for the tombstones' end


def test_a_response_id_with_the_wrong_padding_is_unknown_not_late(backend: str) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        timer = ExpiryTimer(clock)
        table = RpcTable(asyncio.get_running_loop(), new_core(backend), timer, clock)
        msg_id = open_ping(table, ("127.0.0.1", 1), 0.001)
        clock.advance(0.01)  # the request gives up; its id is a tombstone
        assert len(table) == 0
        forged = msg_id[:16] + b"\x01\x02\x03\x04"
        assert answer(table, forged, ("127.0.0.1", 1))[0] == "unknown_id"
        assert answer(table, msg_id, ("127.0.0.1", 1))[0] == "late_response"
        table.close()

    asyncio.run(scenario())


def test_an_answer_before_the_node_listens_is_an_unknown_id(backend: str) -> None:
    """A node that has not listened has no request table, so no request of
    its own is out: an answer is counted as an unknown id and dropped,
    not a handler error."""

    async def scenario() -> dict[str, int]:
        node = DhtNode(queries=QueryManager(core=new_core(backend)))
        protocol = node._create_protocol()
        protocol.datagram_received(encode_response(new_message_id(), "pong"), ("127.0.0.1", 1))
        return dict(protocol.drops)

    drops = asyncio.run(scenario())
    assert drops.get("unknown_id") == 1
    assert "handler_error" not in drops


# ---------------------------------------------------------------- drop kinds


def test_every_kind_the_package_counts_is_in_the_exported_lists() -> None:
    """Exporters show DROP_KINDS + SHED_KINDS (+ the registry's) from zero:
    a kind counted but not listed would be missing until its first drop.
    The kinds are read off the sources: drop()/shed()/count(dropped=True)
    calls, the queues' refusals, WireError and RecordError kinds, RpcStatus."""
    import re
    from pathlib import Path

    import dhtquery
    from dhtquery.dht import DROP_KINDS, SHED_KINDS
    from dhtquery.dht.rpc_table import RpcStatus
    from dhtquery.registry import REGISTRY_DROP_KINDS

    listed = {*DROP_KINDS, *SHED_KINDS, *REGISTRY_DROP_KINDS}
    assert len(listed) == len(DROP_KINDS) + len(SHED_KINDS) + len(REGISTRY_DROP_KINDS)
    patterns = (
        r"\.(?:drop|shed)\(\s*\"(\w+)\"",
        r"\.count\(\s*\"(\w+)\",\s*dropped=True",
        r"\._enqueue\((?:[^()]|\([^()]*\))*?\"(\w+)\"",
        r"WireError\(\s*\"(\w+)\"",
        r"RecordError\((?:[^()]|\([^()]*\))*?,\s*\"(\w+)\"\s*\)",
    )
    counted = {status.value for status in RpcStatus if status is not RpcStatus.ANSWERED}
    package = Path(dhtquery.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        for pattern in patterns:
            counted.update(re.findall(pattern, text, flags=re.DOTALL))
    # (the scan finds what it should: a few kinds of each way of counting)
    assert {"bad_args", "queue_full", "publisher_cap", "bad_utf8", "wrong_slot"} <= counted
    assert counted - listed == set()


# ---------------------------------------------------------------- bounds


def test_reputation_remembers_at_most_max_peers_oldest_out_first() -> None:
    reputation = Reputation(max_peers=3)
    for peer in ("a", "b", "c"):
        reputation.success(peer, 0.1, NOW)
    reputation.failure("d")  # a fourth: "a" leaves
    assert len(reputation) == 3
    assert "a" not in reputation and "d" in reputation
    assert reputation.stats("b").successes == 1


def test_protocol_per_address_state_is_bounded(
    run: Callable[[Coroutine[Any, Any, None]], None], backend: str, monkeypatch: Any
) -> None:
    from dhtquery.dht import protocol as protocol_module

    from .dht_helpers import open_nodes

    monkeypatch.setattr(protocol_module, "PEERS_KEPT", 4)

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            _, protocol = await nodes.dht_and_protocol()
            first = protocol.rtt(("10.0.0.1", 1000))
            first.observe(0.05)
            for i in range(2, 12):  # ten more addresses, each on its own IP
                protocol.rtt((f"10.0.0.{i}", 1000))
                protocol._supports((f"10.0.0.{i}", 1000), True)
            # the oldest estimator is gone: measured afresh, its IP too
            assert protocol.rtt(("10.0.0.1", 1000)) is not first
            assert protocol.srtt(("10.0.0.1", 2000)) is None
            assert len(protocol.extensions) == 4
            assert ("10.0.0.11", 1000) in protocol.extensions

    run(scenario())


def test_a_lookup_handle_starts_as_a_query_handle_does(backend: str) -> None:
    """Every one of QueryHandle's fields starts in a LookupHandle as
    QueryHandle's own would, plus its counts."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        manager = QueryManager(core=new_core(backend))
        plain, lookup = QueryHandle(manager, 7, loop), LookupHandle(manager, 7, loop)
        for name in QueryHandle.__slots__:
            mine, theirs = getattr(lookup, name), getattr(plain, name)
            if isinstance(theirs, asyncio.Future):
                assert type(mine) is type(theirs) and mine.get_loop() is loop
                assert not mine.done()
            else:
                assert mine == theirs, name
        assert lookup._results is not plain._results and lookup._waiters is not plain._waiters
        assert lookup.ended() is False and lookup.lookup_stats is None

    asyncio.run(scenario())

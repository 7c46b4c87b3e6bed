"""RecordCache: the records a node verified, in the core, and a lookup's
read of an answer's records through it (``take``). Each test runs against
both cores; a property test drives both with the same random operations and
compares every answer; another pins that a lookup reading its answers
through ``take`` keeps the records, the slots' sequences, the drops and the
reputation effects of reading them one by one."""

from __future__ import annotations

import contextlib
import importlib
import time
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kademlia.utils import digest

from dhtquery.dht import Record, RecordError
from dhtquery.dht.lookup import StreamingLookup
from dhtquery.dht.records import RecordVerifier
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError

from .conftest import require_rust
from .dht_helpers import publisher_named, signed

WALL = 1_800_000_000.0
A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 4000)
KEY = digest("record-cache")
OTHER = digest("another key")


def _wire(
    public_key: bytes = b"k" * 32,
    target: bytes = KEY,
    name: str = "",
    seq: int = 1,
    expires: int = 0,
    data: bytes = b"data",
    signature: bytes = b"s" * 64,
) -> list[Any]:
    return [public_key, target, name, seq, expires, data, signature]


@pytest.fixture
def cache(core_module: ModuleType) -> Any:
    return core_module.RecordCache(8, lambda: WALL)


# -- get and put ----------------------------------------------------------------


def test_a_record_put_is_got_back_for_a_copy_of_its_fields(cache: Any) -> None:
    record = object()
    cache.put(_wire(), record)
    assert cache.get(_wire()) is record
    assert cache.get(tuple(_wire())) is record
    assert len(cache) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"public_key": b"K" * 32},
        {"target": OTHER},
        {"name": "n"},
        {"seq": 2},
        {"expires": 5},
        {"data": b"datb"},
        {"signature": b"t" * 64},
        # of another type, though equal in Python
        {"seq": 1.0},
        {"seq": True},
        {"data": bytearray(b"data")},
        {"signature": bytearray(b"s" * 64)},
    ],
)
def test_a_field_that_differs_from_the_one_verified_misses(
    cache: Any, change: dict[str, Any]
) -> None:
    cache.put(_wire(), "record")
    assert cache.get(_wire(**change)) is None


@pytest.mark.parametrize(
    "value", [None, {}, "text", _wire()[:6], [*_wire(), b"extra"], [_wire()], 7]
)
def test_what_is_not_a_wire_array_misses(cache: Any, value: object) -> None:
    cache.put(_wire(), "record")
    assert cache.get(value) is None


def test_the_oldest_leaves_first_and_a_record_put_again_keeps_its_place(
    core_module: ModuleType,
) -> None:
    cache = core_module.RecordCache(2, lambda: WALL)
    first, second, third = (_wire(signature=bytes([i]) * 64) for i in range(3))
    cache.put(first, "first")
    cache.put(second, "second")
    cache.put(first, "first again")  # (its place: still the oldest)
    cache.put(third, "third")
    assert cache.get(first) is None
    assert (cache.get(second), cache.get(third)) == ("second", "third")
    assert len(cache) == 2 and cache.kept == 2


def test_a_cache_that_keeps_nothing_keeps_nothing(core_module: ModuleType) -> None:
    cache = core_module.RecordCache(0, lambda: WALL)
    cache.put(_wire(), "record")
    assert len(cache) == 0 and cache.get(_wire()) is None


def test_clear_forgets_every_record(cache: Any) -> None:
    cache.put(_wire(), "record")
    cache.clear()
    assert len(cache) == 0 and cache.get(_wire()) is None


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ({}, InvalidArgumentTypeError, "value must be a list or tuple"),
        (_wire(signature="s" * 64), InvalidArgumentTypeError, "value's signature must be bytes"),
        (_wire(signature=b"s"), InvalidArgumentError, "value's signature must be 64 bytes, got 1"),
        (_wire(name=b"n"), InvalidArgumentTypeError, "value's name must be a str"),
        (_wire(public_key="k"), InvalidArgumentTypeError, "value's public key must be bytes"),
        (_wire(target=None), InvalidArgumentTypeError, "value's target must be bytes"),
        (_wire(seq=1.5), InvalidArgumentTypeError, "value's seq must be an int"),
        (_wire(seq=False), InvalidArgumentTypeError, "value's seq must be an int"),
        (_wire(expires=-1), InvalidArgumentError, r"value's expires must be in \[0, 2\*\*64\)"),
        (_wire(seq=2**64), InvalidArgumentError, r"value's seq must be in \[0, 2\*\*64\)"),
        (_wire(data=[]), InvalidArgumentTypeError, "value's data must be bytes"),
    ],
)
def test_put_refuses_a_field_of_the_wrong_type_or_size_naming_it(
    cache: Any, value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        cache.put(value, "record")
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("kept", "wall", "error", "match"),
    [
        (-1, time.time, InvalidArgumentError, "kept must be in"),
        (True, time.time, InvalidArgumentTypeError, "kept must be an int"),
        (2**32, time.time, InvalidArgumentError, "kept must be in"),
        (8, 1.5, InvalidArgumentTypeError, "wall must be callable"),
    ],
)
def test_a_cache_refuses_bad_arguments(
    core_module: ModuleType, kept: Any, wall: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        core_module.RecordCache(kept, wall)


# -- take ---------------------------------------------------------------------


def test_take_takes_the_records_kept_and_notes_their_slots(cache: Any) -> None:
    one, two = _wire(name="a"), _wire(name="b", seq=7, signature=b"t" * 64)
    cache.put(one, "one")
    cache.put(two, "two")
    latest: dict[Any, Any] = {}
    taken, index = cache.take([one, two], KEY, latest, A)
    assert taken == [(b"s" * 64, "one"), (b"t" * 64, "two")] and index == 2
    assert latest == {(b"k" * 32, "a"): (1, A), (b"k" * 32, "b"): (7, A)}
    # the same sequence from another peer: taken, the first server kept
    assert cache.take([two], KEY, latest, B) == ([(b"t" * 64, "two")], 1)
    assert latest[(b"k" * 32, "b")] == (7, A)


_SECOND = _wire(name="b", signature=b"t" * 64)


@pytest.mark.parametrize(
    ("second", "kept", "why"),
    [
        (_SECOND, _wire(name="b", data=b"other", signature=b"t" * 64), "another record verified"),
        (_wire(name="b", target=OTHER, signature=b"t" * 64), None, "another key's"),
        (_wire(name="b", expires=int(WALL), signature=b"t" * 64), None, "expired"),
        (_wire(name="a", seq=2, signature=b"t" * 64), None, "another sequence of a slot seen"),
    ],
)
def test_take_stops_at_the_first_record_it_cannot_take(
    cache: Any, second: list[Any], kept: list[Any] | None, why: str
) -> None:
    first, third = _wire(name="a"), _wire(name="c", signature=b"v" * 64)
    for value in (first, second if kept is None else kept, third):
        cache.put(value, value[2])
    latest: dict[Any, Any] = {}
    taken, index = cache.take([first, second, third], KEY, latest, A)
    assert (taken, index) == ([(b"s" * 64, "a")], 1), why
    # (nothing noted for what it left to the caller)
    assert latest == {(b"k" * 32, "a"): (1, A)}, why


def test_take_reads_the_expiry_against_the_wall_clock(core_module: ModuleType) -> None:
    wall = [WALL - 1]
    cache = core_module.RecordCache(8, lambda: wall[0])
    value = _wire(expires=int(WALL))
    cache.put(value, "record")
    assert cache.take([value], KEY, {}, A)[1] == 1
    wall[0] = WALL
    assert cache.take([value], KEY, {}, A)[1] == 0


def test_take_reads_a_list_as_it_is_at_each_step(core_module: ModuleType) -> None:
    """Values read in place, as ``enumerate`` reads a list: one the wall
    clock's call changes is read as it has become (and its length then is
    the index returned)."""
    values: list[Any] = []

    def wall() -> float:
        values[1:] = []  # (the second value gone, a third never there)
        return WALL - 1

    cache = core_module.RecordCache(8, wall)
    first, second = _wire(name="a", expires=int(WALL)), _wire(name="b", signature=b"t" * 64)
    cache.put(first, "a")
    cache.put(second, "b")
    values[:] = [first, second, None]
    assert cache.take(values, KEY, {}, A) == ([(b"s" * 64, "a")], 1)
    values[:] = (first,)
    assert cache.take(tuple([first, second]), KEY, {}, A) == (
        [(b"s" * 64, "a"), (b"t" * 64, "b")],
        2,
    )


def test_a_slot_noted_by_take_is_found_with_a_tuple_made_afresh(cache: Any) -> None:
    value = _wire(name="".join(["n", "ame"]), seq=3)
    cache.put(value, "record")
    latest: dict[Any, Any] = {}
    cache.take([value], KEY, latest, A)
    assert latest[(b"k" * 32, "name")] == (3, A)
    # and one the caller noted, with its own tuple, is read by take
    fresh: dict[Any, Any] = {(b"".join([b"k" * 32]), "na" + "me"): (3, B)}
    assert cache.take([value], KEY, fresh, A) == ([(b"s" * 64, "record")], 1)
    fresh = {(b"k" * 32, "name"): (4, B)}
    assert cache.take([value], KEY, fresh, A) == ([], 0)


def test_take_leaves_what_is_not_a_list_of_records_to_the_caller(cache: Any) -> None:
    cache.put(_wire(), "record")
    assert cache.take({"records": []}, KEY, {}, A) == ([], 0)
    assert cache.take([_wire(), None], KEY, {}, A) == ([(b"s" * 64, "record")], 1)
    # a slot noted as something else than (seq, first server)
    assert cache.take([_wire()], KEY, {(b"k" * 32, ""): [1, A]}, A) == ([], 0)


def test_take_refuses_a_target_or_latest_of_the_wrong_type(cache: Any) -> None:
    with pytest.raises(InvalidArgumentTypeError, match="target must be bytes"):
        cache.take([], "key", {}, A)
    with pytest.raises(InvalidArgumentTypeError, match="latest must be a dict"):
        cache.take([], KEY, [], A)


# -- both cores, the same operations ------------------------------------------

_FIELDS = st.tuples(
    st.sampled_from([b"k" * 32, b"K" * 32]),
    st.sampled_from([KEY, OTHER]),
    st.sampled_from(["", "n", "\ud800"]),
    st.sampled_from([0, 1, 2, 2**64 - 1]),
    st.sampled_from([0, int(WALL) - 1, int(WALL) + 1]),
    st.sampled_from([b"", b"x"]),
    st.sampled_from([bytes([i]) * 64 for i in range(4)]),
)
_ODD = st.sampled_from([None, 1.0, True, bytearray(b"x"), "k", 2**64, -1])


@st.composite
def _values(draw: st.DrawFn) -> Any:
    fields = list(draw(_FIELDS))
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.integers(0, 6))] = draw(_ODD)
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return fields[:6]
    return tuple(fields) if shape == 1 else fields


_OPERATIONS = st.one_of(
    st.tuples(st.just("put"), _values(), st.integers(0, 5)),
    st.tuples(st.just("get"), _values()),
    st.tuples(
        st.just("take"),
        st.lists(_values(), max_size=5),
        st.sampled_from([KEY, OTHER]),
        st.sampled_from([A, B]),
    ),
    st.tuples(st.just("clear")),
)


def _answer(cache: Any, name: str, args: tuple[Any, ...], latest: dict[Any, Any]) -> Any:
    try:
        if name == "put":
            return cache.put(args[0], f"record {args[1]}")
        if name == "take":
            return cache.take(args[0], args[1], latest, args[2])
        return getattr(cache, name)(*args)
    except (InvalidArgumentError, InvalidArgumentTypeError) as exc:
        return (type(exc), str(exc))


@settings(max_examples=400, deadline=None)
@given(operations=st.lists(_OPERATIONS, max_size=40), kept=st.integers(0, 3))
def test_both_cores_give_the_same_answers_to_the_same_operations(
    operations: list[tuple[Any, ...]], kept: int
) -> None:
    rust = require_rust()
    python = importlib.import_module("dhtquery.query._core_py")
    caches = [module.RecordCache(kept, lambda: WALL) for module in (rust, python)]
    latests: list[dict[Any, Any]] = [{}, {}]
    for name, *args in operations:
        answers = [
            _answer(cache, name, tuple(args), latest)
            for cache, latest in zip(caches, latests, strict=True)
        ]
        assert answers[0] == answers[1], (name, args, answers)
        assert latests[0] == latests[1]
        assert len(caches[0]) == len(caches[1])


# -- a lookup's read of its answers -----------------------------------------------


class _Protocol:
    """What a lookup's read of records touches of its protocol."""

    def __init__(self, verifier: RecordVerifier) -> None:
        self.records = self
        self.verifier = verifier
        self.reputation = self
        self.dropped: list[str] = []
        self.invalids: list[Any] = []

    def drop(self, kind: str) -> None:
        self.dropped.append(kind)

    def invalid(self, address: Any) -> None:
        self.invalids.append(address)


class _Reader:
    """A StreamingLookup's state that ``_records`` reads."""

    def __init__(self, verifier: RecordVerifier) -> None:
        self._protocol = _Protocol(verifier)
        self._key = KEY
        self._latest: dict[Any, Any] = {}
        self._take = verifier.cache.take

    def _check(self, raws: list[Any], start: int, address: Any) -> list[Any]:
        return StreamingLookup._check(self, raws, start, address)  # type: ignore[arg-type]

    def read(self, raws: list[Any], address: Any) -> list[Any]:
        return StreamingLookup._records(self, {"records": raws}, address)  # type: ignore[arg-type]


def _one_by_one(reader: _Reader, raws: list[Any], address: Any) -> list[Any]:
    """The lookup's read of an answer's records one by one, none taken by
    the core (as before ``RecordCache.take``)."""
    return reader._check(raws, 0, address)


def _pool() -> list[list[Any]]:
    records = [
        signed(who, b"v%d" % seq, KEY, name=name, seq=seq)
        for who in ("a", "b")
        for name in ("", "n")
        for seq in (1, 2)
    ]
    expired = Record.create(publisher_named("a"), KEY, b"old", name="e", expires=int(WALL) - 5)
    other = signed("a", b"elsewhere", OTHER, name="o")
    forged = records[0].to_wire()
    forged[5] = b"forged"
    return [record.to_wire() for record in (*records, expired, other)] + [forged, [1, 2]]


_POOL = _pool()


@pytest.mark.parametrize("core", ["rust", "python"])
@settings(max_examples=150, deadline=None)
@given(
    answers=st.lists(
        st.tuples(st.lists(st.integers(0, len(_POOL) - 1), max_size=6), st.sampled_from([A, B])),
        max_size=6,
    ),
    warm=st.booleans(),
)
def test_a_lookup_reads_its_answers_as_it_did_one_by_one(
    core: str, answers: list[tuple[list[int], Any]], warm: bool
) -> None:
    if core == "rust":
        require_rust()
    readers = [_Reader(RecordVerifier(lambda: WALL, backend=core)) for _ in range(2)]
    if warm:
        # verified before (another lookup's): the core takes them
        for reader in readers:
            for raw in _POOL[:-2]:
                with contextlib.suppress(RecordError):
                    reader._protocol.verifier.from_wire(raw, KEY)
    for indexes, address in answers:
        raws = [_POOL[index] for index in indexes]
        got = readers[0].read(raws, address)
        expected = _one_by_one(readers[1], raws, address)
        assert got == expected
        assert readers[0]._latest == readers[1]._latest
        assert readers[0]._protocol.dropped == readers[1]._protocol.dropped
        assert readers[0]._protocol.invalids == readers[1]._protocol.invalids

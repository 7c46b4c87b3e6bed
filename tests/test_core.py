"""The query core's contract (``_core.pyi``), checked on both cores."""

from __future__ import annotations

import math
import uuid
from types import ModuleType

import pytest

from dhtquery.errors import DhtQueryError, InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import types
from dhtquery.query.types import (
    BatchStatus,
    CoreOutcome,
    Counters,
    Latency,
    QueryState,
    Reason,
    SubmitStatus,
)
from tests.conftest import require_rust

T0 = 1000.0


@pytest.fixture
def core(core_module: ModuleType) -> object:
    return core_module.QueryCore()


PUBLIC_NAMES = [
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
LIMITS = ["MAX_EXPECTED_PEERS", "MAX_NOW", "MAX_RESULTS_LIMIT", "MAX_TIMEOUT"]


def test_module_exports_the_same_names(core_module: ModuleType) -> None:
    assert core_module.__all__ == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert hasattr(core_module, name), name
    # Statuses and reasons are types.py's enums now, not module constants.
    assert not {"NEW", "REASONS"} & set(core_module.__all__)


def test_rust_limits_equal_the_types_limits() -> None:
    rust = require_rust()
    for name in LIMITS:
        value = getattr(rust, name)
        assert value == getattr(types, name), name
        assert type(value) is type(getattr(types, name)), name
    for removed in ["NEW", "COMPLETED", "DUPLICATE", "FULL", "LATE", "UNKNOWN", "REASONS"]:
        assert not hasattr(rust, removed), removed


def test_returns_the_shared_vocabulary(core_module: ModuleType) -> None:
    core = core_module.QueryCore(grace=1.0)
    query_id = core.register(10.0, 2, 1, T0)
    status = core.offer(query_id, "p", "a", "x", T0)
    assert type(status) is SubmitStatus and status is SubmitStatus.NEW
    batch = core.offer_many(query_id, "p", [("a", "x"), ("b", "y")], T0)
    assert type(batch) is BatchStatus
    assert batch == BatchStatus(SubmitStatus.COMPLETED, 1, 1)
    assert batch.status is SubmitStatus.COMPLETED
    assert core.peer_done(query_id, "p", True) is SubmitStatus.FULL
    outcome = core.finish(query_id, T0 + 0.5)
    assert type(outcome) is CoreOutcome
    assert outcome.query_id == query_id and outcome.reason is Reason.MAX_RESULTS
    assert outcome.results == [("x", "p", "a", 0.0), ("y", "p", "b", 0.0)]
    assert all(type(record) is tuple for record in outcome.results)
    assert (outcome.duration, outcome.peers_ok, outcome.peers_failed) == (0.5, 1, 0)
    assert outcome.duplicates == 1
    cancelled = core.cancel(core.register(10.0, 2, 1, T0), T0 + 1)
    assert type(cancelled) is CoreOutcome and cancelled.reason is Reason.CANCELLED
    core.register(0.5, 2, 1, T0)
    (expired,) = core.expire(T0 + 0.5)
    assert type(expired) is CoreOutcome and expired.reason is Reason.TIMEOUT
    assert expired.reason == "timeout"  # a StrEnum: equal to its str
    counters = core.counters()
    assert type(counters) is Counters
    assert (counters.total, counters.successful, counters.cancelled) == (3, 1, 1)
    assert (counters.timed_out, counters.results, counters.duplicates) == (1, 2, 1)
    latency = core.latency()
    assert type(latency) is Latency and latency.samples == 2
    assert type(core.state(query_id)) is QueryState


@pytest.mark.parametrize(
    "reason", [Reason.ADAPTIVE, "adaptive", type("Text", (str,), {})("adaptive")]
)
def test_finish_takes_a_reason_member_or_the_equal_str(
    core_module: ModuleType, reason: str
) -> None:
    core = core_module.QueryCore()
    outcome = core.finish(core.register(10.0, 5, 0, T0), T0, reason)
    assert outcome.reason is Reason.ADAPTIVE


@pytest.mark.parametrize("reason", [Reason.TIMEOUT, Reason.CANCELLED, "MAX_RESULTS", 1])
def test_finish_refuses_other_reasons(core_module: ModuleType, reason: object) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 5, 0, T0)
    with pytest.raises(InvalidArgumentError, match="reason must be one of"):
        core.finish(query_id, T0, reason)
    assert core.state(query_id) is QueryState.LIVE


def test_state_live(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 2, 1, T0)
    core.offer(query_id, "p", "a", 1, T0)
    before = core.counters()
    assert core.state(query_id) is QueryState.LIVE
    assert core.state(core_module.QueryId(str(query_id))) is QueryState.LIVE
    assert core.counters() == before


def test_state_tombstone(core_module: ModuleType) -> None:
    core = core_module.QueryCore(grace=5.0)
    query_id = core.register(10.0, 2, 1, T0)
    core.cancel(query_id, T0 + 1)
    before = core.counters()
    assert core.state(query_id) is QueryState.TOMBSTONE
    assert core.counters() == before  # not counted as late, unlike an offer
    core.expire(T0 + 5.999)
    assert core.state(query_id) is QueryState.TOMBSTONE


def test_state_unknown(core_module: ModuleType) -> None:
    core = core_module.QueryCore(grace=5.0)
    stranger = core_module.QueryId("00000000-0000-4000-8000-000000000000")
    assert core.state(stranger) is QueryState.UNKNOWN
    query_id = core.register(10.0, 2, 1, T0)
    core.finish(query_id, T0 + 1, "adaptive")
    core.expire(T0 + 6.0)  # the grace is over: forgotten
    before = core.counters()
    assert core.state(query_id) is QueryState.UNKNOWN
    assert core.state(stranger) is QueryState.UNKNOWN
    assert core.counters() == before  # not counted as unknown, unlike an offer


def test_query_id_unique(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    ids = [core.register(10.0, 20, 3, T0) for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert len({str(query_id) for query_id in ids}) == 10_000


def test_query_id_is_uuid4_with_canonical_str(core_module: ModuleType) -> None:
    query_id = core_module.QueryCore().register(1.0, 1, 0, T0)
    assert isinstance(query_id.uuid, uuid.UUID)
    assert query_id.uuid.version == 4
    assert str(query_id) == str(query_id.uuid)
    assert repr(query_id) == f"QueryId('{query_id}')"
    again = core_module.QueryId(str(query_id))
    assert again == query_id and hash(again) == hash(query_id)
    assert core_module.QueryId(query_id.uuid) == query_id
    assert query_id != str(query_id)


def test_query_id_bytes_are_the_uuid_bytes_and_round_trip(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    for _ in range(100):
        query_id = core.register(1.0, 1, 0, T0)
        assert query_id.bytes == query_id.uuid.bytes
        again = core_module.QueryId.from_bytes(query_id.bytes)
        assert again == query_id and hash(again) == hash(query_id)
    assert core_module.QueryId.from_bytes(bytes(16)).uuid == uuid.UUID(int=0)


def test_query_id_from_bytes_rejects_bad_data(core_module: ModuleType) -> None:
    with pytest.raises(InvalidArgumentError, match="data must be 16 bytes, got 15"):
        core_module.QueryId.from_bytes(bytes(15))
    with pytest.raises(InvalidArgumentTypeError, match="data must be bytes, got str"):
        core_module.QueryId.from_bytes("0" * 16)


def test_query_id_rejects_bad_values(core_module: ModuleType) -> None:
    with pytest.raises(InvalidArgumentError, match="value"):
        core_module.QueryId("not-a-uuid")
    with pytest.raises(InvalidArgumentTypeError, match="value"):
        core_module.QueryId(42)


def test_offer_deduplicates_by_key(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 20, 3, T0)
    assert core.offer(query_id, "p1", "k", "first", T0 + 0.1) is SubmitStatus.NEW
    assert core.offer(query_id, "p2", "k", "second", T0 + 0.2) is SubmitStatus.DUPLICATE
    assert core.offer(query_id, "p2", b"k", "bytes key", T0 + 0.3) is SubmitStatus.NEW
    records = core.drain(query_id)
    assert [record[0] for record in records] == ["first", "bytes key"]
    assert records[0][1] == "p1" and records[0][2] == "k"
    assert records[0][3] == pytest.approx(0.1)
    assert core.counters()[6] == 1  # duplicates


def test_offer_completes_at_max_results_then_refuses(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 2, 3, T0)
    assert core.offer(query_id, "p", "a", 1, T0) is SubmitStatus.NEW
    assert core.offer(query_id, "p", "b", 2, T0) is SubmitStatus.COMPLETED
    assert core.offer(query_id, "p", "c", 3, T0) is SubmitStatus.FULL
    outcome = core.finish(query_id, T0 + 1)
    assert outcome[1] == "max_results"
    assert [record[0] for record in outcome[2]] == [1, 2]
    assert core.counters()[9] == 1  # overflow


def test_offer_many_counts_accepted_and_duplicates(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 3, 2, T0)
    status = core.offer_many(query_id, "p1", [("a", 1), ("a", 1), ("b", 2)], T0)
    assert status == (SubmitStatus.NEW, 2, 1)
    status = core.offer_many(query_id, "p2", [("b", 2), ("c", 3), ("d", 4)], T0)
    assert status == (SubmitStatus.COMPLETED, 1, 1)
    assert core.offer_many(query_id, "p3", [("e", 5)], T0) == (SubmitStatus.FULL, 0, 0)
    assert [record[0] for record in core.drain(query_id)] == [1, 2, 3]


def test_offer_many_answers_each_batch_by_its_own_counts_whatever_its_size(
    core_module: ModuleType,
) -> None:
    # The Rust core shares the BatchStatus of a batch of up to 32 entries
    # between equal answers and builds a larger batch's own: both must carry
    # the batch's counts, answer after answer.
    core = core_module.QueryCore()
    query_id = core.register(10.0, 1000, 0, T0)
    sizes = (0, 1, 20, 32, 33, 100)
    for size in sizes:
        fresh = [(f"{size}-{index}", index) for index in range(size)]
        first = core.offer_many(query_id, "p1", fresh, T0)
        again = core.offer_many(query_id, "p2", fresh, T0)
        assert type(first) is BatchStatus and type(again) is BatchStatus
        assert first == (SubmitStatus.NEW, size, 0), size
        assert again == (SubmitStatus.NEW, 0, size), size
        mixed = core.offer_many(query_id, "p3", [*fresh, (f"{size}-new", -1)], T0)
        assert mixed == (SubmitStatus.NEW, 1, size), size
    assert core.counters()[5] == sum(sizes) + len(sizes)  # results
    nearly_full = core.register(10.0, 2, 0, T0)
    batch = [("x", 1), ("x", 1), ("y", 2), ("z", 3)]
    assert core.offer_many(nearly_full, "p", batch, T0) == (SubmitStatus.COMPLETED, 2, 1)
    assert core.offer_many(nearly_full, "p", batch, T0) == (SubmitStatus.FULL, 0, 0)


def test_offer_many_dedups_by_exact_key_whether_borrowed_or_encoded(
    core_module: ModuleType,
) -> None:
    # The Rust core hashes a batch's keys from the key objects' own bytes
    # (a str's UTF-8, a bytes' content) and only a str with lone surrogates
    # from a copy (its surrogatepass encoding): both must dedup as `offer`.
    core = core_module.QueryCore()
    query_id = core.register(10.0, 20, 2, T0)
    lone = "\ud800"
    entries = [("a", 1), (b"a", 2), (lone, 3), ("\ud800", 4), ("é", 5), ("é".encode(), 6)]
    assert core.offer_many(query_id, "p1", entries, T0) == (SubmitStatus.NEW, 5, 1)
    assert core.offer(query_id, "p2", "\ud800", 7, T0) is SubmitStatus.DUPLICATE
    assert core.offer(query_id, "p2", "\udc00", 8, T0) is SubmitStatus.NEW
    # The same keys again, as bytes where a str has a UTF-8 encoding.
    again = [(b"a", 9), (b"a", 9), (lone, 9), (lone, 9), ("é".encode(), 9), ("é".encode(), 9)]
    assert core.offer_many(query_id, "p2", again, T0) == (SubmitStatus.NEW, 0, 6)
    drained = core.drain(query_id)
    assert [record[0] for record in drained] == [1, 2, 3, 5, 6, 8]
    assert drained[2][2] is lone


def test_offer_many_results_are_the_objects_offered(core_module: ModuleType) -> None:
    # The Rust core holds a result as its objects and builds the tuple only
    # when drained or handed over: the tuple holds the very objects offered
    # (a duplicate's item is not kept), with each result's response time.
    core = core_module.QueryCore()
    query_id = core.register(10.0, 3, 2, T0)
    item_a, item_b, duplicate = object(), object(), object()
    key_a, key_b = "key-a", b"key-b"
    peer = ("10.0.0.1", 4000)
    status = core.offer_many(query_id, peer, [(key_a, item_a), (key_a, duplicate)], T0 + 0.25)
    assert status == (SubmitStatus.NEW, 1, 1)
    drained = core.drain(query_id)
    assert len(drained) == 1
    assert drained[0][0] is item_a and drained[0][1] is peer and drained[0][2] is key_a
    assert drained[0][3] == 0.25
    assert core.drain(query_id) == []
    assert core.offer_many(query_id, "p2", [(key_b, item_b)], T0 + 0.5) == (
        SubmitStatus.NEW,
        1,
        0,
    )
    outcome = core.finish(query_id, T0 + 1, Reason.ADAPTIVE)
    assert [(r[0], r[1], r[2], r[3]) for r in outcome[2]] == [(item_b, "p2", key_b, 0.5)]
    assert outcome[2][0][0] is item_b


def test_offer_many_checks_every_entry_before_offering(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 10, 2, T0)
    with pytest.raises(InvalidArgumentTypeError, match=r"entries\[1\]"):
        core.offer_many(query_id, "p", [("a", 1), (7, 2)], T0)
    with pytest.raises(InvalidArgumentTypeError, match=r"entries\[0\]"):
        core.offer_many(query_id, "p", ["not a pair"], T0)
    # The first bad entry is named, whatever is wrong with a later one.
    with pytest.raises(InvalidArgumentTypeError, match=r"entries\[0\] key"):
        core.offer_many(query_id, "p", [(7, 1), "not a pair"], T0)
    with pytest.raises(InvalidArgumentTypeError, match=r"entries\[1\] must be"):
        core.offer_many(query_id, "p", [("a", 1), "not a pair", (7, 1)], T0)
    assert core.drain(query_id) == []
    assert core.offer(query_id, "p", "a", 1, T0) is SubmitStatus.NEW


def test_peer_done_completes_when_every_expected_peer_reported(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 20, 2, T0)
    core.offer(query_id, "p1", "a", 1, T0)
    assert core.peer_done(query_id, "p1", True) is SubmitStatus.NEW
    assert core.peer_done(query_id, "p1", True) is SubmitStatus.DUPLICATE
    assert core.peer_done(query_id, ("10.0.0.1", 4000), False) is SubmitStatus.COMPLETED
    assert core.offer(query_id, "p3", "b", 2, T0) is SubmitStatus.FULL
    outcome = core.finish(query_id, T0 + 0.5)
    assert outcome[1] == "all_peers"
    assert (outcome[4], outcome[5]) == (1, 1)


def test_finish_requires_reason_for_incomplete_query(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 20, 3, T0)
    with pytest.raises(InvalidArgumentError, match="reason"):
        core.finish(query_id, T0)
    with pytest.raises(InvalidArgumentError, match="reason"):
        core.finish(query_id, T0, "timeout")
    assert core.in_flight == 1
    outcome = core.finish(query_id, T0 + 0.25, "adaptive")
    assert outcome[1] == "adaptive" and outcome[3] == pytest.approx(0.25)
    assert core.finish(query_id, T0 + 0.3) is None


def test_partial_results_on_timeout(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(0.1, 20, 3, T0)
    core.offer(query_id, "p1", "a", "x", T0 + 0.01)
    core.offer(query_id, "p2", "b", "y", T0 + 0.02)
    assert core.expire(T0 + 0.099) == []
    (outcome,) = core.expire(T0 + 0.1)
    assert outcome[0] == query_id and outcome[1] == "timeout"
    assert [record[0] for record in outcome[2]] == ["x", "y"]
    assert core.counters()[2] == 1  # timed_out
    assert core.in_flight == 0


def test_expire_orders_by_deadline_then_registration(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    late = core.register(0.3, 1, 0, T0)
    first = core.register(0.1, 1, 0, T0)
    second = core.register(0.1, 1, 0, T0)
    outcomes = core.expire(T0 + 1)
    assert [outcome[0] for outcome in outcomes] == [first, second, late]


def test_next_deadline_is_never_after_the_earliest_deadline(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    assert core.next_deadline() is None
    deadlines = [0.005, 0.07, 4.5, 300.0, 86_400.0]
    for timeout in deadlines:
        core.register(timeout, 1, 0, T0)
    now = T0
    for timeout in deadlines:
        due = math.ceil((T0 + timeout) * 1000) / 1000
        expired: list[object] = []
        for _ in range(50):  # a few cascades per level at most
            upcoming = core.next_deadline()
            assert upcoming is not None and upcoming <= due + 1e-9
            now = upcoming
            expired = core.expire(now)
            if expired:
                break
        assert len(expired) == 1 and now == pytest.approx(due)


def test_cancel_frees_entry_and_counts(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(10.0, 20, 3, T0)
    core.offer(query_id, "p", "a", 1, T0)
    outcome = core.cancel(query_id, T0 + 1)
    assert outcome[1] == "cancelled" and [r[0] for r in outcome[2]] == [1]
    assert core.in_flight == 0 and core.cancel(query_id, T0 + 2) is None
    counters = core.counters()
    assert counters[3] == 1 and counters[4] == 0
    assert core.latency()[0] == 0  # cancelled queries stay out of the histogram


def test_late_within_grace_unknown_after(core_module: ModuleType) -> None:
    core = core_module.QueryCore(grace=5.0)
    query_id = core.register(10.0, 1, 1, T0)
    core.offer(query_id, "p", "a", 1, T0)
    core.finish(query_id, T0 + 1)
    assert core.offer(query_id, "p", "b", 2, T0 + 2) is SubmitStatus.LATE
    assert core.offer_many(query_id, "p", [("c", 3), ("d", 4)], T0 + 3)[0] == SubmitStatus.LATE
    assert core.peer_done(query_id, "p", True) is SubmitStatus.LATE
    core.expire(T0 + 5.999)
    assert core.tombstones == 1
    core.expire(T0 + 6.0)
    assert core.tombstones == 0
    assert core.offer(query_id, "p", "e", 5, T0 + 7) is SubmitStatus.UNKNOWN
    counters = core.counters()
    assert counters[7] == 3  # late: one single offer and a batch of two
    assert counters[8] == 1  # unknown


def test_hundred_thousand_queries_leave_nothing_behind(core_module: ModuleType) -> None:
    core = core_module.QueryCore(grace=5.0)
    now = T0
    for index in range(100_000):
        query_id = core.register(10.0, 2, 1, now)
        core.offer(query_id, "p", "a", index, now)
        if index % 3 == 0:
            core.cancel(query_id, now)
        elif index % 3 == 1:
            core.peer_done(query_id, "p", True)
            core.finish(query_id, now)
        now += 0.0001  # 10 s of queries in all
    assert core.in_flight > 0
    core.expire(now + 10.5)  # the rest time out
    assert core.in_flight == 0
    assert core.tombstones > 0
    core.expire(now + 20.0)  # every grace is over
    assert (core.in_flight, core.tombstones, core.timers) == (0, 0, 0)
    assert core.next_deadline() is None
    total, successful, timed_out, cancelled = core.counters()[:4]
    assert total == 100_000 and successful + timed_out + cancelled == total


def test_latency_percentiles_nearest_rank(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    for millis in range(1, 101):
        query_id = core.register(10.0, 1, 0, T0)
        core.finish(query_id, T0 + millis / 1000, "adaptive")
    count, p50, p95, p99, worst = core.latency()
    assert count == 100
    # 3 significant figures: within 0.1 % of the exact nearest-rank values.
    assert p50 == pytest.approx(0.050, rel=1e-3)
    assert p95 == pytest.approx(0.095, rel=1e-3)
    assert p99 == pytest.approx(0.099, rel=1e-3)
    assert worst == pytest.approx(0.100, rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"timeout": 0.0}, InvalidArgumentError, "timeout"),
        ({"timeout": -1.0}, InvalidArgumentError, "timeout"),
        ({"timeout": math.nan}, InvalidArgumentError, "timeout"),
        ({"timeout": 1e12}, InvalidArgumentError, "timeout"),
        ({"timeout": "1"}, InvalidArgumentTypeError, "timeout"),
        ({"max_results": 0}, InvalidArgumentError, "max_results"),
        ({"max_results": 10**9}, InvalidArgumentError, "max_results"),
        ({"max_results": True}, InvalidArgumentTypeError, "max_results"),
        ({"max_results": 2.0}, InvalidArgumentTypeError, "max_results"),
        ({"expected_peers": -1}, InvalidArgumentError, "expected_peers"),
        ({"now": -5.0}, InvalidArgumentError, "now"),
        ({"now": math.inf}, InvalidArgumentError, "now"),
    ],
)
def test_register_rejects_bad_arguments_naming_them(
    core_module: ModuleType, kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    core = core_module.QueryCore()
    arguments: dict[str, object] = {
        "timeout": 1.0,
        "max_results": 5,
        "expected_peers": 1,
        "now": T0,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=name) as caught:
        core.register(**arguments)
    assert isinstance(caught.value, DhtQueryError)
    assert core.in_flight == 0 and core.counters()[0] == 0


def test_methods_reject_wrong_query_id_type(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(1.0, 5, 1, T0)
    bad = str(query_id)
    calls = [
        lambda: core.offer(bad, "p", "k", 1, T0),
        lambda: core.offer_many(bad, "p", [], T0),
        lambda: core.peer_done(bad, "p", True),
        lambda: core.state(bad),
        lambda: core.drain(bad),
        lambda: core.finish(bad, T0),
        lambda: core.cancel(bad, T0),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentTypeError, match="query_id"):
            call()
    assert core.in_flight == 1


def test_offer_rejects_bad_key_and_unhashable_peer(core_module: ModuleType) -> None:
    core = core_module.QueryCore()
    query_id = core.register(1.0, 5, 1, T0)
    core.offer(query_id, "p", "kept", 1, T0)
    with pytest.raises(InvalidArgumentTypeError, match="key"):
        core.offer(query_id, "p", 17, 1, T0)
    with pytest.raises(InvalidArgumentTypeError, match="peer"):
        core.offer(query_id, ["unhashable"], "k", 1, T0)
    with pytest.raises(InvalidArgumentTypeError, match="ok"):
        core.peer_done(query_id, "p", 1)
    assert [record[0] for record in core.drain(query_id)] == [1]


def test_grace_must_be_finite_and_not_negative(core_module: ModuleType) -> None:
    with pytest.raises(InvalidArgumentError, match="grace"):
        core_module.QueryCore(grace=-1.0)
    with pytest.raises(InvalidArgumentError, match="grace"):
        core_module.QueryCore(grace=math.inf)
    assert core_module.QueryCore(grace=0.0).grace == 0.0

"""PeerBook: every peer's RTT estimator and reputation record in the core.
Each test runs against both cores; a property test drives both with the
same random operations and compares every answer; others pin that the book
gives the numbers of dht/rtt.py's RttEstimator and dht/reputation.py's
PeerStats, to the bit."""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhtquery.dht.reputation import PeerStats, Reputation
from dhtquery.dht.rtt import RttEstimator
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError

from .conftest import require_rust

NOW = 1_000.0
A = ("10.0.0.1", 4000)
B = ("10.0.0.1", 4001)
C = ("10.0.0.2", 4000)


@pytest.fixture
def book(core_module: ModuleType) -> Any:
    return core_module.PeerBook()


# -- estimators ---------------------------------------------------------------


def test_an_estimator_gives_rtt_estimators_numbers_to_the_bit(book: Any) -> None:
    reference = RttEstimator(max_rto=10.0)
    samples = [0.1, 0.25, 0.003, 1.7, 0.04, 12.0, 0.0, 0.33]
    for i, sample in enumerate(samples):
        book.observe(A, sample)
        reference.observe(sample)
        if i % 3 == 2:
            book.back_off(A, None, None)
            reference.timed_out()
        srtt, rttvar, rto, base_rto = book.estimator_state(A)
        assert (srtt, rttvar, rto, base_rto) == (
            reference.srtt,
            reference.rttvar,
            reference.rto,
            reference.base_rto,
        )


def test_a_peer_never_measured_waits_rfc_6298s_first_rto(book: Any) -> None:
    assert book.rto(A) == 1.0
    assert book.estimator_state(A) == (None, 0.0, 1.0, 1.0)
    assert book.timing(C) == (1.0, 1.0, False)


def test_back_offs_of_one_burst_of_timeouts_count_once(book: Any) -> None:
    book.back_off(A, 1.0, 2.0)
    book.back_off(A, 1.5, 2.5)  # sent before the last back-off: no change
    assert book.rto(A) == 2.0
    book.back_off(A, 3.0, 3.0)
    assert book.rto(A) == 4.0


def test_srtt_of_an_unmeasured_port_is_its_ips_and_off_with_rtt_by_ip(book: Any) -> None:
    book.observe(A, 0.05)
    assert book.srtt(A) == 0.05
    assert book.srtt(B) == 0.05  # another port of the same IP address
    assert book.srtt(C) is None
    assert book.srtts([A, B, C]) == [0.05, 0.05, None]
    book.rtt_by_ip = False
    assert book.srtt(B) is None


def test_first_rto_is_the_ips_then_the_networks_then_the_cap(core_module: ModuleType) -> None:
    book = core_module.PeerBook(first_rto_samples=2)
    assert book.first_rto(C) == 1.0
    book.answered(A, 0.01, True, NOW)
    assert book.first_rto(B) == 0.05  # A's base RTO, floored
    assert book.first_rto(C) == 1.0  # one sample: not yet the network's
    book.answered(B, 0.02, True, NOW)
    assert book.network_samples == 2
    assert book.first_rto(C) == book.network_rto
    reference = RttEstimator(max_rto=1.0)
    reference.observe(0.01)
    reference.observe(0.02)
    assert book.network_rto == reference.base_rto


def test_timing_gives_the_rto_and_when_a_measured_peer_is_overdue(book: Any) -> None:
    book.observe(A, 0.1)
    book.back_off(A, None, None)
    rto, due, measured = book.timing(A)
    assert (rto, due, measured) == (
        book.estimator_state(A)[2],
        book.estimator_state(A)[3],
        True,
    )
    assert due < rto


def test_estimators_are_bounded_oldest_out_and_stay_in_their_ips_list(
    core_module: ModuleType,
) -> None:
    book = core_module.PeerBook(peers_kept=2)
    book.observe(A, 0.2)
    book.rto(("10.0.0.3", 1))
    book.rto(("10.0.0.4", 1))  # a third: A's estimator leaves
    assert book.estimators == 2
    assert not book.has_estimator(A)
    # its IP's list is bounded too (two IPs): 10.0.0.1's left with A
    assert book.srtt(B) is None
    assert book.rto(A) == 1.0  # measured again from the first RTO


def test_a_forgotten_estimator_still_answers_for_its_ip(book: Any) -> None:
    book.observe(A, 0.2)
    assert book.forget_estimator(A)
    assert not book.forget_estimator(A)
    assert book.srtt(A) == 0.2  # (the IP's list keeps it, frozen)
    assert book.srtt(B) == 0.2


def test_only_the_first_rtt_per_ip_estimators_of_an_ip_answer_for_it(
    core_module: ModuleType,
) -> None:
    book = core_module.PeerBook(rtt_per_ip=1)
    book.rto(A)
    book.observe(B, 0.3)  # the IP's second: not listed
    assert book.srtt(("10.0.0.1", 9)) is None


def test_a_negative_sample_and_bad_arguments_raise(book: Any, core_module: ModuleType) -> None:
    with pytest.raises(InvalidArgumentError, match="sample"):
        book.observe(A, -0.001)
    with pytest.raises(InvalidArgumentTypeError, match="address"):
        book.observe("not an address", 0.1)
    with pytest.raises(InvalidArgumentError, match="max_rto"):
        core_module.PeerBook(max_rto=0.01)
    with pytest.raises(InvalidArgumentTypeError, match="max_rto"):
        core_module.PeerBook(max_rto="1")
    with pytest.raises(InvalidArgumentError, match="peers_kept"):
        core_module.PeerBook(peers_kept=0)
    with pytest.raises(InvalidArgumentError, match="first_rto_cap"):
        core_module.PeerBook(first_rto_cap=0.0)


# -- records ------------------------------------------------------------------


def test_a_record_scores_as_peer_stats_to_the_bit(book: Any) -> None:
    stats = PeerStats()
    book.success(A, 0.2, NOW)
    book.success(A, 1.5, NOW + 1)
    book.failure(A)
    book.provided(A, 3)
    book.invalid(A)
    (
        stats.successes,
        stats.failures,
        stats.rtt_ms,
        stats.provided,
        stats.last_seen,
        stats.consecutive_failures,
        stats.invalid,
    ) = book.stats(A)
    assert (stats.successes, stats.failures, stats.provided, stats.invalid) == (2, 2, 3, 1)
    assert stats.rtt_ms == 0.7 * 200.0 + (1 - 0.7) * 1500.0
    for later in (NOW, NOW + 1, NOW + 7200.5):
        assert book.score(A, later) == stats.score(later)
    assert book.score(C, NOW) == PeerStats().score(NOW) == 0.75
    assert C not in book  # (score makes no record)
    assert book.scores([A, C], NOW + 60) == [stats.score(NOW + 60), 0.75]


class _Host(str):
    """A host that is a str subclass: equal to its text, compared by Python."""


def test_a_peer_is_found_by_any_address_equal_to_its_own(book: Any) -> None:
    # (the core decides equal exact (str, int) tuples itself and leaves the
    # rest to Python's ==: the answers are a dict's either way)
    book.success(("10.0.0.1", 4000), 0.2, NOW)
    host = "".join(["10.0.0.", "1"])  # (equal, not the same object)
    equal = [
        (host, 4000),
        (host, 4000.0),  # (a float equal to the port)
        (host, True * 4000),
        (_Host(host), 4000),
        tuple([host, 4000]),
    ]
    for answered, address in enumerate(equal, 1):
        assert address in book and book.successes(address) == answered, address
        book.answered(address, 0.2, True, NOW)
    assert book.successes(("10.0.0.1", 4000)) == 1 + len(equal)
    assert len(book) == 1
    different = [("10.0.0.1", 4001), ("10.0.0.10", 4000), ("10.0.0.1",), ("10.0.0.1", 4000, 0, 0)]
    for address in different:
        assert address not in book, address
    # a peer named by a port of 1 and by True is one peer, as in a dict
    book.success(("h", 1), 0.1, NOW)
    assert book.successes(("h", True)) == 1
    # beyond 64 bits, and with a lone surrogate, Python decides
    book.success(("h", 2**70), 0.1, NOW)
    assert ("h", 2**70) in book and ("h", 2**70 + 1) not in book
    book.success(("\udc80", 5), 0.1, NOW)
    assert ("\udc80", 5) in book and ("\udc81", 5) not in book


def test_records_are_bounded_oldest_out_first(core_module: ModuleType) -> None:
    book = core_module.PeerBook(max_peers=3)
    for peer in ("a", "b", "c"):
        book.success(peer, 0.1, NOW)
    assert book.failure("d") == 1  # a fourth: "a" leaves
    assert len(book) == 3
    assert "a" not in book and "d" in book
    assert book.successes("b") == 1


def test_answered_is_a_sample_the_networks_sample_and_a_success(book: Any) -> None:
    book.answered(A, 0.1, True, NOW)
    assert book.srtt(A) == 0.1
    assert book.network_samples == 1
    assert book.stats(A)[:2] == (1, 0)
    book.answered(A, -1.0, False, NOW)  # retransmitted: no sample; bad shape
    assert book.network_samples == 1
    assert book.stats(A)[:2] == (1, 1)
    assert book.stats(A)[5] == 1  # a failure in a row


def test_answered_late_learns_and_clears_the_failures_in_a_row(book: Any) -> None:
    assert book.timed_out(A, 1.0, 2.0, False) == 1
    assert book.timed_out(A, 3.0, 3.0, False) == 2
    book.answered_late(A, 0.2)
    assert book.srtt(A) == 0.2
    assert book.stats(A)[5] == 0
    assert book.network_samples == 1


def test_a_timeout_backs_off_and_counts_unless_the_peer_is_stock(book: Any) -> None:
    assert book.timed_out(A, -1.0, NOW, False) == 1
    assert book.rto(A) == 2.0
    assert book.timed_out(A, -1.0, NOW, True) == -1  # known stock: nothing
    assert book.timed_out(A, -1.0, NOW, None) == 2  # never answered: counts
    book.success(A, 0.1, NOW)
    assert book.timed_out(A, -1.0, NOW, None) == -1  # answered before: stock
    assert book.stats(A)[1] == 2


# -- the facades ----------------------------------------------------------------


def test_reputation_is_a_facade_over_the_book(core_module: ModuleType) -> None:
    book = core_module.PeerBook()
    reputation = Reputation(book=book)
    reputation.success(A, 0.1, NOW)
    reputation.provided(A, 2)
    assert book.score(A, NOW) == reputation.score(A, NOW)
    assert reputation.stats(A).provided == 2
    assert A in reputation and len(reputation) == 1


# -- both cores, the same random operations -------------------------------------

ADDRESSES = [(f"10.0.0.{i // 3}", 4000 + i % 3) for i in range(8)]
_address = st.sampled_from(ADDRESSES)
_rtt = st.one_of(st.just(-1.0), st.floats(0.0, 3.0), st.sampled_from([0.0, 0.05, 0.999]))
_time = st.floats(0.0, 20_000.0)
OPERATIONS = st.one_of(
    st.tuples(st.just("answered"), _address, _rtt, st.booleans(), _time),
    st.tuples(st.just("answered_late"), _address, _rtt),
    st.tuples(st.just("timed_out"), _address, _rtt, _time, st.sampled_from([True, False, None])),
    st.tuples(
        st.just("back_off"), _address, st.one_of(st.none(), _time), st.one_of(st.none(), _time)
    ),
    st.tuples(st.just("observe"), _address, st.floats(0.0, 3.0)),
    st.tuples(st.just("invalid"), _address),
    st.tuples(st.just("provided"), _address, st.integers(0, 12)),
    st.tuples(st.just("failure"), _address),
    st.tuples(st.just("success"), _address, _rtt, _time),
    st.tuples(st.just("scores"), st.lists(_address, max_size=5), _time),
    st.tuples(st.just("srtts"), st.lists(_address, max_size=5)),
    st.tuples(st.just("rto"), _address),
    st.tuples(st.just("first_rto"), _address),
    st.tuples(st.just("timing"), _address),
    st.tuples(st.just("stats"), _address),
    st.tuples(st.just("successes"), _address),
    st.tuples(st.just("score"), _address, _time),
    st.tuples(st.just("estimator_state"), _address),
    st.tuples(st.just("forget_estimator"), _address),
    st.tuples(st.just("has_estimator"), _address),
    st.tuples(st.just("__contains__"), _address),
)


def _same(a: Any, b: Any) -> bool:
    # (bit for bit: NaN never comes up, -0.0 would be told from 0.0)
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(
    operations=st.lists(OPERATIONS, max_size=60),
    bounds=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(0, 3), st.integers(0, 4)),
    rtt_by_ip=st.booleans(),
)
def test_both_cores_give_the_same_answers_to_the_same_operations(
    operations: list[tuple[Any, ...]], bounds: tuple[int, int, int, int], rtt_by_ip: bool
) -> None:
    rust = require_rust()
    python = importlib.import_module("dhtquery.query._core_py")
    kept, max_peers, per_ip, samples = bounds
    books = [
        module.PeerBook(
            max_rto=2.0,
            peers_kept=kept,
            max_peers=max_peers,
            rtt_per_ip=per_ip,
            first_rto_samples=samples,
            first_rto_cap=0.5,
        )
        for module in (rust, python)
    ]
    for book in books:
        book.rtt_by_ip = rtt_by_ip
    for name, *args in operations:
        answers = [getattr(book, name)(*args) for book in books]
        assert _same(answers[0], answers[1]), (name, args, answers)
        for address in ADDRESSES:
            assert _same(books[0].srtt(address), books[1].srtt(address))
            assert _same(books[0].score(address, NOW), books[1].score(address, NOW))
        assert len(books[0]) == len(books[1])
        assert books[0].estimators == books[1].estimators
        assert books[0].network_samples == books[1].network_samples
        assert _same(books[0].network_rto, books[1].network_rto)


# -- the lookup's core reading the book -------------------------------------------

OWN = bytes(20)
KEY = b"\x80" + bytes(19)


class _Methods:
    """The book seen through its methods alone (a lookup's core then calls
    them as it would any object's)."""

    def __init__(self, book: Any) -> None:
        self.srtt = book.srtt
        self.scores = book.scores


@settings(max_examples=100, deadline=None)
@given(
    samples=st.lists(
        st.tuples(st.integers(0, 39), st.floats(0.001, 0.5), st.booleans()), max_size=40
    ),
    seed=st.integers(0, 2**64 - 1),
    table=st.lists(st.integers(0, 39), min_size=1, max_size=20, unique=True),
    answers=st.lists(st.lists(st.integers(0, 39), max_size=6), max_size=6),
)
def test_a_lookup_reading_the_book_answers_as_one_calling_it_in_both_cores(
    samples: list[tuple[int, float, bool]],
    seed: int,
    table: list[int],
    answers: list[list[int]],
) -> None:
    rust = require_rust()
    python = importlib.import_module("dhtquery.query._core_py")
    ids = [(n + 1).to_bytes(20, "big") for n in range(40)]
    addresses = [(f"10.0.{n % 7}.1", 4000 + n) for n in range(40)]
    cores = []
    for module in (rust, python):
        book = module.PeerBook()
        for n, rtt, ok in samples:
            book.answered(addresses[n], rtt, ok, NOW)
        for peers in (book, _Methods(book)):
            cores.append(
                module.LookupCore(
                    OWN, KEY, 2, 8, 3, True, 0.75, seed, peers, lambda: NOW + 5.0, bool, bool
                )
            )
    candidates = ([ids[n] for n in table], [addresses[n] for n in table])
    steps = [core.start(candidates, 0) for core in cores]
    assert all(step == steps[0] for step in steps), steps
    for contacts in answers:
        asked = steps[0][2]
        if not asked:
            break
        named = [(ids[n], *addresses[n]) for n in contacts]
        steps = [core.answered(asked[0][0], named, False, False) for core in cores]
        assert all(step == steps[0] for step in steps), steps


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("answered"), st.integers(0, 39), st.floats(0.02, 0.5), st.booleans()),
            st.tuples(st.just("forget"), st.integers(0, 39)),
            st.tuples(st.just("by_ip"), st.booleans()),
            st.tuples(st.just("start"), st.integers(0, 2**64 - 1)),
        ),
        max_size=40,
    ),
    table=st.lists(st.integers(0, 39), min_size=1, max_size=20, unique=True),
)
def test_candidates_made_once_read_the_book_as_it_is_at_each_start_in_both_cores(
    ops: list[tuple[Any, ...]], table: list[int]
) -> None:
    # One Candidates for every lookup (the routing table's, kept until it
    # changes) while the book changes: estimators made, forgotten, pushed
    # out by its bound (their places reused), the IP fallback switched.
    # Each start must answer as a start from the lists, read afresh.
    rust = require_rust()
    python = importlib.import_module("dhtquery.query._core_py")
    ids = [(n + 1).to_bytes(20, "big") for n in range(40)]
    addresses = [(f"10.0.{n % 7}.1", 4000 + n) for n in range(40)]
    lists = ([ids[n] for n in table], [addresses[n] for n in table])
    starts = []
    for module in (rust, python):
        book = module.PeerBook(peers_kept=12)
        snapshot = module.Candidates(*lists)
        answers = []
        for op in ops:
            if op[0] == "answered":
                book.answered(addresses[op[1]], op[2], op[3], NOW)
            elif op[0] == "forget":
                book.forget_estimator(addresses[op[1]])
            elif op[0] == "by_ip":
                book.rtt_by_ip = op[1]
            else:
                args = (OWN, KEY, 2, 8, 3, True, 0.75, op[1], book, lambda: NOW + 5.0, bool, bool)
                answer = module.LookupCore(*args).start(snapshot, 0)
                assert answer == module.LookupCore(*args).start(lists, 0)
                answers.append(answer)
        starts.append(answers)
    assert starts[0] == starts[1]


def test_candidates_find_estimators_made_forgotten_or_replaced_since_the_last_start(
    core_module: ModuleType,
) -> None:
    # (each address an IP of its own: no per-IP fallback hides a stale slot)
    ids = [(n + 1).to_bytes(20, "big") for n in range(10)]
    addresses = [(f"10.0.{n}.1", 4000 + n) for n in range(10)]
    book = core_module.PeerBook(peers_kept=12)
    snapshot = core_module.Candidates(ids, addresses)

    def same_start() -> None:
        args = (OWN, KEY, 2, 8, 3, True, 0.75, 1, book, lambda: NOW + 5.0, bool, bool)
        from_snapshot = core_module.LookupCore(*args).start(snapshot, 0)
        assert from_snapshot == core_module.LookupCore(*args).start((ids, addresses), 0)

    same_start()  # (no estimator yet: none found, and that kept)
    for n, address in enumerate(addresses):  # made since
        book.answered(address, 0.02 + 0.05 * (9 - n), True, NOW)
    same_start()
    # the fastest two of the k closest forgotten (still their IPs' estimators)
    for n in (6, 7):
        book.forget_estimator(addresses[n])
    same_start()
    book.rtt_by_ip = False  # (and no longer read as their IPs')
    same_start()
    book.rtt_by_ip = True
    for n in (6, 7):  # their places taken by others
        book.answered((f"10.9.{n}.1", 5000 + n), 0.01, True, NOW)
    same_start()
    for n in (6, 7):  # made again, at other places
        book.answered(addresses[n], 0.03 * n, True, NOW)
    same_start()

"""``LookupCore``, the decisions of a streaming lookup: every test runs
against both cores (ids ``rs`` / ``py``), and a property test drives both
with the same random operations and compares every answer."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import LookupFailure, LookupStep, _core_py
from dhtquery.query.types import HEDGE, RTT_BAND
from tests.conftest import require_rust, typed_form

KEY = bytes(20)
OWN = b"\xff" * 20
FAIR = 0.75


def node(n: int, size: int = 20) -> bytes:
    """An id at XOR distance n from KEY (zero)."""
    return n.to_bytes(size, "big")


def addr(n: int) -> tuple[str, int]:
    return ("10.0.0.1", 4000 + n)


class World:
    """What the lookup's callbacks read: SRTTs, failures, scores; each call
    counted."""

    def __init__(self) -> None:
        self.srtts: dict[Any, float] = {}
        self.failed: set[Any] = set()
        self.score: dict[Any, float] = {}
        self.calls = {"srtt": 0, "failed_recently": 0, "scores": 0, "recently_failed": 0}

    def srtt(self, address: Any) -> float | None:
        self.calls["srtt"] += 1
        return self.srtts.get(address)

    def failed_recently(self, address: Any) -> bool:
        self.calls["failed_recently"] += 1
        return address in self.failed

    def scores(self, addresses: list[Any], now: float) -> list[float]:
        self.calls["scores"] += 1
        return [self.score.get(a, FAIR) for a in addresses]

    def clock(self) -> float:
        return 0.0

    def recently_failed(self) -> bool:
        self.calls["recently_failed"] += 1
        return bool(self.failed)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def make(core_module: ModuleType, world: World) -> Any:
    def make(**overrides: Any) -> Any:
        args: dict[str, Any] = {
            "own_id": OWN,
            "key": KEY,
            "alpha": 3,
            "ksize": 20,
            "quorum": 3,
            "adaptive": True,
            "fair_score": FAIR,
            "seed": 7,
            "peers": world,
            "clock": world.clock,
            "failed_recently": world.failed_recently,
            "recently_failed": world.recently_failed,
        }
        args.update(overrides)
        return core_module.LookupCore(*args.values())

    return make


def table(*numbers: int) -> tuple[list[bytes], list[Any]]:
    return ([node(n) for n in numbers], [addr(n) for n in numbers])


def asked(answer: Any) -> list[bytes]:
    return [node_id for node_id, _ in answer[2]]


def contact(n: int) -> list[Any]:
    host, port = addr(n)
    return [node(n), host, port]


# -- the vocabulary ----------------------------------------------------------


def test_steps_and_failures_are_exported_from_dhtquery_query() -> None:
    import dhtquery.query as query

    assert {"LookupStep", "LookupFailure"} <= set(query.__all__)
    assert [s.name for s in LookupStep] == [
        "ASK", "QUORUM", "EXHAUSTED", "ADAPTIVE", "GIVE_UP", "ENDED"
    ]  # fmt: skip
    assert [f.name for f in LookupFailure] == ["BAD_RESPONSE", "STOCK", "TIMEOUT"]


def test_both_cores_export_lookupcore(core_module: ModuleType) -> None:
    assert "LookupCore" in core_module.__all__


def test_steps_are_the_types_members(make: Any) -> None:
    step, depth, asks = make().start(table(1, 2), 0)
    assert type(step) is LookupStep
    assert step is LookupStep.ASK
    assert (type(depth), type(asks)) == (int, list)


def test_splitmix64_draws_the_reference_sequence() -> None:
    # (the first outputs of splitmix64 seeded 0, as in Vigna's C reference)
    core = _core_py.LookupCore(
        OWN, KEY, 3, 20, 3, True, FAIR, 0, World(), float, bool, lambda: False
    )
    assert [core._draw() for _ in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


# -- start --------------------------------------------------------------------


def test_start_with_quorum_holders_already_is_quorum_at_depth_zero(make: Any) -> None:
    assert make(quorum=1).start(table(1, 2), 1) == (LookupStep.QUORUM, 0, [])


def test_start_asks_alpha_closest_by_xor_distance(make: Any) -> None:
    answer = make().start(table(9, 3, 5, 1, 7), 0)
    assert answer[0] is LookupStep.ASK
    assert answer[2] == [(node(1), addr(1)), (node(3), addr(3)), (node(5), addr(5))]


def test_start_asks_no_more_than_the_quorum_still_needs(make: Any) -> None:
    assert asked(make(quorum=2).start(table(1, 2, 3), 1)) == [node(1)]
    assert asked(make(quorum=5).start(table(1, 2, 3, 4), 3)) == [node(1), node(2)]


def test_start_keeps_only_the_k_closest(make: Any) -> None:
    core = make(ksize=4)
    core.start(table(*range(1, 200)), 0)
    assert [core.position(node(n))[1] for n in (1, 4, 5, 150)] == [0, 3, -1, -1]


def test_start_with_no_candidates_is_exhausted(make: Any) -> None:
    assert make().start(([], []), 0) == (LookupStep.EXHAUSTED, 0, [])


def test_ids_read_as_big_endian_integers_whatever_their_length(make: Any) -> None:
    # a 2-byte id 0x0005 is nearer a zero key than the 20-byte id 6
    ids = [node(6), node(5, size=2), node(7, size=64)]
    answer = make().start((ids, [addr(6), addr(5), addr(7)]), 0)
    assert asked(answer) == [node(5, size=2), node(6), node(7, size=64)]


def test_start_asks_srtt_once_per_candidate_kept(make: Any, world: World) -> None:
    make(ksize=5).start(table(*range(1, 50)), 0)
    assert world.calls["srtt"] == 5
    assert world.calls["failed_recently"] == 0


def test_start_refuses_duplicate_ids_and_mismatched_lists(make: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="twice"):
        make().start(([node(1), node(1)], [addr(1), addr(1)]), 0)
    with pytest.raises(InvalidArgumentError, match="ids but"):
        make().start(([node(1)], []), 0)
    with pytest.raises(InvalidArgumentTypeError, match="candidates"):
        make().start([[node(1)], [addr(1)]], 0)
    with pytest.raises(InvalidArgumentTypeError, match="lists"):
        make().start(((node(1),), (addr(1),)), 0)


def test_start_from_candidates_answers_as_from_their_lists(
    core_module: ModuleType, make: Any, world: World
) -> None:
    world.srtts = {addr(n): 0.02 * (n % 5) for n in range(0, 40, 3)}
    for numbers in ([], [9, 3, 5, 1, 7], list(range(40, 0, -1))):
        lists = table(*numbers)
        snapshot = core_module.Candidates(*lists)
        assert len(snapshot) == len(numbers)
        for seed in range(3):
            assert make(seed=seed).start(snapshot, 0) == make(seed=seed).start(lists, 0)


def test_candidates_refuse_what_start_refuses(core_module: ModuleType) -> None:
    make = core_module.Candidates
    with pytest.raises(InvalidArgumentError, match="twice"):
        make([node(1), node(1)], [addr(1), addr(1)])
    with pytest.raises(InvalidArgumentError, match="ids but"):
        make([node(1)], [])
    with pytest.raises(InvalidArgumentTypeError, match="lists"):
        make((node(1),), (addr(1),))
    with pytest.raises(InvalidArgumentError, match="1 to 64 bytes"):
        make([b""], [addr(1)])
    with pytest.raises(InvalidArgumentTypeError, match="bytes"):
        make(["abc"], [addr(1)])


def test_one_cores_candidates_are_refused_by_the_other() -> None:
    rust = require_rust()
    lists = table(1, 2)
    args = (OWN, KEY, 3, 20, 3, True, FAIR, 7, World(), float, bool, lambda: False)
    with pytest.raises(InvalidArgumentTypeError, match="Candidates"):
        rust.LookupCore(*args).start(_core_py.Candidates(*lists), 0)
    with pytest.raises(InvalidArgumentTypeError, match="Candidates"):
        _core_py.LookupCore(*args).start(rust.Candidates(*lists), 0)


def test_candidates_with_an_unhashable_address_raise_where_the_book_reads_it(
    core_module: ModuleType,
) -> None:
    book = core_module.PeerBook()
    book.answered(addr(1), 0.02, True, 0.0)
    snapshot = core_module.Candidates([node(1), node(2)], [addr(1), ["10.0.0.1", 4002]])
    core = core_module.LookupCore(OWN, KEY, 3, 20, 3, True, FAIR, 7, book, float, bool, bool)
    with pytest.raises(TypeError):
        core.start(snapshot, 0)


@pytest.mark.parametrize("bad", [b"", bytes(65)])
def test_an_id_of_0_or_over_64_bytes_is_refused(make: Any, bad: bytes) -> None:
    with pytest.raises(InvalidArgumentError, match="1 to 64 bytes"):
        make().start(([bad], [addr(1)]), 0)


def test_an_id_not_bytes_is_refused(make: Any) -> None:
    with pytest.raises(InvalidArgumentTypeError, match="bytes"):
        make().start((["abc"], [addr(1)]), 0)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("alpha", 0, InvalidArgumentError),
        ("ksize", True, InvalidArgumentTypeError),
        ("quorum", 70_000, InvalidArgumentError),
        ("adaptive", 1, InvalidArgumentTypeError),
        ("fair_score", 1, InvalidArgumentTypeError),
        ("fair_score", 0.0, InvalidArgumentError),
        ("seed", -1, InvalidArgumentError),
        ("seed", 2**64, InvalidArgumentError),
        ("seed", 1.5, InvalidArgumentTypeError),
        ("peers", None, InvalidArgumentTypeError),
        ("clock", 3, InvalidArgumentTypeError),
        ("key", "k", InvalidArgumentTypeError),
    ],
)
def test_bad_arguments_raise_naming_them(make: Any, name: str, value: Any, error: type) -> None:
    with pytest.raises(error, match="node id" if name == "key" else name):
        make(**{name: value})


def test_the_largest_seed_is_taken(make: Any) -> None:
    assert make(seed=2**64 - 1).start(table(1), 0)[0] is LookupStep.ASK


# -- answers --------------------------------------------------------------------


def test_an_answer_learns_its_contacts_one_level_deeper(make: Any) -> None:
    core = make(alpha=1, quorum=1)
    assert asked(core.start(table(10), 0)) == [node(10)]
    step, depth, asks = core.answered(node(10), [contact(2), contact(3)], False, False)
    assert (step, depth, asks) == (LookupStep.ASK, 1, [(node(2), addr(2))])
    assert core.position(node(2)) == (2, 0)
    assert core.answered(node(2), [contact(1)], False, False)[:2] == (LookupStep.ASK, 2)
    assert core.position(node(1)) == (3, 0)


def test_an_answer_never_learns_this_node_or_one_known(make: Any) -> None:
    core = make(alpha=1, quorum=1)
    core.start(table(10), 0)
    answer = core.answered(node(10), [[OWN, "10.0.0.9", 1], contact(10)], False, False)
    assert answer == (LookupStep.EXHAUSTED, 1, [])


def test_contacts_given_as_tuples_are_read_too(make: Any) -> None:
    core = make(alpha=1, quorum=1)
    core.start(table(10), 0)
    assert asked(core.answered(node(10), [tuple(contact(4))], False, False)) == [node(4)]


def test_a_malformed_contact_is_refused(make: Any) -> None:
    core = make()
    core.start(table(10), 0)
    with pytest.raises(InvalidArgumentTypeError, match="contact"):
        core.answered(node(10), [[node(1), "h"]], False, False)


def test_quorum_holders_end_the_lookup_at_the_last_ones_depth(make: Any) -> None:
    core = make(quorum=2)
    core.start(table(1, 2, 3), 0)
    # (one holder more is wanted, one request is out: nobody more is asked)
    assert core.answered(node(1), [], True, False) == (LookupStep.ASK, 1, [])
    assert core.answered(node(2), [], True, False) == (LookupStep.QUORUM, 1, [])
    assert core.holders == 2


def test_an_answer_after_the_end_is_ended_with_its_depth(make: Any) -> None:
    core = make(alpha=1)
    core.start(table(10), 0)
    core.answered(node(10), [contact(2)], False, False)
    assert core.answered(node(2), [contact(1)], True, True) == (LookupStep.ENDED, 2, [])
    assert core.position(node(1)) == (1, -1)  # not learned: the query had ended


def test_all_answered_and_none_left_is_exhausted(make: Any) -> None:
    core = make()
    core.start(table(1, 2), 0)
    assert core.answered(node(1), [], False, False) == (LookupStep.ASK, 1, [])
    assert core.answered(node(2), [], False, False) == (LookupStep.EXHAUSTED, 1, [])
    assert core.in_flight == 0


# -- failures and late requests -----------------------------------------------


def test_a_timeout_leaves_the_k_closest_and_the_next_is_asked(make: Any) -> None:
    core = make(alpha=1, quorum=1)
    core.start(table(1, 2), 0)
    assert core.failed(node(1), LookupFailure.TIMEOUT, False) == (
        LookupStep.ASK, 0, [(node(2), addr(2))]
    )  # fmt: skip
    assert core.position(node(1)) == (1, -1)


@pytest.mark.parametrize(
    ("adaptive", "end"), [(True, LookupStep.ADAPTIVE), (False, LookupStep.EXHAUSTED)]
)
def test_timeouts_make_an_adaptive_end_only_when_adaptive(
    make: Any, adaptive: bool, end: LookupStep
) -> None:
    core = make(adaptive=adaptive)
    core.start(table(1, 2), 0)
    core.answered(node(1), [], False, False)
    assert core.failed(node(2), LookupFailure.TIMEOUT, False) == (end, 0, [])


def test_a_bad_response_fails_the_peer_but_not_by_its_rto(make: Any) -> None:
    core = make()
    core.start(table(1), 0)
    assert core.failed(node(1), LookupFailure.BAD_RESPONSE, False) == (
        LookupStep.EXHAUSTED, 0, []
    )  # fmt: skip
    assert core.position(node(1))[1] == -1


def test_a_stock_peer_is_asked_again(make: Any) -> None:
    core = make(alpha=1)
    core.start(table(1, 2), 0)
    assert asked(core.failed(node(1), LookupFailure.STOCK, False)) == [node(1)]
    assert core.position(node(1)) == (1, 0)


def test_a_failure_after_the_end_asks_nobody(make: Any) -> None:
    core = make(alpha=1)
    core.start(table(1, 2), 0)
    assert core.failed(node(1), LookupFailure.TIMEOUT, True) == (LookupStep.ENDED, 0, [])


@pytest.mark.parametrize("mode", [3, -1, True, "timeout"])
def test_a_failure_mode_not_a_lookupfailure_is_refused(make: Any, mode: Any) -> None:
    core = make()
    core.start(table(1), 0)
    with pytest.raises((InvalidArgumentError, InvalidArgumentTypeError), match="mode"):
        core.failed(node(1), mode, False)


def test_an_overdue_request_makes_room_for_the_next_once(make: Any) -> None:
    core = make(alpha=1)
    core.start(table(1, 2, 3), 0)
    assert asked(core.overdue(node(1), addr(1))) == [node(2)]
    assert core.overdue(node(1), addr(1)) == (LookupStep.ASK, 0, [])
    assert core.in_flight == 1
    # its late answer still counts, without freeing a place twice
    assert core.answered(node(1), [], False, False) == (LookupStep.ASK, 1, [])
    assert core.in_flight == 1


def test_late_peers_are_given_up_once_a_holder_answered(make: Any) -> None:
    core = make(alpha=2, quorum=3)
    core.start(table(1, 2), 0)
    core.overdue(node(2), addr(2))
    assert core.answered(node(1), [], True, False) == (
        LookupStep.GIVE_UP, 1, [(node(2), addr(2))]
    )  # fmt: skip


@pytest.mark.parametrize("adaptive", [True, False])
def test_late_peers_are_waited_for_without_a_holder_or_adaptive(make: Any, adaptive: bool) -> None:
    core = make(alpha=2, quorum=3, adaptive=adaptive)
    core.start(table(1, 2), 0)
    core.overdue(node(2), addr(2))
    holder = not adaptive
    assert core.answered(node(1), [], holder, False) == (LookupStep.ASK, 1, [])


# -- peers that failed lately ---------------------------------------------------


def test_peers_failed_lately_are_skipped_then_a_last_resort(make: Any, world: World) -> None:
    world.failed = {addr(1)}
    core = make(alpha=1, quorum=1)
    assert asked(core.start(table(1, 2), 0)) == [node(2)]
    # nobody else, no holder: the one that failed lately is asked after all
    assert asked(core.answered(node(2), [], False, False)) == [node(1)]


def test_a_learned_contact_failed_lately_is_skipped(make: Any, world: World) -> None:
    world.failed = {addr(2)}
    core = make(alpha=1, quorum=2)
    core.start(table(10), 0)
    assert asked(core.answered(node(10), [contact(2), contact(3)], False, False)) == [node(3)]
    assert core.position(node(2)) == (2, -1)


def test_a_candidate_that_failed_after_start_leaves_its_place(make: Any, world: World) -> None:
    core = make(alpha=1, quorum=1)
    core.start(table(1, 2, 3), 0)
    world.failed = {addr(2)}
    assert asked(core.failed(node(1), LookupFailure.TIMEOUT, False)) == [node(3)]


def test_no_failure_lately_asks_failed_recently_nothing(make: Any, world: World) -> None:
    core = make(alpha=1)
    core.start(table(*range(1, 30)), 0)
    core.answered(node(1), [contact(40), contact(41)], False, False)
    assert world.calls["failed_recently"] == 0


# -- whom to ask: round trips, scores, drawn order --------------------------------


def test_on_one_band_the_closest_are_asked_and_scores_not_read(make: Any, world: World) -> None:
    world.srtts = {addr(n): 0.002 * n for n in range(1, 5)}  # all within RTT_BAND
    assert asked(make(alpha=2).start(table(1, 2, 3, 4), 0)) == [node(1), node(2)]
    assert world.calls["scores"] == 0


def test_the_peers_expected_soonest_are_asked_first(make: Any, world: World) -> None:
    world.srtts = {addr(1): 0.3, addr(2): 0.2, addr(3): 0.05, addr(4): 0.1}
    assert asked(make(alpha=2).start(table(1, 2, 3, 4), 0)) == [node(3), node(4)]
    assert world.calls["scores"] == 1


def test_a_low_score_makes_a_peer_later(make: Any, world: World) -> None:
    world.srtts = {addr(1): 0.05, addr(2): 0.1, addr(3): 0.3}
    world.score = {addr(1): 0.1}  # 0.05 * 0.75 / 0.1: later than 0.3
    assert asked(make(alpha=2).start(table(1, 2, 3), 0)) == [node(2), node(3)]


def test_a_score_above_fair_is_no_better_than_fair(make: Any, world: World) -> None:
    world.srtts = {addr(1): 0.2, addr(2): 0.1}
    world.score = {addr(1): 1.0}
    assert asked(make(alpha=1, quorum=1).start(table(1, 2), 0)) == [node(2)]


def test_equals_go_in_an_order_drawn_by_the_seed(make: Any, world: World) -> None:
    ids = list(range(1, 11))
    world.srtts = {addr(n): 0.05 for n in ids} | {addr(11): 0.5}
    orders = {tuple(asked(make(alpha=3, seed=seed).start(table(*ids, 11), 0))) for seed in range(8)}
    assert len(orders) > 1  # drawn, not the closest first
    again = {tuple(asked(make(alpha=3, seed=5).start(table(*ids, 11), 0))) for _ in range(3)}
    assert len(again) == 1  # the same seed, the same order


def test_a_peer_never_measured_is_expected_at_the_median(make: Any, world: World) -> None:
    world.srtts = {addr(1): 0.3, addr(2): 0.02, addr(3): 0.2, addr(4): 0.25}
    # node 5 unmeasured: expected at 0.25 (median of 0.02, 0.2, 0.25, 0.3)
    answer = make(alpha=3, quorum=3).start(table(1, 2, 3, 4, 5), 0)
    assert set(asked(answer)[:2]) == {node(2), node(3)}
    assert node(1) not in asked(answer)


def test_requests_to_unmeasured_peers_are_hedged(make: Any, world: World) -> None:
    world.srtts = {addr(1): 0.1}
    core = make(alpha=3, quorum=3)
    answer = core.start(table(*range(1, 10)), 0)
    assert len(answer[2]) == 3 + HEDGE
    assert core.in_flight == 3 + HEDGE


def test_no_hedge_where_time_cannot_rank(make: Any, world: World) -> None:
    world.srtts = {addr(1): RTT_BAND / 2}
    core = make(alpha=3, quorum=3)
    assert len(core.start(table(*range(1, 10)), 0)[2]) == 3


def test_scores_returning_the_wrong_count_raise(make: Any, world: World) -> None:
    world.srtts = {addr(1): 0.1, addr(2): 0.3}
    world.scores = lambda addresses, now: [1.0]  # type: ignore[method-assign]
    core = make(alpha=1, quorum=1)
    with pytest.raises(InvalidArgumentError, match="scores"):
        core.start(table(1, 2, 3), 0)


def test_position_of_a_stranger(make: Any) -> None:
    core = make()
    core.start(table(1), 0)
    assert core.position(node(99)) == (1, -1)


# -- both cores, the same answers ------------------------------------------------

SRTTS = st.one_of(st.none(), st.sampled_from([0.001, 0.004, 0.02, 0.05, 0.051, 0.1, 0.3, 0.9]))
SCORES = st.sampled_from([0.0, 0.005, 0.3, 0.5, 0.74, 0.75, 0.9, 1.0])


def _state(core: Any, ids: list[bytes]) -> Any:
    return (core.in_flight, core.holders, [core.position(i) for i in ids])


def _both(cores: tuple[Any, Any], method: str, *args: Any) -> Any:
    """The Python core's answer to ``core.method(*args)``, once the Rust
    core's is found equal (the same values, types and exception classes)."""
    answers = []
    raw = None
    for core in cores:
        try:
            raw = _state(core, *args) if method == "state" else getattr(core, method)(*args)
            answers.append(("ok", typed_form(raw)))
        except Exception as exc:  # compared by class
            raw = None
            answers.append(("raised", type(exc).__name__))
    assert answers[0] == answers[1], f"rust {answers[0]!r} != python {answers[1]!r}"
    return raw


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_both_cores_give_the_same_answers(data: st.DataObject) -> None:
    rust = require_rust()
    world = World()
    size = data.draw(st.integers(1, 40), label="nodes")
    # ids: mostly 20 bytes, some shorter or longer, near the key or not
    ids = data.draw(
        st.lists(
            st.one_of(
                st.binary(min_size=20, max_size=20),
                st.integers(0, 2**12).map(lambda n: n.to_bytes(20, "big")),
                st.binary(min_size=1, max_size=64),
            ),
            min_size=size,
            max_size=size,
            unique=True,
        ),
        label="ids",
    )
    addresses = {i: ("10.0.{}.{}".format(*divmod(n, 250)), 4000 + n) for n, i in enumerate(ids)}
    for i in ids:
        rtt = data.draw(SRTTS)
        if rtt is not None:
            world.srtts[addresses[i]] = rtt
        world.score[addresses[i]] = data.draw(SCORES)
    failed = data.draw(st.lists(st.sampled_from(ids), max_size=4))
    world.failed = {addresses[i] for i in failed}
    args = (
        OWN if data.draw(st.booleans()) else ids[0],
        data.draw(st.sampled_from([KEY, b"\x80" + bytes(19), bytes(range(20))])),
        data.draw(st.integers(1, 4), label="alpha"),
        data.draw(st.integers(1, 8), label="ksize"),
        data.draw(st.integers(1, 5), label="quorum"),
        data.draw(st.booleans(), label="adaptive"),
        FAIR,
        data.draw(st.integers(0, 2**64 - 1), label="seed"),
        world,
        world.clock,
        world.failed_recently,
        world.recently_failed,
    )
    cores = (rust.LookupCore(*args), _core_py.LookupCore(*args))
    start_with = data.draw(st.lists(st.sampled_from(ids), unique=True), label="table")
    candidates = ([i for i in start_with], [addresses[i] for i in start_with])
    local = data.draw(st.integers(0, 1), label="holders")
    out: list[bytes] = []

    def track(answer: Any) -> None:
        # (the ids now asked: the requests out, to answer, fail or be late)
        if answer is not None and answer[0] is LookupStep.ASK:
            out.extend(node_id for node_id, _ in answer[2])

    if data.draw(st.booleans(), label="snapshot"):
        # (each core's own Candidates of the same lists)
        snapshots = (rust.Candidates(*candidates), _core_py.Candidates(*candidates))
        answers = [
            core.start(snapshot, local) for core, snapshot in zip(cores, snapshots, strict=True)
        ]
        assert typed_form(answers[0]) == typed_form(answers[1])
        track(answers[1])
    else:
        track(_both(cores, "start", candidates, local))
    for _ in range(data.draw(st.integers(0, 30), label="steps")):
        op = data.draw(st.sampled_from(["answer", "fail", "overdue", "world", "stray"]))
        if op == "world":
            world.failed ^= {addresses[data.draw(st.sampled_from(ids))]}
            continue
        if op == "stray":
            stranger = data.draw(st.sampled_from([*ids, b"\x01" * 21, b""]))
            _both(cores, "position", stranger)
            continue
        if not out:
            continue
        who = data.draw(st.sampled_from(out))
        if op == "overdue":
            track(_both(cores, "overdue", who, addresses.get(who)))
            continue
        out.remove(who)
        end_now = data.draw(st.integers(0, 9)) == 0
        if op == "answer":
            named = data.draw(st.lists(st.sampled_from([*ids, OWN]), max_size=6))
            contacts = [[i, *addresses.get(i, ("10.9.9.9", 1))] for i in named]
            holder = data.draw(st.booleans())
            track(_both(cores, "answered", who, contacts, holder, end_now))
        else:
            mode = data.draw(st.sampled_from(list(LookupFailure)))
            track(_both(cores, "failed", who, mode, end_now))
        _both(cores, "state", ids)


# -- the order of equal distances, on either ranking --------------------------


@pytest.mark.parametrize("longest", [20, 32, 33, 64])
@pytest.mark.parametrize("ksize", [2, 20])
def test_equal_distances_keep_their_order_whatever_the_ids_lengths(
    make: Any, longest: int, ksize: int
) -> None:
    # (ids of up to 32 bytes and longer ones are ranked two ways in the
    # Rust core: the same order either way)
    ids = [node(5, size=3), node(4, size=longest), node(5, size=1), node(5, size=2)]
    core = make(ksize=ksize, alpha=4, quorum=4)
    answer = core.start((ids, [addr(n) for n in range(4)]), 0)
    ranked = [node(4, size=longest), node(5, size=3), node(5, size=1), node(5, size=2)]
    assert asked(answer) == ranked[:ksize]

"""The Rust core and the pure-Python core, driven by the same random
operations, must give the same answer to every call.

Query ids are random in each core, so they are compared through the index of
the registration that made them.
"""

from __future__ import annotations

import enum
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dhtquery.query import _core_py
from dhtquery.query.types import Reason
from tests.conftest import require_rust

KEYS = st.sampled_from(["a", "b", "c", "d", "e", b"a", b"b", "f", "g", "\ud800"])
PEERS = st.sampled_from(["p1", "p2", "p3", ("127.0.0.1", 4000), 7])
ITEMS = st.integers(min_value=0, max_value=5)
# Steps of time from nothing to past the grace period, with the ms edges.
STEPS = st.sampled_from([0.0, 0.0004, 0.001, 0.0015, 0.01, 0.063, 0.064, 0.5, 1.0, 4.2, 6.0, 70.0])
TIMEOUTS = st.sampled_from([0.001, 0.05, 0.1, 0.2, 1.0, 4.096, 5.0, 60.0, 300.0, 5000.0])


class CoresAgree(RuleBasedStateMachine):
    rust: ModuleType
    now: float

    @initialize(
        grace=st.sampled_from([0.0, 0.5, 5.0]), start=st.sampled_from([0.0, 3.3, 12345.678])
    )
    def make_cores(self, grace: float, start: float) -> None:
        self.rust = require_rust()
        self.cores = (self.rust.QueryCore(grace), _core_py.QueryCore(grace))
        self.ids: list[tuple[Any, Any]] = []
        self.unknown_ids = (
            self.rust.QueryId("00000000-0000-4000-8000-000000000000"),
            _core_py.QueryId("00000000-0000-4000-8000-000000000000"),
        )
        self.now = start

    # -- helpers ------------------------------------------------------

    def _normalize(self, value: Any, which: int) -> Any:
        if isinstance(value, self.rust.QueryId | _core_py.QueryId):
            for index, pair in enumerate(self.ids):
                if pair[which] == value:
                    return ("query", index)
            return ("foreign", str(value))
        # Enum members and NamedTuples keep their class, so both cores must
        # return the same types.py objects, not merely equal ints, strs or
        # tuples.
        if isinstance(value, enum.Enum):
            return (type(value), value)
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            return (type(value), tuple(self._normalize(item, which) for item in value))
        if isinstance(value, list | tuple):
            return type(value)(self._normalize(item, which) for item in value)
        return value

    def _both(self, call: Any) -> Any:
        answers = []
        for which, core in enumerate(self.cores):
            try:
                answers.append(("ok", self._normalize(call(core, which), which)))
            except Exception as exc:  # compared by class below
                answers.append(("raised", type(exc).__name__))
        assert answers[0] == answers[1], f"rust {answers[0]!r} != python {answers[1]!r}"
        return answers[0]

    def _query(self, which: int, index: int) -> Any:
        if index >= len(self.ids):
            return self.unknown_ids[which]
        return self.ids[index][which]

    # -- operations ---------------------------------------------------

    @rule(step=STEPS)
    def advance(self, step: float) -> None:
        self.now += step

    @rule(timeout=TIMEOUTS, max_results=st.integers(1, 6), peers=st.integers(0, 3))
    def register(self, timeout: float, max_results: int, peers: int) -> None:
        pair = tuple(core.register(timeout, max_results, peers, self.now) for core in self.cores)
        self.ids.append(pair)

    @rule(index=st.integers(0, 40), peer=PEERS, key=KEYS, item=ITEMS)
    def offer(self, index: int, peer: Any, key: Any, item: int) -> None:
        self._both(lambda core, w: core.offer(self._query(w, index), peer, key, item, self.now))

    @rule(
        index=st.integers(0, 40), peer=PEERS, entries=st.lists(st.tuples(KEYS, ITEMS), max_size=8)
    )
    def offer_many(self, index: int, peer: Any, entries: list[tuple[Any, int]]) -> None:
        self._both(lambda core, w: core.offer_many(self._query(w, index), peer, entries, self.now))

    @rule(index=st.integers(0, 40), peer=PEERS, ok=st.booleans())
    def peer_done(self, index: int, peer: Any, ok: bool) -> None:
        self._both(lambda core, w: core.peer_done(self._query(w, index), peer, ok))

    @rule(index=st.integers(0, 40))
    def state(self, index: int) -> None:
        self._both(lambda core, w: core.state(self._query(w, index)))

    @rule(index=st.integers(0, 40))
    def drain(self, index: int) -> None:
        self._both(lambda core, w: core.drain(self._query(w, index)))

    @rule(
        index=st.integers(0, 40),
        reason=st.sampled_from(
            [None, "adaptive", "all_peers", "timeout", Reason.MAX_RESULTS, Reason.CANCELLED]
        ),
    )
    def finish(self, index: int, reason: str | None) -> None:
        self._both(lambda core, w: core.finish(self._query(w, index), self.now, reason))

    @rule(index=st.integers(0, 40))
    def cancel(self, index: int) -> None:
        self._both(lambda core, w: core.cancel(self._query(w, index), self.now))

    @rule()
    def expire(self) -> None:
        self._both(lambda core, w: core.expire(self.now))

    @precondition(lambda self: self.cores[0].next_deadline() is not None)
    @rule()
    def expire_at_next_deadline(self) -> None:
        self.now = max(self.now, self.cores[1].next_deadline())
        self._both(lambda core, w: core.expire(self.now))

    @rule(index=st.integers(0, 40), bad_key=st.sampled_from([1, None, 2.5]))
    def offer_bad_batch(self, index: int, bad_key: Any) -> None:
        entries = [("ok", 1), (bad_key, 2)]
        self._both(lambda core, w: core.offer_many(self._query(w, index), "p1", entries, self.now))

    # -- everything observable agrees after every step ----------------

    @invariant()
    def state_agrees(self) -> None:
        if not hasattr(self, "cores"):
            return
        self._both(
            lambda core, w: (
                core.next_deadline(),
                core.counters(),
                core.latency(),
                core.in_flight,
                core.tombstones,
                core.timers,
                [core.state(self._query(w, index)) for index in range(len(self.ids) + 1)],
            )
        )


CoresAgree.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCoresAgree = CoresAgree.TestCase

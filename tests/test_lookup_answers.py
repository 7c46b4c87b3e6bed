"""``LookupAnswers``, the callback of a streaming lookup's requests: every
test runs against both cores (ids ``rs`` / ``py``), and a property test
drives both with the same random answers and compares everything they do
(the calls back into the lookup, the handle and the manager, the query
core's state and results, the lookup core's counts, the book's, ``latest``).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from types import ModuleType, SimpleNamespace
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.dht.rpc_table import _Pending
from dhtquery.dht.wire import encode_response
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import LookupStep, Reason, _core_py
from dhtquery.query.shapes import FOUND_VALUES
from tests.conftest import require_rust, typed_form

KEY = bytes(20)
OWN = b"\xff" * 20
FAIR = 0.75
NOW = 100.0
WALL = 1_000_000.0


def node(n: int) -> bytes:
    return n.to_bytes(20, "big")


def addr(n: int) -> tuple[str, int]:
    return ("10.0.0.1", 4000 + n)


def wire(n: int, seq: int = 1, target: bytes = KEY, expires: int = 0) -> list[Any]:
    """A record's wire array (public key, target, name, seq, expires, data,
    signature): ``n`` names its slot, ``seq`` and ``n`` its signature."""
    return [
        n.to_bytes(32, "big"),
        target,
        f"pkg{n}",
        seq,
        expires,
        b"data%d" % n,
        (n * 1000 + seq).to_bytes(64, "big"),
    ]


class Calls:
    """Everything an answerer calls back, in order."""

    def __init__(self) -> None:
        self.log: list[Any] = []


class Lookup:
    """The lookup an answerer calls back (``_answered``, ``_answered_then``,
    ``_overdue``), as ``dht.StreamingLookup`` does but with no network: an
    answer it is handed is read by the cache alone (records it does not
    take are left out) and settled."""

    def __init__(self, calls: Calls, cache: Any, latest: dict[Any, Any], handle: Handle) -> None:
        self.calls = calls
        self.cache = cache
        self.latest = latest
        self.handle = handle

    def _answered(
        self, answers: Any, ask: Any, address: Any, name: str, ok: bool, value: Any
    ) -> None:
        self.calls.log.append(("_answered", ask, name, ok))
        if not ok or self.handle.ended():
            return
        if type(value) is dict:
            records = self.cache.take(value.get("records", ()), KEY, self.latest, address)[0]
            contacts = value.get("nodes", ())
        else:
            records, contacts = [], []
        answers.settle(ask, address, records, contacts)

    def _answered_then(self, answers: Any, ask: Any, depth: int, step: Any, asks: Any) -> None:
        self.calls.log.append(("_answered_then", ask, depth, step, asks))

    def _overdue(self, answers: Any, ask: Any) -> None:
        self.calls.log.append(("_overdue", ask))

    # (what an answerer with an Asker calls instead of _answered_then)

    def _welcome(self, ask: Any) -> None:
        self.calls.log.append(("_welcome", ask))

    def _act(self, answers: Any, step: Any, depth: int, asks: Any) -> None:
        self.calls.log.append(("_act", step, depth, asks))

    def _ask_stock(self, answers: Any, asks: Any) -> None:
        self.calls.log.append(("_ask_stock", asks))


class Handle:
    def __init__(self, calls: Calls, query_id: Any) -> None:
        self.calls = calls
        self.id = query_id
        self.done = False
        self._requests = 0
        self._resent = 0

    def ended(self) -> bool:
        return self.done

    def wake(self) -> None:
        self.calls.log.append(("wake",))


NAMES = ("find_values", "find_value")
SPAN = 3.0
FIRST_SPAN = 3.0


class Transport:
    """What an Asker sends through: each datagram noted without its message
    id (random), the address with it."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.closing = False
        #: addresses a send refuses (uvloop: another address family)
        self.refuse: set[Any] = set()

    def is_closing(self) -> bool:
        return self.closing

    def sendto(self, data: bytes, address: Any) -> None:
        if address in self.refuse:
            raise ValueError("another address family")
        self.calls.log.append(("sendto", data[:1] + data[21:], address))


class Timer:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.lag = 0.0
        self.armed_until = math.inf

    def arm(self, when: float) -> None:
        self.calls.log.append(("arm", when))
        self.armed_until = when


class Protocol:
    """The parts of a ``DhtProtocol`` an Asker reads."""

    def __init__(self, module: ModuleType, calls: Calls, book: Any) -> None:
        self._waiting: deque[Any] = deque()
        self._peers = book
        self.extensions: dict[Any, bool] = {}
        self.stats: Counter[str] = Counter()
        self._timer = Timer(calls)
        self.clock = SimpleNamespace(now=lambda: NOW)
        self.max_outstanding = 64
        self.transport = Transport(calls)
        engine = module.DatagramEngine(
            {}, {"find_values": FOUND_VALUES}, requests=(module.QueryCore(), b"pad!", {}, _Pending)
        )
        self._requests: Any = SimpleNamespace(engine=engine)

    def drop(self, kind: str) -> None:
        self.stats[kind] += 1

    def on_wire(self) -> list[Any]:
        """The requests out: (context, name, first timeout, given up after)."""
        return [
            (entry.context, entry.name, entry.retry[3], round(entry.retry[1] - entry.sent, 9))
            for entry in self._requests.engine.pending.values()
        ]


class Rig:
    """One core's answerer and all it touches; with ``asking``, an Asker
    on a protocol of its own sends the asks an answer leads to."""

    def __init__(
        self, module: ModuleType, quorum: int = 3, max_results: int = 20, asking: bool = False
    ) -> None:
        self.module = module
        self.calls = Calls()
        self.queries = module.QueryCore()
        self.query_id = self.queries.register(10.0, max_results, 0, NOW)
        self.cache = module.RecordCache(100, lambda: WALL)
        self.book = module.PeerBook()
        self.latest: dict[Any, Any] = {}
        self.handle = Handle(self.calls, self.query_id)
        self.lookup = Lookup(self.calls, self.cache, self.latest, self.handle)
        self.core = module.LookupCore(
            OWN, KEY, 3, 20, quorum, True, FAIR, 7, self.book, lambda: NOW, bool, bool
        )
        self.protocol = Protocol(module, self.calls, self.book)
        self.bodies = {NAMES[0]: b"ours"}
        self.asker = module.Asker(self.protocol, NAMES, SPAN, FIRST_SPAN)
        self.answers = module.LookupAnswers(
            self.lookup,
            self.core,
            self.handle,
            KEY,
            self.latest,
            (self.queries, lambda: NOW, self.finish, self.cache, self.book),
            (self.asker, self.bodies, None) if asking else None,
        )

    def finish(self, query_id: Any, reason: Any) -> bool:
        self.calls.log.append(("finish", reason))
        outcome = self.queries.finish(query_id, NOW, reason)
        if outcome is None:
            return False
        self.handle.done = True
        self.calls.log.append(("outcome", outcome.reason, len(outcome.results), outcome.peers_ok))
        return True

    def keep(self, *values: list[Any]) -> None:
        for value in values:
            self.cache.put(value, f"record-{value[6].hex()[-6:]}")

    def start(self, *numbers: int) -> list[tuple[bytes, Any]]:
        step, _, asks = self.core.start(([node(n) for n in numbers], [addr(n) for n in numbers]), 0)
        assert step is LookupStep.ASK
        return asks

    def counts(self) -> tuple[int, int, int, int, int]:
        core = self.core
        return (core.answers, core.max_depth, core.final_depth, core.in_flight, core.holders)


@pytest.fixture
def rig(core_module: ModuleType) -> Rig:
    return Rig(core_module)


def found(records: list[list[Any]], nodes: list[Any] | None = None) -> dict[str, Any]:
    return {"records": records, "nodes": nodes or [], "more": False}


def test_both_cores_export_lookupanswers(core_module: ModuleType) -> None:
    assert "LookupAnswers" in core_module.__all__


def test_the_common_answer_is_read_offered_and_counted_without_the_lookup(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    rig.answers(asks[0], asks[0][1], "find_values", True, found([wire(1)]))
    # the records were new: the streams woken, nothing else called back
    assert rig.calls.log == [("wake",)]
    assert rig.counts() == (1, 1, -1, 2, 1)
    assert [item for item, *_ in rig.queries.drain(rig.query_id)] == ["record-0003e9"]
    assert rig.book.stats(asks[0][1])[3] == 1  # provided
    assert rig.latest == {(wire(1)[0], "pkg1"): (1, asks[0][1])}


def test_a_holder_that_brings_nothing_new_wakes_nobody(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    rig.answers(asks[0], asks[0][1], "find_values", True, found([wire(1)]))
    rig.answers(asks[1], asks[1][1], "find_values", True, found([wire(1)]))
    assert rig.calls.log == [("wake",)]
    assert rig.counts() == (2, 1, -1, 1, 2)
    rig.finish(rig.query_id, Reason.ADAPTIVE)
    outcome = rig.calls.log[-1]
    assert outcome == ("outcome", Reason.ADAPTIVE, 1, 2)


def test_the_quorum_finishes_the_query_all_peers_without_the_lookup(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    for ask in asks:
        rig.answers(ask, ask[1], "find_values", True, found([wire(1)]))
    assert rig.calls.log == [
        ("wake",),
        ("finish", Reason.ALL_PEERS),
        ("outcome", Reason.ALL_PEERS, 1, 3),
    ]
    assert rig.counts() == (3, 1, 1, 0, 3)


def test_max_results_reached_ends_the_query_and_notes_the_depth(core_module: ModuleType) -> None:
    rig = Rig(core_module, max_results=1)
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    rig.answers(asks[0], asks[0][1], "find_values", True, found([wire(1)]))
    assert rig.calls.log == [("finish", None), ("outcome", Reason.MAX_RESULTS, 1, 0)]
    assert rig.counts() == (1, 1, 1, 2, 0)


def test_contacts_with_nobody_to_ask_yet_are_left_for_the_lookup_to_act_on(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    contacts = [[node(9), "10.0.0.9", 9]]
    rig.answers(asks[0], asks[0][1], "find_values", True, found([], contacts))
    # (no records: the peer done; a new candidate to ask)
    assert rig.calls.log == [
        ("_answered_then", asks[0], 1, LookupStep.ASK, [(node(9), ("10.0.0.9", 9))])
    ]
    assert rig.counts() == (1, 1, -1, 3, 0)


def test_a_peer_learnt_from_an_answer_is_handed_back_to_be_welcomed(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    rig.answers(asks[0], asks[0][1], "find_values", True, found([], [[node(9), "h", 9]]))
    ask = (node(9), ("h", 9))
    rig.calls.log.clear()
    rig.answers(ask, ask[1], "find_values", True, found([]))
    # depth 2: the lookup welcomes it (nothing to act on: step None)
    assert rig.calls.log == [("_answered_then", ask, 2, None, [])]
    assert rig.counts() == (2, 2, -1, 2, 0)


@pytest.mark.parametrize(
    ("name", "ok", "value"),
    [
        ("find_values", False, None),
        ("find_value", True, {"value": b"x"}),
        ("find_values", True, [["id", "h", 1]]),
        ("find_values", True, found([wire(7)])),  # a record never verified
    ],
    ids=["failed", "stock", "not-a-dict", "unverified"],
)
def test_any_other_answer_goes_to_the_lookup(rig: Rig, name: str, ok: bool, value: Any) -> None:
    asks = rig.start(1, 2, 3)
    rig.answers(asks[0], asks[0][1], name, ok, value)
    assert rig.calls.log[0] == ("_answered", asks[0], name, ok)
    # (nothing noted of a record the lookup checks itself)
    assert rig.latest == {}


def test_an_answer_after_the_end_goes_to_the_lookup(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    rig.finish(rig.query_id, Reason.ADAPTIVE)
    rig.calls.log.clear()
    rig.answers(asks[0], asks[0][1], "find_values", True, found([wire(1)]))
    assert rig.calls.log == [("_answered", asks[0], "find_values", True)]
    assert rig.counts()[0] == 0


def test_overdue_is_the_lookups(rig: Rig) -> None:
    asks = rig.start(1)
    rig.answers.overdue(asks[0])
    assert rig.calls.log == [("_overdue", asks[0])]


def test_bad_arguments_name_themselves(core_module: ModuleType) -> None:
    rig = Rig(core_module)
    shared = (rig.queries, lambda: NOW, rig.finish, rig.cache, rig.book)
    with pytest.raises(InvalidArgumentTypeError, match="core must be"):
        core_module.LookupAnswers(rig.lookup, object(), rig.handle, KEY, {}, shared)
    with pytest.raises(InvalidArgumentTypeError, match="key must be bytes"):
        core_module.LookupAnswers(rig.lookup, rig.core, rig.handle, "k", {}, shared)
    with pytest.raises(InvalidArgumentTypeError, match="latest must be a dict"):
        core_module.LookupAnswers(rig.lookup, rig.core, rig.handle, KEY, [], shared)
    with pytest.raises(InvalidArgumentTypeError, match="shared must be"):
        core_module.LookupAnswers(rig.lookup, rig.core, rig.handle, KEY, {}, shared[:4])
    with pytest.raises(InvalidArgumentTypeError, match="queries must be"):
        core_module.LookupAnswers(rig.lookup, rig.core, rig.handle, KEY, {}, (None, *shared[1:]))


# -- the asks an answer leads to, sent from the core (Asker) -------------------

NINE = (node(9), ("10.0.0.9", 9))
TEN = (node(10), ("10.0.0.10", 10))


def _lead_to_nine(rig: Rig) -> None:
    """The first of three asks answered naming node 9: step ASK, [NINE]."""
    asks = rig.start(1, 2, 3)
    rig.answers(asks[0], asks[0][1], "find_values", True, found([], [[node(9), *NINE[1]]]))


def test_an_answers_asks_are_sent_from_the_core_as_ask_many_sends_them(
    core_module: ModuleType,
) -> None:
    rig = Rig(core_module, asking=True)
    _lead_to_nine(rig)
    _, due, _ = rig.book.timing(NINE[1])
    first = min(due, FIRST_SPAN)
    # no lookup frame: the datagram sent, the timer armed sooner
    assert rig.calls.log == [("sendto", b"\x00ours", NINE[1]), ("arm", NOW + first)]
    assert rig.protocol.on_wire() == [(NINE, "find_values", first, FIRST_SPAN)]
    assert rig.handle._requests == 1
    assert rig.protocol.stats == {"requests": 1}
    rig.calls.log.clear()
    # learnt from an answer (depth 2): welcomed first; the timer already
    # armed as soon: not again
    rig.answers(NINE, NINE[1], "find_values", True, found([], [[node(10), *TEN[1]]]))
    assert rig.calls.log == [("_welcome", NINE), ("sendto", b"\x00ours", TEN[1])]
    assert rig.handle._requests == 2
    assert rig.protocol.stats == {"requests": 2}


@pytest.mark.parametrize("why", ["waiting", "full", "closing", "not-listening", "other-engine"])
def test_asks_go_to_the_lookups_act_when_ask_many_would_not_send_them_at_once(
    core_module: ModuleType, why: str
) -> None:
    rig = Rig(core_module, asking=True)
    protocol = rig.protocol
    if why == "waiting":
        protocol._waiting.append("a request")
    elif why == "full":
        # (the window has room for none: 0 on the wire + 1 ask > 0)
        protocol.max_outstanding = 0
    elif why == "closing":
        protocol.transport.closing = True
    elif why == "not-listening":
        protocol._requests = None
    else:
        protocol._requests = SimpleNamespace(engine=object())
    _lead_to_nine(rig)
    assert rig.calls.log == [("_act", LookupStep.ASK, 1, [NINE])]
    # (nothing counted: _act counts and sends them)
    assert rig.handle._requests == 0
    assert protocol.stats == {}


def test_an_overdue_request_has_the_next_candidate_asked_from_the_core(
    core_module: ModuleType,
) -> None:
    rig = Rig(core_module, asking=True)
    asks = rig.start(1, 2, 3, 4)
    rig.answers.overdue(asks[0])
    # (the lookup's _overdue done in the call: counted, the core told, the
    # fourth candidate asked)
    assert rig.calls.log[0] == ("sendto", b"\x00ours", addr(4))
    assert [entry[0] for entry in rig.calls.log] == ["sendto", "arm"]
    assert (rig.handle._resent, rig.handle._requests) == (1, 1)
    assert [entry[0] for entry in rig.protocol.on_wire()] == [(node(4), addr(4))]
    rig.calls.log.clear()
    # a later retransmission of the same request: counted, nobody asked
    rig.answers.overdue(asks[0])
    assert rig.calls.log == []
    assert rig.handle._resent == 2
    # nobody left to ask, no holder heard from: it waits
    rig.answers.overdue(asks[1])
    assert rig.calls.log == []
    # after the end: nothing, not counted
    rig.finish(rig.query_id, Reason.ADAPTIVE)
    rig.calls.log.clear()
    rig.answers.overdue(asks[2])
    assert rig.calls.log == [] and rig.handle._resent == 3


def test_an_overdue_request_whose_step_is_not_ask_goes_to_the_lookups_act(
    core_module: ModuleType,
) -> None:
    rig = Rig(core_module, asking=True)
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    rig.answers(asks[0], asks[0][1], "find_values", True, found([wire(1)]))
    rig.answers.overdue(asks[1])
    rig.calls.log.clear()
    # a holder heard from, everyone else past their RTO: give up on them
    rig.answers.overdue(asks[2])
    assert rig.calls.log == [("_act", LookupStep.GIVE_UP, 0, [asks[1], asks[2]])]


def test_an_overdue_request_past_the_end_of_a_lookup_without_asker_is_the_lookups(
    rig: Rig,
) -> None:
    rig.answers.overdue(rig.start(1)[0])
    assert rig.calls.log == [("_overdue", (node(1), addr(1)))]


@pytest.mark.parametrize("room", [1, 1.0, 1.5, -1])
def test_a_window_with_room_for_exactly_the_asks_sends_them(
    core_module: ModuleType, room: float
) -> None:
    rig = Rig(core_module, asking=True)
    rig.protocol.max_outstanding = room  # type: ignore[assignment]
    _lead_to_nine(rig)
    if room >= 1:
        assert rig.calls.log[0] == ("sendto", b"\x00ours", NINE[1])
    else:
        assert rig.calls.log == [("_act", LookupStep.ASK, 1, [NINE])]


def test_a_stock_peers_asks_go_to_the_lookup_when_its_body_is_not_packed(
    core_module: ModuleType,
) -> None:
    rig = Rig(core_module, asking=True)
    rig.protocol.extensions[NINE[1]] = False
    _lead_to_nine(rig)
    assert rig.calls.log == [("_ask_stock", [NINE])]
    # (counted as _act counts them; sent by _ask_stock)
    assert rig.handle._requests == 1
    assert rig.protocol.stats == {"requests": 0}
    rig.calls.log.clear()
    rig.bodies[NAMES[1]] = b"stock"
    assert rig.asker.ask(rig.answers, [NINE], rig.bodies, None) == 1
    assert rig.calls.log[0] == ("sendto", b"\x00stock", NINE[1])


def test_a_refused_send_is_counted_as_a_socket_error(core_module: ModuleType) -> None:
    rig = Rig(core_module, asking=True)
    rig.protocol.transport.refuse.add(NINE[1])
    _lead_to_nine(rig)
    assert rig.protocol.stats == {"requests": 1, "socket_error": 1}
    # (the request stays out, to time out)
    assert [entry[0] for entry in rig.protocol.on_wire()] == [NINE]


def test_an_asker_takes_a_budget_as_ask_many_does(core_module: ModuleType) -> None:
    rig = Rig(core_module)
    assert rig.asker.ask(rig.answers, [NINE], rig.bodies, 0.25) == 1
    assert rig.protocol.on_wire() == [(NINE, "find_values", 0.25, 0.25)]
    with pytest.raises(InvalidArgumentError, match="timeout must be"):
        rig.asker.ask(rig.answers, [TEN], rig.bodies, -1.0)


def test_asker_bad_arguments_name_themselves(core_module: ModuleType) -> None:
    rig = Rig(core_module)
    protocol = rig.protocol
    with pytest.raises(InvalidArgumentTypeError, match="names must be a tuple of two str"):
        core_module.Asker(protocol, ["find_values", "find_value"], SPAN, FIRST_SPAN)
    with pytest.raises(InvalidArgumentTypeError, match="names must be a tuple of two str"):
        core_module.Asker(protocol, ("find_values", 1), SPAN, FIRST_SPAN)
    with pytest.raises(InvalidArgumentError, match="span must be finite and > 0"):
        core_module.Asker(protocol, NAMES, 0.0, FIRST_SPAN)
    with pytest.raises(InvalidArgumentTypeError, match="first_span must be a number"):
        core_module.Asker(protocol, NAMES, SPAN, "3")
    protocol.extensions = []  # type: ignore[assignment]
    with pytest.raises(InvalidArgumentTypeError, match=r"protocol\.extensions must be a dict"):
        core_module.Asker(protocol, NAMES, SPAN, FIRST_SPAN)
    protocol.extensions = {}
    protocol.drop = None  # type: ignore[assignment,method-assign]
    with pytest.raises(InvalidArgumentTypeError, match=r"protocol\.drop must be callable"):
        core_module.Asker(protocol, NAMES, SPAN, FIRST_SPAN)
    asker = rig.asker
    with pytest.raises(InvalidArgumentTypeError, match="answers must be a LookupAnswers"):
        asker.ask(object(), [NINE], rig.bodies, None)
    with pytest.raises(InvalidArgumentTypeError, match="asks must be a list"):
        asker.ask(rig.answers, (NINE,), rig.bodies, None)
    with pytest.raises(InvalidArgumentTypeError, match="bodies must be a dict"):
        asker.ask(rig.answers, [NINE], [], None)
    shared = (rig.queries, lambda: NOW, rig.finish, rig.cache, rig.book)
    make = core_module.LookupAnswers
    with pytest.raises(InvalidArgumentTypeError, match="asking must be an"):
        make(rig.lookup, rig.core, rig.handle, KEY, {}, shared, (asker, {}))
    with pytest.raises(InvalidArgumentTypeError, match="asker must be an Asker"):
        make(rig.lookup, rig.core, rig.handle, KEY, {}, shared, (object(), {}, None))
    with pytest.raises(InvalidArgumentTypeError, match="bodies must be a dict"):
        make(rig.lookup, rig.core, rig.handle, KEY, {}, shared, (asker, [], None))


# -- both cores, the same random answers ---------------------------------------


def _seen(rig: Rig, ids: list[bytes]) -> Any:
    """Everything of a rig a test can compare across cores."""
    return (
        typed_form(rig.calls.log),
        rig.counts(),
        [rig.core.position(i) for i in ids],
        rig.queries.state(rig.query_id),
        [(item, peer, key) for item, peer, key, _ in rig.queries.drain(rig.query_id)],
        [rig.book.stats(addr(n))[3] for n in range(12)],
        sorted(rig.latest.items()),
        rig.handle._requests,
        rig.handle._resent,
        dict(rig.protocol.stats),
        typed_form(rig.protocol.on_wire()),
    )


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_both_cores_answerers_do_the_same(data: st.DataObject) -> None:
    rust = require_rust()
    quorum = data.draw(st.integers(1, 4), label="quorum")
    max_results = data.draw(st.integers(1, 6), label="max_results")
    # (with an Asker: the asks an answer leads to sent from the core, or
    # left to the lookup's _act while the protocol would queue them)
    asking = data.draw(st.booleans(), label="asking")
    rigs = (Rig(rust, quorum, max_results, asking), Rig(_core_py, quorum, max_results, asking))
    ids = [node(n) for n in range(12)]
    # records verified before (kept), some of them with another sequence too
    kept = data.draw(st.lists(st.integers(0, 5), unique=True), label="kept")
    values = {n: wire(n) for n in range(6)}
    for rig in rigs:
        rig.keep(*(values[n] for n in kept), *(wire(n, seq=2) for n in kept[:2]))
    table = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True))
    starts = [rig.start(*table) for rig in rigs]
    assert typed_form(starts[0]) == typed_form(starts[1])
    out = list(starts[1])
    answered: list[Any] = []
    for _ in range(data.draw(st.integers(0, 20), label="steps")):
        if not out:
            break
        ask = data.draw(st.sampled_from(out), label="ask")
        op = data.draw(
            st.sampled_from(
                ["common"] * 4 + ["fail", "stock", "odd", "end", "overdue", "window", "queue"]
            ),
            label="op",
        )
        if op in ("window", "queue"):
            # the window full or not, the protocol's queue empty or not
            room = data.draw(st.integers(0, 4), label="room")
            for rig in rigs:
                if op == "window":
                    rig.protocol.max_outstanding = room
                elif rig.protocol._waiting:
                    rig.protocol._waiting.clear()
                else:
                    rig.protocol._waiting.append("a request")
            continue
        if op == "end":
            for rig in rigs:
                rig.finish(rig.query_id, Reason.ADAPTIVE)
            continue
        if op == "overdue":
            for rig in rigs:
                rig.answers.overdue(ask)
            continue
        out.remove(ask)
        answered.append(ask)
        records = [
            wire(n, seq=seq, target=target)
            for n, seq, target in data.draw(
                st.lists(
                    st.tuples(
                        st.integers(0, 6),
                        st.sampled_from([1, 1, 1, 2]),
                        st.sampled_from([KEY, KEY, b"\x01" * 20]),
                    ),
                    max_size=4,
                ),
                label="records",
            )
        ]
        contacts = [
            [node(n), *addr(n)] for n in data.draw(st.lists(st.integers(0, 11), max_size=4))
        ]
        name, ok, value = {
            "common": ("find_values", True, found(records, contacts)),
            "fail": ("find_values", False, None),
            "stock": ("find_value", True, {"value": b"plain"}),
            "odd": ("find_values", True, contacts),
        }[op]
        for rig in rigs:
            rig.answers(ask, ask[1], name, ok, value)
        seen = [_seen(rig, ids) for rig in rigs]
        assert seen[0] == seen[1]
        # the asks the core made are out now
        then = rigs[1].calls.log
        for entry in then:
            if entry[0] == "_answered_then" and entry[3] is LookupStep.ASK:
                out.extend(a for a in entry[4] if a not in out)
            elif entry[0] == "_act" and entry[1] is LookupStep.ASK:
                out.extend(a for a in entry[3] if a not in out)
        out.extend(a for a, *_ in rigs[1].protocol.on_wire() if a not in out + answered)
        for rig in rigs:
            rig.calls.log.clear()
    # (the outcome: peers ok, duplicates, results)
    for rig in rigs:
        rig.finish(rig.query_id, Reason.ADAPTIVE)
    assert typed_form(rigs[0].calls.log) == typed_form(rigs[1].calls.log)


# -- the engine hands the common answer over itself -----------------------------

HANDLED = 7


def _opened(rig: Rig, ask: Any, retransmitted: bool = False) -> tuple[Any, bytes, Any]:
    """An engine of ``rig``'s core with a find_values request to ``ask`` out
    (its callback the rig's answerer): (engine, the answer's datagram,
    what the engine hands over with it: waiting queues, failures,
    extensions)."""
    module = rig.module
    engine = module.DatagramEngine(
        {}, {"find_values": FOUND_VALUES}, requests=(module.QueryCore(), b"pad!", {}, _Pending)
    )
    deadline = NOW + 5.0 if retransmitted else None
    datagram = engine.open(
        1.0,
        NOW,
        0.0,
        ask[1],
        "find_values",
        None,
        rig.answers,
        ask,
        b"b",
        deadline,
        rig.answers.overdue,
    )
    if retransmitted:
        engine.pending[datagram[1:21]].retry[2] = 2
    state = (deque(), deque(), {}, {ask[1]: True})
    engine.dispatch_answers(*state)
    answer = encode_response(datagram[1:21], found([wire(1)]))
    return engine, answer, state


def test_the_engine_hands_the_common_answer_to_its_lookupanswers(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    engine, answer, _ = _opened(rig, asks[0])
    status, _, value, _, rtt = engine.receive_at(answer, asks[0][1], NOW + 0.01, 0.0)
    assert (status, value) == (HANDLED, None)
    assert rtt == pytest.approx(0.01)
    assert rig.calls.log == [("wake",)]
    assert rig.counts() == (1, 1, -1, 2, 1)


@pytest.mark.parametrize("why", ["waiting", "background", "failed", "unknown", "stock", "resent"])
def test_the_engine_leaves_the_answer_to_the_protocol_when_it_has_more_to_do(
    rig: Rig, why: str
) -> None:
    asks = rig.start(1, 2, 3)
    rig.keep(wire(1))
    engine, answer, (waiting, background, failed, extensions) = _opened(
        rig, asks[0], retransmitted=why == "resent"
    )
    if why == "waiting":
        waiting.append("a request")
    elif why == "background":
        background.append("a request")
    elif why == "failed":
        failed[("10.0.0.9", 9)] = 1.0
    elif why == "unknown":
        extensions.clear()
    elif why == "stock":
        extensions[asks[0][1]] = False
    status, _, value, _, _ = engine.receive_at(answer, asks[0][1], NOW + 0.01, 0.0)
    assert status == 5  # CHECKED
    assert value == found([wire(1)])
    assert rig.calls.log == []
    assert rig.counts()[0] == 0


def test_what_the_callback_raises_comes_back_as_the_value(rig: Rig) -> None:
    asks = rig.start(1, 2, 3)
    engine, answer, _ = _opened(rig, asks[0])

    def broken(*args: Any) -> None:
        raise RuntimeError("a caller's bug")

    rig.lookup._answered = broken  # type: ignore[method-assign]
    # (a record never verified: handed to the lookup, which raises)
    status, _, value, _, _ = engine.receive_at(answer, asks[0][1], NOW + 0.01, 0.0)
    assert status == HANDLED
    assert type(value) is RuntimeError and str(value) == "a caller's bug"


def test_an_engine_dispatches_answers_once(core_module: ModuleType) -> None:
    rig = Rig(core_module)
    engine, _, state = _opened(rig, rig.start(1)[0])
    with pytest.raises(InvalidArgumentError, match="already"):
        engine.dispatch_answers(*state)
    with pytest.raises(InvalidArgumentTypeError, match="extensions must be a dict"):
        core_module.DatagramEngine({}).dispatch_answers([], [], {}, [])

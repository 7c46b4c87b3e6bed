"""A fair share of an overloaded node: while its receive queue is deep, a
source sending far more than its share is shed, the others are served."""

from __future__ import annotations

import os
import socket
import sys
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhtquery.dht import fairness
from dhtquery.dht.fairness import OVERLOAD_FRACTION, OVERLOAD_MIN_BYTES, FairShare
from dhtquery.dht.rpc_table import CLIENT_PAD
from dhtquery.dht.wire import frame_request, pack_request
from dhtquery.errors import InvalidArgumentError
from dhtquery.query import _core_py, backend_of, load_core, new_fair_share
from tests.conftest import require_rust
from tests.dht_helpers import open_nodes, run_paired

MARK = 1000  # bytes queued past which the node is overloaded
BEHIND, WARM, IDLE = 2 * MARK, 3 * MARK // 4, 0


class Load:
    """The node's receive queue (bytes) as the test sets it, counting how
    often it is read."""

    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.asked = 0

    def __call__(self) -> int:
        self.asked += 1
        return self.queued


def fair_share(module: ModuleType, queued: int, check_every: int = 1) -> tuple[Load, FairShare]:
    """A core's FairShare (the unit tests run on both: ``core_module``)."""
    load = Load(queued)
    fair: FairShare = module.FairShare(load, MARK, window=100, floor=5, check_every=check_every)
    return load, fair


def offer(fair: FairShare, source: str, count: int) -> int:
    """Offer ``count`` requests from ``source``; how many were admitted."""
    return sum(fair.admit(source) for _ in range(count))


def test_nothing_is_shed_while_the_node_keeps_up(core_module: ModuleType) -> None:
    for queued in (IDLE, WARM):
        _, fair = fair_share(core_module, queued)
        assert offer(fair, "greedy", 500) == 500
        assert offer(fair, "light", 3) == 3
        assert fair.shed == 0 and not fair.under_load


def test_under_load_the_heavy_source_is_shed_and_the_light_one_served(
    core_module: ModuleType,
) -> None:
    _, fair = fair_share(core_module, BEHIND)
    # one source alone is never heavy: shedding it would help nobody
    assert offer(fair, "greedy", 100) == 100
    assert offer(fair, "light", 1) == 1
    # greedy has 99 of the window's 100 requests: 1.5 x an equal share is 75
    assert offer(fair, "greedy", 50) == 0
    assert offer(fair, "light", 4) == 4  # at or under the floor: always served
    assert fair.shed == 50
    assert fair.share("greedy") == pytest.approx(0.95)


def test_two_sources_of_equal_rate_are_both_served_under_load(core_module: ModuleType) -> None:
    _, fair = fair_share(core_module, BEHIND)
    admitted = sum(fair.admit("a") + fair.admit("b") for _ in range(200))
    assert admitted == 400 and fair.shed == 0


def test_a_source_heavy_long_ago_is_served_once_its_requests_leave_the_window(
    core_module: ModuleType,
) -> None:
    _, fair = fair_share(core_module, BEHIND)
    offer(fair, "greedy", 100)
    offer(fair, "light", 1)
    assert offer(fair, "greedy", 1) == 0
    # the window fills with three other sources' requests: greedy is light now
    for _ in range(40):
        offer(fair, "b", 1)
        offer(fair, "c", 1)
        offer(fair, "d", 1)
    assert fair.share("greedy") < 0.1
    assert offer(fair, "greedy", 5) == 5


def test_requests_are_counted_only_while_the_queue_is_warm(core_module: ModuleType) -> None:
    load, fair = fair_share(core_module, IDLE)
    offer(fair, "greedy", 100)
    assert fair.share("greedy") == 0.0  # nothing counted while idle
    load.queued = WARM
    offer(fair, "greedy", 10)
    assert fair.share("greedy") == 1.0
    load.queued = IDLE  # cooled down: the count starts afresh next time
    offer(fair, "light", 1)
    assert fair.share("greedy") == 0.0 and fair.share("light") == 0.0


def test_the_load_is_read_once_every_check_every_requests(core_module: ModuleType) -> None:
    load, fair = fair_share(core_module, IDLE, check_every=10)
    offer(fair, "a", 95)
    assert load.asked == 10  # the first request, then every 10th
    load.queued = BEHIND
    offer(fair, "b", 1)  # (the 96th: no look yet)
    assert not fair.under_load
    offer(fair, "b", 5)  # the 101st looks
    assert fair.under_load


def test_the_load_is_looked_at_again_before_a_request_is_shed(core_module: ModuleType) -> None:
    load, fair = fair_share(core_module, BEHIND, check_every=50)
    offer(fair, "greedy", 99)
    offer(fair, "light", 1)
    assert offer(fair, "greedy", 1) == 0  # heavy, and the node still behind
    load.queued = IDLE  # the queue drained since the last periodic look
    assert offer(fair, "greedy", 1) == 1
    assert not fair.under_load


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"window": 0}, "window"),
        ({"check_every": 0}, "check_every"),
        ({"factor": 0.0}, "factor"),
        ({"floor": -1}, "floor"),
        ({"mark": -1}, "mark"),
    ],
)
def test_bad_settings_are_refused_by_name(
    core_module: ModuleType, arguments: dict[str, Any], named: str
) -> None:
    settings: dict[str, Any] = {"mark": MARK, **arguments}
    with pytest.raises(InvalidArgumentError, match=named):
        core_module.FairShare(Load(IDLE), **settings)


def test_the_defaults_are_the_modules_figures(core_module: ModuleType) -> None:
    # (the settings are not readable: their effects are compared)
    load = Load(BEHIND)
    ours = core_module.FairShare(load, MARK)
    theirs = core_module.FairShare(
        load,
        MARK,
        window=fairness.WINDOW,
        factor=fairness.FACTOR,
        floor=fairness.FLOOR,
        check_every=fairness.CHECK_EVERY,
    )
    for index in range(3000):
        source = "light" if index % 40 == 0 else "greedy"
        assert ours.admit(source) == theirs.admit(source)
    assert ours.shed == theirs.shed > 0


def test_the_modules_fair_share_is_the_default_cores_and_a_node_gets_its_own() -> None:
    assert FairShare is load_core()[1].FairShare
    for backend in ("rust", "python"):
        if backend == "rust":
            require_rust()
        fair = new_fair_share(Load(IDLE), MARK, backend, window=5)
        assert backend_of(fair) == backend
        assert fair.admit("a") and fair.shed == 0


# A small window, floor and check_every so that a few dozen admits reach
# every branch: warm-up, cool-down, eviction, the floor, the share, the
# look before a shed.
_LOADS = st.sampled_from([IDLE, WARM, MARK, MARK + 1, BEHIND])
_SOURCES = st.sampled_from(["a", "b", ("127.0.0.1", 1), ("127.0.0.1", 2), 7])
_STEPS = st.lists(
    st.one_of(st.tuples(st.just("admit"), _SOURCES), st.tuples(st.just("load"), _LOADS)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    _STEPS,
    st.integers(1, 12),
    st.sampled_from([0.5, 1.0, 1.5, 2]),
    st.integers(0, 4),
    st.integers(1, 5),
)
def test_both_cores_admit_alike(
    steps: list[tuple[str, Any]], window: int, factor: float, floor: int, check_every: int
) -> None:
    """The same admits and queue readings on both cores' FairShare: the same
    answer to every admit, the same looks at the queue, the same shares,
    load and shed count after each."""
    loads = [Load(IDLE), Load(IDLE)]
    ours, twin = (
        module.FairShare(
            load, MARK, window=window, factor=factor, floor=floor, check_every=check_every
        )
        for module, load in zip((require_rust(), _core_py), loads, strict=True)
    )
    for step, argument in steps:
        if step == "load":
            for load in loads:
                load.queued = argument
            continue
        assert ours.admit(argument) == twin.admit(argument)
        assert loads[0].asked == loads[1].asked
        assert ours.under_load == twin.under_load
        assert ours.shed == twin.shed
        for source in ("a", "b", ("127.0.0.1", 1), ("127.0.0.1", 2), 7, "never"):
            assert ours.share(source) == twin.share(source)


def _queued_bytes(sock: socket.socket) -> int:
    """The bytes the socket's receive queue holds (Linux SO_MEMINFO)."""
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, 55, 36)[:4], sys.byteorder)


def test_an_overloaded_node_sheds_a_greedy_client_and_answers_a_light_one(backend: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the receive queue's depth is read with Linux's SO_MEMINFO")

    async def scenario() -> dict[str, Any]:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            sock = protocol.transport.get_extra_info("socket")
            buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            mark = max(int(buffer * OVERLOAD_FRACTION), OVERLOAD_MIN_BYTES)
            if protocol.fair_share is None or 3 * mark > buffer:
                return {"skip": f"a receive buffer of {buffer} bytes cannot queue past {mark}"}
            greedy, light = await nodes.raw(), await nodes.raw()
            ping = pack_request("ping", (os.urandom(20),))

            def request(peer: Any) -> None:  # a client's request: no welcome
                peer.send(frame_request(os.urandom(16) + CLIENT_PAD, ping), node.address)

            # No await until the queue is deep: the node reads nothing
            # meanwhile. Greedy sends 49 of every 50 requests.
            sent = {"greedy": 0, "light": 0}
            for index in range(20_000):
                if _queued_bytes(sock) > 2 * mark:
                    break
                peer = "light" if index % 50 == 49 else "greedy"
                request(light if peer == "light" else greedy)
                sent[peer] += 1
            answered = {"greedy": 0, "light": 0}
            for peer_name, peer in (("greedy", greedy), ("light", light)):
                while True:  # bounded: every answer is already on its way
                    try:
                        await peer.recv(timeout=1.0)
                    except TimeoutError:
                        break
                    answered[peer_name] += 1
                    if answered[peer_name] >= sent[peer_name]:
                        break
            shed = protocol.drops["fair_share"]
            # the queue has drained: greedy is served again
            request(greedy)
            await greedy.recv(timeout=2.0)
            return {"sent": sent, "answered": answered, "shed": shed}

    seen = run_paired(backend, scenario())
    if "skip" in seen:
        pytest.skip(seen["skip"])
    sent, answered = seen["sent"], seen["answered"]
    assert sent["light"] >= 20
    assert answered["light"] == sent["light"]  # every light request served
    assert seen["shed"] > 0
    assert answered["greedy"] + seen["shed"] == sent["greedy"]

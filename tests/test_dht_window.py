"""Flow control of the DHT transport: the request window, back-off once per
burst, and forgetting peers that keep failing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from dhtquery.dht.protocol import LIVENESS_TIMEOUT
from dhtquery.dht.rtt import RttEstimator
from dhtquery.query import QueryManager, new_core
from dhtquery.testing import FakeClock
from tests.dht_helpers import eventually, open_nodes, serve_by_hand

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_requests_beyond_the_window_wait_unsent_then_all_complete(backend: str, run: Run) -> None:
    async def scenario() -> tuple[int, int, list[bool]]:
        async with open_nodes(backend) as nodes:
            server = await nodes.dht()
            # (joined, so the server's ping that verifies the client asks
            # nothing back: the client's window holds the 7 pings alone)
            client = await nodes.dht(bootstrap=[server.address])
            assert await nodes.settle()
            protocol = client.protocol
            assert protocol is not None
            protocol.max_outstanding = 2
            futures = [
                protocol.request(server.address, "ping", (client.node.id,)) for _ in range(7)
            ]
            on_the_wire = len(protocol.requests)
            replies = await asyncio.gather(*futures)
            return on_the_wire, protocol.stats["queued"], [ok for ok, _ in replies]

    on_the_wire, queued, oks = run(scenario())
    assert on_the_wire == 2
    assert queued == 5
    assert oks == [True] * 7


def test_a_burst_of_timeouts_backs_off_once() -> None:
    estimator = RttEstimator(min_rto=0.05, max_rto=10.0)
    estimator.observe(0.1)
    base = estimator.rto  # 0.1 + 4 * 0.05, inside the clamp
    assert abs(base - 0.3) < 1e-12
    # ten requests sent at t=1.0 all time out at t=1.05: one back-off
    for _ in range(10):
        estimator.timed_out(sent=1.0, now=1.05)
    assert abs(estimator.rto - 2 * base) < 1e-12
    # a request sent after that back-off, timing out too, doubles it again
    estimator.timed_out(sent=1.06, now=1.2)
    assert abs(estimator.rto - 4 * base) < 1e-12


def test_a_peer_that_keeps_failing_leaves_the_routing_table(backend: str, run: Run) -> None:
    """Three failures in a row only start a liveness probe (a ping,
    retransmitted); the peer leaves the routing table when that goes
    unanswered too."""

    async def scenario() -> tuple[bool, bool, bool, int, int]:
        async with open_nodes(backend) as nodes:
            clock = FakeClock()
            first = await nodes.dht(queries=QueryManager(core=new_core(backend), clock=clock))
            gone = await nodes.dht(bootstrap=[first.address])
            for _ in range(3):  # the last few contacts are never forgotten
                await nodes.dht(bootstrap=[first.address])
            protocol = first.protocol
            assert protocol is not None
            address = gone.address

            def known() -> bool:
                return any(
                    (n.ip, n.port) == address for n in protocol.router.find_neighbors(first.node)
                )

            known_before = known()
            gone.stop()
            for _ in range(3):
                reply = protocol.request(address, "ping", (first.node.id,), 0.05)
                clock.advance(0.1)
                ok, _ = await reply
                assert not ok
            known_while_probed = known()
            for _ in range(int(LIVENESS_TIMEOUT * 10) + 1):
                clock.advance(0.1)
                await asyncio.sleep(0)
            assert await eventually(lambda: not known())
            return (
                known_before,
                known_while_probed,
                known(),
                protocol.stats["liveness_probes"],
                protocol.stats["peers_forgotten"],
            )

    known_before, known_while_probed, known_after, probes, forgotten = run(scenario())
    assert known_before and known_while_probed and not known_after
    assert probes == 1
    assert forgotten == 1


def test_a_late_answer_teaches_the_rtt_and_keeps_the_peer(backend: str, run: Run) -> None:
    async def scenario() -> tuple[float, int, int]:
        async with open_nodes(backend) as nodes:
            # The asking node runs on a clock moved by hand: each request
            # gives up at 50 ms, and its answer, held back by the peer, comes
            # 200 ms after it was sent.
            clock = FakeClock()
            first = await nodes.dht(queries=QueryManager(core=new_core(backend), clock=clock))
            slow = await nodes.dht(bootstrap=[first.address])
            for _ in range(3):  # three more contacts, so forgetting is allowed
                await nodes.dht(bootstrap=[first.address])
            protocol = first.protocol
            slow_protocol = slow.protocol
            assert protocol is not None and slow_protocol is not None
            held: list[tuple[bytes, Any, Any]] = []

            def serve_late(msg_id: bytes, body: Any, addr: Any, now: float) -> None:
                held.append((msg_id, body, addr))

            # The pings that verified the joiners were answered on the frozen
            # clock (0 s): the RTT is to be learnt from the late answers alone.
            assert await nodes.settle()
            protocol.peers.forget_estimator(slow.address)
            serve = serve_by_hand(slow_protocol, serve_late)
            for round_number in range(5):
                reply = protocol.request(slow.address, "ping", (first.node.id,), 0.05)
                sent = round_number + 1
                assert await eventually(lambda sent=sent: len(held) == sent)
                clock.advance(0.2)  # the request gave up at 50 ms
                ok, _ = await reply
                assert not ok
                late_before = protocol.drops["late_response"]
                serve(*held[-1], slow.clock.now())  # the answer, 200 ms after the request
                assert await eventually(
                    lambda before=late_before: protocol.drops["late_response"] > before
                )
            stats = protocol.reputation.stats(slow.address)
            return (
                protocol.rtt(slow.address).srtt or 0.0,
                stats.consecutive_failures,
                (protocol.stats["peers_forgotten"]),
            )

    srtt, in_a_row, forgotten = run(scenario())
    assert srtt == pytest.approx(0.2)  # learnt from the late answers, 200 ms each
    assert in_a_row == 0
    assert forgotten == 0

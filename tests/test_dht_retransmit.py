"""Retransmission (RFC 6298, 5): a request not answered within its RTO is
sent again, same message id, with the RTO doubled, within the caller's
timeout; Karn's rule; loss is not death."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgpack
from kademlia.utils import digest

from dhtquery.query import QueryManager, new_core
from dhtquery.testing import FakeClock
from tests.dht_helpers import eventually, open_nodes, run_paired, serve_by_hand

Run = Callable[[Coroutine[Any, Any, Any]], Any]
T = TypeVar("T")


def _answer(msg_id: bytes, value: Any) -> bytes:
    return b"\x01" + msg_id + msgpack.packb(value, use_bin_type=True)


def test_a_request_whose_first_datagram_is_lost_is_answered_after_one_retransmission(
    backend: str, run: Run
) -> None:
    async def scenario() -> tuple[bytes, bytes, tuple[bool, Any], int, float | None, float]:
        async with open_nodes(backend) as nodes:
            clock = FakeClock()
            node = await nodes.dht(queries=QueryManager(core=new_core(backend), clock=clock))
            protocol = node.protocol
            assert protocol is not None
            peer = await nodes.raw()
            peer_id = os.urandom(20)
            address = ("127.0.0.1", peer.transport.get_extra_info("sockname")[1])  # type: ignore[union-attr]
            reply = protocol.request(address, "ping", (node.node.id,), 5.0)
            first, _ = await peer.recv()  # lost: never answered
            clock.advance(1.01)  # first contact: RTO 1 s
            second, _ = await peer.recv()
            peer.send(_answer(second[1:21], peer_id), node.address)
            answer = await reply
            estimator = protocol.rtt(address)
            return (
                first,
                second,
                answer,
                protocol.stats["retransmitted"],
                estimator.srtt,
                estimator.rto,
            )

    first, second, answer, retransmitted, srtt, rto = run(scenario())
    assert second == first  # the same message id and body
    assert answer[0] is True
    assert retransmitted == 1
    # Karn: no sample from a retransmitted request; the RTO stays backed off
    assert srtt is None
    assert rto == 2.0


def test_karns_rule_no_rtt_sample_from_a_retransmitted_request(backend: str, run: Run) -> None:
    async def scenario() -> tuple[float | None, float | None, float, float, bool]:
        async with open_nodes(backend) as nodes:
            clock = FakeClock()
            node = await nodes.dht(queries=QueryManager(core=new_core(backend), clock=clock))
            protocol = node.protocol
            assert protocol is not None
            peer = await nodes.raw()
            address = ("127.0.0.1", peer.transport.get_extra_info("sockname")[1])  # type: ignore[union-attr]
            # answered within its RTO, after 20 ms: a sample
            reply = protocol.request(address, "ping", (node.node.id,), 5.0)
            datagram, _ = await peer.recv()
            clock.advance(0.02)
            peer.send(_answer(datagram[1:21], os.urandom(20)), node.address)
            assert (await reply)[0]
            estimator = protocol.rtt(address)
            srtt_before = estimator.srtt
            rto_before = estimator.rto  # 0.02 + 4 * 0.01
            # not answered within it: sent again; the answer to the first copy
            # comes 100 ms after it was sent
            reply = protocol.request(address, "ping", (node.node.id,), 5.0)
            datagram, _ = await peer.recv()
            clock.advance(rto_before + 0.005)
            again, _ = await peer.recv()
            clock.advance(0.1 - rto_before - 0.005)
            peer.send(_answer(datagram[1:21], os.urandom(20)), node.address)
            ok, _ = await reply
            return srtt_before, estimator.srtt, rto_before, estimator.rto, ok and again == datagram

    srtt_before, srtt_after, rto_before, rto_after, ok = run(scenario())
    assert ok
    assert srtt_before is not None and abs(srtt_before - 0.02) < 1e-9
    assert srtt_after == srtt_before  # the 100 ms answer taught nothing
    assert abs(rto_after - 2 * rto_before) < 1e-9  # backed off, and kept so


def test_a_peer_behind_ten_percent_loss_stays_in_the_routing_table(backend: str) -> None:
    async def scenario() -> tuple[bool, int, int, int]:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            lossy = await nodes.dht(bootstrap=[node.address])
            for _ in range(3):  # more contacts, so forgetting is allowed
                await nodes.dht(bootstrap=[node.address])
            protocol, lossy_protocol = node.protocol, lossy.protocol
            assert protocol is not None and lossy_protocol is not None
            chance = random.Random(10)
            address = lossy.address

            def lossy_in(receive: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
                def datagram_received(data: bytes, addr: Any) -> None:
                    if chance.random() >= 0.1:
                        receive(data, addr)

                return datagram_received

            # 10 % of the requests to it and of its answers are lost
            lossy_protocol.datagram_received = lossy_in(lossy_protocol.datagram_received)  # type: ignore[method-assign]
            receive = protocol.datagram_received
            lossy_answers = lossy_in(receive)

            def node_in(data: bytes, addr: Any) -> None:
                (lossy_answers if tuple(addr[:2]) == address else receive)(data, addr)

            protocol.datagram_received = node_in  # type: ignore[method-assign]
            # lookup-style requests: one try each, given up after the RTO
            for _ in range(30):
                await asyncio.gather(
                    *(
                        protocol.request(address, "find_node", (node.node.id, os.urandom(20)))
                        for _ in range(10)
                    )
                )
            assert await eventually(lambda: not protocol._probing, timeout=10.0)
            known = any((n.ip, n.port) == address for n in node.peers())
            return (
                known,
                protocol.stats["timeouts"],
                protocol.stats["liveness_probes"],
                protocol.stats["peers_forgotten"],
            )

    known, timeouts, _probes, forgotten = run_paired(backend, scenario())
    assert timeouts > 20  # the loss was there (~19 % of 300 requests)
    assert known
    assert forgotten == 0


def test_a_peer_answering_after_one_and_a_half_seconds_is_reached(backend: str, run: Run) -> None:
    async def scenario() -> tuple[list[Any], tuple[bool, Any], Any, bytes]:
        async with open_nodes(backend) as nodes:
            clock = FakeClock()
            node = await nodes.dht(queries=QueryManager(core=new_core(backend), clock=clock))
            slow = await nodes.dht()
            slow_protocol = slow.protocol
            assert slow_protocol is not None and node.protocol is not None
            held: list[tuple[float, tuple[bytes, Any, Any]]] = []

            def serve_late(msg_id: bytes, body: Any, addr: Any, now: float) -> None:
                # every request answered 1.5 s (on the asker's clock) late
                held.append((clock.now(), (msg_id, body, addr)))

            serve = serve_by_hand(slow_protocol, serve_late)

            async def drive(operation: Awaitable[T]) -> T:
                task = asyncio.ensure_future(operation)
                for _ in range(2000):
                    if task.done():
                        break
                    await asyncio.sleep(0.001)
                    clock.advance(0.05)
                    while held and held[0][0] + 1.5 <= clock.now() + 1e-9:
                        serve(*held.pop(0)[1], slow.clock.now())
                return await task

            found = await drive(node.bootstrap([slow.address]))
            pong = await drive(node.protocol.ping(slow.address, node.node.id))
            slow.storage[digest("late key")] = b"late value"
            value = await drive(node.get("late key"))
            return found, pong, value, slow.node.id

    found, pong, value, slow_id = run(scenario())
    assert [n.id for n in found] == [slow_id]
    assert pong == (True, slow_id)
    assert value == b"late value"

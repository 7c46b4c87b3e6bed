"""Backpressure: what a peer can make this node queue is bounded, and the
node's own lookups keep their share of the request window."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from kademlia.node import Node
from kademlia.utils import digest

from dhtquery.dht.protocol import HANDOVER_IN_FLIGHT, HANDOVER_QUEUE
from dhtquery.dht.wire import frame_request, pack_request
from tests.dht_helpers import open_nodes, run_paired, signed

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_a_ping_flood_from_fresh_ids_leaves_queues_and_tasks_bounded(backend: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            holder = await nodes.dht(bootstrap=[node.address])
            await nodes.dht(bootstrap=[node.address])
            protocol = node.protocol
            assert protocol is not None
            # values the node would hand over to every new node close to them
            for index in range(300):
                node.storage[digest(f"key {index}")] = b"value"
            # a record only the holder has: the node's lookup must go out
            holder.records.put(
                digest("wanted"), signed("publisher", b"found", "wanted"), holder.clock.now()
            )
            attacker = await nodes.raw()
            most_tasks = most_waiting = most_handover = 0
            outcomes = []
            for round_number in range(10):
                for _ in range(200):  # well-formed pings, each from a new id
                    body = pack_request("ping", (os.urandom(20),))
                    attacker.send(frame_request(os.urandom(20), body), node.address)
                await asyncio.sleep(0.01)
                most_tasks = max(most_tasks, len(asyncio.all_tasks()))
                most_waiting = max(most_waiting, protocol.waiting)
                most_handover = max(most_handover, len(protocol._handover))
                if round_number % 3 == 0:
                    # the node's own lookup, during the flood
                    outcomes.append(await node.get_all("wanted", quorum=1, timeout=5.0))
            await asyncio.sleep(0.05)
            return {
                "tasks": most_tasks,
                "waiting": most_waiting,
                "handover": most_handover,
                "served": protocol.stats["served"],
                "limited": protocol.drops["welcome_rate_limited"],
                "handover_dropped": protocol.drops["handover_dropped"],
                "found": [[r.item.data for r in outcome.results] for outcome in outcomes],
                "peers": node.peer_count,
            }

    seen = run_paired(backend, scenario())
    assert seen["served"] >= 1500  # the node kept answering
    assert seen["found"] == [[b"found"]] * 4  # and its own lookups succeeded
    assert seen["limited"] > 1500  # one address, one node: the rest not welcomed
    assert seen["handover"] <= HANDOVER_QUEUE
    assert seen["peers"] <= 2 + 3 + 1  # the burst of new ids one address may bring
    # stock made a Task per value handed over (4,478 for 10 pings)
    assert seen["tasks"] <= HANDOVER_IN_FLIGHT + 30
    assert seen["waiting"] <= 1024


def test_the_hand_over_of_values_to_new_nodes_is_paced_and_bounded(backend: str) -> None:
    async def scenario() -> tuple[int, int, int, int]:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            for index in range(3000):
                node.storage[digest(f"key {index}")] = b"value"
            silent = await nodes.raw()
            host, port = silent.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
            before = len(asyncio.all_tasks())
            # new nodes learnt from answers (kademlia welcomes each and hands
            # it every value it is now among the closest to)
            for _ in range(10):
                protocol.welcome_if_new(Node(os.urandom(20), host, port))
            await asyncio.sleep(0.01)
            return (
                len(asyncio.all_tasks()) - before,
                len(protocol._handover),
                protocol.drops["handover_dropped"],
                protocol.stats["handed_over"],
            )

    tasks, queued, dropped, handed = run_paired(backend, scenario())
    assert tasks <= HANDOVER_IN_FLIGHT + 2  # stock: a Task per value
    assert handed == HANDOVER_IN_FLIGHT
    assert queued <= HANDOVER_QUEUE
    assert dropped > 0


def test_background_requests_cannot_take_the_reserved_share_of_the_window(
    backend: str, run: Run
) -> None:
    async def scenario() -> tuple[int, int, int, tuple[bool, Any], int, list[bool]]:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            peer = await nodes.dht()
            protocol = node.protocol
            assert protocol is not None
            protocol.max_outstanding = 8
            protocol.reserved_for_own = 2
            protocol.max_waiting_background = 4
            protocol.max_waiting = 3
            silent = await nodes.raw()
            silent_address = silent.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
            # kademlia's own RPCs (pings here) to a peer that never answers
            background = [
                asyncio.ensure_future(protocol.ping(silent_address, node.node.id))
                for _ in range(20)
            ]
            await asyncio.sleep(0.01)
            on_the_wire = len(protocol.requests)
            refused = sum(1 for task in background if task.done())
            # the node's own request goes out at once, in the reserved share
            answer = await asyncio.wait_for(
                protocol.request(peer.address, "ping", (node.node.id,)), 2.0
            )
            # own requests beyond the window wait, up to their bound
            silent_own = [
                protocol.request(silent_address, "ping", (node.node.id,)) for _ in range(5)
            ]
            await asyncio.sleep(0)
            own_refused = [future.done() for future in silent_own]
            for task in background:
                task.cancel()
            return (
                on_the_wire,
                refused,
                protocol.drops["queue_full_background"],
                answer,
                protocol.drops["queue_full"],
                own_refused,
            )

    on_the_wire, refused, counted, answer, own_counted, own_refused = run(scenario())
    assert on_the_wire == 6  # 8 minus the 2 reserved for the node's own
    assert refused == 10  # 20 - 6 on the wire - 4 waiting
    # (and the ping that would check the peer, which pinged back, is one more)
    assert counted >= refused
    assert answer[0] is True
    # the 2 reserved slots take 2, the own queue holds 3: none refused
    assert own_counted == own_refused.count(True) == 0

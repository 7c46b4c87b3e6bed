"""A node id learned from a request enters the routing table only once a
ping to its address is answered with that id: silent senders (a flood from
sockets that never answer) cannot fill the table and cost the node's own
lookups their requests."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import pytest
from kademlia.utils import digest

from dhtquery.dht import protocol as protocol_module
from dhtquery.dht.wire import frame_request, pack_request

from .dht_helpers import RawPeer, eventually, open_nodes, signed

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def _ping_from(sender_id: bytes) -> bytes:
    return frame_request(os.urandom(20), pack_request("ping", (sender_id,)))


def _answer(request: bytes, value: Any) -> bytes:
    return b"\x01" + request[1:21] + msgpack.packb(value, use_bin_type=True)


async def _verify_ping(peer: RawPeer) -> bytes:
    """The next request the node sends ``peer`` (its verification ping)."""
    for _ in range(20):  # (bounded: answers to the peer's own pings come first)
        datagram, _ = await peer.recv()
        if datagram[0] == 0:
            return datagram
    raise AssertionError("no request from the node")


def test_request_senders_that_never_answer_stay_out_of_the_routing_table(
    backend: str, run: Run
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            holder = await nodes.dht(bootstrap=[node.address])
            holder.records.put(
                digest("wanted"), signed("publisher", b"wanted", "wanted"), holder.clock.now()
            )
            assert await eventually(lambda: node.peer_count == 1)
            served = node.stats.get("served", 0)
            silent = [await nodes.raw() for _ in range(16)]
            for peer in silent:
                for _ in range(3):  # each a fresh id, within the per-address burst
                    peer.send(_ping_from(os.urandom(20)), node.address)
            # (the holder's own requests are served too: "served" alone may
            # reach the mark before the last silent ping is read)
            assert await eventually(lambda: node.stats.get("served", 0) >= served + 48)
            assert await eventually(lambda: node.stats.get("verify_pings", 0) >= 1 + 16)
            # one verification ping per address, none answered: no contact
            assert node.stats.get("verify_pings", 0) == 1 + 16
            assert [(peer.ip, peer.port) for peer in node.peers()] == [holder.address]
            # the node's own lookup asks the holder alone, not 48 strangers
            outcome = await node.get_all("wanted", quorum=1, timeout=5.0)
            assert [result.item.data for result in outcome.results] == [b"wanted"]
            assert outcome.peers_failed == 0

    run(scenario())


def test_a_sender_is_added_once_it_answers_the_ping_with_its_own_id(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            honest, liar = await nodes.raw(), await nodes.raw()
            honest_id, liar_id = os.urandom(20), os.urandom(20)
            honest.send(_ping_from(honest_id), node.address)
            liar.send(_ping_from(liar_id), node.address)
            honest.send(_answer(await _verify_ping(honest), honest_id), node.address)
            # answers with an id other than the one its request gave
            liar.send(_answer(await _verify_ping(liar), os.urandom(20)), node.address)
            assert await eventually(lambda: node.stats.get("verify_failed", 0) == 1)
            assert await eventually(lambda: node.peer_count == 1)
            assert [(peer.id, peer.ip, peer.port) for peer in node.peers()] == [
                (honest_id, *honest.address)
            ]

    run(scenario())


def test_verification_pings_in_flight_are_bounded(
    backend: str, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol_module, "VERIFY_IN_FLIGHT", 4)

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            silent = [await nodes.raw() for _ in range(10)]
            for peer in silent:
                peer.send(_ping_from(os.urandom(20)), node.address)
            assert await eventually(lambda: node.stats.get("served", 0) == 10)
            assert node.stats.get("verify_pings", 0) == 4
            assert node.drops.get("verify_dropped", 0) == 6
            assert node.peer_count == 0

    run(scenario())


def test_a_verified_sender_is_not_pinged_again_when_it_comes_back(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            peer = await nodes.raw()
            peer_id = os.urandom(20)
            peer.send(_ping_from(peer_id), node.address)
            peer.send(_answer(await _verify_ping(peer), peer_id), node.address)
            assert await eventually(lambda: node.peer_count == 1)
            # out of the table (a full bucket would keep it out the same
            # way), then a request from the same id and address: welcomed
            # at once, no second ping
            assert node.forget(peer.address)
            peer.send(_ping_from(peer_id), node.address)
            assert await eventually(lambda: node.peer_count == 1)
            assert node.stats.get("verify_pings", 0) == 1
            # the same address with another id is verified anew
            peer.send(_ping_from(os.urandom(20)), node.address)
            assert await eventually(lambda: node.stats.get("verify_pings", 0) == 2)

    run(scenario())

"""Hostile datagrams from raw UDP sockets on 127.0.0.1: every kind is
counted by kind in the node's stats and dropped, nothing reaches the event
loop's exception handler, and the node goes on answering."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
from kademlia.node import Node

from dhtquery.dht import DhtNode

from .dht_helpers import RawPeer, open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _request(body: bytes) -> bytes:
    return b"\x00" + os.urandom(20) + body


def _hostile(node_id: bytes) -> dict[str, list[bytes]]:
    """Datagrams by the drop counter each must land in."""
    key = os.urandom(20)
    return {
        "short": [b"\x07", b"\x00", b"\x01" * 9, b"\x00" * 21, b"\x01" + os.urandom(20)] * 40,
        "bad_kind": [bytes([kind]) + os.urandom(20) + b"\xc0" for kind in range(2, 256)],
        "malformed": [
            _request(b"\xc1"),
            _request(b"\x92\xa4ping"),
            _request(_pack(["ping", [node_id]]) + b"trailing garbage"),
            _request(b"\x91" * 5000 + b"\xc0"),
            _request(b"\x81\x91\x01\x02"),
            _request(b"\xdd\xff\xff\xff\xff"),
            b"\x01" + os.urandom(20) + b"\xc1",
        ]
        * 40,
        "bad_utf8": [
            _request(b"\x92\xa2\xff\xfe\x90"),
            _request(b"\x92\xa4ping\x91\xa3\xc3\x28\x41"),
            b"\x01" + os.urandom(20) + b"\xa2\xed\xa0",
        ]
        * 60,
        "oversize_request": [_request(b"\xc5\x23\x28" + b"x" * 9000)] * 40,
        "bad_request": [
            _request(_pack(value))
            for value in (5, "ping", ["ping"], [5, []], ["ping", [node_id], 1], {"ping": []})
        ]
        * 40,
        "unknown_rpc": [
            _request(_pack([name, [node_id]]))
            for name in ("evil", "__init__", "rpc_ping", "connection_lost", "", "é")
        ]
        * 40,
        "bad_args": [
            _request(_pack(body))
            for body in (
                ["ping", []],  # too few
                ["ping", [node_id, node_id]],  # too many
                ["ping", [b""]],  # an empty node id (1 to 64 bytes are read, as stock does)
                ["ping", [node_id * 4]],  # an 80-byte node id
                ["ping", [node_id.hex()]],  # str where bytes are expected
                ["ping", 5],  # arguments not an array
                ["find_node", [node_id, "a key"]],
                ["find_values", [node_id, 7]],
                # (find_values' two ids are checked in one call: each way)
                ["find_values", [node_id]],
                ["find_values", [b"", key]],
                ["find_values", [node_id.hex(), key]],
                ["find_values", [node_id, key * 4]],
                ["store", [node_id, key, [1, 2]]],  # not a plain value
                ["store", [node_id, key, None]],
            )
        ]
        * 30,
        "unknown_id": [b"\x01" + os.urandom(20) + _pack(True)] * 200,
        # (a message id each: a request resent with its id is answered from
        # the replay cache, not served and counted again)
        "bad_record": [
            _request(_pack(["store_record", [node_id, key, record]]))
            for _ in range(40)
            for record in (
                {"p": "forger", "n": "", "d": b"data", "h": b"\x00" * 32},  # unsigned
                [b"\x01" * 32, key, "", 1, 0, b"d"],  # no signature
                ["not", "a", "map"],
            )
        ],
    }


async def _send_paced(peer: RawPeer, node: DhtNode, datagrams: list[bytes], already: int) -> int:
    """Send in small batches, waiting (bounded) for the node to have counted
    each batch, so no socket buffer overflows; returns the new total."""
    protocol = node.protocol
    assert protocol is not None
    loop = asyncio.get_running_loop()
    total = already
    for start in range(0, len(datagrams), 16):
        for datagram in datagrams[start : start + 16]:
            peer.send(datagram, node.address)
            total += 1
        deadline = loop.time() + 5.0
        while protocol.stats["dropped"] < total and loop.time() < deadline:
            await asyncio.sleep(0.001)
    return total


def test_hostile_datagrams_are_counted_dropped_and_harmless(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            attacker = await nodes.raw()
            # the peer the node asks (the attacker's queue holds the node's
            # answers to the store_record requests above)
            asked_peer = await nodes.raw()
            impostor = await nodes.raw()
            attacker_id = os.urandom(20)

            sent = Counter[str]()
            total = 0
            for kind, datagrams in _hostile(node.node.id).items():
                total = await _send_paced(attacker, node, datagrams, total)
                sent[kind] += len(datagrams)

            # Responses to real requests of the node: answered from another
            # socket than the one asked, then for real from the right one.
            asked = [
                protocol.request(asked_peer.address, "ping", (node.node.id,), 5.0)
                for _ in range(100)
            ]
            ids = [(await asked_peer.recv())[0][1:21] for _ in asked]
            for msg_id in ids:
                impostor.send(b"\x01" + msg_id + _pack(os.urandom(20)), node.address)
            sent["wrong_address"] += len(ids)
            total += len(ids)
            for msg_id in ids:
                asked_peer.send(b"\x01" + msg_id + _pack(attacker_id), node.address)
            assert await asyncio.gather(*asked) == [(True, attacker_id)] * len(asked)

            # Answers of the wrong shape.
            asked = [
                protocol.request(asked_peer.address, "find_node", (node.node.id, attacker_id), 5.0)
                for _ in range(100)
            ]
            ids = [(await asked_peer.recv())[0][1:21] for _ in asked]
            shapes = [[[b"", "127.0.0.1", 1]], [[attacker_id, "host.name", 1]], 5, None]
            for index, msg_id in enumerate(ids):
                asked_peer.send(b"\x01" + msg_id + _pack(shapes[index % 4]), node.address)
            await asyncio.gather(*asked)
            sent["bad_response"] += len(ids)
            total += len(ids)

            # Late answers: to requests that already gave up.
            asked = [
                protocol.request(asked_peer.address, "ping", (node.node.id,), 0.05)
                for _ in range(100)
            ]
            ids = [(await asked_peer.recv())[0][1:21] for _ in asked]
            assert await asyncio.gather(*asked) == [(False, None)] * len(asked)
            await _send_paced(
                attacker, node, [b"\x01" + msg_id + _pack(attacker_id) for msg_id in ids], total
            )
            sent["late_response"] += len(ids)
            total += len(ids)

            assert total >= 2000
            # the node still answers, a stock kademlia node and ours alike
            stock = await nodes.stock()
            assert await stock.protocol.ping(node.address, stock.node.id) == (True, node.node.id)
            peer = await nodes.dht()
            assert await peer.protocol.call_ping(Node(node.node.id, *node.address)) == (
                True,
                node.node.id,
            )

            stats = node.stats
            assert nodes.loop_errors == []
            assert stats.get("handler_error", 0) == 0
            assert {kind: stats.get(kind, 0) for kind in sent} == dict(sent)
            assert stats["dropped"] == total
            # nothing on the wire but the liveness ping of the silent peer
            # (the late answers came after its requests had given up) and
            # the pings that verify the two real nodes that pinged it before
            # they enter its routing table: none for the attacker's ids
            assert protocol.stats["verify_pings"] == 2
            assert protocol.stats["liveness_probes"] <= 1
            assert (
                len(protocol.requests)
                <= protocol.stats["liveness_probes"] + protocol.stats["verify_pings"]
            )

    run(scenario())


def test_malformed_lookup_answers_fail_the_peer_without_loop_errors(backend: str, run: Run) -> None:
    """A find_values answer of the wrong shape (contacts that are not
    contacts, a host name to resolve, records that are not a list) ends
    that peer's part in the lookup at once: no exception in a callback, no
    wait for the deadline."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peer = await nodes.raw()
            protocol.router.add_contact(Node(os.urandom(20), *peer.address))
            answers = [
                [1, 2, 3],
                {"records": 5, "nodes": []},
                {"records": [], "nodes": [[os.urandom(20), "example.invalid", 4000]]},
                {"records": [], "nodes": [[os.urandom(20), "127.0.0.1", 0]]},
            ]
            for index, answer in enumerate(answers):
                handle = node.get_all(f"key {index}", timeout=10.0)
                request, _ = await peer.recv()
                peer.send(b"\x01" + request[1:21] + _pack(answer), node.address)
                outcome = await asyncio.wait_for(handle, 5.0)
                assert outcome.reason == "all_peers"
                assert outcome.peers_failed == 1 and outcome.results == ()
            assert node.stats["bad_response"] == len(answers)
            assert nodes.loop_errors == []

    run(scenario())


def test_stock_kademlia_sends_hostile_datagrams_to_the_loop(backend: str, run: Run) -> None:
    """The contrast: stock rpcudp lets a malformed datagram raise in a task,
    which reaches the event loop's exception handler."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            stock = await nodes.stock()
            attacker = await nodes.raw()
            attacker.send(_request(b"\xc1"), stock.transport.get_extra_info("sockname")[:2])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0
            while not nodes.loop_errors and loop.time() < deadline:
                await asyncio.sleep(0.001)
            assert len(nodes.loop_errors) == 1
            assert "exception" in nodes.loop_errors[0]

    run(scenario())

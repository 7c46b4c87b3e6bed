"""Client mode (libp2p kad-dht's): a node that only asks marks its requests
(the message id's pad is ``CLIENT_PAD``); our nodes answer it but never add
it to their routing tables, so once it has left it costs later lookups
nothing. Stock kademlia nodes, which echo the id unchanged, still serve it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from kademlia.network import Server

from dhtquery import DhtNode, QueryManager, new_core
from dhtquery.dht.rpc_table import CLIENT_PAD, RpcTable
from dhtquery.query import ExpiryTimer
from dhtquery.registry import P2PRegistry, Package, PackageId, Query
from dhtquery.testing import HOST, FakeClock
from tests.dht_helpers import RawPeer, address_of, answer, open_nodes, open_ping, run_paired

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def _client(backend: str) -> DhtNode:
    return DhtNode(queries=QueryManager(core=new_core(backend)), client=True)


async def _bind(address: tuple[str, int]) -> RawPeer:
    """A raw socket on the port a stopped node had (asyncio closes a
    transport one loop iteration after ``close()``)."""
    loop = asyncio.get_running_loop()
    for _ in range(100):
        try:
            _, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=address)
            return peer
        except OSError:
            await asyncio.sleep(0)
    raise AssertionError(f"{address} stayed bound")


def _ids(node: DhtNode) -> set[bytes]:
    return {peer.id for peer in node.peers()}


def test_a_client_that_joined_and_left_costs_later_searches_nothing(backend: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with open_nodes(backend) as nodes:
            servers = [await nodes.add(registry=True) for _ in range(6)]
            peers_before = [server.peer_count for server in servers]
            entry = [servers[0].address]

            first = _client(backend)
            first_registry = P2PRegistry(first, anti_entropy_period=None)
            await first.listen(0, HOST)
            try:
                assert await first.bootstrap(entry)
                package = Package(
                    PackageId("acme", "client-mode"), "1.0.0", "Client mode", tags=("cm",)
                )
                held = await first_registry.publish(package)
                searched = await first_registry.search(Query("client", tags=("cm",)))
                first_address, first_id = first.address, first.node.id
            finally:
                first.stop()
            in_tables = [first_id in _ids(server) for server in servers]
            served = [server.stats.get("client_requests", 0) for server in servers]

            # Whatever a later client sends to the departed one arrives here.
            listener = await _bind(first_address)
            nodes.raw_peers.append(listener)
            second = _client(backend)
            second_registry = P2PRegistry(second, anti_entropy_period=None)
            await second.listen(0, HOST)
            try:
                assert await second.bootstrap(entry)
                found = await second_registry.search(Query("client", tags=("cm",)))
                lookup = await second.get_all("anything at all")
                stored = await second.put("a key", b"a record")
                second_stats = dict(second.stats)
                asked_departed = first_address in second.reputation
            finally:
                second.stop()
            return {
                "held": held,
                "searched": [p.id for p in searched],
                "in_tables": in_tables,
                "served": served,
                "peers_before": peers_before,
                "peers_after": [server.peer_count for server in servers],
                "found": [p.id for p in found],
                "lookup_timed_out": lookup.timed_out,
                "stored": stored,
                "timeouts": second_stats.get("timeouts", 0),
                "retransmitted": second_stats.get("retransmitted", 0),
                "asked_departed": asked_departed,
                "to_departed": listener.received.qsize(),
                "second_in_tables": [second.node.id in _ids(server) for server in servers],
            }

    seen = run_paired(backend, scenario())
    package_id = PackageId("acme", "client-mode")
    # the client was served: it published and found its package ...
    assert seen["held"] == 6  # the six servers; a client keeps no copy
    assert seen["searched"] == [package_id]
    assert seen["served"][0] > 0  # (its bootstrap node, at least)
    # ... and is in no routing table: peer counts did not move
    assert seen["in_tables"] == [False] * 6
    assert seen["second_in_tables"] == [False] * 6
    assert seen["peers_after"] == seen["peers_before"]
    # the later client's search, lookup and publish sent nothing to it
    assert seen["found"] == [package_id]
    assert seen["to_departed"] == 0
    assert not seen["asked_departed"]
    assert seen["timeouts"] == 0 and seen["retransmitted"] == 0
    assert seen["lookup_timed_out"] is False
    assert seen["stored"] == 6


def test_a_node_not_in_client_mode_is_added_to_routing_tables(backend: str) -> None:
    # (the control of the test above: the same join without client mode)
    async def scenario() -> list[bool]:
        async with open_nodes(backend) as nodes:
            servers = [await nodes.add() for _ in range(3)]
            joiner = await nodes.dht(bootstrap=[servers[0].address])
            await joiner.put("a key", b"a record")
            return [joiner.node.id in _ids(server) for server in servers]

    assert run_paired(backend, scenario()) == [True] * 3


def test_stock_nodes_still_serve_a_client(backend: str, run: Run) -> None:
    async def scenario() -> tuple[bool, Any, Any, bool]:
        async with open_nodes(backend) as nodes:
            stock = [await nodes.stock() for _ in range(3)]
            for server in stock[1:]:
                await server.bootstrap([address_of(stock[0])])
            client = _client(backend)
            await client.listen(0, HOST)
            try:
                joined = bool(await client.bootstrap([address_of(stock[0])]))
                stored = await client.set("stock key", "stock value")
                from_client = await client.get("stock key")
                reader = Server()
                await reader.listen(0, HOST)
                try:
                    await reader.bootstrap([address_of(stock[1])])
                    from_stock = await reader.get("stock key")
                finally:
                    reader.stop()
                # stock kademlia knows nothing of the marker: it adds the
                # client as it adds anyone (nothing changes for it)
                buckets = stock[0].protocol.router.buckets
                known = client.node.id in {n.id for b in buckets for n in b.get_nodes()}
            finally:
                client.stop()
            return joined and stored, from_client, from_stock, known

    ok, from_client, from_stock, known = run(scenario())
    assert ok
    assert from_client == "stock value"
    assert from_stock == "stock value"
    assert known


def test_a_client_tables_ids_carry_the_marker_and_late_answers_stay_late(backend: str) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        timer = ExpiryTimer(clock)
        table = RpcTable(asyncio.get_running_loop(), new_core(backend), timer, clock, client=True)
        msg_id = open_ping(table, ("127.0.0.1", 1), 0.001)
        assert msg_id[16:] == CLIENT_PAD
        clock.advance(0.01)  # the request gives up; its id is a tombstone
        assert len(table) == 0
        assert answer(table, msg_id, ("127.0.0.1", 1))[0] == "late_response"
        # an id with our nodes' zero pad is none this table made
        assert answer(table, msg_id[:16] + bytes(4), ("127.0.0.1", 1))[0] == "unknown_id"
        answered = open_ping(table, ("127.0.0.1", 1), 1.0)
        assert answer(table, answered, ("127.0.0.1", 1))[0] == "answered"
        table.close()

    run_paired(backend, scenario())

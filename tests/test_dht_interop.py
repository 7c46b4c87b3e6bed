"""Stock kademlia 2.2.3 ``Server`` nodes and DhtNodes in one network over
UDP on 127.0.0.1: bootstrap, ping, find_node, store/find_value both ways,
and get_all with stock peers that do not answer our extension RPCs."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from kademlia.node import Node
from kademlia.utils import digest

from dhtquery.dht import Record

from .dht_helpers import Nodes, NullStorage, address_of, open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]


async def _mixed(nodes: Nodes) -> tuple[Any, Any, Any, Any]:
    """ours <- stock <- ours <- stock: each kind bootstraps off the other."""
    d0 = await nodes.dht()
    s0 = await nodes.stock(bootstrap=[d0.address])
    d1 = await nodes.dht(bootstrap=[address_of(s0)])
    s1 = await nodes.stock(bootstrap=[d1.address])
    return d0, s0, d1, s1


def _known_ids(server: Any) -> set[bytes]:
    return {node.id for node in server.protocol.router.find_neighbors(server.node, 100)}


def test_mixed_network_bootstrap_ping_and_find_node_both_ways(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            d0, s0, d1, s1 = await _mixed(nodes)
            everyone = {d0.node.id, s0.node.id, d1.node.id, s1.node.id}
            # each bootstrap found the others, whichever kind it went through
            assert _known_ids(s0) >= {d0.node.id}
            assert _known_ids(d1) >= {d0.node.id, s0.node.id}
            assert _known_ids(s1) == everyone - {s1.node.id}

            # ping: stock -> ours and ours -> stock
            assert await s0.protocol.ping(d0.address, s0.node.id) == (True, d0.node.id)
            assert await d0.protocol.ping(address_of(s0), d0.node.id) == (True, s0.node.id)

            # find_node: stock asks ours, ours asks stock (an answer lists
            # the contacts the asked node knows, less the asker)
            target = Node(digest("somewhere"))
            ok, contacts = await s1.protocol.call_find_node(Node(d0.node.id, *d0.address), target)
            assert ok
            assert {contact[0] for contact in contacts} == _known_ids(d0) - {s1.node.id}
            assert s0.node.id in {contact[0] for contact in contacts}
            ok, contacts = await d1.protocol.call_find_node(
                Node(s1.node.id, *address_of(s1)), target
            )
            assert ok
            assert {contact[0] for contact in contacts} == _known_ids(s1) - {d1.node.id}
            assert d0.node.id in {contact[0] for contact in contacts}
            assert nodes.loop_errors == []

    run(scenario())


def test_mixed_network_set_and_get_both_ways(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            d0, s0, d1, s1 = await _mixed(nodes)
            # clients that keep nothing: their get must ask the network
            our_client = await nodes.dht(storage=NullStorage(), bootstrap=[address_of(s1)])
            stock_client = await nodes.stock(storage=NullStorage(), bootstrap=[d1.address])

            assert await s1.set("set by stock", "stock value") is True
            assert await our_client.get("set by stock") == "stock value"
            assert await d1.set("set by ours", b"our value") is True
            assert await stock_client.get("set by ours") == b"our value"

            # and at the RPC level, each kind serving the other's find_value
            ok, found = await our_client.protocol.call_find_value(
                Node(s0.node.id, *address_of(s0)), Node(digest("set by stock"))
            )
            assert ok and found == {"value": "stock value"}
            ok, found = await stock_client.protocol.call_find_value(
                Node(d0.node.id, *d0.address), Node(digest("set by ours"))
            )
            assert ok and found == {"value": b"our value"}
            # the stock set stored on our nodes and ours on the stock ones
            assert d0.storage.get(digest("set by stock")) == "stock value"
            assert s0.storage.get(digest("set by ours")) == b"our value"
            assert nodes.loop_errors == []

    run(scenario())


def test_get_all_with_stock_peers_marks_them_without_extensions_not_dead(
    backend: str, run: Run
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            d0, s0, _d1, s1 = await _mixed(nodes)
            client = await nodes.dht(bootstrap=[d0.address])
            protocol = client.protocol
            stock = [address_of(s0), address_of(s1)]
            # "alive": the client has had an answer from each stock peer
            for address in stock:
                ok, _ = await protocol.ping(address, client.node.id)
                assert ok
            assert await s0.set("legacy", b"a plain kademlia value") is True
            await d0.put("records", b"a record")

            # two lookups at once: both ask the stock peers find_values
            legacy = client.get_all("legacy")
            records = client.get_all("records")
            legacy_outcome, records_outcome = await legacy, await records

            # not dead: no failure counted, the lookups did not end adaptive
            for address in stock:
                assert protocol.extensions[address] is False
                assert protocol.reputation.stats(address).failures == 0
            assert protocol.extensions[d0.address] is True
            assert legacy_outcome.reason == "all_peers"
            assert records_outcome.reason == "all_peers"
            # asked again with find_value, the stock holders gave the value
            assert legacy_outcome.items == [Record.plain(b"a plain kademlia value")]
            assert not legacy_outcome.items[0].signed
            assert [(r.publisher, r.data, r.signed) for r in records_outcome.items] == [
                (d0.publisher, b"a record", True)
            ]
            assert nodes.loop_errors == []

    run(scenario())


def test_put_keeps_stock_peers_in_the_routing_table(backend: str, run: Run) -> None:
    """A stock peer does not answer store_record: put() must not take that
    for a dead peer and drop it from the routing table."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            d0, s0, d1, s1 = await _mixed(nodes)
            for address in (address_of(s0), address_of(s1)):
                ok, _ = await d1.protocol.ping(address, d1.node.id)
                assert ok
            before = _known_ids(d1)
            assert {s0.node.id, s1.node.id} <= before
            holders = await d1.put("a key", b"a record")
            assert holders >= 1
            assert d0.records.get(digest("a key"), time.monotonic()) != []
            assert _known_ids(d1) == before
            assert nodes.loop_errors == []

    run(scenario())

"""Original publishers republish (every ``republish_interval`` on the
node's clock, and after a restart), and holders hand records to nodes that
join closer to a key: real UDP on 127.0.0.1, time moved by a FakeClock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kademlia.utils import digest

from dhtquery import DhtNode, QueryManager, new_core
from dhtquery.dht import Publisher, Record, StoreLimits
from dhtquery.dht.republish import MAX_PUBLISHED, Republisher
from dhtquery.errors import InvalidArgumentError, StorageFull
from dhtquery.testing import HOST, FakeClock
from tests.dht_helpers import Nodes, eventually, open_nodes, publisher_named, run_paired

TTL = 100.0
INTERVAL = 150.0


def _holders(nodes: list[DhtNode], key: str, clock: FakeClock) -> int:
    return sum(1 for node in nodes if node.records.get(digest(key), clock.now()))


async def _network(nodes: Nodes, clock: FakeClock, count: int, **kwargs: Any) -> list[DhtNode]:
    backend = nodes.backend
    made = []
    for _ in range(count):
        made.append(
            await nodes.add(
                queries=QueryManager(core=new_core(backend), clock=clock),
                limits=StoreLimits(ttl=TTL),
                republish_interval=INTERVAL,
                **kwargs,
            )
        )
    return made


def test_a_publishers_record_comes_back_after_holders_lost_it(backend: str) -> None:
    async def scenario() -> dict[str, Any]:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            network = await _network(nodes, clock, 5)
            publisher, reader = network[1], network[4]
            held = await publisher.put("a key", b"a record")
            clock.advance(TTL + 1)  # every holder drops it at its TTL
            lost = _holders(network, "a key", clock)
            missing = await reader.get_all("a key")
            clock.advance(INTERVAL - TTL - 1)  # the publisher's round is due
            busy = publisher.republisher.busy
            await publisher.republisher.drain()
            found = await reader.get_all("a key")
            return {
                "held": held,
                "lost": lost,
                "missing": missing.items,
                "busy": busy,
                "stats": dict(publisher.republisher.stats),
                "back": _holders(network, "a key", clock),
                "found": [record.data for record in found.items],
            }

    seen = run_paired(backend, scenario())
    assert seen["held"] == 5
    assert seen["lost"] == 0 and seen["missing"] == []
    assert seen["busy"]  # the timer started the round
    assert seen["stats"] == {"rounds": 1, "republished": 1, "failed": 0}
    assert seen["back"] == 5
    assert seen["found"] == [b"a record"]


def test_a_restarted_publisher_republishes_what_it_published(backend: str, tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int, int]:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            network = await _network(nodes, clock, 4)
            publisher = DhtNode(
                queries=QueryManager(core=new_core(backend), clock=clock),
                data_dir=tmp_path,
                limits=StoreLimits(ttl=TTL),
            )
            await publisher.listen(0, HOST)
            await publisher.bootstrap([network[0].address])
            held = await publisher.put("kept key", b"kept record")
            await publisher.put("other key", b"other record", name="second")
            port = publisher.address[1]
            publisher.stop()
            clock.advance(TTL + 1)  # the holders drop them; the publisher is down
            lost = _holders(network, "kept key", clock)

            again = DhtNode(
                queries=QueryManager(core=new_core(backend), clock=clock),
                data_dir=tmp_path,
                limits=StoreLimits(ttl=TTL),
            )
            nodes.nodes.append(again)
            # the port it had, as a node restarted on a fixed port (its
            # peers know it there; with a FakeClock a request to a gone
            # address would wait for ever)
            await _listen_on(again, port)
            remembered = len(again.republisher)
            await again.bootstrap(again.known_peers())  # rejoined: a round is due now
            clock.advance(0)
            await again.republisher.drain()
            return held, lost, remembered, _holders(network, "kept key", clock)

    held, lost, remembered, back = run_paired(backend, scenario())
    assert held == 5
    assert lost == 0
    assert remembered == 2
    assert back == 4  # every other holder has it again


async def _listen_on(node: DhtNode, port: int) -> None:
    """listen on ``port``, which a stopped node had (asyncio closes a
    transport one loop iteration after ``close()``)."""
    for _ in range(100):
        try:
            await node.listen(port, HOST)
            return
        except OSError:
            await asyncio.sleep(0)
    raise AssertionError(f"port {port} stayed bound")


def test_unpublish_stops_the_republishing(backend: str) -> None:
    async def scenario() -> tuple[bool, bool, int, int]:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            publisher, holder = await _network(nodes, clock, 2)
            await publisher.put("a key", b"a record")
            stopped = publisher.unpublish("a key")
            again = publisher.unpublish("a key")
            clock.advance(INTERVAL)
            await publisher.republisher.drain()
            return stopped, again, len(publisher.republisher), _holders([holder], "a key", clock)

    stopped, again, remembered, held = run_paired(backend, scenario())
    assert stopped and not again
    assert remembered == 0
    assert held == 0  # expired at its TTL, not stored again


def test_the_republisher_refuses_a_bad_interval_and_past_its_cap() -> None:
    async def store(key: bytes, record: Any) -> int:
        return 0

    with pytest.raises(InvalidArgumentError, match="interval must be > 0 seconds or None"):
        Republisher(store, FakeClock(), interval=0)
    republisher = Republisher(store, FakeClock(), interval=None)

    record = Record.create(Publisher.generate(), b"k" * 20, b"x")
    for index in range(MAX_PUBLISHED):
        republisher._published[(index.to_bytes(20, "big"), record.publisher, "")] = record
    with pytest.raises(StorageFull, match="limit of 100000 publications"):
        republisher.remember(b"k" * 20, record)
    republisher.remember((0).to_bytes(20, "big"), record)  # a replacement still fits
    assert len(republisher) == MAX_PUBLISHED


def _far_key(joiner: bytes, others: list[bytes]) -> str:
    """A key to which ``joiner`` is farther than every other node."""
    for index in range(100_000):
        key = f"far key {index}"
        point = int.from_bytes(digest(key), "big")
        mine = point ^ int.from_bytes(joiner, "big")
        if all(mine > point ^ int.from_bytes(other, "big") for other in others):
            return key
    raise AssertionError("no far key found")


def test_a_closer_joiner_receives_the_records_it_should_hold(backend: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with open_nodes(backend) as nodes:
            network = [await nodes.add(ksize=3) for _ in range(6)]
            # (the joins' verification pings answered: both puts below see
            # the same routing tables, so they find the same closest nodes)
            assert await nodes.settle(5.0)
            near = digest("near key")
            # an id next to the key: closer to it than any node of the network
            joiner_id = (int.from_bytes(near, "big") ^ 1).to_bytes(20, "big")
            far = _far_key(joiner_id, [node.node.id for node in network])
            for name in ("alice", "bob"):
                publisher = publisher_named(name)
                await network[2].put("near key", f"by {name}".encode(), publisher=publisher)
            await network[3].put(far, b"far record")
            held_before = sum(1 for node in network if near in node.records._keys)
            joiner = await nodes.add(ksize=3, node_id=joiner_id)
            got = await eventually(lambda: len(joiner.records.get(near, 0.0)) == 2, timeout=5)
            return {
                "holders": held_before,
                "got": got,
                "records": sorted(r.publisher for r in joiner.records.get(near, 0.0)),
                "far": joiner.records.get(digest(far), 0.0),
                "handed": sum(node.stats.get("records_handed_over", 0) for node in network),
                "bounded": all(len(node.protocol._handover) == 0 for node in network),  # type: ignore[union-attr]
            }

    seen = run_paired(backend, scenario())
    # ksize 3: the three closest found, and the publisher if it is closer
    assert 3 <= seen["holders"] <= 4
    assert seen["got"], "the joiner never received the records of the key it is closest to"
    assert seen["records"] == sorted(publisher_named(n).key_id for n in ("alice", "bob"))
    assert seen["far"] == []  # a key others are closer to is not handed over
    assert seen["handed"] >= 2
    assert seen["bounded"]


def test_a_client_receives_no_hand_over(backend: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with open_nodes(backend) as nodes:
            network = [await nodes.add() for _ in range(3)]
            await network[1].put("a key", b"a record")
            near = digest("a key")
            client_id = (int.from_bytes(near, "big") ^ 1).to_bytes(20, "big")
            client = await nodes.add(node_id=client_id, client=True)
            await client.get_all("a key")
            handed = sum(node.stats.get("handed_over", 0) for node in network)
            return handed, len(client.records)

    handed, held = run_paired(backend, scenario())
    assert handed == 0
    assert held == 0


def test_a_stock_joiner_is_handed_one_record_not_all_and_stays_known(backend: str) -> None:
    async def scenario() -> tuple[dict[str, int], bool, int]:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            node = await nodes.add(queries=QueryManager(core=new_core(backend), clock=clock))
            publisher = Publisher.generate()
            for index in range(20):
                key = digest(f"key {index}")
                record = Record.create(publisher, key, f"record {index}".encode())
                node.records.put(key, record, clock.now())
            # a stock peer joins: the node welcomes it and, alone until
            # then, would hand it every record
            stock = await nodes.stock(bootstrap=[node.address])
            stock_id = stock.node.id
            # stock ignores store_record: let its request run out of tries
            for _ in range(60):  # bounded: 30 s of the node's clock
                clock.advance(0.5)
                await asyncio.sleep(0)
                if node.stats.get("handover_skipped", 0) >= 19:
                    break
            protocol = node.protocol
            assert protocol is not None
            return (
                dict(node.stats),
                stock_id in {p.id for p in node.peers()},
                len(protocol._handover),
            )

    stats, still_known, queued = run_paired(backend, scenario())
    assert stats["records_handed_over"] == 1  # the probe; stock: 20 requests
    assert stats["handover_skipped"] == 19
    assert still_known  # an unanswered hand-over does not cost it its place
    assert queued == 0

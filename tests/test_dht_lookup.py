"""Streaming lookups (``DhtNode.get_all``) on real networks of DhtNodes over
UDP on 127.0.0.1: per-holder results, dedup across holders, a dead peer
among the closest, and 1,000 concurrent lookups."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from kademlia.node import Node
from kademlia.utils import digest

from dhtquery import QueryConfig, QueryOutcome, QueryResult
from dhtquery.dht import DhtNode, LookupStats
from dhtquery.dht.lookup import HEDGE, StreamingLookup
from dhtquery.dht.rpc_table import DATAGRAM_HANDLED
from dhtquery.dht.wire import decode as decode_wire
from dhtquery.dht.wire import encode_response

from .dht_helpers import (
    Nodes,
    dht_network,
    eventually,
    open_nodes,
    publisher_named,
    run_paired,
    signed,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_async_query_multiple_peers(backend: str, run: Run) -> None:
    """3 nodes: a record put on node 1 is found from node 2; each result
    names the holder whose datagram carried it, and the stream yields
    records before the outcome resolves."""

    async def scenario() -> None:
        async with dht_network(backend, 3) as net:
            nodes = net.dht_nodes
            stored = await nodes[1].put("multi", b"put on node 1")
            assert stored >= 2
            dkey = digest("multi")
            # A second record that only node 0 holds: it can only come from
            # node 0's answer.
            only_on_0 = signed("node-0-only", b"held by node 0 alone", dkey)
            nodes[0].records.put(dkey, only_on_0, time.monotonic())
            holders = {
                node.address: set(node.records.get(dkey, time.monotonic())) for node in nodes
            }

            handle = nodes[2].get_all("multi", quorum=3)
            streamed: list[QueryResult] = []
            done_at_first_result = None
            async for result in handle:
                if done_at_first_result is None:
                    done_at_first_result = handle.done()
                streamed.append(result)
            outcome = await handle

            assert done_at_first_result is False
            assert outcome.reason == "all_peers"
            assert outcome.results == tuple(streamed)
            by_publisher = {result.item.publisher: result for result in streamed}
            other = publisher_named("node-0-only").key_id
            assert set(by_publisher) == {nodes[1].publisher, other}
            assert by_publisher[nodes[1].publisher].item.data == b"put on node 1"
            assert by_publisher[other].peer == nodes[0].address
            for result in streamed:
                # every result came from a holder of exactly that record
                assert result.item in holders[result.peer]
                assert result.response_time >= 0
            # node 0 was asked and answered; node 1 too (whether or not it
            # kept a copy of its own record)
            assert outcome.peers_ok >= 2
            assert net.loop_errors == []

    run(scenario())


def test_twenty_nodes_several_publishers_each_record_once(backend: str) -> None:
    """A key put by 5 publishers on a 20-node network: get_all from another
    node yields every publisher's record exactly once, dropping the copies
    the other holders sent."""

    async def scenario() -> None:
        async with dht_network(backend, 20) as net:
            nodes = net.dht_nodes
            publishers = nodes[1:6]
            expected = {}
            for index, node in enumerate(publishers):
                data = f"record {index} by {node.publisher}".encode()
                assert await node.put("shared key", data) >= 3
                expected[node.publisher] = data

            outcome = await nodes[15].get_all("shared key")

            assert outcome.reason == "all_peers"  # a quorum of holders answered
            got = [(record.publisher, record.data) for record in outcome.items]
            assert len(got) == len(expected)  # each exactly once
            assert dict(got) == expected
            assert outcome.duplicates >= len(expected)  # another holder's copies
            assert len({result.key for result in outcome.results}) == len(expected)
            assert net.loop_errors == []

    run_paired(backend, scenario())


def _closest_key(target: DhtNode, others: list[DhtNode]) -> str:
    """A key whose digest is closer to ``target`` than to any of ``others``."""
    for index in range(1000):
        key = f"key-{index}"
        node = Node(digest(key))
        if all(target.node.distance_to(node) < other.node.distance_to(node) for other in others):
            return key
    raise AssertionError("no key found in 1000 tries")


def test_dead_peer_among_the_closest_ends_adaptive_and_loses_score(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with dht_network(backend, 5) as net:
            querier, live_a, live_b, dead, bystander = net.dht_nodes
            key = _closest_key(dead, [live_a, live_b, bystander])
            dkey = digest(key)
            record = signed("publisher", b"held by three, one of them dead", dkey)
            for holder in (live_a, live_b, dead):
                holder.records.put(dkey, record, time.monotonic())

            protocol = querier.protocol
            assert protocol is not None
            # measured, and known to speak our RPCs (so its silence is
            # death, not a stock peer's ignorance of find_values)
            ok, answer = await protocol.find_values(dead.address, querier.node.id, dkey)
            assert ok and answer["records"]
            assert protocol.extensions[dead.address] is True
            assert protocol.rtt(dead.address).srtt is not None
            dead_address = dead.address
            before = protocol.reputation.score(dead_address, querier.clock.now())
            failures_before = protocol.reputation.stats(dead_address).failures

            dead.stop()
            await asyncio.sleep(0)
            assert querier.config.adaptive_timeout and querier.config.default_timeout == 10.0
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcome = await querier.get_all(key, quorum=3)
            elapsed = loop.time() - started

            assert outcome.reason == "adaptive"
            assert elapsed < 5.0  # well before the 10 s deadline
            assert outcome.items == [record]
            assert {result.peer for result in outcome.results} <= {
                live_a.address,
                live_b.address,
            }
            assert outcome.peers_failed >= 1
            # the request to the dead peer, sent again past its RTO, fails
            # it once its retransmission goes unanswered too
            assert await eventually(
                lambda: protocol.reputation.stats(dead_address).failures > failures_before
            )
            assert protocol.reputation.score(dead_address, querier.clock.now()) < before
            assert net.loop_errors == []

    run(scenario())


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "fixed"])
def test_thousand_concurrent_lookups(backend: str, adaptive: bool) -> None:
    """1,000 get_all started at once on a 10-node network, 50 keys: every
    one returns its key's record; nothing is left in flight afterwards.
    ``adaptive``: the default config (each request given up after the
    peer's RTO); ``fixed``: adaptive_timeout=False (after the deadline)."""
    config = QueryConfig(adaptive_timeout=adaptive)

    async def scenario() -> None:
        async with dht_network(backend, 10) as net:
            expected: dict[str, tuple[str, bytes]] = {}
            for index in range(50):
                node = net.dht_nodes[index % 10]
                key = f"key {index}"
                assert await node.put(key, f"value {index}".encode()) >= 1
                expected[key] = (node.publisher, f"value {index}".encode())
            # a client that joins after the puts holds none of them (in
            # client mode: a node that joins closer to a key is handed it)
            client = await net.dht(bootstrap=[net.dht_nodes[0].address], config=config, client=True)
            assert len(client.records) == 0

            keys = [f"key {index % 50}" for index in range(1000)]
            handles = [client.get_all(key) for key in keys]
            outcomes: list[QueryOutcome] = await asyncio.gather(*handles)

            wrong = [
                (key, outcome.reason, outcome.items)
                for key, outcome in zip(keys, outcomes, strict=True)
                if [(record.publisher, record.data) for record in outcome.items] != [expected[key]]
            ]
            assert wrong == []
            assert client.queries.in_flight == 0
            protocol = client.protocol
            assert protocol is not None
            # answers to requests a finished lookup no longer needed may
            # still be on the way: each is answered or times out
            assert await eventually(lambda: len(protocol.requests) == 0, timeout=15.0)
            assert net.loop_errors == []

    run_paired(backend, scenario())


def test_finished_lookups_are_freed_without_the_cyclic_gc(backend: str, run: Run) -> None:
    """A lookup that has ended holds no reference cycle: it is freed by
    reference counting alone (a cycle would leave every lookup, its handle
    and its records to the cyclic GC)."""
    from dhtquery.dht.lookup import StreamingLookup

    def lookups_alive() -> int:
        return sum(1 for obj in gc.get_objects() if type(obj) is StreamingLookup)

    async def scenario() -> None:
        async with dht_network(backend, 4) as net:
            nodes = net.dht_nodes
            await nodes[1].put("freed", b"record")
            gc.collect()
            gc.disable()
            try:
                before = lookups_alive()
                for _ in range(20):
                    outcome = await nodes[0].get_all("freed", quorum=2, timeout=5.0)
                    assert [r.item.data for r in outcome.results] == [b"record"]
                # answers still on the way arrive
                assert await eventually(lambda: nodes[0].pending_requests == 0)
                assert lookups_alive() == before
            finally:
                gc.enable()

    run(scenario())


def _contact(node: DhtNode) -> Node:
    host, port = node.address
    return Node(node.node.id, host, port)


def test_lookup_stats_count_requests_and_hops_along_a_chain(backend: str, run: Run) -> None:
    """The querier knows only A, A knows only B, B holds the record: the
    lookup asks A (depth 1), learns B from A's answer (depth 2), and B's
    answer completes it: 2 requests, 2 hops. A key nobody holds ends with
    the deepest answer's depth. ``lookup_stats`` is None until the end."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            querier, a, b = await nodes.dht(), await nodes.dht(), await nodes.dht()
            querier.protocol.router.add_contact(_contact(a))  # type: ignore[union-attr]
            a.protocol.router.add_contact(_contact(b))  # type: ignore[union-attr]
            record = signed("publisher", b"held by b alone", "chain")
            b.records.put(digest("chain"), record, b.clock.now())

            handle = querier.get_all("chain", quorum=1, timeout=5.0)
            assert handle.lookup_stats is None
            outcome = await handle
            stats = handle.lookup_stats
            assert outcome.items == [record]
            assert stats == LookupStats(
                requests=2, retransmissions=0, hops=2, peers_answered=2, peers_failed=0
            )

            # (the querier may know B by now: another one that knows only A)
            other = await nodes.dht()
            other.protocol.router.add_contact(_contact(a))  # type: ignore[union-attr]
            missing = other.get_all("nobody holds this", quorum=1, timeout=5.0)
            assert (await missing).items == []
            stats = missing.lookup_stats
            assert stats is not None
            # A, then B and the first querier (which A knows by now), learned
            # from A's answer: all three answered with contacts only
            assert (stats.requests, stats.hops, stats.peers_answered) == (3, 2, 3)
            assert net_errors(nodes) == []

    run(scenario())


def test_peers_learnt_from_answers_that_answer_enter_the_routing_table(
    backend: str, run: Run
) -> None:
    """The querier knows only A; B, learnt from A's answer, answers: B is in
    the querier's routing table afterwards (stock's crawl adds every peer
    that answers). A peer learnt but never answering is not."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            # (a client: B does not ping it back, which would bring B in
            # through the querier's verification of B instead)
            querier = await nodes.dht(client=True)
            a, b = await nodes.dht(), await nodes.dht()
            silent = await nodes.raw()
            querier.protocol.router.add_contact(_contact(a))  # type: ignore[union-attr]
            a.protocol.router.add_contact(_contact(b))  # type: ignore[union-attr]
            a.protocol.router.add_contact(  # type: ignore[union-attr]
                Node(os.urandom(20), *silent.address)
            )
            assert [peer.id for peer in querier.peers()] == [a.node.id]
            await querier.get_all("nobody holds this", quorum=1, timeout=5.0)
            known = {peer.id for peer in querier.peers()}
            assert known == {a.node.id, b.node.id}

    run(scenario())


def test_lookup_stats_of_a_lookup_the_local_records_complete(backend: str, run: Run) -> None:
    """Records held here meet the quorum: nobody is asked, 0 hops."""

    async def scenario() -> None:
        async with dht_network(backend, 3) as net:
            node = net.dht_nodes[1]
            record = signed("publisher", b"held here", "local")
            node.records.put(digest("local"), record, node.clock.now())
            handle = node.get_all("local", quorum=1)
            outcome = await handle
            assert outcome.items == [record]
            assert handle.lookup_stats == LookupStats(
                requests=0, retransmissions=0, hops=0, peers_answered=0, peers_failed=0
            )

    run(scenario())


def net_errors(nodes: Nodes) -> list[dict[str, Any]]:
    return nodes.loop_errors


def test_the_lookup_asks_the_peers_nearest_in_time_first(backend: str, run: Run) -> None:
    """Six holders the querier knows: the three closest to the key measured
    at 300 ms, the other three at 1 ms. A quorum-3 lookup asks the three
    near ones (in time), ends with their answers, and the far three serve
    nothing: kademlia's order (closest first) would have asked the far
    three."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            querier = await nodes.dht(client=True)
            holders = [await nodes.dht() for _ in range(6)]
            dkey = digest("near in time")
            record = signed("publisher", b"held by all six", "near in time")
            target = int.from_bytes(dkey, "big")
            holders.sort(key=lambda node: node.node.long_id ^ target)
            protocol = querier.protocol
            assert protocol is not None
            for holder in holders:
                holder.records.put(dkey, record, holder.clock.now())
                protocol.router.add_contact(_contact(holder))
            far, near = holders[:3], holders[3:]
            for holder, rtt in [(node, 0.3) for node in far] + [(node, 0.001) for node in near]:
                protocol.rtt(holder.address).observe(rtt)
            served = [holder.stats.get("served", 0) for holder in holders]

            handle = querier.get_all("near in time", quorum=3, timeout=5.0)
            outcome = await handle
            assert outcome.items == [record]
            stats = handle.lookup_stats
            assert stats is not None and stats.requests == 3
            now_served = [holder.stats.get("served", 0) for holder in holders]
            assert now_served[:3] == served[:3]
            assert [a - b for a, b in zip(now_served[3:], served[3:], strict=True)] == [1, 1, 1]

    run(scenario())


def test_a_peer_never_measured_is_expected_at_its_ip_addresss_round_trip(backend: str) -> None:
    """``srtt`` of a port never measured is that of another port of the same
    IP address (the same host); of an address never measured at all, None."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            protocol = (await nodes.dht()).protocol
            assert protocol is not None
            protocol.rtt(("10.9.0.1", 4000)).observe(0.05)
            assert protocol.srtt(("10.9.0.1", 4000)) == 0.05
            assert protocol.srtt(("10.9.0.1", 4001)) == 0.05
            assert protocol.srtt(("10.9.0.2", 4000)) is None
            protocol.rtt(("10.9.0.1", 4001)).observe(0.2)
            assert protocol.srtt(("10.9.0.1", 4001)) == 0.2

    run_paired(backend, scenario())


def test_scores_are_the_reputations_scores_now_in_one_call(backend: str) -> None:
    """``scores`` (what a lookup's core ranks by): each address's reputation
    score at the protocol's clock, in order."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            protocol = (await nodes.dht()).protocol
            assert protocol is not None
            good, bad, new = ("10.9.0.1", 4000), ("10.9.0.2", 4000), ("10.9.0.3", 4000)
            protocol.reputation.success(good, 0.01, protocol.clock.now())
            protocol.reputation.failure(bad)
            scores = protocol.scores([good, bad, new])
            now = protocol.clock.now()
            expected = [protocol.reputation.score(a, now) for a in (good, bad, new)]
            # (the clock moves on: "last seen" counts in hours)
            assert scores == pytest.approx(expected, rel=1e-6)
            assert expected[1] < expected[2] < expected[0]

    run_paired(backend, scenario())


def _hedge_lookup(backend: str, srtt_of_holders: float | None, srtt_of_a: float) -> int:
    """The querier (its IP-address fallback off: every node here shares
    127.0.0.1) knows only A, measured at ``srtt_of_a``; A knows eight holders,
    which the querier has measured at ``srtt_of_holders`` (None: never).
    The requests a quorum-3 lookup sends."""

    async def scenario() -> int:
        async with open_nodes(backend) as nodes:
            querier, protocol = await nodes.dht_and_protocol(client=True)
            protocol.rtt_by_ip = False
            a = await nodes.dht()
            holders = [await nodes.dht() for _ in range(8)]
            dkey = digest("hedged")
            record = signed("publisher", b"held by eight", "hedged")
            protocol.router.add_contact(_contact(a))
            protocol.rtt(a.address).observe(srtt_of_a)
            for holder in holders:
                holder.records.put(dkey, record, holder.clock.now())
                a.protocol.router.add_contact(_contact(holder))  # type: ignore[union-attr]
                if srtt_of_holders is not None:
                    protocol.rtt(holder.address).observe(srtt_of_holders)
            handle = querier.get_all("hedged", quorum=3, timeout=5.0)
            outcome = await handle
            assert outcome.items == [record]
            stats = handle.lookup_stats
            assert stats is not None
            return stats.requests

    return run_paired(backend, scenario())


def test_peers_of_unknown_round_trip_are_asked_hedge_more_than_the_quorum(backend: str) -> None:
    """Where round trips differ (A at 50 ms) and the holders were never
    measured, the lookup asks A, then QUORUM + HEDGE holders at once (the
    quorum from the first to answer); holders measured, or on loopback
    (every round trip within RTT_BAND), only the quorum's three."""
    assert _hedge_lookup(backend, None, 0.05) == 1 + 3 + HEDGE
    assert _hedge_lookup(backend, 0.02, 0.05) == 1 + 3
    assert _hedge_lookup(backend, None, 0.001) == 1 + 3


def test_a_lookup_starts_from_the_tables_replacement_caches_too(backend: str, run: Run) -> None:
    """With k = 2, ten peers whose ids share their first five bits (kademlia
    splits a full bucket of such a depth no more) fill one bucket and its
    replacement cache (kademlia's, for promotion). A key whose closest
    peer is only a replacement: the lookup asks it (it is among the k
    closest candidates), where it used to start from the table's contacts
    alone; once forgotten (``forget``), it is no candidate any more."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            querier, protocol = await nodes.dht_and_protocol(
                client=True, ksize=2, node_id=bytes(20)
            )
            peers = [
                await nodes.dht(node_id=bytes([0xF8 | (i % 2) << 2]) + os.urandom(19))
                for i in range(10)
            ]
            for peer in peers:
                protocol.router.add_contact(_contact(peer))
            router = protocol.router
            contacts = {node.id for node in router.contacts()[1]}
            candidates = {node.id for node in router.candidates()[1]}
            assert contacts < candidates == {peer.node.id for peer in peers}
            # a key whose closest peer is a replacement only
            key = next(
                f"key {i}"
                for i in range(10_000)
                if min(
                    peers, key=lambda p: p.node.long_id ^ int.from_bytes(digest(f"key {i}"))
                ).node.id
                not in contacts
            )
            dkey = digest(key)
            closest = min(peers, key=lambda p: p.node.long_id ^ int.from_bytes(dkey))
            record = signed("publisher", b"held by the closest", key)
            closest.records.put(dkey, record, closest.clock.now())
            served = closest.stats.get("served", 0)
            outcome = await querier.get_all(key, quorum=1, timeout=5.0)
            assert outcome.items == [record]
            assert closest.stats.get("served", 0) == served + 1

            # (not a contact: False)
            assert not protocol.forget(closest.address, keep_last=False)
            assert closest.node.id not in {node.id for node in router.candidates()[1]}

    run(scenario())


def test_holders_equal_in_time_are_asked_in_a_drawn_order(backend: str, run: Run) -> None:
    """Six holders, all measured at 50 ms (one band): twenty quorum-1
    lookups of the key each ask one, and not always the same (the closest
    first, as before, sent every lookup of a popular key to its closest
    nodes: the busiest in ``bench scale``). Twenty draws landing on at most
    two of six: odds ~1e-8."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            querier, protocol = await nodes.dht_and_protocol(client=True)
            holders = [await nodes.dht() for _ in range(6)]
            dkey = digest("drawn")
            record = signed("publisher", b"held by six", "drawn")
            for holder in holders:
                holder.records.put(dkey, record, holder.clock.now())
                protocol.router.add_contact(_contact(holder))
            for _ in range(20):
                for holder in holders:
                    # (each answer measures ~0.1 ms: back to one band)
                    protocol.peers.forget_estimator(holder.address)
                    protocol.rtt(holder.address).observe(0.05)
                handle = querier.get_all("drawn", quorum=1, timeout=5.0)
                assert (await handle).items == [record]
                assert handle.lookup_stats is not None
                assert handle.lookup_stats.requests == 1
            served = [holder.stats.get("served", 0) for holder in holders]
            assert sum(served) == 20
            assert sum(1 for count in served if count) >= 3, served

    run(scenario())


class _CountingBook:
    """A peers book (``srtt`` and ``scores``) that counts the SRTTs read."""

    def __init__(self) -> None:
        self.srtts_read = 0

    def srtt(self, address: Any) -> float | None:
        self.srtts_read += 1
        return None

    def scores(self, addresses: list[Any], now: float) -> list[float]:
        return [0.75 for _ in addresses]


def test_lookups_read_the_peers_book_the_protocol_has_now(backend: str) -> None:
    """What every lookup of a node shares is read once, on its first
    get_all; a book given to the protocol's ``peers`` later (as ``bench
    profile --banded`` does) is the one the next lookups read."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            querier, protocol = await nodes.dht_and_protocol(client=True)
            holder = await nodes.dht()
            protocol.router.add_contact(_contact(holder))
            record = signed("publisher", b"held", "book")
            holder.records.put(digest("book"), record, holder.clock.now())
            assert (await querier.get_all("book", quorum=1, timeout=5.0)).items == [record]
            book = _CountingBook()
            protocol.peers = book  # type: ignore[assignment]
            assert (await querier.get_all("book", quorum=1, timeout=5.0)).items == [record]
            assert book.srtts_read == 1

    run_paired(backend, scenario())


@pytest.mark.parametrize("key", ["text", "", "é", b"raw", b""])
def test_a_lookups_key_is_kademlias_digest(key: str | bytes) -> None:
    from dhtquery.dht.node import _key_digest

    assert _key_digest(key) == digest(key)


def test_a_lookups_key_of_a_str_subclass_is_kademlias_digest_of_its_str() -> None:
    from dhtquery.dht.node import _key_digest

    class Shown(str):
        def __str__(self) -> str:
            return "shown"

    assert _key_digest(Shown("raw")) == digest(Shown("raw")) == digest("shown")


def test_a_nodes_ksize_changed_after_a_lookup_is_the_next_ones(backend: str) -> None:
    """alpha and ksize are read per lookup, not kept with what a node's
    lookups share: with ksize 1 the next lookup asks the closest holder
    alone."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            querier, protocol = await nodes.dht_and_protocol(client=True)
            record = signed("publisher", b"held by three", "ksize")
            for _ in range(3):
                holder = await nodes.dht()
                holder.records.put(digest("ksize"), record, holder.clock.now())
                protocol.router.add_contact(_contact(holder))
            first = querier.get_all("ksize", quorum=3, timeout=5.0)
            assert (await first).items == [record]
            querier.ksize = 1
            second = querier.get_all("ksize", quorum=3, timeout=5.0)
            assert (await second).items == [record]
            assert first.lookup_stats is not None and second.lookup_stats is not None
            assert (first.lookup_stats.requests, second.lookup_stats.requests) == (3, 1)

    run_paired(backend, scenario())


def test_an_answer_the_engine_hands_to_the_lookup_is_read_and_its_errors_logged(
    backend: str, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer known to answer our RPCs, nothing waiting, nothing failed: its
    answer goes from the RPC table's engine straight to the lookup's
    ``LookupAnswers`` (status HANDLED); what that raises is logged as a
    callback's error, and the node goes on."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peer = await nodes.raw()
            peer_id = os.urandom(20)
            protocol.router.add_contact(Node(peer_id, *peer.address))
            protocol.extensions[peer.address] = True
            engine = protocol.requests.engine
            statuses: list[int] = []

            class Spy:
                """The engine, each status it says noted (by datagram, or
                each it hands Python from a batch: a HANDLED answer that
                raised is one)."""

                def __getattr__(self, name: str) -> Any:
                    return getattr(engine, name)

                def receive_at(self, *args: Any) -> Any:
                    answer = engine.receive_at(*args)
                    statuses.append(answer[0])
                    return answer

                def receive_batch(self, *args: Any) -> Any:
                    *head, dispatch = args

                    def noted(status: int, *rest: Any) -> Any:
                        statuses.append(status)
                        return dispatch(status, *rest)

                    return engine.receive_batch(*head, noted)

            protocol.requests.engine = Spy()
            seen: list[Any] = []
            original = StreamingLookup._answered_then

            def broken(self: Any, *args: Any) -> None:
                seen.append(args[2:4])  # (depth, step)
                raise RuntimeError("a bug in the lookup")

            StreamingLookup._answered_then = broken  # type: ignore[method-assign]
            try:
                handle = node.get_all("nobody else", quorum=1, timeout=5.0)
                request, _ = await peer.recv()
                msg_id = decode_wire(request)[1]
                # no records, nobody named: the lookup has nobody left
                peer.send(encode_response(msg_id, {"records": [], "nodes": []}), node.address)
                assert await eventually(lambda: bool(seen))
            finally:
                StreamingLookup._answered_then = original  # type: ignore[method-assign]
            assert seen[0][0] == 1
            assert statuses == [DATAGRAM_HANDLED]
            assert "error in a request callback" in caplog.text
            assert "a bug in the lookup" in caplog.text
            assert protocol.drops["handler_error"] == 0
            handle.cancel()

    run(scenario())

"""P2PRegistry on real nodes over UDP on 127.0.0.1: publish, search,
get_package, gossip, peer reputation, metrics and bad input.

(matches_query and the schema errors are tables in test_model.py and
test_catalog.py; this file tests the registry on a network.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgpack
import pytest
from kademlia.utils import digest

from dhtquery.dht import DhtNode, Record
from dhtquery.dht.protocol import DhtProtocol, RpcSpec
from dhtquery.errors import InvalidArgumentTypeError
from dhtquery.query import QueryConfig, QueryManager, new_core
from dhtquery.registry import P2PRegistry
from dhtquery.registry.model import Package, PackageId, Query, matches_query

from .dht_helpers import Nodes, eventually, open_nodes, publisher_named, signed_package

#: the key every test package (namespace "acme") is signed with
ACME = publisher_named("acme")
#: a key of an attacker
MALLORY = publisher_named("mallory")

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
Address = tuple[str, int]

# Short timeouts: a test never waits long for a peer that does not answer.
CONFIG = QueryConfig(default_timeout=3.0, fan_out=3)


def package(name: str, version: str = "1.0.0", **fields: Any) -> Package:
    fields.setdefault("title", f"{name} widget")
    return Package(PackageId("acme", name), version, **fields)


def ids_versions(packages: list[Package]) -> list[tuple[str, str]]:
    return [(str(p.id), str(p.version)) for p in packages]


# -- networks of registries -------------------------------------------


class Net:
    """The nodes of one test (a LocalNetwork) and a registry on each."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.registries = nodes.registries

    async def add(
        self,
        *,
        node_class: type[DhtNode] = DhtNode,
        bootstrap: bool = True,
        config: QueryConfig = CONFIG,
        node_id: bytes | None = None,
        client: bool = False,
    ) -> P2PRegistry:
        await self.nodes.add(
            bootstrap=[self.registries[0].node.address] if self.registries else None,
            join=bootstrap and bool(self.registries),
            registry=True,
            node_class=node_class,
            queries=QueryManager(config, core=new_core(self.nodes.backend)),
            node_id=node_id,
            client=client,
        )
        return self.registries[-1]

    def __getitem__(self, index: int) -> P2PRegistry:
        return self.registries[index]

    async def settle(self, timeout: float = 3.0) -> None:
        """Wait (bounded) until every request and query has ended."""
        assert await self.nodes.settle(timeout), "requests still in flight"


@asynccontextmanager
async def network(backend: str, count: int, **kwargs: Any) -> AsyncIterator[Net]:
    async with open_nodes(backend) as nodes:
        net = Net(nodes)
        for _ in range(count):
            await net.add(**kwargs)
        # (each node enters the others' tables once it has answered their
        # verification ping: let those finish before the test counts sends)
        await nodes.settle()
        yield net
        assert nodes.loop_errors == []


def address(registry: P2PRegistry) -> Address:
    return registry.node.address


def slow_protocol(registry: P2PRegistry) -> SlowProtocol:
    protocol = registry.node.protocol
    assert isinstance(protocol, SlowProtocol)
    return protocol


async def unslow(registry: P2PRegistry) -> None:
    """Serve at once from now on, and wait (bounded) for the delayed ones."""
    protocol = slow_protocol(registry)
    protocol.delay = 0.0
    assert await eventually(lambda: protocol.delayed == 0, timeout=5.0)


async def measured(caller: P2PRegistry, peer: P2PRegistry) -> DhtProtocol:
    """Ping ``peer`` from ``caller`` 3 times: RTT samples bring its RTO down
    to the 50 ms floor. Returns the caller's protocol."""
    protocol = caller.node.protocol
    assert isinstance(protocol, DhtProtocol)
    for _ in range(3):
        ok, _ = await protocol.ping(address(peer), protocol.source_node.id)
        assert ok
    return protocol


async def caller_and_slow_holder(net: Net) -> tuple[P2PRegistry, P2PRegistry, DhtProtocol]:
    """A caller, and a SlowNode (serving at once for now) holding the one
    package "only-there", whose RTO the caller has measured."""
    caller = await net.add()
    slow = await net.add(node_class=SlowNode)
    slow.add_local(package("only-there"), publisher=ACME)
    return caller, slow, await measured(caller, slow)


def score(of: P2PRegistry, peer: P2PRegistry) -> float:
    return of.node.reputation.score(address(peer), of.node.clock.now())


def failures(of: P2PRegistry, peer: P2PRegistry) -> int:
    return of.node.protocol.reputation.stats(address(peer)).failures  # type: ignore[union-attr]


# -- publish, search, get_package --------------------------------------


def test_publish_on_one_node_is_found_from_another(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with network(backend, 3) as net:
            published = package("httpkit", tags=("http",), categories=("web",))
            # 3, or 2 when the publisher is the farthest from the key: see
            # test_publish_stores_on_every_node_of_a_small_network
            assert await net[0].publish(published, publisher=ACME) >= 2
            found = await net[2].search(Query("httpkit"))
            assert ids_versions(found) == [("acme/httpkit", "1.0.0")]
            assert found[0] == published
            assert found[0].content_hash == published.content_hash
            got = await net[2].get_package(published.id)
            assert got == published
            assert await net[2].get_package(PackageId("acme", "nothing")) is None
            await net.settle()

    run(main())


def test_publish_stores_on_every_node_of_a_small_network(run: Run[None], backend: str) -> None:
    async def main() -> None:
        published = package("httpkit")
        key = digest(f"pkg:{published.id}")
        farthest = bytes(b ^ 0xFF for b in key)  # the publisher: farthest from the key
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            await net.add()
            await net.add()
            publisher = await net.add(node_id=farthest)
            # ksize 20: each of the 3 nodes is among the key's 20 closest
            assert await publisher.publish(published, publisher=ACME) == 3

    run(main())


def test_late_joiner_finds_package_through_the_network(run: Run[None], backend: str) -> None:
    """A node that joins after the publish missed the announcement: its
    catalog is empty, so what it finds came over the network."""

    async def main() -> None:
        async with network(backend, 2) as net:
            published = package("dbdriver", tags=("sql",), categories=("database",))
            await net[0].publish(published, publisher=ACME)
            late = await net.add()
            assert len(late.catalog) == 0
            assert await late.search(Query("dbdriver")) == [published]
            assert await late.search(Query(tags=("sql",))) == [published]
            assert await late.search(Query(categories=("database",))) == [published]
            assert await late.get_package(published.id) == published
            await net.settle()

    run(main())


def test_search_by_tag_and_by_category(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with network(backend, 3) as net:
            web = package("webby", tags=("http", "async"), categories=("web",))
            sql = package("sqlish", tags=("sql",), categories=("database",))
            both = package("orm", tags=("sql", "async"), categories=("database", "web"))
            for registry, pkg in zip(net.registries, (web, sql, both), strict=True):
                await registry.publish(pkg, publisher=ACME)
            searcher = net[2]

            async def names(query: Query) -> set[str]:
                found = await searcher.search(query)
                assert len(found) == len({p.id for p in found})
                return {p.id.name for p in found}

            assert await names(Query(tags=("http",))) == {"webby"}
            assert await names(Query(tags=("async",))) == {"webby", "orm"}
            assert await names(Query(tags=("sql", "http"))) == {"webby", "sqlish", "orm"}
            assert await names(Query(tags=("nothing",))) == set()
            assert await names(Query(categories=("database",))) == {"sqlish", "orm"}
            assert await names(Query(categories=("web",), tags=("sql",))) == {"orm"}
            assert await names(Query(categories=("ml",))) == set()
            await net.settle()

    run(main())


def test_search_by_tag_uses_the_tag_keys(run: Run[None], backend: str) -> None:
    """No catalog anywhere knows the package (wiped after publish): only the
    lookup of the tag key, which holds the record, can find it."""

    async def main() -> None:
        async with network(backend, 3) as net:
            published = package("tagged", tags=("rare",), categories=("cli",))
            await net[0].publish(published, publisher=ACME)
            await net.settle()
            for registry in net.registries:
                registry.catalog = type(registry.catalog)()
            assert await net[2].search(Query(tags=("rare",))) == [published]
            # a category has no key: without catalogs nothing answers
            assert await net[2].search(Query(categories=("cli",))) == []
            await net.settle()

    run(main())


def test_offset_and_limit_across_local_and_remote(run: Run[None], backend: str) -> None:
    """The documented order: local matches first (the catalog orders them by
    id), then remote results in arrival order; one remote peer's answer
    arrives in one datagram, in its catalog's order."""

    async def main() -> None:
        async with network(backend, 3) as net:
            searcher, remote, _empty = net.registries
            local = [package(f"l{i}") for i in range(3)]
            distant = [package(f"r{i}") for i in range(10)]
            for pkg in local:
                searcher.add_local(pkg, publisher=ACME)
            for pkg in distant:
                remote.add_local(pkg, publisher=ACME)
            everything = local + distant

            for offset, limit in [(0, 20), (0, 2), (1, 4), (3, 4), (2, 1), (8, 5), (13, 5)]:
                found = await searcher.search(Query("widget", offset=offset, limit=limit))
                assert found == everything[offset : offset + limit], (offset, limit)
            await net.settle()

    run(main())


@pytest.mark.parametrize("order", ["low_first", "high_first"])
def test_highest_version_wins(run: Run[None], backend: str, order: str) -> None:
    async def main() -> None:
        async with network(backend, 3) as net:
            low = package("versioned", "1.9.0", description="old")
            high = package("versioned", "1.10.0", description="new")
            first, second = (low, high) if order == "low_first" else (high, low)
            await net[0].publish(first, publisher=ACME)
            await net[1].publish(second, publisher=ACME)
            await net.settle()
            found = await net[2].search(Query("versioned"))
            assert ids_versions(found) == [("acme/versioned", "1.10.0")]
            assert found[0].description == "new"
            assert await net[2].get_package(low.id) == high
            # the publishers too
            assert await net[0].get_package(low.id) == high
            assert ids_versions(await net[0].search(Query("versioned"))) == [
                ("acme/versioned", "1.10.0")
            ]
            await net.settle()

    run(main())


def test_highest_version_wins_over_remote_results(run: Run[None], backend: str) -> None:
    """The searcher's own catalog holds the old version: the remote newer one
    replaces it, in the local one's place."""

    async def main() -> None:
        async with network(backend, 2) as net:
            searcher, remote = net.registries
            searcher.add_local(package("a", "1.0.0"), publisher=ACME)
            searcher.add_local(package("b", "2.0.0"), publisher=ACME)
            remote.add_local(package("a", "1.1.0"), publisher=ACME)
            remote.add_local(package("b", "1.0.0"), publisher=ACME)
            found = await searcher.search(Query("widget"))
            assert ids_versions(found) == [("acme/a", "1.1.0"), ("acme/b", "2.0.0")]
            await net.settle()

    run(main())


# -- search_stream -----------------------------------------------------


def test_search_stream_yields_each_package_once_or_for_a_higher_version(
    run: Run[None], backend: str
) -> None:
    async def main() -> None:
        async with network(backend, 3) as net:
            searcher, one, two = net.registries
            searcher.add_local(package("x", "2.0.0"), publisher=ACME)
            searcher.add_local(package("y", "1.0.0"), publisher=ACME)
            one.add_local(package("x", "1.0.0"), publisher=ACME)  # lower: never shown
            one.add_local(package("y", "1.5.0"), publisher=ACME)  # higher: shown again
            two.add_local(package("x", "2.0.0"), publisher=ACME)  # the same: once
            two.add_local(package("y", "1.0.0"), publisher=ACME)
            two.add_local(package("z", "1.0.0"), publisher=ACME)

            shown: list[tuple[str, str]] = []
            async for pkg in searcher.search_stream(Query("widget")):
                shown.append((pkg.id.name, str(pkg.version)))
                assert len(shown) < 100
            assert len(shown) == len(set(shown)), shown
            assert sorted(shown) == [("x", "2.0.0"), ("y", "1.0.0"), ("y", "1.5.0"), ("z", "1.0.0")]
            # local first, and a version only after a lower one
            assert shown[:2] == [("x", "2.0.0"), ("y", "1.0.0")]
            # the stream and search agree on the final answer
            found = await searcher.search(Query("widget"))
            assert ids_versions(found) == [
                ("acme/x", "2.0.0"),
                ("acme/y", "1.5.0"),
                ("acme/z", "1.0.0"),
            ]
            await net.settle()

    run(main())


def test_search_stream_stopped_early_leaves_nothing_in_flight(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with network(backend, 3) as net:
            # a local match: the first package comes before any answer
            net[0].add_local(package("mine"), publisher=ACME)
            for i in range(5):
                net[1].add_local(package(f"p{i}"), publisher=ACME)
            stream = net[0].search_stream(Query("widget"))
            async for first in stream:
                assert first.id.name == "mine"
                break
            await stream.aclose()  # type: ignore[attr-defined]
            await net.settle()
            assert net[0].metrics.cancelled == 1

    run(main())


# -- peer reputation ---------------------------------------------------


class SlowProtocol(DhtProtocol):
    """Serves each request ``delay`` seconds after it arrived."""

    delay = 0.0
    delayed = 0  # requests waiting to be served

    def _serve(self, msg_id: bytes, body: Any, addr: Address, now: float) -> None:
        if self.delay:
            self.delayed += 1
            asyncio.get_running_loop().call_later(self.delay, self._serve_late, msg_id, body, addr)
        else:
            super()._serve(msg_id, body, addr, now)

    def _serve_late(self, msg_id: bytes, body: Any, addr: Address) -> None:
        self.delayed -= 1
        super()._serve(msg_id, body, addr, self.clock.now())


class SlowNode(DhtNode):
    protocol_class = SlowProtocol


def forged(data: bytes) -> bytes:
    """A package record with another title and the old 'hash' field."""
    record = msgpack.unpackb(data, raw=False)
    record["title"] = "Forged " + record["title"]
    return bytes(msgpack.packb(record, use_bin_type=True))


class RecordTamperer(DhtProtocol):
    """Serves records whose data was altered after they were signed."""

    def rpc_find_values(self, sender: Address, nodeid: bytes, key: bytes) -> dict[str, Any]:
        answer = super().rpc_find_values(sender, nodeid, key)
        answer["records"] = [[*r[:5], forged(r[5]), r[6]] for r in answer["records"]]
        return answer


class PackageTamperer(DhtProtocol):
    """Serves validly signed records (signed again, by its own key) of
    packages whose content does not match the package's 'hash' field."""

    def rpc_find_values(self, sender: Address, nodeid: bytes, key: bytes) -> dict[str, Any]:
        answer = super().rpc_find_values(sender, nodeid, key)
        answer["records"] = [
            Record.create(MALLORY, r[1], forged(r[5]), name=r[2], seq=r[3]).to_wire()
            for r in answer["records"]
        ]
        return answer


class RecordTampererNode(DhtNode):
    protocol_class = RecordTamperer


class PackageTampererNode(DhtNode):
    protocol_class = PackageTamperer


def test_peer_reputation_update_slow_peer(run: Run[None], backend: str) -> None:
    """A peer that answers after the search's deadline fails its requests and
    loses score; a fast one does not, and fan-out prefers it."""

    async def main() -> None:
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            caller = await net.add()
            fast = await net.add()
            slow = await net.add(node_class=SlowNode)
            for i in range(3):
                fast.add_local(package(f"f{i}"), publisher=ACME)
                slow.add_local(package(f"s{i}"), publisher=ACME)
            # while every peer is fast: each answers the search RPC
            for _ in range(3):
                found = await caller.search(Query("widget"))
                assert len(found) == 6
            before_slow = score(caller, slow)
            failed_before = failures(caller, slow)

            # slower than the whole search (0.4 s against 0.2 s)
            slow_protocol(slow).delay = 0.4
            for _ in range(3):
                outcome = await caller.search_outcome(Query("widget"), timeout=0.2)
                found = caller.packages_of(Query("widget"), outcome)
                # the fast peer's results are there, whatever the slow one does
                assert {p.id.name for p in found} == {"f0", "f1", "f2"}
            after_fast, after_slow = score(caller, fast), score(caller, slow)
            assert failures(caller, slow) > failed_before
            assert failures(caller, fast) == 0
            assert after_slow < before_slow
            assert after_slow < after_fast
            # fan-out prefers the better-scored peer
            ranked = caller.node.reputation.best(
                [address(slow), address(fast)], 1, caller.node.clock.now()
            )
            assert ranked == [address(fast)]
            await unslow(slow)
            await net.settle(timeout=5.0)
            assert nodes.loop_errors == []

    run(main())


def test_peer_slower_than_its_rto_is_waited_for_within_the_deadline(
    run: Run[None], backend: str
) -> None:
    """A search request past the peer's RTO is sent again, not failed: the
    late answer counts, and the peer is not charged a failure."""

    async def main() -> None:
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            caller, slow, protocol = await caller_and_slow_holder(net)
            # it answered a search: known to speak our RPCs (a peer not
            # known so is asked once: see the next test)
            assert len(await caller.search(Query("widget"))) == 1
            failed_before = failures(caller, slow)
            resent_before = caller.node.stats.get("retransmitted", 0)
            slow_protocol(slow).delay = 0.3  # 6 of its RTOs, within the 3 s
            found = await caller.search(Query("widget"))
            assert ids_versions(found) == [("acme/only-there", "1.0.0")]
            assert caller.node.stats.get("retransmitted", 0) > resent_before
            assert failures(caller, slow) == failed_before
            assert protocol.extensions.get(address(slow)) is True
            await unslow(slow)
            await net.settle()

    run(main())


def test_overdue_peer_is_replaced_and_the_search_ends_without_it(
    run: Run[None], backend: str
) -> None:
    """With fan_out 1: the one peer asked is late, so the next candidate is
    asked at once; its answer is as many as the search wanted, and the
    search ends (adaptive) without waiting for the late one."""

    async def main() -> None:
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            one = QueryConfig(default_timeout=3.0, fan_out=1)
            caller = await net.add(config=one)
            slow = await net.add(node_class=SlowNode)
            fast = await net.add()
            slow.add_local(package("from-slow"), publisher=ACME)
            fast.add_local(package("from-fast"), publisher=ACME)
            node = caller.node
            for peer in (slow, fast):
                await measured(caller, peer)
            # both answer a search (fan_out 3 for it): known to speak our RPCs
            caller.config = CONFIG
            assert len(await caller.search(Query("widget"))) == 2
            caller.config = one
            # the slow peer is the one asked first
            node.reputation.provided(address(slow), 10)
            assert node.reputation.best([address(fast), address(slow)], 1, node.clock.now()) == [
                address(slow)
            ]
            slow_protocol(slow).delay = 1.0
            outcome = await caller.search_outcome(Query("widget"))
            assert ids_versions(caller.packages_of(Query("widget"), outcome)) == [
                ("acme/from-fast", "1.0.0")
            ]
            assert outcome.reason == "adaptive"
            # the late peer is not charged for it
            assert failures(caller, slow) == 0
            await unslow(slow)
            await net.settle(timeout=5.0)
            assert nodes.loop_errors == []

    run(main())


def test_peer_slow_on_its_first_search_is_asked_again(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            caller, slow, protocol = await caller_and_slow_holder(net)
            slow_protocol(slow).delay = 0.3
            assert await caller.search(Query("widget")) == []
            await unslow(slow)
            await net.settle()
            # its late answer shows it speaks our RPCs: slow, not stock
            assert await eventually(lambda: protocol.extensions.get(address(slow)) is True)
            # it answers at once now: a slow peer loses score, not its place
            found = await caller.search(Query("widget"))
            assert ids_versions(found) == [("acme/only-there", "1.0.0")]

    run(main())


@pytest.mark.parametrize("tamperer", [RecordTampererNode, PackageTampererNode])
def test_peer_reputation_update_tampered_record(
    run: Run[None], backend: str, tamperer: type[DhtNode]
) -> None:
    """A holder serving a record whose content does not match its hash loses
    score, and get_package and a tag search return the genuine package."""

    async def main() -> None:
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            publisher = await net.add()
            honest = await net.add()
            bad = await net.add(node_class=tamperer)
            genuine = package("target", tags=("prize",))
            # both peers of the publisher hold both keys (it may not: see
            # test_publish_stores_on_every_node_of_a_small_network)
            assert await publisher.publish(genuine, publisher=ACME) >= 2
            await net.settle()
            # joins after the publish, as a client: it is handed no copy
            # (a node that joins closer to a key is) and knows nothing
            caller = await net.add(client=True)
            assert len(caller.catalog) == 0
            for registry in net.registries:  # searches are answered with nothing
                registry.catalog = type(registry.catalog)()
            failures_before = failures(caller, bad)
            bad_packages_before = caller.node.stats.get("bad_package", 0)

            got = await caller.get_package(genuine.id)
            assert got == genuine
            assert got is not None and not got.title.startswith("Forged")
            found = await caller.search(Query(tags=("prize",)))
            assert found == [genuine]

            assert failures(caller, bad) >= failures_before + 2
            # an honest peer may time out (a loaded machine), never be penalized
            timeouts = caller.node.stats.get("timeouts", 0)
            assert failures(caller, honest) + failures(caller, publisher) <= timeouts
            assert score(caller, bad) < score(caller, honest)
            if tamperer is PackageTampererNode:
                assert caller.node.stats["bad_package"] >= bad_packages_before + 2
            else:
                assert caller.node.stats["bad_signature"] >= 2
            await net.settle()
            assert nodes.loop_errors == []

    run(main())


def test_peer_reputation_update_forged_search_answer(run: Run[None], backend: str) -> None:
    """A peer answering the search RPC with forged packages (altered after
    signing, unsigned, or signed by a key that does not own the namespace)
    loses score, and no forged package is returned."""

    async def main() -> None:
        async with network(backend, 3) as net:
            caller, honest, bad = net.registries
            caller.trust.pin("acme", ACME.public_key)
            genuine = package("target")
            honest.add_local(genuine, publisher=ACME)
            tampered = msgpack.unpackb(signed_package(genuine, ACME))
            tampered[5] = forged(tampered[5])
            answers = [
                msgpack.packb(tampered, use_bin_type=True),
                forged(genuine.encode()),  # unsigned
                signed_package(package("target", "9.9.9"), MALLORY),
            ]

            def forged_search(sender: Address, query_map: dict[str, Any]) -> dict[str, Any]:
                return {"results": answers, "more": False}

            spec = bad.node.protocol._rpcs["search"]  # type: ignore[union-attr]
            bad.node.add_rpc("search", RpcSpec(spec.args, forged_search, spec.response))
            found = await caller.search(Query("target"))
            assert found == [genuine]
            assert found[0].publisher == ACME.key_id and found[0].pinned
            assert caller.node.reputation.stats(address(bad)).invalid == 2
            assert failures(caller, honest) <= caller.node.stats.get("timeouts", 0)
            drops = caller.node.drops
            assert (drops["bad_signature"], drops["bad_record"]) == (1, 1)
            assert drops["namespace_conflict"] == 1
            assert [c.claimant for c in caller.conflicts] == [MALLORY.key_id]
            assert score(caller, bad) < 0.5 * score(caller, honest)
            # a search only the forger answers returns nothing
            honest.catalog = type(honest.catalog)()
            assert await caller.search(Query("target")) == []
            assert drops["bad_signature"] + 1 == caller.node.drops["bad_signature"]
            await net.settle()

    run(main())


# -- many searches at once ---------------------------------------------


def test_concurrent_queries(run: Run[None], backend: str) -> None:
    """1,000 searches at once over 10 nodes: each gets exactly the expected
    packages, each id once, and nothing is left in flight afterwards."""

    async def main() -> None:
        async with network(backend, 10) as net:
            catalog = [
                package("alpha", tags=("http",), categories=("web",)),
                package("beta", tags=("sql",), categories=("database",)),
                package("gamma", tags=("http", "sql"), categories=("web", "database")),
                package("delta", "1.0.0", categories=("cli",)),
                package("delta", "1.2.0", categories=("cli",)),
                package("epsilon", title="epsilon gadget", categories=("cli",)),
            ]
            for index, pkg in enumerate(catalog):
                await net[index % 10].publish(pkg, publisher=ACME)
            want = len(catalog) - 1
            assert await eventually(
                lambda: all(len(r.catalog) == want for r in net.registries), timeout=5.0
            )
            await net.settle()
            latest = [p for p in catalog if str(p.version) != "1.0.0" or p.id.name != "delta"]
            queries = [
                Query("widget"),
                Query(categories=("cli",)),
                Query(categories=("web",)),
                Query(tags=("sql",)),
                Query(),
                Query("nothing here"),
            ]
            # every peer has answered the search RPC once before the storm
            for registry in net.registries:
                await registry.search(Query("warm"))
            before = [r.metrics.total for r in net.registries]

            count = 1000
            jobs = [(i % 10, queries[i % len(queries)]) for i in range(count)]  # node, query
            results = await asyncio.gather(*(net[n].search(q, timeout=10.0) for n, q in jobs))
            for (_, query), found in zip(jobs, results, strict=True):
                assert len(found) == len({p.id for p in found}), found
                expected = {(str(p.id), str(p.version)) for p in latest if matches_query(p, query)}
                assert set(ids_versions(found)) == expected, query
            await net.settle(timeout=10.0)
            tag_lookups = sum(len(q.tags) for _, q in jobs)
            after = [r.metrics for r in net.registries]
            assert sum(m.total for m in after) - sum(before) == count + tag_lookups
            # peers' answers came in, and their copies were dropped as duplicates
            assert sum(m.duplicates for m in after) > 0
            for registry in net.registries:
                assert registry.node.queries.in_flight == 0
                assert len(registry.node.protocol.requests) == 0  # type: ignore[union-attr]
                assert registry.node.queries.debug_state()["handles"] == 0

    run(main())


# -- gossip ------------------------------------------------------------


def test_gossip_reaches_every_node_and_forwards_once(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with network(backend, 20) as net:
            forwards: list[tuple[int, bytes]] = []  # (node, announcement id)
            hops_left: dict[tuple[int, bytes], int] = {}
            sends: list[tuple[int, Address, bytes]] = []  # (node, peer, announcement id)
            for index, registry in enumerate(net.registries):
                original = registry.gossip._forward

                def forward(
                    announcement: dict[str, Any],
                    exclude: Address | None,
                    _index: int = index,
                    _original: Any = original,
                ) -> None:
                    forwards.append((_index, announcement["id"]))
                    hops_left[_index, announcement["id"]] = announcement["hops"]
                    _original(announcement, exclude)

                registry.gossip._forward = forward  # type: ignore[method-assign]
                protocol = registry.node.protocol
                assert protocol is not None
                request = protocol.request

                def record_send(
                    peer: Address,
                    name: str,
                    args: tuple[Any, ...],
                    timeout: float | None = None,
                    _index: int = index,
                    _request: Any = request,
                ) -> Any:
                    if name == "announce":
                        sends.append((_index, peer, args[0]["id"]))
                    return _request(peer, name, args, timeout)

                protocol.request = record_send  # type: ignore[method-assign]

            publisher = net[7]
            pkgs = [package("gossiped"), package("second", tags=("x",))]
            for pkg in pkgs:
                await publisher.publish(pkg, publisher=ACME)

            def everyone_knows() -> bool:
                return all(
                    pkg.id in r.discovered_packages
                    for r in net.registries
                    if r is not publisher
                    for pkg in pkgs
                )

            assert await eventually(everyone_knows, timeout=5.0)
            await net.settle()
            assert publisher.discovered_packages == {}
            for registry in net.registries:
                if registry is not publisher:
                    assert registry.catalog.get(pkgs[0].id) == pkgs[0]
                    for pkg in pkgs:
                        providers = registry.discovered_packages[pkg.id]
                        assert providers and providers <= {address(r) for r in net.registries}
            # each node forwards each announcement at most once ...
            assert len(forwards) == len(set(forwards)), Counter(forwards).most_common(3)
            announcement_ids = {aid for _, aid in forwards}
            assert len(announcement_ids) == len(pkgs)
            fan_out = CONFIG.fan_out
            for index, registry in enumerate(net.registries):
                handled = sum(1 for i, _ in forwards if i == index)
                assert handled == len(pkgs)  # every node saw both
                # ... if hops are left, to fan_out peers and at most fan_out
                # more in place of peers that had seen it
                passed_on = sum(1 for (i, _), hops in hops_left.items() if i == index and hops > 0)
                forwarded = registry.stats["forwarded"]
                assert fan_out * passed_on <= forwarded <= 2 * fan_out * passed_on
            assert publisher.stats["announced"] == len(pkgs)
            # never twice to the same peer
            assert len(sends) == len(set(sends)), Counter(sends).most_common(3)
            # every announce sent was received: as new or as a duplicate
            sent = sum(r.stats["forwarded"] for r in net.registries)
            received = (
                len(forwards)
                - len(pkgs)
                + sum(r.stats["duplicate_announcements"] for r in net.registries)
            )
            assert sent == received

    run(main())


# -- metrics -----------------------------------------------------------


def test_metrics_count_every_search(run: Run[None], backend: str) -> None:
    """A search is one query of the node's manager, each of its tag lookups
    one more, a get_package one."""

    async def main() -> None:
        async with network(backend, 3) as net:
            await net[0].publish(package("counted", tags=("one", "two")), publisher=ACME)
            await net.settle()
            registry = net[2]
            start = registry.metrics
            plain, tagged, gets = 5, 3, 2
            for _ in range(plain):
                assert len(await registry.search(Query("counted"))) == 1
            for _ in range(tagged):
                assert len(await registry.search(Query(tags=("one", "two")))) == 1
            for _ in range(gets):
                assert await registry.get_package(PackageId("acme", "counted")) is not None
            await net.settle()
            end = registry.metrics
            queries = plain + tagged * 3 + gets
            assert end.total - start.total == queries
            assert end.successful - start.successful == queries
            assert end.timed_out == start.timed_out == 0
            assert end.cancelled == start.cancelled
            assert end.in_flight == 0
            assert end.latency_count - start.latency_count == queries
            assert 0 < end.latency_p50 <= end.latency_p99 <= end.latency_max
            assert end.results > start.results
            # the registry's metrics are its node's manager's
            assert registry.metrics.total == registry.node.queries.metrics.total

    run(main())


def test_metrics_count_a_timed_out_search(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            net = Net(nodes)
            caller = await net.add()
            slow = await net.add(node_class=SlowNode)
            caller.add_local(package("mine"), publisher=ACME)
            await caller.search(Query("x"))  # the peer answers the search RPC
            slow_protocol(slow).delay = 0.3
            start = caller.metrics
            # a deadline (10 ms) before the peer's RTO (at least 50 ms): the
            # search times out, with the local results
            found = await caller.search(Query("widget"), timeout=0.01)
            assert ids_versions(found) == [("acme/mine", "1.0.0")]
            end = caller.metrics
            assert end.total - start.total == 1
            assert end.timed_out - start.timed_out == 1
            assert end.successful == start.successful
            assert end.latency_count - start.latency_count == 1
            await unslow(slow)
            await net.settle(timeout=5.0)

    run(main())


# -- bad input ---------------------------------------------------------


def test_bad_arguments_raise_naming_the_argument(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with network(backend, 1) as net:
            registry = net[0]
            total = registry.metrics.total
            with pytest.raises(InvalidArgumentTypeError, match="query must be a Query, got str"):
                await registry.search("httpkit")  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentTypeError, match="query must be a Query, got dict"):
                await registry.search({"text": "x"})  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentTypeError, match="query must be a Query"):
                async for _ in registry.search_stream(None):  # type: ignore[arg-type]
                    pass
            with pytest.raises(
                InvalidArgumentTypeError, match="package_id must be a PackageId, got str"
            ):
                await registry.get_package("acme/httpkit")  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentTypeError, match="package must be a Package"):
                await registry.publish({"name": "x"})  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentTypeError, match="node must be a DhtNode"):
                P2PRegistry("node")  # type: ignore[arg-type]
            assert registry.metrics.total == total  # no query was started
            assert isinstance(InvalidArgumentTypeError("x"), TypeError)

    run(main())


def test_lone_node_searches_its_own_catalog(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with network(backend, 1) as net:
            registry = net[0]
            published = package("alone", tags=("solo",))
            assert await registry.publish(published, publisher=ACME) == 1
            assert await registry.search(Query("alone")) == [published]
            assert await registry.search(Query(tags=("solo",))) == [published]
            assert await registry.get_package(published.id) == published
            assert registry.discovered_packages == {}
            await net.settle()

    run(main())

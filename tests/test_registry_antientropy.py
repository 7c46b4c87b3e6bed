"""Anti-entropy under the gossip, on real nodes over UDP on 127.0.0.1: a
catalog converges after gossip datagrams are dropped; equal catalogs
exchange only the digest; rounds are bounded; a bad record is refused and
its sender penalised; the catalog's cap holds under a flood; the loop
leaves no task or timer behind once the node stops.

Most tests run on a ``FakeClock``: rounds happen when the test moves time,
and are counted exactly; the requests themselves travel over real UDP.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgpack

from dhtquery.dht import DhtNode, RpcSpec
from dhtquery.query import QueryConfig, QueryManager, new_core
from dhtquery.registry import P2PRegistry
from dhtquery.registry.antientropy import (
    JITTER,
    MAX_FETCH_ANSWER,
    MAX_FETCH_PER_ROUND,
)
from dhtquery.registry.model import Package, PackageId
from dhtquery.testing import FakeClock

from .dht_helpers import Nodes, eventually, open_nodes, publisher_named, run_paired, signed_package

#: the key every test package (namespace "acme") is signed with
ACME = publisher_named("acme")

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
Address = tuple[str, int]

CONFIG = QueryConfig(default_timeout=3.0, fan_out=3)
PERIOD = 10.0


def package(name: str, version: str = "1.0.0") -> Package:
    return Package(PackageId("acme", name), version, f"{name} widget")


async def fake_clock_registries(
    nodes: Nodes,
    backend: str,
    count: int,
    clock: FakeClock,
    *,
    period: float | None = PERIOD,
    **kwargs: Any,
) -> list[P2PRegistry]:
    """``count`` nodes on ``clock``, each joined through the first, with a
    registry each (anti-entropy every ``period`` seconds of ``clock``)."""
    registries: list[P2PRegistry] = []
    for _ in range(count):
        node = await nodes.add(
            bootstrap=[registries[0].node.address] if registries else None,
            join=bool(registries),
            registry=False,
            queries=QueryManager(CONFIG, core=new_core(backend), clock=clock),
        )
        registries.append(P2PRegistry(node, anti_entropy_period=period, **kwargs))
    return registries


def record_requests(registry: P2PRegistry) -> list[str]:
    """The names of the requests ``registry``'s node sends from now on."""
    names: list[str] = []
    protocol = registry.node.protocol
    assert protocol is not None
    request = protocol.request

    def recorded(peer: Address, name: str, args: tuple[Any, ...], timeout: Any = None) -> Any:
        names.append(name)
        return request(peer, name, args, timeout)

    protocol.request = recorded  # type: ignore[method-assign]
    return names


def drop_announcements(registry: P2PRegistry, share: float, rng: random.Random) -> Counter[str]:
    """Lose ``share`` of the gossip announcements ``registry`` sends (the
    request fails at once, as a lost datagram whose time ran out)."""
    counts: Counter[str] = Counter()
    protocol = registry.node.protocol
    assert protocol is not None
    request = protocol.request

    def lossy(peer: Address, name: str, args: tuple[Any, ...], timeout: Any = None) -> Any:
        if name == "announce":
            counts["sent"] += 1
            if rng.random() < share:
                counts["dropped"] += 1
                lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                lost.set_result((False, None))
                return lost
        return request(peer, name, args, timeout)

    protocol.request = lossy  # type: ignore[method-assign]
    return counts


async def one_period(clock: FakeClock, registries: list[P2PRegistry]) -> None:
    """Move time on by a period (every node's round falls due) and wait
    (bounded) until the rounds it started have ended."""
    clock.advance(PERIOD * (1 + JITTER))
    assert await eventually(
        lambda: not any(r.anti_entropy.busy for r in registries), timeout=10.0
    ), "a round did not end"


def missing(registries: list[P2PRegistry], published: list[Package]) -> list[int]:
    return [sum(p.id not in r.catalog for p in published) for r in registries]


# -- convergence ---------------------------------------------------------


def test_catalogs_converge_after_gossip_datagrams_are_dropped(backend: str) -> None:
    """10 nodes, 200 packages, 30 % of announcements lost: gossip leaves
    catalogs short; reconciliation rounds fill every one, in a bounded
    number of periods."""

    async def main() -> tuple[list[int], int, Counter[str]]:
        async with open_nodes(backend) as nodes:
            clock = FakeClock()
            registries = await fake_clock_registries(nodes, backend, 10, clock)
            rng = random.Random(7)
            counters = [drop_announcements(r, 0.3, rng) for r in registries]
            published = [package(f"p{index}") for index in range(200)]
            for index, pkg in enumerate(published):
                await registries[index % 10].publish(pkg, publisher=ACME)
            assert await nodes.settle(10.0)
            short = missing(registries, published)
            periods = 0
            while any(missing(registries, published)):
                periods += 1
                assert periods <= 8, missing(registries, published)
                await one_period(clock, registries)
            for registry in registries:
                assert {p.id for p in registry.catalog} == {p.id for p in published}
                assert registry.anti_entropy.stats["refused"] == 0
            assert nodes.loop_errors == []
            return short, periods, sum(counters, Counter())

    short, periods, losses = run_paired(backend, main())
    assert losses["dropped"] > 0.2 * losses["sent"]
    # the gossip alone left catalogs short (this is what the test is about)
    assert sum(short) > 0, short
    assert 1 <= periods <= 8


def test_catalogs_converge_on_the_system_clock(run: Run[None], backend: str) -> None:
    """The loop on the event loop's own clock: a node that missed every
    announcement catches up within a few short periods."""

    async def main() -> None:
        async with open_nodes(backend) as nodes:
            registries: list[P2PRegistry] = []
            for _ in range(4):
                node = await nodes.add(
                    bootstrap=[registries[0].node.address] if registries else None,
                    join=bool(registries),
                    registry=False,
                    queries=QueryManager(CONFIG, core=new_core(backend)),
                )
                registries.append(P2PRegistry(node, anti_entropy_period=0.1))
            deaf = registries[3]
            drop_announcements(registries[0], 1.0, random.Random(1))
            published = [package(f"s{index}") for index in range(40)]
            for pkg in published:
                deaf.add_local(pkg, publisher=ACME)  # the others hear of it only by reconciliation
            assert await eventually(
                lambda: not any(missing(registries, published)), timeout=10.0
            ), missing(registries, published)
            assert all(r.anti_entropy.stats["rounds"] > 0 for r in registries)

    run(main())


def test_equal_catalogs_exchange_only_the_digest(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            asker, peer = await fake_clock_registries(nodes, backend, 2, FakeClock(), period=None)
            for index in range(50):
                for registry in (asker, peer):
                    registry.add_local(package(f"e{index}"), publisher=ACME)
            sent = record_requests(asker)
            assert await asker.anti_entropy.round(peer.node.address) is False
            assert sent == ["ae_digest"]
            assert asker.anti_entropy.stats == Counter(rounds=1, equal=1)

    run(main())


def test_a_round_fetches_only_what_differs_within_its_bounds(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            asker, peer = await fake_clock_registries(nodes, backend, 2, FakeClock(), period=None)
            common = [package(f"c{index}") for index in range(100)]
            for pkg in common:
                asker.add_local(pkg, publisher=ACME)
                peer.add_local(pkg, publisher=ACME)
            # a newer version the asker holds is not fetched back in its older one
            asker.add_local(package("c0", "2.0.0"), publisher=ACME)
            lacking = [package(f"n{index}") for index in range(70)]
            for pkg in lacking:
                peer.add_local(pkg, publisher=ACME)
            sent = record_requests(asker)
            assert await asker.anti_entropy.round(peer.node.address) is False
            fetches = -(-len(lacking) // MAX_FETCH_ANSWER)
            assert Counter(sent) == Counter(ae_digest=1, ae_list=1, ae_fetch=fetches)
            assert asker.anti_entropy.stats["fetched"] == len(lacking)
            assert len(asker.catalog) == 170
            assert str(asker.catalog.get(PackageId("acme", "c0")).version) == "2.0.0"  # type: ignore[union-attr]
            # a round fetches at most MAX_FETCH_PER_ROUND; the next ones the rest
            many = [package(f"m{index}") for index in range(300)]
            for pkg in many:
                peer.add_local(pkg, publisher=ACME)
            rounds = 0
            while any(pkg.id not in asker.catalog for pkg in many):
                before = asker.anti_entropy.stats["fetched"]
                bounded = await asker.anti_entropy.round(peer.node.address)
                fetched = asker.anti_entropy.stats["fetched"] - before
                assert fetched <= MAX_FETCH_PER_ROUND
                rounds += 1
                assert bounded == any(pkg.id not in asker.catalog for pkg in many)
            assert rounds == -(-len(many) // MAX_FETCH_PER_ROUND)
            # the peer's older c0 is now known as older: equal but for it,
            # no record is fetched again
            before = asker.anti_entropy.stats["fetched"]
            await asker.anti_entropy.round(peer.node.address)
            assert asker.anti_entropy.stats["fetched"] == before

    run(main())


# -- hostile peers ---------------------------------------------------------


def test_a_bad_record_is_refused_and_its_sender_penalised(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            asker, liar = await fake_clock_registries(nodes, backend, 2, FakeClock(), period=None)
            wanted = package("wanted")
            liar.add_local(wanted, publisher=ACME)
            record = wanted.to_record()
            record["title"] = "something else"  # the hash no longer matches
            # validly signed (by the liar's own key), but the package breaks
            # its schema
            broken = liar.node.sign(
                f"pkg:{wanted.id}", msgpack.packb(record, use_bin_type=True)
            ).to_wire()
            broken_bytes = msgpack.packb(broken, use_bin_type=True)
            tampered = msgpack.unpackb(signed_package(wanted, ACME))
            tampered[5] = tampered[5].replace(b"wanted widget", b"wanted gadget")
            unasked = signed_package(package("unasked"), ACME)
            answers = [
                [broken_bytes],
                [msgpack.packb(tampered, use_bin_type=True)],
                [unasked],
                [b"\xc1 not msgpack"],
                [package("unsigned").encode()],
            ]
            kinds = ["bad_package", "bad_signature", "bad_record", "bad_record", "bad_record"]

            def hostile_fetch(sender: Address, hashes: bytes) -> dict[str, Any]:
                return {"records": answers.pop(0)}

            liar.node.add_rpc("ae_fetch", RpcSpec((lambda _: True,), hostile_fetch, lambda _: True))
            reputation = asker.node.reputation
            address = liar.node.address
            for round_, kind in enumerate(kinds):
                invalid = reputation.stats(address).invalid
                drops = asker.node.drops.get(kind, 0)
                assert await asker.anti_entropy.round(address) is False
                assert asker.anti_entropy.stats["refused"] == round_ + 1
                assert reputation.stats(address).invalid == invalid + 1
                assert asker.node.drops.get(kind, 0) == drops + 1, kind
            assert len(asker.catalog) == 0
            assert asker.discovered_packages == {}

    run(main())


def test_the_cap_holds_under_a_flood_and_evicts_the_oldest(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            flooder, victim = await fake_clock_registries(
                nodes, backend, 2, FakeClock(), period=None, max_packages=50
            )
            own = package("mine")
            await victim.publish(own, publisher=ACME)
            flood_key = publisher_named("flood")
            for index in range(300):
                forged = Package(PackageId("flood", f"forged{index}"), "1.0.0", "flood")
                flooder.gossip.publish(signed_package(forged, flood_key))
                if index % 50 == 49:
                    assert await nodes.settle(5.0)
            assert await nodes.settle(5.0)
            assert len(victim.catalog) == 50
            assert victim.catalog.evicted >= 300 - 49
            # the node's own publication is never evicted
            assert victim.catalog.get(own.id) == own
            # what is left is the latest arrivals; what left, left everywhere
            assert PackageId("flood", "forged299") in victim.catalog
            assert PackageId("flood", "forged0") not in victim.catalog
            assert set(victim.discovered_packages) <= {p.id for p in victim.catalog}
            assert victim.per_publisher[flood_key.key_id] == 49

    run(main())


def test_one_publisher_cannot_fill_a_catalog_past_its_cap(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            flooder, victim = await fake_clock_registries(
                nodes, backend, 2, FakeClock(), period=None, max_per_publisher=20
            )
            own = package("mine")
            await victim.publish(own, publisher=ACME)
            flood_key = publisher_named("flood")
            for index in range(100):
                forged = Package(PackageId("flood", f"forged{index}"), "1.0.0", "flood")
                flooder.gossip.publish(signed_package(forged, flood_key))
                if index % 50 == 49:
                    assert await nodes.settle(5.0)
            assert await nodes.settle(5.0)
            assert victim.per_publisher[flood_key.key_id] == 20
            assert len(victim.catalog) == 21
            assert victim.node.drops["publisher_cap"] == 80
            assert victim.catalog.get(own.id) == own

    run(main())


def test_forged_announcements_never_enter_a_catalog(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            flooder, victim = await fake_clock_registries(
                nodes, backend, 2, FakeClock(), period=None
            )
            own = package("mine")
            await victim.publish(own, publisher=ACME)
            assert await nodes.settle(5.0)
            genuine = signed_package(package("other"), ACME)
            tampered = msgpack.unpackb(genuine)
            tampered[5] = tampered[5].replace(b"other widget", b"evil! widget")
            mallory = publisher_named("mallory")
            forged = [
                package("unsigned").encode(),  # the old, unsigned announcement
                msgpack.packb(tampered, use_bin_type=True),  # a byte changed
                signed_package(package("hijack", "9.9.9"), mallory),  # acme by another key
            ]
            for payload in forged:
                flooder.gossip.publish(payload)
            assert await nodes.settle(5.0)
            assert [p.id for p in victim.catalog] == [own.id]
            drops = victim.node.drops
            assert drops["bad_record"] == 1
            assert drops["bad_signature"] == 1
            assert drops["namespace_conflict"] == 1
            assert [c.claimant for c in victim.conflicts] == [mallory.key_id]
            # unsolicited: the flooder's address is not held against it
            assert victim.node.reputation.stats(flooder.node.address).invalid == 0

    run(main())


# -- the loop's life -------------------------------------------------------


def test_no_task_or_timer_is_left_after_the_node_stops(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            tasks_before = asyncio.all_tasks()
            clock = FakeClock()
            registries = await fake_clock_registries(nodes, backend, 3, clock)
            silent = await nodes.raw()  # a contact that never answers
            asker = registries[0]
            assert asker.anti_entropy.running and not asker.anti_entropy.idle
            asker.anti_entropy.pick_peer = lambda: silent.address  # type: ignore[method-assign]
            clock.advance(PERIOD * (1 + JITTER))
            assert asker.anti_entropy.busy  # a round waits on the silent peer
            await asyncio.sleep(0.01)
            for registry in registries:
                registry.node.stop()
            # the cancelled round ends within a few turns of the loop
            assert await eventually(lambda: all(r.anti_entropy.idle for r in registries))
            assert not any(r.anti_entropy.running for r in registries)
            assert clock.pending == 0
            assert asyncio.all_tasks() <= tasks_before
            # a stopped loop stays stopped as time goes on
            clock.advance(10 * PERIOD)
            assert all(r.anti_entropy.stats["rounds"] <= 1 for r in registries)

    run(main())


def test_close_stops_the_loop_and_a_node_without_a_loop_is_left_alone(
    run: Run[None], backend: str
) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            clock = FakeClock()
            (registry,) = await fake_clock_registries(nodes, backend, 1, clock)
            assert not registry.anti_entropy.idle
            await registry.aclose()
            assert registry.anti_entropy.idle
            registry.anti_entropy.start()
            assert registry.anti_entropy.running
            registry.close()
            assert registry.anti_entropy.idle and clock.pending == 0

    run(main())
    # no running loop and the system clock: nothing is scheduled
    registry = P2PRegistry(DhtNode(config=CONFIG))
    assert not registry.anti_entropy.running and registry.anti_entropy.idle

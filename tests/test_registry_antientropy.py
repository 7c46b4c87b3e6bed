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

from .dht_helpers import Nodes, eventually, open_nodes, run_paired

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
                await registries[index % 10].publish(pkg)
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
                deaf.catalog.add(pkg)  # the others hear of it only by reconciliation
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
                    registry.catalog.add(package(f"e{index}"))
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
                asker.catalog.add(pkg)
                peer.catalog.add(pkg)
            # a newer version the asker holds is not fetched back in its older one
            asker.catalog.add(package("c0", "2.0.0"))
            lacking = [package(f"n{index}") for index in range(70)]
            for pkg in lacking:
                peer.catalog.add(pkg)
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
                peer.catalog.add(pkg)
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
            liar.catalog.add(wanted)
            record = wanted.to_record()
            record["title"] = "something else"  # the hash no longer matches
            forged = msgpack.packb(record, use_bin_type=True)
            unasked = package("unasked").encode()
            answers = [[forged], [unasked], [b"\xc1 not msgpack"]]

            def hostile_fetch(sender: Address, hashes: bytes) -> dict[str, Any]:
                return {"records": answers.pop(0)}

            liar.node.add_rpc("ae_fetch", RpcSpec((lambda _: True,), hostile_fetch, lambda _: True))
            reputation = asker.node.reputation
            address = liar.node.address
            for round_ in range(3):
                failures = reputation.stats(address).failures
                assert await asker.anti_entropy.round(address) is False
                assert asker.anti_entropy.stats["refused"] == round_ + 1
                assert reputation.stats(address).failures == failures + 1
            assert len(asker.catalog) == 0
            assert asker.discovered_packages == {}
            assert asker.node.stats["bad_package"] == 3

    run(main())


def test_the_cap_holds_under_a_flood_and_evicts_the_oldest(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with open_nodes(backend) as nodes:
            flooder, victim = await fake_clock_registries(
                nodes, backend, 2, FakeClock(), period=None, max_packages=50
            )
            own = package("mine")
            await victim.publish(own)
            for index in range(300):
                flooder.gossip.publish(package(f"forged{index}").encode())
                if index % 50 == 49:
                    assert await nodes.settle(5.0)
            assert await nodes.settle(5.0)
            assert len(victim.catalog) == 50
            assert victim.catalog.evicted >= 300 - 49
            # the node's own publication is never evicted
            assert victim.catalog.get(own.id) == own
            # what is left is the latest arrivals; what left, left everywhere
            assert PackageId("acme", "forged299") in victim.catalog
            assert PackageId("acme", "forged0") not in victim.catalog
            assert set(victim.discovered_packages) <= {p.id for p in victim.catalog}

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

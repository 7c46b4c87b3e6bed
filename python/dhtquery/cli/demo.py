"""``dhtquery demo``: an embedded network on 127.0.0.1, a generated catalog,
searches, and a rich report.

Everything runs in this one process and event loop: ``nodes`` DhtNodes (each
with a P2PRegistry) on free loopback ports, which publish a generated catalog
between them; then a client node joins with an empty catalog (like a
``dhtquery search`` process would), so every result it shows came over the
network, from the peers named next to it. Every node is stopped on the way
out, errors included.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rich.console import Console

from ..dht import DhtNode
from ..query import QueryConfig
from ..registry import P2PRegistry, Package, Query
from ..testing import HOST, LocalNetwork, generate_catalog, namespace_publisher
from .report import DemoFigures, progress, results_table, sum_counts, summary_table

__all__ = [
    "DemoNetwork",
    "DemoSettings",
    "run_demo",
]

log = logging.getLogger("dhtquery.demo")

#: Replication (kademlia's k) in the demo network: each record lives on the
#: 8 nodes closest to its key, not on all 20.
DEMO_KSIZE: Final = 8
#: Packages published at once while the catalog goes out.
PUBLISH_CONCURRENCY: Final = 32
# -- catalog ------------------------------------------------------------------


def demo_queries(catalog: Sequence[Package], seed: int = 11) -> list[Query]:
    """A handful of searches sure to find something in ``catalog``: a word of
    a package's title, a tag, a category with a word, and a paged query."""
    if not catalog:
        return [Query("http")]
    rng = random.Random(seed)
    picks = rng.sample(list(catalog), k=min(4, len(catalog)))
    queries = [Query(picks[0].title.split()[-1].lower())]
    tagged = [p for p in catalog if p.tags]
    if tagged:
        queries.append(Query(tags=(rng.choice(tagged).tags[0],), limit=10))
    second = picks[1 % len(picks)]
    queries.append(Query(second.title.split()[-1].lower(), categories=second.categories[:1]))
    queries.append(Query(picks[-1].id.name.split("-")[0], limit=5))
    queries.append(Query(categories=(picks[0].categories[0],), limit=5, offset=5))
    return queries


# -- the network --------------------------------------------------------------


@dataclass
class DemoSettings:
    nodes: int = 20
    packages: int = 1000
    backend: str = "auto"
    loop: str = "uvloop"
    searches_in_burst: int = 200
    burst_concurrency: int = 32
    timeout: float = 2.0
    seed: int = 7


class DemoNetwork:
    """The embedded network (a LocalNetwork: nodes with a registry each) and
    the labels its nodes are shown by."""

    def __init__(self, config: QueryConfig, backend: str) -> None:
        self.net = LocalNetwork(
            core=backend, config=config, registries=True, ksize=DEMO_KSIZE, join=None
        )
        self.labels: dict[tuple[str, int], str] = {}

    @property
    def nodes(self) -> list[DhtNode]:
        return self.net.nodes

    @property
    def registries(self) -> list[P2PRegistry]:
        return self.net.registries

    async def start(self, count: int, advance: Callable[[], None] = lambda: None) -> None:
        for index in range(count):
            # each node joins through an earlier one: a real bootstrap
            node = await self.net.add(
                bootstrap=[self.nodes[index // 2].address] if index else None, join=index > 0
            )
            self.labels[node.address] = f"node-{index:02d}"
            advance()
        # the first nodes met few others: let them look around once more
        for node in self.nodes[: max(1, count // 4)]:
            await node.bootstrap([self.nodes[-1].address])

    async def join(self, label: str) -> tuple[DhtNode, P2PRegistry]:
        """A fresh node with an empty catalog, bootstrapped into the network."""
        node = await self.net.add(bootstrap=[n.address for n in self.nodes[:3]])
        self.labels[node.address] = label
        return node, self.registries[-1]

    def stop(self) -> None:
        self.net.stop()

    def label(self, peer: Any) -> str:
        if isinstance(peer, tuple) and len(peer) == 2 and peer[0] == "tag":
            return f"tag:{peer[1]}"
        return self.labels.get(peer, str(peer))


# -- the show -----------------------------------------------------------------


async def _publish_all(
    registries: Sequence[P2PRegistry], catalog: Sequence[Package], advance: Callable[[], None]
) -> tuple[int, int]:
    """Publish ``catalog`` from the registries in turn; (published, failed)."""
    semaphore = asyncio.Semaphore(PUBLISH_CONCURRENCY)
    failed = 0

    async def publish(index: int, package: Package) -> None:
        nonlocal failed
        async with semaphore:
            try:
                await registries[index % len(registries)].publish(
                    package, publisher=namespace_publisher(package.id.namespace)
                )
            except Exception as exc:  # one refused store must not stop the demo
                failed += 1
                log.warning("publishing %s failed: %s", package.id, exc)
            advance()

    await asyncio.gather(*(publish(i, p) for i, p in enumerate(catalog)))
    return len(catalog) - failed, failed


async def _burst(
    registry: P2PRegistry, queries: Sequence[Query], concurrency: int, timeout: float
) -> tuple[float, list[float], int]:
    """Run ``queries`` with ``concurrency`` in flight; (wall seconds,
    latencies, timed out)."""
    cursor = iter(queries)
    latencies: list[float] = []
    timed_out = 0

    async def worker() -> None:
        nonlocal timed_out
        for query in cursor:
            outcome = await registry.search_outcome(query, timeout=timeout)
            latencies.append(outcome.duration)
            timed_out += outcome.timed_out

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, timed_out


def _catalog_line(nodes: int, published: int, failed: int, known: Sequence[int]) -> str:
    """How many nodes learnt every package through gossip, and how many
    packages the others miss (none should; a miss is an announcement lost)."""
    complete = sum(1 for count in known if count >= published)
    line = (
        f"[bold]{nodes} nodes[/] on {HOST}, {published:,} packages published"
        + (f" ({failed} failed)" if failed else "")
        + f"; after gossip {complete} of {nodes} nodes know all {published:,}"
    )
    short = [published - count for count in known if count < published]
    if short:
        line += (
            f", {len(short)} miss {sum(short)} in all (announcements lost; a search asks "
            "several peers, so it still finds them)"
        )
    return line


async def run_demo(settings: DemoSettings, console: Console) -> int:
    """The whole demo under the running loop; 0 if every search worked."""
    started = time.perf_counter()
    config = QueryConfig(
        default_timeout=settings.timeout, max_results=50, adaptive_timeout=True, fan_out=3
    )
    network = DemoNetwork(config, settings.backend)
    catalog = generate_catalog(settings.packages, settings.seed)

    def network_counts() -> tuple[dict[str, int], int]:
        drops = sum_counts(node.drops for node in network.nodes)
        return drops, sum(node.stats.get("timeouts", 0) for node in network.nodes)

    def sent() -> int:
        return sum(node.stats.get("requests", 0) for node in network.nodes)

    try:
        with progress(console) as bars:
            task = bars.add_task("starting nodes", total=settings.nodes)
            await network.start(settings.nodes, lambda: bars.advance(task))
            task = bars.add_task("publishing catalog", total=len(catalog))
            published, failed = await _publish_all(
                network.registries, catalog, lambda: bars.advance(task)
            )
        # announcements are forwarded without waiting: let the gossip settle
        await asyncio.sleep(0.3)
        known = [len(r.catalog) for r in network.registries]
        console.print(_catalog_line(settings.nodes, published, failed, known))
        drops_publishing, timeouts_publishing = network_counts()
        sent_publishing = sent()
        client, registry = await network.join("client")
        console.print(
            f"A client node ({HOST}:{client.address[1]}) joined with an empty catalog: every "
            f"result below came over the network. A search asks {config.fan_out} peers; each "
            "answers with all its matches in one datagram, so a row names the first peer whose "
            "answer held it and when it came (ms after the search began), and the other "
            "peers' copies are dropped as duplicates.\n"
        )
        failures = 0
        shown: list[float] = []
        for query in demo_queries(catalog):
            outcome = await registry.search_outcome(query, timeout=settings.timeout)
            shown.append(outcome.duration)
            console.print(results_table(network.label, query, outcome, console.width))
            console.print()
            failures += not outcome.results
        burst_queries = [
            demo_queries(catalog, seed)[seed % 5] for seed in range(settings.searches_in_burst)
        ]
        wall, burst, burst_timed_out = await _burst(
            registry, burst_queries, settings.burst_concurrency, settings.timeout
        )
        drops_total, timeouts_total = network_counts()
        metrics = registry.metrics
        all_queries = [*demo_queries(catalog), *burst_queries]
        figures = DemoFigures(
            nodes=settings.nodes,
            shown=shown,
            burst_wall=wall,
            burst=burst,
            burst_concurrency=settings.burst_concurrency,
            burst_timed_out=burst_timed_out,
            queries=metrics.total,
            tag_lookups=sum(len(q.tags) for q in all_queries),
            success_rate=metrics.success_rate,
            timed_out=metrics.timed_out,
            results=metrics.results,
            duplicates=metrics.duplicates,
            served=sum(node.stats.get("served", 0) for node in network.nodes),
            timeouts={
                "while publishing": timeouts_publishing,
                "while searching": timeouts_total - timeouts_publishing,
            },
            dropped={
                "while publishing": drops_publishing,
                "while searching": {
                    kind: count - drops_publishing.get(kind, 0)
                    for kind, count in drops_total.items()
                    if count - drops_publishing.get(kind, 0)
                },
            },
            backend=client.queries.backend,
            loop_name=settings.loop,
            sent={
                "while publishing": sent_publishing,
                "while searching": sent() - sent_publishing,
            },
        )
        console.print(summary_table(figures, console.width))
        console.print(f"done in {time.perf_counter() - started:.1f} s")
        return 1 if failures else 0
    finally:
        network.stop()
        # let the transports' connection_lost callbacks run before the loop ends
        await asyncio.sleep(0.05)

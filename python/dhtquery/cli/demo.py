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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..bench import percentiles_ms
from ..dht import DhtNode
from ..query import QueryConfig, QueryMetrics, QueryOutcome
from ..registry import P2PRegistry, Package, Query, highest_versions
from ..testing import HOST, LocalNetwork, generate_catalog

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


def query_text(query: Query) -> str:
    parts = [repr(query.text)] if query.text else []
    if query.tags:
        parts.append("tags=" + ",".join(query.tags))
    if query.categories:
        parts.append("categories=" + ",".join(query.categories))
    if query.offset:
        parts.append(f"offset={query.offset}")
    parts.append(f"limit={query.limit}")
    return " ".join(parts)


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
                await registries[index % len(registries)].publish(package)
            except Exception as exc:  # one refused store must not stop the demo
                failed += 1
                log.warning("publishing %s failed: %s", package.id, exc)
            advance()

    await asyncio.gather(*(publish(i, p) for i, p in enumerate(catalog)))
    return len(catalog) - failed, failed


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _results_table(
    network: DemoNetwork, query: Query, outcome: QueryOutcome, shown: int = 8
) -> Table:
    rows = highest_versions(outcome.results)[query.offset : query.offset + query.limit]
    table = Table(
        title=f"search {query_text(query)}",
        title_justify="left",
        caption=(
            f"{len(rows)} result(s) in {_ms(outcome.duration)} · reason {outcome.reason} · "
            f"peers ok {outcome.peers_ok}, failed {outcome.peers_failed} · "
            f"duplicates dropped {outcome.duplicates}"
        ),
        caption_justify="left",
    )
    table.add_column("package", style="cyan", no_wrap=True)
    table.add_column("version", style="green", no_wrap=True, min_width=7)
    table.add_column("title", no_wrap=True, max_width=30)
    table.add_column("tags", style="magenta", no_wrap=True, max_width=16)
    table.add_column("answered by", style="yellow", no_wrap=True)
    table.add_column("at", justify="right", no_wrap=True, min_width=7)
    for package, peer, _key, at in rows[:shown]:
        table.add_row(
            str(package.id),
            str(package.version),
            package.title,
            ",".join(package.tags),
            network.label(peer),
            _ms(at),
        )
    if len(rows) > shown:
        table.add_row(f"... {len(rows) - shown} more", "", "", "", "", "")
    return table


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


def _sum_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for kind, value in count.items():
            total[kind] = total.get(kind, 0) + value
    return total


def _summary_table(
    metrics: QueryMetrics,
    backend: str,
    loop_name: str,
    burst: tuple[float, list[float], int],
    dropped: dict[str, int],
    served: int,
) -> Table:
    wall, latencies, timed_out = burst
    table = Table(title="metrics (the client node's QueryManager)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("queries", f"{metrics.total}")
    table.add_row("success rate", f"{metrics.success_rate:.1%}")
    table.add_row("timed out / cancelled", f"{metrics.timed_out} / {metrics.cancelled}")
    table.add_row("latency p50", _ms(metrics.latency_p50))
    table.add_row("latency p95", _ms(metrics.latency_p95))
    table.add_row("latency p99", _ms(metrics.latency_p99))
    table.add_row("latency max", _ms(metrics.latency_max))
    table.add_row("unique results / duplicates", f"{metrics.results} / {metrics.duplicates}")
    if latencies:
        table.add_row(
            "burst throughput",
            f"{len(latencies) / wall:,.0f} searches/s ({len(latencies)} in {wall:.2f} s)",
        )
        burst_ms = percentiles_ms(latencies)
        table.add_row("burst p50 / p99", f"{burst_ms['p50']:.1f} ms / {burst_ms['p99']:.1f} ms")
        table.add_row("burst timed out", f"{timed_out}")
    total = sum(dropped.values())
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])[:3])
    table.add_row("RPCs served (network)", f"{served:,}")
    table.add_row("datagrams dropped (network)", f"{total:,}" + (f" ({kinds})" if kinds else ""))
    table.add_row("core backend", backend)
    table.add_row("event loop", loop_name)
    return table


async def run_demo(settings: DemoSettings, console: Console) -> int:
    """The whole demo under the running loop; 0 if every search worked."""
    started = time.perf_counter()
    config = QueryConfig(
        default_timeout=settings.timeout, max_results=50, adaptive_timeout=True, fan_out=3
    )
    network = DemoNetwork(config, settings.backend)
    catalog = generate_catalog(settings.packages, settings.seed)
    try:
        with _progress(console) as progress:
            task = progress.add_task("starting nodes", total=settings.nodes)
            await network.start(settings.nodes, lambda: progress.advance(task))
            task = progress.add_task("publishing catalog", total=len(catalog))
            published, failed = await _publish_all(
                network.registries, catalog, lambda: progress.advance(task)
            )
        # announcements are forwarded without waiting: let the gossip settle
        await asyncio.sleep(0.3)
        known = [len(r.catalog) for r in network.registries]
        console.print(
            f"[bold]{settings.nodes} nodes[/] on {HOST}, {published} packages published"
            + (f" ({failed} failed)" if failed else "")
            + f"; catalogs after gossip: min {min(known)}, max {max(known)} packages per node"
        )
        client, registry = await network.join("client")
        console.print(
            f"client node {network.label(client.address)} at {HOST}:{client.address[1]} "
            f"joined with an empty catalog: every result below came over the network\n"
        )
        failures = 0
        for query in demo_queries(catalog):
            outcome = await registry.search_outcome(query, timeout=settings.timeout)
            console.print(_results_table(network, query, outcome))
            console.print()
            failures += not outcome.results
        burst_queries = [
            demo_queries(catalog, seed)[seed % 5] for seed in range(settings.searches_in_burst)
        ]
        burst = await _burst(registry, burst_queries, settings.burst_concurrency, settings.timeout)
        stats = [node.stats for node in network.nodes]
        console.print(
            _summary_table(
                registry.metrics,
                client.queries.backend,
                settings.loop,
                burst,
                dropped=_sum_counts(node.drops for node in network.nodes),
                served=sum(s.get("served", 0) for s in stats),
            )
        )
        console.print(f"done in {time.perf_counter() - started:.1f} s")
        return 1 if failures else 0
    finally:
        network.stop()
        # let the transports' connection_lost callbacks run before the loop ends
        await asyncio.sleep(0.05)

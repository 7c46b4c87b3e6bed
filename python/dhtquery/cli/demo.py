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
from dataclasses import dataclass, field
from typing import Any, Final

import semver
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..dht import MAX_RECORDS_PER_KEY, DhtNode
from ..errors import InvalidArgumentError
from ..query import QueryConfig, QueryManager, QueryMetrics, QueryOutcome, new_core
from ..registry import P2PRegistry, Package, PackageId, Query, highest_versions

__all__ = [
    "DemoNetwork",
    "DemoSettings",
    "generate_catalog",
    "run_demo",
]

log = logging.getLogger("dhtquery.demo")

HOST: Final = "127.0.0.1"
#: Replication (kademlia's k) in the demo network: each record lives on the
#: 8 nodes closest to its key, not on all 20.
DEMO_KSIZE: Final = 8
#: Packages published at once while the catalog goes out.
PUBLISH_CONCURRENCY: Final = 32
#: A tag key holds at most MAX_RECORDS_PER_KEY records per node; the generator
#: gives no tag to more packages than this, so every tag record is stored.
MAX_PACKAGES_PER_TAG: Final = MAX_RECORDS_PER_KEY - 6

# -- catalog ------------------------------------------------------------------

_NAMESPACES: Final = (
    "acme", "openlab", "pyfolk", "datalabs", "netcraft", "quantum", "pixelworks",
    "toolsmith", "cloudnine", "ferrous", "northwind", "bluebird", "lattice", "orbital",
)  # fmt: skip

# category -> (name stems, nouns for titles, tags)
_CATEGORY_WORDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "audio": (
        ("wave", "synth", "opus", "mixer", "sample", "beat", "tone", "midi"),
        ("audio decoder", "synthesizer", "sound mixer", "MIDI toolkit", "resampler"),
        ("audio", "dsp", "midi", "codec", "synth", "streaming", "mp3", "flac", "realtime"),
    ),
    "cli": (
        ("args", "prompt", "term", "shell", "flag", "clap", "color", "spinner"),
        ("argument parser", "terminal toolkit", "progress bar", "shell completion"),
        ("cli", "terminal", "ansi", "argparse", "tui", "completion", "color", "prompt"),
    ),
    "crypto": (
        ("cipher", "hash", "sign", "vault", "seal", "keyring", "nonce", "argon"),
        ("hash function", "signature library", "key store", "TLS helper", "cipher suite"),
        ("crypto", "sha256", "ed25519", "aes", "tls", "hashing", "keys", "blake3", "argon2"),
    ),
    "data": (
        ("frame", "csv", "parquet", "arrow", "json", "yaml", "schema", "table"),
        ("dataframe library", "CSV parser", "JSON parser", "schema validator", "serializer"),
        ("json", "csv", "parquet", "arrow", "serde", "yaml", "schema", "etl", "msgpack"),
    ),
    "database": (
        ("sql", "pg", "redis", "kv", "orm", "query", "migrate", "pool"),
        ("database client", "SQL builder", "ORM", "connection pool", "migration tool"),
        ("sql", "postgres", "sqlite", "redis", "orm", "kv-store", "migrations", "pool"),
    ),
    "devtools": (
        ("lint", "fmt", "build", "profile", "trace", "debug", "bench", "doc"),
        ("linter", "code formatter", "build tool", "profiler", "tracing library"),
        ("lint", "format", "build", "profiling", "tracing", "debugging", "docs", "ci"),
    ),
    "embedded": (
        ("mcu", "gpio", "hal", "rtos", "spi", "uart", "flash", "boot"),
        ("hardware abstraction layer", "GPIO driver", "RTOS kernel", "bootloader"),
        ("embedded", "no-std", "arm", "risc-v", "gpio", "rtos", "firmware", "i2c"),
    ),
    "game": (
        ("sprite", "ecs", "physics", "tile", "pathfind", "shader", "engine", "input"),
        ("game engine", "entity component system", "physics engine", "tile map editor"),
        ("gamedev", "ecs", "physics", "2d", "3d", "sprites", "pathfinding", "engine"),
    ),
    "graphics": (
        ("render", "raster", "vector", "mesh", "pixel", "image", "svg", "font"),
        ("image decoder", "vector renderer", "font rasterizer", "mesh toolkit"),
        ("graphics", "image", "png", "svg", "opengl", "vulkan", "fonts", "gpu", "webgpu"),
    ),
    "ml": (
        ("tensor", "neural", "grad", "infer", "embed", "token", "learn", "model"),
        ("tensor library", "neural network toolkit", "tokenizer", "inference server"),
        ("ml", "tensor", "neural-network", "nlp", "inference", "onnx", "autograd", "gpu"),
    ),
    "networking": (
        ("http", "socket", "dns", "quic", "mesh", "proxy", "rpc", "packet"),
        ("HTTP client", "DNS resolver", "QUIC transport", "RPC framework", "proxy server"),
        ("http", "async", "dns", "quic", "tcp", "udp", "p2p", "rpc", "websocket", "dht"),
    ),
    "science": (
        ("linalg", "stats", "ode", "fft", "sparse", "units", "geo", "bio"),
        ("linear algebra library", "statistics toolkit", "FFT library", "ODE solver"),
        ("math", "statistics", "linear-algebra", "fft", "simulation", "numerics", "geo"),
    ),
    "testing": (
        ("mock", "fuzz", "snap", "prop", "assert", "fixture", "bench", "cover"),
        ("mocking library", "fuzzer", "snapshot tester", "property tester"),
        ("testing", "mocking", "fuzzing", "snapshot", "property-testing", "coverage"),
    ),
    "web": (
        ("router", "template", "session", "cookie", "rest", "graphql", "static", "form"),
        ("web framework", "HTTP router", "template engine", "GraphQL server", "REST toolkit"),
        ("web", "http", "router", "templates", "graphql", "rest", "middleware", "wasm"),
    ),
}
_SUFFIXES: Final = ("", "-rs", "-py", "-core", "-lite", "-kit", "-x", "-utils", "2", "-ng")
_ADJECTIVES: Final = (
    "Fast", "Tiny", "Safe", "Async", "Minimal", "Zero-copy", "Portable", "Simple",
    "Robust", "Typed", "Lightweight", "Streaming",
)  # fmt: skip
_QUALITIES: Final = (
    "with no unsafe code", "for async runtimes", "with a tiny footprint",
    "that streams results", "with first-class types", "built for throughput",
    "with zero dependencies", "for embedded and server use",
)  # fmt: skip
_LICENSES: Final = ("MIT", "Apache-2.0", "MIT OR Apache-2.0", "BSD-3-Clause", "MPL-2.0", "ISC")
_AUTHORS: Final = (
    "Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
    "Donald Knuth", "Margaret Hamilton", "Ken Thompson", "Radia Perlman", "Leslie Lamport",
    "Frances Allen", "John Backus", "Katherine Johnson", "Tony Hoare",
)  # fmt: skip


def generate_catalog(count: int, seed: int = 7) -> list[Package]:
    """``count`` distinct, schema-valid packages with realistic names, titles,
    descriptions, categories, tags and versions, the same for a given seed.
    No tag is given to more than MAX_PACKAGES_PER_TAG packages (a node holds
    at most MAX_RECORDS_PER_KEY records under one tag key)."""
    if count < 0:
        raise InvalidArgumentError(f"count must be >= 0, got {count!r}")
    rng = random.Random(seed)
    categories = sorted(_CATEGORY_WORDS)
    tag_use: dict[str, int] = {}
    seen: set[PackageId] = set()
    packages: list[Package] = []
    attempt = 0
    while len(packages) < count:
        attempt += 1
        category = categories[len(packages) % len(categories)]
        stems, nouns, tags = _CATEGORY_WORDS[category]
        name = rng.choice(stems) + rng.choice(_SUFFIXES)
        if attempt > count * 4:  # the small name space is used up: number them
            name = f"{name}-{attempt}"
        package_id = PackageId(rng.choice(_NAMESPACES), name)
        if package_id in seen:
            continue
        seen.add(package_id)
        extra = rng.choice([c for c in categories if c != category])
        chosen_categories = [category, extra] if rng.random() < 0.3 else [category]
        wanted = rng.sample(tags, k=min(len(tags), rng.randint(1, 3)))
        chosen_tags = [t for t in wanted if tag_use.get(t, 0) < MAX_PACKAGES_PER_TAG]
        for tag in chosen_tags:
            tag_use[tag] = tag_use.get(tag, 0) + 1
        noun = rng.choice(nouns)
        major = rng.choice((0, 0, 1, 1, 2, 3))
        version = semver.Version(major, rng.randint(0, 19), rng.randint(0, 30))
        packages.append(
            Package(
                package_id,
                version,
                f"{rng.choice(_ADJECTIVES)} {noun}",
                f"A {noun} {rng.choice(_QUALITIES)}; part of the {package_id.namespace} "
                f"{category} collection.",
                tuple(chosen_categories),
                tuple(chosen_tags),
                rng.choice(_LICENSES),
                tuple(rng.sample(_AUTHORS, k=rng.randint(1, 2))),
            )
        )
    return packages


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


@dataclass
class DemoNetwork:
    """The nodes (and their registries) of the embedded network, and the
    client that searches it."""

    config: QueryConfig
    backend: str
    nodes: list[DhtNode] = field(default_factory=list)
    registries: list[P2PRegistry] = field(default_factory=list)
    labels: dict[tuple[str, int], str] = field(default_factory=dict)

    async def start(self, count: int, advance: Callable[[], None] = lambda: None) -> None:
        for index in range(count):
            node = DhtNode(ksize=DEMO_KSIZE, queries=QueryManager(self.config, core=new_core(self.backend)))
            registry = P2PRegistry(node)
            self.nodes.append(node)
            self.registries.append(registry)
            await node.listen(0, interface=HOST)
            self.labels[node.address] = f"node-{index:02d}"
            if index:
                # each node joins through an earlier one: a real bootstrap
                await node.bootstrap([self.nodes[index // 2].address])
            advance()
        # the first nodes met few others: let them look around once more
        for node in self.nodes[: max(1, count // 4)]:
            await node.bootstrap([self.nodes[-1].address])

    async def join(self, label: str) -> tuple[DhtNode, P2PRegistry]:
        """A fresh node with an empty catalog, bootstrapped into the network."""
        node = DhtNode(ksize=DEMO_KSIZE, queries=QueryManager(self.config, core=new_core(self.backend)))
        registry = P2PRegistry(node)
        self.nodes.append(node)
        self.registries.append(registry)
        await node.listen(0, interface=HOST)
        self.labels[node.address] = label
        await node.bootstrap([n.address for n in self.nodes[:3] if n is not node])
        return node, registry

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

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


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


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
        table.add_row("burst p50 / p99", f"{_ms(_quantile(latencies, 0.5))} / "
                      f"{_ms(_quantile(latencies, 0.99))}")  # fmt: skip
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

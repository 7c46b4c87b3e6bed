"""The server side of ``bench_registry.py``: a loopback network of N registry
nodes (``DhtNode`` + ``P2PRegistry`` each) in this one process, started by
the benchmark as a child process; and the generated catalog both sides share.

    python benches/_registry_network.py [--nodes 20] [--packages 10000]
        [--seed S] [--loop asyncio|uvloop] [--backend rust|python]
        [--settle-seconds 120] [--max-seconds 1800]

The nodes listen on 127.0.0.1 only and bootstrap into each other; node ``i``
publishes the packages ``i, i + N, i + 2N, ...`` of :func:`generate_catalog`
(``P2PRegistry.publish``: package key, tag keys, gossip). Then the network
waits, at most ``--settle-seconds``, until every node's searchable catalog
holds every package id (gossip settled). One line of JSON then goes to
stdout: ``{"addresses": [[host, port], ...], "setup": {...}, ...}``. The
network serves until stdin closes (or ``--max-seconds`` pass) and exits;
meanwhile it answers one command a line on stdin with one line of JSON:
``reset`` makes every node forget the contacts that are not nodes of this
network (the benchmark's earlier clients); ``stats`` sums the nodes'
transport counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from typing import Any

from _common import bounded, forget_strangers, loop_factory, serve_stdin

HOST = "127.0.0.1"
DEFAULT_SEED = 20_240_604
STALL_SECONDS = 2.0

# -- the catalog --------------------------------------------------------


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Vocabulary of package names, titles and descriptions: words a registry of
# libraries is made of, so text queries hit postings of realistic sizes.
_WORDS = _split(
    "async alpha array audio auth avro backup base batch bench binary bit bloom buffer build "
    "bytes cache canvas cassandra channel chart chess chunk cipher circuit cli client cloud "
    "cluster codec color compiler compress config console core cpu crawler cron crypto csv "
    "cuda dag dashboard data date debug decimal deploy diff digest discord dns docker docs dom "
    "driver dsp ecdsa edge editor email emulator encoder engine entity env etl event fast fft "
    "file filter finance flag flow font form format fractal frame fuzz game geo git gpu graph "
    "grid grpc gzip hash heap http image index ini input ipc jit job json jwt kafka kernel key "
    "lambda layout lexer lint list lock log lua macro mail map markdown math matrix media mesh "
    "metric midi mock model mqtt music mutex neural nlp noise oauth orm packet parser path pdf "
    "physics pipe pixel plot plugin pool port printer probe proto proxy queue radio random "
    "raster raft redis regex render report rest retry ring router rpc rust sat scheduler schema "
    "search semver serde server shader shell signal sim sketch slug socket solver sort sound "
    "spark spline sql sqlite stack stats storage stream string sync synth table task template "
    "tensor term test text theme thread tile time timer token toml trace tree tui udp unicode "
    "uuid vector video vm wasm watch wave web websocket wiki window worker xml yaml zip"
)
_ADJECTIVES = _split(
    "fast tiny simple safe lazy smart pure micro mini rapid robust modern lightweight "
    "streaming portable minimal embedded secure scalable reactive typed zero-copy incremental"
)
_NOUNS = _split(
    "library toolkit framework engine wrapper binding helper utility runtime backend "
    "implementation client server parser generator"
)
_FIRST = _split(
    "Ada Ali Ana Ben Chen Dana Eli Eva Femi Hana Ivan Jo Kai Lea Li Mia Noor Omar Paz Raj "
    "Sam Sara Tom Uma Vera Wei Yuki Zoe"
)
_LAST = _split(
    "Abe Baker Cruz Diaz Evans Fox Garcia Hill Ito Jones Khan Lee Moreau Nagy Okafor Park "
    "Quinn Rossi Silva Tanaka Ueda Vogel Wong Xu Young Zhang"
)
_LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "GPL-3.0", "MPL-2.0", "ISC", "UNLICENSED")
_CUSTOM_CATEGORIES = ("blockchain", "robotics", "bioinfo", "iot", "finance")
#: Share of packages also published in an older version (from another node).
OLD_VERSION_SHARE = 0.05


def _namespaces(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        kind = rng.random()
        if kind < 0.4:
            name = f"{rng.choice(_FIRST).lower()}{rng.choice(_LAST).lower()}"
        elif kind < 0.7:
            name = f"{rng.choice(_WORDS)}-labs"
        else:
            name = f"{rng.choice(_WORDS)}{rng.choice(('io', 'hq', 'dev', 'org', 'rs', 'py'))}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def generate_catalog(count: int, seed: int = DEFAULT_SEED) -> list[Any]:
    """``count`` distinct packages (ids), deterministic for ``seed``, then an
    older version of about 5% of them: a list of ``Package``, newest versions
    first. Words, tags and categories are drawn with a skew (a few common,
    many rare), as in real registries."""
    from dhtquery.registry.model import STANDARD_CATEGORIES, Package, PackageId

    rng = random.Random(seed)
    namespaces = _namespaces(rng, max(20, count // 25))
    # Zipf-like weights: word k is drawn with weight 1 / (k + 3)
    words = list(_WORDS)
    rng.shuffle(words)
    weights = [1.0 / (rank + 3) for rank in range(len(words))]
    tags = words[:160]
    tag_weights = weights[:160]
    categories = list(STANDARD_CATEGORIES) + list(_CUSTOM_CATEGORIES)
    category_weights = [1.0] * len(STANDARD_CATEGORIES) + [0.15] * len(_CUSTOM_CATEGORIES)

    packages = []
    ids: set[tuple[str, str]] = set()
    while len(packages) < count:
        parts = rng.choices(words, weights, k=rng.choice((1, 2, 2, 3)))
        name = "-".join(dict.fromkeys(parts))
        namespace = rng.choice(namespaces)
        if (namespace, name) in ids:
            continue
        ids.add((namespace, name))
        topic = " ".join(dict.fromkeys(rng.choices(words, weights, k=2)))
        adjective, noun = rng.choice(_ADJECTIVES).capitalize(), rng.choice(_NOUNS)
        title = f"{adjective} {name.replace('-', ' ')} {noun}"
        description = (
            f"A {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} for {topic}, with "
            f"{' and '.join(dict.fromkeys(rng.choices(words, weights, k=3)))} support."
        )
        major = rng.choice((0, 0, 1, 1, 1, 2, 3))
        version = f"{major}.{rng.randrange(20)}.{rng.randrange(30)}"
        packages.append(
            Package(
                PackageId(namespace, name),
                version,
                title,
                description,
                categories=rng.sample(
                    rng.choices(categories, category_weights, k=3), k=rng.choice((1, 1, 2))
                ),
                tags=set(rng.choices(tags, tag_weights, k=rng.randint(1, 5))),
                license=rng.choice(_LICENSES),
                authors=[f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"],
            )
        )
    older = []
    for package in rng.sample(packages, int(count * OLD_VERSION_SHARE)):
        version = package.version
        if version.major == 0 and version.minor == 0 and version.patch == 0:
            continue
        previous = (
            f"{version.major}.{version.minor}.{version.patch - 1}"
            if version.patch
            else f"{max(0, version.major - 1)}.9.9"
            if version.minor == 0
            else f"{version.major}.{version.minor - 1}.9"
        )
        older.append(
            Package(
                package.id,
                previous,
                package.title,
                package.description,
                package.categories,
                package.tags,
                package.license,
                package.authors,
            )
        )
    return packages + older


def publisher_of(index: int, nodes: int) -> int:
    """Which node publishes the ``index``-th package of the catalog list."""
    return index % nodes


# -- the network --------------------------------------------------------


def _stats(nodes: list[Any], registries: list[Any]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for node in nodes:
        total.update(node.stats)
    gossip: Counter[str] = Counter()
    for registry in registries:
        gossip.update(registry.stats)
    refused = getattr(type(nodes[0]), "refused_local", 0) if nodes else 0
    return {"transport": dict(total), "gossip": dict(gossip), "local_store_refused": refused}


def _node_class() -> type[Any]:
    """``DhtNode`` with a ``put`` that survives a full local store.

    Workaround for dhtquery/dht/node.py (``DhtNode.put``): the local
    ``self.records.put`` is not guarded, so once a key holds its 30 records
    (a popular tag: ``P2PRegistry.publish`` stores one record per package
    under each of its tags) ``put`` raises ``StorageFull`` -- and
    ``publish`` with it, before announcing -- where a remote holder only
    answers False. Here a refused local store ends that one ``put`` with 0
    holders (the remote holders of a full key refuse too), and is counted.
    """
    from dhtquery.dht import DhtNode
    from dhtquery.errors import StorageFull

    class BenchNode(DhtNode):  # type: ignore[misc]
        refused_local = 0

        async def put(self, key: Any, data: bytes, **kwargs: Any) -> int:
            try:
                return int(await super().put(key, data, **kwargs))
            except StorageFull:
                BenchNode.refused_local += 1
                return 0

    return BenchNode


async def run(args: argparse.Namespace) -> None:
    from dhtquery.registry import P2PRegistry

    DhtNode = _node_class()

    started = time.perf_counter()
    catalog = generate_catalog(args.packages, args.seed)
    distinct = len({package.id for package in catalog})
    generated = time.perf_counter()
    nodes = [DhtNode(backend=args.backend) for _ in range(args.nodes)]
    registries = [P2PRegistry(node) for node in nodes]
    try:
        for node in nodes:
            await node.listen(0, HOST)
        addresses = [node.address for node in nodes]
        await asyncio.gather(*(node.bootstrap(addresses[:1]) for node in nodes[1:]))
        await asyncio.gather(
            *(node.bootstrap([a for a in addresses if a != node.address]) for node in nodes)
        )
        joined = time.perf_counter()

        # Newest versions first, older ones after: the older never wins.
        deadline = time.monotonic() + args.publish_seconds
        jobs = [
            (
                lambda i=i, package=package: (
                    registries[publisher_of(i, args.nodes)].publish(package)
                    if time.monotonic() < deadline
                    else asyncio.sleep(0, -1)
                )
            )
            for i, package in enumerate(catalog)
        ]
        held = await bounded(jobs, args.width)
        published = time.perf_counter()
        if any(count == -1 for count in held):
            raise RuntimeError(
                f"publishing took over {args.publish_seconds:.0f} s: "
                f"{held.count(-1)} of {len(held)} packages not published"
            )

        # Gossip settles: every node's catalog holds every id (bounded).
        # Announcements are fire-and-forget (no retry): once no catalog has
        # grown for ``STALL_SECONDS``, waiting longer changes nothing.
        settle_deadline = time.monotonic() + args.settle_seconds
        last_total, last_growth = -1, time.monotonic()
        while time.monotonic() < settle_deadline:
            sizes = [len(registry.catalog) for registry in registries]
            if min(sizes) >= distinct:
                break
            if sum(sizes) != last_total:
                last_total, last_growth = sum(sizes), time.monotonic()
            elif time.monotonic() - last_growth > STALL_SECONDS:
                break
            await asyncio.sleep(0.05)
        settled = time.perf_counter()
        sizes = [len(registry.catalog) for registry in registries]
        line = {
            "addresses": [list(address) for address in addresses],
            "pid": os.getpid(),
            "packages": len(catalog),
            "distinct_ids": distinct,
            "catalog_sizes": {"min": min(sizes), "max": max(sizes)},
            "gossip_settled": min(sizes) >= distinct,
            "holders": {str(n): held.count(n) for n in sorted(set(held))},
            "setup_s": {
                "generate": round(generated - started, 3),
                "join": round(joined - generated, 3),
                "publish": round(published - joined, 3),
                "settle": round(settled - published, 3),
            },
            **_stats(nodes, registries),
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        await serve_stdin(
            "_registry_network",
            args.max_seconds,
            {
                "reset": lambda: {"removed": forget_strangers(nodes)},
                "stats": lambda: _stats(nodes, registries),
            },
            render=json.dumps,
        )
    finally:
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--backend", choices=("rust", "python"), default="rust")
    parser.add_argument("--width", type=int, default=8, help="publishes in flight")
    parser.add_argument("--publish-seconds", type=float, default=600.0)
    parser.add_argument("--settle-seconds", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()

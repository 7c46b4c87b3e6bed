"""Benchmark of the package registry: ``P2PRegistry.search`` through
dhtquery against a naive search written with plain asyncio, in one run.

    dhtquery bench registry [--quick] [--json FILE]
    python -m dhtquery.bench registry [--quick] [--json FILE] [--packages N]
        [--loops asyncio,uvloop] [--backends rust,python] [--repeat N]
        [--no-profile]

The network: 20 registry nodes (``DhtNode`` + ``P2PRegistry``, Rust core,
uvloop) in a child process (a ``dhtquery.testing.LocalNetwork`` worker,
``join="full"``, running :func:`publish_catalog`) on 127.0.0.1. A catalog
of 10,000 generated packages (``dhtquery.testing.generate_catalog``, style
``"zipf"``, no per-tag cap) (plus an older version of 5% of them,
published from another node: the highest version must win) is published,
node ``i`` publishing every 20th package; the child then waits, bounded in
time, until gossip has put every package in every node's catalog, or no
catalog has grown for 2 s.

The client, in this process, for each event loop (asyncio, uvloop) and query
core (``backend=`` rust, python) of a run: a fresh ``DhtNode`` +
``P2PRegistry`` bootstrapped into the network (the child first forgets the
previous client), and two contenders on the same query mix:

dhtquery
    ``await registry.search(query, timeout=1.0)``: local matches (none: the
    client has published nothing), the ``search`` RPC to the ``fan_out`` (3)
    best-scored peers and lookups of the query's tag keys, merged and
    de-duplicated in one QueryHandle.
naive
    plain asyncio, its own UDP socket (a ``DatagramProtocol`` and a dict of
    message id -> future), speaking the same wire format (rpcudp framing: a
    kind byte, a 20-byte message id, msgpack ``["search", [query]]``) to the
    same ``search`` RPC of every one of the 20 nodes;
    ``asyncio.wait_for(asyncio.gather(...), 1.0)``, then, at the end: the
    answers' records de-duplicated by their bytes, each unique one's
    signature checked (once per distinct record over the whole run: it
    remembers the bytes it verified, as the registry's node does) and its
    package decoded and checked (``Package.decode``: schema and hash, as the
    registry does),
    the highest version per id kept, sorted by id, ``offset``/``limit``
    applied. Its own socket rather than the client node's protocol, so that
    none of dhtquery's transport (request table, RTO, reputation) is in the
    baseline; de-duplicating bytes before decoding is the cheap choice a
    careful naive writer makes (decoding all 20 answers would be ~7x the
    client CPU).

Queries (a deterministic mix of 240, cycled): one common word; two words of
one package's title (few matches); a tag; a tag and a word; a category and a
word; two categories and a tag. ``limit`` 10 or 20, ``offset`` 0. A search
is *correct* when it returns ``min(limit, M)`` distinct packages, each a
match of the query in the generated catalog (``M`` matches in all) in its
highest version -- so when ``M <= limit``, exactly the expected set; when
``M > limit`` any ``limit`` matches (the registry does not define which).

Measured, per contender, repetitions interleaved in rotated order:
throughput, closed loop at concurrency 64 (bounded in count and time); and
latency p50/p95/p99 at 500 searches/s offered, open loop, each latency
counted from the search's scheduled start (a late start counts); success
rate of both; client CPU and the network's CPU per search (``/proc``).
Targets (issue 4): p50 <= 2 ms and p99 <= 10 ms at 500 searches/s;
throughput >= 3x the naive search's. ``--quick``: 500 packages, one
repetition of short phases, Rust core only: under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from ..dht import DhtNode, Record, RecordError
from ..query import QueryManager, new_core
from ..registry import P2PRegistry, Package, Query, SchemaError, package_words
from ..testing import (
    BENCH_SEED,
    HOST,
    LocalNetwork,
    generate_catalog,
    loop_factory,
    namespace_publisher,
)
from .common import (
    bounded,
    format_count,
    format_table,
    gc_quiet,
    machine_info,
    udp_drops,
    write_json,
)
from .load import Phase, closed_loop, open_loop, settle, warm_up

DEFAULT_SEED = BENCH_SEED
#: This module by its name (a worker imports its hooks by it).
MODULE = "dhtquery.bench.registry"
DEFAULT_JSON = Path("bench-results") / "registry.json"

CONCURRENCY = 64
RATE = 500.0  # searches/s offered, open loop
SEARCH_TIMEOUT = 1.0  # s, both contenders
QUERY_COUNT = 240
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
TARGET_RATIO = 3.0

Search = Callable[[Any], Awaitable[list[Any]]]


class Found(list[Any]):
    """A search's packages, and the reason its query ended (dhtquery's)."""

    reason: str = ""


# -- queries and their expected answers ---------------------------------


@dataclass(frozen=True)
class Expected:
    kind: str
    matches: frozenset[Any]  # PackageIds
    versions: dict[Any, Any]  # PackageId -> highest version
    limit: int

    @property
    def size(self) -> int:
        return min(self.limit, len(self.matches))


def build_queries(packages: Sequence[Any], count: int, seed: int) -> list[tuple[Any, Expected]]:
    """A deterministic mix of queries and, from the catalog itself (not from
    the library's index), what each must return."""
    newest: dict[Any, Any] = {}
    for package in packages:
        held = newest.get(package.id)
        if held is None or package.version > held.version:
            newest[package.id] = package
    table = [
        (package, package_words(package), set(package.tags), set(package.categories))
        for package in newest.values()
    ]
    versions = {package.id: package.version for package in newest.values()}
    rng = random.Random(seed)
    word_pool = sorted({word for _, words, _, _ in table for word in words if len(word) > 2})
    common = [w for w in word_pool if sum(1 for _, ws, _, _ in table[:2000] if w in ws) > 20]
    tag_pool = sorted({tag for _, _, tags, _ in table for tag in tags})
    category_pool = sorted({c for _, _, _, cs in table for c in cs})
    kinds = ("word", "title", "tag", "tag+word", "category+word", "categories+tag")
    queries = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        limit = rng.choice((10, 20))
        some = rng.choice(table)[0]
        if kind == "word":
            query = Query(rng.choice(common), limit=limit)
        elif kind == "title":
            words = [w for w in some.title.lower().split() if w.isalnum()]
            query = Query(" ".join(rng.sample(words, min(2, len(words)))), limit=limit)
        elif kind == "tag":
            query = Query(tags=(rng.choice(tag_pool),), limit=limit)
        elif kind == "tag+word":
            query = Query(rng.choice(common), tags=(rng.choice(some.tags),), limit=limit)
        elif kind == "category+word":
            query = Query(
                rng.choice(common), categories=(rng.choice(some.categories),), limit=limit
            )
        else:
            query = Query(
                categories=tuple(rng.sample(category_pool, 2)),
                tags=(rng.choice(tag_pool),),
                limit=limit,
            )
        wanted = set(query.words)
        tags, categories = set(query.tags), set(query.categories)
        matches = frozenset(
            package.id
            for package, words, package_tags, package_categories in table
            if (not tags or tags & package_tags)
            and (not categories or categories & package_categories)
            and wanted <= words
        )
        queries.append((query, Expected(kind, matches, versions, query.limit)))
    return queries


def check(result: Sequence[Any], expected: Expected) -> str | None:
    """None if ``result`` is a correct answer, else what is wrong."""
    ids = [package.id for package in result]
    if len(set(ids)) != len(ids):
        return "duplicate"
    for package in result:
        if package.id not in expected.matches:
            return "not_a_match"
        if package.version != expected.versions[package.id]:
            return "old_version"
    if len(ids) < expected.size:
        return "missing"
    if len(ids) > expected.size:
        return "too_many"
    return None


# -- the naive contender ------------------------------------------------


class NaiveClient(asyncio.DatagramProtocol):
    """Plain asyncio: one UDP socket, a future per request, rpcudp framing."""

    def __init__(self, peers: Sequence[tuple[str, int]]) -> None:
        self.peers = list(peers)
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        #: signed records whose signature verified (by their bytes)
        self.verified: set[bytes] = set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > 21 and data[0] == 1:
            future = self.pending.pop(data[1:21], None)
            if future is not None and not future.done():
                future.set_result(data[21:])

    async def search(self, query: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        wire = {
            "text": query.text,
            "categories": list(query.categories),
            "tags": list(query.tags),
            "limit": query.limit,
            "offset": query.offset,
        }
        body = msgpack.packb(["search", [wire]], use_bin_type=True)
        ids, futures = [], []
        assert self.transport is not None
        for peer in self.peers:
            msg_id = os.urandom(20)
            future: asyncio.Future[bytes] = loop.create_future()
            self.pending[msg_id] = future
            ids.append(msg_id)
            futures.append(future)
            self.transport.sendto(b"\x00" + msg_id + body, peer)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), SEARCH_TIMEOUT)
        except TimeoutError:
            pass
        finally:
            for msg_id in ids:
                self.pending.pop(msg_id, None)
        records: set[bytes] = set()
        for future in futures:
            if future.done() and not future.cancelled():
                with contextlib.suppress(ValueError, TypeError, msgpack.UnpackException):
                    answer = msgpack.unpackb(future.result(), raw=False)
                    records.update(r for r in answer.get("results", ()) if type(r) is bytes)
        best: dict[Any, Any] = {}
        for data in records:
            try:
                record = Record.from_wire(msgpack.unpackb(data, raw=False))
                if data not in self.verified:
                    if not record.signature_valid():
                        continue
                    self.verified.add(data)
                package = Package.decode(record.data)
            except (SchemaError, RecordError, ValueError, msgpack.UnpackException):
                continue
            held = best.get(package.id)
            if held is None or package.version > held.version:
                best[package.id] = package
        found = sorted(best.values(), key=lambda package: package.id)
        return found[query.offset : query.offset + query.limit]


# -- measuring ------------------------------------------------------------


def _searches(
    search: Search, queries: Sequence[tuple[Any, Expected]], start: int
) -> Callable[[int], Awaitable[str | None]]:
    """The load loop's i-th operation: query ``start + i`` of the cycle,
    checked (None if correct, else what is wrong)."""

    async def op(index: int) -> str | None:
        query, expected = queries[(start + index) % len(queries)]
        found = await search(query)
        wrong = check(found, expected)
        if wrong is not None and isinstance(found, Found):
            # why dhtquery's search ended, and which kind of query it was
            wrong = f"{wrong} ({found.reason}, {expected.kind})"
        return wrong

    return op


#: how long a phase waits for its last searches (each ends by its timeout)
DRAIN_SECONDS = SEARCH_TIMEOUT + 2.0


def _summary(closed: list[Phase], opened: list[Phase]) -> dict[str, Any]:
    def per_search(phases: list[Phase], cpu: Callable[[Phase], float | None]) -> float:
        return statistics.median((cpu(p) or 0.0) / p.count * 1e6 for p in phases if p.count)

    throughput = statistics.median(p.count / p.elapsed_s for p in closed)
    searches = sum(p.count for p in closed + opened)
    correct = sum(p.ok for p in closed + opened)
    errors: dict[str, int] = {}
    for p in closed + opened:
        for kind, n in p.failures.items():
            errors[kind] = errors.get(kind, 0) + n
    percentiles = [p.percentiles_ms() for p in opened]
    latency = {
        f"p{q}_ms": statistics.median(pcts.get(f"p{q}", float("nan")) for pcts in percentiles)
        for q in (50, 95, 99)
    }
    return {
        "throughput_per_s": throughput,
        "throughput_runs": [p.count / p.elapsed_s for p in closed],
        **latency,
        "max_ms": max((max(p.latencies_s, default=0.0) * 1e3 for p in opened), default=0.0),
        "offered_per_s": statistics.median(p.count / p.elapsed_s for p in opened),
        "searches": searches,
        "correct": correct,
        "success_rate": correct / searches if searches else 0.0,
        "errors": errors,
        # where the wrong ones were, and whether the client's socket
        # overflowed then (None: the kernel does not say)
        "phases": [
            {
                "kind": kind,
                "searches": p.count,
                "wrong": p.count - p.ok,
                "kernel_drops": p.extra.get("kernel_drops"),
            }
            for kind, phases in (("closed", closed), ("open", opened))
            for p in phases
        ],
        "client_cpu_us_per_search": per_search(closed, lambda p: p.client_cpu_s),
        "network_cpu_us_per_search": per_search(closed, lambda p: p.network_cpu_s),
    }


async def measure(
    loop_name: str,
    backend: str,
    addresses: list[tuple[str, int]],
    queries: list[tuple[Any, Expected]],
    args: argparse.Namespace,
    network_cpu: Callable[[], float | None],
) -> dict[str, Any]:
    import logging

    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    node = DhtNode(queries=QueryManager(None, core=new_core(backend)))
    await node.listen(0, HOST)
    naive_transport = None
    try:
        # A client whose bootstrap got no answer in time would search nobody
        # and "succeed" with nothing: retry (bounded), and say so.
        attempts = 0
        while attempts < 5:
            attempts += 1
            await node.bootstrap(addresses)
            if node.neighbors(k=len(addresses)):
                break
            await asyncio.sleep(0.5)
        registry = P2PRegistry(node)
        loop = asyncio.get_running_loop()
        naive_transport, naive = await loop.create_datagram_endpoint(
            lambda: NaiveClient(addresses), local_addr=(HOST, 0)
        )

        async def dhtquery_search(query: Any) -> list[Any]:
            outcome = await registry.search_outcome(query, timeout=SEARCH_TIMEOUT)
            found = Found(registry.packages_of(query, outcome))
            found.reason = str(outcome.reason)
            return found

        contenders: dict[str, Search] = {"dhtquery": dhtquery_search, "naive": naive.search}
        ports = {
            "dhtquery": node.address[1],
            "naive": naive_transport.get_extra_info("sockname")[1],
        }

        async def measured(name: str, phase: Awaitable[Phase]) -> Phase:
            """The phase, with the datagrams the kernel dropped at this
            contender's socket meanwhile (its reader fell behind)."""
            before = udp_drops(ports[name])
            result = await phase
            after = udp_drops(ports[name])
            if before is not None and after is not None:
                result.extra["kernel_drops"] = after - before
            return result

        for search in contenders.values():  # warm up: caches, RTT estimates
            await warm_up(_searches(search, queries, 0), args.warmup, 2.0, DRAIN_SECONDS)
        closed: dict[str, list[Phase]] = {name: [] for name in contenders}
        opened: dict[str, list[Phase]] = {name: [] for name in contenders}
        names = list(contenders)
        offset = 0
        # each phase starts on an idle network (see settle): the seconds waited
        settled_s = [await settle(network_cpu)]
        for rep in range(args.repeat):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                op = _searches(contenders[name], queries, offset)
                with gc_quiet():
                    closed[name].append(
                        await measured(
                            name,
                            closed_loop(
                                op,
                                concurrency=args.concurrency,
                                max_count=args.closed_count,
                                max_seconds=args.closed_seconds,
                                drain_seconds=DRAIN_SECONDS,
                                network_cpu=network_cpu,
                            ),
                        )
                    )
                settled_s.append(await settle(network_cpu))
                with gc_quiet():
                    opened[name].append(
                        await measured(
                            name,
                            open_loop(
                                op,
                                rate=args.rate,
                                seconds=args.open_seconds,
                                drain_seconds=DRAIN_SECONDS,
                                network_cpu=network_cpu,
                            ),
                        )
                    )
                settled_s.append(await settle(network_cpu))
            offset += 7919  # another stretch of the query cycle next time
        result: dict[str, Any] = {name: _summary(closed[name], opened[name]) for name in names}
        metrics = registry.metrics
        result["client"] = {
            "backend": node.queries.backend,
            "bootstrap_attempts": attempts,
            "settled_s": [round(seconds, 2) for seconds in settled_s],
            "peers_forgotten": node.stats.get("peers_forgotten", 0),
            "routing_table": len(node.neighbors(k=1000)),
            "transport": dict(node.stats),
            "metrics": {
                name: getattr(metrics, name)
                for name in ("total", "successful", "timed_out", "cancelled", "in_flight")
                if hasattr(metrics, name)
            },
        }
        if args.profile and loop_name == args.loops[0] and backend == args.backends[0]:
            result["profile"] = await profile_searches(dhtquery_search, queries, args.profile_n)
        return result
    finally:
        if naive_transport is not None:
            naive_transport.close()
        node.stop()


async def profile_searches(search: Search, queries: list[tuple[Any, Expected]], n: int) -> str:
    """cProfile of ``n`` searches, one at a time: where one search's time
    goes (the event loop's wait for the answers shows as select/poll)."""
    profiler = cProfile.Profile()
    began = time.perf_counter()
    cpu = time.process_time()
    profiler.enable()
    for index in range(n):
        query, _ = queries[index % len(queries)]
        await search(query)
    profiler.disable()
    wall = (time.perf_counter() - began) / n * 1e6
    cpu_us = (time.process_time() - cpu) / n * 1e6
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    text = out.getvalue()
    body = text[text.find("   ncalls") :] if "   ncalls" in text else text
    return (
        f"{n} sequential searches (under the profiler): {wall:.0f} us wall, "
        f"{cpu_us:.0f} us client CPU per search\n{body}"
    )


# -- the network (a LocalNetwork worker process) -------------------------

#: Once no catalog has grown for this long, gossip is taken as settled.
STALL_SECONDS = 2.0


def publisher_of(index: int, nodes: int) -> int:
    """Which node publishes the ``index``-th package of the catalog list."""
    return index % nodes


def network_stats(network: LocalNetwork) -> dict[str, Any]:
    """Run in the worker: its nodes' transport counters and the gossip's,
    summed (``store_refused`` among them: a popular tag's key is full)."""
    return network.stats()


async def publish_catalog(
    network: LocalNetwork,
    packages: int,
    seed: int,
    width: int,
    publish_seconds: float,
    settle_seconds: float,
) -> dict[str, Any]:
    """Run in the worker: node ``i`` publishes the packages ``i, i + N, i +
    2N, ...`` of the catalog (``P2PRegistry.publish``: package key, tag
    keys, gossip), ``width`` at a time, newest versions first; then waits,
    at most ``settle_seconds``, until every node's searchable catalog holds
    every package id (gossip settled)."""
    registries = network.registries
    started = time.perf_counter()
    catalog = _catalog(packages, seed)
    distinct = len({package.id for package in catalog})
    generated = time.perf_counter()

    # Newest versions first, older ones after: the older never wins.
    deadline = time.monotonic() + publish_seconds

    async def publish(index: int, package: Package) -> int:
        if time.monotonic() >= deadline:
            return -1
        return await registries[publisher_of(index, len(registries))].publish(
            package, publisher=namespace_publisher(package.id.namespace)
        )

    held = await bounded(
        [functools.partial(publish, i, package) for i, package in enumerate(catalog)], width
    )
    published = time.perf_counter()
    if any(count == -1 for count in held):
        raise RuntimeError(
            f"publishing took over {publish_seconds:.0f} s: "
            f"{held.count(-1)} of {len(held)} packages not published"
        )

    # Gossip settles: every node's catalog holds every id (bounded).
    # Announcements are fire-and-forget (no retry): once no catalog has
    # grown for ``STALL_SECONDS``, waiting longer changes nothing.
    settle_deadline = time.monotonic() + settle_seconds
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
    return {
        "pid": os.getpid(),
        "packages": len(catalog),
        "distinct_ids": distinct,
        "catalog_sizes": {"min": min(sizes), "max": max(sizes)},
        "gossip_settled": min(sizes) >= distinct,
        "holders": {str(n): held.count(n) for n in sorted(set(held))},
        "setup_s": {
            "generate": round(generated - started, 3),
            "publish": round(published - generated, 3),
            "settle": round(settled - published, 3),
        },
        **network_stats(network),
    }


def _catalog(packages: int, seed: int) -> list[Package]:
    """The bench's catalog: ``packages`` ids and an older version of 5%."""
    return generate_catalog(packages, seed, style="zipf", max_per_tag=None, older_share=0.05)


# -- report -----------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.2f}"


def report(results: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    headers = [
        "loop/core",
        "contender",
        "searches/s c64",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "ok %",
        "client CPU us/search",
        "network CPU us/search",
    ]
    rows = []
    targets: dict[str, Any] = {}
    for config, result in results.items():
        for name in ("dhtquery", "naive"):
            r = result[name]
            rows.append(
                [
                    config,
                    name,
                    format_count(r["throughput_per_s"]),
                    _ms(r["p50_ms"]),
                    _ms(r["p95_ms"]),
                    _ms(r["p99_ms"]),
                    _ms(r["max_ms"]),
                    f"{100 * r['success_rate']:.1f}",
                    f"{r['client_cpu_us_per_search']:.0f}",
                    f"{r['network_cpu_us_per_search']:.0f}",
                ]
            )
        ours, naive = result["dhtquery"], result["naive"]
        ratio = ours["throughput_per_s"] / naive["throughput_per_s"]
        targets[config] = {
            "p50_ms": {"value": ours["p50_ms"], "target": TARGET_P50_MS},
            "p99_ms": {"value": ours["p99_ms"], "target": TARGET_P99_MS},
            "throughput_ratio": {"value": ratio, "target": TARGET_RATIO},
        }
        for what in targets[config].values():
            ok = (
                what["value"] >= what["target"]
                if what is targets[config]["throughput_ratio"]
                else what["value"] <= what["target"]
            )
            what["met"] = bool(ok)
    lines = [format_table(headers, rows, left_columns=2), ""]
    for config, target in targets.items():
        parts = []
        for label, key, unit, op in (
            ("p50", "p50_ms", " ms", "<="),
            ("p99", "p99_ms", " ms", "<="),
            ("throughput vs naive", "throughput_ratio", "x", ">="),
        ):
            t = target[key]
            verdict = "met" if t["met"] else "NOT met"
            parts.append(f"{label} {t['value']:.2f}{unit} ({op} {t['target']:g}{unit}: {verdict})")
        lines.append(f"{config}: " + "; ".join(parts))
    return "\n".join(lines), targets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run of under a minute")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--packages", type=int, default=None)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--backends", default=None, help="default rust,python (quick: rust)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    args = parser.parse_args(argv)
    quick = args.quick
    args.packages = args.packages or (500 if quick else 10_000)
    args.loops = args.loops.split(",")
    args.backends = (args.backends or ("rust" if quick else "rust,python")).split(",")
    args.repeat = args.repeat or (1 if quick else 3)
    args.closed_count = 1500 if quick else 6000
    args.closed_seconds = 1.5 if quick else 4.0
    args.open_seconds = 1.5 if quick else 4.0
    args.warmup = 200 if quick else 500
    args.profile_n = 100 if quick else 300

    started = time.perf_counter()
    catalog = _catalog(args.packages, args.seed)
    queries = build_queries(catalog, QUERY_COUNT, args.seed)
    sizes = [len(expected.matches) for _, expected in queries]
    print(
        f"catalog: {args.packages} packages (+{len(catalog) - args.packages} older versions); "
        f"{len(queries)} queries, matches per query median {statistics.median(sizes):.0f}, "
        f"{sum(1 for _, e in queries if len(e.matches) <= e.limit)} with <= limit matches",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    network = LocalNetwork(
        args.nodes,
        processes=1,
        loop="uvloop",
        core="rust",
        registries=True,
        join="full",
        ready_timeout=720.0,
    )
    with network:
        (ready,) = network.call(
            f"{MODULE}:publish_catalog",
            720.0,
            packages=args.packages,
            seed=args.seed,
            width=8,
            publish_seconds=600.0,
            settle_seconds=60.0,
        )
        addresses = network.addresses
        ready["addresses"] = [list(address) for address in addresses]
        ready["setup_s"] = {"join": round(network.setup_seconds, 3), **ready["setup_s"]}
        print(
            f"network: {args.nodes} nodes, setup {ready['setup_s']} s, catalog sizes "
            f"{ready['catalog_sizes']} of {ready['distinct_ids']} ids, gossip settled: "
            f"{ready['gossip_settled']}",
            flush=True,
        )
        for backend in args.backends:
            for loop_name in args.loops:
                network.forget_strangers()
                config = f"{loop_name}/{backend}"
                print(f"measuring {config} ...", flush=True)
                with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
                    results[config] = runner.run(
                        measure(loop_name, backend, addresses, queries, args, network.cpu_seconds)
                    )
        (end_stats,) = network.call(f"{MODULE}:network_stats")

    table, targets = report(results)
    print()
    print(table)
    for config, result in results.items():
        if "profile" in result:
            print(f"\nprofile, dhtquery search, {config}:\n{result['profile']}")
    for name, result in results.items():
        drops = {
            contender: sum(phase["kernel_drops"] or 0 for phase in result[contender]["phases"])
            for contender in ("dhtquery", "naive")
        }
        print(
            f"{name} datagrams dropped by the kernel at the client's socket: {drops}; "
            f"waits for an idle network between phases (s): {result['client']['settled_s']}"
        )
        for contender in ("dhtquery", "naive"):
            if result[contender]["errors"]:
                print(f"{name} {contender} incorrect searches: {result[contender]['errors']}")
    write_json(
        args.json,
        {
            "benchmark": "registry",
            "machine": machine_info(),
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "network": {"ready": ready, "end": end_stats},
            "queries": {
                "count": len(queries),
                "kinds": sorted({e.kind for _, e in queries}),
                "matches_median": statistics.median(sizes),
            },
            "results": results,
            "targets": targets,
            "wall_s": time.perf_counter() - started,
        },
    )
    print(f"\nwrote {args.json} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    # run as the module of its own name (``python -m`` makes this one
    # ``__main__``): the network workers import hooks and classes by name
    from dhtquery.bench import run

    sys.exit(run("registry", sys.argv[1:]))

"""Benchmark of the package registry: ``P2PRegistry.search`` through
dhtquery against a naive search written with plain asyncio, in one run.

    python benches/bench_registry.py [--quick] [--json FILE] [--packages N]
        [--loops asyncio,uvloop] [--backends rust,python] [--repeat N]
        [--no-profile]

The network: 20 registry nodes (``DhtNode`` + ``P2PRegistry``, Rust core,
uvloop) in a child process (``_registry_network.py``) on 127.0.0.1. A
catalog of 10,000 generated packages (plus an older version of 5% of them,
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
    answers' records de-duplicated by their bytes, each unique one decoded
    and checked (``Package.decode``: schema and hash, as the registry does),
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
import io
import json
import os
import pstats
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from _common import (
    format_count,
    format_table,
    gc_quiet,
    loop_factory,
    machine_info,
    sleep_until,
    write_json,
)
from _registry_network import DEFAULT_SEED, HOST, generate_catalog

BENCHES = Path(__file__).resolve().parent
NETWORK = BENCHES / "_registry_network.py"
DEFAULT_JSON = Path("bench-results") / "registry.json"

CONCURRENCY = 64
RATE = 500.0  # searches/s offered, open loop
SEARCH_TIMEOUT = 1.0  # s, both contenders
QUERY_COUNT = 240
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
TARGET_RATIO = 3.0

Search = Callable[[Any], Awaitable[list[Any]]]


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
    from dhtquery.registry.model import Query, package_words

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

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > 21 and data[0] == 1:
            future = self.pending.pop(data[1:21], None)
            if future is not None and not future.done():
                future.set_result(data[21:])

    async def search(self, query: Any) -> list[Any]:
        from dhtquery.registry.model import Package, SchemaError

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
                package = Package.decode(data)
            except SchemaError:
                continue
            held = best.get(package.id)
            if held is None or package.version > held.version:
                best[package.id] = package
        found = sorted(best.values(), key=lambda package: package.id)
        return found[query.offset : query.offset + query.limit]


# -- measuring ------------------------------------------------------------


@dataclass
class Phase:
    searches: int = 0
    correct: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    network_cpu_s: float = 0.0

    def add(self, problem: str | None) -> None:
        self.searches += 1
        if problem is None:
            self.correct += 1
        else:
            self.errors[problem] = self.errors.get(problem, 0) + 1


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def _one(search: Search, query: Any, expected: Expected, phase: Phase) -> None:
    try:
        result = await search(query)
    except Exception as exc:  # a failed search is counted, not fatal
        phase.add(f"error:{type(exc).__name__}")
        return
    phase.add(check(result, expected))


async def closed_loop(
    search: Search,
    queries: Sequence[tuple[Any, Expected]],
    start: int,
    *,
    concurrency: int,
    max_count: int,
    max_seconds: float,
    network_pid: int,
) -> Phase:
    """``concurrency`` workers, each issuing its next search when the last
    one returns, until ``max_count`` searches or ``max_seconds``."""
    phase = Phase()
    counter = iter(range(start, start + max_count))
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        for index in counter:
            if time.perf_counter() >= deadline:
                return
            query, expected = queries[index % len(queries)]
            await _one(search, query, expected, phase)

    cpu, network_cpu = time.process_time(), _proc_cpu(network_pid)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - began
    phase.client_cpu_s = time.process_time() - cpu
    phase.network_cpu_s = _proc_cpu(network_pid) - network_cpu
    return phase


async def open_loop(
    search: Search,
    queries: Sequence[tuple[Any, Expected]],
    start: int,
    *,
    rate: float,
    seconds: float,
    network_pid: int,
) -> Phase:
    """Start search ``i`` at ``t0 + i / rate`` whatever the others do; its
    latency runs from that scheduled time to its answer."""
    phase = Phase()
    count = max(1, int(rate * seconds))
    tasks = set()

    # perf_counter, not loop.time(): uvloop's clock ticks in milliseconds.
    clock = time.perf_counter

    async def timed(index: int, scheduled: float) -> None:
        query, expected = queries[index % len(queries)]
        await _one(search, query, expected, phase)
        phase.latencies_ms.append((clock() - scheduled) * 1000.0)

    cpu, network_cpu = time.process_time(), _proc_cpu(network_pid)
    t0 = clock() + 0.01
    for i in range(count):
        scheduled = t0 + i / rate
        await sleep_until(scheduled, clock)
        task = asyncio.ensure_future(timed(start + i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:  # every search ends by its own timeout; this bounds the wait
        await asyncio.wait(list(tasks), timeout=SEARCH_TIMEOUT + 2.0)
    phase.elapsed_s = clock() - t0
    phase.client_cpu_s = time.process_time() - cpu
    phase.network_cpu_s = _proc_cpu(network_pid) - network_cpu
    for task in list(tasks):
        task.cancel()
    phase.searches += len(tasks)
    if tasks:
        phase.errors["never_ended"] = len(tasks)
    return phase


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def _summary(closed: list[Phase], opened: list[Phase]) -> dict[str, Any]:
    def per_search(phases: list[Phase], what: str) -> float:
        return statistics.median(getattr(p, what) / p.searches * 1e6 for p in phases if p.searches)

    throughput = statistics.median(p.searches / p.elapsed_s for p in closed)
    searches = sum(p.searches for p in closed + opened)
    correct = sum(p.correct for p in closed + opened)
    errors: dict[str, int] = {}
    for p in closed + opened:
        for kind, n in p.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    latency = {
        f"p{q}_ms": statistics.median(_percentile(p.latencies_ms, q) for p in opened)
        for q in (50, 95, 99)
    }
    return {
        "throughput_per_s": throughput,
        "throughput_runs": [p.searches / p.elapsed_s for p in closed],
        **latency,
        "max_ms": max((max(p.latencies_ms, default=0.0) for p in opened), default=0.0),
        "offered_per_s": statistics.median(p.searches / p.elapsed_s for p in opened),
        "searches": searches,
        "correct": correct,
        "success_rate": correct / searches if searches else 0.0,
        "errors": errors,
        "client_cpu_us_per_search": per_search(closed, "client_cpu_s"),
        "network_cpu_us_per_search": per_search(closed, "network_cpu_s"),
    }


async def measure(
    loop_name: str,
    backend: str,
    addresses: list[tuple[str, int]],
    queries: list[tuple[Any, Expected]],
    args: argparse.Namespace,
    network_pid: int,
) -> dict[str, Any]:
    import logging

    from dhtquery.dht import DhtNode
    from dhtquery.registry import P2PRegistry

    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    node = DhtNode(backend=backend)
    await node.listen(0, HOST)
    forgets = _keep_peers(node) if args.keep_peers else None
    naive_transport = None
    try:
        # A client whose bootstrap got no answer in time would search nobody
        # and "succeed" with nothing: retry (bounded), and say so.
        attempts = 0
        while attempts < 5:
            attempts += 1
            await node.bootstrap(addresses)
            if node.protocol.router.find_neighbors(node.node, k=len(addresses)):
                break
            await asyncio.sleep(0.5)
        registry = P2PRegistry(node)
        loop = asyncio.get_running_loop()
        naive_transport, naive = await loop.create_datagram_endpoint(
            lambda: NaiveClient(addresses), local_addr=(HOST, 0)
        )

        async def dhtquery_search(query: Any) -> list[Any]:
            return await registry.search(query, timeout=SEARCH_TIMEOUT)

        contenders: dict[str, Search] = {"dhtquery": dhtquery_search, "naive": naive.search}
        for search in contenders.values():  # warm up: caches, RTT estimates
            await closed_loop(
                search,
                queries,
                0,
                concurrency=16,
                max_count=args.warmup,
                max_seconds=2.0,
                network_pid=network_pid,
            )
        closed: dict[str, list[Phase]] = {name: [] for name in contenders}
        opened: dict[str, list[Phase]] = {name: [] for name in contenders}
        names = list(contenders)
        offset = 0
        for rep in range(args.repeat):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                with gc_quiet():
                    closed[name].append(
                        await closed_loop(
                            contenders[name],
                            queries,
                            offset,
                            concurrency=args.concurrency,
                            max_count=args.closed_count,
                            max_seconds=args.closed_seconds,
                            network_pid=network_pid,
                        )
                    )
                await asyncio.sleep(0.2)  # let stragglers of the last phase drain
                with gc_quiet():
                    opened[name].append(
                        await open_loop(
                            contenders[name],
                            queries,
                            offset,
                            rate=args.rate,
                            seconds=args.open_seconds,
                            network_pid=network_pid,
                        )
                    )
                await asyncio.sleep(0.2)
            offset += 7919  # another stretch of the query cycle next time
        result = {name: _summary(closed[name], opened[name]) for name in names}
        metrics = registry.metrics
        result["client"] = {
            "backend": node.queries.backend,
            "keep_peers": args.keep_peers,
            "bootstrap_attempts": attempts,
            "forgets_suppressed": None if forgets is None else forgets[0],
            "routing_table": len(node.protocol.router.find_neighbors(node.node, k=1000)),
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


def _keep_peers(node: Any) -> list[int]:
    """Workaround (``--keep-peers``, the default): the client never drops a
    peer from its routing table. dhtquery drops a peer after 3 timeouts in a
    row (``DhtProtocol._request_timed_out`` -> ``_forget``); at concurrency
    64 on a loaded machine the answers of a burst come after the 50 ms
    minimum RTO, every peer is forgotten within a second, and every later
    search asks nobody and returns nothing (reason ``all_peers``). Returns a
    one-item list counting the forgets suppressed."""
    suppressed = [0]
    protocol = node.protocol
    if hasattr(protocol, "_forget"):

        def forget(address: Any) -> None:
            suppressed[0] += 1

        protocol._forget = forget
    return suppressed


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


# -- the network child ----------------------------------------------------


class Network:
    """The child process: started, spoken to by lines, killed in close()."""

    def __init__(self, argv: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(BENCHES), *filter(None, [env.get("PYTHONPATH")])])
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready: dict[str, Any] = {}

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """The child's first line: its addresses and how setup went."""
        self.ready = self.reply(timeout)
        return self.ready

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the registry network said nothing for {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"the registry network exited (code {self.process.poll()})")
        return dict(json.loads(line))

    def command(self, name: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        return self.reply(30.0)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5.0)


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
    parser.add_argument(
        "--forget-peers",
        dest="keep_peers",
        action="store_false",
        help="let the client drop slow peers (dhtquery's default; see _keep_peers)",
    )
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
    catalog = generate_catalog(args.packages, args.seed)
    queries = build_queries(catalog, QUERY_COUNT, args.seed)
    sizes = [len(expected.matches) for _, expected in queries]
    print(
        f"catalog: {args.packages} packages (+{len(catalog) - args.packages} older versions); "
        f"{len(queries)} queries, matches per query median {statistics.median(sizes):.0f}, "
        f"{sum(1 for _, e in queries if len(e.matches) <= e.limit)} with <= limit matches",
        flush=True,
    )
    network = None
    results: dict[str, dict[str, Any]] = {}
    try:
        network = Network(
            [
                sys.executable,
                str(NETWORK),
                "--nodes",
                str(args.nodes),
                "--packages",
                str(args.packages),
                "--seed",
                str(args.seed),
                "--publish-seconds",
                "600",
                "--settle-seconds",
                "60",
            ]
        )
        ready = network.wait_ready(720.0)
        print(
            f"network: {args.nodes} nodes, setup {ready['setup_s']} s, catalog sizes "
            f"{ready['catalog_sizes']} of {ready['distinct_ids']} ids, gossip settled: "
            f"{ready['gossip_settled']}",
            flush=True,
        )
        addresses = [(host, port) for host, port in ready["addresses"]]
        for backend in args.backends:
            for loop_name in args.loops:
                network.command("reset")
                config = f"{loop_name}/{backend}"
                print(f"measuring {config} ...", flush=True)
                with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
                    results[config] = runner.run(
                        measure(loop_name, backend, addresses, queries, args, network.pid)
                    )
        network_stats = network.command("stats")
    finally:
        if network is not None:
            network.close()

    table, targets = report(results)
    print()
    print(table)
    for config, result in results.items():
        if "profile" in result:
            print(f"\nprofile, dhtquery search, {config}:\n{result['profile']}")
    for name, result in results.items():
        for contender in ("dhtquery", "naive"):
            if result[contender]["errors"]:
                print(f"{name} {contender} incorrect searches: {result[contender]['errors']}")
    write_json(
        args.json,
        {
            "benchmark": "registry",
            "machine": machine_info(),
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "network": {"ready": ready, "end": network_stats},
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
    sys.exit(main())

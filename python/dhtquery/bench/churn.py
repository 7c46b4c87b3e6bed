"""Benchmark of lookups and catalogs under churn and loss: dhtquery's
``get_all`` against stock kademlia ``Server.get`` on the same network in
the same run, and the registry's catalogs and search with and without loss
(issue 10, point 8).

    dhtquery bench churn [--quick] [--json FILE]
    python -m dhtquery.bench churn [--quick] [--json FILE] [--seconds S] [--rate R]
                                   [--no-namespaces]

The DHT network: 36 ``DhtNode`` and 12 stock kademlia 2.2.3 ``Server`` peers
(k=20, alpha=3) in 12 worker processes (3 + 1 each), on 5 simulated hosts
(``dhtquery.testing.HostNetwork``: a network namespace each where permitted,
RTT 5-40 ms per host pair and 0-2 ms jitter as a userspace link in the
workers' transports; loopback otherwise, said in the output), ``join="full"``.
Before the phases the network stores 200 keys (``--quick``: 60), each as ONE
record (``DhtNode.put``, publisher ``pub-0``) under ``churn-record-i`` and as
the same bytes as a plain kademlia value (``Server.set``) under
``churn-plain-i`` (a key of its own: stock peers answer a lookup with the
plain value, which ``get_all`` would report as a second record), from nodes
spread over the workers.

Clients: in the last two workers (never killed), on two hosts, each a
client ``DhtNode`` (``get_all(key, quorum=3, timeout=10)``) and a stock
``Server`` (``get(key)``: rpcudp's 5 s per request), both keeping nothing for
others. They run at the same time, each an open loop at ``--rate`` lookups/s
(default 15; quick 10) for ``--seconds`` (default 30; quick 8), lookup i of
key ``order[i]``, latency from its scheduled start; a lookup still running
15 s after the last start is unfinished. A lookup succeeds when it returns
exactly the stored record (value) and did not time out.

Phases, in this order (the kill cannot be undone):

steady
    no loss, every node up.
loss
    10 % of the UDP datagrams arriving at every host dropped: nftables in
    each host namespace (an input-hook ``numgen random`` rule), or, without
    namespaces or ``nft``, injected in the workers' transport wrappers.
killed
    no loss; 4 of the 12 workers (12 of the 36 DhtNodes and 4 of the 12
    stock peers: at least 30 %, never a client's worker) SIGKILLed just
    before the phase starts: their nodes vanish without a
    word, and the clients' routing tables still name them.
killed+loss
    the killed nodes stay dead, 10 % loss again.

Per phase and client: success, p50/p99 (ms), requests sent per lookup (the
datagrams of kind "request" the client's transport sent during the phase,
retransmissions and its routing upkeep included, divided by its lookups;
for get_all also requests and hops as its ``lookup_stats`` count them).

The registry: 20 ``DhtNode`` + ``P2PRegistry`` (quick: 10) in 4 workers on
4 hosts, fresh for each loss level (0 % and 5 %). A generated catalog of
1,000 packages (quick: 200; style "zipf", 5 % with an older version too) is
published, node i publishing every Nth, the newest versions first and the
older ones after (as ``bench registry`` does); convergence time runs from the end
of publishing until every catalog holds every package id (polled every
0.25 s, bounded by 120 s; quick 60 s); anti-entropy runs with its default
period (quick: 5 s, said in the output). Then a fresh client registry
(gossip and anti-entropy never reach it: it joins after the publishing and
pulls nothing) runs 600 searches (quick 120) of ``bench registry``'s query
mix, 8 at a time, ``timeout=1.0``; a search is correct as that bench defines
it (``min(limit, M)`` distinct matches of the full catalog in their highest
version).

Targets (issue 10): ``get_all`` success >= 99.9 % in every phase and never
below stock's in the same phase; every catalog 100 % after convergence with
and without 5 % loss; search correctness >= 99.9 %.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dht import latest
from ..testing import (
    HostNetwork,
    LocalNetwork,
    generate_catalog,
    namespace_publisher,
    namespaces_permitted,
)
from .common import bounded, format_table, machine_info, write_json
from .dht import KEEP_NOTHING, NullStorage, bench_publisher
from .load import closed_loop, open_loop, percentiles_ms
from .registry import build_queries, check

#: This module by its name (the workers import its hooks by it).
MODULE = "dhtquery.bench.churn"
DEFAULT_JSON = Path("bench-results") / "churn.json"
PUBLISHER = bench_publisher(0)
QUORUM = 3
LOOKUP_TIMEOUT = 10.0
DRAIN_SECONDS = 15.0
#: A get_all slower than this is listed (its lookup_stats) in the JSON: the
#: p99 of a phase is one or two such lookups.
SLOW_LOOKUP = 0.5
#: The client protocol's counters reported per phase (their growth).
_CLIENT_STATS = ("requests", "retransmitted", "timeouts", "liveness_probes")
LOSS_PERCENT = 10.0
REGISTRY_LOSS_PERCENT = 5.0
KILL_SHARE = 0.3
SEARCH_TIMEOUT = 1.0
SEARCH_CONCURRENCY = 8
TARGET_SUCCESS = 0.999
TARGET_SEARCH = 0.999
PHASES = ("steady", "loss", "killed", "killed+loss")


@dataclass(frozen=True)
class Sizes:
    node_workers: int = 10
    nodes_per_worker: int = 3
    stock_per_worker: int = 1
    client_workers: int = 2
    hosts: int = 5
    keys: int = 200
    rate: float = 15.0
    seconds: float = 30.0
    registry_nodes: int = 20
    registry_workers: int = 4
    packages: int = 1000
    searches: int = 600
    converge_seconds: float = 120.0
    anti_entropy_period: float | None = None  # None: the registry's default
    rtt_ms: tuple[float, float] = (5.0, 40.0)
    jitter_ms: float = 2.0
    #: whether stock clients look up too (the in-suite run leaves them out:
    #: their 5 s request timeouts would make each phase's drain long)
    with_stock: bool = True


FULL = Sizes()
QUICK = Sizes(
    keys=60,
    rate=10.0,
    seconds=8.0,
    registry_nodes=10,
    packages=200,
    searches=120,
    converge_seconds=60.0,
    anti_entropy_period=5.0,
)


def record_key(index: int) -> str:
    return f"churn-record-{index}"


def plain_key(index: int) -> str:
    # a key of its own: stock peers would answer a record key's lookup with
    # the plain value too, which get_all reports as a record of "kademlia"
    return f"churn-plain-{index}"


def record_value(index: int) -> bytes:
    return f"churn-value-{index:06d}-".encode().ljust(64, b"c")


# -- hooks run in the workers ----------------------------------------------------

#: The clients of this worker process (a client worker's), by kind.
_CLIENTS: dict[str, Any] = {}


async def store_keys(network: LocalNetwork, keys: Sequence[int]) -> dict[str, Any]:
    """Run in a node worker: put each key's record and set its plain value,
    from this worker's nodes in turn; counts of holders."""
    nodes = network.nodes

    async def one(slot: int, index: int) -> tuple[int, bool]:
        node = nodes[slot % len(nodes)]
        held = 0
        for _ in range(3):  # a put that reached too few holders is tried again
            held = max(
                held, await node.put(record_key(index), record_value(index), publisher=PUBLISHER)
            )
            if held >= 3:
                break
        plain = bool(await node.set(plain_key(index), record_value(index)))
        return held, plain

    results = await bounded([functools.partial(one, s, i) for s, i in enumerate(keys)], 8)
    return {
        "keys": len(results),
        "records_under_3_holders": sum(1 for held, _ in results if held < 3),
        "plain_failed": sum(1 for _, plain in results if not plain),
    }


async def start_clients(
    network: LocalNetwork, addresses: list[list[Any]], with_stock: bool
) -> dict[str, Any]:
    """Run in a client worker: a client DhtNode and a stock Server, both
    storing nothing for others, joined to ``addresses``."""
    from kademlia.network import Server

    targets = [(host, port) for host, port in addresses]
    node = await network.add(
        bootstrap=targets, registry=False, storage=NullStorage(), limits=KEEP_NOTHING
    )
    _CLIENTS["dhtquery"] = node
    if with_stock:
        stock = Server(ksize=20, alpha=3, storage=NullStorage())
        network.stock_nodes.append(stock)
        await stock.listen(0, network.host)
        if network.link is not None:
            network.link.attach(stock)
        await stock.bootstrap(targets)
        _CLIENTS["stock"] = stock
    return {"peers": node.peer_count, "address": list(node.address)}


def _requests_sent(server: Any) -> int:
    return int(getattr(server.protocol.transport, "requests", 0))


async def measure_phase(
    network: LocalNetwork, keys: int, rate: float, seconds: float, seed: int
) -> dict[str, Any]:
    """Run in a client worker: both clients' open loops at once; per
    client its phase summary, latencies (s) and requests sent."""
    node, stock = _CLIENTS["dhtquery"], _CLIENTS.get("stock")
    order = list(range(keys))
    random.Random(seed).shuffle(order)
    examples: list[str] = []
    slow: list[str] = []
    own = {"lookups": 0, "requests": 0, "hops": 0}
    protocol_stats = node.protocol.stats
    before = {name: protocol_stats[name] for name in _CLIENT_STATS}

    async def get_all(index: int) -> str | None:
        key = order[index % keys]
        started = time.perf_counter()
        handle = node.get_all(record_key(key), quorum=QUORUM, timeout=LOOKUP_TIMEOUT)
        outcome = await handle
        elapsed = time.perf_counter() - started
        # the lookup's own count (LookupHandle.lookup_stats), where there is one
        stats = getattr(handle, "lookup_stats", None)
        if stats is not None:
            own["lookups"] += 1
            own["requests"] += stats.requests + stats.retransmissions
            own["hops"] += stats.hops
        if elapsed > SLOW_LOOKUP and len(slow) < 5:
            slow.append(f"{record_key(key)}: {elapsed:.3f} s, {outcome.reason}, {stats}")
        got = [(record.publisher, record.data) for record in latest(outcome.items)]
        if not outcome.timed_out and got == [(PUBLISHER.key_id, record_value(key))]:
            return None
        if len(examples) < 3:
            examples.append(f"{record_key(key)}: {outcome.reason} {got!r:.200} {stats}")
        if outcome.timed_out:
            return "timeout"
        return "missing" if not got else "wrong"

    async def stock_get(index: int) -> str | None:
        key = order[index % keys]
        assert stock is not None  # only looped when there is one
        value = await stock.get(plain_key(key))
        if value == record_value(key):
            return None
        return "missing" if value is None else "wrong"

    servers = {"dhtquery": node, "stock": stock} if stock is not None else {"dhtquery": node}
    sent = {name: _requests_sent(server) for name, server in servers.items()}
    loops = {"dhtquery": get_all, "stock": stock_get}
    phases = await asyncio.gather(
        *(
            open_loop(loops[name], rate=rate, seconds=seconds, drain_seconds=DRAIN_SECONDS)
            for name in servers
        )
    )
    result = {}
    for (name, server), phase in zip(servers.items(), phases, strict=True):
        result[name] = {
            "count": phase.count,
            "ok": phase.ok,
            "failures": dict(phase.failures),
            "latencies_s": phase.latencies_s,
            "requests": _requests_sent(server) - sent[name],
            "peers": node.peer_count if name == "dhtquery" else None,
        }
    result["dhtquery"]["examples"] = examples
    result["dhtquery"]["slow"] = slow
    result["dhtquery"]["protocol"] = {
        name: protocol_stats[name] - before[name] for name in _CLIENT_STATS
    }
    result["dhtquery"]["lookup_stats"] = own
    return result


async def publish_share(
    network: LocalNetwork, packages: int, seed: int, part: int, parts: int, newest: bool
) -> dict[str, Any]:
    """Run in a registry worker: its registries publish their share of the
    catalog (package i goes to registry i // parts of worker i % parts),
    the highest version of each id (``newest``) or the older ones."""
    catalog = _catalog(packages, seed)
    highest: dict[Any, Any] = {}
    for package in catalog:
        if package.id not in highest or package.version > highest[package.id].version:
            highest[package.id] = package
    registries = network.registries
    mine = [
        (i, p)
        for i, p in enumerate(catalog)
        if i % parts == part and (highest[p.id] is p) == newest
    ]

    async def publish(slot: int, package: Any) -> int:
        return int(
            await registries[slot % len(registries)].publish(
                package, publisher=namespace_publisher(package.id.namespace)
            )
        )

    held = await bounded([functools.partial(publish, i // parts, p) for i, p in mine], 8)
    return {"published": len(held), "under_3_holders": sum(1 for n in held if n < 3)}


def catalog_sizes(network: LocalNetwork) -> list[int]:
    """Run in a registry worker: the number of package ids in each catalog."""
    return [len(registry.catalog) for registry in network.registries]


async def search_all(
    network: LocalNetwork,
    addresses: list[list[Any]],
    packages: int,
    seed: int,
    searches: int,
) -> dict[str, Any]:
    """Run in a registry worker: a fresh client registry (no anti-entropy)
    runs ``searches`` searches of the query mix; failures by kind."""
    from ..registry import P2PRegistry

    catalog = _catalog(packages, seed)
    queries = build_queries(catalog, 240, seed)
    targets = [(host, port) for host, port in addresses]
    node = await network.add(bootstrap=targets, registry=False)
    client = P2PRegistry(node, anti_entropy_period=None)

    examples: list[str] = []

    async def op(index: int) -> str | None:
        query, expected = queries[index % len(queries)]
        failure = check(await client.search(query, timeout=SEARCH_TIMEOUT), expected)
        if failure is not None and len(examples) < 3:
            examples.append(f"query {index % len(queries)} ({expected.kind}): {failure}")
        return failure

    phase = await closed_loop(
        op,
        concurrency=SEARCH_CONCURRENCY,
        max_count=searches,
        max_seconds=300.0,
        drain_seconds=SEARCH_TIMEOUT + 5.0,
    )
    return {
        "count": phase.count,
        "ok": phase.ok,
        "failures": dict(phase.failures),
        "latency_ms": phase.percentiles_ms(),
        "examples": examples,
    }


def _catalog(packages: int, seed: int) -> list[Any]:
    return generate_catalog(packages, seed, style="zipf", max_per_tag=None, older_share=0.05)


# -- the runs --------------------------------------------------------------------


def _hosts(count: int, sizes: Sizes, namespaces: bool | None, seed: int) -> HostNetwork:
    return HostNetwork(
        count,
        rtt_ms=sizes.rtt_ms,
        jitter_ms=sizes.jitter_ms,
        seed=seed,
        namespaces=namespaces,
    )


def _each(
    net: LocalNetwork,
    workers: Iterable[int],
    params: Callable[[int], dict[str, Any]],
    hook: str,
) -> list[Any]:
    """``hook`` in each of ``workers`` at once, each with its own params."""
    chosen = list(workers)
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = [
            pool.submit(net.call, f"{MODULE}:{hook}", workers=[w], **params(w)) for w in chosen
        ]
        return [future.result()[0] for future in futures]


def _own_counts(parts: Sequence[dict[str, int]]) -> dict[str, float]:
    """Requests (retransmissions included) and hops per lookup as the
    lookups count them themselves; {} where get_all has no lookup_stats."""
    lookups = sum(p["lookups"] for p in parts)
    if not lookups:
        return {}
    return {
        "lookup_requests_per_lookup": sum(p["requests"] for p in parts) / lookups,
        "hops_per_lookup": sum(p["hops"] for p in parts) / lookups,
    }


def _summed(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def _merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    count = sum(p["count"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    failures: Counter[str] = Counter()
    for part in parts:
        failures.update(part["failures"])
    latencies = [latency for p in parts for latency in p["latencies_s"]]
    requests = sum(p["requests"] for p in parts)
    return {
        "count": count,
        "ok": ok,
        "success": ok / count if count else 0.0,
        "failures": dict(failures),
        "latency_ms": percentiles_ms(latencies),
        "requests_per_lookup": requests / count if count else 0.0,
        "client_peers": [p["peers"] for p in parts if p.get("peers") is not None],
        "examples": [e for p in parts for e in p.get("examples", [])][:4],
        "slow": [e for p in parts for e in p.get("slow", [])][:6],
        "client_protocol": _summed([p["protocol"] for p in parts if "protocol" in p]),
        **_own_counts([p["lookup_stats"] for p in parts if "lookup_stats" in p]),
    }


def run_dht(sizes: Sizes, namespaces: bool | None = None, seed: int = 1) -> dict[str, Any]:
    """The four phases on one network; per phase and client the merged
    figures (see the module's docstring)."""
    workers = sizes.node_workers + sizes.client_workers
    hosts = _hosts(sizes.hosts, sizes, namespaces, seed)
    started = time.perf_counter()
    with (
        hosts,
        LocalNetwork(
            workers * sizes.nodes_per_worker,
            processes=workers,
            stock=workers * sizes.stock_per_worker,
            hosts=hosts,
            join="full",
            core="rust",
        ) as net,
    ):
        setup: dict[str, Any] = {"hosts": hosts.describe(), "namespaced": hosts.namespaced}
        print(f"  hosts: {hosts.describe()}", flush=True)
        node_workers = list(range(sizes.node_workers))
        client_workers = list(range(sizes.node_workers, workers))
        stored = _each(
            net,
            node_workers,
            lambda w: {"keys": list(range(sizes.keys))[w :: sizes.node_workers]},
            "store_keys",
        )
        setup["stored"] = {
            key: sum(s[key] for s in stored)
            for key in ("keys", "records_under_3_holders", "plain_failed")
        }
        members = [list(a) for a in [*net.addresses, *net.stock_addresses]]
        setup["clients"] = net.call(
            f"{MODULE}:start_clients",
            workers=client_workers,
            addresses=members,
            with_stock=sizes.with_stock,
        )
        setup["setup_s"] = round(time.perf_counter() - started, 2)
        # at least KILL_SHARE of all DhtNodes (the client workers hold some too)
        kill = node_workers[: math.ceil(KILL_SHARE * workers)]
        phases: dict[str, Any] = {}
        for index, phase in enumerate(PHASES):
            loss = LOSS_PERCENT if "loss" in phase else 0.0
            hosts.set_loss(loss, network=net)
            if phase == "killed":
                for worker in kill:
                    net.kill_worker(worker)
            began = time.perf_counter()
            parts = net.call(
                f"{MODULE}:measure_phase",
                workers=client_workers,
                keys=sizes.keys,
                rate=sizes.rate,
                seconds=sizes.seconds,
                seed=seed + index,
            )
            phases[phase] = {
                "loss_percent": loss,
                "loss_by": hosts.loss_by,
                "killed_workers": kill if "killed" in phase else [],
                "dhtquery": _merge([p["dhtquery"] for p in parts]),
                "stock": _merge([p["stock"] for p in parts]) if sizes.with_stock else None,
                "wall_s": round(time.perf_counter() - began, 2),
            }
            print(f"  {phase:<12} {_phase_line(phases[phase])}", flush=True)
        hosts.set_loss(0.0, network=net)
    killed_nodes = len(kill) * sizes.nodes_per_worker
    setup["killed"] = {
        "workers": len(kill),
        "dhtquery_nodes": killed_nodes,
        "of_dhtquery_nodes": workers * sizes.nodes_per_worker,
        "stock_nodes": len(kill) * sizes.stock_per_worker,
        "of_stock_nodes": workers * sizes.stock_per_worker,
    }
    return {"setup": setup, "phases": phases}


def run_registry(
    sizes: Sizes, loss_percent: float, namespaces: bool | None = None, seed: int = 1
) -> dict[str, Any]:
    """One registry network at ``loss_percent``: publish, converge, search."""
    hosts = _hosts(sizes.registry_workers, sizes, namespaces, seed)
    options = {}
    if sizes.anti_entropy_period is not None:
        options["anti_entropy_period"] = sizes.anti_entropy_period
    catalog = _catalog(sizes.packages, seed)
    distinct = len({package.id for package in catalog})
    with (
        hosts,
        LocalNetwork(
            sizes.registry_nodes,
            processes=sizes.registry_workers,
            hosts=hosts,
            join="full",
            core="rust",
            registries=True,
            registry_options=options,
        ) as net,
    ):
        hosts.set_loss(loss_percent, network=net)
        began = time.perf_counter()
        # newest versions first, the older after them (as bench registry
        # does): a full tag key refuses what comes last, so an older version
        # published first could keep the newer one out of it
        published = []
        for newest in (True, False):

            def share(worker: int, newest: bool = newest) -> dict[str, Any]:
                return {
                    "packages": sizes.packages,
                    "seed": seed,
                    "part": worker,
                    "parts": sizes.registry_workers,
                    "newest": newest,
                }

            published.append(_each(net, range(sizes.registry_workers), share, "publish_share"))
        publish_s = time.perf_counter() - began
        converged_at: float | None = None
        deadline = time.perf_counter() + sizes.converge_seconds
        sizes_now: list[int] = []
        while time.perf_counter() < deadline:
            sizes_now = [n for part in net.call(f"{MODULE}:catalog_sizes") for n in part]
            if min(sizes_now) >= distinct:
                converged_at = time.perf_counter()
                break
            time.sleep(0.25)
        members = [list(a) for a in net.addresses]
        search = net.call(
            f"{MODULE}:search_all",
            workers=[sizes.registry_workers - 1],
            addresses=members,
            packages=sizes.packages,
            seed=seed,
            searches=sizes.searches,
        )[0]
        hosts.set_loss(0.0, network=net)
    return {
        "loss_percent": loss_percent,
        "loss_by": hosts.loss_by,
        "nodes": sizes.registry_nodes,
        "packages": len(catalog),
        "distinct_ids": distinct,
        "publish_s": round(publish_s, 2),
        "published": published,
        "converged": converged_at is not None,
        "convergence_s": None
        if converged_at is None
        else round(converged_at - began - publish_s, 2),
        "catalog_sizes": {"min": min(sizes_now), "max": max(sizes_now)} if sizes_now else {},
        "complete_share": (min(sizes_now) / distinct) if sizes_now else 0.0,
        "anti_entropy_period_s": sizes.anti_entropy_period,
        "search": {
            **search,
            "correct": search["ok"] / search["count"] if search["count"] else 0.0,
        },
    }


# -- reporting -------------------------------------------------------------------


def _phase_line(phase: dict[str, Any]) -> str:
    cells = []
    for name in ("dhtquery", "stock"):
        p = phase[name]
        if p is None:
            continue
        lat = p["latency_ms"]
        cells.append(
            f"{name} {p['success'] * 100:6.2f}% p50 {lat.get('p50', 0):7.1f} "
            f"p99 {lat.get('p99', 0):8.1f} ms"
        )
    return "  |  ".join(cells)


def dht_table(phases: dict[str, Any]) -> str:
    headers = [
        "phase",
        "client",
        "lookups",
        "success %",
        "p50 ms",
        "p99 ms",
        "req/lookup",
        "own req, hops",
        "failures",
    ]
    rows = []
    for name, phase in phases.items():
        for client, label in (("dhtquery", "dhtquery get_all"), ("stock", "kademlia get")):
            p = phase[client]
            if p is None:
                continue
            lat = p["latency_ms"]
            mark = "" if client == "stock" or p["success"] >= TARGET_SUCCESS else " !"
            rows.append(
                [
                    name,
                    label,
                    str(p["count"]),
                    f"{p['success'] * 100:.2f}{mark}",
                    f"{lat.get('p50', float('nan')):.1f}",
                    f"{lat.get('p99', float('nan')):.1f}",
                    f"{p['requests_per_lookup']:.1f}",
                    f"{p['lookup_requests_per_lookup']:.1f}, {p['hops_per_lookup']:.1f}"
                    if "hops_per_lookup" in p
                    else "-",
                    ", ".join(f"{k} {v}" for k, v in sorted(p["failures"].items())) or "-",
                ]
            )
    return format_table(headers, rows, left_columns=2)


def registry_table(runs: Sequence[dict[str, Any]]) -> str:
    headers = [
        "loss %",
        "packages",
        "catalogs min/max",
        "complete %",
        "converged in s",
        "search correct %",
    ]
    rows = []
    for run in runs:
        sizes = run["catalog_sizes"]
        rows.append(
            [
                f"{run['loss_percent']:g}",
                str(run["distinct_ids"]),
                f"{sizes.get('min', 0)}/{sizes.get('max', 0)}",
                f"{run['complete_share'] * 100:.2f}",
                f"{run['convergence_s']:.1f}" if run["converged"] else "not converged",
                f"{run['search']['correct'] * 100:.2f} ({run['search']['count']})",
            ]
        )
    return format_table(headers, rows, left_columns=1)


def targets(dht: dict[str, Any] | None, registry: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    verdicts: list[dict[str, Any]] = []
    for name, phase in (dht or {}).get("phases", {}).items():
        ours = phase["dhtquery"]["success"]
        verdicts.append(
            {
                "target": f"get_all success >= {TARGET_SUCCESS:.1%} ({name})",
                "value": ours,
                "met": ours >= TARGET_SUCCESS,
            }
        )
        if phase["stock"] is None:
            continue
        stock = phase["stock"]["success"]
        verdicts.append(
            {
                "target": f"get_all success >= stock's ({name}: stock {stock:.2%})",
                "value": ours,
                "met": ours >= stock,
            }
        )
    for run in registry:
        loss = run["loss_percent"]
        verdicts.append(
            {
                "target": f"every catalog 100 % after convergence ({loss:g} % loss)",
                "value": run["complete_share"],
                "met": run["complete_share"] >= 1.0,
            }
        )
        verdicts.append(
            {
                "target": f"search correctness >= {TARGET_SEARCH:.1%} ({loss:g} % loss)",
                "value": run["search"]["correct"],
                "met": run["search"]["correct"] >= TARGET_SEARCH,
            }
        )
    return verdicts


def target_line(verdict: dict[str, Any]) -> str:
    met = {True: "met", False: "NOT met"}[verdict["met"]]
    return f"  {verdict['target']}: {verdict['value']:.3%}: {met}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="CI-sized: short phases, small catalog"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--seconds", type=float, help="seconds of lookups per phase")
    parser.add_argument("--rate", type=float, help="lookups/s per client and kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-namespaces", action="store_true", help="hosts on loopback")
    parser.add_argument("--no-registry", action="store_true", help="skip the registry part")
    parser.add_argument("--no-dht", action="store_true", help="skip the lookup phases")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.seconds is not None:
        overrides["seconds"] = args.seconds
    if args.rate is not None:
        overrides["rate"] = args.rate
    if overrides:
        sizes = Sizes(**{**vars(sizes), **overrides})
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)
    namespaces = False if args.no_namespaces else None
    why_not = namespaces_permitted()
    if why_not and namespaces is None:
        print(f"hosts: no network namespaces ({why_not}): loopback, loss injected in the transport")
    started = time.perf_counter()
    errors: list[str] = []
    dht: dict[str, Any] | None = None
    if not args.no_dht:
        print("lookups under churn and loss:", flush=True)
        try:
            dht = run_dht(sizes, namespaces, args.seed)
        except Exception as exc:
            errors.append(f"dht: {type(exc).__name__}: {exc}")
            print(f"  FAILED {errors[-1]}", flush=True)
    registry: list[dict[str, Any]] = []
    if not args.no_registry:
        print("registry:", flush=True)
        for loss in (0.0, REGISTRY_LOSS_PERCENT):
            try:
                registry.append(run_registry(sizes, loss, namespaces, args.seed))
                print(f"  {loss:g} % loss: converged {registry[-1]['convergence_s']} s", flush=True)
            except Exception as exc:
                errors.append(f"registry at {loss:g} % loss: {type(exc).__name__}: {exc}")
                print(f"  FAILED {errors[-1]}", flush=True)
    verdicts = targets(dht, registry)
    if dht is not None:
        print()
        print(dht_table(dht["phases"]))
        killed = dht["setup"]["killed"]
        what = (
            f"killed (SIGKILL of {killed['workers']} workers): {killed['dhtquery_nodes']} of "
            f"{killed['of_dhtquery_nodes']} DhtNodes and {killed['stock_nodes']} of "
            f"{killed['of_stock_nodes']} stock peers"
        )
        how = (
            f"lookups per phase over {sizes.client_workers} clients at {sizes.rate:g}/s each "
            f"for {sizes.seconds:g} s, latency from the scheduled start"
        )
        print(f"\n{dht['setup']['hosts']}.\n{what}; {how}.")
        print(
            "req/lookup: requests the client's transport sent per lookup (retransmissions and "
            "routing upkeep included); own req, hops: as get_all's lookups count them."
        )
    if registry:
        print()
        print(registry_table(registry))
        period = sizes.anti_entropy_period
        print(
            "\nconvergence: from the end of publishing (which took "
            + ", ".join(f"{run['publish_s']:.0f} s" for run in registry)
            + ") until every catalog holds every id, 0.0: complete when it ended; "
            f"anti-entropy period {'the default' if period is None else f'{period:g} s'}; "
            f"search: {sizes.searches} searches from a fresh client, timeout {SEARCH_TIMEOUT:g} s."
        )
    print("\ntargets:")
    print("\n".join(target_line(v) for v in verdicts) or "  none measured")
    report = {
        "benchmark": "churn",
        "machine": machine_info(),
        "sizes": vars(sizes),
        "settings": {
            "quorum": QUORUM,
            "lookup_timeout_s": LOOKUP_TIMEOUT,
            "loss_percent": LOSS_PERCENT,
            "registry_loss_percent": REGISTRY_LOSS_PERCENT,
            "kill_share": KILL_SHARE,
            "seed": args.seed,
        },
        "dht": dht,
        "registry": registry,
        "targets": verdicts,
        "errors": errors,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json(args.json, report)
    print(f"\nJSON: {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    # run as the module of its own name, as the workers import its hooks
    import importlib

    sys.exit(importlib.import_module(MODULE).main(sys.argv[1:]))

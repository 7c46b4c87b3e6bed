"""Benchmark of lookups at scale: networks of 10 to 1,000 nodes (5,000 on
request) over several simulated hosts with round trips of tens to hundreds
of milliseconds, dhtquery's ``DhtNode.get_all`` against stock kademlia's
``Server.get`` on the same network, in the same run.

    dhtquery bench scale [--quick] [--json FILE] [--plot PNG]
    python -m dhtquery.bench scale [--quick] [--sizes 10,100,1000,5000] [--hosts 8]
                                   [--lookups N] [--refresh] [--trace] [--no-rtt-by-ip]
                                   [--own-addresses] [--json FILE]

``--trace`` keeps every lookup's requests and answers, timed, with the true
round trip to each peer (``results[].traces`` in the JSON): where a lookup's
time went. ``--no-rtt-by-ip``: the get_all clients do not expect a peer
they never measured at its IP address's round trip; every simulated host is
one address, so this is the lookup as in a network of one node per address.
``--own-addresses`` makes that real: every node binds an address of its own
inside its host's namespace (HostNetwork's ``node_addresses``).

Setup, for each network size n:

hosts
    ``--hosts`` (8) simulated hosts, one LocalNetwork worker process each,
    the n nodes spread evenly over them (k=20, alpha=3, Rust core). The
    round trip between two hosts is drawn once per host pair, uniformly
    from 10 to 200 ms (seed 12, the same for every size); within a host it
    is 0. The delay is a userspace link (:func:`delay_link`): every
    datagram a node sends is held for half the round trip of its host pair
    (``loop.call_later``) before it goes to the socket, on 127.0.0.1.
join
    in parallel, not one node after another (1,000 nodes joining one by
    one through 200 ms round trips take about 20 minutes): the first node
    of every host joins off the network's first node, then every other node
    runs kademlia's bootstrap (ping, then a lookup of its own id) off three
    of those first nodes, at most 32 at once per host. The delay is on
    during the join, so every node's RTT estimates are the real ones.
keys
    stored by publishers on random nodes, after the join: 200 single keys
    (one record, and the same bytes as a plain kademlia value, ``Server.set``
    from the same node) and 100 multi keys (5 records, each ``put`` by a
    different random node as its own publisher).
clients
    on every host, after the keys are stored: one ``DhtNode`` doing
    ``get_all(key, quorum=3, timeout=10)`` and one stock
    ``kademlia.network.Server`` (k=20, alpha=3, a storage that keeps
    nothing) doing ``Server.get(key)``, each joined off three random nodes.
    Stock clients on our network, rather than a stock-only twin network:
    the servers, their routing tables, the stored keys and the delays are
    then the very same for both, so the difference measured is the client's
    lookup alone; a twin network would double the nodes the 2 cores carry,
    and its tables (built by other join code) would differ.
lookups
    keys drawn at random (seed 1); both clients of every host run at once,
    each with ``--concurrency`` (2) lookups in flight, stock on the single
    keys (it reads one value), get_all on the single and the multi keys.

Per lookup: latency (from the call to the answer), success (exactly the
stored records or value, not timed out), requests sent, and hops, the
request rounds on the critical path. Stock's hops are its crawl's rounds
(lock-step: each round waits for its slowest peer); get_all's are the hop
of the answer that ended the lookup, a peer's hop being 1 for the client's
own contacts and 1 + the hop of the answer that first named it otherwise.
Both are counted in the bench, by a subclass of the client's protocol
(get_all) and of kademlia's ``ValueSpiderCrawl`` (stock), neither changing
what the lookup does. Per node: requests served during the lookups (load
balance: max over mean) and routing-table size; per worker, its memory
(RSS), from which memory per node is the slope between two sizes. The
event loops' lag (a 10 ms sleep's overshoot) is recorded in every worker
during the lookups: latency includes it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from kademlia.crawling import NodeSpiderCrawl, ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.utils import digest

from ..dht import DhtNode, DhtProtocol, Publisher, latest
from ..query import QueryConfig, QueryManager, new_core
from ..testing import HostNetwork, LocalNetwork, Worker
from .common import bounded, format_table, machine_info, write_json
from .dht import NullStorage
from .load import percentiles_ms

__all__ = [
    "FULL",
    "QUICK",
    "ScaleNode",
    "ScaleProtocol",
    "Sizes",
    "TracingServer",
    "fit_log2",
    "main",
    "run_size",
]

#: This module by its name (the workers import its hooks by it).
MODULE: Final = "dhtquery.bench.scale"
DEFAULT_JSON: Final = Path("bench-results") / "scale.json"
HOST: Final = "127.0.0.1"
KSIZE: Final = 20
ALPHA: Final = 3
QUORUM: Final = 3
LOOKUP_TIMEOUT: Final = 10.0
#: A stock lookup has no deadline of its own (each request waits rpcudp's
#: 5 s): it is given up after this long.
STOCK_LIMIT: Final = 30.0
PUBLISHERS: Final = 5
TOPOLOGY_SEED: Final = 12
KEY_SEED: Final = 1
SEEDS_PER_JOIN: Final = 3
JOIN_CONCURRENCY: Final = 32
#: The nodes' transport counters summed in the report (whole run).
COUNTERS: Final = (
    "served",
    "timeouts",
    "retransmitted",
    "liveness_probes",
    "peers_forgotten",
    "welcome_rate_limited",
    "queue_full_background",
    "client_requests",
)
#: A refresh crawl starts from this many of the node's contacts closest to
#: its target (kademlia's own refresh starts from alpha of them).
REFRESH_START: Final = KSIZE
PUBLISH_CONCURRENCY: Final = 16
LAG_TICK: Final = 0.01

GET_ALL: Final = "dhtquery get_all"
STOCK: Final = "kademlia get"

TARGET_SUCCESS: Final = 0.999
TARGET_P50_RATIO: Final = 0.6
TARGET_P99_RATIO: Final = 0.5
TARGET_LOAD_RATIO: Final = 5.0
TARGET_WALL_S: Final = {"full": 600.0, "quick": 120.0}

log = logging.getLogger("dhtquery.bench.scale")


@dataclass(frozen=True)
class Sizes:
    networks: tuple[int, ...] = (10, 100, 1000)
    hosts: int = 8
    rtt_ms: tuple[float, float] = (10.0, 200.0)
    single_keys: int = 200
    multi_keys: int = 100
    #: lookups per client kind and run (single/multi), per network size
    lookups: int = 1000
    multi_lookups: int = 500
    #: lookups in flight per client per host
    concurrency: int = 2
    #: also refresh every bucket of every node after the join (see
    #: refresh_buckets): before DhtNode's join refreshed its far buckets
    #: itself (DhtNode.refresh_buckets), the bench had to
    refresh: bool = False
    #: record every lookup's requests and answers, timed (diagnostics)
    trace: bool = False
    #: the get_all clients expect a peer never measured at its IP address's
    #: round trip (DhtProtocol.srtt); off: as with one node per address
    rtt_by_ip: bool = True
    #: every node binds an address of its own in its host's namespace
    #: (HostNetwork's node_addresses), as on a real network
    own_addresses: bool = False


FULL: Final = Sizes()
QUICK: Final = Sizes(
    networks=(10, 100, 200), single_keys=60, multi_keys=30, lookups=160, multi_lookups=80
)


# -- the network's nodes (hooks run in the workers) --------------------------

#: The clients' addresses (every host's), known in every worker, and their
#: kind ("get_all" or "stock").
_CLIENTS: dict[tuple[str, int], str] = {}
#: This worker's clients, between hook calls.
_STATE: dict[str, Any] = {}


class ScaleProtocol(DhtProtocol):
    """The network's nodes never take a client into their routing tables
    (the clients ask, they serve nothing: DESIGN's client mode). Without
    this, every lookup would also ask the other hosts' clients, holders of
    nothing, and each stock client would cost a get_all an RTO (it does not
    answer ``find_values``)."""

    def welcome_if_new(self, node: Node) -> None:
        if (node.ip, node.port) in _CLIENTS:
            return
        super().welcome_if_new(node)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # requests served, counted apart by the kind of client that sent
        # them: whose lookups make the load uneven. (Around the whole
        # datagram, not _serve: the core's engine answers a kept
        # find_values itself, and a class replacing _serve would lose that.)
        kind = _CLIENTS.get(addr[:2])  # (IPv6: the protocol reads (host, port))
        if kind is None:
            super().datagram_received(data, addr)
            return
        served = self.stats["served"]
        super().datagram_received(data, addr)
        if self.stats["served"] != served:
            self.stats[f"served_{kind}"] += 1


class ScaleNode(DhtNode):
    """The network's nodes: DhtNodes on :class:`ScaleProtocol`."""

    protocol_class = ScaleProtocol


async def join_first(network: LocalNetwork, first: list[Any]) -> float:
    """Hook: this host's first node joins off the network's first node."""
    started = time.perf_counter()
    node = network.nodes[0]
    if node.address != tuple(first):
        await node.bootstrap([tuple(first)])
    return time.perf_counter() - started


async def join_rest(network: LocalNetwork, seeds: list[list[Any]], seed: int) -> dict[str, Any]:
    """Hook: every other node of this host runs kademlia's bootstrap off
    SEEDS_PER_JOIN random seeds, JOIN_CONCURRENCY at once."""
    rng = random.Random(seed)
    addresses = [(host, port) for host, port in seeds]
    started = time.perf_counter()

    def job(node: DhtNode) -> Callable[[], Any]:
        picked = rng.sample(addresses, min(SEEDS_PER_JOIN, len(addresses)))
        return lambda: node.bootstrap([a for a in picked if a != node.address])

    await bounded([job(node) for node in network.nodes[1:]], JOIN_CONCURRENCY)
    return {"seconds": time.perf_counter() - started, "nodes": len(network.nodes) - 1}


async def refresh_buckets(network: LocalNetwork, seed: int) -> dict[str, Any]:
    """Hook: every node refreshes each of its buckets (a lookup of a random
    id in the bucket's range, kademlia's own refresh crawl), as the
    Kademlia paper's join prescribes and kademlia 2.2.3's ``bootstrap``
    does not (it looks up the node's own id only, and refreshes a bucket
    only after an hour without lookups in it). Without it, a region of the
    id space can know no node of another: measured at 1,000 nodes, 8 of 300
    keys were stored by their publishers 123 ranks away from the key (the
    whole subtree of the key unknown to the publisher's region), and
    lookups from there missed them."""
    rng = random.Random(seed)
    started = time.perf_counter()
    jobs: list[Callable[[], Awaitable[Any]]] = []

    def crawl(node: DhtNode, target: Node) -> Callable[[], Awaitable[Any]]:
        async def run() -> Any:
            # (the table as it is when the crawl starts: others' refreshes
            # fill it meanwhile)
            protocol: Any = node.protocol
            nearest = protocol.router.find_neighbors(target, REFRESH_START)
            return await NodeSpiderCrawl(protocol, target, nearest, node.ksize, node.alpha).find()

        return run

    for node in network.nodes:
        protocol: Any = node.protocol
        for bucket in list(protocol.router.buckets):
            low, high = bucket.range
            jobs.append(crawl(node, Node(rng.randrange(low, high).to_bytes(20, "big"))))
    rng.shuffle(jobs)
    await bounded(jobs, JOIN_CONCURRENCY)
    return {"seconds": time.perf_counter() - started, "lookups": len(jobs)}


async def publish(network: LocalNetwork, jobs: list[list[Any]]) -> dict[str, int]:
    """Hook: ``jobs`` are [node index, kind, key, publisher, data hex]:
    kind "record" puts a record, "value" sets a plain kademlia value."""

    def job(index: int, kind: str, key: str, publisher: str, data: str) -> Callable[[], Any]:
        node = network.nodes[index]
        if kind == "record":
            return lambda: node.put(key, bytes.fromhex(data), publisher=_publisher(publisher))
        return lambda: node.set(key, bytes.fromhex(data))

    results = await bounded([job(*spec) for spec in jobs], PUBLISH_CONCURRENCY)
    held = [int(r) for r, spec in zip(results, jobs, strict=True) if spec[1] == "record"]
    return {
        "records": len(held),
        "values": len(jobs) - len(held),
        "holders_min": min(held, default=0),
        "holders_sum": sum(held),
        "values_failed": sum(
            1 for r, s in zip(results, jobs, strict=True) if s[1] == "value" and not r
        ),
    }


# -- stock kademlia, counted ---------------------------------------------


class TracingCrawl(ValueSpiderCrawl):  # type: ignore[misc]
    """kademlia's ValueSpiderCrawl, counting its rounds and requests (the
    RPCs it makes are the same ones, made the same way)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rounds = 0
        self.requests = 0
        self.failures = 0
        #: (--trace) per round: [start, [addresses asked], end]; the
        #: caching store as a round of one
        self.log: list[list[Any]] = []
        self._time = asyncio.get_running_loop().time

    async def _nodes_found(self, responses: Any) -> Any:
        self.failures += sum(1 for response in responses.values() if not response[0])
        if self.log:
            self.log[-1].append(self._time())
        return await super()._nodes_found(responses)

    async def _find(self, rpcmethod: Any) -> Any:
        self.rounds += 1
        asked: list[Any] = []
        self.log.append([self._time(), asked])

        def counted(peer: Any, node: Any) -> Any:
            self.requests += 1
            asked.append((peer.ip, peer.port))
            return rpcmethod(peer, node)

        return await super()._find(counted)

    async def _handle_found_values(self, values: Any) -> Any:
        # stock stores the value at the closest peer that lacked it, and
        # waits for that store: one request more on the critical path
        if len(self.nearest_without_value):
            self.requests += 1
            peer = self.nearest_without_value.popleft()
            self.nearest_without_value.push(peer)
            self.log.append([self._time(), [(peer.ip, peer.port)]])
            try:
                return await super()._handle_found_values(values)
            finally:
                self.log[-1].append(self._time())
        return await super()._handle_found_values(values)


class TracingServer(Server):  # type: ignore[misc]
    """A stock kademlia Server client; ``traced_get`` is ``Server.get``
    with a counting crawl."""

    async def traced_get(self, key: str) -> tuple[Any, int, int, int, list[list[Any]]]:
        """Value, rounds, requests, failures, and the crawl's rounds as
        ``TracingCrawl.log`` has them."""
        dkey = digest(key)
        # (Server.get's steps; the client's storage keeps nothing)
        if self.storage.get(dkey) is not None:
            return self.storage.get(dkey), 0, 0, 0, []
        node = Node(dkey)
        nearest = self.protocol.router.find_neighbors(node)
        if not nearest:
            return None, 0, 0, 0, []
        spider = TracingCrawl(self.protocol, node, nearest, self.ksize, self.alpha)
        value = await spider.find()
        return value, spider.rounds, spider.requests, spider.failures, spider.log


# -- clients (hooks) ----------------------------------------------------


async def start_clients(network: LocalNetwork, rtt_by_ip: bool = True) -> list[list[Any]]:
    """Hook: a get_all client and a stock client on this host, listening
    through the host's link (not joined yet); their addresses. With
    ``rtt_by_ip`` off, the get_all client expects a peer it never measured
    at no particular round trip, not at its IP address's (every host here
    is one address: off, it is as in a network of one node per address)."""
    ours = DhtNode(
        ksize=KSIZE,
        alpha=ALPHA,
        queries=QueryManager(QueryConfig(default_timeout=LOOKUP_TIMEOUT), core=new_core("rust")),
        client=True,
    )
    stock = TracingServer(ksize=KSIZE, alpha=ALPHA, storage=NullStorage())
    for client in (ours, stock):
        await client.listen(0, network.host)
        if network.link is not None:
            network.link.attach(client)
    if not rtt_by_ip:
        protocol: Any = ours.protocol
        protocol.rtt_by_ip = False
    _STATE["clients"] = (ours, stock)
    return [list(ours.address), list(stock.transport.get_extra_info("sockname")[:2])]


async def learn_clients(network: LocalNetwork, clients: list[list[Any]]) -> int:
    """Hook: every host's clients ([ip, port, host, kind]): the nodes keep
    them out of their tables, and the link (on loopback, where hosts share
    an address) learns their hosts."""
    for ip, port, host, kind in clients:
        _CLIENTS[(ip, port)] = kind
        if network.link is not None:
            network.link.host_by_address[(ip, port)] = host
    return len(_CLIENTS)


async def join_clients(network: LocalNetwork, seeds: list[list[Any]], seed: int) -> dict[str, int]:
    """Hook: the clients join off random nodes (the same ones for both)."""
    ours, stock = _STATE["clients"]
    picked = random.Random(seed).sample([(h, p) for h, p in seeds], SEEDS_PER_JOIN)
    await asyncio.gather(ours.bootstrap(picked), stock.bootstrap(picked))
    return {"ours": ours.peer_count, "stock": _table_size(stock)}


def _table_size(server: Server) -> int:
    return sum(len(bucket) for bucket in server.protocol.router.buckets)


def _install_trace(network: LocalNetwork, traces: dict[Any, list[Any]]) -> None:
    """Diagnostics (``--trace``): every get_all lookup's requests and
    answers, timed, each with the true round trip to the peer (the link's),
    kept in ``traces`` by query id. Wraps StreamingLookup's methods in this
    worker; what the lookup does is unchanged (its asks all go through
    ``_act``, the Python way, not sent from the core: its LookupSetup is
    made without an Asker)."""
    from ..dht.lookup import LookupSetup, StreamingLookup
    from ..query import LookupStep

    link = network.link
    loop = asyncio.get_running_loop()

    def rtt_of(address: Any) -> float:
        return 2 * link.delay_to(address) if link is not None else 0.0

    act = StreamingLookup._act

    class TracedAnswers:
        """A lookup's requests' callback (its LookupAnswers), each answer
        and overdue request traced first."""

        __slots__ = ("_answers", "_lookup")

        def __init__(self, answers: Any, lookup: Any) -> None:
            self._answers = answers
            self._lookup = lookup

        def __call__(self, ask: Any, address: Any, name: str, ok: bool, value: Any) -> None:
            lookup = self._lookup
            holder = ok and type(value) is dict and bool(value.get("records") or value.get("value"))
            traces.setdefault(lookup._handle.id, []).append(
                ["ans", loop.time(), rtt_of(address), ok, holder, lookup._ended()]
            )
            self._answers(ask, address, name, ok, value)

        def overdue(self, ask: Any) -> None:
            traces.setdefault(self._lookup._handle.id, []).append(
                ["late", loop.time(), rtt_of(ask[1])]
            )
            self._answers.overdue(ask)

    def traced_act(self: Any, answers: Any, step: Any, depth: int, asks: list[Any]) -> None:
        if step is LookupStep.ASK:
            protocol = self._protocol
            events = traces.setdefault(self._handle.id, [])
            for node_id, address in asks:
                peers = protocol.peers
                measured = (
                    peers.estimator_state(address)[0] if peers.has_estimator(address) else None
                )
                srtt = -1.0 if measured is None else measured
                # (the lookup's core: the depth it learnt the peer at, its
                # rank among the candidates, closest first)
                learnt, rank = self._core.position(node_id)
                events.append(
                    [
                        "ask",
                        loop.time(),
                        rtt_of(address),
                        srtt,
                        learnt,
                        rank,
                        f"{address[0]}:{address[1]}",
                    ]
                )
            # (the requests' callback traced: it calls the lookup back with
            # the untraced one, wrapped again here when it asks)
            answers = TracedAnswers(answers, self)
        act(self, answers, step, depth, asks)

    StreamingLookup._act = traced_act  # type: ignore[method-assign]
    setup = LookupSetup.__init__

    def untraced_asker(self: LookupSetup, protocol: Any, manager: Any) -> None:
        setup(self, protocol, manager)
        self.asker = None

    LookupSetup.__init__ = untraced_asker  # type: ignore[method-assign]


async def run_lookups(
    network: LocalNetwork, plan: list[list[Any]], concurrency: int, trace: bool = False
) -> dict[str, Any]:
    """Hook: run ``plan`` ([client, run, key, expected]; expected: sorted
    [publisher, data hex] pairs for get_all, a data hex for stock) with
    ``concurrency`` lookups in flight per client, both clients at once.
    Returns per-lookup [client, run, ok/failure, latency s, hops, requests],
    the loop's lag, and the clients' routing-table sizes."""
    ours, stock = _STATE["clients"]
    loop = asyncio.get_running_loop()
    traces: dict[Any, list[Any]] = {}
    kept: list[Any] = []
    if trace:
        _install_trace(network, traces)

    async def get_all(run: str, key: str, expected: list[list[str]]) -> list[Any]:
        started = loop.time()
        handle = ours.get_all(key, quorum=QUORUM, timeout=LOOKUP_TIMEOUT)
        outcome = await handle
        latency = loop.time() - started
        stats = handle.lookup_stats
        if trace:
            events = traces.pop(handle.id, [])
            kept.append([run, latency, [[e[0], e[1] - started, *e[2:]] for e in events]])
        got = sorted([record.publisher, record.data.hex()] for record in latest(outcome.items))
        if outcome.timed_out:
            verdict = "timeout"
        elif got == expected:
            verdict = "ok"
        else:
            verdict = f"{'missing' if not got else 'partial'} ({outcome.reason})"
        if stats is None:  # (it has ended: never)
            return [GET_ALL, run, verdict, latency, 0, 0, 0, key]
        return [
            GET_ALL, run, verdict, latency, stats.hops, stats.requests, stats.peers_failed, key
        ]  # fmt: skip

    async def stock_get(run: str, key: str, expected: str) -> list[Any]:
        started = loop.time()
        try:
            value, rounds, requests, failed, log = await asyncio.wait_for(
                stock.traced_get(key), STOCK_LIMIT
            )
        except TimeoutError:
            return [STOCK, run, "timeout", loop.time() - started, 0, 0, 0, key]
        latency = loop.time() - started
        if trace and network.link is not None:
            rtt = network.link.delay_to
            kept.append(
                [
                    "stock",
                    latency,
                    [
                        [
                            r[0] - started,
                            [2 * rtt(a) for a in r[1]],
                            *[t - started for t in r[2:]],
                            [f"{a[0]}:{a[1]}" for a in r[1]],
                        ]
                        for r in log
                    ],
                ]
            )
        if value is None:
            verdict = "missing"
        else:
            verdict = "ok" if isinstance(value, bytes) and value.hex() == expected else "wrong"
        return [STOCK, run, verdict, latency, rounds, requests, failed, key]

    lags: list[float] = []
    stop = asyncio.Event()

    async def watch_lag() -> None:
        # bounded by the plan: it stops when the lookups do
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(LAG_TICK)
            lags.append(loop.time() - before - LAG_TICK)

    def job(client: str, run: str, key: str, expected: Any) -> Callable[[], Any]:
        if client == GET_ALL:
            return lambda: get_all(run, key, expected)
        return lambda: stock_get(run, key, expected)

    ours_jobs = [job(*spec) for spec in plan if spec[0] == GET_ALL]
    stock_jobs = [job(*spec) for spec in plan if spec[0] == STOCK]
    watcher = asyncio.ensure_future(watch_lag())
    started = time.perf_counter()
    try:
        done = await asyncio.gather(
            bounded(ours_jobs, concurrency), bounded(stock_jobs, concurrency)
        )
    finally:
        stop.set()
        await watcher
    lag = percentiles_ms(lags)
    return {
        "lookups": [*done[0], *done[1]],
        "seconds": time.perf_counter() - started,
        "lag_ms": {k: lag[k] for k in ("p50", "p99", "max") if k in lag},
        "client_table": {"ours": ours.peer_count, "stock": _table_size(stock)},
        # distinct peers the get_all client asked (each with its own RTO)
        "client_peers": len(ours.reputation),
        "traces": kept,
    }


async def node_stats(network: LocalNetwork) -> dict[str, Any]:
    """Hook: every node's requests served so far and routing-table size,
    and this worker's memory."""
    return {
        "served": [node.stats.get("served", 0) for node in network.nodes],
        "served_by": {
            kind: [node.stats.get(f"served_{kind}", 0) for node in network.nodes]
            for kind in ("get_all", "stock")
        },
        "addresses": [f"{node.address[0]}:{node.address[1]}" for node in network.nodes],
        "ids": [node.node.id.hex() for node in network.nodes],
        "table": [node.peer_count for node in network.nodes],
        "timeouts": sum(node.stats.get("timeouts", 0) for node in network.nodes),
        "counters": {
            name: sum(node.stats.get(name, 0) for node in network.nodes) for name in COUNTERS
        },
        "rss_bytes": _rss_bytes(os.getpid()),
    }


async def holders_of(network: LocalNetwork, keys: list[str]) -> dict[str, Any]:
    """Hook: every node's id, and for each key which nodes hold records
    (how many) or a plain value under it."""
    found: dict[str, list[list[Any]]] = {}
    for key in keys:
        dkey = digest(key)
        for node in network.nodes:
            records = node.records.get(dkey, node.clock.now())
            value = node.storage.get(dkey) is not None
            if records or value:
                found.setdefault(key, []).append([node.node.id.hex(), len(records), value])
    return {"ids": [node.node.id.hex() for node in network.nodes], "holders": found}


def explain(failed: dict[str, list[str]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each key some lookup failed on: its holders' ranks among all
    nodes by distance to the key (0: the closest), so a record stored away
    from the k closest shows."""
    ids = [node_id for worker in found for node_id in worker["ids"]]
    explained = []
    for key, verdicts in failed.items():
        target = int.from_bytes(digest(key), "big")
        order = sorted(ids, key=lambda node_id: int(node_id, 16) ^ target)
        rank = {node_id: index for index, node_id in enumerate(order)}
        holders = [h for worker in found for h in worker["holders"].get(key, ())]
        record_ranks = sorted(rank[h[0]] for h in holders if h[1])
        value_ranks = sorted(rank[h[0]] for h in holders if h[2])
        explained.append(
            {
                "key": key,
                "failures": verdicts,
                "record_holders": len(record_ranks),
                "record_holders_in_k_closest": sum(1 for r in record_ranks if r < KSIZE),
                "record_ranks": record_ranks[:30],
                "value_holders_in_k_closest": sum(1 for r in value_ranks if r < KSIZE),
                "value_ranks": value_ranks[:30],
            }
        )
    return explained


async def stop_clients(network: LocalNetwork) -> None:
    """Hook: stop this host's clients."""
    for client in _STATE.pop("clients", ()):
        client.stop()


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the controller (this process, no event loop: threads drive workers) -----


def _each(
    workers: Sequence[Worker], hook: str, params: Sequence[dict[str, Any]], timeout: float
) -> list[Any]:
    """``hook`` in every worker at once (worker i gets ``params[i]``);
    their results in worker order. A failure in any is raised."""
    results: list[Any] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = workers[index].request(
                "call", timeout, hook=f"{MODULE}:{hook}", params=params[index]
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def build_network(nodes: int, sizes: Sizes) -> tuple[HostNetwork, LocalNetwork]:
    """The network of ``nodes`` nodes over ``sizes.hosts`` simulated hosts
    (one worker process each), started, not joined; the one place that says
    how hosts are made. The caller closes both (network first)."""
    hosts = HostNetwork(
        sizes.hosts,
        rtt_ms=sizes.rtt_ms,
        seed=TOPOLOGY_SEED,
        node_addresses=-(-nodes // sizes.hosts) if sizes.own_addresses else 0,
    )
    hosts.start()
    try:
        network = LocalNetwork(
            nodes,
            processes=sizes.hosts,
            hosts=hosts,
            core="rust",
            join=None,
            ksize=KSIZE,
            alpha=ALPHA,
            config=QueryConfig(default_timeout=LOOKUP_TIMEOUT),
            node_class=ScaleNode,
            ready_timeout=300.0,
        )
        network.__enter__()
    except BaseException:
        hosts.close()
        raise
    return hosts, network


def _publisher(name: str) -> Publisher:
    """The key of the bench's publisher ``name``: the same in every process."""
    return Publisher(hashlib.sha256(f"dhtquery-bench-scale-{name}".encode()).digest())


def _value(kind: str, index: int, publisher: int = 0) -> bytes:
    return f"{kind}-{index}-{publisher}".encode().ljust(64, b".")


def _publish_plan(
    sizes: Sizes, where: list[tuple[int, int]], rng: random.Random
) -> tuple[list[list[list[Any]]], dict[str, Any]]:
    """Jobs per worker, and what each key holds."""
    jobs: list[list[list[Any]]] = [[] for _ in range(sizes.hosts)]
    expected: dict[str, Any] = {}
    for i in range(sizes.single_keys):
        key = f"scale-single-{i}"
        worker, index = rng.choice(where)
        data = _value("single", i)
        publisher = f"pub-s{i}"
        jobs[worker].append([index, "record", key, publisher, data.hex()])
        jobs[worker].append([index, "value", key, publisher, data.hex()])
        expected[key] = {
            "records": [[_publisher(publisher).key_id, data.hex()]],
            "value": data.hex(),
        }
    for i in range(sizes.multi_keys):
        key = f"scale-multi-{i}"
        records = []
        for p, (worker, index) in enumerate(rng.sample(where, min(PUBLISHERS, len(where)))):
            data = _value("multi", i, p)
            publisher = f"pub-m{i}-{p}"
            jobs[worker].append([index, "record", key, publisher, data.hex()])
            records.append([_publisher(publisher).key_id, data.hex()])
        expected[key] = {"records": sorted(records)}
    return jobs, expected


def _lookup_plans(
    sizes: Sizes, expected: dict[str, Any], rng: random.Random
) -> list[list[list[Any]]]:
    """Lookups per host: each host runs an even share, keys at random."""
    single = [k for k in expected if k.startswith("scale-single-")]
    multi = [k for k in expected if k.startswith("scale-multi-")]
    plans: list[list[list[Any]]] = [[] for _ in range(sizes.hosts)]
    for i in range(sizes.lookups):
        key = rng.choice(single)
        plans[i % sizes.hosts].append([GET_ALL, "single", key, expected[key]["records"]])
        key = rng.choice(single)
        plans[i % sizes.hosts].append([STOCK, "single", key, expected[key]["value"]])
    for i in range(sizes.multi_lookups):
        key = rng.choice(multi)
        plans[i % sizes.hosts].append([GET_ALL, "multi", key, expected[key]["records"]])
    return plans


def run_size(n: int, sizes: Sizes, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the network of ``n`` nodes, store the keys, run the lookups;
    everything measured, as a JSON-able dict."""
    hosts = min(sizes.hosts, n)
    sizes = replace(sizes, hosts=hosts)
    stages: dict[str, float] = {}
    began = time.perf_counter()
    host_network, network = build_network(n, sizes)
    rtts = [[ms / 1e3 for ms in row] for row in host_network.rtt_ms]
    how = host_network.describe()
    try:
        workers = network.workers
        stages["start_s"] = time.perf_counter() - began
        mark = time.perf_counter()
        first = list(workers[0].addresses[0])
        _each(workers, "join_first", [{"first": first}] * hosts, 300.0)
        seeds = [list(w.addresses[0]) for w in workers]
        joined = _each(
            workers,
            "join_rest",
            [{"seeds": seeds, "seed": 100 + h} for h in range(hosts)],
            900.0,
        )
        stages["join_s"] = time.perf_counter() - mark
        progress(f"  n={n}: {how}; started in {stages['start_s']:.1f} s, "
                 f"joined in {stages['join_s']:.1f} s")  # fmt: skip
        if sizes.refresh:
            mark = time.perf_counter()
            refreshed = _each(
                workers, "refresh_buckets", [{"seed": 300 + h} for h in range(hosts)], 900.0
            )
            stages["refresh_s"] = time.perf_counter() - mark
            progress(f"  n={n}: buckets refreshed in {stages['refresh_s']:.1f} s "
                     f"({sum(r['lookups'] for r in refreshed)} lookups)")  # fmt: skip
        mark = time.perf_counter()
        rng = random.Random(KEY_SEED)
        where = [(h, i) for h, w in enumerate(workers) for i in range(len(w.addresses))]
        jobs, expected = _publish_plan(sizes, where, rng)
        published = _each(workers, "publish", [{"jobs": j} for j in jobs], 900.0)
        stages["publish_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        started = _each(workers, "start_clients", [{"rtt_by_ip": sizes.rtt_by_ip}] * hosts, 60.0)
        # (start_clients gives [get_all client, stock client] per host)
        clients = [
            [ip, port, h, kind]
            for h, pair in enumerate(started)
            for (ip, port), kind in zip(pair, ("get_all", "stock"), strict=True)
        ]
        _each(workers, "learn_clients", [{"clients": clients}] * hosts, 60.0)
        all_nodes = [list(a) for w in workers for a in w.addresses]
        _each(
            workers,
            "join_clients",
            [{"seeds": all_nodes, "seed": 200 + h} for h in range(hosts)],
            300.0,
        )
        stages["clients_s"] = time.perf_counter() - mark
        before = _each(workers, "node_stats", [{}] * hosts, 60.0)
        mark = time.perf_counter()
        plans = _lookup_plans(sizes, expected, random.Random(KEY_SEED + n))
        ran = _each(
            workers,
            "run_lookups",
            [
                {"plan": plans[h], "concurrency": sizes.concurrency, "trace": sizes.trace}
                for h in range(hosts)
            ],
            1800.0,
        )
        stages["lookups_s"] = time.perf_counter() - mark
        after = _each(workers, "node_stats", [{}] * hosts, 60.0)
        failed: dict[str, list[str]] = {}
        for row in (row for result in ran for row in result["lookups"]):
            if row[2] != "ok":
                failed.setdefault(row[7], []).append(f"{row[0]}: {row[2]}")
        explained = []
        if failed:
            keys = sorted(failed)[:40]
            found = _each(workers, "holders_of", [{"keys": keys}] * hosts, 120.0)
            explained = explain({k: failed[k] for k in keys}, found)
        _each(workers, "stop_clients", [{}] * hosts, 60.0)
    finally:
        try:
            network.close_workers()
        finally:
            host_network.close()
    stages["total_s"] = time.perf_counter() - began
    result = summarize(n, hosts, rtts, joined, published, before, after, ran, stages)
    result["hosts_described"] = how
    result["failures_explained"] = explained
    progress(f"  n={n}: {line_of(result)}")
    return result


# -- summaries ------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "max": max(values),
        "min": min(values),
    }


def summarize(
    n: int,
    hosts: int,
    rtts: list[list[float]],
    joined: list[Any],
    published: list[Any],
    before: list[Any],
    after: list[Any],
    ran: list[Any],
    stages: dict[str, float],
) -> dict[str, Any]:
    lookups = [row for result in ran for row in result["lookups"]]
    runs: dict[str, Any] = {}
    for client, run in ((GET_ALL, "single"), (GET_ALL, "multi"), (STOCK, "single")):
        rows = [r for r in lookups if r[0] == client and r[1] == run]
        if not rows:
            continue
        failures: dict[str, int] = {}
        for r in rows:
            if r[2] != "ok":
                failures[r[2]] = failures.get(r[2], 0) + 1
        latency = percentiles_ms([r[3] for r in rows])
        runs[f"{client} [{run}]"] = {
            "client": client,
            "run": run,
            "lookups": len(rows),
            "success": sum(1 for r in rows if r[2] == "ok") / len(rows),
            "failures": failures,
            "latency_ms": latency,
            "hops": _stats([r[4] for r in rows]),
            "hops_histogram": _histogram([r[4] for r in rows]),
            "requests": _stats([r[5] for r in rows]),
        }
    served_at = [
        (a - b, host, index, w_after["table"][index])
        for host, (w_before, w_after) in enumerate(zip(before, after, strict=True))
        for index, (a, b) in enumerate(zip(w_after["served"], w_before["served"], strict=True))
    ]
    served = [entry[0] for entry in served_at]
    tables = [size for w in after for size in w["table"]]
    mean_served = statistics.fmean(served) if served else 0.0
    rss = sum(w["rss_bytes"] for w in after)
    return {
        "nodes": n,
        "hosts": hosts,
        "rtt_ms": [[round(x * 1e3, 1) for x in row] for row in rtts],
        "runs": runs,
        "load": {
            "served_mean": mean_served,
            "served_max": max(served, default=0),
            "max_over_mean": max(served, default=0) / mean_served if mean_served else 0.0,
            "p99": _quantile(served, 0.99),
            # the requests of each kind of client alone (ScaleProtocol.datagram_received)
            "by_client": {
                kind: _load_of(
                    [
                        a - b
                        for w_before, w_after in zip(before, after, strict=True)
                        for a, b in zip(
                            w_after["served_by"][kind], w_before["served_by"][kind], strict=True
                        )
                    ]
                )
                for kind in ("get_all", "stock")
            },
            # [served, host, index on the host (0: the host's seed), table size]
            "busiest": sorted(served_at, reverse=True)[:5],
            "busiest_addresses": [
                after[host]["addresses"][index]
                for _, host, index, _ in sorted(served_at, reverse=True)[:20]
            ],
            "served": served,
            # per node, in the order of "served": its id and the requests of
            # each kind of client (which lookups make a node the busiest)
            "ids": [node_id for w in after for node_id in w["ids"]],
            "addresses": [address for w in after for address in w["addresses"]],
            "served_by_node": {
                kind: [
                    a - b
                    for w_before, w_after in zip(before, after, strict=True)
                    for a, b in zip(
                        w_after["served_by"][kind], w_before["served_by"][kind], strict=True
                    )
                ]
                for kind in ("get_all", "stock")
            },
            # lookups per key and client (the keys' popularity)
            "lookups_per_key": {
                client: _counts(
                    [row[7] for result in ran for row in result["lookups"] if row[0] == client]
                )
                for client in (GET_ALL, STOCK)
            },
            "timeouts": sum(w["timeouts"] for w in after) - sum(w["timeouts"] for w in before),
        },
        "routing_table": _stats(tables),
        "node_counters": {
            name: sum(w["counters"].get(name, 0) for w in after) for name in COUNTERS
        },
        "client_table": [r["client_table"] for r in ran],
        "client_peers": [r["client_peers"] for r in ran],
        # (--trace) [run, latency s, events], see _install_trace
        "traces": [t for r in ran for t in r.get("traces", ())],
        "loop_lag_ms": [r["lag_ms"] for r in ran],
        "memory": {"rss_bytes": rss, "per_node_bytes": rss / n},
        "join": joined,
        "published": published,
        "stages": stages,
    }


def _counts(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _load_of(served: Sequence[int]) -> dict[str, float]:
    mean = statistics.fmean(served) if served else 0.0
    top = max(served, default=0)
    return {"mean": mean, "max": top, "max_over_mean": top / mean if mean else 0.0}


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


def _histogram(values: Sequence[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in sorted(values):
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def fit_log2(points: Sequence[tuple[int, float]]) -> dict[str, float] | None:
    """Least squares ``y = a + b * log2(n)`` through (n, y) points, with
    R²; None with fewer than two distinct n."""
    xs = [math.log2(n) for n, _ in points]
    ys = [y for _, y in points]
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"a": a, "b": b, "r2": 1 - residual / total if total else 1.0}


def fits(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in (f"{GET_ALL} [single]", f"{GET_ALL} [multi]", f"{STOCK} [single]"):
        points = [
            (r["nodes"], r["runs"][label]["hops"]["mean"])
            for r in results
            if label in r["runs"] and r["runs"][label]["hops"]
        ]
        fit = fit_log2(points)
        if fit is not None:
            out[label] = fit
    return out


def memory_per_node(results: Sequence[dict[str, Any]]) -> float | None:
    """Bytes per node: the slope of the workers' RSS between the two largest
    networks (what a node adds, not the processes' base)."""
    ordered = sorted(results, key=lambda r: r["nodes"])
    if len(ordered) < 2:
        return None
    small, large = ordered[-2], ordered[-1]
    if small["hosts"] != large["hosts"]:
        return None
    grown = large["memory"]["rss_bytes"] - small["memory"]["rss_bytes"]
    return float(grown / (large["nodes"] - small["nodes"]))


def line_of(result: dict[str, Any]) -> str:
    parts = []
    for label, run in result["runs"].items():
        p = run["latency_ms"]
        parts.append(
            f"{label}: hops {run['hops'].get('mean', 0):.2f} "
            f"req {run['requests'].get('mean', 0):.1f} "
            f"p50 {p.get('p50', 0):.0f} p99 {p.get('p99', 0):.0f} ms ok {run['success']:.2%}"
        )
    return "; ".join(parts)


def results_table(results: Sequence[dict[str, Any]]) -> str:
    headers = [
        "n",
        "client",
        "keys",
        "lookups",
        "hops mean",
        "hops max",
        "req/lookup",
        "p50 ms",
        "p99 ms",
        "success %",
        "load max/mean",
        "table mean",
        "lag p99 ms",
    ]
    body = []
    for result in results:
        lag = max((lag.get("p99", 0.0) for lag in result["loop_lag_ms"]), default=0.0)
        for run in result["runs"].values():
            p = run["latency_ms"]
            failures = run["failures"]
            body.append(
                [
                    f"{result['nodes']:,}",
                    run["client"],
                    "5 rec" if run["run"] == "multi" else "1",
                    str(run["lookups"]),
                    f"{run['hops'].get('mean', 0):.2f}",
                    f"{run['hops'].get('max', 0):.0f}",
                    f"{run['requests'].get('mean', 0):.1f}",
                    f"{p.get('p50', float('nan')):.0f}",
                    f"{p.get('p99', float('nan')):.0f}",
                    f"{run['success'] * 100:.2f}" + (f" {failures}" if failures else ""),
                    f"{result['load']['max_over_mean']:.2f}",
                    f"{result['routing_table'].get('mean', 0):.0f}",
                    f"{lag:.1f}",
                ]
            )
    return format_table(headers, body, left_columns=3)


def targets(results: Sequence[dict[str, Any]], wall_s: float, mode: str) -> list[dict[str, Any]]:
    verdicts: list[dict[str, Any]] = []
    big = [r for r in results if r["nodes"] >= 1000]
    at = min(big, key=lambda r: r["nodes"]) if big else None

    def verdict(target: str, value: float | None, goal: str, met: bool | None) -> None:
        verdicts.append({"target": target, "value": value, "goal": goal, "met": met})

    if at is None:
        verdict("targets at 1,000 nodes", None, "a network of >= 1,000 nodes", None)
    else:
        for label in (f"{GET_ALL} [single]", f"{GET_ALL} [multi]", f"{STOCK} [single]"):
            run = at["runs"].get(label)
            if run is not None:
                verdict(
                    f"success at {at['nodes']:,} nodes, {label}",
                    run["success"],
                    f">= {TARGET_SUCCESS:.1%}",
                    run["success"] >= TARGET_SUCCESS,
                )
        ours = at["runs"].get(f"{GET_ALL} [single]")
        stock = at["runs"].get(f"{STOCK} [single]")
        if ours and stock:
            for q, goal in (("p50", TARGET_P50_RATIO), ("p99", TARGET_P99_RATIO)):
                ratio = ours["latency_ms"][q] / stock["latency_ms"][q]
                verdict(
                    f"get_all {q} / stock {q} at {at['nodes']:,} nodes "
                    f"({ours['latency_ms'][q]:.0f} / {stock['latency_ms'][q]:.0f} ms)",
                    ratio,
                    f"<= {goal}",
                    ratio <= goal,
                )
        for result in results:
            ratio = result["load"]["max_over_mean"]
            verdict(
                f"load max/mean at {result['nodes']:,} nodes",
                ratio,
                f"<= {TARGET_LOAD_RATIO:g}",
                ratio <= TARGET_LOAD_RATIO,
            )
    limit = TARGET_WALL_S[mode]
    verdict(f"wall time ({mode})", wall_s, f"<= {limit:.0f} s", wall_s <= limit)
    return verdicts


def target_line(v: dict[str, Any]) -> str:
    met = {True: "met", False: "NOT met", None: "not measured"}[v["met"]]
    value = v["value"]
    shown = "-" if value is None else f"{value:.4g}"
    return f"  {v['target']}: {shown} (goal {v['goal']}): {met}"


def fit_lines(fitted: dict[str, Any]) -> list[str]:
    return [
        f"  {label}: hops = {f['a']:.2f} + {f['b']:.3f} * log2(n)   (R^2 {f['r2']:.3f})"
        for label, f in fitted.items()
    ]


# -- running ----------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer keys and lookups (< 2 min)")
    parser.add_argument("--sizes", help="network sizes, comma-separated (default 10,100,1000)")
    parser.add_argument("--hosts", type=int, default=None, help="simulated hosts (default 8)")
    parser.add_argument("--lookups", type=int, default=None, help="lookups per client and size")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="after the join (which refreshes each node's far buckets), refresh every bucket"
        " of every node once more",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="record every lookup's requests and answers with their times and the peers'"
        " round trips (in the JSON: results[].traces)",
    )
    parser.add_argument(
        "--no-rtt-by-ip",
        action="store_true",
        help="the get_all clients do not expect a peer never measured at its IP address's"
        " round trip (every simulated host is one address: as with one node per address)",
    )
    parser.add_argument(
        "--own-addresses",
        action="store_true",
        help="every node binds an address of its own in its host's namespace (as on a real"
        " network: a peer's address tells nothing of its round trip); needs namespaces",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.sizes:
        try:
            networks = tuple(int(s) for s in args.sizes.split(",") if s)
        except ValueError:
            parser.error(f"--sizes must be integers, got {args.sizes!r}")
        if not networks or min(networks) < 2:
            parser.error("--sizes must be >= 2 nodes each")
        sizes = replace(sizes, networks=networks)
    if args.hosts is not None:
        if args.hosts < 1:
            parser.error("--hosts must be >= 1")
        sizes = replace(sizes, hosts=args.hosts)
    if args.lookups is not None:
        if args.lookups < 1:
            parser.error("--lookups must be >= 1")
        sizes = replace(sizes, lookups=args.lookups, multi_lookups=max(1, args.lookups // 2))
    if args.refresh:
        sizes = replace(sizes, refresh=True)
    if args.trace:
        sizes = replace(sizes, trace=True)
    if args.no_rtt_by_ip:
        sizes = replace(sizes, rtt_by_ip=False)
    if args.own_addresses:
        sizes = replace(sizes, own_addresses=True)
    args.sizes = sizes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes: Sizes = args.sizes
    mode = "quick" if args.quick else "full"
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    print(
        f"scale: networks of {', '.join(f'{n:,}' for n in sizes.networks)} nodes over "
        f"{sizes.hosts} hosts (testing.HostNetwork), round trips {sizes.rtt_ms[0]:g}-"
        f"{sizes.rtt_ms[1]:g} ms drawn per host pair",
        flush=True,
    )
    results = []
    errors = []
    for n in sizes.networks:
        try:
            results.append(run_size(n, sizes, progress=lambda s: print(s, flush=True)))
        except Exception as exc:
            errors.append(f"n={n}: {type(exc).__name__}: {exc}")
            print(f"  n={n}: FAILED {errors[-1]}", flush=True)
    wall = time.perf_counter() - started
    fitted = fits(results)
    per_node = memory_per_node(results)
    verdicts = targets(results, wall, mode)
    print()
    print(results_table(results))
    print(
        "\nhops: request rounds on the critical path (stock: its crawl's rounds; get_all: the "
        "hop of the answer that ended it); req/lookup: requests sent (stock's includes its "
        "caching store); p50/p99: latency from the call; load: requests served per network "
        "node during the lookups, max over mean; lag: worst host's event-loop lag p99."
    )
    print("\nload, each kind of client's requests alone (max/mean over the network's nodes):")
    for result in results:
        by = result["load"]["by_client"]
        print(
            f"  n={result['nodes']:,}: get_all's {by['get_all']['max_over_mean']:.2f} "
            f"(mean {by['get_all']['mean']:.1f}), stock's {by['stock']['max_over_mean']:.2f} "
            f"(mean {by['stock']['mean']:.1f}), both {result['load']['max_over_mean']:.2f}"
        )
    print("\nhops against log2(n) (least squares over the mean hops per size):")
    print("\n".join(fit_lines(fitted)) or "  (fewer than two sizes)")
    if per_node is not None:
        print(
            f"\nmemory per node: {per_node / 1024:.1f} KiB "
            "(RSS slope between the two largest networks)"
        )
    print(f"\nwall time: {wall:.0f} s")
    print("\ntargets:")
    print("\n".join(target_line(v) for v in verdicts))
    report = {
        "benchmark": "scale",
        "mode": mode,
        "machine": machine_info(),
        "sizes": asdict(sizes),
        "settings": {
            "ksize": KSIZE,
            "alpha": ALPHA,
            "quorum": QUORUM,
            "lookup_timeout_s": LOOKUP_TIMEOUT,
            "delay": "testing.HostNetwork's userspace link: half the host pair's RTT each way",
        },
        "results": results,
        "fits": fitted,
        "memory_per_node_bytes": per_node,
        "targets": verdicts,
        "errors": errors,
        "wall_s": wall,
    }
    write_json(args.json, report)
    print(f"\nJSON: {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    # run as the module of its own name: the workers import hooks by it
    from dhtquery.bench import run

    sys.exit(run("scale", sys.argv[1:]))

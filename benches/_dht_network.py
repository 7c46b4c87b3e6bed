"""The server side of ``bench_dht.py``: a loopback DHT network of N nodes in
this one process, started by the benchmark as a child process.

    python benches/_dht_network.py --kind dhtquery|opendht [--loop asyncio|uvloop]
        [--nodes 20] [--single-keys N] [--multi-keys N] [--publishers 5]

The nodes listen on 127.0.0.1 only, bootstrap into each other and store the
benchmark's keys (see :func:`single_value` and friends, which the benchmark
imports to check what it reads). When ready, one line of JSON goes to stdout:
``{"addresses": [[host, port], ...], "setup_s": ..., "stored": {...}}``. The
network then serves until stdin closes (or ``--max-seconds`` pass), and exits;
meanwhile it answers one command a line on stdin with one line on stdout:
``reset`` makes every node forget the contacts that are not nodes of this
network (the benchmark's earlier clients), answering ``ok <count removed>``.

``dhtquery``: 20 ``DhtNode`` (Rust core) under the requested event loop. Each
single key holds one record (publisher ``pub-0``) *and* the same bytes as a
plain kademlia value (``Server.set``), so a ``get_all`` client and a stock
``kademlia`` client read the same keys; each multi key holds one record from
each of ``--publishers`` publishers, stored from as many different nodes.
``opendht``: 20 ``opendht.DhtRunner`` (its C++ threads; the event loop only
drives the puts), rate limit off, one value per single key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from _common import bounded, forget_strangers, loop_factory, serve_stdin

HOST = "127.0.0.1"
PUBLISHER = "pub-0"


def single_key(index: int) -> str:
    return f"bench-single-{index}"


def single_value(index: int) -> bytes:
    return f"value-{index:06d}-".encode().ljust(64, b"s")


def multi_key(index: int) -> str:
    return f"bench-multi-{index}"


def multi_publisher(publisher: int) -> str:
    return f"pub-{publisher}"


def multi_value(index: int, publisher: int) -> bytes:
    return f"multi-{index:06d}-{publisher}-".encode().ljust(64, b"m")


def _ready(addresses: list[tuple[str, int]], started: float, stored: dict[str, Any]) -> None:
    line = {
        "addresses": [list(address) for address in addresses],
        "setup_s": round(time.perf_counter() - started, 3),
        "stored": stored,
        "pid": os.getpid(),
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _put_all(nodes: list[Any], puts: list[tuple[int, str, bytes, str]]) -> dict[str, Any]:
    """``node.put`` each (node index, key, data, publisher), 8 at a time; a
    put that reached fewer than all but one of the nodes (a store timed out
    while the machine was busy) is tried again, up to 3 times."""
    want = len(nodes) - 1
    holders = [0] * len(puts)
    tries = 0
    todo = list(range(len(puts)))
    while todo and tries < 4:
        tries += 1

        async def put(index: int) -> None:
            node_index, key, data, publisher = puts[index]
            count = await nodes[node_index % len(nodes)].put(key, data, publisher=publisher)
            holders[index] = max(holders[index], count)

        await bounded([(lambda i=i: put(i)) for i in todo], 8)
        todo = [index for index in todo if holders[index] < want]
    if any(count < 3 for count in holders):
        short = sum(1 for count in holders if count < 3)
        raise RuntimeError(f"{short} of {len(puts)} record puts reached fewer than 3 nodes")
    return {
        "count": len(puts),
        "tries": tries,
        "holders": {str(n): holders.count(n) for n in sorted(set(holders))},
    }


async def run_dhtquery(args: argparse.Namespace) -> None:
    from dhtquery.dht import DhtNode

    started = time.perf_counter()
    nodes = [DhtNode(backend=args.backend) for _ in range(args.nodes)]
    try:
        for node in nodes:
            await node.listen(0, HOST)
        addresses = [node.address for node in nodes]
        # everyone knows the first node, then everyone: full routing tables
        await asyncio.gather(*(node.bootstrap(addresses[:1]) for node in nodes[1:]))
        await asyncio.gather(
            *(node.bootstrap([a for a in addresses if a != node.address]) for node in nodes)
        )

        single = [
            (node_index, single_key(i), single_value(i), PUBLISHER)
            for node_index, i in enumerate(range(args.single_keys))
        ]
        stored = {"single_records": await _put_all(nodes, single)}
        plain = await bounded(
            [
                (lambda i=i: nodes[(i + 1) % len(nodes)].set(single_key(i), single_value(i)))
                for i in range(args.single_keys)
            ],
            8,
        )
        if not all(plain):
            raise RuntimeError(f"{plain.count(False)} plain set() calls failed")
        stored["single_plain"] = {"count": len(plain)}
        multi = [
            (i + p, multi_key(i), multi_value(i, p), multi_publisher(p))
            for i in range(args.multi_keys)
            for p in range(args.publishers)
        ]
        stored["multi_records"] = await _put_all(nodes, multi)
        _ready(addresses, started, stored)
        await serve_stdin(
            "_dht_network", args.max_seconds, {"reset": lambda: f"ok {forget_strangers(nodes)}"}
        )
    finally:
        for node in nodes:
            node.stop()


async def run_opendht(args: argparse.Namespace) -> None:
    import opendht
    from opendht import aio

    started = time.perf_counter()
    runners = []
    for index in range(args.nodes):
        config = opendht.DhtConfig()
        config.setRateLimit(-1, -1)
        runner = opendht.DhtRunner()
        runner.run(None, False, 0, HOST, "", config)
        if index:
            runner.bootstrap(HOST, str(runners[0].getBound().getPort()))
        runners.append(runner)
    addresses = [(HOST, runner.getBound().getPort()) for runner in runners]
    for runner in runners[1:]:
        for host, port in addresses[1:]:
            runner.bootstrap(host, str(port))
    await asyncio.sleep(1.0)  # let the routing tables fill
    putters = [aio.DhtRunner(core=runner) for runner in runners]
    done = await bounded(
        [
            (
                lambda i=i: putters[i % len(putters)].put(
                    opendht.InfoHash.get(single_key(i)), opendht.Value(single_value(i))
                )
            )
            for i in range(args.single_keys)
        ],
        64,
    )
    if not all(done):
        raise RuntimeError(f"{done.count(False)} OpenDHT puts failed")
    _ready(addresses, started, {"single_values": {"count": len(done)}})
    await serve_stdin("_dht_network", args.max_seconds, {"reset": lambda: "ok"})
    # DhtRunner.shutdown()/join() can block for long on 20 runners; the
    # benchmark is done with them, so leave without waiting.
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("dhtquery", "opendht"), default="dhtquery")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--backend", choices=("rust", "python"), default="rust")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--single-keys", type=int, default=200)
    parser.add_argument("--multi-keys", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # kademlia logs every unanswered request as a warning
    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    run = run_dhtquery if args.kind == "dhtquery" else run_opendht
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()

"""``python benches/bench_restart.py [--records 5000] [--nodes 4] [--signal term|kill]``:
does a node restarted from its data directory answer for every record it held?

A ``dhtquery node --data-dir DIR`` runs in a child process on a fixed
loopback port; ``--nodes`` ephemeral DhtNodes in this process join it, and a
client node (client mode: it holds nothing) stores ``--records`` records,
each on the k closest nodes (all of them: the network is smaller than k).
The client then asks the child directly (``find_values``, real UDP) for
each key and counts the records it serves: what it held. The child is
stopped (SIGTERM, or SIGKILL with ``--signal kill``), started again on the
same port and directory, and asked for every key again. Printed (and
written with ``--json FILE``): records held before, answered after, the
share, and the time the restarted node took to print its address.

From a source checkout without an install, run with ``PYTHONPATH=python``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kademlia.utils import digest

from dhtquery import DhtNode
from dhtquery.dht import Record

HOST = "127.0.0.1"
#: Requests (puts, asks) in flight at once.
CONCURRENCY = 64
#: Seconds a child has to start or stop.
CHILD_WAIT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_child(port: int, data_dir: Path) -> tuple[subprocess.Popen[str], float]:
    """``dhtquery node`` on ``port`` with ``data_dir``; returns it once it
    printed its address, and how long that took."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "dhtquery", "node", "--host", HOST, "--port", str(port),
         "--data-dir", str(data_dir), "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert child.stdout is not None
    line = child.stdout.readline()
    if "listening on" not in line:
        child.kill()
        raise SystemExit(f"the node did not start: {line!r}")
    return child, time.perf_counter() - started


def stop_child(child: subprocess.Popen[str], how: str) -> None:
    child.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
    try:
        child.wait(timeout=CHILD_WAIT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def served(client: DhtNode, address: tuple[str, int], keys: list[str],
                 records: dict[str, Record]) -> set[str]:  # fmt: skip
    """The ``keys`` the node at ``address`` answers with their record."""
    found = set()
    for start in range(0, len(keys), CONCURRENCY):
        batch = keys[start : start + CONCURRENCY]
        replies = await asyncio.gather(
            *(
                client.request(address, "find_values", (client.node.id, digest(key)), 5.0)
                for key in batch
            )
        )
        for key, (ok, answer) in zip(batch, replies, strict=True):
            wanted = records[key]
            if ok and any(
                r.get("h") == wanted.hash and r.get("p") == wanted.publisher
                for r in answer["records"]
            ):
                found.add(key)
    return found


async def measure(records_count: int, nodes_count: int, how: str, data_dir: Path) -> dict[str, Any]:
    port = free_port()
    child, _ = start_child(port, data_dir)
    address = (HOST, port)
    nodes = [DhtNode(republish_interval=None) for _ in range(nodes_count)]
    client = DhtNode(client=True, republish_interval=None)
    try:
        for node in nodes:
            await node.listen(0, HOST)
            await node.bootstrap([address], retry_for=10.0)
        await client.listen(0, HOST)
        if not await client.bootstrap([address], retry_for=10.0):
            raise SystemExit("the client could not join")
        keys = [f"restart-{index}" for index in range(records_count)]
        records: dict[str, Record] = {}
        stored_started = time.perf_counter()
        for start in range(0, len(keys), CONCURRENCY):
            batch = keys[start : start + CONCURRENCY]
            data = [os.urandom(100) for _ in batch]
            await asyncio.gather(*(client.put(k, d) for k, d in zip(batch, data, strict=True)))
            for key, value in zip(batch, data, strict=True):
                records[key] = Record.create(client.publisher, value)
        stored_s = time.perf_counter() - stored_started
        held = await served(client, address, keys, records)
        stop_child(child, how)
        child, restart_s = start_child(port, data_dir)
        after = len(await served(client, address, sorted(held), records))
        return {
            "records": records_count,
            "nodes": nodes_count + 1,
            "signal": how,
            "held_before": len(held),
            "answered_after": after,
            "share": after / len(held) if held else 0.0,
            "restart_to_listening_s": round(restart_s, 3),
            "store_s": round(stored_s, 2),
        }
    finally:
        client.stop()
        for node in nodes:
            node.stop()
        stop_child(child, "term")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=4, help="ephemeral nodes besides the child")
    parser.add_argument("--signal", choices=("term", "kill"), default="term")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 1_000_000:
        parser.error(f"--records {args.records}: must be 1 to 1,000,000")
    if not 0 <= args.nodes <= 18:
        parser.error(f"--nodes {args.nodes}: must be 0 to 18 (the network stays under k)")
    with tempfile.TemporaryDirectory(prefix="dhtquery-restart-") as tmp:
        result = asyncio.run(measure(args.records, args.nodes, args.signal, Path(tmp)))
    print(
        f"{result['held_before']:,} records held before the restart ({result['signal']}), "
        f"{result['answered_after']:,} answered after: {result['share']:.2%} "
        f"(restart to listening {result['restart_to_listening_s']:.2f} s; "
        f"{result['nodes']} nodes; stored in {result['store_s']:.1f} s)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["share"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())

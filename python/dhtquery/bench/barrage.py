"""A hostile barrage against one node, dhtquery's and stock kademlia's in the
same run: what the datagrams cost it in memory, and whether its own lookups
still succeed while they arrive.

    python -m dhtquery.bench barrage [--count 1000000] [--quick] [--json FILE]

Method. For each implementation a *target* process (``python -m
dhtquery.bench.barrage --target IMPL``) runs four nodes on 127.0.0.1 under
uvloop: the target and three peers that hold the records its lookups look
for (stored on the peers only, so every lookup goes out on the network).
This process then sends ``--count`` datagrams to the target from
``SOURCES`` sockets (so per-address limits do not make the job easy) at
``--rate`` datagrams per second,
cycling through a pool of distinct datagrams made up front:

- 30 % garbage (random bytes, a wrong kind byte, short datagrams),
- 10 % a valid header with a body that is not msgpack,
- 60 % well-formed requests, each with a fresh node id and message id:
  ``ping``, ``find_node``, ``find_value`` and (for dhtquery) ``find_values``
  for random keys, which the target must answer, and whose ids it may want
  to welcome into its routing table.

Stores are left out: a store is bounded by the storage cap, measured
elsewhere (``bench registry``'s memory rows). Meanwhile the target looks up
one of its keys every ``LOOKUP_EVERY`` seconds (``get_all`` / stock ``get``,
5 s timeout), and this process samples the target's resident memory every
``SAMPLE_EVERY`` seconds. Reported per implementation: datagrams sent and
received by the target's socket (the kernel drops what its buffer cannot
hold), resident memory before, at the peak and after, its growth, the most
asyncio Tasks alive at once, the lookups that succeeded during the barrage
and their p50 / max latency, and the node's drop counters.

Target (issue 10): growth under 20 MB for 1,000,000 datagrams, every own
lookup succeeds, no queue without a bound.

Then (``--no-greedy`` skips it) the other case, one source sending more
than the node can serve, against a light client, the node's fair share on
and off: :mod:`dhtquery.bench.greedy`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from kademlia.network import Server
from kademlia.utils import digest

from ..dht import DhtNode, Publisher, Record
from ..dht.wire import HEADER_SIZE, frame_request, pack_request
from ..testing import WorkerError, loop_factory
from . import greedy
from .common import format_table, machine_info, write_json

#: The key the records of the barrage bench are signed with.
BARRAGE_PUBLISHER: Final = Publisher(hashlib.sha256(b"dhtquery-bench-barrage").digest())

__all__ = ["IMPLEMENTATIONS", "main", "make_pool"]

IMPLEMENTATIONS: Final = ("dhtquery", "stock")
HOST: Final = "127.0.0.1"
#: sockets the barrage comes from
SOURCES: Final = 32
#: distinct datagrams, cycled through
POOL: Final = 65_536
KEYS: Final = 16
LOOKUP_EVERY: Final = 0.25
LOOKUP_TIMEOUT: Final = 5.0
SAMPLE_EVERY: Final = 0.05
#: datagrams per second sent; stock kademlia keeps up with ~7,400/s (issue 10)
RATE: Final = 20_000.0
PACE_BATCH: Final = 256
#: how long the target gets to work off its queues before "after" is read
SETTLE: Final = 3.0
DEFAULT_JSON: Final = Path("bench_barrage.json")
#: a bound on the whole run of one implementation, in seconds
MAX_SECONDS: Final = 600.0


# -- the target process ------------------------------------------------


def _resident_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _count_datagrams(protocol: Any, counter: list[int]) -> None:
    """Count what reaches the target's protocol (the same wrapper for both
    implementations, so its cost is the same for both)."""
    received = protocol.datagram_received

    def counted(data: bytes, addr: Any) -> None:
        counter[0] += 1
        received(data, addr)

    protocol.datagram_received = counted


async def _start(impl: str) -> tuple[Any, list[Any], Callable[[str], Any]]:
    """The target and its peers, joined; returns (target, peers, lookup)."""
    if impl == "dhtquery":
        nodes: list[Any] = [DhtNode() for _ in range(4)]
    else:
        nodes = [Server() for _ in range(4)]
    for node in nodes:
        await node.listen(0, interface=HOST)
    target, *peers = nodes
    first = _address(peers[0])
    for node in nodes:
        if node is not peers[0]:
            await node.bootstrap([first])
    for index in range(KEYS):
        key = f"barrage key {index}"
        for peer in peers:
            if impl == "dhtquery":
                record = Record.create(BARRAGE_PUBLISHER, digest(key), key.encode())
                peer.records.put(digest(key), record, peer.clock.now())
            else:
                peer.storage[digest(key)] = key
    if impl == "dhtquery":

        async def lookup(key: str) -> bool:
            outcome = await target.get_all(key, quorum=1, timeout=LOOKUP_TIMEOUT)
            return [result.item.data for result in outcome.results] == [key.encode()]
    else:

        async def lookup(key: str) -> bool:
            return bool(await target.get(key) == key)

    return target, peers, lookup


def _address(node: Any) -> tuple[str, int]:
    host, port = node.transport.get_extra_info("sockname")[:2]
    return host, port


async def _serve_target(impl: str) -> None:
    """Run the target; lines on stdin: ``lookup`` (answers ``{"ok", "ms"}``),
    ``report`` (answers counters), EOF to stop."""
    target, peers, lookup = await _start(impl)
    received = [0]
    _count_datagrams(target.protocol, received)
    most_tasks = [0]

    async def watch_tasks() -> None:
        while True:  # ends with the process (cancelled at exit)
            most_tasks[0] = max(most_tasks[0], len(asyncio.all_tasks()))
            await asyncio.sleep(SAMPLE_EVERY)

    watcher = asyncio.ensure_future(watch_tasks())
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    out = sys.stdout
    out.write(json.dumps({"address": _address(target), "pid": os.getpid()}) + "\n")
    out.flush()
    lookups = 0
    deadline = loop.time() + MAX_SECONDS
    while loop.time() < deadline:
        line = await asyncio.wait_for(lines.get(), deadline - loop.time())
        if line is None:
            break
        command = line.strip()
        if command == "lookup":
            started = time.perf_counter()
            try:
                ok = await lookup(f"barrage key {lookups % KEYS}")
            except Exception:  # a failed lookup is a result here, not a crash
                ok = False
            lookups += 1
            reply: dict[str, Any] = {"ok": ok, "ms": (time.perf_counter() - started) * 1e3}
        elif command == "report":
            reply = {
                "received": received[0],
                "tasks": most_tasks[0],
                "drops": dict(target.drops) if impl == "dhtquery" else {},
                "waiting": target.protocol.waiting if impl == "dhtquery" else None,
                "routing": (
                    target.peer_count
                    if impl == "dhtquery"
                    else sum(len(bucket) for bucket in target.protocol.router.buckets)
                ),
            }
        else:
            reply = {"error": f"unknown command {command!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    watcher.cancel()
    for node in (target, *peers):
        node.stop()


# -- the barrage ---------------------------------------------------------


def make_pool(size: int, impl: str, seed: int) -> list[bytes]:
    """``size`` distinct datagrams in the proportions the docstring gives."""
    rng = random.Random(seed)
    names = ["ping", "find_node", "find_value"] + (["find_values"] if impl == "dhtquery" else [])
    pool: list[bytes] = []
    for index in range(size):
        share = index % 10
        msg_id = rng.randbytes(20)
        if share < 3:
            kind = share
            if kind == 0:
                pool.append(rng.randbytes(rng.randrange(1, 200)))
            elif kind == 1:
                pool.append(b"\x07" + rng.randbytes(60))
            else:
                pool.append(b"\x00" + rng.randbytes(HEADER_SIZE - 2))
        elif share == 3:
            pool.append(b"\x00" + msg_id + b"\xc1" + rng.randbytes(30))
        else:
            name = names[index % len(names)]
            sender = rng.randbytes(20)
            args: tuple[Any, ...] = (sender,) if name == "ping" else (sender, rng.randbytes(20))
            pool.append(frame_request(msg_id, pack_request(name, args)))
    return pool


class _Target:
    def __init__(self, impl: str) -> None:
        command = [sys.executable, "-m", "dhtquery.bench.barrage", "--target", impl]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline() or "{}")
        if "address" not in ready:
            self.close()
            raise WorkerError(f"the {impl} target process did not start")
        host, port = ready["address"]
        self.address: tuple[str, int] = (host, port)
        self.pid: int = ready["pid"]
        self._lock = threading.Lock()

    def ask(self, command: str) -> dict[str, Any]:
        with self._lock:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            answer: dict[str, Any] = json.loads(self.process.stdout.readline())
            return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _barrage(target: _Target, pool: Sequence[bytes], count: int, rate: float) -> dict[str, Any]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOURCES)]
    stop = threading.Event()
    rss: list[int] = []
    lookups: list[dict[str, Any]] = []

    def sample() -> None:
        while not stop.wait(SAMPLE_EVERY):
            with contextlib.suppress(OSError):
                rss.append(_resident_bytes(target.pid))

    def look_up() -> None:
        while not stop.wait(LOOKUP_EVERY):
            lookups.append(target.ask("lookup"))

    threads = [threading.Thread(target=sample), threading.Thread(target=look_up)]
    before = _resident_bytes(target.pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        address = target.address
        size = len(pool)
        sent = 0
        for index in range(count):
            with contextlib.suppress(OSError):  # a full send buffer: not sent
                sockets[index % SOURCES].sendto(pool[index % size], address)
                sent += 1
            if index % PACE_BATCH == 0:
                # paced, so the target's socket buffer is not what drops most
                # of them: the node is to see the barrage, not the kernel
                ahead = started + index / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
                elif -ahead > MAX_SECONDS:
                    break
        elapsed = time.perf_counter() - started
        time.sleep(SETTLE)  # a bench, not a test: the target works off its queues
    finally:
        stop.set()
        for thread in threads:
            thread.join(LOOKUP_TIMEOUT + 5)
        for sock in sockets:
            sock.close()
    # one lookup after the barrage too: the node still serves its owner
    after_lookup = target.ask("lookup")
    report = target.ask("report")
    after = _resident_bytes(target.pid)
    latencies = [lookup["ms"] for lookup in lookups]
    peak = max(rss, default=before)
    return {
        "sent": sent,
        "send_seconds": elapsed,
        "received": report["received"],
        "rss_before_mb": before / 2**20,
        "rss_peak_mb": peak / 2**20,
        "rss_after_mb": after / 2**20,
        "growth_mb": (peak - before) / 2**20,
        "most_tasks": report["tasks"],
        "waiting_after": report["waiting"],
        "routing_table": report["routing"],
        "lookups": len(lookups),
        "lookups_ok": sum(1 for lookup in lookups if lookup["ok"]),
        "lookup_p50_ms": statistics.median(latencies) if latencies else None,
        "lookup_max_ms": max(latencies, default=None),
        "lookup_after_ok": after_lookup["ok"],
        "drops": report["drops"],
    }


def run_one(impl: str, count: int, seed: int, rate: float) -> dict[str, Any]:
    pool = make_pool(min(POOL, count), impl, seed)
    target = _Target(impl)
    try:
        return _barrage(target, pool, count, rate)
    finally:
        target.close()


def _table(results: dict[str, dict[str, Any]]) -> str:
    header = [
        "impl",
        "sent",
        "received",
        "RSS before",
        "peak",
        "growth",
        "tasks",
        "lookups ok",
        "p50 ms",
        "max ms",
    ]
    rows = []
    for impl, row in results.items():
        rows.append(
            [
                impl,
                f"{row['sent']:,}",
                f"{row['received']:,}",
                f"{row['rss_before_mb']:.1f} MB",
                f"{row['rss_peak_mb']:.1f} MB",
                f"{row['growth_mb']:+.1f} MB",
                str(row["most_tasks"]),
                f"{row['lookups_ok']}/{row['lookups']}",
                "-" if row["lookup_p50_ms"] is None else f"{row['lookup_p50_ms']:.1f}",
                "-" if row["lookup_max_ms"] is None else f"{row['lookup_max_ms']:.1f}",
            ]
        )
    return format_table(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None, help="datagrams (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 datagrams")
    parser.add_argument("--impl", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=RATE, help="datagrams per second")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--target", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-greedy", dest="greedy", action="store_false", help="skip the greedy-client part"
    )
    args = parser.parse_args(argv)
    if args.target:
        # Stock rpcudp logs every malformed datagram (and asyncio every Task
        # that raised): a million lines would be the bench's real cost.
        for name in ("kademlia", "rpcudp", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
            runner.run(_serve_target(args.target))
        return 0
    count = args.count or (100_000 if args.quick else 1_000_000)
    impls = [impl for impl in args.impl.split(",") if impl]
    unknown = sorted(set(impls) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(f"--impl: unknown {', '.join(unknown)}")
    results = {impl: run_one(impl, count, args.seed, args.rate) for impl in impls}
    print(
        f"barrage of {count:,} datagrams from {SOURCES} sockets at up to {args.rate:,.0f}/s,"
        " uvloop targets"
    )
    print(_table(results))
    for impl, row in results.items():
        drops = ", ".join(f"{kind} {value:,}" for kind, value in sorted(row["drops"].items()))
        after = row["lookup_after_ok"]
        print(f"{impl}: lookup after the barrage ok={after}; drops: {drops or '-'}")
    report: dict[str, Any] = {"machine": machine_info(), "count": count, "results": results}
    if args.greedy:
        # one source, not many: the node's fair share (see bench.greedy)
        report["greedy"] = greedy.compare(
            [40_000] if args.quick else list(greedy.RATES),
            1 if args.quick else 3,
            2.0 if args.quick else 5.0,
        )
        print("\none greedy client (find_node, one socket) and a light one (a ping every 5 ms)")
        print(greedy.table(report["greedy"]))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

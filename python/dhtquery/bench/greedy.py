"""One greedy client against one node, the node's fair share on and off
(part of ``dhtquery bench barrage``; ``python -m dhtquery.bench.greedy``
alone).

Method. A *node* process (``python -m dhtquery.bench.greedy --node on|off``,
a ``DhtNode`` on 127.0.0.1 under uvloop; ``off`` sets its
``protocol.fair_share`` to None) is sent, from one socket of this process,
``find_node`` requests with fresh message ids (a client's: no welcome) by
a thread, at ``--rates`` per second (0: as fast as the thread sends, about
100-150k/s here, more than the node can read). Meanwhile a *light* client
(another socket, this process's event loop) pings the node every 5 ms and
times each answer. Per rate and setting: the light client's pings answered
within 1 s, their p50 and p99 round trip, the greedy requests sent, and
what the node served and shed. Settings alternate (on, off, on, ...) over
``--repeat`` repetitions; the table gives medians.

What it shows (``dhtquery.dht.fairness``): without a fair share, the light
client's pings wait behind the greedy client's queue and are dropped with
it when the queue is full; with one, the node drops the greedy client's
requests for ~1 us each while it is behind, instead of serving them, and
reaches the light client's sooner. At a rate far past what the node can
read, the kernel still drops datagrams at the full queue, the light
client's among them: no reading order helps there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..dht.wire import CLIENT_PAD, frame_request, pack_request
from .common import format_table, machine_info, write_json
from .load import percentiles_ms

__all__ = ["RATES", "compare", "main", "run_once", "table"]

HOST: Final = "127.0.0.1"
#: This module by its name (run as ``python -m`` it is ``__main__``).
MODULE: Final = "dhtquery.bench.greedy"
#: The light client pings this often (seconds), and counts an answer
#: within ANSWER_WITHIN as answered.
PING_EVERY: Final = 0.005
ANSWER_WITHIN: Final = 1.0
#: The greedy thread sends this many requests between two looks at the clock.
BATCH: Final = 100
RATES: Final = (20_000, 40_000, 0)
DEFAULT_JSON: Final = Path("bench-results") / "greedy.json"


def _node_main(setting: str) -> None:
    """The node process: listen, print the port, serve until stdin closes,
    then print what the node served and shed."""
    import json

    import uvloop

    from ..dht import DhtNode

    async def serve() -> None:
        node = DhtNode()
        await node.listen(0, HOST)
        protocol = node.protocol
        assert protocol is not None
        if setting == "off":
            protocol.fair_share = None
        print(node.address[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        counts = {
            "served": protocol.stats["served"],
            "fair_share": protocol.drops["fair_share"],
        }
        print(json.dumps(counts), flush=True)
        node.stop()

    uvloop.run(serve())


def _flood(port: int, rate: int, stop: threading.Event, sent: list[int]) -> None:
    """The greedy client: find_node requests at ``rate`` a second (0: as
    fast as it can) until ``stop``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    bodies = [pack_request("find_node", (os.urandom(20), os.urandom(20))) for _ in range(BATCH)]
    count = 0
    started = time.perf_counter()
    try:
        while not stop.is_set():
            for body in bodies:
                try:
                    sock.sendto(frame_request(os.urandom(16) + CLIENT_PAD, body), (HOST, port))
                    count += 1
                except BlockingIOError:
                    pass  # (its own send buffer full: the request is not sent)
            if rate:
                ahead = count / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        sock.close()
        sent.append(count)


async def _light(port: int, seconds: float) -> tuple[list[float], int]:
    """The light client: a ping every PING_EVERY for ``seconds``; the round
    trips of those answered, and how many were sent."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    waiting: dict[bytes, float] = {}
    rtts: list[float] = []

    def readable() -> None:
        for _ in range(1000):  # bounded: what is there now
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            sent_at = waiting.pop(data[1:21], None)
            if sent_at is not None:
                rtts.append(time.perf_counter() - sent_at)

    loop.add_reader(sock.fileno(), readable)
    body = pack_request("ping", (os.urandom(20),))
    pings = 0
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            msg_id = os.urandom(16) + CLIENT_PAD
            waiting[msg_id] = time.perf_counter()
            sock.sendto(frame_request(msg_id, body), (HOST, port))
            pings += 1
            await asyncio.sleep(PING_EVERY)
        await asyncio.sleep(ANSWER_WITHIN)  # the last ones' answers
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return rtts, pings


def run_once(setting: str, rate: int, seconds: float) -> dict[str, Any]:
    """One node (fair share ``setting``: on or off), flooded at ``rate``
    while the light client pings it for ``seconds``."""
    import json

    node = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--node", setting],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None and node.stdin is not None
        line = node.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the node process did not start (it printed {line!r})")
        port = int(line)
        stop = threading.Event()
        sent: list[int] = []
        flood = threading.Thread(target=_flood, args=(port, rate, stop, sent))
        flood.start()
        try:
            time.sleep(0.5)  # the queue fills first
            rtts, pings = asyncio.run(_light(port, seconds))
        finally:
            stop.set()
            flood.join()
        node.stdin.close()
        counts = json.loads(node.stdout.readline() or "{}")
        node.wait(timeout=10)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    answered = [rtt for rtt in rtts if rtt <= ANSWER_WITHIN]
    latency = percentiles_ms(answered)

    return {
        "setting": setting,
        "rate": rate,
        "pings": pings,
        "answered": len(answered),
        "answered_fraction": len(answered) / pings if pings else 0.0,
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "greedy_sent": sent[0] if sent else 0,
        "served": counts.get("served"),
        "shed": counts.get("fair_share"),
    }


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run[key] is not None]
    return statistics.median(values) if values else None


def compare(rates: Sequence[int], repeat: int, seconds: float) -> dict[str, Any]:
    """Every rate, the settings alternating, ``repeat`` times each: the runs
    and their medians (by rate, then setting)."""
    runs: list[dict[str, Any]] = []
    for rate in rates:
        for rep in range(repeat):
            order = ("on", "off") if rep % 2 == 0 else ("off", "on")
            runs.extend(run_once(setting, rate, seconds) for setting in order)
    medians: dict[str, dict[str, Any]] = {}
    for rate in rates:
        for setting in ("on", "off"):
            chosen = [r for r in runs if r["rate"] == rate and r["setting"] == setting]
            medians[f"{rate}/{setting}"] = {
                key: _median(chosen, key)
                for key in ("answered_fraction", "p50_ms", "p99_ms", "greedy_sent", "shed")
            }
    return {"runs": runs, "medians": medians}


def table(result: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = []
    for name, row in result["medians"].items():
        rate, setting = name.split("/")
        rows.append(
            [
                "as fast as it sends" if rate == "0" else f"{int(rate):,}/s",
                setting,
                f"{100 * row['answered_fraction']:.1f}",
                ms(row["p50_ms"]),
                ms(row["p99_ms"]),
                f"{row['greedy_sent']:,.0f}",
                "-" if row["shed"] is None else f"{row['shed']:,.0f}",
            ]
        )
    header = ["greedy rate", "fair share", "light answered %", "p50 ms", "p99 ms", "greedy sent"]
    return format_table([*header, "shed"], rows, left_columns=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, 2 s, one rate")
    parser.add_argument("--rates", default=None, help="comma-separated; 0: as fast as it sends")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--node", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.node:
        _node_main(args.node)
        return 0
    rates = [int(r) for r in args.rates.split(",")] if args.rates else None
    rates = rates or ([40_000] if args.quick else list(RATES))
    result = compare(
        rates,
        args.repeat or (1 if args.quick else 3),
        args.seconds or (2.0 if args.quick else 5.0),
    )
    print("one greedy client (find_node, one socket) and a light one (a ping every 5 ms)")
    print(table(result))
    write_json(args.json, {"machine": machine_info(), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())

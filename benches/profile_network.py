"""Where a ``get_all`` client's CPU goes on the bench's real network (the 20
nodes of ``dhtquery bench dht --quick`` in their own process, real UDP on
127.0.0.1, uvloop, the Rust core): warm up, then a closed loop of 64
lookups in flight for ``--seconds``, and print lookups/s, client CPU a
lookup and requests a lookup. The profile client (``bench profile``) has no
socket, so it cannot show the kernel's share nor the batched path
(``DatagramEngine.receive_batch``); this can:

    python benches/profile_network.py --perf /tmp/client.data
        # perf record of this process during the loop only, then e.g.
        # perf report -i /tmp/client.data --no-children --sort dso --stdio -g none
    python benches/profile_network.py --cprofile     # Python's own view
    python benches/profile_network.py --latency      # 5 s at 1,000/s instead
    python benches/profile_network.py --latency --pin 0,1   # this process on
        # CPU 0, the nodes' on CPU 1 (0,0: both on one: the phase's slow
        # mode, p99 ~1.5 ms, every time on a 2-core machine; apart, 0.4-1.3)

With ``PYTHONPATH=<tree>/python`` it measures that tree (its own
``_core.abi3.so`` built in place): run two trees in turn to compare them.
Issue 14's seventh session used it to split the client's CPU (interpreter
47 %, kernel 29 %, core 14 %; ``sendto`` 26 %: README, "A wake-up in one core
call"). A tool for work on the client, not a benchmark of record.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import subprocess
import time

import uvloop

from dhtquery.bench import dht as bench
from dhtquery.bench.common import gc_quiet
from dhtquery.bench.load import closed_loop, open_loop, warm_up


async def measure(args: argparse.Namespace) -> None:
    sizes = bench.QUICK
    with bench.network_process("dhtquery", "uvloop", sizes) as network:
        if args.pin:
            # (the latency phase has two modes, by where the scheduler puts
            # the two processes: pinned, a run is in a known one)
            client_cpu, network_cpu = args.pin
            for worker in network.network.workers:
                os.sched_setaffinity(worker.pid, {network_cpu})
            os.sched_setaffinity(0, {client_cpu})
        keys = [bench.single_key(i) for i in range(sizes.single_keys)]
        expected = [
            [(bench.PUBLISHER.key_id, bench.single_value(i))] for i in range(sizes.single_keys)
        ]
        client = bench._client("rust")
        try:
            await bench._joined(client, network.addresses)
            op = bench.by_key(bench.get_all_lookup(client, keys, expected), len(keys))
            await warm_up(op, bench.WARMUP, 30.0, bench.DRAIN_SECONDS)
            if args.latency:
                with gc_quiet():
                    phase = await open_loop(op, rate=bench.RATE, seconds=5.0, drain_seconds=2.0)
                latencies = sorted(phase.latencies_s)
                for share in (0.5, 0.9, 0.99):
                    at = latencies[min(len(latencies) - 1, int(share * len(latencies)))]
                    print(f"p{round(share * 100)} {at * 1000:.3f} ms", end="  ")
                print(f"({len(latencies)} lookups at {bench.RATE}/s)")
                return
            recorder = None
            if args.perf:
                recorder = subprocess.Popen(
                    ["perf", "record", "-F", "4999", "-g", "-o", args.perf, "-p", str(os.getpid())],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)  # (perf attaches)
            profiler = cProfile.Profile() if args.cprofile else None
            sent = client.stats.get("requests", 0)
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            with gc_quiet():
                phase = await closed_loop(
                    op,
                    concurrency=bench.CONCURRENCY,
                    max_count=10**9,
                    max_seconds=args.seconds,
                    drain_seconds=2.0,
                )
            if profiler is not None:
                profiler.disable()
            cpu = time.process_time() - started
            if recorder is not None:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=60)
            count = max(phase.count, 1)
            print(
                f"{phase.count} lookups in {phase.elapsed_s:.2f} s: "
                f"{phase.count / phase.elapsed_s:.0f}/s, client CPU {cpu / count * 1e6:.1f} us "
                f"a lookup, {(client.stats.get('requests', 0) - sent) / count:.2f} requests a "
                f"lookup, {phase.ok} ok"
            )
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        finally:
            client.stop()
            await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="the closed loop's length")
    parser.add_argument("--perf", metavar="FILE", help="perf record into FILE during the loop")
    parser.add_argument("--cprofile", action="store_true", help="a cProfile listing of the loop")
    parser.add_argument("--latency", action="store_true", help="the latency phase instead")
    parser.add_argument(
        "--pin",
        metavar="CLIENT,NETWORK",
        type=_cpus,
        help="run this process on CPU CLIENT and the nodes' process on CPU NETWORK "
        "(the same CPU or not: the latency phase's two modes)",
    )
    uvloop.run(measure(parser.parse_args()))


def _cpus(text: str) -> tuple[int, int]:
    client, _, network = text.partition(",")
    try:
        return int(client), int(network)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two CPU numbers CLIENT,NETWORK, got {text!r}"
        ) from None


if __name__ == "__main__":
    main()

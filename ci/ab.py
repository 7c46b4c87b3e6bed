"""A/B of two checkouts on this machine: one benchmark run alternately
from each (A B B A A B ...), its figures read from each run's JSON (or,
for ``profile``, its last line), and per figure the medians of A and of B
and the median of the pairs' ratios B/A.

    python ci/ab.py --a ../base --b . --pairs 4 -- dht --quick --loops uvloop \\
        --backends rust --no-opendht --latency-seconds 5
    python ci/ab.py --a ../base --b . -- profile --lookups 5000 --repeat 1
    python ci/ab.py --a ../base --b . -- core --quick

Why a tool: the machines here are shared and their pace drifts by tens of
percent within minutes (the p99 of ``bench dht``'s latency phase by 10x),
so only figures measured back to back compare, and a change is judged by
the median of paired ratios, not by a figure from an earlier hour. Each
checkout runs from its own source tree (``PYTHONPATH=<tree>/python``,
``python -m dhtquery.bench``): its compiled core must be built in place
(``maturin develop`` in it, or a copy of ``_core.abi3.so`` built from it
in ``<tree>/python/dhtquery/``). Runs are serialized with other
benchmarks by ``flock`` on ``/tmp/dhtquery-bench.lock`` when ``flock``
exists. Every run is bounded by ``--run-timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LOCK = "/tmp/dhtquery-bench.lock"

#: figures of one run: name -> value (lower or higher is better: see GOOD)
Figures = dict[str, float]


def dht_figures(report: dict[str, Any], _stdout: str) -> Figures:
    figures: Figures = {}
    stock = None
    for row in report["rows"]:
        throughput, latency = row.get("throughput"), row.get("latency")
        if row["client"] == "kademlia get" and row["run"] == "single" and throughput:
            stock = throughput["ok_per_s"]
        if not throughput or row["run"].startswith("round "):
            continue  # (--rounds: read from its target below)
        if row["client"] == "kademlia get":
            # stock's client against our nodes: the nodes' CPU a stock lookup
            # is the serving side of find_value
            name = f"stock get {row['run']} {row['loop']}"
            figures[f"{name} lookups/s"] = throughput["ok_per_s"]
            if throughput.get("network_cpu_us_per_lookup") is not None:
                figures[f"{name} network CPU us"] = throughput["network_cpu_us_per_lookup"]
            continue
        if not row["client"].startswith("dhtquery get_all"):
            continue
        name = f"{row['client'][len('dhtquery ') :]} {row['run']} {row['loop']}/{row['core']}"
        figures[f"{name} lookups/s"] = throughput["ok_per_s"]
        figures[f"{name} client CPU us"] = throughput.get("client_cpu_us_per_lookup", 0.0)
        if throughput.get("network_cpu_us_per_lookup") is not None:
            figures[f"{name} network CPU us"] = throughput["network_cpu_us_per_lookup"]
        if latency:
            figures[f"{name} p50 ms"] = latency["latency_ms"].get("p50", 0.0)
            figures[f"{name} p99 ms"] = latency["latency_ms"].get("p99", 0.0)
            if latency.get("p99_window_median_ms") is not None:
                figures[f"{name} p99/1s ms"] = latency["p99_window_median_ms"]
    if stock:
        for name in list(figures):
            if name.startswith("get_all single") and name.endswith("lookups/s"):
                figures[name.replace("lookups/s", "/ stock")] = figures[name] / stock
    for verdict in report.get("targets", []):
        if "ratios" in verdict and verdict["value"] is not None:  # (--rounds)
            figures[f"get_all / stock, median of rounds, {verdict['loop']}"] = verdict["value"]
    return figures


def core_figures(report: dict[str, Any], _stdout: str) -> Figures:
    """Each workload's rust/python ratio, and the Rust core's own cost
    (ns an operation, bytes a query) per phase."""
    figures: Figures = {}
    for workload in report["workloads"]:
        for phase, ratios in workload["ratios"].items():
            ratio = ratios.get("rust/python")
            if ratio is not None and "bytes/query" not in workload["medians"]["rust"][phase]:
                figures[f"{workload['key']} {phase} rust/python"] = ratio
        for phase, medians in workload["medians"].get("rust", {}).items():
            for unit, value in medians.items():
                if unit.startswith(("ns/", "bytes/")):
                    figures[f"{workload['key']} {phase} rust {unit}"] = value
    return figures


def profile_figures(_report: dict[str, Any], stdout: str) -> Figures:
    found = re.findall(r"median ([0-9.]+) us/(lookup|request)", stdout)
    if not found:
        raise ValueError("no 'median ... us/lookup' line in the profile's output")
    return {f"client CPU us/{found[-1][1]}": float(found[-1][0])}


#: bench name -> (reads its figures, does it write --json)
READERS: dict[str, tuple[Callable[[dict[str, Any], str], Figures], bool]] = {
    "dht": (dht_figures, True),
    "core": (core_figures, True),
    "profile": (profile_figures, False),
}

#: figure name endings for which lower is better (the rest: higher)
LOWER_IS_BETTER = (" us", " ms", "us/lookup", "us/request", "ns/offer", "ns/query", "bytes/query")


def run_once(tree: Path, bench_args: Sequence[str], python: str, timeout: float) -> Figures:
    reader, writes_json = READERS[bench_args[0]]
    with tempfile.TemporaryDirectory(prefix="dhtquery-ab-") as scratch:
        out = Path(scratch) / "report.json"
        command = [python, "-m", "dhtquery.bench", *bench_args]
        if writes_json:
            command += ["--json", str(out)]
        if shutil.which("flock"):
            command = ["flock", LOCK, *command]
        env = {**os.environ, "PYTHONPATH": str(tree / "python")}
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} in {tree} exited {done.returncode}:\n{done.stderr[-2000:]}"
            )
        report = json.loads(out.read_text()) if writes_json else {}
        return reader(report, done.stdout)


def order(pairs: int) -> list[str]:
    """A B B A A B B A ...: drift in the machine's pace falls on both alike."""
    return [side for index in range(pairs) for side in ("AB" if index % 2 == 0 else "BA")]


def summarize(runs: dict[str, list[Figures]]) -> list[tuple[str, float, float, float, str]]:
    """(figure, median A, median B, median of pair ratios B/A, better side)."""
    lines = []
    names = [name for name in runs["A"][0] if all(name in r for r in runs["A"] + runs["B"])]
    for name in names:
        a = [r[name] for r in runs["A"]]
        b = [r[name] for r in runs["B"]]
        ratios = [y / x for x, y in zip(a, b, strict=True) if x]
        ratio = statistics.median(ratios) if ratios else float("nan")
        lower = name.endswith(LOWER_IS_BETTER)
        better = "=" if ratio == 1 else ("B" if (ratio < 1) == lower else "A")
        lines.append((name, statistics.median(a), statistics.median(b), ratio, better))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout A (the base)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B (the change)")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each (1-20)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- BENCH [options]")
    args = parser.parse_args(argv)
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    if not bench or bench[0] not in READERS:
        parser.error(f"give a benchmark after --: one of {', '.join(READERS)}")
    if not 1 <= args.pairs <= 20:
        parser.error(f"--pairs must be in 1..20, got {args.pairs}")
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for side, tree in trees.items():
        if not (tree / "python" / "dhtquery").is_dir():
            parser.error(f"checkout {side} ({tree}) has no python/dhtquery")
    runs: dict[str, list[Figures]] = {"A": [], "B": []}
    for index, side in enumerate(order(args.pairs), 1):
        figures = run_once(trees[side], bench, args.python, args.run_timeout)
        runs[side].append(figures)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(figures.items())[:4])
        print(f"run {index:2d} {side}: {shown}", flush=True)
    if args.json:
        trees_shown = {side: str(tree) for side, tree in trees.items()}
        args.json.write_text(
            json.dumps({"trees": trees_shown, "bench": bench, "runs": runs}, indent=1)
        )
    print(f"\n{len(runs['A'])} runs each, A = {trees['A']}, B = {trees['B']}")
    lines = summarize(runs)
    width = max((len(line[0]) for line in lines), default=10)
    print(f"{'figure':<{width}}  {'median A':>10}  {'median B':>10}  {'B/A':>6}  better")
    for name, a, b, ratio, better in lines:
        print(f"{name:<{width}}  {a:>10.4g}  {b:>10.4g}  {ratio:>6.3f}  {better}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

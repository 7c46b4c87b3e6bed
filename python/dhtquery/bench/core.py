"""Benchmark of the query core, three backends in one run: the pure-Python
core (``dhtquery.query._core_py``), that very file compiled by Cython 3 in
pure-Python mode at bench time, and the Rust core (``dhtquery._core``).

    dhtquery bench core [--quick] [--json FILE]
    python -m dhtquery.bench core [--quick] [--repeat N] [--json FILE]
                                  [--backends python,cython,rust]

Workloads (sizes of a full run; ``--quick`` divides them by 10):

a1/a2 ingest
    10,000 in-flight queries each get 60 results from 3 peers: 20 unique keys,
    every key from every peer, so 40 of the 60 are duplicates. Every peer's
    keys are fresh ``str`` objects (as decoded from its response), equal to
    the other peers'. ``max_results`` is 64, so no query completes and every
    offer goes through the dedup set (none is refused as FULL). a1 offers one
    result per ``offer``; a2 offers one ``offer_many`` batch of 20 per peer
    response. Queries, keys and batches are built before timing.
b lifecycle
    1,000,000 queries, one after another, each registered and finished with
    ``finish(qid, now, "adaptive")``; ``now`` advances 1 us per query. No
    ``expire`` runs, so every finished id stays as a tombstone (grace 5 s):
    the core ends holding 1,000,000 tombstones.
c expiry
    1,000,000 queries registered at once with timeouts uniform in
    [0.001, 10] s, then expired by calling ``expire(now)`` every 1 ms from the
    start to start + 10.001 s; the two phases are timed separately.
d memory
    RSS growth per in-flight query with 1,000,000 registered (max_results 20,
    3 expected peers) and no results, each measured in a fresh child process
    (``dhtquery.bench.memory_probe``).

The Rust core is ``dhtquery._core`` wherever ``dhtquery`` is imported from:
run with ``PYTHONPATH=python`` to use the source tree (with an extension built
there by ``maturin develop``), or without it to use an installed wheel. The
cython backend always compiles the ``dhtquery/query/_core_py.py`` of that same
``dhtquery`` (found through its import spec, not imported).

Each cell is the median of the repetitions (5 by default, 3 for memory; a2
at least enough for 900,000 offers a backend, see below), with
the GC collected, disabled and frozen while timing, and a correctness check
(the core's counters after the workload) recorded next to it. Repetitions are
interleaved across backends, in rotated order: a backend timed right after
another one ran on a heap that one left fragmented (expire, which frees 1M
scattered queries, is up to 25% slower so), and rotating spreads that.

a2's timed part is the shortest of all (~9 ms for rust at ``--quick``'s
size, where 60,000 offers a repetition): on a shared machine one
repetition's rust/python moved by more than 1x between runs of one build.
a2 therefore runs at least ``BATCH_OFFERS // offers per repetition``
repetitions (15 at ``--quick``'s size; the full size's 5 are already 3M
offers), interleaved and rotated like the others; its ratio is the ratio
of the backends' medians (wall time), and its target's line also gives
the spread of the ratio round by round (each round runs every backend
once, back to back) and the ratio of the medians in the thread's CPU time
(``time.thread_time_ns``, the row ``a2 (thread CPU time)``), which leaves
out the time the phase was descheduled.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..query import Counters
from .common import (
    Check,
    Recorder,
    Repetition,
    all_ok,
    check_equal,
    format_count,
    format_table,
    machine_info,
    median_samples,
    repeat,
    write_json,
)

PYTHON_CORE = "dhtquery.query._core_py"
MEMORY_PROBE = "dhtquery.bench.memory_probe"
DEFAULT_JSON = Path("bench-results") / "core.json"

BACKEND_NAMES = ("python", "cython", "rust")
CYTHON_MODULE = "_core_cython"
COUNTER_NAMES = Counters._fields

SEED = 20_240_601
START = 100.0  # seconds: the `now` every workload starts at
EXPECTED_PEERS = 3
MAX_RESULTS = 20  # Kademlia's k, for the workloads that offer no results

INGEST_UNIQUE_KEYS = 20
INGEST_MAX_RESULTS = 64  # > 20 unique keys: every offer goes through dedup
INGEST_TIMEOUT = 60.0
INGEST_NOW = START + 0.5
INGEST_KEY_BYTES = 20  # a 160-bit Kademlia key, offered as 40 hex digits
INGEST_ITEM = b"value"
INGEST_PEERS = tuple(f"10.0.0.{index}:4000" for index in range(EXPECTED_PEERS))

LIFECYCLE_TIMEOUT = 10.0
LIFECYCLE_STEP = 1e-6

EXPIRY_MIN_TIMEOUT = 0.001
EXPIRY_MAX_TIMEOUT = 10.0
EXPIRY_STEPS_MS = 10_001  # expire(now) from START to START + 10.001 s, every 1 ms

MEMORY_RUNS = 3

#: a2 repeats until each backend has offered at least this many (in
#: repetitions of a whole workload): 15 repetitions at ``--quick``'s size.
#: With 3 (60,000 offers each), three ``--quick`` runs of the same core
#: gave a2 rust/python 9.02x to 10.58x; README gives the spread with 15.
BATCH_OFFERS = 900_000


# -- sizes and backends ------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    ingest_queries: int
    lifecycle_queries: int
    expiry_queries: int
    memory_queries: int
    repetitions: int


FULL_SIZES = Sizes(10_000, 1_000_000, 1_000_000, 1_000_000, repetitions=5)
QUICK_SIZES = Sizes(1_000, 100_000, 100_000, 100_000, repetitions=3)


@dataclass
class Backend:
    name: str
    module_name: str  # importable, in a child process too, with extra_path
    extra_path: str | None = None
    module: ModuleType | None = None
    skip_reason: str | None = None

    def new_core(self) -> Any:
        if self.module is None:
            raise RuntimeError(f"backend {self.name} is not loaded")
        return self.module.QueryCore()


def import_backend(name: str, module_name: str, extra_path: str | None = None) -> Backend:
    backend = Backend(name, module_name, extra_path)
    if extra_path is not None and extra_path not in sys.path:
        sys.path.insert(0, extra_path)
    try:
        backend.module = importlib.import_module(module_name)
    except ImportError as exc:
        backend.skip_reason = f"cannot import {module_name}: {exc}"
    return backend


def core_source() -> Path:
    """The pure-Python core's file in the ``dhtquery`` this runs from
    (source tree or installed wheel), located without importing it."""
    spec = importlib.util.find_spec(PYTHON_CORE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find {PYTHON_CORE}")
    return Path(spec.origin)


def build_cython_core(build_dir: Path) -> str | None:
    """Compile :func:`core_source` with Cython (language_level 3) into an extension
    module in ``build_dir``. Returns None, or why it could not."""
    if importlib.util.find_spec("Cython") is None:
        return "Cython is not installed (pip install cython setuptools)"
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (pip install setuptools)"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler: {compiler!r} is not on PATH"
    source = build_dir / f"{CYTHON_MODULE}.py"
    shutil.copyfile(core_source(), source)
    command = [sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q", source.name]
    build = subprocess.run(command, cwd=build_dir, capture_output=True, text=True, check=False)
    # Without the source, the import can only find the extension module.
    source.unlink()
    if build.returncode != 0:
        tail = (build.stderr or build.stdout).strip().splitlines()[-3:]
        return "the Cython build failed: " + " | ".join(tail)
    return None


def load_cython_backend(build_dir: Path) -> Backend:
    reason = build_cython_core(build_dir)
    if reason is not None:
        return Backend("cython", CYTHON_MODULE, str(build_dir), skip_reason=reason)
    return import_backend("cython", CYTHON_MODULE, str(build_dir))


def load_backend(name: str, build_dir: Path) -> Backend:
    if name == "python":
        return import_backend(name, PYTHON_CORE)
    if name == "cython":
        return load_cython_backend(build_dir)
    return import_backend(name, "dhtquery._core")


def describe_backends(backends: Sequence[Backend]) -> list[str]:
    """One line per backend: where it was loaded from, or why it is skipped."""
    lines = []
    for backend in backends:
        if backend.module is None:
            lines.append(f"backend {backend.name}: SKIPPED, {backend.skip_reason}")
            continue
        source = str(backend.module.__file__)
        lines.append(f"backend {backend.name}: {source}")
        if backend.name == "python" and Path(source).read_bytes() != core_source().read_bytes():
            lines.append(
                f"  note: this is not the file the cython backend compiles: {core_source()}"
            )
    return lines


# -- checks ------------------------------------------------------------------


def counters_of(core: Any) -> dict[str, int]:
    return dict(zip(COUNTER_NAMES, core.counters(), strict=True))


def expected_counters(**nonzero: int) -> dict[str, int]:
    unknown = set(nonzero) - set(COUNTER_NAMES)
    if unknown:
        raise ValueError(f"no such counters: {sorted(unknown)}")
    return {name: nonzero.get(name, 0) for name in COUNTER_NAMES}


def check_ingest(core: Any, queries: int) -> Check:
    duplicates_per_query = (EXPECTED_PEERS - 1) * INGEST_UNIQUE_KEYS
    expected = expected_counters(
        total=queries,
        in_flight=queries,
        results=queries * INGEST_UNIQUE_KEYS,
        duplicates=queries * duplicates_per_query,
    )
    return check_equal(expected, counters_of(core))


# -- workloads ---------------------------------------------------------------

#: (query id, peer, [(key, item), ...]): one peer's response to one query.
Batch = tuple[object, str, list[tuple[str, object]]]


def prepare_ingest(backend: Backend, queries: int) -> tuple[Any, list[Batch]]:
    """A core with ``queries`` in flight, and every peer's batch for each, in
    arrival order: each peer answers every query in turn."""
    rng = random.Random(SEED)
    core = backend.new_core()
    query_ids = [
        core.register(INGEST_TIMEOUT, INGEST_MAX_RESULTS, EXPECTED_PEERS, START)
        for _ in range(queries)
    ]
    raw_keys = [
        [rng.randbytes(INGEST_KEY_BYTES) for _ in range(INGEST_UNIQUE_KEYS)] for _ in query_ids
    ]
    batches: list[Batch] = [
        (query_id, peer, [(raw.hex(), INGEST_ITEM) for raw in keys])
        for peer in INGEST_PEERS
        for query_id, keys in zip(query_ids, raw_keys, strict=True)
    ]
    return core, batches


def run_ingest_single(backend: Backend, queries: int, recorder: Recorder) -> Check:
    core, batches = prepare_ingest(backend, queries)
    offers = [(query_id, peer, key) for query_id, peer, batch in batches for key, _ in batch]
    del batches
    offer = core.offer
    with recorder.timed("offer"):
        for query_id, peer, key in offers:
            offer(query_id, peer, key, INGEST_ITEM, INGEST_NOW)
    return check_ingest(core, queries)


def run_ingest_batch(backend: Backend, queries: int, recorder: Recorder) -> Check:
    core, batches = prepare_ingest(backend, queries)
    offer_many = core.offer_many
    with recorder.timed("offer_many"):
        cpu_start = time.thread_time_ns()
        for query_id, peer, batch in batches:
            offer_many(query_id, peer, batch, INGEST_NOW)
        cpu = time.thread_time_ns() - cpu_start
    # The thread's CPU time too: on a shared machine a 9 ms phase is
    # descheduled in some repetitions and not in others (its wall time
    # then moves by more than the cores differ); CPU time leaves that out.
    recorder.record("offer_many_cpu", cpu)
    return check_ingest(core, queries)


def run_lifecycle(backend: Backend, queries: int, recorder: Recorder) -> Check:
    core = backend.new_core()
    nows = [START + index * LIFECYCLE_STEP for index in range(queries)]
    register, finish = core.register, core.finish
    with recorder.timed("lifecycle"):
        for now in nows:
            finish(register(LIFECYCLE_TIMEOUT, MAX_RESULTS, EXPECTED_PEERS, now), now, "adaptive")
    expected = expected_counters(total=queries, successful=queries)
    expected |= {"tombstones": queries, "latency_count": queries}
    actual = counters_of(core) | {"tombstones": core.tombstones, "latency_count": core.latency()[0]}
    return check_equal(expected, actual)


def expiry_timeouts(queries: int) -> list[float]:
    rng = random.Random(SEED)
    return [rng.uniform(EXPIRY_MIN_TIMEOUT, EXPIRY_MAX_TIMEOUT) for _ in range(queries)]


def expiry_nows() -> list[float]:
    start_ms = round(START * 1000)
    return [(start_ms + step) / 1000 for step in range(EXPIRY_STEPS_MS + 1)]


def run_expiry(backend: Backend, queries: int, recorder: Recorder) -> Check:
    core = backend.new_core()
    timeouts = expiry_timeouts(queries)
    nows = expiry_nows()
    register, expire = core.register, core.expire
    with recorder.timed("register"):
        for timeout in timeouts:
            register(timeout, MAX_RESULTS, EXPECTED_PEERS, START)
    outcomes = 0
    with recorder.timed("expire"):
        for now in nows:
            outcomes += len(expire(now))
    expected = expected_counters(total=queries, timed_out=queries)
    expected |= {"outcomes": queries, "latency_count": queries}
    actual = counters_of(core) | {"outcomes": outcomes, "latency_count": core.latency()[0]}
    return check_equal(expected, actual)


def run_memory(backend: Backend, queries: int, recorder: Recorder) -> Check:
    command = [sys.executable, "-m", MEMORY_PROBE, backend.module_name, str(queries)]
    command.append(str(MAX_RESULTS))
    if backend.extra_path is not None:
        command.append(backend.extra_path)
    probe = subprocess.run(command, capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        tail = probe.stderr.strip().splitlines()[-1:] or [f"exit status {probe.returncode}"]
        raise RuntimeError(f"memory probe failed: {tail[0]}")
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    recorder.record("bytes_per_query", report["bytes_per_query"])
    check = check_equal({"in_flight": queries}, {"in_flight": report["in_flight"]})
    return check | {"probe": report}


@dataclass(frozen=True)
class Phase:
    name: str  # the sample's key
    label: str  # the table's row label
    ops: int  # operations per repetition (offers, queries); 0 for a size
    unit: str  # what one operation is ("offer"), or the unit of a size
    rate_unit: str = ""  # operations per second ("offers/s")
    kind: str = "time"  # "time": the sample is ns; "bytes": it is bytes per query


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    count: int
    phases: tuple[Phase, ...]
    run: Callable[[Backend, int, Recorder], Check]
    repetitions: int


def batch_repetitions(offers: int, repetitions: int) -> int:
    """a2's repetitions: ``repetitions``, or more if fewer would offer
    less than ``BATCH_OFFERS`` a backend (``offers`` a repetition)."""
    return max(repetitions, -(-BATCH_OFFERS // max(offers, 1)))


def build_workloads(sizes: Sizes, repetitions: int) -> list[Workload]:
    ingest = sizes.ingest_queries
    offers = ingest * INGEST_UNIQUE_KEYS * EXPECTED_PEERS
    lifecycle, expiry, memory = sizes.lifecycle_queries, sizes.expiry_queries, sizes.memory_queries
    memory_bytes = Phase("bytes_per_query", "d  memory", 0, "bytes/query", kind="bytes")
    return [
        Workload(
            "a1",
            f"ingest: {ingest:,} queries x 60 results, one offer() each ({offers:,} offers)",
            ingest,
            (Phase("offer", "a1 ingest offer", offers, "offer", "offers/s"),),
            run_ingest_single,
            repetitions,
        ),
        Workload(
            "a2",
            f"ingest: {ingest:,} queries x 3 offer_many() batches of 20 ({offers:,} offers)",
            ingest,
            (
                Phase("offer_many", "a2 ingest offer_many", offers, "offer", "offers/s"),
                Phase("offer_many_cpu", "a2 (thread CPU time)", offers, "offer", "offers/s"),
            ),
            run_ingest_batch,
            batch_repetitions(offers, repetitions),
        ),
        Workload(
            "b",
            f"lifecycle: register + finish(adaptive) of {lifecycle:,} queries",
            lifecycle,
            (Phase("lifecycle", "b  lifecycle", lifecycle, "query", "queries/s"),),
            run_lifecycle,
            repetitions,
        ),
        Workload(
            "c",
            f"expiry: register {expiry:,} queries (timeouts 1 ms..10 s), "
            f"then expire(now) every 1 ms for 10.001 s",
            expiry,
            (
                Phase("register", "c  expiry register", expiry, "query", "queries/s"),
                Phase("expire", "c  expiry expire", expiry, "query", "queries/s"),
            ),
            run_expiry,
            repetitions,
        ),
        Workload(
            "d",
            f"memory: RSS growth per in-flight query, {memory:,} in flight, no results "
            f"(max_results {MAX_RESULTS}), a fresh process per run",
            memory,
            (memory_bytes,),
            run_memory,
            min(MEMORY_RUNS, repetitions),
        ),
    ]


# -- measuring ---------------------------------------------------------------


@dataclass
class Cell:
    """One workload on one backend."""

    backend: str
    repetitions: list[Repetition]
    medians: dict[str, float]
    ok: bool


@dataclass
class WorkloadResult:
    workload: Workload
    cells: dict[str, Cell] = field(default_factory=dict)

    def ratio(self, phase: Phase, baseline: str) -> float | None:
        """Rust against ``baseline``: the speedup (baseline time / rust time)
        of a timed phase, or rust bytes / baseline bytes."""
        rust, base = self.cells.get("rust"), self.cells.get(baseline)
        if rust is None or base is None:
            return None
        rust_value, base_value = rust.medians.get(phase.name), base.medians.get(phase.name)
        if not rust_value or not base_value:
            return None
        if phase.kind == "time":
            return base_value / rust_value
        return rust_value / base_value

    def round_ratios(self, phase: Phase, baseline: str) -> list[float]:
        """``ratio`` round by round: repetition i of ``baseline`` against
        repetition i of rust (the same round runs them back to back)."""
        rust, base = self.cells.get("rust"), self.cells.get(baseline)
        if rust is None or base is None:
            return []
        ratios = []
        for ours, theirs in zip(rust.repetitions, base.repetitions, strict=False):
            rust_value, base_value = ours.samples.get(phase.name), theirs.samples.get(phase.name)
            if rust_value and base_value:
                ratios.append(
                    base_value / rust_value if phase.kind == "time" else rust_value / base_value
                )
        return ratios


def measure_workload(workload: Workload, backends: Sequence[Backend]) -> WorkloadResult:
    print(f"{workload.key}: {workload.title}", file=sys.stderr)
    runs = {b.name: functools.partial(workload.run, b, workload.count) for b in backends}
    result = WorkloadResult(workload)
    for name, repetitions in repeat(runs, workload.repetitions).items():
        cell = Cell(name, repetitions, median_samples(repetitions), all_ok(repetitions))
        print(f"  {workload.key:<2} {name:<6} {progress_note(cell)}", file=sys.stderr)
        result.cells[name] = cell
    return result


def progress_note(cell: Cell) -> str:
    medians = ", ".join(f"{name} {value:,.0f}" for name, value in cell.medians.items())
    status = "ok" if cell.ok else f"CHECK FAILED: {cell.repetitions[-1].check}"
    return f"{len(cell.repetitions)} runs, medians {medians or '-'}; {status}"


# -- reporting ---------------------------------------------------------------

RATIO_BASELINES = ("python", "cython")


def value_cell(cell: Cell | None, phase: Phase, value: Callable[[float], str]) -> str:
    if cell is None or phase.name not in cell.medians:
        return "-"
    return value(cell.medians[phase.name]) + ("" if cell.ok else " !")


def ratio_cell(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def phase_rows(result: WorkloadResult, phase: Phase, backends: Sequence[str]) -> list[list[str]]:
    cells = [result.cells.get(name) for name in backends]
    ratios = [ratio_cell(result.ratio(phase, base)) for base in RATIO_BASELINES]
    if phase.kind == "bytes":
        sizes = [value_cell(cell, phase, "{:,.1f}".format) for cell in cells]
        return [[phase.label, phase.unit, *sizes, *ratios]]
    rate = [value_cell(c, phase, lambda ns: format_count(phase.ops * 1e9 / ns)) for c in cells]
    per_op = [value_cell(c, phase, lambda ns: f"{ns / phase.ops:,.1f}") for c in cells]
    seconds = [value_cell(c, phase, lambda ns: f"{ns / 1e9:.3f}") for c in cells]
    return [
        [phase.label, phase.rate_unit, *rate, *ratios],
        ["", f"ns/{phase.unit}", *per_op, "", ""],
        ["", "s total", *seconds, "", ""],
    ]


def derived_metrics(phase: Phase, median: float) -> dict[str, float]:
    """The median in the units the table shows."""
    if phase.kind == "bytes":
        return {phase.unit: median}
    return {
        "seconds": median / 1e9,
        f"ns/{phase.unit}": median / phase.ops,
        phase.rate_unit: phase.ops * 1e9 / median,
    }


def results_table(results: Sequence[WorkloadResult]) -> str:
    headers = ["workload", "metric", *BACKEND_NAMES, "rust/python", "rust/cython"]
    rows = [
        row
        for result in results
        for phase in result.workload.phases
        for row in phase_rows(result, phase, BACKEND_NAMES)
    ]
    return format_table(headers, rows, left_columns=2)


@dataclass(frozen=True)
class Target:
    description: str
    workload: str
    phase: str
    min_speedup: float | None = None  # rust over python
    max_bytes: float | None = None  # rust
    cpu_phase: str | None = None  # the phase in CPU time, shown next to it


TARGETS = (
    Target(
        "a2 batch ingest: rust >= 10x python",
        "a2",
        "offer_many",
        min_speedup=10.0,
        cpu_phase="offer_many_cpu",
    ),
    Target("c  expiry (expire phase): rust >= 10x python", "c", "expire", min_speedup=10.0),
    Target("a1 single-result ingest: rust >= 3x python", "a1", "offer", min_speedup=3.0),
    Target("b  lifecycle: rust >= 3x python", "b", "lifecycle", min_speedup=3.0),
    Target(
        "d  memory: rust <= 256 bytes per in-flight query", "d", "bytes_per_query", max_bytes=256.0
    ),
)


def evaluate_target(target: Target, results: Sequence[WorkloadResult]) -> dict[str, Any]:
    result = next(r for r in results if r.workload.key == target.workload)
    phase = next(p for p in result.workload.phases if p.name == target.phase)
    needed = ("rust",) if target.max_bytes is not None else ("rust", "python")
    cells = [result.cells.get(name) for name in needed]
    unit = "bytes" if target.max_bytes is not None else "x"
    verdict: dict[str, Any] = {"target": target.description, "unit": unit}
    if any(cell is None or target.phase not in cell.medians for cell in cells):
        missing = " or ".join(needed)
        return verdict | {"measured": None, "met": None, "note": f"not measured: {missing} missing"}
    if target.max_bytes is not None:
        measured = result.cells["rust"].medians[target.phase]
        met = measured <= target.max_bytes
    else:
        measured = result.ratio(phase, "python") or 0.0
        met = measured >= (target.min_speedup or 0.0)
    checks_ok = all(cell is not None and cell.ok for cell in cells)
    note = "" if checks_ok else "a correctness check failed"
    rounds = result.round_ratios(phase, "python") if target.min_speedup is not None else []
    cpu_phase = next((p for p in result.workload.phases if p.name == target.cpu_phase), None)
    return verdict | {
        "measured": measured,
        "met": met and checks_ok,
        "note": note,
        "rounds": spread(rounds),
        "cpu": None if cpu_phase is None else result.ratio(cpu_phase, "python"),
    }


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """How many, their quartiles and extremes; None for fewer than 2."""
    if len(values) < 2:
        return None
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "count": len(values),
        "min": min(values),
        "q1": low,
        "median": median,
        "q3": high,
        "max": max(values),
    }


def target_line(verdict: dict[str, Any]) -> str:
    if verdict["met"] is None:
        return f"  [  ??   ] {verdict['target']}: {verdict['note']}"
    mark = "  met  " if verdict["met"] else "NOT met"
    measured = f"{verdict['measured']:.2f}" + (" bytes" if verdict["unit"] == "bytes" else "x")
    note = f" ({verdict['note']})" if verdict["note"] else ""
    rounds = verdict.get("rounds")
    if rounds is not None:
        note += (
            f"; round by round {rounds['q1']:.2f}-{rounds['q3']:.2f}x"
            f" (quartiles of {rounds['count']}, all {rounds['min']:.2f}-{rounds['max']:.2f}x)"
        )
    if verdict.get("cpu") is not None:
        note += f"; in thread CPU time {verdict['cpu']:.2f}x"
    return f"  [{mark}] {verdict['target']}: measured {measured}{note}"


def json_report(
    args: argparse.Namespace,
    sizes: Sizes,
    backends: Sequence[Backend],
    results: Sequence[WorkloadResult],
    verdicts: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "machine": machine_info(),
        "settings": {
            "quick": args.quick,
            "repetitions": results[0].workload.repetitions if results else None,
            "sizes": asdict(sizes),
            "seed": SEED,
            "gc": "collected, disabled and frozen while timing",
        },
        "backends": {
            b.name: {
                "available": b.module is not None,
                "module": getattr(b.module, "__file__", None),
                "skip_reason": b.skip_reason,
            }
            for b in backends
        },
        "workloads": [workload_json(result) for result in results],
        "targets": list(verdicts),
    }


def workload_json(result: WorkloadResult) -> dict[str, Any]:
    workload = result.workload
    return {
        "key": workload.key,
        "title": workload.title,
        "count": workload.count,
        "repetitions": workload.repetitions,
        "phases": [asdict(phase) for phase in workload.phases],
        "cells": {name: asdict(cell) for name, cell in result.cells.items()},
        "medians": {
            name: {
                phase.name: derived_metrics(phase, cell.medians[phase.name])
                for phase in workload.phases
                if phase.name in cell.medians
            }
            for name, cell in result.cells.items()
        },
        "ratios": {
            phase.name: {f"rust/{base}": result.ratio(phase, base) for base in RATIO_BASELINES}
            for phase in workload.phases
        },
    }


# -- main --------------------------------------------------------------------


def parse_backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"backends are a comma list of {BACKEND_NAMES}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes / 10, 3 repetitions")
    parser.add_argument(
        "--repeat",
        type=int,
        help="repetitions per cell (default 5, quick 3; a2 at least 900,000 offers' worth)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument(
        "--backends", type=parse_backends, default=list(BACKEND_NAMES), help="comma list"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    workloads = build_workloads(sizes, args.repeat or sizes.repetitions)
    with tempfile.TemporaryDirectory(prefix="dhtquery-bench-") as build_dir:
        backends = [load_backend(name, Path(build_dir)) for name in args.backends]
        print("\n".join(describe_backends(backends)))
        loaded = [backend for backend in backends if backend.module is not None]
        if not loaded:
            print("no backend could be loaded: nothing to measure")
            return 2
        results = [measure_workload(workload, loaded) for workload in workloads]
    verdicts = [evaluate_target(target, results) for target in TARGETS]
    print()
    print("\n".join(f"{r.workload.key:<2} {r.workload.title}" for r in results))
    print()
    print(results_table(results))
    print(
        "\nrust/python, rust/cython: speedup (their time / rust's) for rates; "
        "rust's bytes / theirs for memory. '!' marks a failed correctness check."
    )
    print("\ntargets:")
    print("\n".join(target_line(verdict) for verdict in verdicts))
    write_json(args.json, json_report(args, sizes, backends, results, verdicts))
    print(f"\nJSON: {args.json}")
    failed = [
        f"{r.workload.key}/{name}" for r in results for name, c in r.cells.items() if not c.ok
    ]
    if failed:
        print(f"correctness checks FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    # run as the module of its own name (``python -m`` makes this one
    # ``__main__``): the network workers import hooks and classes by name
    from dhtquery.bench import run

    sys.exit(run("core", sys.argv[1:]))

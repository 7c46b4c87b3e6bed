"""Helpers shared by the benchmarks of ``dhtquery.bench``: timing with the garbage
collector out of the way, the one repetition loop, medians, a plain-text
table, machine information and JSON output.

Every benchmark records, per repetition, a dict of samples (a phase's
nanoseconds, or any other measured value) next to a correctness check, so a
fast but wrong number is never reported without saying so.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Check",
    "Recorder",
    "Repetition",
    "all_ok",
    "bounded",
    "check_equal",
    "format_count",
    "format_table",
    "gc_quiet",
    "machine_info",
    "median_samples",
    "repeat",
    "run_once",
    "udp_drops",
    "write_json",
]

#: A correctness check: ``{"ok": bool, ...details}``.
Check = dict[str, Any]


@contextmanager
def gc_quiet() -> Iterator[None]:
    """Collect, then disable the GC and ``gc.freeze()`` every object alive, as
    orjson's benchmarks do: a timed phase pays for neither a collection nor a
    traversal of the setup's objects."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


@dataclass
class Recorder:
    """The samples of one repetition, by phase name."""

    samples: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Time the block in nanoseconds, with the GC quiet."""
        with gc_quiet():
            start = time.perf_counter_ns()
            yield
            self.samples[phase] = float(time.perf_counter_ns() - start)

    def record(self, phase: str, value: float) -> None:
        """Record a value measured some other way (bytes, counts)."""
        self.samples[phase] = float(value)


@dataclass
class Repetition:
    samples: dict[str, float]
    check: Check


def run_once(run: Callable[[Recorder], Check]) -> Repetition:
    """One repetition. An exception becomes a failed check holding the
    exception's last line, so one broken backend does not stop a benchmark."""
    recorder = Recorder()
    try:
        check = run(recorder)
    except Exception as exc:
        check = {"ok": False, "error": traceback.format_exception_only(exc)[-1].strip()}
    finally:
        gc.collect()
    return Repetition(recorder.samples, check)


def repeat(
    runs: Mapping[str, Callable[[Recorder], Check]], times: int
) -> dict[str, list[Repetition]]:
    """Run each of ``runs`` (by contender name) ``times`` times, interleaved
    and rotated: repetition i runs every contender once, starting from the
    i-th, so none always runs on the heap the same other one left behind. A
    contender that raises is not run again."""
    names = list(runs)
    repetitions: dict[str, list[Repetition]] = {name: [] for name in names}
    for index in range(times if names else 0):
        first = index % len(names)
        for name in names[first:] + names[:first]:
            done = repetitions[name]
            if done and "error" in done[-1].check:
                continue
            done.append(run_once(runs[name]))
    return repetitions


def median_samples(repetitions: Sequence[Repetition]) -> dict[str, float]:
    """Median of each phase over the repetitions that recorded it."""
    phases: dict[str, list[float]] = {}
    for repetition in repetitions:
        for phase, value in repetition.samples.items():
            phases.setdefault(phase, []).append(value)
    return {phase: statistics.median(values) for phase, values in phases.items()}


def all_ok(repetitions: Sequence[Repetition]) -> bool:
    return bool(repetitions) and all(rep.check.get("ok") is True for rep in repetitions)


def check_equal(expected: Mapping[str, object], actual: Mapping[str, object]) -> Check:
    """A check that passes when every expected item is there with that value."""
    ok = all(actual.get(name) == value for name, value in expected.items())
    return {"ok": ok, "expected": dict(expected), "actual": dict(actual)}


def format_count(value: float) -> str:
    """``1234567.0`` -> ``'1.23 M'``: three significant figures, SI prefix."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g}"


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left_columns: int = 1
) -> str:
    """Columns padded to their widest cell, the first ``left_columns``
    left-aligned and the rest right-aligned, with a rule under the headers."""
    widths = [max(len(row[col]) for row in [headers, *rows]) for col in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.ljust(width) if col < left_columns else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def machine_info() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": uname.machine,
        "processor": _cpu_model() or uname.processor,
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def udp_drops(port: int) -> int | None:
    """Datagrams the kernel dropped at the IPv4 UDP socket bound to ``port``
    (its receive buffer was full: the reader fell behind), from the
    ``drops`` column of ``/proc/net/udp``; None where that file is not
    there (not Linux) or no socket has that port. The snmp counter
    (``RcvbufErrors``) is the whole machine's: this one says whose."""
    try:
        with open("/proc/net/udp", encoding="ascii") as table:
            next(table)  # the header
            for line in table:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return int(fields[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None


def write_json(path: Path, data: object) -> None:
    """Write ``data`` (dataclasses allowed) as indented JSON, creating the
    directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_to_json) + "\n", encoding="utf-8")


def _to_json(value: object) -> object:
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return asdict(value)  # type: ignore[call-overload]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


async def bounded(jobs: list[Callable[[], Awaitable[Any]]], width: int) -> list[Any]:
    """Run ``jobs`` with at most ``width`` at once, results in order."""
    results: list[Any] = [None] * len(jobs)
    cursor = iter(range(len(jobs)))

    async def worker() -> None:
        for index in cursor:
            results[index] = await jobs[index]()

    await asyncio.gather(*(worker() for _ in range(width)))
    return results

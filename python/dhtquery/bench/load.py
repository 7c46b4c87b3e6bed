"""The load loops of the DHT and registry benchmarks, written once: a closed
loop (N workers, each starting its next operation when its last one ends),
an open loop (operation i started at t0 + i/rate whatever the others do,
its latency counted from that scheduled time), the warm-up, failure kinds,
and the one percentile helper.

Units: every time a loop records is in seconds (``*_s``); latency
percentiles and CDFs are reported in milliseconds (``*_ms``). An operation
is ``op(index)`` for index 0, 1, 2, ...: it returns None when it succeeded,
else the kind of failure (a string); an exception counts as the failure
``"error: <ExceptionName>"``, an operation still running when the phase's
time is up as ``"unfinished"``.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "UNFINISHED",
    "WARMUP_CONCURRENCY",
    "CpuClock",
    "Operation",
    "Phase",
    "cdf_points",
    "closed_loop",
    "open_loop",
    "percentiles_ms",
    "settle",
    "sleep_until",
    "warm_up",
    "window_p99s_ms",
]

#: op(index) -> None on success, else the kind of failure
Operation = Callable[[int], Awaitable[str | None]]
#: CPU seconds of the other side (the network's processes) so far, or None
CpuClock = Callable[[], float | None]

#: The failure kind of an operation still running at the phase's time limit.
UNFINISHED: Final = "unfinished"
#: Workers of a warm-up's closed loop.
WARMUP_CONCURRENCY: Final = 16
QUANTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9)
#: The open loop's p99 is also taken per window of this many seconds of
#: scheduled starts (see ``window_p99s_ms``).
P99_WINDOW_S: Final = 1.0


@dataclass
class Phase:
    """One measured phase: counts, failures by kind, latencies and CPU
    (seconds)."""

    count: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    network_cpu_s: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    #: an open loop's: when each sample of ``latencies_s`` (same order) was
    #: scheduled, seconds from the phase's start
    scheduled_s: list[float] = field(default_factory=list)
    #: an open loop's: the seconds over which its starts were scheduled
    span_s: float = 0.0

    def add(self, failure: str | None, latency_s: float, scheduled_s: float | None = None) -> None:
        self.count += 1
        self.latencies_s.append(latency_s)
        if scheduled_s is not None:
            self.scheduled_s.append(scheduled_s)
        if failure is None:
            self.ok += 1
        else:
            self.failures[failure] += 1

    def unfinished(self, count: int) -> None:
        self.count += count
        if count:
            self.failures[UNFINISHED] += count

    @property
    def success(self) -> float:
        return self.ok / self.count if self.count else 0.0

    def percentiles_ms(self) -> dict[str, float]:
        return percentiles_ms(self.latencies_s)

    def window_p99s_ms(self) -> list[float]:
        """An open loop's p99 per ``P99_WINDOW_S`` of scheduled starts
        ([] for a closed loop)."""
        return window_p99s_ms(self.latencies_s, self.scheduled_s, self.span_s, P99_WINDOW_S)

    def summary(self) -> dict[str, Any]:
        windows = self.window_p99s_ms()
        return {
            "count": self.count,
            "ok": self.ok,
            "success": self.success,
            "failures": dict(self.failures),
            "elapsed_s": self.elapsed_s,
            "ok_per_s": self.ok / self.elapsed_s if self.elapsed_s else 0.0,
            "latency_ms": self.percentiles_ms(),
            "cdf_ms": cdf_points([latency * 1e3 for latency in self.latencies_s]),
            "p99_by_window_ms": windows,
            "p99_window_median_ms": statistics.median(windows) if windows else None,
            "client_cpu_s": self.client_cpu_s,
            "network_cpu_s": self.network_cpu_s,
            **self.extra,
        }


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99/p99.9, max and mean of ``latencies_s`` (seconds), in
    milliseconds, from an HDR histogram (``hdrh``: 1 us to 10 min, 3
    significant digits); from the sorted samples without it (then
    ``"source": "sorted samples"``). Empty for no samples."""
    if not latencies_s:
        return {}
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        ordered = sorted(latencies_s)
        last = len(ordered) - 1
        result: dict[str, Any] = {
            f"p{q:g}": ordered[round(q / 100 * last)] * 1e3 for q in QUANTILES
        }
        result["max"] = ordered[-1] * 1e3
        result["mean"] = statistics.fmean(ordered) * 1e3
        result["source"] = "sorted samples"
        return result
    histogram = HdrHistogram(1, 600_000_000, 3)  # microseconds, 1 us to 10 min
    for latency in latencies_s:
        histogram.record_value(max(1, round(latency * 1e6)))
    result = {f"p{q:g}": histogram.get_value_at_percentile(q) / 1e3 for q in QUANTILES}
    result["max"] = histogram.get_max_value() / 1e3
    result["mean"] = histogram.get_mean_value() / 1e3
    return result


def window_p99s_ms(
    latencies_s: Sequence[float], scheduled_s: Sequence[float], span_s: float, window_s: float
) -> list[float]:
    """The p99 (ms) of the samples scheduled in each whole window of
    ``window_s`` seconds of the ``span_s`` over which starts were
    scheduled, in order (a window with no sample finished is left out; a
    last partial window too); [] when ``scheduled_s`` does not pair with
    ``latencies_s``.

    Why: a phase's one p99 is its 1 % slowest, which one stall of a shared
    machine (another process, a compile) fills on its own: the 1 s phase of
    ``bench dht`` at 1,000/s gave p99s 10x apart between runs of one build.
    The median of per-window p99s over a longer phase is what one such
    stall cannot move, so it is the figure to compare two builds by."""
    if not scheduled_s or len(scheduled_s) != len(latencies_s) or window_s <= 0:
        return []
    whole = int(span_s / window_s + 1e-9)
    windows: list[list[float]] = [[] for _ in range(whole)]
    for latency, scheduled in zip(latencies_s, scheduled_s, strict=True):
        index = int(scheduled / window_s)
        if 0 <= index < whole:
            windows[index].append(latency)
    return [percentiles_ms(samples)["p99"] for samples in windows if samples]


def cdf_points(samples: Sequence[float], points: int = 200) -> list[list[float]]:
    """The empirical CDF of ``samples`` as at most ``points`` sorted
    ``[value, fraction <= value]`` pairs, evenly spaced in rank and always
    including the smallest and the largest sample (for ``latency.cdf_ms``,
    which ``dhtquery.cli.plots`` draws as is)."""
    ordered = sorted(samples)
    count = len(ordered)
    if count == 0:
        return []
    if count <= points:
        ranks: Sequence[int] = range(count)
    else:
        ranks = sorted({round(i * (count - 1) / (points - 1)) for i in range(points)})
    return [[ordered[rank], (rank + 1) / count] for rank in ranks]


async def sleep_until(when: float, clock: Callable[[], float] = time.perf_counter) -> None:
    """Return once ``clock() >= when``. An open loop must not start a request
    before its scheduled time, or its latency (counted from that time) comes
    out short, even negative: uvloop's timers have a 1 ms resolution and
    fire up to a millisecond early, so the rest is waited out yielding to the
    loop (bounded: at most that millisecond)."""
    delay = when - clock()
    if delay > 0:
        await asyncio.sleep(delay)
    while clock() < when:
        await asyncio.sleep(0)


#: settle(): the network counts as idle once it used under this fraction of
#: one CPU over a window; the window; the longest wait.
IDLE_FRACTION: Final = 0.08
IDLE_WINDOW_S: Final = 0.25
SETTLE_MAX_S: Final = 20.0


async def settle(
    network_cpu: CpuClock, *, window: float = IDLE_WINDOW_S, max_seconds: float = SETTLE_MAX_S
) -> float:
    """Wait until the network is idle (its CPU time grew by under
    ``IDLE_FRACTION`` of a ``window`` in one), at most ``max_seconds``;
    the seconds waited. Between phases: a phase that offered more than the
    network serves leaves requests queued in its sockets, and the next
    phase, another contender's, would be measured against that backlog
    (the registry bench's naive contender, 10,000 requests/s offered to one
    process, left it busy for ~2 s after its phase ended). Without a CPU
    clock (not Linux), a fixed 0.2 s."""
    started = time.perf_counter()
    before = network_cpu()
    if before is None:
        await asyncio.sleep(0.2)
        return time.perf_counter() - started
    windows = max(1, int(max_seconds / window))
    for _ in range(windows):
        await asyncio.sleep(window)
        after = network_cpu()
        if after is None or after - before < IDLE_FRACTION * window:
            break
        before = after
    return time.perf_counter() - started


async def _run(op: Operation, index: int) -> str | None:
    try:
        return await op(index)
    except Exception as exc:  # a failed operation is counted, not fatal
        return f"error: {type(exc).__name__}"


class _Cpu:
    """CPU time of this process and of the other side over a phase."""

    def __init__(self, network_cpu: CpuClock | None) -> None:
        self.network_cpu = network_cpu
        self.client = time.process_time()
        self.network = network_cpu() if network_cpu else None

    def stop(self, phase: Phase) -> None:
        phase.client_cpu_s = time.process_time() - self.client
        if self.network is not None and self.network_cpu is not None:
            phase.network_cpu_s = (self.network_cpu() or 0.0) - self.network


async def closed_loop(
    op: Operation,
    *,
    concurrency: int,
    max_count: int,
    max_seconds: float,
    drain_seconds: float,
    network_cpu: CpuClock | None = None,
) -> Phase:
    """``concurrency`` workers, each starting its next operation when its
    last one ends, until ``max_seconds`` have passed or ``max_count`` have
    started; an operation still running ``drain_seconds`` after that is
    cancelled and counted unfinished. Latency: from its start."""
    phase = Phase()
    counter = itertools.count()
    clock = time.perf_counter
    cpu = _Cpu(network_cpu)
    start = clock()
    deadline = start + max_seconds

    async def worker() -> None:
        while clock() < deadline:
            index = next(counter)
            if index >= max_count:
                return
            sent = clock()
            failure = await _run(op, index)
            phase.add(failure, clock() - sent)

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=max_seconds + drain_seconds)
    for task in pending:
        task.cancel()
    phase.unfinished(len(pending))
    phase.elapsed_s = clock() - start
    cpu.stop(phase)
    await asyncio.gather(*pending, return_exceptions=True)
    return phase


async def open_loop(
    op: Operation,
    *,
    rate: float,
    seconds: float,
    drain_seconds: float,
    network_cpu: CpuClock | None = None,
) -> Phase:
    """Start operation i at t0 + i/rate (``rate * seconds`` of them, at
    least one) whatever the others do; its latency runs from that scheduled
    time to its end. Those still running ``drain_seconds`` after the last
    start are cancelled and counted unfinished."""
    phase = Phase()
    count = max(1, round(rate * seconds))
    # perf_counter, not loop.time(): uvloop's clock ticks in milliseconds.
    clock = time.perf_counter
    in_flight: set[asyncio.Task[None]] = set()
    max_in_flight = 0
    max_lag = 0.0

    async def one(index: int, scheduled: float) -> None:
        failure = await _run(op, index)
        phase.add(failure, clock() - scheduled, scheduled - t0)

    cpu = _Cpu(network_cpu)
    t0 = clock() + 0.01
    for index in range(count):
        scheduled = t0 + index / rate
        await sleep_until(scheduled, clock)
        max_lag = max(max_lag, clock() - scheduled)
        task = asyncio.ensure_future(one(index, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        max_in_flight = max(max_in_flight, len(in_flight))
    sent_for = clock() - t0
    pending: set[asyncio.Task[None]] = set()
    if in_flight:
        _, pending = await asyncio.wait(set(in_flight), timeout=drain_seconds)
    phase.elapsed_s = clock() - t0
    cpu.stop(phase)
    for task in pending:
        task.cancel()
    phase.unfinished(len(pending))
    await asyncio.gather(*pending, return_exceptions=True)
    phase.span_s = count / rate
    phase.extra = {
        "offered_per_s": rate,
        "sent_per_s": count / sent_for if sent_for > 0 else 0.0,
        "max_scheduler_lag_ms": max_lag * 1e3,
        "max_in_flight": max_in_flight,
    }
    return phase


async def warm_up(op: Operation, count: int, max_seconds: float, drain_seconds: float) -> Phase:
    """``count`` operations (bounded by ``max_seconds``), not measured:
    caches, RTT estimates and the allocator settle before the phases."""
    return await closed_loop(
        op,
        concurrency=WARMUP_CONCURRENCY,
        max_count=count,
        max_seconds=max_seconds,
        drain_seconds=drain_seconds,
    )

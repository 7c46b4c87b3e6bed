"""dhtquery.bench.load: the closed and open loops both benches use count
every operation once, by failure kind, in seconds, and never hang on an
operation that does not end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from dhtquery.bench import closed_loop, open_loop, percentiles_ms, warm_up
from dhtquery.bench.load import UNFINISHED, cdf_points, settle, window_p99s_ms

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


async def op(index: int) -> str | None:
    """Succeeds, fails, raises or never ends, by index."""
    if index % 4 == 1:
        return "wrong"
    if index % 4 == 2:
        raise KeyError(index)
    if index % 4 == 3 and index < 8:
        await asyncio.sleep(3600)
    await asyncio.sleep(0.001)
    return None


def test_closed_loop_counts_each_kind_and_cancels_the_unfinished(run: Run[None]) -> None:
    async def main() -> None:
        phase = await closed_loop(
            op, concurrency=4, max_count=40, max_seconds=2.0, drain_seconds=0.2
        )
        assert phase.count == 40
        assert phase.failures == {"wrong": 10, "error: KeyError": 10, UNFINISHED: 2}
        assert phase.ok == 18 and len(phase.latencies_s) == 38
        assert all(0 < latency < 1 for latency in phase.latencies_s)
        assert 0 < phase.elapsed_s < 3 and phase.client_cpu_s >= 0

    run(main())


def test_open_loop_starts_on_schedule_and_counts_from_it(run: Run[None]) -> None:
    async def main() -> None:
        cpu = iter(range(100))
        phase = await open_loop(
            op, rate=200.0, seconds=0.1, drain_seconds=0.2, network_cpu=lambda: float(next(cpu))
        )
        assert phase.count == 20
        assert phase.failures == {"wrong": 5, "error: KeyError": 5, UNFINISHED: 2}
        assert phase.network_cpu_s == 1.0
        assert phase.extra["offered_per_s"] == 200.0 and phase.extra["max_in_flight"] >= 2
        summary = phase.summary()
        assert summary["latency_ms"]["p50"] > 0 and summary["cdf_ms"][-1][1] == 1.0
        # every finished sample knows when it was scheduled, within the span
        assert len(phase.scheduled_s) == len(phase.latencies_s) == 18
        assert all(0 <= when < 0.1 for when in phase.scheduled_s) and phase.span_s == 0.1
        warm = await warm_up(op, 12, 1.0, 0.1)
        assert warm.count == 12

    run(main())


def test_percentiles_are_in_milliseconds() -> None:
    latencies = [index / 1000 for index in range(1, 1001)]  # 1 ms .. 1 s
    p = percentiles_ms(latencies)
    assert abs(p["p50"] - 500) < 1 and abs(p["p99"] - 990) < 2 and abs(p["max"] - 1000) < 2
    assert percentiles_ms([]) == {}
    points = cdf_points(latencies, points=10)
    assert len(points) == 10 and points[0] == [0.001, 0.001] and points[-1] == [1.0, 1.0]


def test_window_p99s_take_each_whole_window_of_scheduled_starts_apart() -> None:
    # 3.5 s of starts at 100/s: window 1 holds a stall (5 lookups of 900
    # ms), the others take 1 ms; the half window at the end is left out
    scheduled = [index / 100 for index in range(350)]
    latencies = [0.9 if 150 <= index < 155 else 0.001 for index in range(350)]
    p99s = window_p99s_ms(latencies, scheduled, 3.5, 1.0)
    assert len(p99s) == 3
    assert abs(p99s[0] - 1) < 0.01 and abs(p99s[2] - 1) < 0.01
    assert abs(p99s[1] - 900) < 1
    # the one stall is the whole phase's p99, not the windows' median
    assert abs(percentiles_ms(latencies)["p99"] - 900) < 1
    assert sorted(p99s)[1] < 1.01
    # samples that do not pair with their starts: nothing to tell
    assert window_p99s_ms(latencies, scheduled[:-1], 3.5, 1.0) == []
    assert window_p99s_ms([], [], 3.5, 1.0) == []


def busy_for(windows: int, per_window: float) -> tuple[list[int], Callable[[], float | None]]:
    """A network CPU clock that grows ``per_window`` CPU seconds a reading
    for its first ``windows`` readings after the first, then stays; and the
    count of readings."""
    readings = [0]

    def cpu() -> float:
        readings[0] += 1
        return min(readings[0] - 1, windows) * per_window

    return readings, cpu


def test_settle_waits_while_the_network_is_busy_and_stops_once_idle(run: Run[None]) -> None:
    async def main() -> None:
        readings, cpu = busy_for(3, per_window=0.01)  # 100 % of a CPU at 0.01 s windows
        await settle(cpu, window=0.01, max_seconds=5.0)
        # the first reading, 3 busy windows, the idle one that ends it
        assert readings[0] == 5
        readings, cpu = busy_for(0, per_window=0.01)
        await settle(cpu, window=0.01, max_seconds=5.0)
        assert readings[0] == 2  # idle at once: one window

    run(main())


def test_settle_gives_up_at_its_bound_on_a_network_that_never_idles(run: Run[None]) -> None:
    async def main() -> None:
        readings, cpu = busy_for(10_000, per_window=0.01)
        await settle(cpu, window=0.01, max_seconds=0.1)
        assert readings[0] == 11  # the first reading and 10 windows, no more

    run(main())


def test_settle_without_a_cpu_clock_waits_a_fixed_pause(run: Run[None]) -> None:
    async def main() -> None:
        waited = await settle(lambda: None, max_seconds=5.0)
        assert 0.2 <= waited < 1.0

    run(main())

"""The client profiler (``python -m dhtquery.bench profile``) runs its
lookups against the transport that plays the peers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from dhtquery.bench import profile_client

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_the_profiler_measures_lookups_that_all_succeed(run: Run, backend: str) -> None:
    # (measure raises if any lookup failed: the transport must be one the
    # protocol can use, is_closing included)
    samples = run(profile_client.measure(backend, 200, 2, False, "cached"))
    assert len(samples) == 2
    assert all(0 < sample < 100_000 for sample in samples)  # us per lookup


def test_the_serving_profile_answers_every_request_from_the_records_held(
    run: Run, backend: str
) -> None:
    # (measure_serving raises unless every request got an answer sent)
    samples = run(profile_client.measure_serving(backend, 300, 2, False))
    assert len(samples) == 2
    assert all(0 < sample < 100_000 for sample in samples)  # us per request


def test_a_frozen_clock_stands_still_and_its_timers_never_fire(run: Run) -> None:
    async def scenario() -> tuple[float, float, list[str]]:
        clock = profile_client.FrozenClock()
        fired: list[str] = []
        first = clock.now()
        clock.call_at(first - 1.0, lambda: fired.append("due"))  # due already
        for _ in range(3):
            await asyncio.sleep(0)
        return first, clock.now(), fired

    first, later, fired = run(scenario())
    assert first == later
    assert fired == []


def test_the_profiler_runs_its_lookups_on_a_frozen_clock(run: Run, backend: str) -> None:
    # (no deadline or RTO can pass: every lookup must end by its answers)
    samples = run(profile_client.measure(backend, 200, 1, False, "cached", frozen_clock=True))
    assert len(samples) == 1
    assert 0 < samples[0] < 100_000  # us per lookup

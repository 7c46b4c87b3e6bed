"""The client profiler (``python -m dhtquery.bench profile``) runs its
lookups against the transport that plays the peers."""

from __future__ import annotations

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

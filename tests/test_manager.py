"""QueryManager and QueryHandle: both cores, under asyncio and uvloop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from dhtquery import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    ManagerClosedError,
    NoRunningLoopError,
    QueryConfig,
    QueryManager,
    QueryOutcome,
    QueryResult,
    SubmitStatus,
    new_core,
)
from dhtquery.testing import FakeClock

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_query_handle_deduplication(backend: str, run: Run) -> None:
    async def scenario() -> QueryOutcome:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(expected_peers=3, timeout=5.0)
        for peer in ("p1", "p2", "p3"):
            for key in ("a", "b", "c"):
                manager.submit(handle.id, peer, key, f"{key} from {peer}")
            manager.peer_finished(handle.id, peer)
        return await handle

    outcome = run(scenario())
    assert [result.key for result in outcome.results] == ["a", "b", "c"]
    assert outcome.items == ["a from p1", "b from p1", "c from p1"]
    assert outcome.duplicates == 6
    assert outcome.reason == "all_peers" and outcome.peers_ok == 3


def test_query_handle_early_exit(backend: str, run: Run) -> None:
    async def scenario() -> tuple[QueryOutcome, list[SubmitStatus], int]:
        manager = QueryManager(QueryConfig(max_results=10), core=new_core(backend))
        handle = manager.start(expected_peers=3)
        statuses = [manager.submit(handle.id, "p", f"k{i}", i) for i in range(100)]
        return await handle, statuses, manager.in_flight

    outcome, statuses, in_flight = run(scenario())
    assert len(outcome.results) == 10
    assert outcome.items == list(range(10))
    assert outcome.reason == "max_results" and not outcome.timed_out
    assert statuses[9] is SubmitStatus.COMPLETED
    assert set(statuses[10:]) == {SubmitStatus.LATE}
    assert in_flight == 0


def test_query_handle_timeout(backend: str, run: Run) -> None:
    async def scenario() -> tuple[QueryOutcome, float]:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(timeout=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = await handle
        return outcome, loop.time() - started

    outcome, waited = run(scenario())
    assert outcome.timed_out and outcome.reason == "timeout"
    assert outcome.results == ()
    # uvloop's clock is cached per loop iteration at 1 ms resolution.
    assert 0.098 <= waited < 1.0


def test_partial_results_on_timeout(backend: str, run: Run) -> None:
    async def scenario() -> QueryOutcome:
        clock = FakeClock()
        manager = QueryManager(core=new_core(backend), clock=clock)
        handle = manager.start(expected_peers=3, timeout=0.15)
        manager.submit_many(handle.id, "p1", [("a", 1), ("b", 2)])
        manager.peer_finished(handle.id, "p1")
        clock.advance(0.149)
        assert not handle.done()
        clock.advance(0.002)
        assert handle.done()
        return await handle

    outcome = run(scenario())
    assert outcome.timed_out
    assert outcome.items == [1, 2]
    assert outcome.peers_ok == 1


def test_completes_when_every_expected_peer_is_done(backend: str, run: Run) -> None:
    async def scenario() -> QueryOutcome:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(expected_peers=2, timeout=30.0)

        async def peer(name: str, delay: float, ok: bool) -> None:
            await asyncio.sleep(delay)
            if ok:
                manager.submit(handle.id, name, name, name.upper())
            manager.peer_finished(handle.id, name, ok=ok)

        tasks = [
            asyncio.create_task(peer("a", 0.01, True)),
            asyncio.create_task(peer("b", 0.02, False)),
        ]
        outcome = await handle
        await asyncio.gather(*tasks)
        return outcome

    outcome = run(scenario())
    assert outcome.reason == "all_peers"
    assert outcome.items == ["A"]
    assert (outcome.peers_ok, outcome.peers_failed) == (1, 1)
    assert outcome.duration < 5.0


def test_cancel_frees_entry_and_wakes_awaiting_task(backend: str, run: Run) -> None:
    async def scenario() -> tuple[QueryOutcome, list[Any], int, int, bool]:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(timeout=30.0)
        manager.submit(handle.id, "p", "a", 1)
        waiter = asyncio.create_task(asyncio.wait_for(handle, 5.0))
        streamed: list[Any] = []

        async def stream() -> None:
            async for result in handle:
                streamed.append(result.item)

        streamer = asyncio.create_task(stream())
        await asyncio.sleep(0.01)
        in_flight_before = manager.in_flight
        assert handle.cancel() is True
        in_flight_after = manager.in_flight
        outcome = await waiter
        await asyncio.wait_for(streamer, 5.0)
        return outcome, streamed, in_flight_before, in_flight_after, handle.cancel()

    outcome, streamed, before, after, second_cancel = run(scenario())
    assert outcome.cancelled and outcome.items == [1]
    assert streamed == [1]
    assert (before, after) == (1, 0)
    assert second_cancel is False


def test_late_results_within_grace_then_unknown(backend: str, run: Run) -> None:
    async def scenario() -> tuple[SubmitStatus, SubmitStatus, tuple[int, int]]:
        clock = FakeClock()
        manager = QueryManager(core=new_core(backend, grace=0.2), clock=clock)
        handle = manager.start(expected_peers=1, timeout=5.0)
        manager.peer_finished(handle.id, "p")
        await handle
        late = manager.submit(handle.id, "p", "x", 1)
        clock.advance(0.15)
        assert manager.debug_state()["tombstones"] == 1
        clock.advance(0.1)  # the grace period is over; the timer forgot the id
        assert manager.debug_state()["tombstones"] == 0
        unknown = manager.submit(handle.id, "p", "y", 2)
        metrics = manager.metrics
        return late, unknown, (metrics.late, metrics.unknown)

    late, unknown, counts = run(scenario())
    assert late is SubmitStatus.LATE
    assert unknown is SubmitStatus.UNKNOWN
    assert counts == (1, 1)


def test_streaming_yields_each_unique_result_once_in_arrival_order(backend: str, run: Run) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(expected_peers=2, timeout=10.0, max_results=50)
        received: list[Any] = []

        async def consume() -> None:
            async for result in handle:
                received.append(result.item)

        consumer = asyncio.create_task(consume())
        for round_number in range(5):
            for peer in ("p1", "p2"):
                # each peer repeats the other's keys: half of what arrives is duplicate
                manager.submit_many(
                    handle.id, peer, [(f"k{round_number}-{i}", (round_number, i)) for i in range(4)]
                )
            await asyncio.sleep(0.001)
        manager.peer_finished(handle.id, "p1")
        manager.peer_finished(handle.id, "p2")
        outcome = await handle
        await asyncio.wait_for(consumer, 5.0)
        return received, outcome.items

    received, items = run(scenario())
    expected = [(r, i) for r in range(5) for i in range(4)]
    assert received == expected
    assert items == expected


def test_query_context_manager_cancels_on_exit(backend: str, run: Run) -> None:
    async def scenario() -> tuple[bool, int, str]:
        manager = QueryManager(core=new_core(backend))
        async with manager.query(timeout=30.0) as handle:
            manager.submit(handle.id, "p", "a", 1)
        outcome = await handle
        return handle.done(), manager.in_flight, outcome.reason

    done, in_flight, reason = run(scenario())
    assert done and in_flight == 0 and reason == "cancelled"


def test_finish_ends_early_with_named_reason(backend: str, run: Run) -> None:
    async def scenario() -> QueryOutcome:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(expected_peers=3, timeout=30.0)
        manager.submit(handle.id, "p1", "a", 1)
        assert manager.finish(handle.id, "adaptive") is True
        assert manager.finish(handle.id, "adaptive") is False
        return await handle

    outcome = run(scenario())
    assert outcome.reason == "adaptive" and outcome.items == [1]


def test_metrics_count_every_ending(backend: str, run: Run) -> None:
    async def scenario() -> Any:
        clock = FakeClock()
        manager = QueryManager(core=new_core(backend), clock=clock)
        done = manager.start(expected_peers=1, timeout=5.0)
        clock.advance(0.01)
        manager.submit(done.id, "p", "a", 1)
        manager.submit(done.id, "p", "a", 1)
        manager.peer_finished(done.id, "p")
        timed = manager.start(timeout=0.05)
        cancelled = manager.start(timeout=5.0)
        cancelled.cancel()
        clock.advance(0.06)
        await asyncio.gather(done, timed, cancelled)
        clock.advance(1.0)
        return manager.metrics

    metrics = run(scenario())
    assert (metrics.total, metrics.successful, metrics.timed_out, metrics.cancelled) == (3, 1, 1, 1)
    assert (metrics.in_flight, metrics.results, metrics.duplicates) == (0, 1, 1)
    assert metrics.success_rate == pytest.approx(0.5)
    assert metrics.average_results == pytest.approx(1 / 3)
    assert metrics.latency_count == 2
    # durations on the injected clock: 10 ms (done) and 50 ms (timed out)
    assert metrics.latency_p50 == pytest.approx(0.01, rel=1e-3)
    assert metrics.latency_max == pytest.approx(0.05, rel=1e-3)
    assert metrics.uptime == pytest.approx(1.07)
    assert metrics.throughput == pytest.approx(2 / 1.07)


def test_many_queries_leave_nothing_behind(backend: str, run: Run) -> None:
    async def scenario() -> dict[str, int]:
        clock = FakeClock()
        manager = QueryManager(core=new_core(backend, grace=0.05), clock=clock)
        handles = [manager.start(expected_peers=1, timeout=0.2) for _ in range(2_000)]
        for index, handle in enumerate(handles):
            if index % 4 == 0:
                handle.cancel()
            elif index % 4 == 1:
                manager.submit(handle.id, "p", "a", index)
                manager.peer_finished(handle.id, "p")
            # the rest time out
        clock.advance(0.21)
        await asyncio.gather(*handles)
        # the cancelled and finished ones ended at 0 s: their grace is over
        assert manager.debug_state()["tombstones"] == 1_000
        clock.advance(0.06)  # the timer forgets tombstones after grace
        return manager.debug_state()

    assert run(scenario()) == {"in_flight": 0, "tombstones": 0, "timers": 0, "handles": 0}


def test_manager_without_running_loop_raises_clear_error(backend: str) -> None:
    manager = QueryManager(core=new_core(backend))
    with pytest.raises(NoRunningLoopError, match="running event loop"):
        manager.start()


def test_closed_manager_refuses_new_queries(backend: str, run: Run) -> None:
    async def scenario() -> QueryOutcome:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(timeout=30.0)
        await manager.aclose()
        with pytest.raises(ManagerClosedError):
            manager.start()
        return await handle

    assert run(scenario()).cancelled


def test_bad_arguments_name_the_argument(backend: str, run: Run) -> None:
    async def scenario() -> None:
        manager = QueryManager(core=new_core(backend))
        with pytest.raises(InvalidArgumentError, match="timeout"):
            manager.start(timeout=0)
        with pytest.raises(InvalidArgumentError, match="max_results"):
            manager.start(max_results=0)
        with pytest.raises(InvalidArgumentTypeError, match="query_id"):
            manager.submit("not an id", "p", "k", 1)  # type: ignore[arg-type]
        assert manager.in_flight == 0

    run(scenario())


def test_manager_reports_backend(backend: str) -> None:
    assert QueryManager(core=new_core(backend)).backend == backend


def test_listeners_see_every_ending(backend: str, run: Run) -> None:
    async def scenario() -> list[str]:
        manager = QueryManager(core=new_core(backend))
        seen: list[str] = []
        manager.add_listener(lambda outcome: seen.append(outcome.reason))
        done = manager.start(expected_peers=1)
        manager.peer_finished(done.id, "p")
        manager.start().cancel()
        await manager.start(timeout=0.05)
        return seen

    assert run(scenario()) == ["all_peers", "cancelled", "timeout"]


def test_an_outcome_is_the_frozen_dataclass_its_fields_make(backend: str, run: Run) -> None:
    """resolve() fills a QueryOutcome field by field (not through its
    __init__): it equals the one its constructor makes, stays frozen, holds
    QueryResults, and awaiting, listeners and resolve see the one object."""

    async def scenario() -> tuple[QueryOutcome, list[QueryOutcome]]:
        manager = QueryManager(core=new_core(backend))
        seen: list[QueryOutcome] = []
        manager.add_listener(seen.append)
        handle = manager.start(expected_peers=0)
        manager.submit(handle.id, "p1", "a", "first")
        manager.submit(handle.id, "p2", "b", "second")
        manager.finish(handle.id, "all_peers")
        return await handle, seen

    outcome, seen = run(scenario())
    assert seen == [outcome] and seen[0] is outcome
    assert all(type(result) is QueryResult for result in outcome.results)
    assert [(r.item, r.peer, r.key) for r in outcome.results] == [
        ("first", "p1", "a"),
        ("second", "p2", "b"),
    ]
    made = QueryOutcome(**{f.name: getattr(outcome, f.name) for f in dataclasses.fields(outcome)})
    assert outcome == made and repr(outcome) == repr(made) and hash(outcome) == hash(made)
    assert outcome.reason == "all_peers" and outcome.peers_ok == 0 and outcome.duplicates == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.reason = "timeout"  # type: ignore[misc]


def test_a_handles_done_function_says_what_done_says(backend: str, run: Run) -> None:
    async def scenario() -> list[bool]:
        manager = QueryManager(core=new_core(backend))
        handle = manager.start(expected_peers=1, timeout=5.0)
        done = handle.done_function()
        seen = [done(), handle.done()]
        manager.finish(handle.id, "all_peers")
        seen += [done(), handle.done()]
        await handle
        return seen

    assert run(scenario()) == [False, False, True, True]

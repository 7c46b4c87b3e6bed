"""dhtquery.bench.core: a2 (offer_many) repeats until each backend has
offered BATCH_OFFERS, its ratio is the ratio of the backends' medians, and
its target's line gives the ratio's spread round by round and the ratio in
thread CPU time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dhtquery.bench import core
from dhtquery.bench.common import Repetition

OK = {"ok": True}


def test_a2_repeats_until_each_backend_offered_batch_offers() -> None:
    quick = {w.key: w.repetitions for w in core.build_workloads(core.QUICK_SIZES, 3)}
    assert quick == {"a1": 3, "a2": 15, "b": 3, "c": 3, "d": 3}
    assert 15 * 1_000 * 60 >= core.BATCH_OFFERS > 14 * 1_000 * 60
    full = {w.key: w.repetitions for w in core.build_workloads(core.FULL_SIZES, 5)}
    assert full == {"a1": 5, "a2": 5, "b": 5, "c": 5, "d": 3}
    # more asked for than BATCH_OFFERS needs: as asked
    assert core.build_workloads(core.QUICK_SIZES, 20)[1].repetitions == 20
    assert core.batch_repetitions(0, 1) == core.BATCH_OFFERS


def cell(backend: str, samples: list[float]) -> core.Cell:
    # CPU time: 0.9 of the wall time
    repetitions = [
        Repetition({"offer_many": value, "offer_many_cpu": 0.9 * value}, OK) for value in samples
    ]
    medians = core.median_samples(repetitions)
    return core.Cell(backend, repetitions, medians, ok=True)


def a2_result(python: list[float], rust: list[float]) -> core.WorkloadResult:
    workload = core.build_workloads(core.QUICK_SIZES, 3)[1]
    result = core.WorkloadResult(workload)
    result.cells = {"python": cell("python", python), "rust": cell("rust", rust)}
    return result


def test_ratio_is_of_medians_and_round_ratios_pair_each_round() -> None:
    result = a2_result([100.0, 120.0, 300.0, 110.0], [10.0, 30.0, 10.0, 9.0])
    phase = result.workload.phases[0]
    # medians 115 and 10: not the median of the rounds' ratios (12.2)
    assert result.ratio(phase, "python") == pytest.approx(11.5)
    assert result.round_ratios(phase, "python") == pytest.approx([10.0, 4.0, 30.0, 110 / 9])
    assert result.round_ratios(phase, "cython") == []


def test_a2_target_line_gives_the_rounds_quartiles_and_extremes() -> None:
    result = a2_result([100.0, 120.0, 300.0, 110.0, 90.0], [10.0, 10.0, 10.0, 10.0, 10.0])
    # python's CPU time half its wall time in one round: its median moves less
    result.cells["python"].repetitions[2].samples["offer_many_cpu"] = 150.0
    result.cells["python"].medians = core.median_samples(result.cells["python"].repetitions)
    target = next(t for t in core.TARGETS if t.workload == "a2")
    verdict = core.evaluate_target(target, [result])
    assert verdict["measured"] == pytest.approx(11.0)
    assert verdict["met"] is True
    assert verdict["rounds"] == {
        "count": 5,
        "min": 9.0,
        "q1": 10.0,
        "median": 11.0,
        "q3": 12.0,
        "max": 30.0,
    }
    # CPU medians: python 0.9 x 110 (of 81, 90, 99, 108, 150), rust 9
    assert verdict["cpu"] == pytest.approx(11.0)
    line = core.target_line(verdict)
    assert "measured 11.00x" in line
    assert "round by round 10.00-12.00x (quartiles of 5, all 9.00-30.00x)" in line
    assert line.endswith("; in thread CPU time 11.00x")
    assert core.spread([1.0]) is None


@pytest.mark.parametrize("backend", ["python", "rust"])
def test_a2_runs_its_repetitions_on_each_core_with_its_check_passing(
    backend: str, tmp_path: Path
) -> None:
    loaded = core.load_backend(backend, tmp_path)
    assert loaded.module is not None, loaded.skip_reason
    workload = dataclasses.replace(core.build_workloads(core.QUICK_SIZES, 3)[1], count=5)
    result = core.measure_workload(workload, [loaded])
    measured = result.cells[backend]
    assert measured.ok
    assert len(measured.repetitions) == 15
    for rep in measured.repetitions:
        assert rep.samples["offer_many"] > 0
        assert 0 < rep.samples["offer_many_cpu"] <= rep.samples["offer_many"] * 1.05

"""ci/ab.py, the A/B driver: its run order alternates the sides, and its
summary pairs runs in order and says which side is better per figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def load_ab() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "ci" / "ab.py"
    spec = importlib.util.spec_from_file_location("ci_ab", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_ab"] = module
    spec.loader.exec_module(module)
    return module


ab = load_ab()


def test_runs_alternate_a_b_b_a() -> None:
    assert ab.order(3) == ["A", "B", "B", "A", "A", "B"]


def test_summary_is_the_median_of_paired_ratios_with_the_better_side() -> None:
    runs = {
        "A": [
            {"x lookups/s": 100.0, "x client CPU us": 10.0},
            {"x lookups/s": 200.0, "x client CPU us": 30.0},
            {"x lookups/s": 100.0, "x client CPU us": 10.0},
        ],
        "B": [
            {"x lookups/s": 150.0, "x client CPU us": 8.0},
            {"x lookups/s": 220.0, "x client CPU us": 15.0},
            {"x lookups/s": 300.0, "x client CPU us": 9.0},
        ],
    }
    lines = {line[0]: line[1:] for line in ab.summarize(runs)}
    # ratios 1.5, 1.1, 3.0 -> median 1.5; higher is better: B
    assert lines["x lookups/s"] == (100.0, 220.0, 1.5, "B")
    # ratios 0.8, 0.5, 0.9 -> median 0.8; lower is better: B
    assert lines["x client CPU us"] == (10.0, 9.0, pytest.approx(0.8), "B")


def test_dht_figures_read_get_all_and_stock_rows_and_the_stock_ratio() -> None:
    report = {
        "rows": [
            {
                "client": "kademlia get",
                "run": "single",
                "loop": "uvloop",
                "core": "-",
                "throughput": {"ok_per_s": 1000.0, "network_cpu_us_per_lookup": 60.0},
                "latency": None,
            },
            {
                "client": "dhtquery get_all",
                "run": "single",
                "loop": "uvloop",
                "core": "rust",
                "throughput": {"ok_per_s": 2500.0, "client_cpu_us_per_lookup": 150.0},
                "latency": {"latency_ms": {"p50": 1.0, "p99": 9.0}, "p99_window_median_ms": 4.0},
            },
        ]
    }
    figures = ab.dht_figures(report, "")
    name = "get_all single uvloop/rust"
    assert figures[f"{name} lookups/s"] == 2500.0
    assert figures[f"{name} / stock"] == 2.5
    assert figures[f"{name} p99/1s ms"] == 4.0 and figures[f"{name} client CPU us"] == 150.0
    # stock's rows: its rate, and what its lookups cost our nodes
    assert figures["stock get single uvloop lookups/s"] == 1000.0
    assert figures["stock get single uvloop network CPU us"] == 60.0


def test_dht_figures_take_the_rounds_median_not_each_round() -> None:
    round_row = {
        "client": "dhtquery get_all",
        "run": "round 1",
        "loop": "uvloop",
        "core": "rust",
        "throughput": {"ok_per_s": 4000.0},
        "latency": None,
    }
    verdict = {"target": "... rounds", "value": 4.2, "ratios": [4.2], "loop": "uvloop"}
    unmeasured = {"target": "... rounds", "value": None, "ratios": [], "loop": "asyncio"}
    figures = ab.dht_figures({"rows": [round_row], "targets": [verdict, unmeasured]}, "")
    assert figures == {"get_all / stock, median of rounds, uvloop": 4.2}


def test_profile_figures_need_the_median_line() -> None:
    assert ab.profile_figures({}, "x\nget_all client CPU: median 95.6 us/lookup (min 1)") == {
        "client CPU us/lookup": 95.6
    }
    with pytest.raises(ValueError, match="no 'median"):
        ab.profile_figures({}, "nothing")


def test_core_figures_give_ratios_and_the_rust_cores_own_costs() -> None:
    report = {
        "workloads": [
            {
                "key": "a2",
                "medians": {"rust": {"offer_many": {"seconds": 1.0, "ns/offer": 145.0}}},
                "ratios": {"offer_many": {"rust/python": 10.0}},
            },
            {
                "key": "d",
                "medians": {"rust": {"bytes_per_query": {"bytes/query": 119.0}}},
                "ratios": {"bytes_per_query": {"rust/python": 0.11}},
            },
        ]
    }
    assert ab.core_figures(report, "") == {
        "a2 offer_many rust/python": 10.0,
        "a2 offer_many rust ns/offer": 145.0,
        "d bytes_per_query rust bytes/query": 119.0,
    }
    # fewer bytes a query is better
    runs = {"A": [{"d rust bytes/query": 120.0}], "B": [{"d rust bytes/query": 110.0}]}
    assert ab.summarize(runs)[0][-1] == "B"

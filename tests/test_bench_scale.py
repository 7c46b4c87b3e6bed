"""dhtquery.bench.scale on a tiny network: the output's structure, hops and
requests counted for both clients, the log2 fit computed (not timed: the
figures of a run this small mean nothing)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from dhtquery.bench import scale

TINY = replace(
    scale.QUICK,
    networks=(6, 12),
    hosts=2,
    rtt_ms=(2.0, 6.0),
    single_keys=4,
    multi_keys=2,
    lookups=6,
    multi_lookups=3,
)


def test_fit_log2_recovers_a_line_and_needs_two_sizes() -> None:
    fit = scale.fit_log2([(10, 1.0 + 0.5 * math.log2(10)), (1000, 1.0 + 0.5 * math.log2(1000))])
    assert fit is not None
    assert fit["a"] == pytest.approx(1.0) and fit["b"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)
    assert scale.fit_log2([(10, 1.0), (10, 2.0)]) is None


def test_a_tiny_run_counts_hops_and_requests_for_both_clients() -> None:
    results = [scale.run_size(n, TINY, progress=lambda line: None) for n in TINY.networks]
    for result, n in zip(results, TINY.networks, strict=True):
        assert result["nodes"] == n and result["hosts"] == 2
        runs = result["runs"]
        assert set(runs) == {
            "dhtquery get_all [single]",
            "dhtquery get_all [multi]",
            "kademlia get [single]",
        }
        assert runs["dhtquery get_all [single]"]["lookups"] == TINY.lookups
        assert runs["dhtquery get_all [multi]"]["lookups"] == TINY.multi_lookups
        assert runs["kademlia get [single]"]["lookups"] == TINY.lookups
        for run in runs.values():
            assert run["success"] == 1.0, run["failures"]
            # every lookup asked someone, at least one round deep
            assert run["requests"]["min"] >= 1 and run["hops"]["min"] >= 1
            assert run["latency_ms"]["p50"] > 0
            assert sum(run["hops_histogram"].values()) == run["lookups"]
        assert result["load"]["served_mean"] > 0 and result["load"]["max_over_mean"] >= 1
        assert result["routing_table"]["min"] >= 1
        assert result["memory"]["rss_bytes"] > 0
        assert len(result["loop_lag_ms"]) == 2
    fitted = scale.fits(results)
    assert set(fitted) == set(results[0]["runs"])
    assert all(math.isfinite(f["a"]) and math.isfinite(f["b"]) for f in fitted.values())
    table = scale.results_table(results)
    assert "kademlia get" in table and "dhtquery get_all" in table and "5 rec" in table
    assert all("log2(n)" in line for line in scale.fit_lines(fitted))
    verdicts = scale.targets(results, 1.0, "quick")
    # no 1,000-node network here: those targets say they were not measured
    assert verdicts[0]["met"] is None and verdicts[-1]["target"] == "wall time (quick)"


def test_a_traced_run_times_every_request_and_counts_each_clients_load() -> None:
    """``trace``: every lookup's requests and answers are kept, each request
    with the true round trip to its peer (0 on the client's host, else the
    pair's, here 2 to 6 ms), as many requests as the lookup counted; stock's
    rounds with the peers they asked. The load is also counted for each
    kind of client alone, and get_all's requests served are those its
    lookups sent."""
    sizes = replace(TINY, trace=True, rtt_ms=(2.0, 6.0))
    result = scale.run_size(6, sizes, progress=lambda line: None)
    traces = result["traces"]
    ours = [t for t in traces if t[0] != "stock"]
    stock = [t for t in traces if t[0] == "stock"]
    assert len(ours) == sizes.lookups + sizes.multi_lookups and len(stock) == sizes.lookups
    sent = 0
    for _, latency, events in ours:
        asks = [e for e in events if e[0] == "ask"]
        assert asks and all(e[2] == 0 or 0.002 <= e[2] <= 0.006 for e in asks)
        # (the depth each peer was learnt at and its rank, read from the
        # lookup's core: -1 for a peer asked from outside the k closest)
        assert all(e[4] >= 1 and e[5] >= -1 for e in asks)
        assert all(0 <= e[1] <= latency for e in events)
        sent += len(asks)
    assert sent == pytest.approx(
        sum(
            run["requests"]["mean"] * run["lookups"]
            for label, run in result["runs"].items()
            if label.startswith("dhtquery")
        )
    )
    for _, _, rounds in stock:
        assert rounds and all(len(r[1]) == len(r[-1]) >= 1 for r in rounds)
    by = result["load"]["by_client"]
    assert by["get_all"]["mean"] * 6 == pytest.approx(sent)
    assert by["stock"]["mean"] > 0

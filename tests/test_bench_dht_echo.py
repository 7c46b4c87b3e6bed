"""The DHT bench's UDP echo ceiling row and the target set against it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from kademlia.utils import digest

from dhtquery.bench import dht
from dhtquery.bench.load import Phase
from dhtquery.dht import Record, StorageFull
from dhtquery.query import load_core
from tests.conftest import require_rust

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_the_udp_echo_counts_round_trips_on_loopback(run: Run) -> None:
    phase = run(dht.udp_echo(0.2, in_flight=8))
    assert phase.ok == phase.count > 0
    assert 0.1 < phase.elapsed_s < 5.0  # (the loop's clock rounds its sleep)
    assert phase.extra["round_trips_per_s"] == phase.ok / phase.elapsed_s
    assert phase.extra["client_cpu_us_per_lookup"] > 0


@pytest.mark.parametrize("core", ["rust", "python"])
def test_the_echo_with_owned_sockets_reads_batches(run: Run, core: str) -> None:
    if core == "rust":
        require_rust()
    receiver = load_core(core)[1].BatchReceiver(64, 2048)
    phase = run(dht.udp_echo_owned(0.2, receiver, in_flight=8))
    assert phase.ok == phase.count > 0
    assert phase.extra["round_trips_per_s"] == phase.ok / phase.elapsed_s


def _row(client: str, per_s: float, extra: dict[str, float]) -> dht.Row:
    return dht.Row(
        client,
        "single",
        "uvloop",
        "rust",
        throughput=Phase(ok=int(per_s), elapsed_s=1.0, extra=extra),
    )


def test_get_all_round_trips_are_set_against_the_echo_ceiling() -> None:
    rows = [
        _row(dht.ECHO_CLIENT, 100_000, {}),
        _row("dhtquery get_all", 20_000, {"round_trips_per_s": 60_000, "requests_per_lookup": 3.0}),
    ]
    verdicts = [v for v in dht.targets(rows, ["rust"]) if "echo ceiling" in v["target"]]
    assert [(v["value"], v["met"]) for v in verdicts] == [(0.6, True)]
    assert "60,000 round trips/s (3.00 per lookup) vs 100,000/s" in dht.target_line(verdicts[0])


def test_without_an_echo_row_the_fraction_is_not_measured() -> None:
    rows = [_row("dhtquery get_all", 20_000, {"round_trips_per_s": 60_000})]
    verdicts = [v for v in dht.targets(rows, ["rust"]) if "echo ceiling" in v["target"]]
    assert [(v["value"], v["met"]) for v in verdicts] == [(None, None)]


def test_transports_are_compared_by_their_median_client_cpu_per_lookup() -> None:
    batched, loop = (f"dhtquery get_all, {way}" for way in dht.TRANSPORTS)
    rows = [
        _row(batched, 3_000, {"client_cpu_us_per_lookup": 90.0}),
        _row(loop, 2_500, {"client_cpu_us_per_lookup": 100.0}),
        _row(loop, 2_700, {"client_cpu_us_per_lookup": 120.0}),
        _row(batched, 3_300, {"client_cpu_us_per_lookup": 80.0}),
        _row(batched, 9_000, {"client_cpu_us_per_lookup": 500.0}),  # an outlier
        _row(loop, 2_600, {"client_cpu_us_per_lookup": 110.0}),
        _row("dhtquery get_all", 1_000, {"client_cpu_us_per_lookup": 1.0}),  # not compared
    ]
    [verdict] = dht.transport_costs(rows)
    assert verdict["value"] == pytest.approx(90.0 / 110.0)
    assert verdict["transports"][dht.TRANSPORTS[0]] == {
        "client_cpu_us_per_lookup": 90.0,
        "lookups_per_s": 3_300,
        "rows": 3,
    }
    assert verdict["transports"][dht.TRANSPORTS[1]]["lookups_per_s"] == 2_600
    assert "0.818 (batched 90.0 us, 3,300/s, loop transport 110.0 us, 2,600/s" in (
        dht.target_line(verdict)
    )


def test_transports_and_signatures_are_separate_runs() -> None:
    assert dht.parse_args(["--transports"]).no_opendht
    with pytest.raises(SystemExit):
        dht.parse_args(["--transports", "--signatures"])


def test_the_rust_core_is_also_held_to_issue_14s_four_times_stock() -> None:
    rows = [
        _row("kademlia get", 1_000, {}),
        _row("dhtquery get_all", 3_000, {}),
    ]
    verdicts = {v["target"]: (v["value"], v["met"]) for v in dht.targets(rows, ["rust"])}
    assert verdicts["get_all (rust) vs stock kademlia get throughput under uvloop"] == (3.0, True)
    issue_14 = "get_all (rust) vs stock kademlia get (issue 14) throughput under uvloop"
    assert verdicts[issue_14] == (3.0, False)
    python_verdicts = [v["target"] for v in dht.targets(rows, ["python"])]
    assert not any("issue 14" in target for target in python_verdicts)


def test_the_get_all_client_keeps_no_record_for_others() -> None:
    # as stock's client keeps no value (NullStorage): a record handed over
    # by the network's welcome stores would answer part of its own lookup
    client = dht._client("python")
    key = digest(dht.single_key(0))
    record = Record.create(dht.PUBLISHER, key, dht.single_value(0))
    with pytest.raises(StorageFull):
        client.records.put(key, record, client.clock.now())
    assert client.records.get(key, client.clock.now()) == []


def _round(client: str, index: int, per_s: float, core: str = "rust") -> dht.Row:
    return dht.Row(
        client,
        f"round {index}",
        "uvloop",
        core if client == "dhtquery get_all" else "-",
        throughput=Phase(count=int(per_s), ok=int(per_s), elapsed_s=1.0),
    )


def test_rounds_run_get_all_and_stock_in_turn_the_pair_flipped_each_round() -> None:
    ours, stock = "dhtquery get_all", "kademlia get"
    assert dht.interleaved(3) == [ours, stock, stock, ours, ours, stock]
    assert dht.interleaved(0) == []


def test_issue_14s_target_is_read_as_the_median_of_the_rounds_ratios() -> None:
    rows = [
        _row("kademlia get", 1_000, {}),
        _row("dhtquery get_all", 3_000, {}),
        _round("dhtquery get_all", 1, 4_400),
        _round("kademlia get", 1, 1_000),
        _round("kademlia get", 2, 1_000),
        _round("dhtquery get_all", 2, 3_500),
        _round("dhtquery get_all", 3, 5_000),
        _round("kademlia get", 3, 1_000),
        # (the twin's rows and a round whose stock phase failed are left out)
        _round("dhtquery get_all", 3, 90_000, core="python"),
        _round("dhtquery get_all", 4, 9_000),
        dht.Row("kademlia get", "round 4", "uvloop", "-", error="boom"),
    ]
    verdicts = {v["target"]: v for v in dht.targets(rows, ["rust"])}
    single = verdicts["get_all (rust) vs stock kademlia get (issue 14) throughput under uvloop"]
    assert (single["value"], single["met"]) == (3.0, False)
    name = (
        "get_all (rust) vs stock kademlia get (issue 14) throughput under uvloop, "
        "median of 3 interleaved rounds"
    )
    rounds = verdicts[name]
    assert (rounds["value"], rounds["met"]) == (4.4, True)
    assert rounds["ratios"] == [4.4, 3.5, 5.0]
    assert "4.40x (goal >= 4x; rounds 4.40x, 3.50x, 5.00x): met" in dht.target_line(rounds)


def test_rounds_are_read_under_each_loop_and_unpaired_ones_are_not_measured() -> None:
    asyncio_rounds = [
        dht.Row(r.client, r.run, "asyncio", r.core, throughput=r.throughput)
        for r in (_round("dhtquery get_all", 1, 2_000), _round("kademlia get", 1, 1_000))
    ]
    failed = [
        _round("dhtquery get_all", 1, 4_000),
        dht.Row("kademlia get", "round 1", "uvloop", "-", error="boom"),
    ]
    verdicts = dht.targets(asyncio_rounds + failed, ["rust"])
    verdicts = [v for v in verdicts if "rounds" in v["target"]]
    assert [(v["loop"], v["value"], v["met"]) for v in verdicts] == [
        ("asyncio", 2.0, False),
        ("uvloop", None, None),
    ]
    assert dht.target_line(verdicts[1]).endswith(": -: not measured")


def test_without_rounds_there_is_no_median_verdict() -> None:
    rows = [_row("kademlia get", 1_000, {}), _row("dhtquery get_all", 3_000, {})]
    assert not any("rounds" in v["target"] for v in dht.targets(rows, ["rust"]))


def test_rounds_are_bounded_and_not_mixed_with_the_other_runs() -> None:
    assert dht.parse_args(["--rounds", "5"]).rounds == 5
    assert dht.parse_args([]).rounds == 0
    for argv in (["--rounds", "-1"], ["--rounds", str(dht.MAX_ROUNDS + 1)]):
        with pytest.raises(SystemExit):
            dht.parse_args(argv)
    with pytest.raises(SystemExit):
        dht.parse_args(["--rounds", "2", "--transports"])
    with pytest.raises(SystemExit):  # (the rounds are the Rust core's)
        dht.parse_args(["--rounds", "2", "--backends", "python"])


def test_a_rounds_row_is_named_by_its_round_and_shows_no_latency() -> None:
    row = _round("kademlia get", 2, 3_000)
    assert "kademlia get [round 2]" in dht.results_table([row])
    assert dht.row_cells(row) == "    3000/s  ok 100.00%"

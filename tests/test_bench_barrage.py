"""``dhtquery bench barrage`` end to end on a small barrage: every datagram
is sent, and the dhtquery target's own lookups succeed during it with no
stranger in its routing table. (The stock target is left to the bench: its
lookups, with strangers in its table, take up to 35 s each.)"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dhtquery.bench import barrage, greedy


def test_the_pool_has_the_documented_shares_and_distinct_datagrams() -> None:
    pool = barrage.make_pool(1000, "dhtquery", seed=3)
    assert len(set(pool)) == 1000
    kinds = Counter(
        "request" if datagram[0] == 0 and datagram[21:22] in (b"\x92",) else "other"
        for datagram in pool
    )
    assert kinds["request"] == 600  # 60 % well-formed requests


def test_a_small_barrage_leaves_the_targets_lookups_working(tmp_path: Path) -> None:
    output = tmp_path / "barrage.json"
    status = barrage.main(
        [
            "--count",
            "4000",
            "--rate",
            "4000",
            "--impl",
            "dhtquery",
            "--no-greedy",
            "--json",
            str(output),
        ]
    )
    assert status == 0
    results = json.loads(output.read_text())["results"]
    assert set(results) == {"dhtquery"}
    ours = results["dhtquery"]
    assert ours["sent"] == 4000
    assert ours["received"] > 0
    assert ours["lookups"] >= 1 and ours["lookups_ok"] == ours["lookups"]
    assert ours["lookup_after_ok"] is True
    assert ours["routing_table"] == 3  # its three peers, none of the barrage's ids
    assert ours["rss_peak_mb"] >= ours["rss_before_mb"] > 0


def test_the_greedy_client_is_shed_with_the_fair_share_on_and_served_with_it_off(
    tmp_path: Path,
) -> None:
    output = tmp_path / "greedy.json"
    # as fast as one thread sends: more than a node can read, so it is behind
    status = greedy.main(["--rates", "0", "--repeat", "1", "--seconds", "1", "--json", str(output)])
    assert status == 0
    runs = {run["setting"]: run for run in json.loads(output.read_text())["runs"]}
    assert set(runs) == {"on", "off"}
    assert runs["on"]["shed"] > 0 and runs["off"]["shed"] == 0
    for run in runs.values():
        assert run["pings"] > 0 and run["greedy_sent"] > 0
        assert run["served"] > 0

"""What the command line prints, read the way a person reads it: tables that
fit an 80-column terminal and use a wide one, help without noise, errors in
plain words naming the option typed, and figures that say what they count."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from dhtquery import QueryId
from dhtquery.query import QueryOutcome, QueryResult, Reason
from dhtquery.registry import Query
from dhtquery.testing import generate_catalog
from tests.test_cli import ENV, WAIT, dhtquery

report = pytest.importorskip("dhtquery.cli.report")


def _outcome(count: int = 12, peers: int = 3) -> QueryOutcome:
    catalog = generate_catalog(200, 7)
    results = tuple(
        QueryResult(package, ("127.0.0.1", 40000 + i % 3), f"{package.id}@{package.version}",
                    0.0021)
        for i, package in enumerate(catalog[:count])
    )  # fmt: skip
    return QueryOutcome(
        query_id=QueryId.from_bytes(uuid.uuid4().bytes),
        reason=Reason.ALL_PEERS,
        results=results,
        duration=0.0023,
        peers_ok=peers,
        peers_failed=0,
        duplicates=2 * count,
    )


def _render(renderable: object, width: int) -> list[str]:
    console = Console(width=width, record=True, highlight=False, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def _label(peer: object) -> str:
    return f"node-{peer[1] - 40000:02d}" if isinstance(peer, tuple) else str(peer)  # type: ignore[index]


def test_results_table_fits_80_columns_and_names_what_it_left_out() -> None:
    table = report.results_table(_label, Query("x"), _outcome(), width=80)
    lines = _render(table, 80)
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    assert "package" in text and "version" in text and "title" in text
    assert "not shown, for width: tags" in text
    assert "12 results in 2.3 ms" in text and "all 3 peers answered" in text


def test_results_table_uses_a_wide_terminal() -> None:
    outcome = _outcome()
    lines = _render(report.results_table(_label, Query("x"), outcome, width=160), 160)
    text = "\n".join(lines)
    assert "not shown" not in text
    # every tag of every row, whole (no 16-character cut)
    for result in outcome.results[:8]:
        tags = ", ".join(result.item.tags)
        assert tags in text, tags
    assert max(map(len, lines)) <= 160


def test_fitted_table_drops_by_priority_and_keeps_the_rest() -> None:
    columns = [
        report.Column("a", cells=["x" * 30]),
        report.Column("b", priority=2, cells=["y" * 30]),
        report.Column("c", priority=1, cells=["z" * 30]),
    ]
    lines = _render(report.fitted_table(70, columns), 70)
    assert "y" * 30 in "\n".join(lines) and "z" * 30 not in "\n".join(lines)
    assert max(map(len, lines)) <= 70


def test_outcome_text_counts_tag_lookups_apart_from_peers() -> None:
    assert "all 3 peers and 1 tag lookup answered" in report.outcome_text(_outcome(peers=4), 4, 1)
    one = report.outcome_text(_outcome(count=1, peers=2), 1)
    assert "1 result in" in one and "both peers answered" in one
    assert "2 duplicate copies dropped" in one
    assert "1 duplicate copy dropped" in report.outcome_text(
        QueryOutcome(QueryId.from_bytes(uuid.uuid4().bytes), Reason.TIMEOUT, (), 2.0, 1, 1, 1), 0
    )


def test_summary_figures_say_what_they_count() -> None:
    figures = report.DemoFigures(
        nodes=20, shown=[0.002] * 5, burst_wall=0.25, burst=[0.03] * 200, burst_concurrency=32,
        burst_timed_out=0, queries=246, tag_lookups=41, success_rate=1.0, timed_out=0,
        results=3000, duplicates=6000, served=150_000,
        timeouts={"while publishing": 700, "while searching": 0},
        dropped={"while publishing": {"late_response": 700}, "while searching": {}},
        backend="rust", loop_name="uvloop",
    )  # fmt: skip
    lines = _render(report.summary_table(figures, 80), 80)
    text = " ".join(" ".join(lines).split())
    assert max(map(len, lines)) <= 80
    assert "205: 5 shown above, 200 in the burst" in text
    assert "246: the searches + 41 DHT lookups of a tag's key" in text
    assert "p50 2.0 ms" in text  # one at a time, not the burst's
    assert "800 searches/s; p50 30.0 ms" in text and "32 in flight" in text
    assert "700 while publishing (late response 700); 0 while searching" in text
    assert "given up" in text


# -- the command line as a process ------------------------------------------------------


def test_bare_dhtquery_shows_help_and_no_error() -> None:
    result = dhtquery()
    assert result.returncode == 0
    assert "Usage: dhtquery" in result.stdout
    assert "error" not in result.stderr


def test_help_has_readable_metavars() -> None:
    for command in ("search", "node", "publish", "bench", "demo"):
        result = dhtquery(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout and "list[" not in result.stdout, command
    search_help = dhtquery("search", "--help").stdout
    assert "HOST:PORT" in search_help and "TAG" in search_help


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "--timeout", "-1", "-b", "127.0.0.1:9"],
         "--timeout -1: must be more than 0 seconds"),
        (["search", "x", "--fan-out", "0", "-b", "127.0.0.1:9"], "--fan-out 0: must be at least 1"),
        (["node", "--port", "70000"], "--port 70000: must be at most 65535"),
        (["node", "--stats-interval", "0"], "--stats-interval 0: must be at least 0.1"),
        (["demo", "--backend", "nope"], "--backend nope: choose one of auto, rust, python"),
        (["demo", "--nodes", "x"], "--nodes x: is not a whole number"),
        (["bench"], "Missing argument 'BENCH'. Choose from: core, dht, registry"),
    ],
    ids=["timeout", "fan-out", "port", "stats-interval", "backend", "nodes", "bench"],
)  # fmt: skip
def test_errors_name_the_option_typed_in_plain_words(args: list[str], message: str) -> None:
    result = dhtquery(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    for internal in ("default_timeout", "fan_out", "Input should", "Value error"):
        assert internal not in lines[0]
    assert lines[0].count("(see ") <= 1


def test_publish_of_an_empty_catalog_says_it_published_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    result = dhtquery("publish", str(empty), "-b", "127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert "published nothing" in result.stdout


def test_plural_words() -> None:
    from dhtquery.cli.common import plural

    assert plural(1, "peer") == "1 peer"
    assert plural(2, "peer") == "2 peers"
    assert plural(1200, "RPC") == "1,200 RPCs"


def test_node_prints_each_line_once(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dhtquery", "node", "--port", "0", "--metrics-port", "0",
         "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
    finally:
        process.terminate()
        out, err = process.communicate(timeout=WAIT)
    text = first + second + out + err
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
    assert port, first
    assert text.count(f":{port.group(1)}") == 1, text
    metrics = re.search(r"metrics on (http://\S+)", second)
    assert metrics, second
    assert text.count(metrics.group(1)) == 1, text


def test_search_json_rounds_to_the_microsecond() -> None:
    from dhtquery.cli.commands.search import _search_json

    outcome = _outcome(count=1)
    answer = _search_json(Query("x"), outcome, list(outcome.results))
    assert answer["duration_ms"] == 2.3
    assert answer["results"][0]["at_ms"] == 2.1
    assert json.loads(json.dumps(answer)) == answer

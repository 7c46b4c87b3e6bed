"""The ``dhtquery`` command line, run as real processes on 127.0.0.1
(``sys.executable -m dhtquery``), every one with a bounded wait and stopped
on the way out; plus the pure helpers (catalog files, plots) in process."""

from __future__ import annotations

import importlib
import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dhtquery.dht import Publisher
from dhtquery.registry import Package, PackageId, package_from_json

# the module, not the Typer app the package exports under the same name
cli = importlib.import_module("dhtquery.cli.app")
SOURCE = Path(cli.__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")])),
    "PYTHONUNBUFFERED": "1",
}
WAIT = 20.0

WIDGET = {
    "namespace": "acme",
    "name": "widget",
    "version": "1.2.3",
    "title": "Widget toolkit",
    "description": "Widgets for terminals",
    "categories": ["cli"],
    "tags": ["widgets", "tui"],
    "license": "MIT",
    "authors": ["Ada Lovelace"],
}


def dhtquery(
    *args: str, timeout: float = WAIT, trust: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI. ``trust``: the trust store file it uses (default: a new
    one for this call, so what one test's searches trusted on first use
    never decides another's)."""
    if trust is None:
        trust = Path(tempfile.mkdtemp(prefix="dhtquery-trust-")) / "trust.json"
    return subprocess.run(
        [sys.executable, "-m", "dhtquery", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**ENV, "DHTQUERY_TRUST_FILE": str(trust)},
        check=False,
    )


@dataclass
class NodeProcess:
    """A ``dhtquery node`` child; its stdout lines are read by a thread."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    port: int = 0
    metrics_port: int = 0

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} from the node in {timeout} s")

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and stderr (killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
            return -9, err
        return self.process.returncode, err


def start_node(*args: str) -> NodeProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "dhtquery", "node", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    node = NodeProcess(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            node.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    node.port = int(node.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    if "--metrics-port" in args:
        node.metrics_port = int(node.expect(r"metrics on http://127\.0\.0\.1:(\d+)/").group(1))
    return node


@pytest.fixture(scope="module")
def network() -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two nodes: the first serves metrics; the second joins through it."""
    first = start_node("--metrics-port", "0", "--stats-interval", "0.5")
    second: NodeProcess | None = None
    try:
        second = start_node("--bootstrap", f"127.0.0.1:{first.port}")
        yield first, second
    finally:
        for node in (second, first):
            if node is not None:
                node.stop()


# -- the demo -----------------------------------------------------------------


@pytest.mark.slow
def test_demo_runs_a_small_network_and_prints_results_and_latency() -> None:
    result = dhtquery("demo", "--nodes", "5", "--packages", "100", "--burst", "40", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "5 nodes on 127.0.0.1, 100 packages published" in out
    assert re.search(r"\d+ results? in [\d.]+ ms", out)
    assert "from, at" in out and "every result below came over the network" in out
    for figure in ("one at a time", "burst, 32 at a time", "searches/s", "RPCs served"):
        assert re.search(figure + r".*\d", out), figure
    assert "Traceback" not in result.stderr


# -- nodes, publish, search, metrics --------------------------------------------


def test_search_finds_a_package_published_through_the_cli(
    network: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    first, second = network
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([WIDGET]), encoding="utf-8")
    key = tmp_path / "publisher.key"
    made = dhtquery("keygen", str(key))
    assert made.returncode == 0, made.stderr
    public_key = made.stdout.split("public key ")[1].strip()
    published = dhtquery(
        "publish", str(catalog), "--bootstrap", f"127.0.0.1:{first.port}", "--key", str(key)
    )
    assert published.returncode == 0, published.stderr
    assert "published acme/widget@1.2.3" in published.stdout
    assert f"signing with key {public_key}" in published.stdout

    trust = tmp_path / "trust.json"
    found = dhtquery(
        "search", "widgets", "--bootstrap", f"127.0.0.1:{second.port}", "--json", trust=trust
    )
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert [(r["namespace"], r["name"], r["version"]) for r in answer["results"]] == [
        ("acme", "widget", "1.2.3")
    ]
    assert answer["results"][0]["peer"].startswith("127.0.0.1:")
    assert answer["results"][0]["publisher"] == public_key
    assert answer["results"][0]["pinned"] is False  # trusted on first use

    pinned = dhtquery("trust", "acme", public_key, trust=trust)
    assert pinned.returncode == 0, pinned.stderr
    strict = dhtquery(
        "search", "widgets", "--strict", "-b", f"127.0.0.1:{second.port}", "--json", trust=trust
    )
    assert strict.returncode == 0, strict.stderr
    assert json.loads(strict.stdout)["results"][0]["pinned"] is True

    by_tag = dhtquery("search", "--tag", "tui", "-b", f"127.0.0.1:{first.port}")
    assert by_tag.returncode == 0, by_tag.stderr
    assert "acme/widget" in by_tag.stdout


def test_metrics_endpoint_serves_the_counters_after_a_search(
    network: tuple[NodeProcess, NodeProcess],
) -> None:
    first, _ = network
    found = dhtquery("search", "anything", "--bootstrap", f"127.0.0.1:{first.port}")
    assert found.returncode == 0, found.stderr
    url = f"http://127.0.0.1:{first.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = _samples(text)
    assert samples["dhtquery_rpc_served_total"] > 0
    assert samples["dhtquery_peers"] >= 1
    for name in (
        'dhtquery_queries_total{outcome="successful"}',
        'dhtquery_queries_total{outcome="timed_out"}',
        "dhtquery_queries_in_flight",
        "dhtquery_results_total",
        "dhtquery_duplicates_total",
        "dhtquery_query_duration_seconds_count",
        'dhtquery_query_duration_quantile_seconds{quantile="0.99"}',
        # every kind of drop from the start, at zero until one happens
        'dhtquery_rpc_dropped_total{kind="late_response"}',
        'dhtquery_rpc_dropped_total{kind="malformed"}',
        'dhtquery_rpc_dropped_total{kind="unknown_rpc"}',
        'dhtquery_rpc_dropped_total{kind="queue_full"}',
        'dhtquery_rpc_dropped_total{kind="publisher_cap"}',
    ):
        assert name in samples, name
    assert "# TYPE dhtquery_query_duration_seconds histogram" in text
    assert "# TYPE dhtquery_rpc_dropped_total counter" in text


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_node_stops_cleanly_on_sigterm() -> None:
    node = start_node("--log-level", "info")
    status, err = node.stop()
    assert status == 0, err
    assert "listening on 127.0.0.1" not in err  # said once, on stdout
    assert "node stopped" in err
    assert "Traceback" not in err


# -- bad input ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "broken.json").write_text('[{"namespace": "acme"', encoding="utf-8")
    (folder / "schema.json").write_text(
        json.dumps([{**WIDGET, "version": "one"}]), encoding="utf-8"
    )
    (folder / "good.json").write_text(json.dumps([WIDGET]), encoding="utf-8")
    Publisher.generate().save(folder / "key")
    Publisher.generate().save(folder / "loose.key").chmod(0o644)
    return folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["node", "--no-such-option"], "No such option: --no-such-option"),
        (["search", "x", "--bootstrap", "localhost"], "'localhost' is not HOST:PORT"),
        (["search", "x", "--bootstrap", "127.0.0.1:70000"], "port 70000 is not in 1-65535"),
        (["publish", "{dir}/broken.json", "-b", "127.0.0.1:9"], "is not valid JSON"),
        (["node", "--catalog", "{dir}/broken.json"], "is not valid JSON"),
        (["publish", "{dir}/schema.json", "-b", "127.0.0.1:9"], "version: is not a semantic"),
        (["publish", "{dir}/missing.json", "-b", "127.0.0.1:9"], "cannot read catalog"),
        (["search", "x", "--limit", "0", "-b", "127.0.0.1:9"], "limit: must be an int"),
        (
            [
                "publish",
                "{dir}/good.json",
                "-b",
                "127.0.0.1:9",
                "--bootstrap-timeout",
                "0",
                "--key",
                "{dir}/key",
            ],
            "127.0.0.1:9 did not answer",
        ),
        (
            ["publish", "{dir}/good.json", "-b", "127.0.0.1:9", "--key", "{dir}/loose.key"],
            "permissions 0644 are too open",
        ),
        (
            ["publish", "{dir}/good.json", "-b", "127.0.0.1:9", "--key", "{dir}/none.key"],
            "cannot open the key file",
        ),
        (["publish", "{dir}/good.json", "-b", "127.0.0.1:9"], "publish needs a publisher key"),
        (["trust", "acme", "not-hex"], "key must be 64 hex digits"),
    ],
    ids=[
        "unknown-option",
        "bootstrap-no-port",
        "bootstrap-bad-port",
        "catalog-not-json",
        "node-catalog-not-json",
        "catalog-schema",
        "catalog-missing",
        "bad-limit",
        "bootstrap-unreachable",
        "key-loose-permissions",
        "key-missing",
        "key-none",
        "trust-bad-key",
    ],
)
def test_bad_input_gives_one_line_and_status_2(
    args: list[str], message: str, bad_files: Path
) -> None:
    result = dhtquery(*(arg.replace("{dir}", str(bad_files)) for arg in args))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dhtquery: error: ")
    assert message in lines[0]


def test_keygen_writes_a_0600_key_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "key"
    made = dhtquery("keygen", str(path))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Publisher.load(path).key_id in made.stdout
    before = path.read_bytes()
    again = dhtquery("keygen", str(path))
    assert again.returncode == 1
    assert "exists; a key file is never overwritten" in again.stderr
    assert path.read_bytes() == before


def test_trust_pins_and_lists_namespaces(tmp_path: Path) -> None:
    env_file = tmp_path / "trust.json"
    key = Publisher.generate().key_id
    env = {**ENV, "DHTQUERY_TRUST_FILE": str(env_file)}
    pinned = subprocess.run(
        [sys.executable, "-m", "dhtquery", "trust", "acme", key],
        capture_output=True, text=True, timeout=WAIT, env=env, check=False,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "dhtquery", "trust"],
        capture_output=True, text=True, timeout=WAIT, env=env, check=False,
    )  # fmt: skip
    assert listed.stdout.split() == ["acme", key, "pinned"]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_bootstrap_peer_that_never_answers_is_waited_for_then_named() -> None:
    port = _free_udp_port()
    started = time.monotonic()
    result = dhtquery("search", "x", "-b", f"127.0.0.1:{port}", "--bootstrap-timeout", "1.5")
    waited = time.monotonic() - started
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"waiting for bootstrap peer 127.0.0.1:{port} to answer (up to 1.5 s)..."
    assert lines[-1] == (
        f"dhtquery: error: bootstrap peer 127.0.0.1:{port} did not answer in 1.5 s "
        "(is a node running there?)"
    )
    assert waited >= 1.5


def test_a_search_started_before_its_node_waits_and_finds_it() -> None:
    port = _free_udp_port()
    search = subprocess.Popen(
        [sys.executable, "-m", "dhtquery", "search", "anything", "-b", f"127.0.0.1:{port}",
         "--timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the node starts later: the search's first ping is lost
        node = start_node("--port", str(port))
        try:
            out, err = search.communicate(timeout=WAIT)
        finally:
            node.stop()
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert search.returncode == 0, err
    assert "waiting for bootstrap peer" in err
    assert "no package matched" in out


@pytest.mark.parametrize(
    "module", ["core", "dht", "registry", "churn", "scale", "barrage", "profile_client"]
)
def test_bench_modules_run_from_outside_the_source_tree(module: str, tmp_path: Path) -> None:
    # a full ``bench core --quick`` takes ~40 s: its module and argument
    # parser are what is checked here, run as an installed wheel runs them
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", f"dhtquery.bench.{module}", "--help"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--" in result.stdout


def test_bench_names_are_the_bench_package_modules() -> None:
    from dhtquery.bench import BENCHES

    assert {name: BENCHES[name] for name in cli.BENCHES} == dict(cli.BENCHES)


# -- helpers in process -----------------------------------------------------------


def test_catalog_objects_may_leave_the_hash_out_but_not_give_a_wrong_one() -> None:
    package = package_from_json(WIDGET)
    assert package.id == PackageId("acme", "widget")
    assert package_from_json(package.to_record()) == package
    with pytest.raises(ValueError, match="hash"):
        package_from_json({**WIDGET, "hash": "0" * 64})
    with pytest.raises(ValueError, match="colour"):
        package_from_json({**WIDGET, "colour": "red"})
    minimal = package_from_json({"namespace": "a", "name": "b", "version": "0.1.0", "title": "T"})
    assert isinstance(minimal, Package) and minimal.tags == ()


def test_parse_address_takes_host_port_and_ipv6() -> None:
    assert cli.parse_address("127.0.0.1:8468") == ("127.0.0.1", 8468)
    assert cli.parse_address("[::1]:9000") == ("::1", 9000)
    assert cli.parse_address("localhost:1")[1] == 1
    for bad in ("127.0.0.1", ":80", "host:", "1.2.3.4:0", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            cli.parse_address(bad)


def test_demo_catalog_is_valid_deterministic_and_caps_tags() -> None:
    from dhtquery.testing import MAX_PACKAGES_PER_TAG, generate_catalog

    catalog = generate_catalog(1000)
    assert len({p.id for p in catalog}) == 1000
    assert catalog == generate_catalog(1000)
    uses: dict[str, int] = {}
    for package in catalog:
        for tag in package.tags:
            uses[tag] = uses.get(tag, 0) + 1
    assert max(uses.values()) <= MAX_PACKAGES_PER_TAG
    assert all(Package.decode(p.encode()) == p for p in catalog[:50])


def _dht_report() -> dict[str, Any]:
    def row(core: str, rate: float) -> dict[str, Any]:
        return {
            "client": "dhtquery get_all",
            "run": "single",
            "loop": "uvloop",
            "core": core,
            "error": None,
            "throughput": {"ok_per_s": rate},
            "latency": {"latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 4.0, "max": 9.0}},
        }

    return {"rows": [row("rust", 5000.0), row("python", 3000.0)]}


def test_plots_read_bench_rows_and_write_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from dhtquery.cli.plots import extract, plot_json

    data = extract(_dht_report())
    assert data.throughput["single"] == [
        ("dhtquery get_all / single / uvloop / rust", 5000.0),
        ("dhtquery get_all / single / uvloop / python", 3000.0),
    ]
    curve = data.latency["dhtquery get_all / single / uvloop / rust (percentiles)"]
    assert curve[0] == (1.0, 0.5) and curve[-1] == (9.0, 1.0)
    source = tmp_path / "dht.json"
    source.write_text(json.dumps(_dht_report()), encoding="utf-8")
    output = plot_json([source], tmp_path / "plot.png")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_say_when_there_is_nothing_to_plot(tmp_path: Path) -> None:
    from dhtquery.cli.plots import PlotError, plot_json

    source = tmp_path / "empty.json"
    source.write_text("{}", encoding="utf-8")
    with pytest.raises(PlotError, match="no throughput or latency figures"):
        plot_json([source], tmp_path / "plot.png")


def test_plots_read_the_registry_bench_shape() -> None:
    from dhtquery.cli.plots import extract

    figures = {
        "throughput_per_s": 1400.0,
        "p50_ms": 1.5,
        "p95_ms": 3.5,
        "p99_ms": 4.9,
        "max_ms": 7.7,
    }
    report = {
        "results": {"uvloop/rust": {"dhtquery": figures, "naive": {**figures, "p50_ms": 900.0}}}
    }
    data = extract(report)
    assert data.throughput["searches"] == [
        ("dhtquery / uvloop/rust", 1400.0),
        ("naive / uvloop/rust", 1400.0),
    ]
    assert data.latency["dhtquery / uvloop/rust (percentiles)"] == [
        (1.5, 0.5),
        (3.5, 0.95),
        (4.9, 0.99),
        (7.7, 1.0),
    ]


def test_search_with_no_match_says_so(network: tuple[NodeProcess, NodeProcess]) -> None:
    first, _ = network
    found = dhtquery("search", "zzznothingmatches", "-b", f"127.0.0.1:{first.port}")
    assert found.returncode == 0, found.stderr
    assert "no package matched 'zzznothingmatches'" in found.stdout
    assert "0 results in" in found.stdout


def test_node_signs_its_catalog_with_the_key_given(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([WIDGET]), encoding="utf-8")
    key = Publisher.generate()
    path = key.save(tmp_path / "publisher.key")
    node = start_node("--ephemeral", "--catalog", str(catalog), "--key", str(path))
    try:
        answer: dict[str, Any] = {}
        for _ in range(50):  # bounded; the catalog goes out once the node listens
            found = dhtquery("search", "widgets", "-b", f"127.0.0.1:{node.port}", "--json")
            answer = json.loads(found.stdout or "{}")
            if answer.get("results"):
                break
    finally:
        node.stop()
    assert [r["publisher"] for r in answer["results"]] == [key.key_id]

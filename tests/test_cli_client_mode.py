"""The CLI's ``search`` and ``publish`` run client nodes: the network's
nodes answer them but never count them as peers, so once they have left no
node holds a departed contact (``dhtquery_peers`` stays the network's own
size) and a later command's search asks only live nodes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from dhtquery.dht import Publisher
from tests.test_cli import WIDGET, _samples, dhtquery, start_node


def _peers(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return _samples(response.read().decode())["dhtquery_peers"]


def test_cli_clients_that_left_are_in_no_routing_table(tmp_path: Path) -> None:
    first = start_node("--metrics-port", "0", "--ephemeral")
    second = None
    try:
        second = start_node("--bootstrap", f"127.0.0.1:{first.port}", "--ephemeral")
        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps([WIDGET]), encoding="utf-8")
        key = Publisher.generate().save(tmp_path / "publisher.key")
        published = dhtquery(
            "publish", str(catalog), "--bootstrap", f"127.0.0.1:{first.port}", "--key", str(key)
        )
        assert published.returncode == 0, published.stderr
        # the two nodes hold it; the client that published it keeps no copy
        assert "(2 nodes hold it)" in published.stdout
        results = []
        for _ in range(2):
            found = dhtquery("search", "widgets", "-b", f"127.0.0.1:{first.port}", "--json")
            assert found.returncode == 0, found.stderr
            results.append(json.loads(found.stdout))
        peers = _peers(first.metrics_port)
    finally:
        for node in (second, first):
            if node is not None:
                node.stop()
    assert peers == 1  # the second node; none of the three clients
    for answer in results:
        assert [r["name"] for r in answer["results"]] == ["widget"]
        # only live nodes were asked: every peer asked answered
        assert answer["peers_failed"] == 0

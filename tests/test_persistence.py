"""A node with a data directory keeps its id, the records and plain values
it holds, what it published, its contacts and its registry's catalog in
SQLite, and has them again after a restart (TTLs and caps honoured); a
process killed with SIGKILL mid-burst leaves a file that opens and holds
every record (and catalog entry) whose put (publish) had returned."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from kademlia.utils import digest

from dhtquery import DhtNode, QueryManager, new_core
from dhtquery.dht import StoreLimits
from dhtquery.dht.persist import DATABASE_NAME, NodeDatabase
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.registry import P2PRegistry, Package, PackageId, Query
from dhtquery.registry.service import CATALOG_TABLE
from dhtquery.testing import HOST, FakeClock
from tests.dht_helpers import eventually, open_nodes, run_paired

from .dht_helpers import publisher_named, signed, signed_package

#: the key the test packages (namespace "acme") are signed with
ACME = publisher_named("acme")

Run = Callable[[Coroutine[Any, Any, Any]], Any]
ROOT = Path(__file__).resolve().parents[1]


def _node(backend: str, data_dir: Path, clock: FakeClock | None = None, **kwargs: Any) -> DhtNode:
    return DhtNode(
        queries=QueryManager(core=new_core(backend), clock=clock), data_dir=data_dir, **kwargs
    )


def test_records_values_and_id_survive_a_restart(backend: str, tmp_path: Path) -> None:
    clock = FakeClock()
    first = _node(backend, tmp_path, clock)
    key = digest("key")
    records = [signed(f"publisher-{i}", f"data {i}".encode(), key) for i in range(3)]
    for record in records:
        first.records.put(key, record, clock.now())
    first.storage[digest("plain")] = "a plain value"
    first.storage[digest("number")] = 42
    node_id = first.node.id
    identity = first.identity.public_key
    first.stop()

    clock.advance(60.0)
    again = _node(backend, tmp_path, clock)
    assert again.node.id == node_id
    assert again.identity.public_key == identity  # the node's publisher key too
    by_key = sorted(records, key=lambda r: r.publisher)
    assert sorted(again.records.get(key, clock.now()), key=lambda r: r.publisher) == by_key
    assert again.storage.get(digest("plain")) == "a plain value"
    assert again.storage.get(digest("number")) == 42
    assert (tmp_path / DATABASE_NAME).is_file()


def test_what_outlived_its_ttl_is_gone_after_a_restart(backend: str, tmp_path: Path) -> None:
    clock = FakeClock()
    limits = StoreLimits(ttl=100.0)
    first = _node(backend, tmp_path, clock, limits=limits)
    first.records.put(digest("old"), signed("p", b"old", "old"), clock.now())
    first.storage[digest("old")] = "old"
    clock.advance(60.0)
    first.records.put(digest("young"), signed("p", b"young", "young"), clock.now())
    first.storage[digest("young")] = "young"
    first.stop()

    clock.advance(50.0)  # "old" is 110 s old: past its 100 s; "young" is 50 s old
    again = _node(backend, tmp_path, clock, limits=limits)
    assert again.records.get(digest("old"), clock.now()) == []
    assert [r.data for r in again.records.get(digest("young"), clock.now())] == [b"young"]
    assert again.storage.get(digest("old")) is None
    assert again.storage.get(digest("young")) == "young"
    # the expired ones are gone from the file too
    database = NodeDatabase(tmp_path / DATABASE_NAME)
    assert [key for key, _, _ in database.records()] == [digest("young")]
    assert [key for key, _, _ in database.values()] == [digest("young")]


def test_a_restarted_node_rejoins_through_the_peers_it_knew(
    backend: str, run: Run, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[Any], bytes, int]:
        peer = DhtNode(queries=QueryManager(core=new_core(backend)))
        await peer.listen(0, "127.0.0.1")
        try:
            first = _node(backend, tmp_path)
            await first.listen(0, "127.0.0.1")
            await first.bootstrap([peer.address])
            # (the peer has verified it: its table holds the old address)
            assert await eventually(lambda: peer.peer_count == 1)
            first.stop()
            again = _node(backend, tmp_path)
            await again.listen(0, "127.0.0.1")
            try:
                found = list(await again.bootstrap(again.known_peers()))
                return found, peer.node.id, again.stats.get("timeouts", 0)
            finally:
                again.stop()
        finally:
            peer.stop()

    found, peer_id, timeouts = run(scenario())
    assert [node.id for node in found] == [peer_id]
    # its own id at its old address, which the peer still names, is never
    # asked (it would wait out a dead address)
    assert timeouts == 0


WRITER = """
import sys
from kademlia.utils import digest
from dhtquery import DhtNode
from dhtquery.dht import Publisher, Record

node = DhtNode(data_dir=sys.argv[1])
publisher = Publisher.generate()
for index in range(100_000):
    key = digest(f"key-{index}")
    node.records.put(key, Record.create(publisher, key, b"x" * 200), node.clock.now())
    print(index, flush=True)
"""


def test_sigkill_mid_burst_leaves_every_returned_put_on_disk(tmp_path: Path) -> None:
    last = _kill_after(WRITER, tmp_path, 300)
    assert last >= 300
    database = NodeDatabase(tmp_path / DATABASE_NAME)
    held = {key for key, _, _ in database.records()}
    assert {digest(f"key-{index}") for index in range(last + 1)} <= held
    node = DhtNode(data_dir=tmp_path)
    assert node.records.get(digest("key-0"), node.clock.now())[0].data == b"x" * 200


def test_the_node_command_keeps_its_id_in_its_data_directory(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "dhtquery", "node", "--port", "0", "--data-dir", str(tmp_path)]
    ids = []
    for _ in range(2):
        node = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
        try:
            assert node.stdout is not None
            line = node.stdout.readline()
            node.send_signal(signal.SIGTERM)
            node.communicate(timeout=20)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
        match = re.search(r"\(id ([0-9a-f]+), core \w+, data in (.*)\)", line)
        assert match is not None, line
        assert match.group(2) == str(tmp_path)
        assert node.returncode == 0
        ids.append(match.group(1))
    assert ids[0] == ids[1]
    assert (tmp_path / DATABASE_NAME).is_file()


def test_ephemeral_and_a_data_directory_exclude_each_other(tmp_path: Path) -> None:
    from tests.test_cli import dhtquery

    result = dhtquery("node", "--ephemeral", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--ephemeral and --data-dir: choose one" in result.stderr
    assert not (tmp_path / DATABASE_NAME).exists()


def _package(name: str, version: str = "1.0.0", tags: tuple[str, ...] = ("kept",)) -> Package:
    return Package(PackageId("acme", name), version, f"Package {name}", tags=tags)


def test_a_restart_keeps_records_and_catalog(backend: str, tmp_path: Path) -> None:
    async def before() -> tuple[int, bytes]:
        async with open_nodes(backend) as nodes:
            await nodes.add(registry=True)
            node = await nodes.add(data_dir=tmp_path / "node")
            registry = P2PRegistry(node, anti_entropy_period=None)
            for name in ("alpha", "beta"):
                await registry.publish(_package(name), publisher=ACME)
            await registry.publish(_package("alpha", "1.1.0"), publisher=ACME)  # replaces 1.0.0
            # one the node only heard of, by gossip
            await nodes.registries[0].publish(_package("gamma"), publisher=ACME)
            assert await eventually(lambda: PackageId("acme", "gamma") in registry.catalog)
            return len(node.records), node.node.id

    async def after() -> tuple[list[str], list[bool], int, list[str], bytes]:
        node = DhtNode(queries=QueryManager(core=new_core(backend)), data_dir=tmp_path / "node")
        registry = P2PRegistry(node, anti_entropy_period=None)
        await node.listen(0, HOST)
        try:
            found = await registry.search(Query("package", limit=10))
            return (
                [f"{p.id}@{p.version}" for p in registry.catalog],
                [registry.catalog.pinned(p.id) for p in registry.catalog],
                len(node.records),
                [f"{p.id}@{p.version}" for p in found],
                node.node.id,
            )
        finally:
            node.stop()

    held, node_id = run_paired(backend, before())
    catalog, pinned, held_again, found, node_id_again = run_paired(backend, after())
    # arrival order: beta, then alpha's new version, then gamma
    assert catalog == ["acme/beta@1.0.0", "acme/alpha@1.1.0", "acme/gamma@1.0.0"]
    assert pinned == [True, True, False]  # its own publications stay pinned
    assert held_again == held > 0
    assert found == ["acme/alpha@1.1.0", "acme/beta@1.0.0", "acme/gamma@1.0.0"]
    assert node_id_again == node_id


def test_a_restored_catalog_honours_the_cap_and_drops_bad_rows(
    backend: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        node = DhtNode(queries=QueryManager(core=new_core(backend)), data_dir=tmp_path)
        registry = P2PRegistry(node, anti_entropy_period=None)
        await node.listen(0, HOST)
        try:
            await registry.publish(_package("mine"), publisher=ACME)
            for name in ("old", "middle", "new"):  # heard of (as gossip would), in order
                heard = registry._receive(signed_package(_package(name), ACME))
                registry._catalogued(("127.0.0.1", 9), heard)
        finally:
            node.stop()
        table = DhtNode(data_dir=tmp_path).table(CATALOG_TABLE)
        assert table is not None
        table.put(b"acme/broken", b"-not a record")
        node = DhtNode(queries=QueryManager(core=new_core(backend)), data_dir=tmp_path)
        registry = P2PRegistry(node, anti_entropy_period=None, max_packages=3)
        node.stop()
        return [str(p.id) for p in registry.catalog], [key.decode() for key, _ in table.items()]

    catalog, rows = run_paired(backend, scenario())
    # the cap of 3 evicts the oldest entry not pinned, on file too
    assert catalog == ["acme/mine", "acme/middle", "acme/new"]
    assert rows == catalog


def test_a_key_value_table_keeps_bytes_in_write_order_and_refuses_bad_input(
    tmp_path: Path,
) -> None:
    assert DhtNode().table("anything") is None  # memory only: no table
    node = DhtNode(data_dir=tmp_path)
    table = node.table("things")
    assert table is not None
    table.put(b"b", b"2")
    table.put(b"a", b"1")
    table.put(b"b", b"3")  # a rewrite moves to the end
    with pytest.raises(InvalidArgumentTypeError, match="value must be bytes, got str"):
        table.put(b"c", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError, match="key must be bytes, got int"):
        table.put(1, b"x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="name must be 1 to 64 characters"):
        node.table("")
    assert table.items() == [(b"a", b"1"), (b"b", b"3")]  # nothing lost to bad input
    node.stop()
    again = DhtNode(data_dir=tmp_path).table("things")
    assert again is not None and again.items() == [(b"a", b"1"), (b"b", b"3")]
    assert again.get(b"a") == b"1" and len(again) == 2
    again.delete(b"a")
    assert again.get(b"a") is None and len(again) == 1


PUBLISHER = """
import asyncio, sys
from dhtquery import DhtNode
from dhtquery.registry import P2PRegistry, Package, PackageId

async def main():
    node = DhtNode(data_dir=sys.argv[1])
    registry = P2PRegistry(node, anti_entropy_period=None)
    await node.listen(0, "127.0.0.1")
    for index in range(100_000):
        await registry.publish(
            Package(PackageId("burst", f"p{index}"), "1.0.0", "Burst", tags=("burst",))
        )
        print(index, flush=True)

asyncio.run(main())
"""


def test_sigkill_mid_publish_burst_leaves_every_returned_publish_on_disk(tmp_path: Path) -> None:
    last = _kill_after(PUBLISHER, tmp_path, 100)
    assert last >= 100
    node = DhtNode(data_dir=tmp_path)
    registry = P2PRegistry(node, anti_entropy_period=None)
    names = {f"p{index}" for index in range(last + 1)}
    # the record, the catalog entry and the publication of each returned publish
    held = {
        index
        for index in range(last + 1)
        if node.records.get(digest(f"pkg:burst/p{index}"), node.clock.now())
    }
    assert held == set(range(last + 1))
    assert names <= {p.id.name for p in registry.catalog}
    assert all(registry.catalog.pinned(p.id) for p in registry.catalog)
    published = {record.data for _, record in node.republisher.items()}
    assert {
        registry.catalog.get(PackageId("burst", name)).encode()  # type: ignore[union-attr]
        for name in names
    } <= published


def _kill_after(script: str, data_dir: Path, count: int) -> int:
    """Run ``script`` (it prints 0, 1, 2, ... as each write returns, and
    stops at 100,000) with ``data_dir``; SIGKILL it once it printed
    ``count``. Returns the last number it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert child.stdout is not None
    last = -1
    try:
        for line in child.stdout:  # bounded: the child stops at 100,000
            last = int(line)
            if last >= count:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return last


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")])
        ),
    }


def test_the_node_command_serves_its_catalog_again_after_a_restart(tmp_path: Path) -> None:
    from tests.test_cli import WIDGET, dhtquery, start_node

    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([WIDGET]), encoding="utf-8")
    data = tmp_path / "data"
    node = start_node("--data-dir", str(data), "--catalog", str(catalog))
    try:
        # the catalog is published once the node listens: ask until it is
        for _ in range(50):  # bounded; each search waits at most --timeout
            first = dhtquery("search", "widgets", "-b", f"127.0.0.1:{node.port}", "--json")
            if json.loads(first.stdout or "{}").get("results"):
                break
        else:
            raise AssertionError("the node never served its catalog")
    finally:
        node.stop()
    again = start_node("--data-dir", str(data))  # no --catalog this time
    try:
        found = dhtquery("search", "widgets", "-b", f"127.0.0.1:{again.port}", "--json")
        package = dhtquery("search", "--tag", "tui", "-b", f"127.0.0.1:{again.port}", "--json")
    finally:
        again.stop()
    assert found.returncode == 0, found.stderr
    assert [r["name"] for r in json.loads(found.stdout)["results"]] == ["widget"]
    # a tag search too (its catalog, and the tag record it held)
    assert [r["name"] for r in json.loads(package.stdout)["results"]] == ["widget"]


def test_the_node_command_refuses_a_republish_interval_under_a_second(tmp_path: Path) -> None:
    from tests.test_cli import dhtquery

    result = dhtquery("node", "--republish-interval", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--republish-interval 0: must be at least 1" in result.stderr
    assert not (tmp_path / DATABASE_NAME).exists()

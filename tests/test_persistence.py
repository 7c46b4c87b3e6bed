"""A node with a data directory keeps its id, the records and plain values
it holds and its contacts in SQLite, and has them again after a restart
(TTLs honoured); a process killed with SIGKILL mid-burst leaves a file that
opens and holds every record whose put had returned."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kademlia.utils import digest

from dhtquery import DhtNode, QueryManager, new_core
from dhtquery.dht import Record, StoreLimits
from dhtquery.dht.persist import DATABASE_NAME, NodeDatabase
from dhtquery.testing import FakeClock

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
    records = [Record.create(f"publisher-{i}", f"data {i}".encode()) for i in range(3)]
    for record in records:
        first.records.put(key, record, clock.now())
    first.storage[digest("plain")] = "a plain value"
    first.storage[digest("number")] = 42
    node_id = first.node.id
    first.stop()

    clock.advance(60.0)
    again = _node(backend, tmp_path, clock)
    assert again.node.id == node_id
    assert sorted(again.records.get(key, clock.now()), key=lambda r: r.publisher) == records
    assert again.storage.get(digest("plain")) == "a plain value"
    assert again.storage.get(digest("number")) == 42
    assert (tmp_path / DATABASE_NAME).is_file()


def test_what_outlived_its_ttl_is_gone_after_a_restart(backend: str, tmp_path: Path) -> None:
    clock = FakeClock()
    limits = StoreLimits(ttl=100.0)
    first = _node(backend, tmp_path, clock, limits=limits)
    first.records.put(digest("old"), Record.create("p", b"old"), clock.now())
    first.storage[digest("old")] = "old"
    clock.advance(60.0)
    first.records.put(digest("young"), Record.create("p", b"young"), clock.now())
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
    async def scenario() -> tuple[list[Any], bytes]:
        peer = DhtNode(queries=QueryManager(core=new_core(backend)))
        await peer.listen(0, "127.0.0.1")
        try:
            first = _node(backend, tmp_path)
            await first.listen(0, "127.0.0.1")
            await first.bootstrap([peer.address])
            first.stop()
            again = _node(backend, tmp_path)
            await again.listen(0, "127.0.0.1")
            try:
                return list(await again.bootstrap(again.known_peers())), peer.node.id
            finally:
                again.stop()
        finally:
            peer.stop()

    found, peer_id = run(scenario())
    assert [node.id for node in found] == [peer_id]


WRITER = """
import sys
from kademlia.utils import digest
from dhtquery import DhtNode
from dhtquery.dht import Record

node = DhtNode(data_dir=sys.argv[1])
for index in range(100_000):
    node.records.put(digest(f"key-{index}"), Record.create("p", b"x" * 200), node.clock.now())
    print(index, flush=True)
"""


def test_sigkill_mid_burst_leaves_every_returned_put_on_disk(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")])
        ),
    }
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert writer.stdout is not None
    last = -1
    try:
        for line in writer.stdout:  # bounded: the writer stops at 100,000
            last = int(line)
            if last >= 300:
                break
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
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

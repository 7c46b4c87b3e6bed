"""dhtquery.testing.LocalNetwork: nodes in this process or in worker
processes, reachable, looked up across processes, all stopped (and no child
left) after the block, also when the block raises; and the loop factory."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from dhtquery.dht import Publisher
from dhtquery.testing import LOOPS, LocalNetwork, WorkerError, loop_factory

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


class Boom(Exception):
    pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stopped(node: Any) -> bool:
    """Its socket is closed (``DhtNode.listening`` stays True after
    ``stop()``: kademlia's stop closes the transport but keeps it)."""
    return node.transport is None or bool(node.transport.is_closing())


def node_count(network: LocalNetwork) -> int:
    """A hook a worker runs (by name): how many nodes it holds."""
    return len(network.nodes)


def test_in_process_nodes_join_and_find_each_others_records(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with LocalNetwork(4, core=backend) as net:
            assert len(net.nodes) == 4 and len(set(net.addresses)) == 4
            assert all(host == "127.0.0.1" for host, _ in net.addresses)
            assert all(node.peer_count > 0 for node in net.nodes)
            publisher = Publisher.generate()
            assert await net.nodes[0].put("key", b"value", publisher=publisher) >= 3
            outcome = await net.nodes[3].get_all("key")
            assert [(r.publisher, r.data) for r in outcome.items] == [(publisher.key_id, b"value")]
            assert await net.settle()
            nodes = list(net.nodes)
        assert all(stopped(node) for node in nodes)

    run(main())


def test_in_process_registries_and_stock_peers(run: Run[None], backend: str) -> None:
    async def main() -> None:
        async with LocalNetwork(3, core=backend, registries=True, stock=2, join="full") as net:
            assert len(net.registries) == 3 and len(net.stock_nodes) == 2
            assert [r.node for r in net.registries] == net.nodes
            assert len(net.addresses) == 5
            # a stock peer reads a plain value one of ours stored
            assert await net.nodes[0].set("plain", "v")
            assert await net.stock_nodes[1].get("plain") == "v"
            servers = list(net.stock_nodes)
        assert all(stopped(server) for server in servers)

    run(main())


def test_in_process_nodes_are_stopped_when_the_block_raises(run: Run[None], backend: str) -> None:
    async def main() -> None:
        network = LocalNetwork(3, core=backend)
        with pytest.raises(Boom):
            async with network as net:
                assert all(node.listening for node in net.nodes)
                raise Boom
        assert network.nodes and all(stopped(node) for node in network.nodes)

    run(main())


def test_worker_nodes_are_looked_up_across_processes() -> None:
    async def main() -> list[int]:
        async with LocalNetwork(4, core="python", processes=2) as net:
            pids = net.worker_pids
            assert len(pids) == 2 and all(alive(pid) for pid in pids)
            assert os.getpid() not in pids and len(set(net.addresses)) == 4
            assert net.nodes == []
            # a node of worker 0 stores, a node of worker 1 and one of this
            # process find it
            assert await net.command(0, "set", node=0, key="across", value="hello")
            assert await net.command(1, "get", node=1, key="across") == "hello"
            client = await net.add()
            assert client.peer_count > 0
            assert await client.get("across") == "hello"
            # and the other way round
            assert await client.set("back", "there")
            assert await net.command(0, "get", node=1, key="back") == "there"
            assert await net.settle()
            return pids

    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner:
        pids = runner.run(asyncio.wait_for(main(), 60))
    assert not any(alive(pid) for pid in pids)


def test_workers_are_ended_when_the_block_raises() -> None:
    async def main(network: LocalNetwork) -> None:
        async with network as net:
            assert all(alive(pid) for pid in net.worker_pids)
            raise Boom

    network = LocalNetwork(2, core="python", processes=2)
    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner, pytest.raises(Boom):
        runner.run(asyncio.wait_for(main(network), 60))
    assert network.workers == []


def test_workers_outlive_event_loops_in_a_with_block_and_run_hooks() -> None:
    with LocalNetwork(3, core="python", processes=1, loop="uvloop", join="full") as net:
        (pid,) = net.worker_pids
        assert net.call(f"{__name__}:node_count") == [3]
        stats = net.workers[0].request("stats")
        assert set(stats) == {"transport", "gossip"}
        for loop in LOOPS:  # a client per loop joins, then is forgotten

            async def visit() -> None:
                async with LocalNetwork(1, core="python") as here:
                    assert await here.nodes[0].bootstrap(net.addresses)

            with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
                runner.run(asyncio.wait_for(visit(), 30))
            assert net.forget_strangers() >= 1
        assert net.forget_strangers() == 0
        with pytest.raises(WorkerError, match="unknown command"):
            net.workers[0].request("no-such-command")
        assert net.cpu_seconds() is not None
    assert not alive(pid)


async def sleep_long(network: LocalNetwork) -> None:
    """A hook that keeps its worker busy past any EOF."""
    await asyncio.sleep(60)


def test_a_worker_that_does_not_exit_is_killed() -> None:
    network = LocalNetwork(1, core="python", processes=1, join=None)
    with network as net:
        worker = net.workers[0]
        errors: list[BaseException] = []

        def call() -> None:
            try:
                worker.request("call", hook=f"{__name__}:sleep_long")
            except WorkerError as exc:  # the worker was killed mid-call
                errors.append(exc)

        busy = threading.Thread(target=call, daemon=True)
        busy.start()
        started = time.monotonic()
        worker.close(grace=0.5)
        assert time.monotonic() - started < 10
        assert worker.process.returncode is not None and not alive(worker.pid)
        busy.join(10)
        assert not busy.is_alive() and len(errors) == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="loop"):
        LocalNetwork(2, loop="trio")
    with pytest.raises(ValueError, match="processes"):
        LocalNetwork(2, processes=3)
    with pytest.raises(ValueError, match="'with'"):
        LocalNetwork(2).__enter__()


def test_loop_factory_names_the_loops() -> None:
    assert loop_factory("asyncio") is asyncio.new_event_loop
    loop = loop_factory("uvloop")()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    with pytest.raises(ValueError, match="asyncio, uvloop"):
        loop_factory("trio")

"""DhtNode as a drop-in for kademlia's Server where stock code relies on it:
a protocol_class derived from stock's, rpcudp-style ``rpc_*`` methods, node
ids of other lengths, host names in bootstrap, IPv6, and stock's exception
for a value too large. Real UDP on loopback (127.0.0.1 and ::1)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kademlia.network import Server
from kademlia.protocol import KademliaProtocol
from rpcudp.exceptions import MalformedMessage

from dhtquery import DhtNode, QueryManager, new_core
from dhtquery.dht import DhtProtocol
from dhtquery.errors import UnsupportedError, WireError
from dhtquery.testing import FakeClock

from .dht_helpers import address_of

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class EchoProtocol(DhtProtocol):
    def rpc_echo(self, sender: Any, value: Any) -> Any:
        return value


class StockEchoProtocol(KademliaProtocol):  # type: ignore[misc]
    def rpc_echo(self, sender: Any, value: Any) -> Any:
        return value


class EchoNode(DhtNode):
    protocol_class = EchoProtocol


class StockEchoServer(Server):  # type: ignore[misc]
    protocol_class = StockEchoProtocol


class HuskNode(DhtNode):
    protocol_class = StockEchoProtocol


@asynccontextmanager
async def started(*servers: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def _node(cls: type[DhtNode], backend: str, **kwargs: Any) -> DhtNode:
    return cls(queries=QueryManager(core=new_core(backend)), **kwargs)


def test_rpc_methods_of_a_protocol_subclass_are_served_and_callable(backend: str, run: Run) -> None:
    async def scenario() -> list[Any]:
        ours, other = _node(EchoNode, backend), _node(EchoNode, backend)
        stock = StockEchoServer()
        async with started(ours, other, stock):
            for server in (ours, other, stock):
                await server.listen(0, "127.0.0.1")
            protocol = ours.protocol
            assert protocol is not None
            return [
                await protocol.echo(other.address, "hi"),  # ours to ours
                await protocol.echo(address_of(stock), [1, "two"]),  # ours to stock
                await stock.protocol.echo(ours.address, b"bytes"),  # stock to ours
                # a wrong argument count is refused like any malformed request
                await protocol.echo(other.address, "a", "b"),
            ]

    replies = run(scenario())
    assert replies[:3] == [(True, "hi"), (True, [1, "two"]), (True, b"bytes")]
    assert replies[3] == (False, None)


def test_stun_and_an_rpc_no_method_calls_go_as_stock_does(backend: str, run: Run) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        ours, other = _node(EchoNode, backend), _node(DhtNode, backend)
        stock = StockEchoServer()
        async with started(ours, other, stock):
            for server in (ours, other, stock):
                await server.listen(0, "127.0.0.1")
            protocol = ours.protocol
            assert protocol is not None
            return (
                # kademlia's rpc_stun, called as rpcudp made it callable
                await protocol.stun(address_of(stock)),
                await protocol.stun(other.address),
                # an RPC this class does not serve: through request()
                await protocol.request(address_of(stock), "echo", ("by name",)),
            )

    to_stock, to_ours, by_name = run(scenario())
    assert to_stock[0] and to_ours[0]
    assert to_stock[1][0] == to_ours[1][0] == "127.0.0.1"
    assert by_name == (True, "by name")


def test_the_protocol_reads_its_attributes_without_a_getattr_hook() -> None:
    # rpcudp's __getattr__ in the MRO made every attribute read of a
    # protocol go through a hook CPython cannot specialise (see DhtProtocol)
    for cls in (DhtProtocol, EchoProtocol):
        assert not [base for base in cls.__mro__ if "__getattr__" in vars(base)]
        assert cls.__getattribute__ is object.__getattribute__
        # still stock's protocol class to whoever checks (kademlia's suite does)
        assert issubclass(cls, KademliaProtocol)
    # a caller for each rpc_<name>; no attribute made up for other names
    assert callable(EchoProtocol.echo) and callable(DhtProtocol.stun)
    assert not hasattr(EchoProtocol, "no_such_rpc")


def test_a_stock_protocol_class_runs_stock_kademlia_and_says_what_it_lacks(
    backend: str, run: Run
) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        husk, stock = _node(HuskNode, backend), Server()
        async with started(husk, stock):
            await stock.listen(0, "127.0.0.1")
            await husk.listen(0, "127.0.0.1")
            assert isinstance(husk.protocol, StockEchoProtocol)
            await husk.bootstrap([address_of(stock)])
            await husk.set("key", "value")
            with pytest.raises(UnsupportedError, match="StockEchoProtocol"):
                husk.get_all("key")
            return await stock.get("key"), await husk.get("key"), husk.peer_count

    from_stock, from_husk, peers = run(scenario())
    assert (from_stock, from_husk, peers) == ("value", "value", 1)


def test_a_peer_with_a_16_byte_id_can_be_bootstrapped_from(backend: str, run: Run) -> None:
    async def scenario() -> tuple[list[Any], Any]:
        peer = Server(node_id=uuid.uuid4().bytes)
        ours = _node(DhtNode, backend)
        async with started(peer, ours):
            await peer.listen(0, "127.0.0.1")
            await ours.listen(0, "127.0.0.1")
            found = await ours.bootstrap([address_of(peer)])
            await ours.set("k", "v")
            return found, await peer.get("k")

    found, value = run(scenario())
    assert len(found) == 1 and len(found[0].id) == 16
    assert value == "v"


def test_bootstrap_takes_a_host_name(backend: str, run: Run) -> None:
    async def scenario() -> list[Any]:
        first, second = _node(DhtNode, backend), _node(DhtNode, backend)
        async with started(first, second):
            await first.listen(0, "127.0.0.1")
            await second.listen(0, "127.0.0.1")
            return list(await second.bootstrap([("localhost", first.address[1])]))

    found = run(scenario())
    assert [node.port for node in found] and found[0].ip == "127.0.0.1"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv6_nodes_and_stock_peers_bootstrap_store_and_look_up(backend: str, run: Run) -> None:
    async def scenario() -> tuple[Any, Any, list[Any]]:
        first, second, stock = _node(DhtNode, backend), _node(DhtNode, backend), Server()
        async with started(first, second, stock):
            for server in (first, second, stock):
                await server.listen(0, "::1")
            assert await second.bootstrap([first.address])
            assert await stock.bootstrap([first.address])
            await second.set("plain", "over ipv6")
            await second.put("records", b"one record")
            outcome = await first.get_all("records")
            return await stock.get("plain"), await first.get("plain"), outcome.items

    from_stock, from_ours, records = run(scenario())
    assert from_stock == from_ours == "over ipv6"
    assert [record.data for record in records] == [b"one record"]


def test_a_value_too_large_raises_what_stock_raises(backend: str, run: Run) -> None:
    async def scenario() -> None:
        first, second = _node(DhtNode, backend), _node(DhtNode, backend)
        async with started(first, second):
            await first.listen(0, "127.0.0.1")
            await second.listen(0, "127.0.0.1")
            await second.bootstrap([first.address])
            with pytest.raises(MalformedMessage) as caught:
                await second.set("big", "x" * 9000)
            assert isinstance(caught.value, WireError)

    run(scenario())


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bootstrap_asks_again_until_a_peer_started_later_answers(backend: str, run: Run) -> None:
    async def scenario() -> tuple[list[Any], bytes]:
        port = _free_udp_port()
        early, late = _node(DhtNode, backend), _node(DhtNode, backend)
        async with started(early, late):
            await early.listen(0, "127.0.0.1")
            joining = asyncio.create_task(early.bootstrap([("127.0.0.1", port)], retry_for=10.0))
            await asyncio.sleep(0.3)  # the first ping finds no one listening
            await late.listen(port, "127.0.0.1")
            found = await asyncio.wait_for(joining, 10.0)
            return list(found), late.node.id

    found, late_id = run(scenario())
    assert [node.id for node in found] == [late_id]


def test_bootstrap_gives_up_at_its_deadline_on_the_nodes_clock(backend: str, run: Run) -> None:
    async def scenario() -> tuple[list[Any], float]:
        clock = FakeClock()
        node = DhtNode(queries=QueryManager(core=new_core(backend), clock=clock))
        async with started(node):
            await node.listen(0, "127.0.0.1")
            began = clock.now()
            joining = asyncio.create_task(
                node.bootstrap([("127.0.0.1", _free_udp_port())], retry_for=5.0)
            )
            for _ in range(2000):  # bounded: 100 s of the fake clock at most
                if joining.done():
                    break
                clock.advance(0.05)
                for _ in range(3):
                    await asyncio.sleep(0)
            return list(await joining), clock.now() - began

    found, elapsed = run(scenario())
    assert found == []
    # the deadline, plus at most the ping in flight when it came (its RTO)
    assert 5.0 <= elapsed <= 6.5

"""Building blocks of the DHT tests: real nodes (ours and stock kademlia, in
a ``dhtquery.testing.LocalNetwork``) and raw UDP sockets, all on 127.0.0.1
port 0, every one closed on the way out; bounded waits; a recorder of the
event loop's exception handler."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgpack
from kademlia.network import Server
from kademlia.storage import ForgetfulStorage
from kademlia.utils import digest

from dhtquery.dht import DhtNode, DhtProtocol, Publisher, Record
from dhtquery.dht.rpc_table import (
    DATAGRAM_ANSWERED,
    DATAGRAM_NOT_PENDING,
    DATAGRAM_WRONG_ADDRESS,
    RpcStatus,
    RpcTable,
)
from dhtquery.dht.wire import MSG_ID_SIZE, encode_response
from dhtquery.testing import HOST, Address, LocalNetwork, loop_factory

T = TypeVar("T")
#: Bound on a test coroutine (as conftest's ``run``).
TEST_TIMEOUT = 60.0


def run_paired(backend: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run an expensive scenario once per core, pairing the Rust core with
    uvloop and the Python core with asyncio: both cores and both loops are
    covered in two runs instead of four."""
    factory = loop_factory("uvloop" if backend == "rust" else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def address_of(server: Server) -> Address:
    """The (host, port) a node (ours or stock) listens on."""
    host, port = server.transport.get_extra_info("sockname")[:2]
    return host, port


class NullStorage(ForgetfulStorage):  # type: ignore[misc]
    """A storage that keeps nothing: a node using it must look every value up
    on the network (its own ``get`` cannot answer from a local copy)."""

    def __setitem__(self, key: bytes, value: Any) -> None:
        pass


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket on 127.0.0.1: sends whatever bytes it is given and
    queues whatever it receives."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:  # ICMP from a closed port
        pass

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, Address]:
        return await asyncio.wait_for(self.received.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Nodes(LocalNetwork):
    """Every node and socket a test opens (a :class:`LocalNetwork` of the
    test's core, plus raw UDP peers); ``close()`` stops them all."""

    def __init__(self, backend: str) -> None:
        super().__init__(core=backend)
        self.backend = backend
        self.raw_peers: list[RawPeer] = []
        #: contexts the event loop's exception handler was called with
        self.loop_errors: list[dict[str, Any]] = []

    @property
    def dht_nodes(self) -> list[DhtNode]:
        return self.nodes

    async def dht(self, *, bootstrap: list[Address] | None = None, **kwargs: Any) -> DhtNode:
        return await self.add(bootstrap=bootstrap, join=bool(bootstrap), **kwargs)

    async def dht_and_protocol(self, **kwargs: Any) -> tuple[DhtNode, DhtProtocol]:
        """A listening DhtNode (``dht``'s arguments) and its protocol."""
        node = await self.dht(**kwargs)
        protocol = node.protocol
        assert isinstance(protocol, DhtProtocol)
        return node, protocol

    async def stock(self, *, bootstrap: list[Address] | None = None, **kwargs: Any) -> Server:
        return await self.add_stock(bootstrap=bootstrap or (), **kwargs)

    async def raw(self) -> RawPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=(HOST, 0))
        self.raw_peers.append(peer)
        return peer

    def close(self) -> None:
        for peer in self.raw_peers:
            peer.close()
        self.stop()


@asynccontextmanager
async def open_nodes(backend: str) -> AsyncIterator[Nodes]:
    """``async with open_nodes(backend) as nodes``: make nodes with
    ``nodes.dht()``, ``nodes.stock()``, ``nodes.raw()``; all are stopped on
    the way out. The loop's exception handler is recorded in
    ``nodes.loop_errors`` for the block's duration."""
    loop = asyncio.get_running_loop()
    nodes = Nodes(backend)
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: nodes.loop_errors.append(context))
    try:
        yield nodes
    finally:
        nodes.close()
        # let the transports' connection_lost callbacks run
        await asyncio.sleep(0)
        loop.set_exception_handler(previous)


@asynccontextmanager
async def dht_network(backend: str, count: int, **kwargs: Any) -> AsyncIterator[Nodes]:
    """``count`` DhtNodes, each bootstrapped off the first; ``kwargs`` go to
    every DhtNode."""
    async with open_nodes(backend) as nodes:
        for _ in range(count):
            await nodes.add(**kwargs)
        yield nodes


async def eventually(predicate: Callable[[], bool], *, timeout: float = 2.0) -> bool:
    """Yield to the loop until ``predicate()`` holds (True) or ``timeout``
    seconds pass (False). Bounded in time and in iterations."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(100_000):
        if predicate():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.001)
    return predicate()


def serve_by_hand(protocol: DhtProtocol, hook: Callable[[bytes, Any, Any, float], None]) -> Any:
    """Hand ``hook`` every request the protocol serves in Python (its
    ``_serve`` replaced on the instance) and every ping (which the core's
    engine would answer itself); the protocol's own ``_serve``, returned,
    serves what ``hook`` holds."""
    serve = protocol._serve
    protocol._serve = hook  # type: ignore[method-assign]
    protocol._ping_answer = None
    protocol._serve_in_engine()
    return serve


def publisher_named(name: str) -> Publisher:
    """A publisher key of its own for each ``name``, the same every run."""
    return Publisher(hashlib.sha256(f"test publisher {name}".encode()).digest())


def signed(
    publisher: str, data: bytes, key: str | bytes, *, name: str = "", seq: int = 1
) -> Record:
    """A record of ``data`` signed by ``publisher_named(publisher)`` for DHT
    key ``key`` (a str is digested, as DhtNode.put does)."""
    target = digest(key) if isinstance(key, str) else key
    return Record.create(publisher_named(publisher), target, data, name=name, seq=seq)


def signed_package(package: Any, publisher: Publisher, *, seq: int = 1) -> bytes:
    """``package``'s record under its package key, signed by ``publisher``
    and packed: what an announcement, a search answer or an anti-entropy
    fetch carries."""
    key = digest(f"pkg:{package.id}")
    record = Record.create(publisher, key, package.encode(), seq=seq)
    return bytes(msgpack.packb(record.to_wire(), use_bin_type=True))


def open_ping(
    table: RpcTable,
    address: Any,
    timeout: float,
    future: asyncio.Future[Any] | None = None,
    budget: float | None = None,
) -> bytes:
    """Open a ping through ``table`` the way the protocol opens requests
    (``RpcTable.open_request``: registered and framed by the core's engine;
    with ``budget``, retransmitted within it), and return its message id."""
    datagram = table.open_request(address, "ping", timeout, future, None, None, b"\x90", budget)
    return datagram[1 : 1 + MSG_ID_SIZE]


def answer(
    table: RpcTable, msg_id: bytes, address: Any, value: Any = "pong"
) -> tuple[RpcStatus, str, float, Any]:
    """Hand ``table`` an answer to ``msg_id`` from ``address``, read as the
    protocol reads every datagram (``RpcTable.receive``, then ``unmatched``
    for one that ends no request): (status, rpc name, rtt, the request if
    it ended, to ``deliver``)."""
    status, first, _, pending, rtt = table.receive(encode_response(msg_id, value), address)
    if status == DATAGRAM_ANSWERED:
        return RpcStatus.ANSWERED, pending.name, rtt, pending
    if status == DATAGRAM_NOT_PENDING:
        unmatched, name, late_rtt = table.unmatched(first)
        return unmatched, name, late_rtt, None
    assert status == DATAGRAM_WRONG_ADDRESS, (status, first)
    return RpcStatus.WRONG_ADDRESS, pending.name, 0.0, None

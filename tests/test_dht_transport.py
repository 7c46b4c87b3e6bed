"""BatchedTransport: a node's own UDP socket, read through a core's
BatchReceiver at each wake-up (real sockets on 127.0.0.1, both cores, both
loops)."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any, TypeVar

import pytest
from kademlia.utils import digest

from dhtquery.dht import DhtNode
from dhtquery.dht.transport import MAX_QUEUED_BYTES, BatchedTransport, listen_batched
from dhtquery.errors import InvalidArgumentError
from dhtquery.query import QueryConfig, QueryManager, new_core

from .dht_helpers import eventually, open_nodes, signed

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


class Recorder(asyncio.DatagramProtocol):
    """Records what its transport hands it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


@asynccontextmanager
async def recording(
    core_module: ModuleType, native: bool = False
) -> AsyncIterator[tuple[BatchedTransport, Recorder, socket.socket]]:
    """A BatchedTransport on 127.0.0.1 (a batch of 4; with the core's
    DatagramSocket if ``native``) with a Recorder, and a plain socket to
    talk to it; both closed on the way out."""
    transport, protocol = await listen_batched(
        Recorder,
        ("127.0.0.1", 0),
        core_module.BatchReceiver(4, 65_536),
        core_module.DatagramSocket if native else None,
    )
    assert isinstance(transport, BatchedTransport) and isinstance(protocol, Recorder)
    peer = _socket()
    try:
        yield transport, protocol, peer
    finally:
        peer.close()
        transport.abort()


def test_a_burst_larger_than_a_batch_reaches_the_protocol_whole_and_in_order(
    run: Run[None], core_module: ModuleType
) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, protocol, sender):
            payloads = [bytes([n]) * (n + 1) for n in range(50)]  # 50 > the batch of 4
            for payload in payloads:
                sender.sendto(payload, transport.get_extra_info("sockname"))
            assert await eventually(lambda: len(protocol.datagrams) == 50)
            assert protocol.datagrams == [(p, sender.getsockname()) for p in payloads]

    run(scenario())


def test_the_largest_datagram_arrives_uncut(run: Run[None], core_module: ModuleType) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, protocol, sender):
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
            payload = bytes(range(256)) * 255 + bytes(range(227))  # 65,507 bytes
            assert len(payload) == 65_507
            sender.sendto(payload, transport.get_extra_info("sockname"))
            assert await eventually(lambda: len(protocol.datagrams) == 1)
            assert protocol.datagrams[0][0] == payload

    run(scenario())


def test_the_core_socket_sends_a_wake_ups_datagrams_at_its_end_before_the_transports(
    run: Run[None], core_module: ModuleType
) -> None:
    """The core's sends wait for the end of the loop's turn (one flush for
    the batch); a send by the transport itself sends them first."""

    async def scenario() -> None:
        async with recording(core_module, native=True) as (transport, _, peer):
            native = transport.native_socket
            to = peer.getsockname()
            native.send(b"ask 1", to)
            native.send(b"ask 2", to)
            assert (native.waiting, native.sent) == (2, 0)
            await asyncio.sleep(0)  # (the turn ends: its flush runs)
            assert (native.waiting, native.sent) == (0, 2)
            native.send(b"ask 3", to)
            transport.sendto(b"the transport's own", to)
            assert native.waiting == 0
            assert [peer.recv(100) for _ in range(4)] == [
                b"ask 1",
                b"ask 2",
                b"ask 3",
                b"the transport's own",
            ]

    run(scenario())


def test_a_closed_transport_with_a_core_socket_is_collected(
    run: Run[None], core_module: ModuleType
) -> None:
    """The core's socket holds the transport's sendto (its fallback) and the
    loop's call_soon, and the transport holds it: a cycle the collector must
    see through the socket to free."""

    async def scenario() -> weakref.ref[BatchedTransport]:
        async with recording(core_module, native=True) as (transport, _, _peer):
            ref = weakref.ref(transport)
        await asyncio.sleep(0)  # (the transport's connection_lost runs)
        return ref

    ref = run(scenario())
    gc.collect()
    assert ref() is None


def test_sendto_reaches_the_address(run: Run[None], core_module: ModuleType) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, _, receiver):
            transport.sendto(b"hello", receiver.getsockname())
            data, source = receiver.recvfrom(100)
            assert (data, source) == (b"hello", transport.get_extra_info("sockname"))

    run(scenario())


def test_paused_reading_holds_datagrams_until_resumed(
    run: Run[None], core_module: ModuleType
) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, protocol, sender):
            transport.pause_reading()
            assert not transport.is_reading()
            sender.sendto(b"one", transport.get_extra_info("sockname"))
            for _ in range(5):
                await asyncio.sleep(0)
            assert protocol.datagrams == []
            transport.resume_reading()
            assert transport.is_reading()
            assert await eventually(lambda: protocol.datagrams == [(b"one", sender.getsockname())])

    run(scenario())


class _FullOnce:
    """A ``sendto`` whose kernel buffer is full ``refusals`` times (EAGAIN),
    then sends for real: what a transport meets when it outruns the
    kernel."""

    def __init__(self, sendto: Callable[..., int], refusals: int) -> None:
        self.sendto = sendto
        self.refusals = refusals

    def __call__(self, data: bytes, addr: Any) -> int:
        if self.refusals:
            self.refusals -= 1
            raise BlockingIOError("resource temporarily unavailable")
        return self.sendto(data, addr)


def test_a_datagram_the_kernel_refuses_waits_and_goes_out_in_order(
    run: Run[None], core_module: ModuleType
) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, protocol, receiver):
            transport._sendto = _FullOnce(transport._sendto, refusals=1)
            for payload in (b"first", b"second", b"third"):
                transport.sendto(payload, receiver.getsockname())
            # the first was refused: all three wait, in order, for the socket
            # to be writable
            assert transport.get_write_buffer_size() == len(b"firstsecondthird")
            assert await eventually(lambda: transport.get_write_buffer_size() == 0)
            assert [receiver.recvfrom(100)[0] for _ in range(3)] == [b"first", b"second", b"third"]
            assert protocol.errors == []

    run(scenario())


def test_beyond_the_send_queue_bound_a_datagram_is_dropped_and_reported(
    run: Run[None], core_module: ModuleType
) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, protocol, _):
            transport._sendto = _FullOnce(transport._sendto, refusals=10**9)
            chunk = bytes(60_000)
            fits = MAX_QUEUED_BYTES // len(chunk)
            for _ in range(fits + 1):
                transport.sendto(chunk, ("127.0.0.1", 9))
            assert transport.get_write_buffer_size() == fits * len(chunk)
            assert len(protocol.errors) == 1
            assert isinstance(protocol.errors[0], BlockingIOError)
            transport.abort()
            assert transport.get_write_buffer_size() == 0

    run(scenario())


def test_close_ends_the_connection_once_and_drops_later_sends(
    run: Run[None], core_module: ModuleType
) -> None:
    async def scenario() -> None:
        transport, protocol = await listen_batched(
            Recorder, ("127.0.0.1", 0), core_module.BatchReceiver(4, 65_536)
        )
        assert isinstance(protocol, Recorder)
        sock = transport.get_extra_info("socket")
        transport.close()
        transport.close()
        assert transport.is_closing()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert protocol.lost == [None]
        assert sock.fileno() == -1
        transport.sendto(b"late", ("127.0.0.1", 9))
        assert transport.sent_after_close == 1

    run(scenario())


def test_close_waits_for_queued_datagrams_and_abort_drops_them(
    run: Run[None], core_module: ModuleType
) -> None:
    async def scenario() -> None:
        async with recording(core_module) as (transport, protocol, receiver):
            transport._sendto = _FullOnce(transport._sendto, refusals=1)
            transport.sendto(b"queued", receiver.getsockname())
            transport.close()
            # sent once the socket is writable, then the connection ends
            assert await eventually(lambda: protocol.lost == [None])
            assert receiver.recvfrom(100)[0] == b"queued"
        async with recording(core_module) as (transport, protocol, receiver):
            transport._sendto = _FullOnce(transport._sendto, refusals=10**9)
            transport.sendto(b"dropped", receiver.getsockname())
            transport.close()
            await asyncio.sleep(0)
            assert protocol.lost == []  # still waiting to send
            transport.abort()
            assert await eventually(lambda: protocol.lost == [None])
            assert transport.get_write_buffer_size() == 0

    run(scenario())


def test_a_node_uses_the_batched_transport_by_default_with_the_rust_core(
    run: Run[None], backend: str
) -> None:
    async def scenario() -> None:
        node = DhtNode(queries=QueryManager(QueryConfig(), core=new_core(backend)))
        await node.listen(0, "127.0.0.1")
        try:
            batched = isinstance(node.transport, BatchedTransport)
            assert batched == (backend == "rust")
        finally:
            node.stop()

    run(scenario())


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "loop-transport"])
def test_nodes_on_either_transport_store_and_find_each_others_values(
    run: Run[None], backend: str, batched: bool
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            first = await nodes.dht(batched_receive=batched)
            second = await nodes.dht(bootstrap=[first.address], batched_receive=not batched)
            assert isinstance(first.transport, BatchedTransport) == batched
            assert isinstance(second.transport, BatchedTransport) != batched
            assert await second.set(b"key", b"value")
            assert await first.get(b"key") == b"value"
            assert first.stats.get("dropped", 0) == second.stats.get("dropped", 0) == 0

    run(scenario())


async def _holder_and_client(nodes: Any) -> tuple[DhtNode, DhtNode]:
    """Two nodes on the batched transport: one holding a record of
    "wanted", and a client (whose requests the core answers alone: a node's
    go to Python, which welcomes their sender)."""
    holder = await nodes.dht(batched_receive=True)
    client = await nodes.dht(bootstrap=[holder.address], batched_receive=True, client=True)
    holder.records.put(
        digest("wanted"), signed("publisher", b"found", "wanted"), holder.clock.now()
    )
    return holder, client


def test_a_batched_node_serves_and_asks_through_its_core_socket(
    run: Run[None], backend: str
) -> None:
    """A node on the batched transport reads a wake-up's datagrams in one
    core call (DatagramEngine.receive_batch): the holder's kept answers and
    the client's asks leave through the core's DatagramSocket (counted in
    its ``sent``), and the lookups find what they look for."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            holder, client = await _holder_and_client(nodes)
            for _ in range(3):  # the first packs the answer, the rest are served kept
                outcome = await client.get_all("wanted", quorum=1, timeout=5.0)
                assert [record.item.data for record in outcome.results] == [b"found"]
            assert isinstance(holder.transport, BatchedTransport)
            assert isinstance(client.transport, BatchedTransport)
            assert holder.transport.native_socket.sent >= 2  # kept answers, sent by the core
            assert client.transport.native_socket.sent >= 3  # the lookups' asks
            assert holder.protocol is not None and holder.protocol.drops["handler_error"] == 0

    run(scenario())


def test_a_wrapper_set_on_a_batched_protocol_gets_every_datagram(
    run: Run[None], backend: str
) -> None:
    """``protocol.datagram_received`` replaced on the instance (a wrapper
    counting or losing datagrams, as the benches and tests set them) is
    called for each datagram: the batch path steps aside for it."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            holder = await nodes.dht(batched_receive=True)
            client = await nodes.dht(bootstrap=[holder.address], batched_receive=True)
            protocol = holder.protocol
            assert protocol is not None
            seen: list[Any] = []
            received = protocol.datagram_received

            def counted(data: bytes, addr: Any) -> None:
                seen.append(addr)
                received(data, addr)

            protocol.datagram_received = counted  # type: ignore[method-assign]
            assert await client.set(b"key", b"value")
            assert seen  # every request of the store reached the wrapper
            assert await client.get(b"key") == b"value"

    run(scenario())


class _CountingTransport:
    """A wrapper of a node's transport, as the testing hosts' links are:
    its ``sendto`` counted, every other attribute the wrapped one's."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.sent = 0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent += 1
        self.transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def test_a_wrapper_of_a_batched_transport_sees_every_datagram_sent(
    run: Run[None], backend: str
) -> None:
    """A transport wrapped after the connection (a link adding delay or
    loss) must see every datagram: the core's socket is not used past it,
    neither for answers served nor for a lookup's asks."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            holder, client = await _holder_and_client(nodes)
            assert holder.protocol is not None and client.protocol is not None
            native = (holder.transport.native_socket, client.transport.native_socket)  # type: ignore[union-attr]
            before = (native[0].sent, native[1].sent)
            wrappers = []
            for node in (holder, client):
                wrapper = _CountingTransport(node.protocol.transport)  # type: ignore[union-attr]
                node.protocol.transport = wrapper  # type: ignore[union-attr]
                wrappers.append(wrapper)
            for _ in range(3):
                outcome = await client.get_all("wanted", quorum=1, timeout=5.0)
                assert [record.item.data for record in outcome.results] == [b"found"]
            assert (native[0].sent, native[1].sent) == before
            assert wrappers[0].sent >= 3 and wrappers[1].sent >= 3

    run(scenario())


def test_a_batch_reader_that_raises_leaves_no_datagram_unread(
    run: Run[None], core_module: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader's bug is logged and that wake-up's datagrams go to
    ``datagram_received`` one by one (left unread, the loop would call the
    reader again at once, for ever); a reader needs the core's socket."""

    async def scenario() -> None:
        async with recording(core_module) as (transport, _, _):
            with pytest.raises(InvalidArgumentError, match="without a socket_class"):
                transport.read_batches_with(lambda receiver, native: True)
        async with recording(core_module, native=True) as (transport, protocol, peer):
            calls: list[Any] = []

            def broken(receiver: Any, native: Any) -> bool:
                calls.append(native)
                raise RuntimeError("a bug in the reader")

            transport.read_batches_with(broken)
            for payload in (b"one", b"two"):
                peer.sendto(payload, transport.get_extra_info("sockname"))
            assert await eventually(lambda: len(protocol.datagrams) == 2)
            assert [data for data, _ in protocol.datagrams] == [b"one", b"two"]
            assert calls and calls[0] is transport.native_socket
            assert "error reading a batch of datagrams" in caplog.text

    run(scenario())

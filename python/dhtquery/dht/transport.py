"""A node's UDP socket, owned and read in batches.

asyncio's and uvloop's datagram transports make one ``recvfrom`` system call
and one ``datagram_received`` call per datagram, and uvloop's cannot stop
reading (its ``UDPTransport`` has no ``pause_reading``). ``BatchedTransport``
owns its socket instead: registered with the loop through ``add_reader``, it
reads every datagram waiting at a wake-up with the core's ``BatchReceiver``
(the Rust core: one ``recvmmsg`` for up to ``BATCH`` datagrams) and hands
them to the protocol one by one, so the protocol does not change. The loop
stays the loop (asyncio or uvloop): no thread, no second runtime. Given a
core's ``DatagramSocket`` class, the transport also makes the core's way
out to its socket (``native_socket``), and a protocol that reads a whole
wake-up in one core call says so with ``read_batches_with`` (the DHT
protocol: ``DatagramEngine.receive_batch``, no Python call per datagram).

Why: with 64 lookups in flight, answers arrive several to a wake-up. The
bench's echo rows measure one ``recvmmsg`` a wake-up at ~8 us of CPU a round
trip against ~10-12 us for ``datagram_received`` (118 k against 79 k round
trips/s in one run); a ``get_all`` client on the same network, the two
transports alternated in one process (six ABBA pairs of 3,000 lookups, 64 in
flight), spent a median 198.7 against 215.8 us of CPU a lookup (pair ratios
0.80-1.09, median 0.96): a lookup is ~2 round trips of ~100-200 us of
Python each, so the system calls saved are a few percent of it (README,
"The datagram path in the core").

The core's sends are deferred to the end of the wake-up (the
``native_socket`` is made with the loop's ``call_soon``): the asks a wake-up
makes (lookups started, answers that lead to more asks) leave together in
one ``sendmmsg``, which the kernel delivers in one pass, waking each peer's
process once rather than per datagram (see ``rust/outbox.rs``, ``flush``).
The transport's own ``sendto`` sends what the core deferred first, so that
datagrams leave in the order they were given.

The transport's own sends go out at once (``sendto``); a datagram the
kernel has no room for (``EAGAIN``: its send buffer is full) waits in a
queue flushed when the socket is writable, as asyncio's transports do, up to
``MAX_QUEUED_BYTES``; beyond, it is dropped and counted by the protocol as
``send_queue_full`` (UDP loses datagrams anyway, and requests are
retransmitted).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

from ..errors import InvalidArgumentError

__all__ = ["BATCH", "MAX_QUEUED_BYTES", "BatchedTransport", "batch_receiver", "listen_batched"]

#: Datagrams one wake-up reads at most: a burst beyond waits for the next
#: wake-up (the loop runs other callbacks meanwhile).
BATCH: Final = 32
#: Bytes of one datagram at most (the largest UDP payload over IPv4 is
#: 65,507: a datagram is never cut).
_DATAGRAM_SIZE: Final = 65_536
#: Bytes of datagrams waiting for room in the kernel's send buffer, at most.
MAX_QUEUED_BYTES: Final = 1 << 20

_receivers = threading.local()
log = logging.getLogger("dhtquery.dht")


def batch_receiver(core: Any) -> Any:
    """The ``BatchReceiver`` of ``core`` (a core module: ``load_core``'s
    second item) for this thread: one for all the sockets a thread's loop
    reads, since a receive copies what it read out of the buffers before it
    returns (BATCH x 64 KiB: 2 MiB a thread, not a node)."""
    key = core.__name__
    receivers: dict[str, Any] | None = getattr(_receivers, "by_core", None)
    if receivers is None:
        receivers = _receivers.by_core = {}
    receiver = receivers.get(key)
    if receiver is None:
        receiver = receivers[key] = core.BatchReceiver(BATCH, _DATAGRAM_SIZE)
    return receiver


class BatchedTransport(asyncio.DatagramTransport):
    """A datagram transport over ``sock`` (bound, non-blocking), read
    through ``receiver`` (a core's ``BatchReceiver``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
        receiver: Any,
        socket_class: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._receive: Callable[[socket.socket], list[tuple[bytes, Any]]] = receiver.receive
        self._sendto = sock.sendto
        self._closing = False
        self._reading = False
        #: datagrams given to sendto after close(), dropped
        self.sent_after_close = 0
        #: (datagram, address) waiting for room in the send buffer
        self._queued: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._queued_bytes = 0
        self._extra = {"socket": sock, "sockname": sock.getsockname()}
        self._receiver = receiver
        #: the core's way out to this socket (a core's ``DatagramSocket``:
        #: sends with no Python call while nothing waits in the queue), or
        #: None
        self.native_socket: Any = (
            None
            if socket_class is None
            # (its fallback the transport's own send: it has flushed first)
            else socket_class(sock, self._queued, self._send, loop.call_soon)
        )
        #: what reads a wake-up's datagrams instead of the loop below (see
        #: ``read_batches_with``)
        self._batch_reader: Callable[[Any, Any], bool] | None = None

    def _start(self) -> None:
        self._protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    # -- reading ----------------------------------------------------------

    def read_batches_with(self, reader: Callable[[Any, Any], bool]) -> None:
        """From now on each wake-up calls ``reader(receiver,
        native_socket)``, which reads and handles every datagram waiting
        (the protocol's, through its core: ``DatagramEngine.receive_batch``,
        no Python call per datagram), instead of ``datagram_received`` per
        datagram; if it returns False (it read nothing), the datagrams go
        to ``datagram_received`` as before. Needs ``native_socket``."""
        if self.native_socket is None:
            raise InvalidArgumentError("this transport was made without a socket_class")
        self._batch_reader = reader

    def _read_ready(self) -> None:
        reader = self._batch_reader
        if reader is not None:
            try:
                if reader(self._receiver, self.native_socket):
                    return
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except Exception:
                # A bug in the reader must not leave the datagrams unread
                # (the loop would call again at once, for ever): this
                # wake-up's go to datagram_received one by one.
                log.exception("dhtquery: error reading a batch of datagrams")
        try:
            batch = self._receive(self._sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # (an ICMP error reported on the socket: asyncio's transports
            # hand it to the protocol the same way)
            self._protocol.error_received(exc)
            return
        received = self._protocol.datagram_received
        for data, address in batch:
            if self._closing:
                return
            received(data, address)

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fileno)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fileno, self._read_ready)

    # -- writing ----------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
        native = self.native_socket
        if native is not None and native.waiting:
            # (what the core deferred goes first: the order kept; this one
            # is sent even if one of those failed)
            try:
                native.flush()
            finally:
                self._send(data, addr)
            return
        self._send(data, addr)

    def _send(self, data: Any, addr: Any) -> None:
        if self._closing:
            # (asyncio's datagram transport drops it the same way: a reply
            # made as the node stops has nowhere to go)
            self.sent_after_close += 1
            return
        if not self._queued:
            try:
                self._sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            self._loop.add_writer(self._fileno, self._write_ready)
        self._queue(bytes(data), addr)

    def _queue(self, data: bytes, addr: Any) -> None:
        if self._queued_bytes + len(data) > MAX_QUEUED_BYTES:
            self._protocol.error_received(BlockingIOError("send_queue_full"))
            return
        self._queued.append((data, addr))
        self._queued_bytes += len(data)

    def _write_ready(self) -> None:
        queued = self._queued
        while queued:
            data, addr = queued[0]
            try:
                self._sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
            queued.popleft()
            self._queued_bytes -= len(data)
        self._loop.remove_writer(self._fileno)
        if self._closing:
            self._finish()

    def get_write_buffer_size(self) -> int:
        return self._queued_bytes

    def abort(self) -> None:
        """Close now: what waits to be sent is dropped."""
        waiting = bool(self._queued)
        self._queued.clear()
        self._queued_bytes = 0
        if waiting:
            self._loop.remove_writer(self._fileno)
            if self._closing:  # (close() was waiting for the queue)
                self._finish()
        self.close()

    # -- the rest of a transport ----------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        try:
            if self.native_socket is not None:
                # (before closing: what the core deferred and the kernel
                # cannot take now waits in the queue, which close() drains)
                self.native_socket.close()
        finally:
            self._closing = True
            self.pause_reading()
            if not self._queued:
                self._finish()

    def _finish(self) -> None:
        self._loop.call_soon(self._lost)

    def _lost(self) -> None:
        try:
            self._protocol.connection_lost(None)
        finally:
            self._sock.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


async def listen_batched(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: tuple[str, int],
    receiver: Any,
    socket_class: Callable[..., Any] | None = None,
) -> tuple[BatchedTransport, asyncio.DatagramProtocol]:
    """``loop.create_datagram_endpoint(protocol_factory, local_addr=...)``
    with a ``BatchedTransport``: the socket bound as asyncio binds it (the
    address resolved, IPv4 or IPv6 by the host's form). ``socket_class``:
    a core's ``DatagramSocket``, for the transport's ``native_socket``."""
    loop = asyncio.get_running_loop()
    host, port = local_addr
    infos = await loop.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
    )
    if not infos:
        raise OSError(f"getaddrinfo({host!r}, {port!r}) returned nothing")
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        protocol = protocol_factory()
        transport = BatchedTransport(loop, sock, protocol, receiver, socket_class)
        try:
            transport._start()
        except BaseException:
            transport.close()
            raise
        return transport, protocol
    assert error is not None
    raise error

"""A wake-up's datagrams in one core call: ``DatagramSocket`` (the core's way
out to a transport's own socket) and ``DatagramEngine.receive_batch`` (every
datagram waiting read, each handled as ``receive_at`` handles it, an answer
served sent back at once, the rest handed to Python in order). Real UDP
sockets on 127.0.0.1, both cores, and a property test sending both the same
datagrams and comparing what each hands over and sends back."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from dhtquery.dht.rpc_table import DATAGRAM_CHECKED as CHECKED
from dhtquery.dht.rpc_table import DATAGRAM_DROP as DROP
from dhtquery.dht.rpc_table import DATAGRAM_FAILED as FAILED
from dhtquery.dht.rpc_table import DATAGRAM_REQUEST as REQUEST
from dhtquery.dht.rpc_table import DATAGRAM_SERVED as SERVED
from dhtquery.dht.rpc_table import DATAGRAM_WRONG_ADDRESS as WRONG_ADDRESS
from dhtquery.dht.wire import CLIENT_PAD, encode_response, frame_request, pack_request
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query import _core_py
from tests.conftest import require_rust
from tests.test_datagram_serving import KEYS, PING_ANSWER, _engine, _find_values
from tests.test_dht_transport import _socket

ANSWER = b"kept answer of key 0"


@pytest.fixture(params=["rust", "python"], ids=["rs", "py"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return require_rust() if request.param == "rust" else _core_py


@contextmanager
def _pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A node's socket (non-blocking) and a peer's (blocking, 2 s), closed
    on the way out."""
    node, peer = _socket(), _socket()
    node.setblocking(False)
    try:
        yield node, peer
    finally:
        node.close()
        peer.close()


def _drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting in ``sock`` (none blocks)."""
    out = []
    sock.setblocking(False)
    try:
        for _ in range(1000):
            out.append(sock.recv(65_536))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2.0)
    return out


class _Fallback:
    """A transport's sendto, as the core's socket falls back on: noted."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, Any]] = []

    def __call__(self, datagram: bytes, address: Any) -> None:
        self.calls.append((datagram, address))


# -- DatagramSocket -------------------------------------------------------


def test_a_datagram_socket_sends_at_once_while_nothing_waits(module: ModuleType) -> None:
    with _pair() as (node, peer):
        fallback = _Fallback()
        native = module.DatagramSocket(node, [], fallback)
        native.send(b"hello", peer.getsockname())
        assert peer.recv(100) == b"hello"
        assert (native.sent, fallback.calls, native.closed) == (1, [], False)
        assert native.fileno == node.fileno()


def test_a_datagram_socket_falls_back_while_datagrams_wait_after_close_or_for_a_name(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        fallback = _Fallback()
        queued: list[Any] = [b"waiting"]
        native = module.DatagramSocket(node, queued, fallback)
        to = peer.getsockname()
        native.send(b"behind the queue", to)
        queued.clear()
        native.send(b"by name", ("localhost", to[1]))
        native.send(b"of the other family", ("::1", to[1]))
        native.send(b"port out of range", ("127.0.0.1", 70_000))
        native.close()
        native.send(b"after close", to)
        assert native.closed
        assert native.sent == 0
        assert [data for data, _ in fallback.calls] == [
            b"behind the queue",
            b"by name",
            b"of the other family",
            b"port out of range",
            b"after close",
        ]
        assert _drain(peer) == []  # (the fallback here sends nothing)


def test_a_datagram_socket_refused_by_the_kernel_goes_to_its_fallback(
    module: ModuleType,
) -> None:
    """A send the kernel refuses (here: to port 0) is the fallback's to
    report, as the transport reports it (error_received)."""
    with _pair() as (node, _):
        fallback = _Fallback()
        native = module.DatagramSocket(node, [], fallback)
        native.send(b"nowhere", ("127.0.0.1", 0))
        assert (native.sent, len(fallback.calls)) == (0, 1)


def test_a_datagram_socket_refuses_bad_arguments_by_name(module: ModuleType) -> None:
    with _pair() as (node, _):
        with pytest.raises(InvalidArgumentTypeError, match="sock must be a socket"):
            module.DatagramSocket("not a socket", [], _Fallback())
        with pytest.raises(InvalidArgumentTypeError, match="queued must be a sized container"):
            module.DatagramSocket(node, 5, _Fallback())
        with pytest.raises(InvalidArgumentTypeError, match="fallback must be callable"):
            module.DatagramSocket(node, [], None)
        native = module.DatagramSocket(node, [], _Fallback())
        with pytest.raises(InvalidArgumentTypeError, match="datagram must be bytes"):
            native.send("text", ("127.0.0.1", 1))
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            with pytest.raises(InvalidArgumentError, match="family AF_INET or AF_INET6"):
                module.DatagramSocket(unix, [], _Fallback())
        finally:
            unix.close()
        closed = _socket()
        closed.close()
        with pytest.raises(InvalidArgumentError, match="sock is closed"):
            module.DatagramSocket(closed, [], _Fallback())


class _Soon:
    """A loop's call_soon, as a deferring DatagramSocket is given it: the
    callbacks noted, run when the test says."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def __call__(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def run(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def test_a_deferring_socket_sends_a_batch_at_its_flush_in_order(module: ModuleType) -> None:
    with _pair() as (node, peer):
        fallback, soon = _Fallback(), _Soon()
        native = module.DatagramSocket(node, [], fallback, soon)
        to = peer.getsockname()
        for n in range(5):
            native.send(b"ask %d" % n, to)
        # (nothing sent yet; one flush scheduled for the five)
        assert (native.waiting, native.sent, len(soon.callbacks)) == (5, 0, 1)
        assert _drain(peer) == []
        soon.run()
        assert (native.waiting, native.sent, fallback.calls) == (0, 5, [])
        assert [peer.recv(100) for _ in range(5)] == [b"ask %d" % n for n in range(5)]
        native.send(b"next batch", to)
        assert len(soon.callbacks) == 1  # (a new batch, a new flush)
        native.flush()
        soon.run()  # (the scheduled flush finds nothing left: a no-op)
        assert (native.sent, peer.recv(100), _drain(peer)) == (6, b"next batch", [])


def test_a_deferring_socket_sends_what_waits_before_anything_goes_to_its_fallback(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        sent: list[bytes] = []

        def fallback(datagram: bytes, address: Any) -> None:
            # (the transport's sendto: what the core deferred is out first)
            sent.extend(_drain(peer))
            sent.append(datagram)

        native = module.DatagramSocket(node, [], fallback, _Soon())
        to = peer.getsockname()
        native.send(b"first", to)
        native.send(b"second", to)
        native.send(b"by name", ("localhost", to[1]))  # (the fallback's)
        assert sent == [b"first", b"second", b"by name"]
        assert (native.waiting, native.sent) == (0, 2)


def test_a_deferring_socket_gives_its_fallback_what_waits_once_the_transport_queues(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        fallback, soon = _Fallback(), _Soon()
        queued: list[Any] = []
        native = module.DatagramSocket(node, queued, fallback, soon)
        to = peer.getsockname()
        native.send(b"one", to)
        native.send(b"two", to)
        queued.append(b"the kernel's buffer filled")
        soon.run()
        assert [data for data, _ in fallback.calls] == [b"one", b"two"]
        assert (native.waiting, native.sent, _drain(peer)) == (0, 0, [])


def test_closing_a_deferring_socket_sends_what_waits_first(module: ModuleType) -> None:
    with _pair() as (node, peer):
        fallback, soon = _Fallback(), _Soon()
        native = module.DatagramSocket(node, [], fallback, soon)
        to = peer.getsockname()
        native.send(b"before close", to)
        native.close()
        native.send(b"after close", to)
        assert peer.recv(100) == b"before close"
        assert [data for data, _ in fallback.calls] == [b"after close"]
        assert (native.closed, native.waiting, native.sent) == (True, 0, 1)


def test_a_deferring_socket_sends_at_once_if_it_cannot_schedule_its_flush(
    module: ModuleType,
) -> None:
    def closed_loop_call_soon(callback: Any) -> None:
        raise RuntimeError("Event loop is closed")

    with _pair() as (node, peer):
        native = module.DatagramSocket(node, [], _Fallback(), closed_loop_call_soon)
        native.send(b"now", peer.getsockname())
        assert (peer.recv(100), native.waiting, native.sent) == (b"now", 0, 1)


def test_a_flush_gives_every_datagram_to_the_fallback_then_raises_its_first_error(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        calls: list[bytes] = []

        def fallback(datagram: bytes, address: Any) -> None:
            calls.append(datagram)
            raise OSError(f"refused {datagram!r}")

        queued: list[Any] = []
        native = module.DatagramSocket(node, queued, fallback, _Soon())
        for name in (b"a", b"b", b"c"):
            native.send(name, peer.getsockname())
        queued.append(b"full")
        with pytest.raises(OSError, match="refused b'a'"):
            native.flush()
        assert calls == [b"a", b"b", b"c"]
        assert native.waiting == 0


def test_a_send_after_an_interrupted_schedule_schedules_the_flush_again(
    module: ModuleType,
) -> None:
    calls = {"n": 0}
    soon = _Soon()

    def interrupted_once(callback: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        soon(callback)

    with _pair() as (node, peer):
        native = module.DatagramSocket(node, [], _Fallback(), interrupted_once)
        to = peer.getsockname()
        with pytest.raises(KeyboardInterrupt):
            native.send(b"first", to)
        native.send(b"second", to)  # (schedules the flush the first could not)
        assert (native.waiting, len(soon.callbacks)) == (2, 1)
        soon.run()
        assert [peer.recv(100) for _ in range(2)] == [b"first", b"second"]


def test_a_datagram_for_the_fallback_goes_there_even_if_one_waiting_failed_there(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        given: list[bytes] = []

        def fallback(datagram: bytes, address: Any) -> None:
            given.append(datagram)
            if datagram == b"deferred":
                raise OSError("refused the deferred one")

        queued: list[Any] = []
        native = module.DatagramSocket(node, queued, fallback, _Soon())
        native.send(b"deferred", peer.getsockname())
        queued.append(b"the kernel's buffer filled")
        with pytest.raises(OSError, match="refused the deferred one"):
            native.send(b"current", peer.getsockname())
        assert given == [b"deferred", b"current"]


def test_what_the_kernel_refuses_in_a_flush_goes_to_the_fallback_in_order(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        fallback, soon = _Fallback(), _Soon()
        native = module.DatagramSocket(node, [], fallback, soon)
        to = peer.getsockname()
        # (70,000 bytes: more than a UDP datagram holds, refused by the kernel)
        for datagram in (b"one", b"x" * 70_000, b"three"):
            native.send(datagram, to)
        soon.run()
        assert peer.recv(100) == b"one"
        assert [len(data) for data, _ in fallback.calls] == [70_000, 5]
        assert (native.sent, native.waiting) == (1, 0)


def test_a_deferring_socket_refuses_a_call_soon_that_is_not_callable(
    module: ModuleType,
) -> None:
    with _pair() as (node, _):
        with pytest.raises(InvalidArgumentTypeError, match="call_soon must be callable or None"):
            module.DatagramSocket(node, [], _Fallback(), 5)
        # (None: sends at once, as without it)
        assert module.DatagramSocket(node, [], _Fallback(), None).waiting == 0


# -- receive_batch ----------------------------------------------------------


class _Dispatch:
    """The protocol's side of receive_batch: what it is handed, noted; it
    says to go on until told to stop after ``stop_after`` calls."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.stop_after = stop_after

    def __call__(self, *parts: Any) -> bool:
        self.calls.append(parts)
        return self.stop_after is None or len(self.calls) < self.stop_after


def _serving(module: ModuleType, **kwargs: Any) -> tuple[Any, Any]:
    engine, _, records = _engine(module, **kwargs)
    engine.keep_answer(KEYS[0], records.generation, 1e9, ANSWER)
    return engine, module.BatchReceiver(64, 65_536)


def test_a_batch_sends_kept_answers_after_it_and_hands_the_rest_over_in_order(
    module: ModuleType,
) -> None:
    with _pair() as (node, peer):
        engine, receiver = _serving(module)
        fallback = _Fallback()
        native = module.DatagramSocket(node, [], fallback)
        dispatch = _Dispatch()
        to = node.getsockname()
        kept_id = os.urandom(16) + CLIENT_PAD
        peer.sendto(_find_values(KEYS[0], kept_id), to)  # served here
        peer.sendto(_find_values(KEYS[1]), to)  # not kept: Python's
        peer.sendto(b"\x00short", to)  # dropped: counted by Python
        peer.sendto(_find_values(KEYS[0], kept_id), to)  # a resend: replayed
        read = engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch)
        assert read == 4
        assert [call[0] for call in dispatch.calls] == [REQUEST, DROP]
        _, _, value, request, rtt, address = dispatch.calls[0]
        assert value[1][1] == KEYS[1] and request is None and rtt == 0.0
        assert address == peer.getsockname()
        assert dispatch.calls[1][1] == "short"
        answers = _drain(peer)
        assert answers == [b"\x01" + kept_id + ANSWER] * 2
        assert (native.sent, fallback.calls) == (2, [])
        # nothing more waits: a second call reads none
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch) == 0


def test_a_batch_answer_to_a_node_goes_to_python_to_welcome_its_sender(
    module: ModuleType,
) -> None:
    """A ping's answer is sent by Python, which welcomes the sender once it
    answers (SERVED with the sender's id): not sent here."""
    with _pair() as (node, peer):
        engine, _, _ = _engine(module)
        engine.serve(module.ReplayCache(5.0), object(), CLIENT_PAD, ping=PING_ANSWER)
        receiver = module.BatchReceiver(8, 65_536)
        native = module.DatagramSocket(node, [], _Fallback())
        dispatch = _Dispatch()
        sender = os.urandom(20)
        peer.sendto(
            frame_request(os.urandom(20), pack_request("ping", (sender,))), node.getsockname()
        )
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch) == 1
        assert [(call[0], call[1]) for call in dispatch.calls] == [(SERVED, sender)]
        assert native.sent == 0


def test_a_batch_stops_when_dispatch_says_the_transport_closed(module: ModuleType) -> None:
    with _pair() as (node, peer):
        engine, receiver = _serving(module)
        native = module.DatagramSocket(node, [], _Fallback())
        dispatch = _Dispatch(stop_after=1)
        for _ in range(3):
            peer.sendto(b"\x07junk", node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch) == 3
        assert len(dispatch.calls) == 1


def test_a_datagram_whose_handling_raises_is_handed_over_as_failed(module: ModuleType) -> None:
    """The node goes on: the error is one datagram's (FAILED, the
    exception), the next datagram is handled."""

    class Broken:
        def admit(self, source: Any) -> bool:
            raise RuntimeError("a broken fair share")

    with _pair() as (node, peer):
        engine, receiver = _serving(module, fair_share=Broken())
        native = module.DatagramSocket(node, [], _Fallback())
        dispatch = _Dispatch()
        peer.sendto(_find_values(KEYS[0]), node.getsockname())
        peer.sendto(b"\x00short", node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch) == 2
        assert [call[0] for call in dispatch.calls] == [FAILED, DROP]
        failed = dispatch.calls[0]
        assert isinstance(failed[2], RuntimeError) and failed[1] is None and failed[3] is None


def test_a_closed_datagram_socket_reads_nothing(module: ModuleType) -> None:
    with _pair() as (node, peer):
        engine, receiver = _serving(module)
        native = module.DatagramSocket(node, [], _Fallback())
        native.close()
        peer.sendto(b"\x00short", node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, _Dispatch()) == 0


def test_receive_batch_refuses_bad_arguments_by_name(module: ModuleType) -> None:
    with _pair() as (node, _):
        engine, receiver = _serving(module)
        native = module.DatagramSocket(node, [], _Fallback())
        with pytest.raises(InvalidArgumentTypeError, match="receiver must be a BatchReceiver"):
            engine.receive_batch(object(), native, 1.0, 0.0, None, _Dispatch())
        with pytest.raises(InvalidArgumentTypeError, match="socket must be a DatagramSocket"):
            engine.receive_batch(receiver, node, 1.0, 0.0, None, _Dispatch())
        with pytest.raises(InvalidArgumentTypeError, match="dispatch must be callable"):
            engine.receive_batch(receiver, native, 1.0, 0.0, None, None)
        plain = module.DatagramEngine({})
        with pytest.raises(InvalidArgumentTypeError, match="opens no requests"):
            plain.receive_batch(receiver, native, 1.0, 0.0, None, _Dispatch())


# -- both cores alike -------------------------------------------------------

_DATAGRAMS = st.lists(
    st.one_of(
        st.sampled_from(KEYS).map(lambda key: ("find_values", key)),
        st.just(("resend", b"")),
        st.just(("ping", b"")),
        st.binary(max_size=40).map(lambda noise: ("noise", noise)),
        st.binary(min_size=22, max_size=40).map(lambda noise: ("request noise", noise)),
    ),
    min_size=1,
    max_size=24,
)


def _typed(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    """A dispatch call in a form both cores give alike (an exception by its
    type and text)."""
    return tuple(
        (type(part).__name__, str(part)) if isinstance(part, BaseException) else part
        for part in parts
    )


def _run_batch(module: ModuleType, datagrams: list[bytes]) -> tuple[list[Any], list[bytes], int]:
    with _pair() as (node, peer):
        engine, receiver = _serving(module)
        engine.serve(module.ReplayCache(5.0), _Generation(), CLIENT_PAD, ping=PING_ANSWER)
        engine.keep_answer(KEYS[0], 0, 1e9, ANSWER)
        native = module.DatagramSocket(node, [], _Fallback())
        dispatch = _Dispatch()
        for datagram in datagrams:
            peer.sendto(datagram, node.getsockname())
        read = engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch)
        calls = [_typed(call[:5]) for call in dispatch.calls]
        return calls, _drain(peer), read


class _Generation:
    generation = 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=_DATAGRAMS)
def test_both_cores_batch_the_same_datagrams_alike(plan: list[tuple[str, bytes]]) -> None:
    rust = require_rust()
    datagrams = []
    last_id = os.urandom(16) + CLIENT_PAD
    for kind, data in plan:
        if kind == "find_values":
            last_id = os.urandom(16) + CLIENT_PAD
            datagrams.append(_find_values(data, last_id))
        elif kind == "resend":
            datagrams.append(_find_values(KEYS[0], last_id))
        elif kind == "ping":
            datagrams.append(frame_request(os.urandom(20), pack_request("ping", (os.urandom(20),))))
        elif kind == "request noise":
            datagrams.append(b"\x00" + data)
        else:
            datagrams.append(data)
    ours = _run_batch(rust, datagrams)
    twin = _run_batch(_core_py, datagrams)
    assert ours == twin
    assert ours[2] == len(datagrams)


def test_an_answer_to_a_known_node_is_sent_at_once_and_to_a_new_one_handed_over(
    module: ModuleType,
) -> None:
    """A node's request (SERVED with its id) is answered by the core when
    its id is in ``known`` (the routing table's contacts: nothing to
    welcome), and handed to Python when it is not."""
    with _pair() as (node, peer):
        engine, receiver = _serving(module)
        native = module.DatagramSocket(node, [], _Fallback())
        dispatch = _Dispatch()
        friend, stranger = b"f" * 20, b"n" * 20
        for sender in (friend, stranger):
            msg_id = os.urandom(20)  # (a node's id: no client marker)
            peer.sendto(_find_values(KEYS[0], msg_id, sender), node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch, {friend}) == 2
        assert [(call[0], call[1]) for call in dispatch.calls] == [(SERVED, stranger)]
        assert native.sent == 1
        assert len(_drain(peer)) == 1
        with pytest.raises(InvalidArgumentTypeError, match="known must be a set or None"):
            engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch, [friend])


def test_a_batch_answers_go_to_the_fallback_in_order_while_datagrams_wait(
    module: ModuleType,
) -> None:
    """While the transport's queue holds datagrams, the answers served in a
    batch wait behind them: each given to the fallback, in order."""
    with _pair() as (node, peer):
        engine, receiver = _serving(module)
        fallback = _Fallback()
        native = module.DatagramSocket(node, [b"waiting"], fallback)
        ids = [os.urandom(16) + CLIENT_PAD for _ in range(3)]
        for msg_id in ids:
            peer.sendto(_find_values(KEYS[0], msg_id), node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, _Dispatch()) == 3
        assert native.sent == 0
        assert [data for data, _ in fallback.calls] == [b"\x01" + i + ANSWER for i in ids]
        assert {address for _, address in fallback.calls} == {peer.getsockname()}


class _Book:
    """A peer book that notes the address each answer was told with."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def answered(self, address: Any, rtt: float, ok: bool, now: float) -> None:
        self.told.append(address)


def test_after_an_answer_its_peers_datagrams_carry_the_requests_address_object() -> None:
    """The Rust core's receiver hands a peer's later datagrams the very
    tuple its answered request was sent to (equal to the one it made), so
    that the next answer's source and the peer book's look-ups compare it
    by identity. (An optimisation of the Rust core: the twin makes a tuple
    per datagram, equal, which is all its answers promise.)"""
    module = require_rust()
    with _pair() as (node, peer):
        core = module.QueryCore()
        engine = module.DatagramEngine({}, {"ping": 2}, requests=(core, CLIENT_PAD, {}, None))
        receiver = module.BatchReceiver(8, 65_536)
        native = module.DatagramSocket(node, [], _Fallback())
        dispatch = _Dispatch()
        book = _Book()
        host, port = peer.getsockname()
        asked = (str(host), int(port))  # equal to what the receiver makes, not the same
        datagram = engine.open(0.5, 1.0, 0.0, asked, "ping", None, None, None, b"body")
        msg_id = datagram[1:21]
        peer.sendto(encode_response(msg_id, os.urandom(20)), node.getsockname())
        peer.sendto(b"\x07junk", node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, book, dispatch) == 2
        # the peer book was told of the answer with the request's object
        assert len(book.told) == 1 and book.told[0] is asked
        (answered, *_, answer_from), (dropped, *_, junk_from) = dispatch.calls
        assert (answered, dropped) == (CHECKED, DROP)
        assert answer_from == asked and answer_from is not asked
        # (the same batch: the junk's address was read with the answer's)
        assert junk_from is answer_from
        peer.sendto(b"\x07junk", node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch) == 1
        assert dispatch.calls[-1][0] == DROP and dispatch.calls[-1][-1] is asked
        # an answer from another source is not its request's: nothing adopted
        other = engine.open(0.5, 1.0, 0.0, ("127.0.0.1", 9), "ping", None, None, None, b"b")
        peer.sendto(encode_response(other[1:21], os.urandom(20)), node.getsockname())
        peer.sendto(b"\x07junk", node.getsockname())
        assert engine.receive_batch(receiver, native, 1.0, 0.0, None, dispatch) == 2
        assert [call[0] for call in dispatch.calls[-2:]] == [WRONG_ADDRESS, DROP]
        assert dispatch.calls[-1][-1] is asked

"""BatchReceiver (many datagrams per call from a non-blocking socket):
both cores, real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator
from types import ModuleType

import pytest

from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError

from .conftest import require_rust


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    try:
        yield receiver, sender
    finally:
        receiver.close()
        sender.close()


def _send(sender: socket.socket, to: socket.socket, payloads: list[bytes]) -> None:
    for payload in payloads:
        sender.sendto(payload, to.getsockname())


def _drain(
    batch: object, sock: socket.socket, limit: int = 100
) -> list[list[tuple[bytes, object]]]:
    """receive() until it gives [] (loopback delivers before sendto returns)."""
    calls = []
    for _ in range(limit):
        got = batch.receive(sock)  # type: ignore[attr-defined]
        calls.append(got)
        if not got:
            break
    return calls


def test_datagrams_come_in_order_count_at_a_time_with_their_sender(
    core_module: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    receiver, sender = pair
    payloads = [bytes([n]) * (n + 1) for n in range(10)]
    _send(sender, receiver, payloads)
    calls = _drain(core_module.BatchReceiver(4, 2048), receiver)
    assert [len(call) for call in calls] == [4, 4, 2, 0]
    sent_from = sender.getsockname()
    assert [item for call in calls for item in call] == [(p, sent_from) for p in payloads]


def test_a_datagram_longer_than_size_comes_cut(
    core_module: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    receiver, sender = pair
    _send(sender, receiver, [b"abcdefgh", b"xy", b""])
    got = core_module.BatchReceiver(8, 4).receive(receiver)
    assert [data for data, _ in got] == [b"abcd", b"xy", b""]


def test_nothing_waiting_is_an_empty_list(
    core_module: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    receiver, _ = pair
    assert core_module.BatchReceiver(16, 1500).receive(receiver) == []


def test_bad_arguments_are_refused(
    core_module: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    for count, size in ((0, 10), (1025, 10), (1, 0), (1, 65_537)):
        with pytest.raises(InvalidArgumentError, match=r"must be in \[1, "):
            core_module.BatchReceiver(count, size)
    with pytest.raises(InvalidArgumentTypeError, match="count must be an int, got bool"):
        core_module.BatchReceiver(True, 10)
    batch = core_module.BatchReceiver(2, 10)
    assert (batch.count, batch.size) == (2, 10)
    receiver, _ = pair
    receiver.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        batch.receive(receiver)


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for 1,200 open sockets (the soft limit raised up to the hard
    one for the test); skips, saying so, where the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1_200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files; this machine's hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("many_files")
def test_many_sources_each_come_with_their_own_address(core_module: ModuleType) -> None:
    # More senders than the Rust receiver keeps addresses of (1,024): each
    # datagram still names its own sender, twice over (the second round
    # after the cache started again).
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    senders: list[socket.socket] = []
    try:
        for _ in range(1100):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders.append(sender)
            sender.bind(("127.0.0.1", 0))
        batch = core_module.BatchReceiver(64, 64)
        for _ in range(2):
            got = []
            for start in range(0, len(senders), 50):
                # (50 at a time: within the receiver's socket buffer)
                for index, sender in enumerate(senders[start : start + 50], start):
                    sender.sendto(index.to_bytes(2, "big"), receiver.getsockname())
                got += [item for call in _drain(batch, receiver) for item in call]
            assert [(data, address) for data, address in got] == [
                (index.to_bytes(2, "big"), sender.getsockname())
                for index, sender in enumerate(senders)
            ]
    finally:
        receiver.close()
        for sender in senders:
            sender.close()


def test_the_rust_receiver_gives_a_peers_datagrams_one_address_object(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # (the core keeps a source's address: its host str made and hashed
    # once, not per datagram; the twin's come from recvfrom, new each time)
    core = require_rust()
    receiver, sender = pair
    _send(sender, receiver, [b"a", b"b"])
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        other.bind(("127.0.0.1", 0))
        other_address = other.getsockname()
        _send(other, receiver, [b"c"])
        got = [item for call in _drain(core.BatchReceiver(8, 64), receiver) for item in call]
    finally:
        other.close()
    assert [data for data, _ in got] == [b"a", b"b", b"c"]
    assert got[0][1] is got[1][1]
    assert got[0][1] == sender.getsockname()
    assert got[2][1] == other_address and got[2][1] is not got[0][1]

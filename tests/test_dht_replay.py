"""A request resent with its message id is answered from the replay cache:
the same bytes as the first answer, served (and applied) once. The cache is
the core's (``ReplayCache``, Rust and the twin: every test runs on both)."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

import msgpack

from .dht_helpers import RawPeer, open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]
ADDRESS = ("127.0.0.1", 4000)


def test_replay_cache_answers_a_resend_within_its_age(core_module: ModuleType) -> None:
    cache = core_module.ReplayCache(max_age=5.0)
    cache.put(ADDRESS, b"id-1", b"answer", 100.0)
    assert cache.get(ADDRESS, b"id-1", 104.0) == b"answer"
    assert cache.get(ADDRESS, b"id-1", 105.5) is None  # too old: served afresh
    assert cache.get(ADDRESS, b"id-2", 101.0) is None
    assert cache.get(("127.0.0.1", 4001), b"id-1", 101.0) is None  # another sender


def test_replay_cache_is_bounded_by_count_and_bytes_oldest_out_first(
    core_module: ModuleType,
) -> None:
    by_count = core_module.ReplayCache(max_age=5.0, max_count=3)
    for i in range(5):
        by_count.put(ADDRESS, bytes([i]), b"x" * 10, 0.0)
    assert len(by_count) == 3 and by_count.size_bytes == 30
    assert by_count.get(ADDRESS, bytes([0]), 0.0) is None
    assert by_count.get(ADDRESS, bytes([4]), 0.0) == b"x" * 10

    by_bytes = core_module.ReplayCache(max_age=5.0, max_bytes=100)
    for i in range(5):
        by_bytes.put(ADDRESS, bytes([i]), b"y" * 40, 0.0)
    assert by_bytes.size_bytes <= 100 and len(by_bytes) == 2
    assert by_bytes.get(ADDRESS, bytes([3]), 0.0) == b"y" * 40
    by_bytes.put(ADDRESS, b"big", b"z" * 101, 0.0)  # larger than the budget: not kept
    assert by_bytes.get(ADDRESS, b"big", 0.0) is None
    assert by_bytes.size_bytes <= 100
    by_bytes.put(ADDRESS, bytes([4]), b"w", 0.0)  # kept again: counted once
    assert by_bytes.size_bytes == 41


async def answer_to(peer: RawPeer, msg_id: bytes) -> bytes:
    """The next answer to ``msg_id`` (the node's own requests to the peer,
    a verification ping, are skipped)."""
    for _ in range(10):
        data, _ = await peer.recv()
        if data[:1] == b"\x01" and data[1:21] == msg_id:
            return data
    raise AssertionError("no answer among 10 datagrams")


def test_a_resent_request_gets_the_first_answer_and_is_served_once(run: Run, backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peer = await nodes.raw()
            msg_id = os.urandom(20)
            key, value = os.urandom(20), "first"
            store = msgpack.packb(["store", [os.urandom(20), key, value]], use_bin_type=True)
            peer.send(b"\x00" + msg_id + store, node.address)
            first = await answer_to(peer, msg_id)
            served = protocol.stats["served"]
            # the same request again, with a value changed meanwhile by
            # another: a resend must not store its value a second time
            node.protocol.storage[key] = "changed"  # type: ignore[union-attr]
            peer.send(b"\x00" + msg_id + store, node.address)
            again = await answer_to(peer, msg_id)
            assert again == first and first[:1] == b"\x01" and first[1:21] == msg_id
            assert protocol.stats["served"] == served
            assert protocol.stats["replayed"] == 1
            assert node.protocol.storage.get(key) == "changed"  # type: ignore[union-attr]
            # a new message id is served as usual
            fresh = os.urandom(20)
            peer.send(b"\x00" + fresh + store, node.address)
            await answer_to(peer, fresh)
            assert protocol.stats["served"] == served + 1
            assert node.protocol.storage.get(key) == "first"  # type: ignore[union-attr]

    run(scenario())


def test_replay_cache_lets_answers_past_their_age_go(core_module: ModuleType) -> None:
    cache = core_module.ReplayCache(max_age=5.0)
    for i in range(10):
        cache.put(ADDRESS, bytes([i]), b"old", 100.0)
    cache.put(ADDRESS, b"new", b"fresh", 106.0)  # the others are 6 s old
    assert len(cache) == 1 and cache.size_bytes == 5
    assert cache.get(ADDRESS, b"new", 106.0) == b"fresh"


def test_replay_cache_lets_old_answers_go_after_the_oldest_left_by_count(
    core_module: ModuleType,
) -> None:
    # put() reads the oldest only once one may be past max_age: answers
    # that left by count make its note of when that is early, never late
    cache = core_module.ReplayCache(max_age=5.0, max_count=4)
    for i in range(5):
        cache.put(ADDRESS, bytes([i]), b"a", 100.0 + i)  # the first leaves by count
    assert [cache.get(ADDRESS, bytes([i]), 104.0) for i in range(5)] == [None] + [b"a"] * 4
    cache.put(ADDRESS, bytes([4]), b"b", 106.5)  # kept again: no count bound hit
    # 101.0 is past max_age and leaves; 102.0 and 103.0 stay
    assert len(cache) == 3 and cache.size_bytes == 3
    assert cache.get(ADDRESS, bytes([2]), 106.5) == b"a"
    cache.put(ADDRESS, b"y", b"c", 108.5)  # 102.0 and 103.0 past max_age now
    assert len(cache) == 2 and cache.get(ADDRESS, bytes([4]), 108.5) == b"b"

"""The lookup's fast path: a response's shape is judged once, by the
protocol (an answer of the wrong shape reaches a caller as no answer), and
a record served by several holders is checked once but never trusted on
sight when any field differs."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import pytest

from dhtquery.dht.records import RecordError, RecordVerifier
from dhtquery.dht.rpc_table import BAD_RESPONSE

from .dht_helpers import eventually, open_nodes, signed

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def test_wrong_shape_is_no_answer_for_futures_and_callbacks(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peer = await nodes.raw()
            future = protocol.request(peer.address, "ping", (node.node.id,), 5.0)
            seen: list[tuple[Any, ...]] = []
            protocol.request_callback(
                peer.address,
                "find_values",
                (node.node.id, node.node.id),
                5.0,
                lambda *args: seen.append(args),
                "context",
            )
            for answer in (5, {"records": "not a list"}):
                request, _ = await peer.recv()
                peer.send(b"\x01" + request[1:21] + _pack(answer), node.address)
            assert await future == (False, None)
            assert await eventually(lambda: bool(seen))
            assert seen == [("context", peer.address, "find_values", False, BAD_RESPONSE)]
            assert protocol.stats["bad_response"] == 2
            # each a failure of the peer, told to the peer book once
            assert protocol.peers.stats(peer.address)[:2] == (0, 2)
            future = protocol.request(peer.address, "ping", (node.node.id,), 5.0)
            request, _ = await peer.recv()
            peer.send(b"\x01" + request[1:21] + _pack(b"n" * 20), node.address)
            assert await future == (True, b"n" * 20)
            assert protocol.peers.stats(peer.address)[:2] == (1, 2)
            assert protocol.peers.srtt(peer.address) is not None

    run(scenario())


def test_record_cache_verifies_each_distinct_record_once() -> None:
    verifier = RecordVerifier(lambda: 1_800_000_000.0)
    key = b"\x07" * 20
    record = signed("pub-cache", b"data", key)
    first = verifier.from_wire(record.to_wire(), key)
    assert first == record and verifier.verified == 1
    again = verifier.from_wire(record.to_wire(), key)
    assert again is first and verifier.verified == 1  # a hit: not verified again
    tampered = record.to_wire()
    tampered[5] = b"other"
    with pytest.raises(RecordError) as caught:
        verifier.from_wire(tampered, key)
    assert caught.value.kind == "bad_signature"
    # a field-for-field copy under another key is refused, even from the cache
    with pytest.raises(RecordError) as moved:
        verifier.from_wire(record.to_wire(), b"\x08" * 20)
    assert moved.value.kind == "wrong_slot"
    for bad in (None, [1, 2], "p", [["unhashable"], b"", "", 0, 0, b"", [b"unhashable"]]):
        with pytest.raises(RecordError):
            verifier.from_wire(bad, key)
    assert verifier.verified == 1

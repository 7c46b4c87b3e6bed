"""The lookup's fast path: a response's shape is judged once, by the
protocol (an answer of the wrong shape reaches a caller as no answer), and
a record served by several holders is checked once but never trusted on
sight when any field differs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import pytest

from dhtquery.dht.records import Record, RecordError, from_wire_cached
from dhtquery.dht.rpc_table import BAD_RESPONSE

from .dht_helpers import eventually, open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def test_wrong_shape_is_no_answer_for_futures_and_callbacks(backend: str, run: Run) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert protocol is not None
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

    run(scenario())


def test_record_cache_checks_each_distinct_record() -> None:
    record = Record.create("pub-cache", b"data")
    key, first = from_wire_cached(record.to_wire())
    assert first == record and key == record.dedup_key
    again_key, again = from_wire_cached(record.to_wire())
    assert again is first and again_key == key
    tampered = dict(record.to_wire(), d=b"other")
    with pytest.raises(RecordError):
        from_wire_cached(tampered)
    forged = dict(record.to_wire(), d=b"other", h=hashlib.sha256(b"other").digest())
    assert from_wire_cached(forged)[1].data == b"other"
    for bad in (None, [1, 2], "p", {"p": ["unhashable"], "n": "", "d": b"", "h": b""}):
        with pytest.raises(RecordError):
            from_wire_cached(bad)

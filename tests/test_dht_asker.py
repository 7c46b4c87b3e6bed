"""A lookup's asks sent from the core (``Asker``, through the RPC table's
engine's ``open_asks``) on a real node and real sockets: the asks an answer
leads to reach their peers with no call of the lookup's ``_act`` or
``_answered_then``, counted as ``_act`` and ``ask_many`` count them; and
where ``ask_many`` would queue them (the window full), they go the Python
way."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from kademlia.node import Node

from dhtquery.dht.lookup import StreamingLookup
from dhtquery.dht.wire import decode as decode_wire
from dhtquery.dht.wire import encode_response

from .dht_helpers import RawPeer, eventually, open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@contextmanager
def python_path_calls() -> Iterator[list[str]]:
    """The names of the lookup's Python methods on the ask path, each
    time one is called (``_act``, ``_answered_then``), the methods still
    doing their work."""
    calls: list[str] = []
    originals = {name: getattr(StreamingLookup, name) for name in ("_act", "_answered_then")}

    def spy(name: str) -> Any:
        def method(self: Any, *args: Any) -> Any:
            calls.append(name)
            return originals[name](self, *args)

        return method

    for name in originals:
        setattr(StreamingLookup, name, spy(name))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(StreamingLookup, name, original)


async def _answer(peer: RawPeer, node_address: Any, nodes: list[Any]) -> tuple[bytes, Any]:
    """``peer``'s next request, answered with no records and ``nodes``:
    (its body, the message id)."""
    request, _ = await peer.recv()
    _, msg_id, body = decode_wire(request)
    peer.send(encode_response(msg_id, {"records": [], "nodes": nodes}), node_address)
    return body, msg_id


def test_the_asks_an_answer_leads_to_are_sent_from_the_core(run: Run, backend: str) -> None:
    """A table contact answers naming B (depth 2), B answers naming C: B
    and C are asked with no call of ``_act`` / ``_answered_then``; B,
    having answered, is welcomed into the table; every request counted in
    the handle and the protocol's stats, each on the wire with the timer
    armed for it."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            a, b, c = [await nodes.raw() for _ in range(3)]
            ids = [os.urandom(20) for _ in range(3)]
            protocol.router.add_contact(Node(ids[0], *a.address))
            for peer in (a, b, c):
                protocol.extensions[peer.address] = True
            before = protocol.stats["requests"]
            with python_path_calls() as calls:
                handle = node.get_all("asked from the core", quorum=1, timeout=5.0)
                await _answer(a, node.address, [[ids[1], *b.address]])
                body, _ = await _answer(b, node.address, [[ids[2], *c.address]])
                assert body[0] == "find_values"
                request, _ = await c.recv()
                assert decode_wire(request)[2][0] == "find_values"
                assert calls == []
            assert not protocol.router.is_new_node(Node(ids[1], *b.address))
            assert handle._requests == 3
            assert protocol.stats["requests"] - before == 3
            out = list(protocol.requests.on_wire.values())
            assert [entry.context for entry in out] == [(ids[2], c.address)]
            assert protocol._timer.armed_until <= out[0].sent + out[0].retry[3] < math.inf
            handle.cancel()

    run(scenario())


def test_asks_the_window_has_no_room_for_go_the_python_way_and_wait(run: Run, backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            a, b = [await nodes.raw() for _ in range(2)]
            ids = [os.urandom(20) for _ in range(2)]
            protocol.router.add_contact(Node(ids[0], *a.address))
            for peer in (a, b):
                protocol.extensions[peer.address] = True
            with python_path_calls() as calls:
                handle = node.get_all("asked from python", quorum=1, timeout=5.0)
                request, _ = await a.recv()
                # (the one request out answered: none on the wire, no room)
                protocol.max_outstanding = 0
                msg_id = decode_wire(request)[1]
                a.send(
                    encode_response(msg_id, {"records": [], "nodes": [[ids[1], *b.address]]}),
                    node.address,
                )
                assert await eventually(lambda: bool(calls))
            assert calls == ["_act"]
            assert protocol.waiting == 1 and protocol.stats["queued"] == 1
            assert handle._requests == 2
            assert b.received.empty()
            handle.cancel()

    run(scenario())

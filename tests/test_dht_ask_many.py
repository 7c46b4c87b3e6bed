"""``DhtProtocol.ask_many``: a lookup's asks opened, framed and sent in one
call of the RPC table's engine, each as ``request_packed`` would send it
(the same timing, counters, queue and refusal after stop)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from dhtquery.dht.wire import pack_request
from dhtquery.errors import InvalidArgumentError

from .dht_helpers import open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]
NAMES = ("find_values", "find_value")


def _bodies(node_id: bytes) -> dict[str, bytes]:
    return {name: pack_request(name, (node_id, os.urandom(20))) for name in NAMES}


def _ignore(*args: Any) -> None:
    pass


def test_ask_many_sends_each_ask_as_request_packed_does(run: Run, backend: str) -> None:
    """Asks to four raw peers (one measured, one that answered but not our
    RPCs, one known stock, one never met) against the same requests made
    one by one with ``request_packed``: the same RPC, body and timing, the
    ask as each request's context."""

    async def scenario() -> tuple[list[Any], list[Any], list[bytes], int]:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peers = [await nodes.raw() for _ in range(8)]
            addresses = [peer.address for peer in peers]
            for measured in (addresses[0], addresses[4]):
                protocol.rtt(measured).observe(0.02)
            for answered in (addresses[1], addresses[5]):
                protocol._peers.success(answered, 0.02, 1.0)
            for stock in (addresses[2], addresses[6]):
                protocol.extensions[stock] = False
            bodies = _bodies(node.node.id)
            asks = [(bytes([index]) * 20, address) for index, address in enumerate(addresses)]
            requests = protocol.requests
            before = protocol.stats["requests"]
            assert protocol.ask_many(asks[:4], NAMES, bodies, None, _ignore, _ignore) == 4
            for ask in asks[4:]:
                name = NAMES[1] if protocol.extensions.get(ask[1]) is False else NAMES[0]
                protocol.request_packed(ask[1], name, bodies[name], None, _ignore, ask, _ignore)
            entries = {entry.context: entry for entry in requests.on_wire.values()}
            timings = [
                (
                    entries[ask].name,
                    entries[ask].callback,
                    round(entries[ask].retry[1] - entries[ask].sent, 9),
                    entries[ask].retry[3],
                )
                for ask in asks
            ]
            received = [(await peer.recv())[0][21:] for peer in peers]
            return timings[:4], timings[4:], received, protocol.stats["requests"] - before

    many, one_by_one, received, counted = run(scenario())
    assert many == one_by_one
    assert [name for name, *_ in many] == [
        "find_values",
        "find_values",
        "find_value",
        "find_values",
    ]
    # the peer that answered but not ours: one try, at its RTO
    assert many[1][2] == many[1][3]
    assert received[:4] == received[4:] and received[2] != received[0]
    assert counted == 8


def test_ask_many_queues_what_the_window_has_no_room_for(run: Run, backend: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peers = [await nodes.raw() for _ in range(3)]
            protocol.max_outstanding = len(protocol.requests) + 1
            asks = [(os.urandom(20), peer.address) for peer in peers]
            asked = protocol.ask_many(asks, NAMES, _bodies(node.node.id), None, _ignore, _ignore)
            return asked, protocol.stats["queued"], protocol.waiting

    assert run(scenario()) == (3, 2, 2)


def test_ask_many_after_stop_refuses_each_ask(run: Run, backend: str) -> None:
    async def scenario() -> tuple[int, list[Any], int, bool]:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peers = [await nodes.raw() for _ in range(2)]
            node.stop()
            called: list[Any] = []
            asks = [(os.urandom(20), peer.address) for peer in peers]
            asked = protocol.ask_many(
                asks, NAMES, _bodies(node.node.id), None, lambda *a: called.append(a), _ignore
            )
            for _ in range(10):
                await asyncio.sleep(0)
            return asked, called, protocol.stats["after_stop"], peers[0].received.empty()

    asked, called, after_stop, nothing_sent = run(scenario())
    assert asked == 2 and after_stop == 2 and nothing_sent
    assert [(ok, value) for *_, ok, value in called] == [(False, None)] * 2


def test_ask_many_stops_at_a_stock_peer_whose_body_is_not_packed(run: Run, backend: str) -> None:
    """Both ways (one engine call, or one by one behind a full window)."""

    async def scenario() -> list[tuple[int, int]]:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peers = [await nodes.raw() for _ in range(3)]
            protocol.extensions[peers[1].address] = False
            bodies = {NAMES[0]: _bodies(node.node.id)[NAMES[0]]}
            asks = [(os.urandom(20), peer.address) for peer in peers]
            answers = []
            for room in (100, 0):
                protocol.max_outstanding = len(protocol.requests) + room
                before = len(protocol.requests) + protocol.waiting
                asked = protocol.ask_many(asks, NAMES, bodies, None, _ignore, _ignore)
                answers.append((asked, len(protocol.requests) + protocol.waiting - before))
            return answers

    assert run(scenario()) == [(1, 1), (1, 1)]


def test_ask_many_refuses_a_stock_rpc_as_ours(run: Run, backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            _, protocol = await nodes.dht_and_protocol()
            with pytest.raises(InvalidArgumentError, match="extension RPC"):
                protocol.ask_many([], ("find_value", "find_value"), {}, None, _ignore, _ignore)

    run(scenario())

"""A stopped node's protocol asks nobody: kademlia's Tasks still running
at shutdown get no answer at once, and nothing is sent on the closed socket
(asyncio warns on the terminal for each such send)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from .dht_helpers import open_nodes

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_a_request_after_stop_fails_at_once_and_sends_nothing(run: Run, backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            peer = await nodes.raw()
            node.stop()
            reply = await asyncio.wait_for(
                protocol.request(peer.address, "ping", (os.urandom(20),), 5.0), 1.0
            )
            assert reply == (False, None)
            called: list[tuple[Any, ...]] = []
            protocol.request_callback(
                peer.address, "ping", (os.urandom(20),), None, lambda *a: called.append(a)
            )
            for _ in range(10):
                await asyncio.sleep(0)
            assert called == [(None, peer.address, "ping", False, None)]
            assert protocol.stats["after_stop"] == 2
            assert peer.received.empty()

    run(scenario())

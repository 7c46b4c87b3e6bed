"""A node's join refreshes its far buckets (the Kademlia paper's join):
after ``bootstrap`` the joiner has looked up an id at every distance
farther than its closest contact, and knows more of the network than a
join without it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from dhtquery.dht import DhtNode
from dhtquery.dht.node import REFRESH_MAX_LOOKUPS

from .dht_helpers import dht_network

Run = Callable[[Coroutine[Any, Any, Any]], Any]

#: small buckets: 40 nodes are a network a join's lookup of its own id
#: alone leaves mostly unknown
KSIZE = 4


def test_a_joiner_looks_up_every_far_bucket_and_knows_more_of_the_network(
    backend: str, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[int, int, int, int]:
        async with dht_network(backend, 40, ksize=KSIZE) as nodes:
            refreshed: list[int] = []
            refresh = DhtNode.refresh_buckets

            async def counted(self: DhtNode) -> int:
                count = await refresh(self)
                refreshed.append(count)
                return count

            monkeypatch.setattr(DhtNode, "refresh_buckets", counted)
            joiner = await nodes.add(ksize=KSIZE)
            known = joiner.peer_count
            assert joiner.protocol is not None
            own = joiner.node.long_id
            closest = joiner.protocol.router.find_neighbors(joiner.node, 1)[0]
            distances = 160 - (own ^ closest.long_id).bit_length()

            async def no_refresh(self: DhtNode) -> int:
                return 0

            monkeypatch.setattr(DhtNode, "refresh_buckets", no_refresh)
            plain = await nodes.add(ksize=KSIZE)
            return refreshed[0], distances, known, plain.peer_count

    lookups, distances, known, plain = run(scenario())
    # one lookup per distance farther than its closest contact (that one
    # may have come closer during the refresh itself: at most as many)
    assert lookups >= 1
    assert distances <= lookups <= REFRESH_MAX_LOOKUPS
    assert known > plain


def test_a_client_does_not_refresh_its_buckets(
    backend: str, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[list[bool], int]:
        async with dht_network(backend, 30, ksize=KSIZE) as nodes:
            calls: list[bool] = []
            refresh = DhtNode.refresh_buckets

            async def counted(self: DhtNode) -> int:
                calls.append(self.client)
                return await refresh(self)

            monkeypatch.setattr(DhtNode, "refresh_buckets", counted)
            client = await nodes.add(ksize=KSIZE, client=True)
            await nodes.add(ksize=KSIZE)
            return calls, client.peer_count

    calls, peers = run(scenario())
    assert calls == [False]  # the second joiner refreshed; the client did not
    assert peers > 0  # though it joined

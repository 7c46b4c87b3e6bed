"""find_value (stock ``Server.get``'s RPC) served from packed answers: the
first request of a key held is answered by the protocol, which keeps its
packed answer in the core's engine (DhtProtocol.packed_value_answers); the
engine answers the next requests of the key itself, with the same bytes
stock kademlia's handler would send, never stale once a value is stored
again or outlives its TTL, never for a node whose storage is not ours.
Real UDP on 127.0.0.1 (a raw socket asks, stock nodes get), an injected
clock for the TTL."""

from __future__ import annotations

import os
from typing import Any

import pytest
import umsgpack
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.storage import ForgetfulStorage
from kademlia.utils import digest

from dhtquery.dht import DhtNode, DhtProtocol, RpcSpec, StoreLimits
from dhtquery.dht.rpc_table import CLIENT_PAD
from dhtquery.dht.storage import PlainStorage
from dhtquery.dht.wire import decode, frame_request, pack_request
from dhtquery.query import QueryConfig, QueryManager, new_core, shapes
from dhtquery.testing import FakeClock

from .dht_helpers import Nodes, NullStorage, RawPeer, eventually, open_nodes, run_paired

KEY = digest("served value")
PEER_PAD = b"\x00\x00\x00\x00"


async def _ask(
    peer: RawPeer, node: DhtNode, key: bytes = KEY, pad: bytes = CLIENT_PAD
) -> tuple[bytes, Any]:
    """One find_value request of ``key`` from ``peer`` (a client's, by
    default: the node answers without pinging it back); the answer's
    datagram body, raw and decoded. (A peer's request is followed by the
    node's ping to verify it: skipped.)"""
    body = pack_request("find_value", (os.urandom(20), key))
    msg_id = os.urandom(16) + pad
    peer.send(frame_request(msg_id, body), node.address)
    for _ in range(3):
        data, _ = await peer.recv()
        kind, answered, answer = decode(data)
        if kind == 1:
            assert answered == msg_id
            return data[21:], answer
    raise AssertionError("no answer among three datagrams")


async def _on_clock(nodes: Nodes, clock: FakeClock, ttl: float) -> tuple[DhtNode, DhtProtocol]:
    """A node of ``nodes``' core timed by ``clock``, its values kept ``ttl``."""
    queries = QueryManager(QueryConfig(), core=new_core(nodes.backend), clock=clock)
    return await nodes.dht_and_protocol(queries=queries, limits=StoreLimits(ttl=ttl))


async def _old_value_kept(nodes: Nodes) -> tuple[DhtNode, DhtProtocol, RawPeer]:
    """A node holding "old" at KEY, asked once by a raw peer: its answer
    kept in the engine."""
    node, protocol = await nodes.dht_and_protocol()
    node.storage[KEY] = "old"
    peer = await nodes.raw()
    assert (await _ask(peer, node))[1] == {"value": "old"}
    assert list(protocol.packed_value_answers) == [KEY]
    return node, protocol, peer


def _contacts(server: Any) -> int:
    """How many contacts a stock node's routing table holds."""
    return sum(len(bucket) for bucket in server.protocol.router.buckets)


class _Counted:
    """Counts the protocol's own find_value answers (those the engine did
    not give from a kept answer)."""

    def __init__(self, protocol: DhtProtocol) -> None:
        self.calls = 0
        body = protocol._find_value_body

        def counted(*args: Any) -> bytes:
            self.calls += 1
            return body(*args)

        protocol._find_value_body = counted  # type: ignore[method-assign,assignment]


def test_a_held_key_is_answered_by_the_engine_with_stocks_bytes(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol()
            node.storage[KEY] = "a value"
            counted = _Counted(protocol)
            peer = await nodes.raw()
            first, answer = await _ask(peer, node)
            assert answer == {"value": "a value"} and counted.calls == 1
            assert list(protocol.packed_value_answers) == [KEY]
            for _ in range(3):
                again, _ = await _ask(peer, node)
                assert again == first
            assert counted.calls == 1  # (the engine answered the other three)
            # a value stored under another key leaves this one's answer kept
            node.storage[digest("another key")] = "written"
            assert (await _ask(peer, node))[0] == first and counted.calls == 1
            # the bytes are what stock kademlia's own handler packs, as
            # rpcudp sends it (umsgpack); called as for a client, so that it
            # welcomes no one
            protocol._serving_client = True
            try:
                stock = KademliaProtocol.rpc_find_value(protocol, peer.address, os.urandom(20), KEY)
            finally:
                protocol._serving_client = False
            assert first == umsgpack.packb(stock)
            # a peer's request too, its sender handed back to be welcomed
            served = protocol.stats["served"]
            assert (await _ask(peer, node, pad=PEER_PAD))[0] == first
            assert counted.calls == 1 and protocol.stats["served"] == served + 1

    run_paired(backend, scenario())


def test_a_value_stored_again_or_past_its_ttl_is_in_the_next_answer(backend: str) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            node, protocol = await _on_clock(nodes, clock, ttl=60.0)
            protocol.router.add_contact(Node(os.urandom(20), "127.0.0.1", 9))  # to name
            peer = await nodes.raw()
            node.storage[KEY] = "first"
            assert (await _ask(peer, node))[1] == {"value": "first"}
            clock.advance(30.0)
            node.storage[KEY] = "second"  # (its TTL from now on)
            assert (await _ask(peer, node))[1] == {"value": "second"}
            assert (await _ask(peer, node))[1] == {"value": "second"}
            clock.advance(59.0)
            assert (await _ask(peer, node))[1] == {"value": "second"}
            clock.advance(1.0)  # past its TTL: the contacts, as stock answers
            _, answer = await _ask(peer, node)
            assert answer == [
                [contact.id, contact.ip, contact.port]
                for contact in protocol.router.find_neighbors(Node(KEY))
            ]
            assert KEY not in node.storage and protocol.packed_value_answers == {}

    run_paired(backend, scenario())


def test_a_node_with_another_storage_answers_as_stock_and_keeps_nothing(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol(storage=ForgetfulStorage())
            node.storage[KEY] = "kept by stock's storage"
            peer = await nodes.raw()
            for _ in range(2):
                _, answer = await _ask(peer, node)
                assert answer == {"value": "kept by stock's storage"}
            assert protocol.packed_value_answers == {}

    run_paired(backend, scenario())


def test_stock_nodes_get_values_our_nodes_serve_from_kept_answers(backend: str) -> None:
    """Stock ``Server.get`` through our nodes (its find_value requests
    answered by the engine after the first of each key) gets every value,
    stored again midway too."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            first = await nodes.dht()
            ours = [first] + [await nodes.dht(bootstrap=[first.address]) for _ in range(3)]
            # (a stock client that keeps nothing: every get asks the network)
            stock = await nodes.stock(storage=NullStorage(), bootstrap=[first.address])
            # (every node of ours known to it: each get asks the same alpha)
            assert await eventually(lambda: _contacts(stock) == len(ours))
            keys = [f"key-{index}" for index in range(4)]
            for key in keys:
                assert await ours[0].set(key, f"{key} v1")
            counted = []
            for node in ours:
                assert isinstance(node.protocol, DhtProtocol)
                counted.append(_Counted(node.protocol))
            for key in keys:
                assert await stock.get(key) == f"{key} v1"
            first_round = sum(count.calls for count in counted)
            for key in keys:
                assert await stock.get(key) == f"{key} v1"
            # (a get finds the value in its first round: alpha requests)
            assert first_round == stock.alpha * len(keys)
            # the same holders asked again: every answer from the engine
            assert sum(count.calls for count in counted) == first_round
            kept: set[bytes] = set()
            for node in ours:
                assert isinstance(node.protocol, DhtProtocol)
                kept.update(node.protocol.packed_value_answers)
            assert kept == {digest(key) for key in keys}  # (kept by the holders asked)
            assert await ours[1].set(keys[0], "stored again")
            assert await stock.get(keys[0]) == "stored again"

    run_paired(backend, scenario())


class _OwnFindValue(DhtProtocol):
    def rpc_find_value(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
        return super().rpc_find_value(sender, nodeid, key)


class _OwnFindNode(DhtProtocol):
    def rpc_find_node(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
        return super().rpc_find_node(sender, nodeid, key)


class _OwnStorage(PlainStorage):
    """A PlainStorage subclass (it may store otherwise)."""


class _OwnSpecNode(DhtNode):
    """A node serving find_value through an extra spec of its own."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        spec = RpcSpec((shapes.node_id, shapes.node_id), self._find_value, shapes.found_value)
        self.add_rpc("find_value", spec)

    def _find_value(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
        return {"value": self.storage.get(key)}


def _node_class(protocol_class: type[DhtProtocol]) -> type[DhtNode]:
    return type(f"NodeOf{protocol_class.__name__}", (DhtNode,), {"protocol_class": protocol_class})


@pytest.mark.parametrize(
    "variant",
    ["own rpc_find_value", "own rpc_find_node", "storage subclass", "other clock", "extra spec"],
)
def test_find_value_served_another_way_is_answered_so_and_nothing_kept(
    backend: str, variant: str
) -> None:
    """A protocol whose find_value (or the find_node it answers with) is a
    subclass's, a node given a store that is not our PlainStorage on its
    time, or an extra spec of find_value: answered as before, every
    request, and no answer kept in the engine."""

    async def scenario() -> None:
        variants: dict[str, dict[str, Any]] = {
            "own rpc_find_value": {"node_class": _node_class(_OwnFindValue)},
            "own rpc_find_node": {"node_class": _node_class(_OwnFindNode)},
            "storage subclass": {"storage": _OwnStorage()},
            "other clock": {"storage": PlainStorage(clock=FakeClock())},
            "extra spec": {"node_class": _OwnSpecNode},
        }
        kwargs = variants[variant]
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol(**kwargs)
            node.storage[KEY] = "served another way"
            peer = await nodes.raw()
            for _ in range(2):
                assert (await _ask(peer, node))[1] == {"value": "served another way"}
            assert protocol.packed_value_answers == {}

    run_paired(backend, scenario())


def test_a_plain_storage_a_user_made_is_answered_from_kept_answers(backend: str) -> None:
    """``DhtNode(storage=PlainStorage())``: its own SystemClock reads the
    same time as the node's, so its answers are kept."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol = await nodes.dht_and_protocol(storage=PlainStorage())
            node.storage[KEY] = "user's store"
            peer = await nodes.raw()
            assert (await _ask(peer, node))[1] == {"value": "user's store"}
            assert list(protocol.packed_value_answers) == [KEY]

    run_paired(backend, scenario())


def test_a_storage_set_anew_is_answered_from_and_the_old_ones_answers_forgotten(
    backend: str,
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol, peer = await _old_value_kept(nodes)
            fresh = PlainStorage(clock=node.clock)
            fresh[KEY] = "new"
            protocol.storage = fresh
            assert protocol.packed_value_answers == {}
            for _ in range(2):
                assert (await _ask(peer, node))[1] == {"value": "new"}
            assert list(protocol.packed_value_answers) == [KEY]  # (kept from the new one)
            fresh[KEY] = "newer"  # (the new store's watcher forgets its answer)
            assert (await _ask(peer, node))[1] == {"value": "newer"}
            stock = ForgetfulStorage()
            stock[KEY] = "stock's"
            protocol.storage = stock
            for _ in range(2):
                assert (await _ask(peer, node))[1] == {"value": "stock's"}
            assert protocol.packed_value_answers == {}

    run_paired(backend, scenario())


def test_a_shorter_ttl_set_on_the_store_ends_a_kept_answer(backend: str) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            node, protocol = await _on_clock(nodes, clock, ttl=60.0)
            peer = await nodes.raw()
            node.storage[KEY] = "short-lived"
            assert (await _ask(peer, node))[1] == {"value": "short-lived"}
            assert protocol.packed_value_answers[KEY][1] == clock.now() + 60.0
            node.storage.limits = StoreLimits(ttl=10.0)
            clock.advance(10.0)  # (past the new TTL, not the kept answer's until)
            assert (await _ask(peer, node))[1] == []  # (no contacts to name)
            assert KEY not in node.storage

    run_paired(backend, scenario())


class _Key(bytes):
    """A bytes subclass: equal to its bytes as a store's key."""


def test_keys_not_exactly_bytes_are_stored_and_a_subclass_forgets_its_bytes_answer(
    backend: str,
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node, protocol, peer = await _old_value_kept(nodes)
            node.storage[_Key(KEY)] = "new"  # (replaces KEY's value)
            assert protocol.packed_value_answers == {}
            assert (await _ask(peer, node))[1] == {"value": "new"}
            node.storage["a str key"] = "kept as stock keeps it"  # (never asked for)
            assert node.storage.get("a str key") == "kept as stock keeps it"

    run_paired(backend, scenario())

"""find_values answers served from packed bytes (DhtProtocol.packed_answers, kept in the
core's engine, which serves a kept key itself): the
same bytes a fresh answer would be, never stale once the store changes or a
record expires, never for a protocol that serves find_values its own way.
Real UDP on 127.0.0.1 (a raw socket asks), an injected clock for expiry."""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest
from kademlia.node import Node
from kademlia.utils import digest

from dhtquery.dht import DhtNode, DhtProtocol
from dhtquery.dht import protocol as protocol_module
from dhtquery.dht.rpc_table import CLIENT_PAD
from dhtquery.dht.storage import RecordStore
from dhtquery.dht.wire import decode, frame_request, pack_request
from dhtquery.query import QueryConfig, QueryManager, new_core
from dhtquery.testing import FakeClock

from .dht_helpers import RawPeer, open_nodes, run_paired, signed

KEY = digest("packed")


async def _ask(peer: RawPeer, node: DhtNode, key: bytes = KEY) -> dict[str, Any]:
    """One find_values request of ``key`` from ``peer`` (as a client: the
    node answers without pinging it back); the answer's body."""
    body = pack_request("find_values", (os.urandom(20), key))
    peer.send(frame_request(os.urandom(16) + CLIENT_PAD, body), node.address)
    data, _ = await peer.recv()
    kind, _, answer = decode(data)
    assert kind == 1 and isinstance(answer, dict)
    return answer


def _clocked(backend: str, clock: FakeClock) -> dict[str, Any]:
    config = QueryConfig()
    return {"queries": QueryManager(config, core=new_core(backend), clock=clock)}


def test_a_hot_key_is_answered_from_its_packed_answer_with_the_same_bytes(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            record = signed("alice", b"data", KEY)
            node.records.put(KEY, record, node.clock.now())
            peer = await nodes.raw()
            first = await _ask(peer, node)
            assert KEY in protocol.packed_answers
            second = await _ask(peer, node)
            assert first == second == {"records": [record.to_wire()], "nodes": [], "more": False}
            # the bytes kept are what a fresh answer packs to
            fresh = protocol.rpc_find_values(peer.address, os.urandom(20), KEY)
            assert protocol.packed_answers[KEY][2] == msgpack.packb(fresh, use_bin_type=True)

    run_paired(backend, scenario())


def test_a_record_stored_or_expired_is_in_the_next_answer(backend: str) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with open_nodes(backend) as nodes:
            node = await nodes.dht(**_clocked(backend, clock))
            peer = await nodes.raw()
            alice = signed("alice", b"a", KEY)
            node.records.put(KEY, alice, clock.now(), expires=clock.now() + 10.0)
            assert (await _ask(peer, node))["records"] == [alice.to_wire()]
            bob = signed("bob", b"b", KEY)
            node.records.put(KEY, bob, clock.now(), expires=clock.now() + 100.0)
            answer = await _ask(peer, node)
            assert sorted(answer["records"]) == sorted([alice.to_wire(), bob.to_wire()])
            clock.advance(10.0)  # alice's record expires, nothing else changes
            assert (await _ask(peer, node))["records"] == [bob.to_wire()]
            clock.advance(90.0)
            answer = await _ask(peer, node)
            assert answer["records"] == [] and answer["nodes"] == []
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            assert KEY not in protocol.packed_answers

    run_paired(backend, scenario())


def test_an_answer_without_records_is_not_kept(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            protocol.router.add_contact(Node(os.urandom(20), "127.0.0.1", 9))  # to name
            peer = await nodes.raw()
            answer = await _ask(peer, node)
            assert answer["records"] == [] and answer["nodes"]
            assert protocol.packed_answers == {}

    run_paired(backend, scenario())


def test_the_packed_answers_stay_within_their_bound(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol_module, "PACKED_ANSWERS_KEPT", 3)

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            peer = await nodes.raw()
            keys = [digest(f"bound-{index}") for index in range(5)]
            for key in keys:
                node.records.put(key, signed("alice", b"x", key), node.clock.now())
                await _ask(peer, node, key)
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            assert list(protocol.packed_answers) == keys[2:]  # the oldest made left first
            assert protocol.requests.engine.kept_bytes == sum(
                len(e[2]) for e in protocol.packed_answers.values()
            )

    run_paired(backend, scenario())


class _Annotating(DhtProtocol):
    """Serves find_values its own way (as a subclass may)."""

    def rpc_find_values(self, sender: Any, nodeid: bytes, key: bytes) -> dict[str, Any]:
        answer = super().rpc_find_values(sender, nodeid, key)
        answer["more"] = True
        return answer


class _AnnotatingNode(DhtNode):
    protocol_class = _Annotating


def test_a_subclass_serving_find_values_its_way_is_not_bypassed(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht(node_class=_AnnotatingNode)
            node.records.put(KEY, signed("alice", b"data", KEY), node.clock.now())
            peer = await nodes.raw()
            for _ in range(2):
                assert (await _ask(peer, node))["more"] is True
            protocol = node.protocol
            assert isinstance(protocol, _Annotating)
            assert protocol.packed_answers == {}

    run_paired(backend, scenario())


def test_a_kept_answer_is_served_by_the_engine_and_a_peer_still_verified(backend: str) -> None:
    """A find_values of a kept key is answered in the engine's call (no
    Python serving: the counters say so), and a sender that is not a
    client is still welcomed: pinged to verify its id, as before."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            record = signed("alice", b"data", KEY)
            node.records.put(KEY, record, node.clock.now())
            peer = await nodes.raw()
            first = await _ask(peer, node)  # (served in Python: kept)
            assert KEY in protocol.packed_answers
            served, clients = protocol.stats["served"], protocol.stats["client_requests"]
            assert await _ask(peer, node) == first  # from the engine
            assert protocol.stats["served"] == served + 1
            assert protocol.stats["client_requests"] == clients + 1
            assert protocol.stats["verify_pings"] == 0
            sender = os.urandom(20)
            msg_id = os.urandom(16) + b"\x00\x00\x00\x00"  # (no client marker)
            peer.send(
                frame_request(msg_id, pack_request("find_values", (sender, KEY))), node.address
            )
            got = [await peer.recv() for _ in range(2)]
            kinds = sorted((data[:1], data[1:21] == msg_id) for data, _ in got)
            assert kinds == [(b"\x00", False), (b"\x01", True)]  # a ping, and the answer
            answer = next(data for data, _ in got if data[:1] == b"\x01")
            assert decode(answer)[2] == first
            assert protocol.stats["served"] == served + 2
            assert protocol.stats["client_requests"] == clients + 1
            assert protocol.stats["verify_pings"] == 1
            # the same request resent: the same bytes, from the replay cache
            peer.send(
                frame_request(msg_id, pack_request("find_values", (sender, KEY))), node.address
            )
            again, _ = await peer.recv()
            assert again == answer and protocol.stats["replayed"] == 1

    run_paired(backend, scenario())


class _Pong(DhtProtocol):
    """Answers a ping its own way (as a subclass may)."""

    def rpc_ping(self, sender: Any, nodeid: bytes) -> bytes:
        super().rpc_ping(sender, nodeid)
        return b"pong"


class _PongNode(DhtNode):
    protocol_class = _Pong


def test_a_ping_is_answered_by_the_engine_and_its_sender_still_verified(backend: str) -> None:
    """A ping is answered in the engine's call with this node's id, as
    kademlia's rpc_ping answers (no Python serving: _serve is not called),
    a client counted as one, any other sender welcomed (pinged to verify
    its id); a subclass's own rpc_ping is not bypassed."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            served: list[Any] = []
            serve = protocol._serve

            def counted(*request: Any) -> None:
                served.append(request)
                serve(*request)

            protocol._serve = counted  # type: ignore[method-assign]
            peer = await nodes.raw()
            before, clients = protocol.stats["served"], protocol.stats["client_requests"]
            msg_id = os.urandom(16) + CLIENT_PAD
            peer.send(frame_request(msg_id, pack_request("ping", (os.urandom(20),))), node.address)
            data, _ = await peer.recv()
            assert decode(data) == (1, msg_id, node.node.id)
            assert served == []
            assert protocol.stats["served"] == before + 1
            assert protocol.stats["client_requests"] == clients + 1
            msg_id = os.urandom(16) + b"\x00\x00\x00\x00"  # (no client marker)
            peer.send(frame_request(msg_id, pack_request("ping", (os.urandom(20),))), node.address)
            got = [await peer.recv() for _ in range(2)]
            kinds = sorted((data[:1], data[1:21] == msg_id) for data, _ in got)
            assert kinds == [(b"\x00", False), (b"\x01", True)]  # a ping, and the answer
            assert protocol.stats["verify_pings"] == 1 and served == []
            own = await nodes.dht(node_class=_PongNode)
            msg_id = os.urandom(16) + CLIENT_PAD
            peer.send(frame_request(msg_id, pack_request("ping", (os.urandom(20),))), own.address)
            data, _ = await peer.recv()
            assert decode(data)[2] == b"pong"

    run_paired(backend, scenario())


def test_a_record_stored_under_another_key_leaves_a_kept_answer_kept(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            node.records.put(KEY, signed("alice", b"kept", KEY), node.clock.now())
            calls = []
            body = protocol._find_values_body

            def counted(*args: Any) -> bytes:
                calls.append(args)
                return body(*args)

            protocol._find_values_body = counted  # type: ignore[method-assign,assignment]
            peer = await nodes.raw()
            first = await _ask(peer, node)
            other = digest("another key")
            node.records.put(other, signed("bob", b"written", other), node.clock.now())
            assert KEY in protocol.packed_answers
            assert await _ask(peer, node) == first
            assert len(calls) == 1  # (the second answered by the engine)

    run_paired(backend, scenario())


def test_records_set_anew_are_answered_from_and_a_subclass_keeps_nothing(backend: str) -> None:
    class _OwnRecords(RecordStore):
        """A RecordStore subclass (it may store otherwise)."""

    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            node = await nodes.dht()
            protocol = node.protocol
            assert isinstance(protocol, DhtProtocol)
            alice, bob = signed("alice", b"a", KEY), signed("bob", b"b", KEY)
            node.records.put(KEY, alice, node.clock.now())
            peer = await nodes.raw()
            assert (await _ask(peer, node))["records"] == [alice.to_wire()]
            fresh = RecordStore(clock=node.clock)
            fresh.put(KEY, bob, node.clock.now())
            protocol.records = fresh
            assert protocol.packed_answers == {}
            assert (await _ask(peer, node))["records"] == [bob.to_wire()]
            fresh.put(KEY, alice, node.clock.now())  # (the new store's watcher)
            answer = await _ask(peer, node)
            assert sorted(answer["records"]) == sorted([alice.to_wire(), bob.to_wire()])
            own = _OwnRecords(clock=node.clock)
            own.put(KEY, bob, node.clock.now())
            protocol.records = own
            for _ in range(2):
                assert (await _ask(peer, node))["records"] == [bob.to_wire()]
            assert protocol.packed_answers == {}

    run_paired(backend, scenario())

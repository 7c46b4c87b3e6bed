"""The routing table's k closest contacts are the k closest by XOR
distance, whatever the buckets' layout (kademlia 2.2.3's bucket walk stops
early: found at 1,000 nodes by ``dhtquery bench scale``)."""

from __future__ import annotations

import asyncio
import random

from kademlia.node import Node
from kademlia.routing import RoutingTable

from dhtquery.dht.routing import ContactTable


class _Pinger:
    """A protocol stub: a full bucket pings its head, nobody answers."""

    async def call_ping(self, node: Node) -> None:
        return None


def _fill(table: RoutingTable, contacts: list[Node]) -> None:
    async def add() -> None:
        for contact in contacts:
            table.add_contact(contact)
        await asyncio.sleep(0)  # the head pings' tasks end

    asyncio.run(add())


def _closest(table: RoutingTable, target: Node, k: int, exclude: Node | None = None) -> list[Node]:
    every = [node for bucket in table.buckets for node in bucket.get_nodes()]
    kept = [
        n for n in every if n.id != target.id and (exclude is None or not n.same_home_as(exclude))
    ]
    return sorted(kept, key=lambda n: n.long_id ^ target.long_id)[:k]


def _near(rng: random.Random, own: Node, bits: int) -> bytes:
    """An id sharing its first ``bits`` bits with ``own``'s."""
    prefix = own.long_id >> (160 - bits) << (160 - bits)
    value: int = prefix | rng.getrandbits(160 - bits)
    return value.to_bytes(20, "big")


def test_find_neighbors_gives_the_k_closest_where_kademlias_walk_stops_short() -> None:
    # tables shaped as a joined node's: most contacts share a prefix with
    # its own id (those buckets split), a few are far
    rng = random.Random(7)
    short = 0
    for _ in range(20):
        own = Node(rng.randbytes(20))
        contacts = [
            Node(_near(rng, own, rng.randint(0, 12)), "127.0.0.1", 1000 + i) for i in range(60)
        ]
        ours = ContactTable(_Pinger(), 20, own)
        stock = RoutingTable(_Pinger(), 20, own)
        _fill(ours, contacts)
        _fill(stock, contacts)
        for _ in range(50):
            target = Node(rng.randbytes(20))
            expected = _closest(ours, target, 20)
            assert ours.find_neighbors(target) == expected
            short += len(stock.find_neighbors(target)) < len(expected)
    # kademlia's own walk, on the same tables, gives fewer than k for many
    assert short > 100


def test_find_neighbors_leaves_out_the_target_and_the_excluded_address() -> None:
    rng = random.Random(8)
    own = Node(rng.randbytes(20))
    contacts = [Node(rng.randbytes(20), "127.0.0.1", 2000 + i) for i in range(40)]
    table = ContactTable(_Pinger(), 20, own)
    _fill(table, contacts)
    target, excluded = contacts[3], contacts[5]
    found = table.find_neighbors(target, k=8, exclude=excluded)
    assert found == _closest(table, target, 8, exclude=excluded)
    assert target not in found and excluded not in found and len(found) == 8
    # k beyond the table: every contact, closest first
    anywhere = Node(rng.randbytes(20))
    assert table.find_neighbors(anywhere, k=100) == _closest(table, anywhere, 100)
    assert len(table.find_neighbors(anywhere, k=100)) == len(table.contacts()[1])


def test_candidate_addresses_are_the_candidates_ids_and_addresses_until_a_change() -> None:
    rng = random.Random(3)
    own = Node(rng.randbytes(20))
    table = ContactTable(_Pinger(), 20, own)
    _fill(table, [Node(rng.randbytes(20), "127.0.0.1", 1000 + i) for i in range(30)])
    nodes = table.candidates()[1]
    ids, addresses = table.candidate_addresses()
    assert ids == [node.id for node in nodes]
    assert addresses == [(node.ip, node.port) for node in nodes]
    assert table.candidate_addresses()[0] is ids  # (kept between changes)
    table.remove_contact(nodes[0])
    assert nodes[0].id not in table.candidate_addresses()[0]


class _Snapshot:
    """A stand-in Candidates: what it was made from."""

    def __init__(self, ids: list[bytes], addresses: list[tuple[str, int]]) -> None:
        self.ids = list(ids)
        self.addresses = list(addresses)


class _OtherSnapshot(_Snapshot):
    pass


def test_lookup_candidates_are_made_once_until_a_change_and_never_stale() -> None:
    rng = random.Random(4)
    own = Node(rng.randbytes(20))
    table = ContactTable(_Pinger(), 20, own)
    _fill(table, [Node(rng.randbytes(20), "127.0.0.1", 1000 + i) for i in range(30)])
    first = table.lookup_candidates(_Snapshot)
    assert (first.ids, first.addresses) == table.candidate_addresses()
    assert table.lookup_candidates(_Snapshot) is first  # (kept between changes)
    # a change of each kind: the next lookup gets the table as it is now
    gone = table.candidates()[1][0]
    table.remove_contact(gone)
    assert table.snapshot is None  # (what a lookup's start reads in place)
    after_remove = table.lookup_candidates(_Snapshot)
    assert after_remove is not first and gone.id not in after_remove.ids
    newcomer = Node(rng.randbytes(20), "127.0.0.1", 3000)
    _fill(table, [newcomer])
    after_add = table.lookup_candidates(_Snapshot)
    assert newcomer.id in after_add.ids and after_add is not after_remove
    moved = Node(newcomer.id, "127.0.0.2", 3001)  # (a known id at a new address)
    _fill(table, [moved])
    after_move = table.lookup_candidates(_Snapshot)
    assert after_move.addresses[after_move.ids.index(newcomer.id)] == ("127.0.0.2", 3001)
    table.flush()
    assert table.lookup_candidates(_Snapshot) is not after_move
    # another maker (another backend's Candidates) gets its own
    other = table.lookup_candidates(_OtherSnapshot)
    assert type(other) is _OtherSnapshot
    assert (other.ids, other.addresses) == table.candidate_addresses()

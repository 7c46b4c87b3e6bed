"""kademlia's routing table, with its contacts kept as one list between
changes.

Every lookup ranks all contacts by XOR distance to its key. Walking the
buckets to gather them, and re-reading each node's id as an int, cost more
per lookup than the ranking itself; the table changes far less often than it
is read, so the list is rebuilt only after a change.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any, TypeVar

from kademlia.node import Node
from kademlia.routing import RoutingTable

__all__ = ["ContactTable"]

_Snapshot = TypeVar("_Snapshot")


class ContactTable(RoutingTable):  # type: ignore[misc]
    def __init__(self, protocol: Any, ksize: int, node: Node) -> None:
        self._contacts: tuple[list[int], list[Node]] | None = None
        self._candidates: tuple[list[int], list[Node]] | None = None
        self._candidate_addresses: tuple[list[bytes], list[tuple[str, int]]] | None = None
        #: what lookup_candidates() made last, None after a change (read in
        #: place by each lookup's start: no call while the table is
        #: unchanged)
        self.snapshot: Any = None
        #: the contacts' ids, or None after a change (``known_ids``): read
        #: in place by the core's DatagramEngine.receive_batch, which sends
        #: an answer to a known node itself (nothing to welcome)
        self.ids: set[bytes] | None = None
        #: ids of bucket heads being pinged because their bucket is full
        self._pinging: set[bytes] = set()
        super().__init__(protocol, ksize, node)

    def contacts(self) -> tuple[list[int], list[Node]]:
        """Every contact's id as an int, and the contacts (same order).
        The lists are shared until the table changes: do not modify them."""
        contacts = self._contacts
        if contacts is None:
            nodes = [node for bucket in self.buckets for node in bucket.nodes.values()]
            contacts = self._contacts = ([node.long_id for node in nodes], nodes)
        return contacts

    def known_ids(self) -> set[bytes]:
        """The contacts' ids (``is_new_node`` is False for these, True for
        any other); shared until the table changes: do not modify it."""
        ids = self.ids
        if ids is None:
            ids = self.ids = {node.id for node in self.contacts()[1]}
        return ids

    def candidates(self) -> tuple[list[int], list[Node]]:
        """``contacts()`` and the buckets' replacement caches: every peer
        that answered this node lately, whether or not its bucket had room
        (kademlia keeps up to 5 k of them per full bucket, to promote when
        a contact dies). Where a lookup starts: answers to others name
        table contacts only (``find_neighbors``), which the table keeps
        checked; a lookup that asks a replacement gone dead asks the next
        candidate at its RTO.

        Measured in ``dhtquery bench scale`` (1,000 nodes): a client whose
        lookups started from its table alone sent every lookup's first
        requests to the few fast contacts among the same 20 or so closest
        of a bucket (a far bucket covers a large share of all keys), the
        busiest nodes' load. Started from the replacements too, the
        closest candidates differ key by key, and are peers of measured
        round trip close to the key. Shared until the table changes: do
        not modify them."""
        candidates = self._candidates
        if candidates is None:
            # (by id: a node can be in both, kademlia's add_node adding to a
            # bucket with room without taking it out of the replacements)
            unique: dict[bytes, Node] = {}
            for bucket in self.buckets:
                unique.update(bucket.nodes)
                for node_id, node in bucket.replacement_nodes.items():
                    unique.setdefault(node_id, node)
            nodes = list(unique.values())
            candidates = self._candidates = ([node.long_id for node in nodes], nodes)
        return candidates

    def candidate_addresses(self) -> tuple[list[bytes], list[tuple[str, int]]]:
        """``candidates()`` as a lookup's core reads them: their ids and
        their (host, port) addresses, in the same order. Shared until the
        table changes: do not modify them."""
        pairs = self._candidate_addresses
        if pairs is None:
            nodes = self.candidates()[1]
            pairs = self._candidate_addresses = (
                [node.id for node in nodes],
                [(node.ip, node.port) for node in nodes],
            )
        return pairs

    def lookup_candidates(
        self, make: Callable[[list[bytes], list[tuple[str, int]]], _Snapshot]
    ) -> _Snapshot:
        """``candidate_addresses()`` as ``make`` (the lookup core's
        ``Candidates``) reads them, made once until the table changes:
        every lookup starts from them, and the table changes rarely
        against thousands of lookups. A snapshot of the table as it was
        is never handed out after a change (``snapshot``, the last made, is
        None then). ``make``: a class (the kind of snapshot kept is told
        by its type)."""
        snapshot = self.snapshot
        if type(snapshot) is make:
            return snapshot  # type: ignore[no-any-return]
        made = self.snapshot = make(*self.candidate_addresses())
        return made

    def find_neighbors(
        self, node: Node, k: int | None = None, exclude: Node | None = None
    ) -> list[Node]:
        """The ``k`` (default ksize) contacts closest to ``node`` by XOR
        distance, closest first; ``node`` itself and any contact at
        ``exclude``'s address left out.

        kademlia's walks the buckets outwards from ``node``'s and its walk
        ends as soon as no bucket is left on the right, though some are left
        on the left (``TableTraverser``): measured in ``dhtquery bench
        scale`` (1,000 nodes, tables of 23 to 80 contacts), 30 of 80 random
        keys got fewer than k contacts, often 1 to 3 and twice none, so
        ``put`` stored on the publisher alone and find_node answers were
        short. This one ranks every contact."""
        k = k or self.ksize
        # a lookup in a bucket's range counts for kademlia's refresh of
        # idle buckets, as the traversal's first bucket did
        self.buckets[self.get_bucket_for(node)].touch_last_updated()
        target = node.long_id
        long_ids, nodes = self.contacts()
        ranked = heapq.nsmallest(
            k,
            (
                (long_id ^ target, contact)
                for long_id, contact in zip(long_ids, nodes, strict=True)
                if long_id != target and (exclude is None or not contact.same_home_as(exclude))
            ),
            key=_distance,
        )
        return [contact for _, contact in ranked]

    # Every change of the buckets' contents goes through one of these. An
    # add of a known contact can carry a new address: it invalidates too.

    def flush(self) -> None:
        self._contacts = self._candidates = self._candidate_addresses = self.snapshot = None
        self.ids = None
        super().flush()

    def split_bucket(self, index: int) -> None:
        self._contacts = self._candidates = self._candidate_addresses = self.snapshot = None
        self.ids = None
        super().split_bucket(index)

    def add_contact(self, node: Node) -> None:
        """kademlia's add_contact, but a full bucket pings its head once at
        a time: stock makes a ping Task per newcomer to a full bucket, so a
        flood of new ids made a flood of Tasks."""
        self._contacts = self._candidates = self._candidate_addresses = self.snapshot = None
        self.ids = None
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        if bucket.add_node(node):
            return
        if bucket.has_in_range(self.node) or bucket.depth() % 5 != 0:
            self.split_bucket(index)
            self.add_contact(node)
            return
        head = bucket.head()
        if head.id in self._pinging:
            return
        self._pinging.add(head.id)
        task = asyncio.ensure_future(self.protocol.call_ping(head))
        task.add_done_callback(lambda _: self._pinging.discard(head.id))

    def remove_contact(self, node: Node) -> None:
        self._contacts = self._candidates = self._candidate_addresses = self.snapshot = None
        self.ids = None
        super().remove_contact(node)

    def remove_address(self, address: tuple[str, int]) -> bool:
        """Take the peer at ``address`` out of the table, its replacement
        caches included (a dead replacement would be a lookup's candidate);
        True if it was a contact (not only a replacement)."""
        found = False
        for bucket in self.buckets:
            for node in [*bucket.nodes.values(), *bucket.replacement_nodes.values()]:
                if (node.ip, node.port) == address:
                    found = found or node.id in bucket.nodes
                    self.remove_contact(node)
        return found


def _distance(entry: tuple[int, Node]) -> int:
    return entry[0]

"""The streaming lookup behind ``DhtNode.get_all``.

An iterative Kademlia lookup that keeps ``alpha`` requests in flight at all
times (kademlia's crawler waits for a whole round before the next), and
offers every record to the query the moment its datagram arrives. It stops
when the query completes (``max_results``), once ``quorum`` holders have
answered with their records (``all_peers``), when the k closest peers have
all answered or failed (``all_peers``, or ``adaptive`` if some were given up
after their RTO), or at the deadline (``timeout``).

Peers are asked closest first; among peers equally close (the same XOR
distance bucket) the best-scored first.
"""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING, Any

from kademlia.node import Node

from ..handle import QueryHandle
from ..manager import QueryManager
from .records import Record, RecordError, from_wire_cached
from .requests import BAD_RESPONSE

if TYPE_CHECKING:
    from .protocol import DhtProtocol

__all__ = ["StreamingLookup"]


class StreamingLookup:
    __slots__ = (
        "_alpha",
        "_answered_cb",
        "_asked",
        "_core",
        "_distance",
        "_failed_by_rto",
        "_handle",
        "_holders",
        "_in_flight",
        "_key",
        "_ksize",
        "_manager",
        "_nodes",
        "_now",
        "_protocol",
        "_quorum",
        "_ranked",
        "_rpc_timeout",
        "_target",
    )

    def __init__(
        self,
        protocol: DhtProtocol,
        manager: QueryManager,
        handle: QueryHandle,
        key: bytes,
        *,
        alpha: int,
        ksize: int,
        quorum: int,
        rpc_timeout: float | None,
    ) -> None:
        self._protocol = protocol
        self._manager = manager
        # peer_done straight into the core: with expected_peers 0 it only
        # counts the outcome's peers_ok / peers_failed, never completes.
        self._core = manager._core
        self._handle = handle
        self._key = key
        self._target = Node(key)
        self._alpha = alpha
        self._ksize = ksize
        self._quorum = quorum
        # None: each peer's RTO (adaptive); else the query's whole timeout
        self._rpc_timeout = rpc_timeout
        self._nodes: dict[bytes, Node] = {}
        self._answered_cb = self._answered
        self._distance: dict[bytes, int] = {}
        self._ranked: list[bytes] | None = None
        self._now = time.time()
        self._asked: set[bytes] = set()
        self._in_flight = 0
        self._holders = 0
        self._failed_by_rto = False

    def start(self, local: list[Record], own_address: Any) -> None:
        if local:
            # This node holds the key too: it counts towards the quorum.
            self._holders += 1
            self._offer(own_address, [(record.dedup_key, record) for record in local], credit=False)
        if self._handle.done():
            return
        if self._holders >= self._quorum:
            self._manager.finish(self._handle.id, "all_peers")
            return
        target = self._target.long_id
        router = self._protocol.router
        known = [
            (node.long_id ^ target, node)
            for bucket in router.buckets
            for node in bucket.nodes.values()
        ]
        # kademlia's find_neighbors walks the table bucket by bucket; the
        # table is small, so ranking all of it at once is cheaper. Distances
        # are distinct (so are ids): the nodes themselves are never compared.
        closest = heapq.nsmallest(self._ksize, known)
        self._nodes = {node.id: node for _, node in closest}
        self._distance = {node.id: distance for distance, node in closest}
        self._ranked = [node.id for _, node in closest]
        self._fill()

    # -- choosing whom to ask -----------------------------------------

    def _add(self, node: Node) -> None:
        distance = node.long_id ^ self._target.long_id
        self._nodes[node.id] = node
        self._distance[node.id] = distance
        self._ranked = None

    def _drop_id(self, node_id: bytes) -> None:
        self._nodes.pop(node_id, None)
        self._distance.pop(node_id, None)
        self._ranked = None

    def _fill(self) -> None:
        if self._handle.done():
            return
        # Requests in flight that may each bring a holder count towards the
        # quorum: asking more before they answer only adds traffic.
        count = min(self._alpha, max(self._quorum - self._holders, 1)) - self._in_flight
        if count <= 0:  # (so some are in flight)
            return
        ranked = self._ranked
        if ranked is None:
            # the k closest, closest first
            ranked = self._ranked = heapq.nsmallest(
                self._ksize, self._distance, key=self._distance.__getitem__
            )
        asked = self._asked
        fresh = [node_id for node_id in ranked if node_id not in asked]
        if not fresh:
            if self._in_flight == 0:
                reason = "adaptive" if self._failed_by_rto else "all_peers"
                self._manager.finish(self._handle.id, reason)
            return
        for node_id in self._best_of(fresh, count):
            self._ask(self._nodes[node_id])

    def _best_of(self, fresh: list[bytes], count: int) -> list[bytes]:
        """The ``count`` to ask among ``fresh`` (closest first): closest
        bucket (XOR distance's bit length) first and, within the bucket at
        the cut, the best-scored. Scores are computed for that bucket only."""
        if len(fresh) <= count:
            return fresh
        distance = self._distance
        cut = distance[fresh[count - 1]].bit_length()
        sure = [node_id for node_id in fresh[:count] if distance[node_id].bit_length() < cut]
        tied = [node_id for node_id in fresh if distance[node_id].bit_length() == cut]
        if len(tied) > 1:
            reputation = self._protocol.reputation
            now = self._now
            nodes = self._nodes
            tied.sort(
                key=lambda node_id: (
                    -reputation.score((nodes[node_id].ip, nodes[node_id].port), now),
                    distance[node_id],
                )
            )
        return sure + tied[: count - len(sure)]

    def _ask(self, node: Node) -> None:
        protocol = self._protocol
        address = (node.ip, node.port)
        node_id = node.id
        self._asked.add(node_id)
        self._in_flight += 1
        name = "find_value" if protocol.extensions.get(address) is False else "find_values"
        protocol.request_callback(
            address,
            name,
            (protocol.source_node.id, self._key),
            self._rpc_timeout,
            self._answered_cb,
            node_id,
        )

    # -- answers ------------------------------------------------------

    def _answered(self, node_id: bytes, address: Any, name: str, ok: bool, value: Any) -> None:
        self._in_flight -= 1
        if not ok:
            if value is BAD_RESPONSE:
                # Malformed (the protocol counted it as bad_response): the
                # peer failed, though not by its RTO.
                self._drop_id(node_id)
                self._core.peer_done(self._handle.id, address, False)
            elif name == "find_values" and self._protocol.extensions.get(address) is False:
                # A stock peer: ask it again the way it understands.
                self._asked.discard(node_id)
            else:
                self._failed_by_rto = self._failed_by_rto or self._rpc_timeout is None
                self._drop_id(node_id)
                self._core.peer_done(self._handle.id, address, False)
            self._fill()
            return
        handle = self._handle
        if handle.done():
            return
        if type(value) is dict and name == "find_values":
            # the common answer, read inline
            records = self._records(value, address)
            contacts = value.get("nodes", ())
        else:
            records, contacts = self._read(name, value, address)
        if contacts:
            own_id = self._protocol.source_node.id
            nodes = self._nodes
            asked = self._asked
            for contact_id, host, port in contacts:
                if contact_id not in nodes and contact_id not in asked and contact_id != own_id:
                    self._add(Node(contact_id, host, port))
        if records:
            self._holders += 1
            self._offer(address, records)
        self._core.peer_done(handle.id, address, True)
        if self._holders >= self._quorum and not handle.done():
            self._manager.finish(handle.id, "all_peers")
            return
        self._fill()

    def _read(
        self, name: str, value: Any, address: Any
    ) -> tuple[list[tuple[bytes, Record]], list[Any]]:
        """Records (each checked) and contacts from a response."""
        if type(value) is list:  # find_node-style answer: only contacts
            return [], value
        if type(value) is not dict:
            return [], []
        if name == "find_value":
            plain = value.get("value")
            if isinstance(plain, bytes):
                plain_record = self._legacy_record(plain, address)
                if plain_record is None:
                    return [], []
                return [(plain_record.dedup_key, plain_record)], []
            return [], []
        return self._records(value, address), value.get("nodes", [])

    def _records(self, value: dict[str, Any], address: Any) -> list[tuple[bytes, Record]]:
        """The records of a find_values answer, each checked, with their
        dedup keys."""
        records = []
        for raw in value.get("records", ()):
            try:
                records.append(from_wire_cached(raw))
            except RecordError:
                protocol = self._protocol
                protocol._drop("bad_record")
                protocol.reputation.failure(address)
        return records

    def _legacy_record(self, data: bytes, address: Any) -> Record | None:
        try:
            return Record.create("kademlia", data)
        except RecordError:
            return None

    def _offer(self, peer: Any, records: list[tuple[bytes, Record]], credit: bool = True) -> None:
        if credit:
            self._protocol.reputation.provided(peer, len(records))
        self._manager.submit_many(self._handle.id, peer, records)

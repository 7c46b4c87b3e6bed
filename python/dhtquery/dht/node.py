"""DhtNode: a kademlia ``Server`` on dhtquery's protocol, with multi-record
keys and streaming lookups into a QueryManager.

``listen``, ``bootstrap``, ``stop``, ``get`` and ``set`` keep kademlia's
meaning (and interoperate with stock kademlia 2.2.3 nodes). New:
``await node.put(key, data)`` stores one record per publisher under a key,
and ``node.get_all(key)`` returns a QueryHandle that streams every
publisher's record as holders answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from kademlia.crawling import NodeSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.utils import digest

from ..config import QueryConfig
from ..errors import InvalidArgumentError, InvalidArgumentTypeError
from ..handle import QueryHandle
from ..manager import QueryManager
from .lookup import StreamingLookup
from .protocol import DhtProtocol, RpcSpec
from .records import Record
from .storage import PlainStorage, RecordStore, StorageFull, StoreLimits

__all__ = ["DhtNode"]

log = logging.getLogger("dhtquery.dht")


class DhtNode(Server):  # type: ignore[misc]
    protocol_class = DhtProtocol

    def __init__(
        self,
        ksize: int = 20,
        alpha: int = 3,
        node_id: bytes | None = None,
        storage: Any = None,
        *,
        config: QueryConfig | None = None,
        backend: str = "auto",
        limits: StoreLimits | None = None,
    ) -> None:
        limits = limits or StoreLimits()
        super().__init__(ksize, alpha, node_id, storage or PlainStorage(limits))
        self.config = config or QueryConfig()
        self.backend = backend
        self.records = RecordStore(limits)
        #: lookups (get_all) run as queries of this manager: its metrics are
        #: the node's query metrics.
        self.queries = QueryManager(self.config, backend=backend)
        self.protocol: DhtProtocol | None = None
        self._extra_rpcs: dict[str, RpcSpec] = {}

    def _create_protocol(self) -> DhtProtocol:
        return self.protocol_class(
            self.node,
            self.storage,
            self.ksize,
            records=self.records,
            config=self.config,
            backend=self.backend,
            extra_rpcs=self._extra_rpcs,
        )

    def add_rpc(self, name: str, spec: RpcSpec) -> None:
        """Serve an extension RPC (see :class:`RpcSpec`), now and after any
        later ``listen``. Stock kademlia peers do not answer these."""
        if self.protocol is not None:
            self.protocol.add_rpc(name, spec)
        self._extra_rpcs[name] = spec

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) this node listens on."""
        if self.transport is None:
            raise RuntimeError("the node is not listening: call listen() first")
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def publisher(self) -> str:
        """The default publisher name of this node's records."""
        return str(self.node.id.hex())

    def stop(self) -> None:
        self.queries.close()
        super().stop()

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters of the node's transport: datagrams served, dropped (by
        kind: short, bad_kind, malformed, bad_utf8, oversize_request,
        unknown_rpc, bad_args, bad_request, wrong_address, unknown_id,
        late_response, bad_response, bad_record, ...), timeouts."""
        return dict(self._protocol().stats)

    @property
    def drops(self) -> Mapping[str, int]:
        """Datagrams dropped, by kind only (``stats`` has them too, among
        other counters)."""
        return dict(self._protocol().drops)

    def _protocol(self) -> DhtProtocol:
        if self.protocol is None:
            raise RuntimeError("the node is not listening: call listen() first")
        return self.protocol

    # -- records ------------------------------------------------------

    async def put(
        self, key: str | bytes, data: bytes, *, publisher: str | None = None, name: str = ""
    ) -> int:
        """Store ``data`` as ``publisher``'s record (default: this node's id)
        under ``key`` on the k closest nodes, this one included if it is
        among them; a key holds one record per publisher and ``name``.
        Returns how many nodes hold it (a node whose store is full, this one
        included, refuses and is not counted)."""
        protocol = self._protocol()
        record = Record.create(publisher or self.publisher, _check_bytes("data", data), name)
        dkey = digest(_check_key(key))
        target = Node(dkey)
        nearest = protocol.router.find_neighbors(target)
        stored = 0
        if nearest:
            spider = NodeSpiderCrawl(protocol, target, nearest, self.ksize, self.alpha)
            nodes = await spider.find()
        else:
            nodes = []
        if len(nodes) < self.ksize or self.node.distance_to(target) < max(
            n.distance_to(target) for n in nodes
        ):
            # Among the k closest (fewer than k nodes means all of them).
            # A full store here refuses as a full peer does: not stored.
            try:
                self.records.put(dkey, record, time.monotonic())
                stored += 1
            except StorageFull as exc:
                protocol.stats["store_refused"] += 1
                log.debug("kept no local copy of %s: %s", dkey.hex(), exc)
        replies = await asyncio.gather(
            *(protocol.call_store_record(node, dkey, record) for node in nodes)
        )
        stored += sum(1 for ok, value in replies if ok and value is True)
        return stored

    def get_all(
        self,
        key: str | bytes,
        *,
        max_results: int | None = None,
        timeout: float | None = None,
        quorum: int | None = None,
    ) -> QueryHandle:
        """Look up every record stored under ``key``. Await the handle for the
        QueryOutcome (items are :class:`Record`), or ``async for`` the
        records as they arrive. ``quorum`` (default: the config's
        ``fan_out``) holders answering with their records end the lookup."""
        protocol = self._protocol()
        quorum = self.config.fan_out if quorum is None else quorum
        if isinstance(quorum, bool) or not isinstance(quorum, int):
            raise InvalidArgumentTypeError(f"quorum must be an int, got {type(quorum).__name__}")
        if quorum < 1:
            raise InvalidArgumentError(f"quorum must be >= 1, got {quorum!r}")
        dkey = digest(_check_key(key))
        timeout = self.config.default_timeout if timeout is None else timeout
        handle = self.queries.start(expected_peers=0, timeout=timeout, max_results=max_results)
        lookup = StreamingLookup(
            protocol,
            self.queries,
            handle,
            dkey,
            alpha=self.alpha,
            ksize=self.ksize,
            quorum=quorum,
            rpc_timeout=None if self.config.adaptive_timeout else timeout,
        )
        local = self.records.get(dkey, time.monotonic())
        # (the address is read from the socket: only when it is needed)
        lookup.start(local, self.address if local else None)
        return handle


def _check_key(key: object) -> str | bytes:
    if not isinstance(key, str | bytes):
        raise InvalidArgumentTypeError(f"key must be str or bytes, got {type(key).__name__}")
    return key


def _check_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidArgumentTypeError(f"{name} must be bytes, got {type(value).__name__}")
    return value

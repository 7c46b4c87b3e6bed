"""P2PRegistry: the package marketplace on the DHT.

- ``publish(package)`` stores the package's record under its package key and
  under one key per tag, and announces it by gossip: a node forwards an
  announcement it has not seen to ``fan_out`` peers (preferring peers the
  announcement does not list as already told; a peer that answers it had
  seen it is replaced by the next one, up to ``fan_out`` times), with a hop
  limit; receivers add it to ``discovered_packages`` and to their searchable
  catalog.
- ``search(query)`` merges, through one QueryHandle, the local catalog's
  matches, the ``search`` RPC answers of the ``fan_out`` best-scored peers,
  and lookups of the query's tag keys; de-duplicates by PackageId (the
  highest version wins); then applies ``offset`` and ``limit``.
  ``search_stream`` yields packages as they arrive.
- ``get_package(id)`` streams the package key's records from its holders and
  returns the highest valid version.
- Anti-entropy (:mod:`.antientropy`) runs under the gossip: every
  ``anti_entropy_period`` seconds a node pulls what its catalog lacks from a
  random peer, so catalogs converge even when announcements are lost. It
  starts with the registry and stops with the node (or ``close()``).
- The catalog holds at most ``max_packages`` (see :mod:`.catalog` for the
  eviction rule); this node's own publications are never evicted.
- A node with a data directory keeps its catalog in its database (the
  ``catalog`` table of ``DhtNode.table``): one row per package id, written
  as the catalog changes, restored (oldest arrival first, each record
  checked again, the cap applied) when a registry starts on the node.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from ..dht import DhtNode, Gossip, KeyValueTable, RecordError, RpcSpec
from ..errors import InvalidArgumentTypeError, SchemaError
from ..query import QueryConfig, QueryHandle, QueryMetrics, QueryOutcome, QueryResult, Reason
from .antientropy import DEFAULT_PERIOD, AntiEntropy
from .catalog import DEFAULT_MAX_PACKAGES, Catalog, entry_hash
from .model import Package, PackageId, Query, matches_query

__all__ = ["P2PRegistry", "highest_versions", "package_key", "tag_key"]

log = logging.getLogger("dhtquery.registry")

Address = tuple[str, int]
#: Packages one ``search`` answer carries at most (so it fits a datagram).
MAX_SEARCH_ANSWER: Final = 30
#: Decoded package records remembered by their bytes.
DECODED_KEPT: Final = 4096
#: Addresses remembered per discovered package.
PROVIDERS_KEPT: Final = 16
#: The node's table the catalog is kept in, and a row's first byte.
CATALOG_TABLE: Final = "catalog"
_PINNED: Final = b"P"
_HEARD: Final = b"-"


def package_key(package_id: PackageId) -> str:
    return f"pkg:{package_id}"


def tag_key(tag: str) -> str:
    return f"tag:{tag}"


def _is_query_map(value: Any) -> bool:
    return type(value) is dict


def _is_search_answer(value: Any) -> bool:
    return type(value) is dict and type(value.get("results")) is list


class P2PRegistry:
    """The marketplace on one DhtNode. Metrics of every search and
    get_package are the node's query metrics (``registry.metrics``).

    ``anti_entropy_period``: seconds between reconciliation rounds (None:
    serve the peers' rounds, run none); ``max_packages``: the catalog's
    cap."""

    def __init__(
        self,
        node: DhtNode,
        config: QueryConfig | None = None,
        *,
        anti_entropy_period: float | None = DEFAULT_PERIOD,
        max_packages: int = DEFAULT_MAX_PACKAGES,
    ) -> None:
        if not isinstance(node, DhtNode):
            raise InvalidArgumentTypeError(f"node must be a DhtNode, got {type(node).__name__}")
        self.node = node
        self.config = config or node.config
        self.catalog = Catalog(max_packages, on_evict=self._evicted)
        #: PackageId -> addresses of the nodes that announced it (or served
        #: it to anti-entropy), at most PROVIDERS_KEPT each
        self.discovered_packages: dict[PackageId, set[Address]] = {}
        self._decoded: OrderedDict[bytes, Package] = OrderedDict()
        #: where the catalog is kept across restarts (None: memory only)
        self._kept: KeyValueTable | None = node.table(CATALOG_TABLE)
        if self._kept is not None:
            self._restore(self._kept)
        #: package announcements travel by gossip
        self.gossip = Gossip(node, self._announced, fan_out=self.config.fan_out)
        node.add_rpc("search", RpcSpec((_is_query_map,), self._rpc_search, _is_search_answer))
        #: what the gossip lost, catalogs pull from each other
        self.anti_entropy = AntiEntropy(
            node, self.catalog, self._reconciled, period=anti_entropy_period
        )
        node.on_stop(self.anti_entropy.stop)
        self.anti_entropy.start()

    def close(self) -> None:
        """Stop anti-entropy (the node's ``stop()`` does it too)."""
        self.anti_entropy.stop()

    async def aclose(self) -> None:
        """``close()``, and wait for a round in progress to end."""
        await self.anti_entropy.aclose()

    @property
    def metrics(self) -> QueryMetrics:
        return self.node.queries.metrics

    @property
    def stats(self) -> dict[str, int]:
        """Announcements published, forwarded, and seen twice."""
        return dict(self.gossip.stats)

    # -- publishing ---------------------------------------------------

    async def publish(self, package: Package) -> int:
        """Store and announce ``package``; returns how many nodes hold its
        package record."""
        if not isinstance(package, Package):
            raise InvalidArgumentTypeError(
                f"package must be a Package, got {type(package).__name__}"
            )
        self._keep(package, self.catalog.add(package, pin=True), pin=True)
        data = package.encode()
        stores = [self.node.put(package_key(package.id), data)]
        stores += [self.node.put(tag_key(tag), data, name=str(package.id)) for tag in package.tags]
        held, *_ = await asyncio.gather(*stores)
        self.gossip.publish(data)
        return int(held)

    def _announced(self, sender: Address, data: bytes) -> bool:
        """A package announcement reached this node: catalog it (and let
        the gossip forward it), or refuse a record that breaks the schema."""
        try:
            package = self._decode(data)
        except SchemaError:
            self._penalize(sender)
            return False
        self._catalogued(sender, package)
        return True

    def _reconciled(self, sender: Address, data: bytes, asked: frozenset[bytes]) -> bool:
        """A record anti-entropy fetched from ``sender``: catalog it, or
        refuse (and penalise) a bad one or one that was not asked for."""
        try:
            package = self._decode(data)
        except SchemaError:
            self._penalize(sender)
            return False
        if entry_hash(package) not in asked:
            self._penalize(sender)
            return False
        self._catalogued(sender, package)
        return True

    def _catalogued(self, sender: Address, package: Package) -> None:
        self._keep(package, self.catalog.add(package))
        if package.id in self.catalog:
            providers = self.discovered_packages.setdefault(package.id, set())
            if len(providers) < PROVIDERS_KEPT:
                providers.add(sender)

    def _evicted(self, package: Package) -> None:
        self.discovered_packages.pop(package.id, None)
        if self._kept is not None:
            self._kept.delete(str(package.id).encode())

    # -- the catalog across restarts ----------------------------------

    def _keep(self, package: Package, changed: bool, *, pin: bool = False) -> None:
        """Write the catalog's entry for ``package``'s id to the node's
        database if it changed (or was just pinned)."""
        kept = self._kept
        if kept is None or not (changed or pin):
            return
        held = self.catalog.get(package.id)
        if held is not None:
            flag = _PINNED if pin or self.catalog.pinned(package.id) else _HEARD
            kept.put(str(held.id).encode(), flag + held.encode())

    def _restore(self, kept: KeyValueTable) -> None:
        """The catalog as it was kept, oldest arrival first, so the cap
        evicts what it would have evicted; a row that no longer passes the
        schema is dropped from the file."""
        for key, value in kept.items():
            try:
                package = Package.decode(value[1:])
                if str(package.id).encode() != key:
                    raise SchemaError("catalog row", f"holds {package.id}, not {key!r:.80}")
            except SchemaError as exc:
                log.warning("dropped a bad catalog row: %s", exc)
                kept.delete(key)
                continue
            # (no write back: the row is there, and rewriting it would move
            # it to the end of the arrival order)
            self.catalog.add(package, pin=value[:1] == _PINNED)
        if len(self.catalog):
            log.info("catalog restored: %d packages", len(self.catalog))

    def _decode(self, data: bytes) -> Package:
        """Package.decode, remembered by the record's bytes: the same record
        comes from every peer that holds it, and checking it (schema, sha256,
        semver) costs more than looking it up."""
        package = self._decoded.get(data)
        if package is None:
            package = Package.decode(data)
            self._decoded[data] = package
            if len(self._decoded) > DECODED_KEPT:
                self._decoded.popitem(last=False)
        return package

    def _penalize(self, peer: Any) -> None:
        self.node.reputation.failure(peer)
        if self.node.listening:
            self.node.count("bad_package")

    # -- serving search -----------------------------------------------

    def _rpc_search(self, sender: Address, query_map: dict[str, Any]) -> dict[str, Any]:
        try:
            query = _query_from_wire(query_map)
        except SchemaError as exc:
            return {"results": [], "more": False, "error": str(exc)}
        wanted = min(query.offset + query.limit, MAX_SEARCH_ANSWER)
        found = self.catalog.search(query, limit=wanted + 1)
        return {
            "results": [package.encode() for package in found[:wanted]],
            "more": len(found) > wanted,
        }

    # -- searching ----------------------------------------------------

    def _start_search(self, query: Query, timeout: float | None) -> QueryHandle:
        if not isinstance(query, Query):
            raise InvalidArgumentTypeError(f"query must be a Query, got {type(query).__name__}")
        node = self.node
        candidates = [(n.ip, n.port) for n in node.neighbors()]
        candidates = [a for a in candidates if node.supports_extensions(a) is not False]
        peers: list[Address] = node.reputation.best(  # type: ignore[assignment]
            candidates, self.config.fan_out, node.clock.now()
        )
        sources = len(peers) + len(query.tags)
        wanted = query.offset + query.limit
        manager = node.queries
        handle = manager.start(
            expected_peers=sources,
            timeout=self.config.default_timeout if timeout is None else timeout,
            # versions of one package count once each: leave room for them
            max_results=min(wanted * 2, 100_000),
        )
        local = self.catalog.search(query, limit=wanted)
        if local:
            manager.submit_many(handle.id, node.address, _entries(local))
        if sources == 0:
            manager.finish(handle.id, Reason.ALL_PEERS)
            return handle
        query_map = _query_to_wire(query)
        for peer in peers:
            future = node.request(peer, "search", (query_map,))
            future.add_done_callback(functools.partial(self._searched, handle, peer))
        for tag in query.tags:
            lookup = node.get_all(tag_key(tag), timeout=timeout)
            lookup.add_done_callback(functools.partial(self._tag_looked_up, handle, query, tag))
        return handle

    def _searched(self, handle: QueryHandle, peer: Address, done: asyncio.Future[Any]) -> None:
        manager = self.node.queries
        ok, answer = done.result()
        if not ok or handle.done():
            manager.peer_finished(handle.id, peer, ok=ok)
            return
        packages = []
        for data in answer["results"]:
            try:
                packages.append(self._decode(data))
            except (SchemaError, TypeError):
                self._penalize(peer)
        if packages:
            manager.submit_many(handle.id, peer, _entries(packages))
        manager.peer_finished(handle.id, peer, ok=True)

    def _tag_looked_up(
        self, handle: QueryHandle, query: Query, tag: str, outcome: QueryOutcome
    ) -> None:
        manager = self.node.queries
        if handle.done():
            return
        for result in outcome.results:
            package = self._package_of(result)
            if package is not None and matches_query(package, query):
                manager.submit(handle.id, result.peer, _key(package), package)
                if handle.done():
                    return
        manager.peer_finished(handle.id, ("tag", tag), ok=not outcome.timed_out)

    def _package_of(self, result: QueryResult) -> Package | None:
        try:
            return self._decode(result.item.data)
        except (SchemaError, RecordError):
            self._penalize(result.peer)
            return None

    async def search(self, query: Query, *, timeout: float | None = None) -> list[Package]:
        """Merged, de-duplicated (highest version per id) results, then
        ``query.offset`` and ``query.limit``; local matches come first."""
        return self.packages_of(query, await self.search_outcome(query, timeout=timeout))

    async def search_outcome(self, query: Query, *, timeout: float | None = None) -> QueryOutcome:
        """The whole outcome of a search: every result with the peer that
        answered it, the reason it ended, its duration. ``packages_of``
        turns it into what ``search`` returns."""
        return await self._start_search(query, timeout)

    @staticmethod
    def packages_of(query: Query, outcome: QueryOutcome) -> list[Package]:
        best = highest_versions(outcome.results)
        return [result.item for result in best[query.offset : query.offset + query.limit]]

    async def search_stream(
        self, query: Query, *, timeout: float | None = None
    ) -> AsyncIterator[Package]:
        """Packages as they arrive: each id once, and again whenever a higher
        version of it arrives. (``offset`` and ``limit`` are ``search``'s.)"""
        handle = self._start_search(query, timeout)
        shown: dict[PackageId, Package] = {}
        try:
            async for result in handle:
                package: Package = result.item
                held = shown.get(package.id)
                if held is None or package.version > held.version:
                    shown[package.id] = package
                    yield package
        finally:
            if not handle.done():
                handle.cancel()

    async def get_package(
        self, package_id: PackageId, *, timeout: float | None = None
    ) -> Package | None:
        """The highest valid version of ``package_id`` its holders serve."""
        if not isinstance(package_id, PackageId):
            raise InvalidArgumentTypeError(
                f"package_id must be a PackageId, got {type(package_id).__name__}"
            )
        outcome = await self.node.get_all(package_key(package_id), timeout=timeout)
        best: Package | None = None
        for result in outcome.results:
            package = self._package_of(result)
            if (
                package is not None
                and package.id == package_id
                and (best is None or package.version > best.version)
            ):
                best = package
        return best


def _key(package: Package) -> str:
    return f"{package.id}@{package.version}"


def _entries(packages: Iterable[Package]) -> list[tuple[str, Package]]:
    return [(_key(package), package) for package in packages]


def highest_versions(results: Iterable[QueryResult]) -> list[QueryResult]:
    """One result per package id, the one with the highest version, in
    order of first arrival: what a search or get_package shows of the
    packages its peers sent (``result.item`` is a Package)."""
    best: dict[PackageId, QueryResult] = {}
    for result in results:
        package: Package = result.item
        held = best.get(package.id)
        if held is None or package.version > held.item.version:
            best[package.id] = result
    return list(best.values())


def _query_to_wire(query: Query) -> dict[str, Any]:
    return {
        "text": query.text,
        "categories": list(query.categories),
        "tags": list(query.tags),
        "limit": query.limit,
        "offset": query.offset,
    }


def _query_from_wire(value: dict[str, Any]) -> Query:
    try:
        return Query(
            value.get("text", ""),
            tuple(value.get("categories", ())),
            tuple(value.get("tags", ())),
            value.get("limit", 20),
            value.get("offset", 0),
        )
    except TypeError as exc:
        raise SchemaError("query", str(exc)) from None

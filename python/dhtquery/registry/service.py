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
  eviction rule), and at most ``max_per_publisher`` from any one key; this
  node's own publications are never evicted.

**Signed packages.** Every package travels as a record signed by its
publisher's key (see :mod:`dhtquery.dht.records`): the package key's
record (slot: key, name ""), the tag keys' records (name: the package id),
the announcement (the package key's record itself) and the answers to
``search`` and ``ae_fetch``. Before anything enters a catalog or reaches a
caller, its signature, its slot (the key it was signed for) and its
namespace's owner in the :class:`~.trust.TrustStore` are checked. What
fails is counted by kind in the node's ``drops`` (``bad_signature``,
``wrong_slot``, ``stale_sequence``, ``expired``, ``bad_record``,
``bad_package``, ``namespace_conflict``, ``namespace_unpinned``) and
dropped; a peer that served it in answer to our own request loses
reputation, a sender of an unsolicited announcement does not (its source
address proves nothing). Publishing also stores a signed claim record of
the namespace (``ns:<namespace>``, name ``claim``), which ``claims()``
lists. Results carry ``package.publisher`` (the key, hex) and
``package.pinned``.
- A node with a data directory keeps its catalog in its database (the
  ``catalog`` table of ``DhtNode.table``): one row per package id, its
  signed record, written as the catalog changes, restored (oldest arrival
  first, each record checked again, signature and owner included, the
  caps applied) when a registry starts on the node.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from typing import Any, Final

import msgpack
from kademlia.utils import digest

from ..dht import (
    DhtNode,
    Gossip,
    KeyValueTable,
    Publisher,
    Record,
    RecordError,
    RpcSpec,
    latest,
)
from ..errors import InvalidArgumentError, InvalidArgumentTypeError, SchemaError, TrustError
from ..query import QueryConfig, QueryHandle, QueryMetrics, QueryOutcome, QueryResult
from .antientropy import DEFAULT_PERIOD, AntiEntropy
from .catalog import DEFAULT_MAX_PACKAGES, Catalog, entry_hash
from .fanout import SearchFanOut
from .model import Package, PackageId, Query, matches_query
from .trust import NamespaceConflict, TrustStore, Verdict

__all__ = [
    "CLAIM_NAME",
    "DEFAULT_MAX_PER_PUBLISHER",
    "REGISTRY_DROP_KINDS",
    "P2PRegistry",
    "claim_key",
    "highest_versions",
    "package_key",
    "tag_key",
]

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
#: Catalog entries one publisher key may hold in a catalog by default.
DEFAULT_MAX_PER_PUBLISHER: Final = 1000
#: Namespace conflicts remembered (``P2PRegistry.conflicts``).
CONFLICTS_KEPT: Final = 256
#: The name of a namespace claim record, under ``claim_key(namespace)``.
CLAIM_NAME: Final = "claim"
#: What the registry counts in its node's ``drops`` besides the node's own
#: kinds (``dhtquery.dht.DROP_KINDS``): packages refused.
REGISTRY_DROP_KINDS: Final = (
    "bad_package",
    "namespace_conflict",
    "namespace_unpinned",
    "publisher_cap",
)


def package_key(package_id: PackageId) -> str:
    return f"pkg:{package_id}"


def tag_key(tag: str) -> str:
    return f"tag:{tag}"


def claim_key(namespace: str) -> str:
    return f"ns:{namespace}"


def _pack(record: Record) -> bytes:
    return bytes(msgpack.packb(record.to_wire(), use_bin_type=True))


# (the digests of keys a node checks records against, again and again)
@functools.lru_cache(maxsize=65_536)
def _package_digest(package_id: PackageId) -> bytes:
    return bytes(digest(package_key(package_id)))


@functools.lru_cache(maxsize=65_536)
def _tag_digest(tag: str) -> bytes:
    return bytes(digest(tag_key(tag)))


def _is_query_map(value: Any) -> bool:
    return type(value) is dict


def _is_search_answer(value: Any) -> bool:
    return type(value) is dict and type(value.get("results")) is list


class P2PRegistry:
    """The marketplace on one DhtNode. Metrics of every search and
    get_package are the node's query metrics (``registry.metrics``).

    ``anti_entropy_period``: seconds between reconciliation rounds (None:
    serve the peers' rounds, run none); ``max_packages``: the catalog's
    cap; ``max_per_publisher``: the cap of entries from one key; ``trust``:
    whom each namespace belongs to (default: a store in memory, trust on
    first use)."""

    def __init__(
        self,
        node: DhtNode,
        config: QueryConfig | None = None,
        *,
        anti_entropy_period: float | None = DEFAULT_PERIOD,
        max_packages: int = DEFAULT_MAX_PACKAGES,
        max_per_publisher: int = DEFAULT_MAX_PER_PUBLISHER,
        trust: TrustStore | None = None,
    ) -> None:
        if not isinstance(node, DhtNode):
            raise InvalidArgumentTypeError(f"node must be a DhtNode, got {type(node).__name__}")
        if (
            isinstance(max_per_publisher, bool)
            or not isinstance(max_per_publisher, int)
            or max_per_publisher < 1
        ):
            raise InvalidArgumentError(
                f"max_per_publisher must be an int >= 1, got {max_per_publisher!r}"
            )
        if trust is not None and not isinstance(trust, TrustStore):
            raise InvalidArgumentTypeError(
                f"trust must be a TrustStore, got {type(trust).__name__}"
            )
        self.node = node
        self.config = config or node.config
        self.trust = TrustStore() if trust is None else trust
        self.trust.on_conflict(self._conflict)
        self.max_per_publisher = max_per_publisher
        #: catalog entries per publisher key (hex)
        self.per_publisher: Counter[str] = Counter()
        #: the latest namespace conflicts (a second key publishing into a
        #: namespace another key owns), oldest first
        self.conflicts: deque[NamespaceConflict] = deque(maxlen=CONFLICTS_KEPT)
        self._conflict_listeners: list[Callable[[NamespaceConflict], object]] = []
        self._claimed: set[tuple[str, bytes]] = set()
        self.catalog = Catalog(max_packages, on_evict=self._evicted)
        #: PackageId -> addresses of the nodes that announced it (or served
        #: it to anti-entropy), at most PROVIDERS_KEPT each
        self.discovered_packages: dict[PackageId, set[Address]] = {}
        #: signed record (msgpack) -> (record, package), checked but for trust
        self._decoded: OrderedDict[bytes, tuple[Record, Package]] = OrderedDict()
        #: signed record (msgpack) -> (package vetted, the trust store's
        #: version then): while no owner changes, a record is vetted once
        self._vetted: OrderedDict[bytes, tuple[Package, int]] = OrderedDict()
        #: the same for the records lookups bring, by (signature, tag)
        self._vetted_records: OrderedDict[tuple[bytes, str | None], tuple[Package, int]] = (
            OrderedDict()
        )
        #: record data -> package, for the records lookups bring
        self._packages_by_data: OrderedDict[bytes, Package] = OrderedDict()
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

    # -- trust ---------------------------------------------------------

    def on_conflict(self, listener: Callable[[NamespaceConflict], object]) -> None:
        """Call ``listener(conflict)`` whenever a key other than a
        namespace's owner is seen publishing into it (the package is
        refused either way)."""
        self._conflict_listeners.append(listener)

    def _conflict(self, conflict: NamespaceConflict) -> None:
        self.conflicts.append(conflict)
        log.warning("dhtquery: %s", conflict)
        if self.node.listening:
            self.node.count("namespace_conflict", dropped=True)
        for listener in self._conflict_listeners:
            try:
                listener(conflict)
            except Exception:  # a listener's bug must not stop the registry
                log.exception("dhtquery: error in a namespace conflict listener")

    # -- publishing ---------------------------------------------------

    async def publish(self, package: Package, *, publisher: Publisher | None = None) -> int:
        """Sign ``package`` with ``publisher`` (default: the node's identity),
        store it and announce it; returns how many nodes hold its package
        record. TrustError if its namespace belongs to another key in this
        registry's trust store."""
        if not isinstance(package, Package):
            raise InvalidArgumentTypeError(
                f"package must be a Package, got {type(package).__name__}"
            )
        node = self.node
        signer = node.identity if publisher is None else publisher
        if not isinstance(signer, Publisher):
            raise InvalidArgumentTypeError(
                f"publisher must be a Publisher, got {type(signer).__name__}"
            )
        namespace = package.id.namespace
        verdict = self.trust.claim_own(namespace, signer.public_key)
        data = package.encode()
        seq = package.sequence
        record = node.sign(package_key(package.id), data, publisher=signer, seq=seq)
        packed = _pack(record)
        self._add(package.attested(signer.key_id, packed, verdict is Verdict.PINNED), pin=True)
        stores = [node.put_record(record)]
        stores += [
            node.put(tag_key(tag), data, publisher=signer, name=str(package.id), seq=seq)
            for tag in package.tags
        ]
        if (namespace, signer.public_key) not in self._claimed:
            stores.append(self.claim(namespace, signer))
        held, *_ = await asyncio.gather(*stores)
        self.gossip.publish(packed)
        return int(held)

    def add_local(self, package: Package, *, publisher: Publisher | None = None) -> Package:
        """Sign ``package`` with ``publisher`` (default: the node's identity)
        and keep it in this node's catalog only: no store, no announcement
        (searches and anti-entropy serve it). Returns the package as
        catalogued; TrustError as ``publish``."""
        node = self.node
        signer = node.identity if publisher is None else publisher
        if not isinstance(signer, Publisher):
            raise InvalidArgumentTypeError(
                f"publisher must be a Publisher, got {type(signer).__name__}"
            )
        verdict = self.trust.claim_own(package.id.namespace, signer.public_key)
        record = node.sign(
            package_key(package.id), package.encode(), publisher=signer, seq=package.sequence
        )
        attested = package.attested(signer.key_id, _pack(record), verdict is Verdict.PINNED)
        self._add(attested, pin=True)
        return attested

    async def claim(self, namespace: str, publisher: Publisher) -> int:
        """Store ``publisher``'s signed claim of ``namespace`` (``publish``
        does it with a namespace's first package); returns how many nodes
        hold it."""
        data = msgpack.packb({"namespace": namespace}, use_bin_type=True)
        held = await self.node.put(claim_key(namespace), data, publisher=publisher, name=CLAIM_NAME)
        self._claimed.add((namespace, publisher.public_key))
        return held

    async def claims(self, namespace: str, *, timeout: float | None = None) -> list[str]:
        """The keys (hex) whose signed claim of ``namespace`` the DHT holds."""
        outcome = await self.node.get_all(claim_key(namespace), timeout=timeout)
        keys = []
        for record in latest(outcome.items):
            try:
                claimed = msgpack.unpackb(record.data, raw=False)
            except (ValueError, TypeError, msgpack.ExtraData):
                continue
            if (
                record.signed
                and record.name == CLAIM_NAME
                and isinstance(claimed, dict)
                and claimed.get("namespace") == namespace
            ):
                keys.append(record.publisher)
        return keys

    # -- receiving signed packages --------------------------------------

    def _read(self, data: Any) -> tuple[Record, Package]:
        """The record and package of a signed package record (msgpack
        bytes): signature checked, package decoded; RecordError or
        SchemaError if not. Remembered by its bytes (every peer serves the
        same record)."""
        if type(data) is not bytes:
            raise RecordError(f"a signed record must be bytes, got {type(data).__name__}")
        hit = self._decoded.get(data)
        if hit is not None:
            return hit
        try:
            raw = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise RecordError(f"record is not msgpack: {exc}") from None
        if type(raw) is not list or len(raw) < 2:
            raise RecordError(f"record must be an array, got {type(raw).__name__}")
        record = self.node.verifier.from_wire(raw, raw[1])
        entry = self._decoded[data] = (record, Package.decode(record.data))
        if len(self._decoded) > DECODED_KEPT:
            self._decoded.popitem(last=False)
        return entry

    def _package_in(self, record: Record) -> Package:
        """The package a record (verified by the lookup) carries, decoded
        once per distinct data (every holder serves the same)."""
        held = self._packages_by_data.get(record.data)
        if held is None:
            held = self._packages_by_data[record.data] = Package.decode(record.data)
            if len(self._packages_by_data) > DECODED_KEPT:
                self._packages_by_data.popitem(last=False)
        return held

    def _vet(self, record: Record, package: Package, *, tag: str | None = None) -> Package:
        """``package`` (from ``record``, whose signature was checked) with
        its provenance, if ``record`` sits in the package's slot (its
        package key with name "", or tag ``tag``'s key with the package id
        as name) and its key owns the package's namespace; RecordError
        (wrong_slot) or TrustError if not."""
        if tag is None:
            slot_ok = record.target == _package_digest(package.id) and record.name == ""
        else:
            slot_ok = record.target == _tag_digest(tag) and record.name == str(package.id)
        if not slot_ok:
            raise RecordError(
                f"record of {package.id} signed for another key or name ({record.name!r:.40})",
                "wrong_slot",
            )
        namespace = package.id.namespace
        verdict = self.trust.check(namespace, record.public_key)
        if not verdict.accepted:
            if verdict is Verdict.UNPINNED and self.node.listening:
                self.node.count("namespace_unpinned", dropped=True)
            raise TrustError(
                f"namespace {namespace!r}: key {record.publisher[:16]}... is "
                f"{verdict.value} (strict={self.trust.strict})"
            )
        if package.publisher == record.publisher and package.pinned == (verdict is Verdict.PINNED):
            return package
        packed = _pack(record) if tag is None else b""
        return package.attested(record.publisher, packed, verdict is Verdict.PINNED)

    def _receive(self, data: Any) -> Package:
        """A signed package record as msgpack bytes (an announcement, a
        search answer, an anti-entropy fetch), checked in full."""
        try:
            hit = self._vetted.get(data)
        except TypeError:  # (unhashable: _read says what it is)
            hit = None
        version = self.trust.version
        if hit is not None and hit[1] == version:
            return hit[0]
        record, package = self._read(data)
        vetted = self._vet(record, package)
        self._vetted[data] = (vetted, self.trust.version)
        if len(self._vetted) > DECODED_KEPT:
            self._vetted.popitem(last=False)
        return vetted

    def _refused(self, exc: Exception, peer: Hashable | None) -> None:
        """Count what was refused by kind; ``peer``: it answered our own
        request with it, and loses reputation (a trust refusal is no fault
        of the peer's: it was counted already)."""
        if isinstance(exc, TrustError):
            return
        kind = exc.kind if isinstance(exc, RecordError) else "bad_package"
        node = self.node
        if node.listening:
            node.count(kind, dropped=True)
        if peer is not None:
            node.reputation.invalid(peer)

    def _announced(self, sender: Address, data: bytes) -> bool:
        """A package announcement reached this node: catalog it (and let
        the gossip forward it), or refuse one that fails its checks (the
        sender's address is not penalised: it proves nothing)."""
        try:
            package = self._receive(data)
        except (RecordError, SchemaError, TrustError) as exc:
            self._refused(exc, None)
            return False
        return self._catalogued(sender, package)

    def _reconciled(self, sender: Address, data: bytes, asked: frozenset[bytes]) -> bool:
        """A record anti-entropy fetched from ``sender``: catalog it, or
        refuse (and penalise) a bad one or one that was not asked for. One
        whose namespace belongs to another key here is skipped, not held
        against the peer."""
        try:
            record, package = self._read(data)
        except (RecordError, SchemaError) as exc:
            self._refused(exc, sender)
            return False
        if entry_hash(package) not in asked:
            self._refused(RecordError("a record not asked for"), sender)
            return False
        try:
            package = self._vet(record, package)
        except TrustError:
            self.catalog.refuse(entry_hash(package))
            return True
        except RecordError as exc:
            self._refused(exc, sender)
            return False
        self._catalogued(sender, package)
        return True

    def _add(self, package: Package, *, pin: bool = False) -> bool:
        """Catalog ``package`` within the per-publisher cap."""
        held = self.catalog.get(package.id)
        counts = self.per_publisher
        if not pin and held is None and counts[package.publisher] >= self.max_per_publisher:
            if self.node.listening:
                self.node.count("publisher_cap", dropped=True)
            return False
        changed = self.catalog.add(package, pin=pin)
        self._keep(package, changed, pin=pin)
        if not changed:
            return False
        if held is not None:
            self._uncount(held)
        counts[package.publisher] += 1
        return True

    def _uncount(self, package: Package) -> None:
        counts = self.per_publisher
        left = counts[package.publisher] - 1
        if left > 0:
            counts[package.publisher] = left
        else:
            del counts[package.publisher]

    def _catalogued(self, sender: Address, package: Package) -> bool:
        if not self._add(package) and self.catalog.get(package.id) is None:
            return False
        if package.id in self.catalog:
            providers = self.discovered_packages.setdefault(package.id, set())
            if len(providers) < PROVIDERS_KEPT:
                providers.add(sender)
        return True

    def _evicted(self, package: Package) -> None:
        self.discovered_packages.pop(package.id, None)
        if package.publisher in self.per_publisher:
            self._uncount(package)
        if self._kept is not None:
            self._kept.delete(str(package.id).encode())

    # -- the catalog across restarts ----------------------------------

    def _keep(self, package: Package, changed: bool, *, pin: bool = False) -> None:
        """Write the catalog's entry for ``package``'s id (its signed record)
        to the node's database if it changed (or was just pinned)."""
        kept = self._kept
        if kept is None or not (changed or pin):
            return
        held = self.catalog.get(package.id)
        if held is not None and held.record:
            flag = _PINNED if pin or self.catalog.pinned(package.id) else _HEARD
            kept.put(str(held.id).encode(), flag + held.record)

    def _restore(self, kept: KeyValueTable) -> None:
        """The catalog as it was kept, oldest arrival first, so the cap
        evicts what it would have evicted; a row that no longer passes its
        checks (signature, slot, namespace owner, schema) is dropped from
        the file."""
        for key, value in kept.items():
            try:
                package = self._receive(value[1:])
                if str(package.id).encode() != key:
                    raise SchemaError("catalog row", f"holds {package.id}, not {key!r:.80}")
            except (RecordError, SchemaError, TrustError) as exc:
                log.warning("dropped a bad catalog row: %s", exc)
                kept.delete(key)
                continue
            # (no write back: the row is there, and rewriting it would move
            # it to the end of the arrival order)
            pin = value[:1] == _PINNED
            held = self.catalog.get(package.id)
            if self.catalog.add(package, pin=pin):
                if held is not None:
                    self._uncount(held)
                self.per_publisher[package.publisher] += 1
        if len(self.catalog):
            log.info("catalog restored: %d packages", len(self.catalog))

    def _local_entry(self, package_id: PackageId) -> Package | None:
        """The catalog's entry for ``package_id``, unless its namespace
        belongs to another key now."""
        held = self.catalog.get(package_id)
        if held is None or not held.publisher:
            return held
        owner = self.trust.owner(package_id.namespace)
        if owner is not None and owner.key.hex() != held.publisher:
            return None
        return held

    def _shown(self, package: Package) -> Package:
        """``package`` as results show it: ``pinned`` as the trust store
        says now."""
        pinned = bool(package.publisher) and self.trust.is_pinned(
            package.id.namespace, bytes.fromhex(package.publisher)
        )
        if pinned == package.pinned:
            return package
        return package.attested(package.publisher, package.record, pinned)

    # -- serving search -----------------------------------------------

    def _rpc_search(self, sender: Address, query_map: dict[str, Any]) -> dict[str, Any]:
        try:
            query = _query_from_wire(query_map)
        except SchemaError as exc:
            return {"results": [], "more": False, "error": str(exc)}
        wanted = min(query.offset + query.limit, MAX_SEARCH_ANSWER)
        # (entries with no signed record, put into the catalog by hand, are
        # this node's alone: never served)
        found = [p for p in self.catalog.search(query, limit=wanted + 1) if p.record]
        return {
            "results": [package.record for package in found[:wanted]],
            "more": len(found) > wanted,
        }

    # -- searching ----------------------------------------------------

    def _start_search(self, query: Query, timeout: float | None) -> QueryHandle:
        if not isinstance(query, Query):
            raise InvalidArgumentTypeError(f"query must be a Query, got {type(query).__name__}")
        node = self.node
        candidates = [(n.ip, n.port) for n in node.neighbors()]
        candidates = [a for a in candidates if node.supports_extensions(a) is not False]
        # every candidate, best first: the first fan_out are asked, the next
        # ones replace a peer that is late or fails
        ranked: list[Address] = node.reputation.best(  # type: ignore[assignment]
            candidates, len(candidates), node.clock.now()
        )
        wanted = query.offset + query.limit
        manager = node.queries
        budget = self.config.default_timeout if timeout is None else timeout
        handle = manager.start(
            # (0: the fan-out ends the query, see SearchFanOut)
            expected_peers=0,
            timeout=budget,
            # versions of one package count once each: leave room for them
            max_results=min(wanted * 2, 100_000),
        )
        local = [self._shown(p) for p in self.catalog.search(query, limit=wanted)]
        if local:
            manager.submit_many(handle.id, node.address, _entries(local))
        if handle.done():
            return handle
        fan_out = SearchFanOut(
            node,
            handle,
            _query_to_wire(query),
            ranked,
            fan_out=self.config.fan_out,
            timeout=budget,
            on_answer=functools.partial(self._searched, handle),
            on_tag=functools.partial(self._tag_looked_up, handle, query),
        )
        fan_out.start({tag: tag_key(tag) for tag in query.tags}, timeout)
        return handle

    def _searched(self, handle: QueryHandle, peer: Address, answer: Any) -> None:
        packages = []
        for data in answer["results"]:
            try:
                packages.append(self._receive(data))
            except (RecordError, SchemaError, TrustError) as exc:
                self._refused(exc, peer)
        if packages:
            self.node.queries.submit_many(handle.id, peer, _entries(packages))

    def _tag_looked_up(
        self, handle: QueryHandle, query: Query, tag: str, outcome: QueryOutcome
    ) -> None:
        manager = self.node.queries
        for result in outcome.results:
            package = self._package_of(result, tag)
            if package is not None and matches_query(package, query):
                manager.submit(handle.id, result.peer, _key(package), package)
                if handle.done():
                    return
        manager.peer_finished(handle.id, ("tag", tag), ok=not outcome.timed_out)

    def _package_of(self, result: QueryResult, tag: str | None = None) -> Package | None:
        """The package of a record a lookup returned (its signature and key
        already checked by the node), vetted: slot and namespace owner."""
        record: Record = result.item
        if not record.signed:  # a stock peer's plain value
            return None
        # (vetted once per record and tag while no namespace owner changes)
        cache_key = (record.signature, tag)
        hit = self._vetted_records.get(cache_key)
        if hit is not None and hit[1] == self.trust.version:
            return hit[0]
        try:
            vetted = self._vet(record, self._package_in(record), tag=tag)
        except (SchemaError, RecordError, TrustError) as exc:
            self._refused(exc, result.peer)
            return None
        self._vetted_records[cache_key] = (vetted, self.trust.version)
        if len(self._vetted_records) > DECODED_KEPT:
            self._vetted_records.popitem(last=False)
        return vetted

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
        """The highest valid version of ``package_id`` among the signed
        records its holders serve and this node's catalog entry (which came
        in a signed record too, checked the same way)."""
        if not isinstance(package_id, PackageId):
            raise InvalidArgumentTypeError(
                f"package_id must be a PackageId, got {type(package_id).__name__}"
            )
        outcome = await self.node.get_all(package_key(package_id), timeout=timeout)
        best = self._local_entry(package_id)
        # (a holder serving an older record of a slot was counted and
        # penalised by the lookup; only each slot's latest counts here)
        current = {id(record) for record in latest(outcome.items)}
        for result in outcome.results:
            if id(result.item) not in current:
                continue
            package = self._package_of(result)
            if (
                package is not None
                and package.id == package_id
                and (best is None or package.version > best.version)
            ):
                best = package
        return None if best is None else self._shown(best)


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

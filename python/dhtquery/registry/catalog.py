"""Catalog: the packages a node knows, with an inverted index so a search is
answered from the postings of its words, tags and categories instead of a
scan of every package.

One entry per PackageId: the highest version seen wins (between two records
of one id that compare equal, different build metadata say, the higher
content hash wins, so every catalog picks the same one).

**Digest.** Each entry's hash is the first ``HASH_SIZE`` bytes of its
content hash (which covers id and version); entries fall into
``DIGEST_BUCKETS`` buckets by a hash of their id; a bucket's digest is the
XOR of its entries' hashes, and ``root`` the XOR of them all, kept up to
date on every change. Two catalogs with equal roots (and sizes) hold the
same entries; the buckets whose digests differ are where they differ. This
is what anti-entropy compares.

**Cap and eviction.** At most ``max_packages`` entries. Adding a new id to a
full catalog evicts the entry announced longest ago (the oldest arrival; a
newer version of a package counts as a new arrival), so a flood of
announcements cannot grow a catalog without bound: it can only push old
entries out, which anti-entropy brings back from peers that still hold
them. Pinned entries (the node's own publications) are never evicted; they
count towards the cap.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final

from ..errors import InvalidArgumentError
from .model import Package, PackageId, Query, package_words

__all__ = [
    "DEFAULT_MAX_PACKAGES",
    "DIGEST_BUCKETS",
    "HASH_SIZE",
    "Catalog",
    "bucket_of",
    "entry_hash",
]

#: Entries a catalog holds by default.
DEFAULT_MAX_PACKAGES: Final = 100_000
#: Buckets of the digest (by the first byte of a hash of the package id).
DIGEST_BUCKETS: Final = 256
#: Bytes of an entry's hash and of a bucket's digest.
HASH_SIZE: Final = 8
#: Hashes of records known to be older than what the catalog holds.
_SUPERSEDED_KEPT: Final = 8192


def entry_hash(package: Package) -> bytes:
    """The entry's hash in the digest: the head of its content hash."""
    return bytes.fromhex(package.content_hash[: 2 * HASH_SIZE])


def bucket_of(package_id: PackageId) -> int:
    """The digest bucket of ``package_id``."""
    return hashlib.sha256(str(package_id).encode()).digest()[0] % DIGEST_BUCKETS


def _rank(package: Package) -> tuple[object, str]:
    return package.version, package.content_hash


class Catalog:
    """``max_packages``: the cap; ``on_evict(package)`` is told of every
    entry evicted to make room."""

    def __init__(
        self,
        max_packages: int = DEFAULT_MAX_PACKAGES,
        *,
        on_evict: Callable[[Package], object] | None = None,
    ) -> None:
        if isinstance(max_packages, bool) or not isinstance(max_packages, int) or max_packages < 1:
            raise InvalidArgumentError(f"max_packages must be an int >= 1, got {max_packages!r}")
        self.max_packages = max_packages
        self._on_evict = on_evict
        #: in order of arrival (oldest first): the eviction order
        self._packages: dict[PackageId, Package] = {}
        self._pinned: set[PackageId] = set()
        # postings: token / "#tag" / "@category" -> ids
        self._index: dict[str, set[PackageId]] = {}
        self._buckets: list[dict[bytes, PackageId]] = [{} for _ in range(DIGEST_BUCKETS)]
        self._bucket_digest = [0] * DIGEST_BUCKETS
        self._root = 0
        self._by_hash: dict[bytes, PackageId] = {}
        self._superseded: OrderedDict[bytes, None] = OrderedDict()
        #: entries evicted to make room
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._packages)

    def __contains__(self, package_id: object) -> bool:
        return package_id in self._packages

    def __iter__(self) -> Iterator[Package]:
        return iter(list(self._packages.values()))

    def get(self, package_id: PackageId) -> Package | None:
        return self._packages.get(package_id)

    def pinned(self, package_id: PackageId) -> bool:
        """Whether ``package_id`` is never evicted (this node published it)."""
        return package_id in self._pinned

    def add(self, package: Package, *, pin: bool = False) -> bool:
        """Keep ``package`` unless a version as high is already held; True
        if the catalog changed. ``pin``: never evict this id (what the
        node publishes itself)."""
        if pin:
            self._pinned.add(package.id)
        held = self._packages.get(package.id)
        if held is not None:
            if _rank(held) >= _rank(package):
                if held.content_hash != package.content_hash:
                    self._supersede(entry_hash(package))
                return False
            self._remove(held)
            self._supersede(entry_hash(held))
        elif len(self._packages) >= self.max_packages and not self._evict_one() and not pin:
            return False
        self._packages[package.id] = package
        for term in self._terms(package):
            self._index.setdefault(term, set()).add(package.id)
        self._toggle(package)
        return True

    def _remove(self, package: Package) -> None:
        del self._packages[package.id]
        self._unindex(package)
        self._toggle(package)

    def _toggle(self, package: Package) -> None:
        """Put ``package``'s hash into the digest, or take it out."""
        digest = entry_hash(package)
        bucket = bucket_of(package.id)
        value = int.from_bytes(digest, "big")
        self._bucket_digest[bucket] ^= value
        self._root ^= value
        entries = self._buckets[bucket]
        if entries.pop(digest, None) is None:
            entries[digest] = package.id
            self._by_hash[digest] = package.id
        else:
            self._by_hash.pop(digest, None)

    def _evict_one(self) -> bool:
        """Make room: drop the oldest entry not pinned. False if every
        entry is pinned (the new one is then refused)."""
        for package_id, package in self._packages.items():
            if package_id not in self._pinned:
                self._remove(package)
                self.evicted += 1
                if self._on_evict is not None:
                    self._on_evict(package)
                return True
        return False

    def _supersede(self, digest: bytes) -> None:
        self._superseded[digest] = None
        self._superseded.move_to_end(digest)
        if len(self._superseded) > _SUPERSEDED_KEPT:
            self._superseded.popitem(last=False)

    # -- the digest ---------------------------------------------------

    @property
    def root(self) -> bytes:
        """The XOR of every entry's hash."""
        return self._root.to_bytes(HASH_SIZE, "big")

    def bucket_digests(self) -> bytes:
        """Every bucket's digest, ``HASH_SIZE`` bytes each, in bucket order."""
        return b"".join(value.to_bytes(HASH_SIZE, "big") for value in self._bucket_digest)

    def bucket_hashes(self, bucket: int) -> list[bytes]:
        """The hashes of the entries in ``bucket``, sorted."""
        return sorted(self._buckets[bucket])

    def by_hash(self, digest: bytes) -> Package | None:
        """The entry whose hash is ``digest``."""
        package_id = self._by_hash.get(digest)
        return None if package_id is None else self._packages.get(package_id)

    def refuse(self, digest: bytes) -> None:
        """Remember the record with hash ``digest`` as one not to fetch (its
        namespace belongs to another key here, say)."""
        self._supersede(digest)

    def knows(self, digest: bytes) -> bool:
        """Whether the record with hash ``digest`` is held, or known to be
        older than (or to lose to) what is held."""
        return digest in self._by_hash or digest in self._superseded

    def _unindex(self, package: Package) -> None:
        for term in self._terms(package):
            postings = self._index.get(term)
            if postings is not None:
                postings.discard(package.id)
                if not postings:
                    del self._index[term]

    @staticmethod
    def _terms(package: Package) -> set[str]:
        terms = set(package_words(package))
        terms.update(f"#{tag}" for tag in package.tags)
        terms.update(f"@{category}" for category in package.categories)
        return terms

    def _candidates(self, query: Query) -> set[PackageId] | None:
        """Ids that may match, from the postings; None means every package."""
        narrowing: list[set[PackageId]] = []
        if query.tags:
            narrowing.append(set().union(*(self._index.get(f"#{t}", ()) for t in query.tags)))
        if query.categories:
            narrowing.append(set().union(*(self._index.get(f"@{c}", ()) for c in query.categories)))
        for word in query.words:
            narrowing.append(self._index.get(word, set()))
        if not narrowing:
            return None
        narrowing.sort(key=len)
        result = set(narrowing[0])
        for postings in narrowing[1:]:
            result &= postings
        return result

    def search(self, query: Query, limit: int | None = None) -> list[Package]:
        """Matching packages, ordered by id; at most ``limit`` (default: all).
        Offset and limit of the query itself are the caller's to apply after
        merging with other sources.

        The postings answer exactly what ``matches_query`` asks (words: all
        of them; tags, categories: any of them), so no package is checked
        again; and only the ``limit`` first ids are sorted out."""
        candidates = self._candidates(query)
        ids = self._packages.keys() if candidates is None else candidates
        if limit is None or limit >= len(ids):
            chosen = sorted(ids, key=_id_order)
        else:
            chosen = heapq.nsmallest(limit, ids, key=_id_order)
        return [self._packages[package_id] for package_id in chosen]


def _id_order(package_id: PackageId) -> tuple[str, str]:
    # a plain tuple compares in C; the dataclass's ordering would not
    return package_id.namespace, package_id.name

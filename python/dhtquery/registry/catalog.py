"""Catalog: the packages a node knows, with an inverted index so a search is
answered from the postings of its words, tags and categories instead of a
scan of every package.

One entry per PackageId: the highest version seen wins.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from .model import Package, PackageId, Query, package_words

__all__ = ["Catalog"]


class Catalog:
    def __init__(self) -> None:
        self._packages: dict[PackageId, Package] = {}
        # postings: token / "#tag" / "@category" -> ids
        self._index: dict[str, set[PackageId]] = {}

    def __len__(self) -> int:
        return len(self._packages)

    def __contains__(self, package_id: object) -> bool:
        return package_id in self._packages

    def __iter__(self) -> Iterator[Package]:
        return iter(list(self._packages.values()))

    def get(self, package_id: PackageId) -> Package | None:
        return self._packages.get(package_id)

    def add(self, package: Package) -> bool:
        """Keep ``package`` unless a version as high is already held; True
        if the catalog changed."""
        held = self._packages.get(package.id)
        if held is not None:
            if held.version >= package.version:
                return False
            self._unindex(held)
        self._packages[package.id] = package
        for term in self._terms(package):
            self._index.setdefault(term, set()).add(package.id)
        return True

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

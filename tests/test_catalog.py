"""Catalog: highest version wins; the inverted index answers exactly what a
scan with matches_query would."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from dhtquery.errors import InvalidArgumentError
from dhtquery.registry.catalog import DIGEST_BUCKETS, HASH_SIZE, Catalog, bucket_of, entry_hash
from dhtquery.registry.model import Package, PackageId, Query, matches_query

WORDS = ["fast", "http", "client", "database", "driver", "async", "parser", "json", "tool"]
TAGS = ["http", "sql", "async", "cli", "json"]
CATEGORIES = ["web", "database", "cli", "data"]


def package(name: str, version: str = "1.0.0", **fields: object) -> Package:
    return Package(PackageId("ns", name), version, fields.pop("title", name), **fields)  # type: ignore[arg-type]


def test_highest_version_wins_whatever_the_order() -> None:
    catalog = Catalog()
    assert catalog.add(package("a", "1.2.0", tags=("old",)))
    assert catalog.add(package("a", "1.10.0", tags=("new",)))
    assert not catalog.add(package("a", "1.9.0"))
    assert len(catalog) == 1
    assert str(catalog.get(PackageId("ns", "a")).version) == "1.10.0"  # type: ignore[union-attr]
    # the old version's terms left the index with it
    assert catalog.search(Query(tags=("old",))) == []
    assert [p.id.name for p in catalog.search(Query(tags=("new",)))] == ["a"]


def test_search_limit_stops_early() -> None:
    catalog = Catalog()
    for index in range(10):
        catalog.add(package(f"p{index}", tags=("x",)))
    assert len(catalog.search(Query(tags=("x",)), limit=3)) == 3


packages = st.builds(
    lambda name, title, description, tags, categories: package(
        name,
        title=" ".join(title),
        description=" ".join(description),
        tags=tuple(tags),
        categories=tuple(categories),
    ),
    name=st.sampled_from([f"pkg{i}" for i in range(30)]),
    title=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    description=st.lists(st.sampled_from(WORDS), max_size=4),
    tags=st.lists(st.sampled_from(TAGS), max_size=3),
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2),
)
queries = st.builds(
    lambda words, tags, categories: Query(" ".join(words), tuple(categories), tuple(tags)),
    words=st.lists(st.sampled_from([*WORDS, "ns", "pkg3", "HTTP"]), max_size=2),
    tags=st.lists(st.sampled_from(TAGS), max_size=2),
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(packages, max_size=40), st.lists(queries, min_size=1, max_size=5))
def test_index_answers_what_a_scan_would(items: list[Package], searches: list[Query]) -> None:
    catalog = Catalog()
    for item in items:
        catalog.add(item)
    for query in searches:
        expected = sorted((p for p in catalog if matches_query(p, query)), key=lambda p: p.id)
        assert catalog.search(query) == expected


# -- digest, cap and eviction ------------------------------------------


def test_equal_catalogs_have_equal_digests_whatever_the_order() -> None:
    items = [package(f"d{index}", f"1.{index % 3}.0") for index in range(60)]
    first, second = Catalog(), Catalog()
    for item in items:
        first.add(item)
    for item in reversed(items):
        second.add(item)
    assert first.root == second.root
    assert first.bucket_digests() == second.bucket_digests()
    assert len(first.bucket_digests()) == DIGEST_BUCKETS * HASH_SIZE
    # one more entry changes the root and exactly one bucket
    extra = package("extra")
    second.add(extra)
    assert first.root != second.root
    changed = [
        bucket
        for bucket in range(DIGEST_BUCKETS)
        if first.bucket_hashes(bucket) != second.bucket_hashes(bucket)
    ]
    assert changed == [bucket_of(extra.id)]
    assert second.bucket_hashes(bucket_of(extra.id)).count(entry_hash(extra)) == 1
    assert second.by_hash(entry_hash(extra)) == extra
    # a newer version replaces the old one in the digest too
    newer = package("extra", "2.0.0")
    second.add(newer)
    assert second.by_hash(entry_hash(extra)) is None
    assert second.knows(entry_hash(extra))  # known, as older
    assert second.by_hash(entry_hash(newer)) == newer
    empty = Catalog()
    assert empty.root == bytes(HASH_SIZE)


def test_equal_versions_resolve_the_same_way_everywhere() -> None:
    # 1.0.0+a and 1.0.0+b compare equal: the higher content hash wins
    one, other = package("t", "1.0.0+a"), package("t", "1.0.0+b")
    winner = max(one, other, key=lambda p: p.content_hash)
    first, second = Catalog(), Catalog()
    first.add(one)
    first.add(other)
    second.add(other)
    second.add(one)
    assert first.get(one.id) is winner and second.get(one.id) is winner
    assert first.root == second.root


def test_the_cap_evicts_the_oldest_arrival_and_never_a_pinned_entry() -> None:
    evicted: list[str] = []
    catalog = Catalog(3, on_evict=lambda p: evicted.append(p.id.name))
    catalog.add(package("own"), pin=True)
    for name in ("a", "b", "c", "d"):
        catalog.add(package(name))
    assert len(catalog) == 3
    assert evicted == ["a", "b"]
    assert [p.id.name for p in catalog] == ["own", "c", "d"]
    # a newer version is a new arrival: "c" moves behind "d"
    catalog.add(package("c", "2.0.0"))
    catalog.add(package("e"))
    assert evicted == ["a", "b", "d"]
    assert catalog.evicted == 3
    # the digest follows evictions
    fresh = Catalog()
    for item in catalog:
        fresh.add(item)
    assert fresh.root == catalog.root
    # pinned entries count towards the cap but stay, even past it
    full = Catalog(1)
    full.add(package("p1"), pin=True)
    assert not full.add(package("x"))
    assert full.add(package("p2"), pin=True)
    assert len(full) == 2


def test_the_cap_is_checked() -> None:
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(InvalidArgumentError, match="max_packages"):
            Catalog(bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([f"r{i}" for i in range(15)]),
            st.sampled_from(["1.0.0", "1.1.0", "2.0.0", "1.0.0+b"]),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_the_digest_follows_every_change(steps: list[tuple[str, str, bool]]) -> None:
    """After any adds, replacements and evictions, the digest is the one a
    catalog built afresh from the same entries has, and every entry is found
    by its hash."""
    catalog = Catalog(8)
    pinned: set[str] = set()
    for name, version, pin in steps:
        pin = pin and len(pinned) < 4
        if pin:
            pinned.add(name)
        catalog.add(package(name, version), pin=pin)
    assert len(catalog) <= 8
    assert pinned <= {p.id.name for p in catalog}
    fresh = Catalog()
    for item in catalog:
        fresh.add(item)
        assert catalog.by_hash(entry_hash(item)) is item
    assert fresh.root == catalog.root
    assert fresh.bucket_digests() == catalog.bucket_digests()

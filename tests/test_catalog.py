"""Catalog: highest version wins; the inverted index answers exactly what a
scan with matches_query would."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from dhtquery.registry.catalog import Catalog
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

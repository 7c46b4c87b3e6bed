"""dhtquery.testing.generate_catalog: deterministic by seed, valid, distinct
ids, within the per-tag cap, older versions where asked."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from dhtquery.registry import Package
from dhtquery.testing import (
    BENCH_SEED,
    MAX_PACKAGES_PER_TAG,
    generate_catalog,
)


def tag_counts(catalog: list[Package]) -> Counter[str]:
    return Counter(tag for package in catalog for tag in package.tags)


@pytest.mark.parametrize("style", ["themed", "zipf"])
def test_same_seed_same_catalog_other_seed_other_catalog(style: str) -> None:
    first = generate_catalog(300, 5, style=style)  # type: ignore[arg-type]
    assert first == generate_catalog(300, 5, style=style)  # type: ignore[arg-type]
    assert first != generate_catalog(300, 6, style=style)  # type: ignore[arg-type]
    assert len(first) == 300 and len({package.id for package in first}) == 300
    # records survive their own schema: what the registry would store
    assert all(Package.decode(package.encode()) == package for package in first[:50])


@pytest.mark.parametrize("style", ["themed", "zipf"])
def test_no_tag_is_given_to_more_packages_than_the_cap(style: str) -> None:
    catalog = generate_catalog(2000, style=style)  # type: ignore[arg-type]
    assert max(tag_counts(catalog).values()) <= MAX_PACKAGES_PER_TAG
    small_cap = generate_catalog(500, style=style, max_per_tag=3)  # type: ignore[arg-type]
    assert max(tag_counts(small_cap).values()) <= 3


def test_the_bench_catalog_has_no_cap_and_older_versions() -> None:
    catalog = generate_catalog(1000, BENCH_SEED, style="zipf", max_per_tag=None, older_share=0.05)
    newest, older = catalog[:1000], catalog[1000:]
    assert 0 < len(older) <= 50
    assert max(tag_counts(newest).values()) > MAX_PACKAGES_PER_TAG  # popular tags stay popular
    versions = {package.id: package.version for package in newest}
    assert all(package.version < versions[package.id] for package in older)


def test_bad_arguments_name_the_argument() -> None:
    for kwargs, name in (
        ({"count": -1}, "count"),
        ({"count": 1, "max_per_tag": -1}, "max_per_tag"),
        ({"count": 1, "older_share": 2.0}, "older_share"),
        ({"count": 1, "style": "plain"}, "style"),
    ):
        with pytest.raises(ValueError, match=name):
            generate_catalog(**kwargs)  # type: ignore[arg-type]


def fingerprint(catalog: list[Package]) -> str:
    return hashlib.sha256(b"".join(package.encode() for package in catalog)).hexdigest()[:16]


def test_the_demos_and_the_benchs_catalogs_are_those_before_the_merge() -> None:
    # fingerprints of cli/demo.py's and benches/_registry_network.py's
    # generators before they were merged: bench figures stay comparable
    assert fingerprint(generate_catalog(300)) == "e0a4d9998c2bc82d"
    bench = generate_catalog(300, BENCH_SEED, style="zipf", max_per_tag=None, older_share=0.05)
    assert fingerprint(bench) == "25d1fbcc7d21e86f"

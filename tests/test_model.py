"""The package model: ids, packages, records, queries and matches_query."""

from __future__ import annotations

from typing import Any

import pytest

from dhtquery.registry.model import Package, PackageId, Query, SchemaError, matches_query


def make(**overrides: Any) -> Package:
    fields: dict[str, Any] = {
        "id": PackageId("acme", "http-client"),
        "version": "1.4.2",
        "title": "Fast HTTP client",
        "description": "An async HTTP/2 client with connection pooling",
        "categories": ("web", "networking"),
        "tags": ("http", "async"),
        "authors": ("Ada",),
    }
    fields.update(overrides)
    return Package(**fields)


def test_package_id_str_and_parse() -> None:
    package_id = PackageId.parse("acme/http-client")
    assert str(package_id) == "acme/http-client"
    assert package_id == PackageId("acme", "http-client")


@pytest.mark.parametrize("text", ["Acme/x", "acme", "a/b/c", "acme/-x", "acme/x y", "/x"])
def test_package_id_rejects_bad_forms(text: str) -> None:
    with pytest.raises(SchemaError):
        PackageId.parse(text)


def test_content_hash_is_computed_and_changes_with_content() -> None:
    package = make()
    assert len(package.content_hash) == 64
    assert make().content_hash == package.content_hash
    assert make(description="other").content_hash != package.content_hash
    # the same set of tags in another order is the same package
    assert make(tags=("async", "http")).content_hash == package.content_hash


def test_versions_order_semantically() -> None:
    assert make(version="1.10.0").version > make(version="1.9.3").version
    assert make(version="2.0.0-rc.1").version < make(version="2.0.0").version


def test_license_defaults_to_unlicensed_and_custom_categories_are_kept() -> None:
    package = make(categories=("web", "robotics"))
    assert package.license == "UNLICENSED"
    assert package.custom_categories == ("robotics",)


def test_record_round_trip() -> None:
    package = make()
    assert Package.from_record(package.to_record()) == package


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "Bad Ns"),
        ("name", ""),
        ("version", "one.two"),
        ("version", 7),
        ("title", ""),
        ("title", "x" * 500),
        ("description", 12),
        ("categories", "web"),
        ("categories", ["Web!"]),
        ("tags", ["x"] * 40),
        ("license", None),
        ("authors", [""]),
        ("hash", "0" * 64),
    ],
)
def test_record_schema_errors_name_the_field(field: str, value: Any) -> None:
    record = make().to_record()
    record[field] = value
    with pytest.raises(SchemaError) as caught:
        Package.from_record(record)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}:")


def test_record_missing_or_extra_field_is_named() -> None:
    record = make().to_record()
    del record["license"]
    with pytest.raises(SchemaError, match="license: is missing"):
        Package.from_record(record)
    record = make().to_record()
    record["evil"] = 1
    with pytest.raises(SchemaError, match="evil"):
        Package.from_record(record)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query(), True),
        (Query(text="http"), True),
        (Query(text="HTTP CLIENT"), True),
        (Query(text="pooling"), True),  # description
        (Query(text="acme/http"), True),  # id
        (Query(text="pool"), False),  # whole words, not parts of words
        (Query(text="http database"), False),  # every word must match
        (Query(categories=("web",)), True),
        (Query(categories=("database", "networking")), True),  # any of
        (Query(categories=("database",)), False),
        (Query(tags=("async",)), True),
        (Query(tags=("sync",)), False),
        (Query(text="client", categories=("web",), tags=("http",)), True),
        (Query(text="client", categories=("web",), tags=("grpc",)), False),
    ],
)
def test_matches_query(query: Query, expected: bool) -> None:
    assert matches_query(make(), query) is expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"tags": "http"}, "tags")],
)
def test_query_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SchemaError) as caught:
        Query(**kwargs)
    assert caught.value.field == field


def test_largest_package_fits_one_dht_record() -> None:
    package = make(
        id=PackageId("n" * 64, "m" * 64),
        version="1.0.0-" + "r" * 40,
        title="t" * 120,
        description="d" * 400,
        categories=tuple(f"c{i}" + "x" * 29 for i in range(8)),
        tags=tuple(f"t{i}" + "x" * 29 for i in range(8)),
        license="l" * 64,
        authors=tuple(f"a{i}" + "x" * 30 for i in range(8)),
    )
    assert Package.decode(package.encode()) == package
    with pytest.raises(SchemaError) as caught:
        make(description="\u00e9" * 400, title="\u00e9" * 120, authors=("x" * 80,) * 8)
    assert caught.value.field == "record"

"""The marketplace's data: PackageId, Package, Query, and matches_query.

A package travels as a msgpack map (``Package.to_record``) that names every
field; ``Package.from_record`` checks the schema and the content hash and
refuses a bad record with a SchemaError naming the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

import msgpack
import semver

from ..dht import MAX_DATA as MAX_RECORD_BYTES
from ..errors import SchemaError

__all__ = [
    "STANDARD_CATEGORIES",
    "Package",
    "PackageId",
    "Query",
    "SchemaError",
    "matches_query",
    "package_words",
]

STANDARD_CATEGORIES: Final = (
    "audio",
    "cli",
    "crypto",
    "data",
    "database",
    "devtools",
    "embedded",
    "game",
    "graphics",
    "ml",
    "networking",
    "science",
    "testing",
    "web",
)

_WORD = re.compile(r"[a-z0-9]+")
_ID_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_MAX_TEXT: Final = {"title": 120, "description": 400, "license": 64}
_MAX_ITEMS: Final = 8
_RECORD_FIELDS: Final = (
    "namespace",
    "name",
    "version",
    "title",
    "description",
    "categories",
    "tags",
    "license",
    "authors",
    "hash",
)
_REQUIRED_FIELDS: Final = ("namespace", "name", "version", "title")
_OPTIONAL_FIELDS: Final = ("description", "categories", "tags", "license", "authors")


@dataclass(frozen=True, slots=True, order=True)
class PackageId:
    """``namespace/name``: lowercase letters, digits, ``-``, ``_``, ``.``."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        for part in ("namespace", "name"):
            value = getattr(self, part)
            if not isinstance(value, str) or not _ID_PART.fullmatch(value):
                raise SchemaError(
                    part,
                    "must be 1-64 of lowercase letters, digits, '-', '_', '.' "
                    f"starting with a letter or digit, got {value!r:.80}",
                )

    @classmethod
    def parse(cls, text: str) -> PackageId:
        """``PackageId.parse("ns/name")``"""
        if not isinstance(text, str) or text.count("/") != 1:
            raise SchemaError("id", f"must look like 'namespace/name', got {text!r:.80}")
        namespace, name = text.split("/")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SchemaError(name, f"must be a str, got {type(value).__name__}")
    limit = _MAX_TEXT[name]
    if len(value) > limit:
        raise SchemaError(name, f"must be at most {limit} characters, got {len(value)}")
    return value


def _slugs(name: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise SchemaError(name, f"must be a list of str, got {type(values).__name__}")
    items = tuple(values)
    if len(items) > _MAX_ITEMS:
        raise SchemaError(name, f"must have at most {_MAX_ITEMS} entries, got {len(items)}")
    for item in items:
        if not isinstance(item, str) or not _SLUG.fullmatch(item):
            raise SchemaError(
                name, f"entries must be lowercase slugs (a-z, 0-9, '-'), got {item!r:.40}"
            )
    return tuple(sorted(set(items)))


def _authors(values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise SchemaError("authors", f"must be a list of str, got {type(values).__name__}")
    items = tuple(values)
    if len(items) > _MAX_ITEMS or not all(isinstance(a, str) and 0 < len(a) <= 80 for a in items):
        raise SchemaError(
            "authors", f"must be at most {_MAX_ITEMS} names of 1-80 characters, got {items!r:.80}"
        )
    return items


def _version(value: Any) -> semver.Version:
    if isinstance(value, semver.Version):
        return value
    if not isinstance(value, str):
        raise SchemaError("version", f"must be a semantic version str, got {type(value).__name__}")
    try:
        return semver.Version.parse(value)
    except ValueError:
        raise SchemaError("version", f"is not a semantic version: {value!r:.40}") from None


@dataclass(frozen=True, slots=True)
class Package:
    """One version of a package. ``content_hash`` is the sha256 of the
    canonical encoding of every other field: computed, never supplied."""

    id: PackageId
    version: semver.Version
    title: str
    description: str = ""
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    license: str = "UNLICENSED"
    authors: tuple[str, ...] = ()
    content_hash: str = field(init=False, compare=False)
    #: Provenance, set by the registry from the signed record the package
    #: came in (none of it is encoded, hashed or compared): the publisher's
    #: public key in hex ("" for a package not from a signed record),
    #: whether its namespace is pinned to that key in the trust store, and
    #: the signed record itself (msgpack), which is what peers are served.
    publisher: str = field(init=False, compare=False, default="")
    pinned: bool = field(init=False, compare=False, default=False)
    record: bytes = field(init=False, compare=False, default=b"", repr=False)

    def attested(self, publisher: str, record: bytes, pinned: bool) -> Package:
        """A copy of this package with its provenance set."""
        copy = object.__new__(Package)
        set_field = object.__setattr__
        for name in _SLOTS:
            set_field(copy, name, getattr(self, name))
        set_field(copy, "publisher", publisher)
        set_field(copy, "pinned", pinned)
        set_field(copy, "record", record)
        return copy

    def __post_init__(self) -> None:
        if not isinstance(self.id, PackageId):
            raise SchemaError("id", f"must be a PackageId, got {type(self.id).__name__}")
        set_field = object.__setattr__
        set_field(self, "version", _version(self.version))
        for name in ("title", "description", "license"):
            _text(name, getattr(self, name))
        if not self.title.strip():
            raise SchemaError("title", "must not be empty")
        set_field(self, "categories", _slugs("categories", self.categories))
        set_field(self, "tags", _slugs("tags", self.tags))
        set_field(self, "authors", _authors(self.authors))
        set_field(self, "content_hash", hashlib.sha256(self._canonical()).hexdigest())
        size = len(self.encode())
        if size > MAX_RECORD_BYTES:
            raise SchemaError(
                "record", f"encodes to {size} bytes; a DHT record holds {MAX_RECORD_BYTES}"
            )

    def _canonical(self) -> bytes:
        body = [
            self.id.namespace,
            self.id.name,
            str(self.version),
            self.title,
            self.description,
            list(self.categories),
            list(self.tags),
            self.license,
            list(self.authors),
        ]
        return bytes(msgpack.packb(body, use_bin_type=True))

    @property
    def sequence(self) -> int:
        """The sequence number of this version's signed records: the version
        itself, packed in 64 bits (major, minor, patch, 16 bits each, then
        0xFFFF for a release or the first two bytes of the prerelease tag),
        so a higher version replaces a lower one on every holder and a lower
        one published later is refused, as in catalogs. A version is
        immutable: the same version with other content has the same number
        and is refused too. (Components above 65,535 count as 65,535;
        prereleases of one version that share their first two characters
        share a number.)"""
        version = self.version
        head = (
            min(version.major, 0xFFFF) << 48
            | min(version.minor, 0xFFFF) << 32
            | min(version.patch, 0xFFFF) << 16
        )
        if version.prerelease is None:
            return head | 0xFFFF
        tag = version.prerelease.encode()[:2].ljust(2, b"\x00")
        return head | min(int.from_bytes(tag, "big"), 0xFFFE)

    @property
    def custom_categories(self) -> tuple[str, ...]:
        """Categories outside STANDARD_CATEGORIES."""
        return tuple(c for c in self.categories if c not in STANDARD_CATEGORIES)

    def to_record(self) -> dict[str, Any]:
        return {
            "namespace": self.id.namespace,
            "name": self.id.name,
            "version": str(self.version),
            "title": self.title,
            "description": self.description,
            "categories": list(self.categories),
            "tags": list(self.tags),
            "license": self.license,
            "authors": list(self.authors),
            "hash": self.content_hash,
        }

    def encode(self) -> bytes:
        """The record as msgpack: what travels in the DHT."""
        return bytes(msgpack.packb(self.to_record(), use_bin_type=True))

    @classmethod
    def decode(cls, data: bytes) -> Package:
        """Read :meth:`encode`'s bytes back, checking schema and hash."""
        try:
            record = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError) as exc:
            raise SchemaError("record", f"is not msgpack: {exc}") from None
        return cls.from_record(record)

    @classmethod
    def from_record(cls, record: Any, *, complete: bool = True) -> Package:
        """Read a record and check its schema and hash. ``complete=False``
        (a catalog file written by hand) requires only ``namespace``,
        ``name``, ``version`` and ``title``: the other fields default as in
        Package, and ``hash``, computed anyway, is checked only if given."""
        if not isinstance(record, Mapping):
            raise SchemaError("record", f"must be a map, got {type(record).__name__}")
        required = _RECORD_FIELDS if complete else _REQUIRED_FIELDS
        missing = [name for name in required if name not in record]
        if missing:
            raise SchemaError(missing[0], "is missing")
        extra = sorted(set(record) - set(_RECORD_FIELDS), key=str)
        if extra:
            raise SchemaError(str(extra[0]), "is not a field of a package record")
        optional = {name: record[name] for name in _OPTIONAL_FIELDS if name in record}
        package = cls(
            PackageId(record["namespace"], record["name"]),
            record["version"],
            record["title"],
            **optional,
        )
        if "hash" in record and record["hash"] != package.content_hash:
            raise SchemaError("hash", "does not match the record's content (sha256)")
        return package


#: Every field of a Package (what ``attested`` copies).
_SLOTS: Final = tuple(f.name for f in fields(Package))


@dataclass(frozen=True, slots=True)
class Query:
    """A search: every word of ``text`` (runs of letters and digits,
    case-insensitive) must be a word of the package's title, description or
    id; any one of ``categories`` and any
    one of ``tags`` must match; empty means anything. ``offset`` and
    ``limit`` cut the merged, de-duplicated results."""

    text: str = ""
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    limit: int = 20
    offset: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or len(self.text) > 200:
            raise SchemaError(
                "text", f"must be a str of at most 200 characters, got {self.text!r:.40}"
            )
        object.__setattr__(self, "categories", _slugs("categories", self.categories))
        object.__setattr__(self, "tags", _slugs("tags", self.tags))
        for name, low, high in (("limit", 1, 1000), ("offset", 0, 1_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SchemaError(name, f"must be an int in [{low}, {high}], got {value!r}")

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_WORD.findall(self.text.lower())))


def package_words(package: Package) -> frozenset[str]:
    """The words a text query can match: those of the title, the
    description and the id, lower-cased (runs of letters and digits)."""
    return frozenset(_WORD.findall(f"{package.title} {package.description} {package.id}".lower()))


def matches_query(package: Package, query: Query) -> bool:
    """Does ``package`` answer ``query``? (See :class:`Query`.)"""
    if query.categories and not set(query.categories) & set(package.categories):
        return False
    if query.tags and not set(query.tags) & set(package.tags):
        return False
    words = query.words
    return not words or package_words(package).issuperset(words)

"""Records: what ``DhtNode.put`` stores, several per key: one per publisher
and name (the name is empty for most keys; a key that indexes many things,
such as a registry tag, holds one record per publisher and thing).

On the wire a record is a msgpack map ``{"p": publisher, "n": name, "d":
data, "h": sha256(data)}``. The hash is checked whenever a record is stored or handed to
a caller, so a peer cannot serve altered data under a publisher's name
without the record being refused and the peer losing reputation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from ..errors import RecordError

__all__ = ["MAX_DATA", "MAX_NAME", "MAX_PUBLISHER", "Record", "RecordError", "from_wire_cached"]

#: Bytes of data in one record: a holder returns every record of a key in
#: one datagram, so records are small (see storage.MAX_RECORDS_PER_KEY).
MAX_DATA: Final = 1800
MAX_PUBLISHER: Final = 64
MAX_NAME: Final = 160
_HASH_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class Record:
    publisher: str
    data: bytes
    hash: bytes
    name: str = ""

    @classmethod
    def create(cls, publisher: str, data: bytes, name: str = "") -> Record:
        """A record of ``data`` by ``publisher``, with its hash computed."""
        if not isinstance(data, bytes):
            raise RecordError(f"data must be bytes, got {type(data).__name__}")
        record = cls(publisher, data, hashlib.sha256(data).digest(), name)
        record.check()
        return record

    @property
    def slot(self) -> tuple[str, str]:
        """What a key holds one record of: (publisher, name)."""
        return self.publisher, self.name

    @property
    def dedup_key(self) -> bytes:
        """Two holders serving this record give the same key."""
        return b"\x00".join((self.publisher.encode(), self.name.encode(), self.hash))

    @property
    def size(self) -> int:
        return len(self.publisher) + len(self.name) + len(self.data) + _HASH_SIZE

    def check(self) -> None:
        """Raise RecordError unless the schema holds and the hash matches."""
        if not isinstance(self.publisher, str) or not 0 < len(self.publisher) <= MAX_PUBLISHER:
            raise RecordError(
                f"publisher must be a str of 1 to {MAX_PUBLISHER} characters, "
                f"got {self.publisher!r:.80}"
            )
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME:
            raise RecordError(
                f"name must be a str of at most {MAX_NAME} characters, got {self.name!r:.80}"
            )
        if not isinstance(self.data, bytes) or len(self.data) > MAX_DATA:
            size = len(self.data) if isinstance(self.data, bytes) else type(self.data).__name__
            raise RecordError(f"data must be bytes of at most {MAX_DATA}, got {size}")
        if not isinstance(self.hash, bytes) or len(self.hash) != _HASH_SIZE:
            raise RecordError(f"hash must be {_HASH_SIZE} bytes, got {self.hash!r:.80}")
        if hashlib.sha256(self.data).digest() != self.hash:
            raise RecordError("hash does not match the data (sha256)")

    def to_wire(self) -> dict[str, Any]:
        return {"p": self.publisher, "n": self.name, "d": self.data, "h": self.hash}

    @classmethod
    def from_wire(cls, value: Any) -> Record:
        """Read and check a record from its msgpack map."""
        if not isinstance(value, dict):
            raise RecordError(f"record must be a map, got {type(value).__name__}")
        missing = {"p", "n", "d", "h"} - value.keys()
        if missing:
            raise RecordError(f"record lacks field(s) {', '.join(sorted(missing))}")
        record = cls(value["p"], value["d"], value["h"], value["n"])
        record.check()
        return record


#: (publisher, name, data, hash) -> (dedup key, record), for records already
#: checked: every holder of a key serves the same record.
_checked: dict[tuple[Any, Any, Any, Any], tuple[bytes, Record]] = {}
_CHECKED_KEPT: Final = 4096


def from_wire_cached(value: Any) -> tuple[bytes, Record]:
    """``(record.dedup_key, Record.from_wire(value))``; a record seen (and
    checked) recently, field for field the same, is not checked again."""
    try:
        key = (value["p"], value["n"], value["d"], value["h"])
        return _checked[key]
    except (KeyError, TypeError, IndexError):
        pass
    record = Record.from_wire(value)
    if len(_checked) >= _CHECKED_KEPT:
        _checked.clear()
    entry = _checked[(record.publisher, record.name, record.data, record.hash)] = (
        record.dedup_key,
        record,
    )
    return entry

"""Records: what ``DhtNode.put`` stores, several per key: one per slot, a
slot being (publisher's public key, name). The name is empty for most keys;
a key that indexes many things, such as a registry tag, holds one record
per publisher and thing.

A record is signed by its publisher (Ed25519, see :mod:`.signing`) over
the domain-separation prefix ``dhtquery-record-v1\\0``, its public key, the
DHT key it is stored under (``target``), its name, sequence number, expiry
and data. Only the key's holder can fill or replace its slot; a record
replaces the one in its slot only with a higher sequence number. The wire
format is in ``docs/signed-records.md``: a msgpack array, by position::

    [public key (32), target (1-64), name, seq (u64),
     expires (u64 unix seconds, 0: never), data, signature (64)]

(an array, not a map: a third faster to decode than the map with its seven
field names, and 15 bytes smaller)

Plain kademlia values a stock peer serves (``find_value``) are surfaced as
unsigned records (``signed`` False, publisher ``"kademlia"``); a store
never holds one.

A :class:`RecordVerifier` (one per node) checks records and remembers the
ones whose signature it verified, so a hot record is verified once per
node, not once per lookup.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..errors import RecordError
from ..query import new_record_cache
from .signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Publisher, verify_signature

if TYPE_CHECKING:
    from ..query import RecordCache

__all__ = [
    "CONTEXT",
    "MAX_DATA",
    "MAX_NAME",
    "MAX_TARGET",
    "PLAIN_PUBLISHER",
    "Record",
    "RecordError",
    "RecordVerifier",
    "latest",
    "signed_message",
]

#: Bytes of data in one record: a holder returns every record of a key in
#: one datagram, so records are small (see storage.MAX_RECORDS_PER_KEY).
MAX_DATA: Final = 1800
MAX_NAME: Final = 160
#: DHT keys are 20-byte digests; stock kademlia reads ids of up to 64.
MAX_TARGET: Final = 64
MAX_SEQ: Final = 2**64 - 1
#: Domain separation: a signature over a record can never be taken for a
#: signature of anything else (a future record version, a claim, ...).
CONTEXT: Final = b"dhtquery-record-v1\x00"
#: The publisher shown for a plain (unsigned) kademlia value.
PLAIN_PUBLISHER: Final = "kademlia"
#: The fields of the wire array, in order (for messages naming them).
WIRE_FIELDS: Final = ("public key", "target", "name", "seq", "expires", "data", "signature")
_HEAD = struct.Struct(">QQ")


def signed_message(
    public_key: bytes, target: bytes, name: str, seq: int, expires: int, data: bytes
) -> bytes:
    """What a record's signature covers: every field but the signature,
    each of fixed size or length-prefixed (data, last, runs to the end)."""
    name_bytes = name.encode()
    return b"".join(
        (
            CONTEXT,
            public_key,
            bytes((len(target),)),
            target,
            len(name_bytes).to_bytes(2, "big"),
            name_bytes,
            _HEAD.pack(seq, expires),
            data,
        )
    )


@dataclass(frozen=True, slots=True)
class Record:
    public_key: bytes
    target: bytes
    name: str
    seq: int
    data: bytes
    signature: bytes
    expires: int = 0

    @classmethod
    def create(
        cls,
        publisher: Publisher,
        target: bytes,
        data: bytes,
        *,
        name: str = "",
        seq: int = 0,
        expires: int = 0,
    ) -> Record:
        """``data`` signed by ``publisher`` for the slot (its key, ``name``)
        under DHT key ``target``."""
        if not isinstance(publisher, Publisher):
            raise RecordError(
                f"publisher must be a Publisher (a key pair), got {type(publisher).__name__}"
            )
        if not isinstance(data, bytes):
            raise RecordError(f"data must be bytes, got {type(data).__name__}")
        unsigned = cls(publisher.public_key, target, name, seq, data, b"", expires)
        unsigned.check_schema()
        signature = publisher.sign(
            signed_message(publisher.public_key, target, name, seq, expires, data)
        )
        return cls(publisher.public_key, target, name, seq, data, signature, expires)

    @classmethod
    def plain(cls, data: bytes) -> Record:
        """A stock kademlia value, as a lookup surfaces it: unsigned."""
        return cls(b"", b"", "", 0, data, b"")

    @property
    def signed(self) -> bool:
        return bool(self.signature)

    @property
    def publisher(self) -> str:
        """Who published it: the public key in hex (``"kademlia"`` for a
        plain value)."""
        return self.public_key.hex() if self.signature else PLAIN_PUBLISHER

    @property
    def slot(self) -> tuple[bytes, str]:
        """What a key holds one record of: (public key, name)."""
        return self.public_key, self.name

    @property
    def dedup_key(self) -> bytes:
        """Two holders serving this record give the same key (Ed25519
        signatures are deterministic)."""
        return self.signature or b"plain\x00" + hashlib.sha256(self.data).digest()

    @property
    def size(self) -> int:
        return (
            len(self.public_key)
            + len(self.target)
            + len(self.name)
            + len(self.data)
            + len(self.signature)
            + 16
        )

    def check_schema(self) -> None:
        """Raise RecordError (kind ``bad_record``) unless every field has its
        type and size."""
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise RecordError(
                f"public key must be {PUBLIC_KEY_SIZE} bytes, got {self.public_key!r:.80}"
            )
        if not isinstance(self.target, bytes) or not 0 < len(self.target) <= MAX_TARGET:
            raise RecordError(f"target must be 1 to {MAX_TARGET} bytes, got {self.target!r:.80}")
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME:
            raise RecordError(
                f"name must be a str of at most {MAX_NAME} characters, got {self.name!r:.80}"
            )
        for field, value in (("seq", self.seq), ("expires", self.expires)):
            if type(value) is not int or not 0 <= value <= MAX_SEQ:
                raise RecordError(f"{field} must be an int in [0, 2**64), got {value!r:.80}")
        if not isinstance(self.data, bytes) or len(self.data) > MAX_DATA:
            size = len(self.data) if isinstance(self.data, bytes) else type(self.data).__name__
            raise RecordError(f"data must be bytes of at most {MAX_DATA}, got {size}")
        if not isinstance(self.signature, bytes) or len(self.signature) not in (
            0,
            SIGNATURE_SIZE,
        ):
            raise RecordError(f"signature must be {SIGNATURE_SIZE} bytes")

    def signature_valid(self) -> bool:
        """Whether the signature is the public key's over the record (an
        Ed25519 verification: ~60 us; a RecordVerifier remembers it)."""
        return len(self.signature) == SIGNATURE_SIZE and verify_signature(
            self.public_key,
            signed_message(
                self.public_key, self.target, self.name, self.seq, self.expires, self.data
            ),
            self.signature,
        )

    def to_wire(self) -> list[Any]:
        return [
            self.public_key,
            self.target,
            self.name,
            self.seq,
            self.expires,
            self.data,
            self.signature,
        ]

    @classmethod
    def from_wire(cls, value: Any) -> Record:
        """Read a record from its msgpack array (schema only: a
        RecordVerifier checks the signature)."""
        if not isinstance(value, list | tuple):
            raise RecordError(f"record must be an array, got {type(value).__name__}")
        if len(value) != len(WIRE_FIELDS):
            raise RecordError(
                f"record must have {len(WIRE_FIELDS)} fields ({', '.join(WIRE_FIELDS)}), "
                f"got {len(value)}"
            )
        key, target, name, seq, expires, data, signature = value
        record = cls(key, target, name, seq, data, signature, expires)
        record.check_schema()
        if not record.signature:
            raise RecordError("record is unsigned", "bad_signature")
        return record


#: Records whose signature a verifier remembers by default.
VERIFIED_KEPT: Final = 8192


class RecordVerifier:
    """Checks records for a node: schema, signature, slot (the DHT key it
    came under) and expiry, each failure a RecordError whose ``kind`` says
    which. Records whose signature verified are remembered by their
    signature in the core's ``RecordCache`` (at most ``kept``, the oldest
    leave first); a later copy is taken from there only if every field
    equals the one verified, so it costs a hash lookup and a few
    comparisons, not an Ed25519 verification. ``wall()`` is the node's wall
    clock (for expiry); ``backend``: the core the cache is made in.

    ``check_signatures=False`` skips the signature check: only for a
    benchmark measuring what verification costs."""

    __slots__ = ("_check_signatures", "_wall", "cache", "verified")

    def __init__(
        self,
        wall: Callable[[], float],
        *,
        kept: int = VERIFIED_KEPT,
        check_signatures: bool = True,
        backend: str = "auto",
    ) -> None:
        self._wall = wall
        self._check_signatures = check_signatures
        #: the records verified (a lookup reads an answer's records through
        #: it in one call: ``RecordCache.take``)
        self.cache: RecordCache = new_record_cache(kept, wall, backend)
        #: signatures verified (cache misses that passed)
        self.verified = 0

    def __len__(self) -> int:
        return len(self.cache)

    def clear(self) -> None:
        self.cache.clear()

    def from_wire(self, value: Any, target: bytes) -> Record:
        """The record of msgpack array ``value``, served or stored under DHT key
        ``target``, fully checked."""
        record: Record | None = self.cache.get(value)
        if record is None:
            record = Record.from_wire(value)
            record = self._verify_new(record, record.to_wire())
        if record.target != target:
            raise _wrong_slot(record, target)
        if record.expires and record.expires <= self._wall():
            raise _expired(record)
        return record

    def check(self, record: Record, target: bytes) -> Record:
        """Check a Record object the same way (a record read from a file, or
        handed to a store)."""
        if not isinstance(record, Record):
            raise RecordError(f"record must be a Record, got {type(record).__name__}")
        if not record.signature:
            raise RecordError("record is unsigned", "bad_signature")
        wire = record.to_wire()
        cached: Record | None = self.cache.get(wire)
        if cached is None:
            record.check_schema()
            cached = self._verify_new(record, wire)
        if cached.target != target:
            raise _wrong_slot(cached, target)
        if cached.expires and cached.expires <= self._wall():
            raise _expired(cached)
        return cached

    def _verify_new(self, record: Record, wire: Any) -> Record:
        if self._check_signatures and not record.signature_valid():
            raise RecordError(
                f"signature does not verify for key {record.public_key.hex()[:16]}..., "
                f"name {record.name!r:.40}, seq {record.seq}",
                "bad_signature",
            )
        self.verified += 1
        self.cache.put(wire, record)
        return record


def _wrong_slot(record: Record, target: bytes) -> RecordError:
    return RecordError(
        f"record signed for key {record.target.hex()}, served under {target.hex()}", "wrong_slot"
    )


def _expired(record: Record) -> RecordError:
    return RecordError(f"record expired at {record.expires} (unix time)", "expired")


def latest(records: Iterable[Record]) -> list[Record]:
    """The record of highest sequence number in each slot, in order of
    first arrival (a lookup may stream an older record of a slot before
    the newer one arrives); plain values are kept as they are."""
    best: dict[tuple[bytes, str] | bytes, Record] = {}
    for record in records:
        # (``slot`` if ``signed`` else ``dedup_key``, without the two
        # properties' frames per record: callgrind, latest() of one record
        # 5.9 k -> 4.7 k instructions)
        slot: tuple[bytes, str] | bytes = (
            (record.public_key, record.name) if record.signature else record.dedup_key
        )
        held = best.get(slot)
        if held is None or record.seq > held.seq:
            best[slot] = record
    return list(best.values())

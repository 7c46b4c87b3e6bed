"""What a node holds for others: multi-record keys and kademlia's plain
values, both capped in count and bytes and kept for a TTL.

A store that is full refuses the newcomer with a reason; what it already
holds is never evicted to make room, so a flood of stores cannot wipe out
good records.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from kademlia.storage import IStorage

from ..errors import InvalidArgumentError, RecordError, StorageFull
from ..query import Clock, SystemClock
from .persist import NodeDatabase
from .records import MAX_DATA, MAX_NAME, MAX_TARGET, Record, RecordVerifier
from .signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE

log = logging.getLogger("dhtquery.dht")

__all__ = [
    "MAX_RECORDS_PER_KEY",
    "ChangeWatchers",
    "PlainStorage",
    "RecordStore",
    "StorageFull",
    "StoreLimits",
]

#: A holder answers with every record of a key in one datagram: 30 records
#: of the largest (ASCII) size stay under 65,507 bytes with their framing.
MAX_RECORDS_PER_KEY: Final = 30
#: Bytes of memory a stored record costs beyond its fields' lengths, and a
#: key beyond its records: the Record, its bytes and str objects, the tuple
#: and dict slots (measured with tracemalloc on CPython 3.11: 100,000 records
#: of 8 to 1,800 bytes, 1 and 10 per key, fit data + 416 + 318/per_key to
#: the byte). Counting only the fields made a 64 MiB cap hold ~12x that in
#: memory with tiny records.
_RECORD_MEMORY: Final = 416
_KEY_MEMORY: Final = 318
#: A plain value's memory beyond its length (same measurement: value + 270).
_VALUE_MEMORY: Final = 270
_WIRE_OVERHEAD: Final = 16  # msgpack array and field headers, rounded up


class ChangeWatchers:
    """Bound methods a store calls with a key whose contents changed (a
    value or record stored, replaced or dropped), or with None when any
    key's may have: what a cache of answers made from the store forgets,
    key by key, so that a write to one key leaves the others' answers kept.
    Held weakly: a watcher's object (a node's protocol, replaced at each
    ``listen``) is not kept alive by the store it watches."""

    __slots__ = ("_methods",)

    def __init__(self) -> None:
        self._methods: list[weakref.WeakMethod[Callable[[bytes | None], None]]] = []

    def add(self, method: Callable[[bytes | None], None]) -> None:
        """Call ``method`` (a bound method) at each change from now on."""
        self._methods.append(weakref.WeakMethod(method))

    def remove(self, method: Callable[[bytes | None], None]) -> None:
        """Stop calling ``method`` (if it was added)."""
        self._methods = [ref for ref in self._methods if ref() != method]

    def __len__(self) -> int:
        return sum(1 for ref in self._methods if ref() is not None)

    def changed(self, key: bytes | None) -> None:
        """Tell every watcher that ``key`` (None: any key) changed, once the
        store's change is whole (memory and file). A watcher that raises is
        logged and the others are told still: one watcher's bug must not
        leave another's answers stale."""
        dead = False
        for ref in list(self._methods):
            method = ref()
            if method is None:
                dead = True
                continue
            try:
                method(key)
            except Exception:
                log.exception("dhtquery: a store's watcher failed on key %r", key)
        if dead:
            self._methods = [ref for ref in self._methods if ref() is not None]


@dataclass(frozen=True, slots=True)
class StoreLimits:
    records_per_key: int = MAX_RECORDS_PER_KEY
    keys: int = 100_000
    bytes: int = 64 * 1024 * 1024
    ttl: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.records_per_key <= MAX_RECORDS_PER_KEY:
            raise InvalidArgumentError(
                f"records_per_key must be in [1, {MAX_RECORDS_PER_KEY}], "
                f"got {self.records_per_key!r}"
            )
        for name in ("keys", "bytes"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.ttl > 0:
            raise InvalidArgumentError(f"ttl must be > 0 seconds, got {self.ttl!r}")


class RecordStore:
    """key (20-byte digest) -> (public key, name) -> (record, expiry).

    Only signed records are held, each checked by ``verifier`` (signature,
    the key it is stored under, expiry) before it is stored; a record
    replaces the one in its slot only with a higher sequence number (the
    same record again only refreshes its TTL). With a ``database`` it
    writes through to it and starts with what it holds (records past their
    TTL, or failing their checks, are dropped)."""

    def __init__(
        self,
        limits: StoreLimits | None = None,
        *,
        clock: Clock | None = None,
        database: NodeDatabase | None = None,
        verifier: RecordVerifier | None = None,
    ) -> None:
        self.limits = limits or StoreLimits()
        self._clock = SystemClock() if clock is None else clock
        self.verifier = RecordVerifier(self._clock.wall) if verifier is None else verifier
        self._keys: dict[bytes, dict[tuple[bytes, str], tuple[Record, float]]] = {}
        #: ``holds(key)``: whether any record of ``key`` is held, expired or
        #: not (``get`` tells the live ones); a C call, for a lookup to ask
        #: before ``get``'s frame. (``_keys`` is never replaced.)
        self.holds: Callable[[bytes], bool] = self._keys.__contains__
        self._bytes = 0
        #: told the key of every record stored or dropped: what a cache of
        #: answers made from this store forgets
        self.watchers = ChangeWatchers()
        self._database: NodeDatabase | None = None
        if database is not None:
            self._load(database)
            self._database = database

    def _load(self, database: NodeDatabase) -> None:
        now, wall = self._clock.now(), self._clock.wall()
        for key, record, expires in list(database.records()):
            try:
                if expires <= wall:
                    raise RecordError("past its TTL")
                self.put(key, record, now, expires=now + (expires - wall))
            except (RecordError, StorageFull):
                database.delete_record(key, record.public_key, record.name)

    def __len__(self) -> int:
        """Number of records held."""
        return sum(len(records) for records in self._keys.values())

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def key_count(self) -> int:
        return len(self._keys)

    def put(self, key: bytes, record: Record, now: float, *, expires: float | None = None) -> None:
        """Store or replace ``record`` (one per public key and name) under
        ``key``, until ``expires`` (default: ``now`` plus the TTL, never past
        the record's own expiry). Raises RecordError (its ``kind`` says
        why: bad_record, bad_signature, wrong_slot, expired, stale_sequence)
        for a record refused, StorageFull past a cap."""
        record = self.verifier.check(record, key)
        limits = self.limits
        records = self._keys.get(key)
        old = records.get(record.slot) if records else None
        if old is not None and old[0].signature != record.signature and old[0].seq >= record.seq:
            raise RecordError(
                f"sequence {record.seq} is not above the {old[0].seq} held for "
                f"{record.publisher[:16]}.../{record.name!r:.40}",
                "stale_sequence",
            )
        growth = record.size - old[0].size if old else record.size + _RECORD_MEMORY
        if records is None:
            growth += _KEY_MEMORY
        if records is None and len(self._keys) >= limits.keys:
            raise _keys_full(limits)
        if old is None and records is not None and len(records) >= limits.records_per_key:
            raise StorageFull(
                f"key {key.hex()} holds its limit of {limits.records_per_key} records"
            )
        if self._bytes + growth > limits.bytes:
            raise _bytes_full(limits)
        if records is None:
            records = self._keys[key] = {}
        expiry = now + limits.ttl if expires is None else expires
        if record.expires:
            expiry = min(expiry, now + (record.expires - self._clock.wall()))
        records[record.slot] = (record, expiry)
        self._bytes += growth
        if self._database is not None:
            wall = self._clock.wall() + (expiry - self._clock.now())
            self._database.save_record(key, record, wall)
        self.watchers.changed(key)

    def refusal(self, key: bytes) -> StorageFull | None:
        """The cap that refuses any record under ``key`` now, whatever the
        record (None: one may fit, ``put`` tells). Asked before a record
        sent to be stored is read and verified: a full store, or a client's
        that keeps nothing, refuses without ~65 us of Ed25519 a record (the
        bench client verified 600 welcome records only to refuse them)."""
        if key in self._keys:
            return None
        limits = self.limits
        if len(self._keys) >= limits.keys:
            return _keys_full(limits)
        # (a new key's smallest growth: its entry and one record's)
        if self._bytes + _KEY_MEMORY + _RECORD_MEMORY > limits.bytes:
            return _bytes_full(limits)
        return None

    def get(self, key: bytes, now: float, *, verify: bool = True) -> list[Record]:
        """The live records of ``key``, each checked again (a record that no
        longer passes is dropped, never handed out; the verifier remembers
        what it verified, so this is a lookup) unless ``verify`` is False,
        for a caller that checks them itself."""
        records = self._keys.get(key)
        if not records:
            return []
        live = []
        for slot, (record, expiry) in list(records.items()):
            if expiry <= now:
                self._remove(key, slot)
                continue
            if verify:
                try:
                    self.verifier.check(record, key)
                except RecordError:
                    self._remove(key, slot)
                    continue
            live.append(record)
        return live

    def live(self, key: bytes, now: float) -> tuple[list[Record], float]:
        """``get(key, now, verify=False)``, and when the first of those
        records expires (inf for none): until then, and until the
        ``watchers`` are told of ``key``, the same call gives the same
        records."""
        records = self.get(key, now, verify=False)
        held = self._keys.get(key)
        until = min((expiry for _, expiry in held.values()), default=math.inf) if held else math.inf
        return records, until

    def _remove(self, key: bytes, slot: tuple[bytes, str]) -> bool:
        """Drop the record in ``slot`` of ``key``; False if it is gone
        already (a watcher of an earlier removal read the key: get and
        expire loop over a copy of its slots)."""
        records = self._keys.get(key)
        held = records.pop(slot, None) if records is not None else None
        if records is None or held is None:
            return False
        self._bytes -= held[0].size + _RECORD_MEMORY
        if not records:
            del self._keys[key]
            self._bytes -= _KEY_MEMORY
        if self._database is not None:
            self._database.delete_record(key, *slot)
        self.watchers.changed(key)
        return True

    def expire(self, now: float) -> int:
        """Drop every record past its TTL; returns how many."""
        dropped = 0
        for key in list(self._keys):
            for slot, (_, expiry) in list(self._keys.get(key, {}).items()):
                if expiry <= now and self._remove(key, slot):
                    dropped += 1
        return dropped

    def items(self) -> Iterator[tuple[bytes, Record]]:
        for key, records in list(self._keys.items()):
            for record, _ in list(records.values()):
                yield key, record


#: Largest record a store accepts, for callers that size datagrams.
MAX_RECORD_SIZE: Final = (
    PUBLIC_KEY_SIZE + MAX_TARGET + MAX_NAME + 16 + MAX_DATA + SIGNATURE_SIZE + _WIRE_OVERHEAD
)


def _keys_full(limits: StoreLimits) -> StorageFull:
    return StorageFull(f"the store holds its limit of {limits.keys} keys")


def _bytes_full(limits: StoreLimits) -> StorageFull:
    return StorageFull(f"the store holds its limit of {limits.bytes} bytes")


class PlainStorage(IStorage):  # type: ignore[misc]
    """kademlia's single-value storage (what stock ``set``/``get`` and the
    ``store``/``find_value`` RPCs use), with caps and a TTL.

    Same interface as ``kademlia.storage.ForgetfulStorage``; a store past a
    cap raises StorageFull (our ``rpc_store`` answers False then).

    Whenever a value is stored or leaves, ``watchers`` are told its key: a
    packed ``find_value`` answer made from ``live`` stays right until then
    (and before its ``until``), which the protocol's datagram engine keeps
    and answers with itself."""

    def __init__(
        self,
        limits: StoreLimits | None = None,
        clock: Clock | None = None,
        database: NodeDatabase | None = None,
    ) -> None:
        #: told the key of every value stored or dropped (None: the limits,
        #: and with them every value's TTL, set anew)
        self.watchers = ChangeWatchers()
        self.limits = limits or StoreLimits()
        self._clock = SystemClock() if clock is None else clock
        self._now = self._clock.now
        # key -> (time stored, value), oldest first
        self._data: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self._bytes = 0
        self._database: NodeDatabase | None = None
        if database is not None:
            now, wall = self._now(), self._clock.wall()
            for key, value, stored in list(database.values()):
                try:
                    self._put(key, value, now - (wall - stored))
                except StorageFull:
                    database.delete_value(key)
            self._database = database
            self.cull()  # (what is past its TTL leaves the file too)

    @staticmethod
    def _size(value: Any) -> int:
        return (len(value) if isinstance(value, str | bytes) else 8) + _VALUE_MEMORY

    def __setitem__(self, key: bytes, value: Any) -> None:
        self._put(key, value, self._now())

    def _put(self, key: bytes, value: Any, stored: float) -> None:
        old = self._data.get(key)
        growth = self._size(value) - (self._size(old[1]) if old else 0)
        if old is None and len(self._data) >= self.limits.keys:
            self.cull()
            if len(self._data) >= self.limits.keys:
                raise StorageFull(f"the store holds its limit of {self.limits.keys} values")
        if self._bytes + growth > self.limits.bytes:
            raise StorageFull(f"the store holds its limit of {self.limits.bytes} bytes")
        if old is not None:
            del self._data[key]
        self._data[key] = (stored, value)
        self._bytes += growth
        if self._database is not None:
            self._database.save_value(key, value, self._clock.wall() + (stored - self._now()))
        self.watchers.changed(key)

    def cull(self) -> None:
        deadline = self._now() - self.limits.ttl
        while self._data:
            key, (stored, value) = next(iter(self._data.items()))
            if stored > deadline:
                break
            del self._data[key]
            self._bytes -= self._size(value)
            if self._database is not None:
                self._database.delete_value(key)
            self.watchers.changed(key)

    def get(self, key: bytes, default: Any = None) -> Any:
        self.cull()
        entry = self._data.get(key)
        return default if entry is None else entry[1]

    @property
    def limits(self) -> StoreLimits:
        """The caps and the TTL (set anew: the ``watchers`` are told of
        every key, as the values' lifetimes may have changed)."""
        return self._limits

    @limits.setter
    def limits(self, limits: StoreLimits) -> None:
        self._limits = limits
        self.watchers.changed(None)

    @property
    def clock(self) -> Clock:
        """The clock whose ``now`` times the values' TTL."""
        return self._clock

    def live(self, key: bytes, now: float) -> tuple[Any, float]:
        """``key``'s value at ``now`` (``now`` read from ``clock``) and the
        time it leaves (stored + TTL); ``(None, now)`` if none is held or it
        is past its TTL. Until the ``watchers`` are told of ``key``, the same
        call gives the same value; nothing is culled here (``get`` does
        that)."""
        entry = self._data.get(key)
        if entry is None:
            return None, now
        stored, value = entry
        until = stored + self.limits.ttl
        return (value, until) if now < until else (None, now)

    def __getitem__(self, key: bytes) -> Any:
        self.cull()
        return self._data[key][1]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def iter_older_than(self, seconds_old: float) -> Iterator[tuple[bytes, Any]]:
        cutoff = self._now() - seconds_old
        return iter(
            [(key, value) for key, (stored, value) in self._data.items() if stored < cutoff]
        )

    def __iter__(self) -> Iterator[tuple[bytes, Any]]:
        self.cull()
        return iter([(key, value) for key, (_, value) in self._data.items()])

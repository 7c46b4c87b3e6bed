"""The pure-Python query core: the reference for, and the fallback of, the
Rust core ``dhtquery._core``. ``_core.pyi`` is the contract both keep.

It is written in plain Python (no annotations that Cython would need to know
about) so ``benches/bench_core.py`` can compile this very file with Cython in
pure-Python mode and compare it as a third backend.

This class is not thread-safe: the asyncio glue uses it from the loop's
thread only. The Rust core is the one that may be fed from several threads.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import heapq
import ipaddress
import math
import os
import socket as _socket
import uuid as _uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence, Sized
from typing import Any, TypeAlias

import msgpack
from hdrh.histogram import HdrHistogram

# Absolute, so the bench can compile this file with Cython as a standalone module.
from dhtquery.errors import InvalidArgumentError, InvalidArgumentTypeError
from dhtquery.query.shapes import CHECKS as _SHAPE_CHECKS
from dhtquery.query.types import (
    FINISH_REASONS,
    HEDGE,
    MAX_EXPECTED_PEERS,
    MAX_NOW,
    MAX_RESULTS_LIMIT,
    MAX_TIMEOUT,
    RTT_BAND,
    BatchStatus,
    CoreOutcome,
    Counters,
    Latency,
    LookupFailure,
    LookupStep,
    QueryState,
    Reason,
    ResultRecord,
    SubmitStatus,
)

__all__ = [
    "MAX_EXPECTED_PEERS",
    "MAX_NOW",
    "MAX_RESULTS_LIMIT",
    "MAX_TIMEOUT",
    "Asker",
    "BatchReceiver",
    "Candidates",
    "DatagramEngine",
    "DatagramSocket",
    "FairShare",
    "LookupAnswers",
    "LookupCore",
    "PeerBook",
    "QueryCore",
    "QueryId",
    "RecordCache",
    "ReplayCache",
]

# Statuses and reasons are the shared enums' members: returned as they are.
NEW = SubmitStatus.NEW
COMPLETED = SubmitStatus.COMPLETED
DUPLICATE = SubmitStatus.DUPLICATE
FULL = SubmitStatus.FULL
LATE = SubmitStatus.LATE
UNKNOWN = SubmitStatus.UNKNOWN
_new_outcome = tuple.__new__

# Latency histogram: microseconds from 1 us to one hour, 3 significant figures.
_HIST_LOWEST = 1
_HIST_HIGHEST = 3_600_000_000
_HIST_DIGITS = 3

# Expiry wheel geometry (as tokio's timer wheel): 6 levels of 64 slots, 1 ms.
_LEVELS = 6
_SLOT_BITS = 6
_SLOTS = 1 << _SLOT_BITS
_SLOT_MASK = _SLOTS - 1
_MAX_DURATION = (1 << (_SLOT_BITS * _LEVELS)) - 1

_UUID_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID_V4_BITS = (0x4000 << 64) | (0x8000 << 48)

Key: TypeAlias = str | bytes


class QueryId:
    """A query's identifier: a random UUID v4, hashable, compared by value."""

    __slots__ = ("_int",)

    def __init__(self, value: str | _uuid.UUID) -> None:
        if isinstance(value, _uuid.UUID):
            self._int = value.int
        elif isinstance(value, str):
            try:
                self._int = _uuid.UUID(value).int
            except ValueError:
                raise InvalidArgumentError(f"value must be a UUID string, got {value!r}") from None
        else:
            raise InvalidArgumentTypeError(
                f"value must be a str or uuid.UUID, got {type(value).__name__}"
            )

    @classmethod
    def _random(cls) -> QueryId:
        self = cls.__new__(cls)
        raw = int.from_bytes(os.urandom(16), "big")
        self._int = (raw & _UUID_VERSION_MASK) | _UUID_V4_BITS
        return self

    @property
    def uuid(self) -> _uuid.UUID:
        return _uuid.UUID(int=self._int)

    @property
    def bytes(self) -> bytes:
        return self._int.to_bytes(16, "big")

    @classmethod
    def from_bytes(cls, data: builtins.bytes) -> QueryId:
        if not isinstance(data, bytes):
            raise InvalidArgumentTypeError(f"data must be bytes, got {type(data).__name__}")
        if len(data) != 16:
            raise InvalidArgumentError(f"data must be 16 bytes, got {len(data)}")
        self = cls.__new__(cls)
        self._int = int.from_bytes(data, "big")
        return self

    def __str__(self) -> str:
        return str(_uuid.UUID(int=self._int))

    def __repr__(self) -> str:
        return f"QueryId('{self}')"

    def __hash__(self) -> int:
        return hash(self._int)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryId):
            return self._int == other._int
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, QueryId):
            return self._int != other._int
        return NotImplemented


class _Timer:
    """One entry of the expiry wheel: a query's deadline or a tombstone's end."""

    __slots__ = ("deadline", "index", "is_tombstone", "level", "qid")

    def __init__(self, qid: QueryId, deadline: int, is_tombstone: bool) -> None:
        self.qid = qid
        self.deadline = deadline
        self.is_tombstone = is_tombstone
        # Where the entry sits; level -1 while it is not in the wheel.
        self.level = -1
        self.index = 0


def _level_for(elapsed: int, when: int) -> int:
    masked = (elapsed ^ when) | _SLOT_MASK
    if masked >= _MAX_DURATION:
        masked = _MAX_DURATION - 1
    return (masked.bit_length() - 1) // _SLOT_BITS


class _Wheel:
    """Hierarchical timing wheel, a port of tokio's: level L has 64 slots of
    64**L ms; an entry sits at the level of the highest 6-bit group in which
    its deadline differs from ``elapsed``, so every entry of a lower level is
    due before any of a higher one, and ``next_expiration`` needs no scan:
    one bitmap per level says which slots are occupied.
    """

    __slots__ = ("count", "elapsed", "occupied", "slots")

    def __init__(self) -> None:
        self.elapsed = 0
        self.count = 0
        self.occupied = [0] * _LEVELS
        # Each slot is a dict used as an insertion-ordered set: O(1) removal.
        self.slots: list[list[dict[_Timer, None]]] = [
            [{} for _ in range(_SLOTS)] for _ in range(_LEVELS)
        ]

    def insert(self, timer: _Timer) -> None:
        when = timer.deadline
        if when <= self.elapsed:
            when = timer.deadline = self.elapsed + 1
        self._place(timer, _level_for(self.elapsed, when))
        self.count += 1

    def _place(self, timer: _Timer, level: int) -> None:
        index = (timer.deadline >> (level * _SLOT_BITS)) & _SLOT_MASK
        self.slots[level][index][timer] = None
        timer.level = level
        timer.index = index
        self.occupied[level] |= 1 << index

    def remove(self, timer: _Timer) -> None:
        level = timer.level
        if level < 0:
            return
        slot = self.slots[level][timer.index]
        del slot[timer]
        timer.level = -1
        self.count -= 1
        if not slot:
            self.occupied[level] &= ~(1 << timer.index)

    def next_expiration(self) -> tuple[int, int, int] | None:
        """(level, slot, tick) of the next occupied slot, lowest level first."""
        elapsed = self.elapsed
        for level in range(_LEVELS):
            occupied = self.occupied[level]
            if not occupied:
                continue
            slot_range = 1 << (level * _SLOT_BITS)
            level_range = slot_range << _SLOT_BITS
            now_slot = (elapsed // slot_range) & _SLOT_MASK
            rotated = ((occupied >> now_slot) | (occupied << (_SLOTS - now_slot))) & (
                (1 << _SLOTS) - 1
            )
            zeros = (rotated & -rotated).bit_length() - 1
            slot = (zeros + now_slot) & _SLOT_MASK
            level_start = elapsed & ~(level_range - 1)
            deadline = level_start + slot * slot_range
            if deadline <= elapsed:
                deadline += level_range
            return level, slot, deadline
        return None

    def poll(self, now_tick: int) -> list[_Timer]:
        """Take every entry whose deadline is <= now_tick."""
        due: list[_Timer] = []
        while True:
            expiration = self.next_expiration()
            if expiration is None or expiration[2] > now_tick:
                break
            level, index, tick = expiration
            slot = self.slots[level][index]
            entries = list(slot)
            slot.clear()
            self.occupied[level] &= ~(1 << index)
            self.elapsed = tick
            for timer in entries:
                if timer.deadline <= tick:
                    timer.level = -1
                    self.count -= 1
                    due.append(timer)
                else:
                    self._place(timer, _level_for(tick, timer.deadline))
        if now_tick > self.elapsed:
            self.elapsed = now_tick
        return due


class _Query:
    __slots__ = (
        "accepted",
        "buffer",
        "deadline",
        "done_peers",
        "duplicates",
        "expected_peers",
        "max_results",
        "peers_failed",
        "peers_ok",
        "qid",
        "seen",
        "seq",
        "start",
        "timer",
    )

    def __init__(
        self, qid: QueryId, seq: int, max_results: int, expected_peers: int, start: float
    ) -> None:
        self.qid = qid
        self.seq = seq
        self.max_results = max_results
        self.expected_peers = expected_peers
        self.start = start
        self.accepted = 0
        self.duplicates = 0
        self.peers_ok = 0
        self.peers_failed = 0
        self.seen: set[Key] = set()
        self.buffer: list[ResultRecord] = []
        self.done_peers: set[Hashable] = set()
        self.timer: _Timer | None = None
        self.deadline = 0

    def is_complete(self) -> bool:
        return self.accepted >= self.max_results or (
            self.expected_peers > 0 and len(self.done_peers) >= self.expected_peers
        )


def _check_now(now: object) -> float:
    number = _check_float("now", now, allow_zero=True)
    if number > MAX_NOW:
        raise InvalidArgumentError(f"now must be <= {MAX_NOW!r}, got {now!r}")
    return number


def _check_float(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentTypeError(
            f"{name} must be a number of seconds, got {type(value).__name__}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: out of range
        number = math.inf
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(f"{name} must be finite and {bound}, got {value!r}")
    return number


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def _check_qid(query_id: object) -> QueryId:
    if type(query_id) is not QueryId:
        raise InvalidArgumentTypeError(f"query_id must be a QueryId, got {type(query_id).__name__}")
    return query_id


def _check_key(name: str, key: object) -> Key:
    if type(key) is not str and type(key) is not bytes:
        raise InvalidArgumentTypeError(f"{name} must be str or bytes, got {type(key).__name__}")
    return key


def _check_peer(peer: object) -> Hashable:
    try:
        hash(peer)
    except TypeError:
        raise InvalidArgumentTypeError(
            f"peer must be hashable, got {type(peer).__name__}"
        ) from None
    return peer


def _tick_ceil(seconds: float) -> int:
    return math.ceil(seconds * 1000.0)


def _tick_floor(seconds: float) -> int:
    return math.floor(seconds * 1000.0)


class QueryCore:
    """See ``_core.pyi`` for the contract."""

    def __init__(self, grace: float = 5.0) -> None:
        grace = _check_float("grace", grace, allow_zero=True)
        if grace > MAX_TIMEOUT:
            raise InvalidArgumentError(f"grace must be <= {MAX_TIMEOUT}, got {grace!r}")
        self._grace = grace
        self._grace_ticks = _tick_ceil(grace)
        self._queries: dict[QueryId, _Query] = {}
        self._tombstones: dict[QueryId, _Timer] = {}
        self._wheel = _Wheel()
        self._seq = 0
        self._total = 0
        self._successful = 0
        self._timed_out = 0
        self._cancelled = 0
        self._results = 0
        self._duplicates = 0
        self._late = 0
        self._unknown = 0
        self._overflow = 0
        self._histogram = HdrHistogram(_HIST_LOWEST, _HIST_HIGHEST, _HIST_DIGITS)

    # -- queries -------------------------------------------------------

    def register(
        self, timeout: float, max_results: int, expected_peers: int, now: float
    ) -> QueryId:
        timeout = _check_float("timeout", timeout, allow_zero=False)
        if timeout > MAX_TIMEOUT:
            raise InvalidArgumentError(f"timeout must be <= {MAX_TIMEOUT}, got {timeout!r}")
        max_results = _check_int("max_results", max_results, 1, MAX_RESULTS_LIMIT)
        expected_peers = _check_int("expected_peers", expected_peers, 0, MAX_EXPECTED_PEERS)
        now = _check_now(now)
        wheel = self._wheel
        if wheel.count == 0:
            # An empty wheel can jump to the present: nothing can be skipped.
            now_tick = _tick_floor(now)
            if now_tick > wheel.elapsed:
                wheel.elapsed = now_tick
        qid = QueryId._random()
        self._seq += 1
        query = _Query(qid, self._seq, max_results, expected_peers, now)
        timer = _Timer(qid, _tick_ceil(now + timeout), False)
        wheel.insert(timer)
        query.timer = timer
        query.deadline = timer.deadline
        self._queries[qid] = query
        self._total += 1
        return qid

    def _missing(self, query_id: QueryId, count: int) -> SubmitStatus:
        if query_id in self._tombstones:
            self._late += count
            return LATE
        self._unknown += count
        return UNKNOWN

    def offer(
        self, query_id: QueryId, peer: Hashable, key: Key, item: object, now: float
    ) -> SubmitStatus:
        _check_qid(query_id)
        _check_peer(peer)
        _check_key("key", key)
        now = _check_now(now)
        query = self._queries.get(query_id)
        if query is None:
            return self._missing(query_id, 1)
        return self._offer(query, peer, key, item, now)

    def _offer(
        self, query: _Query, peer: Hashable, key: Key, item: object, now: float
    ) -> SubmitStatus:
        if query.is_complete():
            self._overflow += 1
            return FULL
        if key in query.seen:
            query.duplicates += 1
            self._duplicates += 1
            return DUPLICATE
        query.seen.add(key)
        query.buffer.append((item, peer, key, now - query.start))
        query.accepted += 1
        self._results += 1
        return COMPLETED if query.is_complete() else NEW

    def offer_many(
        self, query_id: QueryId, peer: Hashable, entries: Sequence[tuple[Key, object]], now: float
    ) -> BatchStatus:
        _check_qid(query_id)
        _check_peer(peer)
        now = _check_now(now)
        if not isinstance(entries, list | tuple):
            raise InvalidArgumentTypeError(
                f"entries must be a list or tuple of (key, item) pairs, "
                f"got {type(entries).__name__}"
            )
        for index, entry in enumerate(entries):
            if type(entry) is not tuple or len(entry) != 2:
                raise InvalidArgumentTypeError(
                    f"entries[{index}] must be a (key, item) tuple, got {entry!r:.80}"
                )
            _check_key(f"entries[{index}] key", entry[0])
        query = self._queries.get(query_id)
        if query is None:
            return BatchStatus(self._missing(query_id, len(entries)), 0, 0)
        if query.is_complete():
            self._overflow += len(entries)
            return BatchStatus(FULL, 0, 0)
        accepted = duplicates = 0
        status = NEW
        for position, (key, item) in enumerate(entries):
            code = self._offer(query, peer, key, item, now)
            if code == DUPLICATE:
                duplicates += 1
            else:
                accepted += 1
                if code == COMPLETED:
                    status = COMPLETED
                    self._overflow += len(entries) - position - 1
                    break
        return BatchStatus(status, accepted, duplicates)

    def peer_done(self, query_id: QueryId, peer: Hashable, ok: bool) -> SubmitStatus:
        _check_qid(query_id)
        _check_peer(peer)
        if type(ok) is not bool:
            raise InvalidArgumentTypeError(f"ok must be a bool, got {type(ok).__name__}")
        query = self._queries.get(query_id)
        if query is None:
            return LATE if query_id in self._tombstones else UNKNOWN
        if peer in query.done_peers:
            return DUPLICATE
        was_complete = query.is_complete()
        query.done_peers.add(peer)
        if ok:
            query.peers_ok += 1
        else:
            query.peers_failed += 1
        if was_complete:
            return FULL
        return COMPLETED if query.is_complete() else NEW

    def state(self, query_id: QueryId) -> QueryState:
        _check_qid(query_id)
        if query_id in self._queries:
            return QueryState.LIVE
        if query_id in self._tombstones:
            return QueryState.TOMBSTONE
        return QueryState.UNKNOWN

    def drain(self, query_id: QueryId) -> list[ResultRecord]:
        _check_qid(query_id)
        query = self._queries.get(query_id)
        if query is None or not query.buffer:
            return []
        taken = query.buffer
        query.buffer = []
        return taken

    # -- endings -------------------------------------------------------

    def finish(
        self, query_id: QueryId, now: float, reason: str | None = None
    ) -> CoreOutcome | None:
        _check_qid(query_id)
        now = _check_now(now)
        # (`ending`, not `reason`: Cython types `reason` as an exact str
        # from its annotation, and a Reason member is a subclass of str)
        ending = None
        if reason is not None:
            if reason not in FINISH_REASONS:
                raise InvalidArgumentError(
                    f"reason must be one of {', '.join(FINISH_REASONS)} or None, got {reason!r}"
                )
            ending = Reason(reason)
        query = self._queries.get(query_id)
        if query is None:
            return None
        if ending is None:
            if query.accepted >= query.max_results:
                ending = Reason.MAX_RESULTS
            elif query.expected_peers > 0 and len(query.done_peers) >= query.expected_peers:
                ending = Reason.ALL_PEERS
            else:
                raise InvalidArgumentError(
                    f"reason is required: query {query_id} is not complete "
                    f"({query.accepted}/{query.max_results} results, "
                    f"{len(query.done_peers)}/{query.expected_peers} peers done)"
                )
        self._successful += 1
        return self._end(query, ending, now, record_latency=True)

    def cancel(self, query_id: QueryId, now: float) -> CoreOutcome | None:
        _check_qid(query_id)
        now = _check_now(now)
        query = self._queries.get(query_id)
        if query is None:
            return None
        self._cancelled += 1
        return self._end(query, Reason.CANCELLED, now, record_latency=False)

    def _end(
        self, query: _Query, reason: Reason, now: float, *, record_latency: bool
    ) -> CoreOutcome:
        qid = query.qid
        del self._queries[qid]
        if query.timer is not None:
            self._wheel.remove(query.timer)
            query.timer = None
        self._bury(qid, now)
        duration = now - query.start
        if record_latency:
            self._record_latency(duration)
        return _new_outcome(
            CoreOutcome,
            (
                qid,
                reason,
                query.buffer,
                duration,
                query.peers_ok,
                query.peers_failed,
                query.duplicates,
            ),
        )

    def _bury(self, qid: QueryId, now: float) -> None:
        tombstone = _Timer(qid, _tick_floor(now) + self._grace_ticks, True)
        self._wheel.insert(tombstone)
        self._tombstones[qid] = tombstone

    def _record_latency(self, duration: float) -> None:
        micros = int(duration * 1e6)
        self._histogram.record_value(min(max(micros, _HIST_LOWEST), _HIST_HIGHEST))

    def expire(self, now: float) -> list[CoreOutcome]:
        now = _check_now(now)
        due = self._wheel.poll(_tick_floor(now))
        expired: list[_Query] = []
        for timer in due:
            if timer.is_tombstone:
                del self._tombstones[timer.qid]
            else:
                query = self._queries[timer.qid]
                query.timer = None
                expired.append(query)
        expired.sort(key=_expiry_order)
        outcomes = []
        for query in expired:
            self._timed_out += 1
            outcomes.append(self._end(query, Reason.TIMEOUT, now, record_latency=True))
        return outcomes

    def next_deadline(self) -> float | None:
        expiration = self._wheel.next_expiration()
        return None if expiration is None else expiration[2] / 1000.0

    # -- inspection ----------------------------------------------------

    def counters(self) -> Counters:
        return Counters(
            self._total,
            self._successful,
            self._timed_out,
            self._cancelled,
            len(self._queries),
            self._results,
            self._duplicates,
            self._late,
            self._unknown,
            self._overflow,
        )

    def latency(self) -> Latency:
        histogram = self._histogram
        count = histogram.get_total_count()
        if count == 0:
            return Latency(0, 0.0, 0.0, 0.0, 0.0)
        return Latency(
            count,
            self._quantile(0.50) / 1e6,
            self._quantile(0.95) / 1e6,
            self._quantile(0.99) / 1e6,
            histogram.get_max_value() / 1e6,
        )

    def _quantile(self, quantile: float) -> int:
        # hdrh rounds the target count half-up; ask for the percentile whose
        # rounded count is the nearest rank ceil(q * n), as the Rust crate does.
        total = self._histogram.get_total_count()
        rank = max(1, math.ceil(quantile * total))
        return int(self._histogram.get_value_at_percentile(100.0 * rank / total))

    @property
    def in_flight(self) -> int:
        return len(self._queries)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    @property
    def timers(self) -> int:
        return self._wheel.count

    @property
    def grace(self) -> float:
        return self._grace


def _expiry_order(query: _Query) -> tuple[int, int]:
    return query.deadline, query.seq


# -- the datagram engine ------------------------------------------------

# What DatagramEngine.receive returns first (the same ints as the Rust core).
_DROP = 0
_REQUEST = 1
_ANSWERED = 2
_WRONG_ADDRESS = 3
_NOT_PENDING = 4
_CHECKED = 5
_BAD_SHAPE = 6
_HANDLED = 7
_ENTRY_NAME = 2
_ENTRY_CALLBACK = 4
_ENTRY_CONTEXT = 5
_SHED = 8
_REPLAYED = 9
_SERVED = 10
_FAILED = 11
# rpcudp's framing: a kind byte (0x00 request, 0x01 response), a 20-byte
# message id, the msgpack body; request bodies over 8 KiB are refused.
_HEADER_SIZE = 21
_MAX_REQUEST_BODY = 8192
_unpackb = msgpack.unpackb
_MSGPACK_ERRORS = (
    ValueError,
    TypeError,
    msgpack.ExtraData,
    msgpack.FormatError,
    msgpack.StackError,
)


_FIND_VALUES_HEAD = b"\x92\xabfind_values\x92\xc4"
_MSG_ID_SIZE = 20


_FIND_VALUE_HEAD = b"\x92\xaafind_value\x92\xc4"


def _find_values_request(datagram: bytes) -> tuple[bytes, bytes] | None:
    """A find_values request's (sender id, key), if its body is msgpack's
    usual encoding of ``["find_values", [id, key]]`` (fixarray, fixstr,
    fixarray, bin 8 each; ids of 1 to 64 bytes), else None (see the core's
    ``find_values_request``)."""
    return _id_and_key(datagram, _FIND_VALUES_HEAD)


def _find_value_request(datagram: bytes) -> tuple[bytes, bytes] | None:
    """``_find_values_request`` for a find_value request (stock
    ``Server.get``'s): ``["find_value", [id, key]]`` packed the same way."""
    return _id_and_key(datagram, _FIND_VALUE_HEAD)


def _id_and_key(datagram: bytes, head: bytes) -> tuple[bytes, bytes] | None:
    """The (id, key) of a request whose body starts with ``head`` (the RPC's
    name and the arguments' array, up to the id's bin 8 marker) and holds
    its two arguments as bin 8 of 1 to 64 bytes each, nothing after."""
    at = _HEADER_SIZE + len(head)
    if len(datagram) <= at or not datagram.startswith(head, _HEADER_SIZE):
        return None
    id_size = datagram[at]
    id_end = at + 1 + id_size
    if not 1 <= id_size <= _MAX_ID_SIZE or len(datagram) < id_end + 2 or datagram[id_end] != 0xC4:
        return None
    key_size = datagram[id_end + 1]
    if not 1 <= key_size <= _MAX_ID_SIZE or len(datagram) != id_end + 2 + key_size:
        return None
    return datagram[at + 1 : id_end], datagram[id_end + 2 :]


_PING_HEAD = b"\x92\xa4ping\x91\xc4"
_PING_AT = _HEADER_SIZE + len(_PING_HEAD)


def _ping_request(datagram: bytes) -> bytes | None:
    """A ping request's sender id, if its body is msgpack's usual encoding
    of ``["ping", [id]]`` (fixarray, fixstr, fixarray, bin 8; an id of 1 to
    64 bytes), else None (see the core's ``ping_request``)."""
    at = _PING_AT
    if len(datagram) <= at or not datagram.startswith(_PING_HEAD, _HEADER_SIZE):
        return None
    id_size = datagram[at]
    if not 1 <= id_size <= _MAX_ID_SIZE or len(datagram) != at + 1 + id_size:
        return None
    return datagram[at + 1 :]


def _count(stats: dict[str, int] | None, name: str) -> None:
    """``stats[name] += 1`` in the dict's own storage (as the core writes
    it: a ``Counter``'s ``__setitem__`` is not called)."""
    if stats is not None:
        dict.__setitem__(stats, name, dict.get(stats, name, 0) + 1)


_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


def _real(value: Any) -> float:
    """``value`` as the core's f64 arguments take it (``PyFloat_AsDouble``:
    a float, or what has ``__float__`` or ``__index__``), else its
    TypeError."""
    if type(value) is float:
        return value
    kind = type(value)
    if not (hasattr(kind, "__float__") or hasattr(kind, "__index__")):
        raise TypeError(f"must be real number, not {kind.__name__}")
    return float(value)


def _check_exact(value: Any, kind: type, name: str, what: str) -> None:
    if type(value) is not kind:
        raise InvalidArgumentTypeError(f"{name} must be {what}, got {type(value).__name__}")


#: what a DatagramEngine serves with (``serve``): the replay cache, the
#: record store, the client pad, the fair share, the stats, a ping's answer,
#: the plain-value store
_Serving: TypeAlias = tuple[
    "ReplayCache", Any, bytes, Any, "dict[str, int] | None", "bytes | None", Any
]

#: the RPCs whose answers a DatagramEngine keeps (``keep_answer(rpc=)``)
_KEPT_RPCS = ("find_values", "find_value")


class _KeptAnswers:
    """One RPC's answers kept packed, by key: (generation, until, body),
    bounded by count and bytes (the oldest kept leave first)."""

    __slots__ = ("answers", "max_bytes", "max_count", "size")

    def __init__(self) -> None:
        self.answers: dict[bytes, tuple[int, float, bytes]] = {}
        self.size = 0
        self.max_count = 0
        self.max_bytes = 0

    def keep(self, key: bytes, generation: int, until: float, body: bytes) -> None:
        self.forget(key)
        size = len(body)
        if size > self.max_bytes:
            return
        answers = self.answers
        answers[key] = (generation, until, body)
        self.size += size
        while len(answers) > self.max_count or self.size > self.max_bytes:
            self.size -= len(answers.pop(next(iter(answers)))[2])

    def forget(self, key: bytes) -> None:
        old = self.answers.pop(key, None)
        if old is not None:
            self.size -= len(old[2])

    def clear(self) -> None:
        self.answers = {}
        self.size = 0

    def valid(self, key: bytes, generation: Any, now: float) -> bytes | None:
        """``key``'s answer if kept at ``generation`` (an int) and ``now`` is
        before its ``until``."""
        kept = self.answers.get(key)
        if kept is None or type(generation) is not int or kept[0] != generation:
            return None
        return kept[2] if now < kept[1] else None


class DatagramEngine:
    """Reads each arriving datagram in one call: rpcudp's framing, the
    msgpack body, and for a response its request in ``pending`` (the RPC
    table's ``dict[bytes, tuple]``, whose tuples hold the address asked at
    index 1 and the RPC's name at index 2) and the shape of the answer
    (``shapes``: RPC name -> a code of ``dhtquery.query.shapes``). See
    ``_core.pyi`` for what ``receive`` returns."""

    __slots__ = (
        "_core",
        "_dispatch",
        "_entry",
        "_kept",
        "_pad",
        "_pending",
        "_resent",
        "_serving",
        "_shapes",
    )

    def __init__(
        self,
        pending: dict[bytes, tuple[Any, ...]],
        shapes: dict[str, int] | None = None,
        *,
        requests: tuple[QueryCore, bytes, dict[bytes, bytes], type[tuple[Any, ...]] | None]
        | None = None,
    ) -> None:
        if type(pending) is not dict:
            raise InvalidArgumentTypeError(f"pending must be a dict, got {type(pending).__name__}")
        if shapes is not None and type(shapes) is not dict:
            raise InvalidArgumentTypeError(
                f"shapes must be a dict or None, got {type(shapes).__name__}"
            )
        self._pending = pending
        self._shapes = shapes
        self._core: QueryCore | None = None
        self._pad = b""
        self._resent: dict[bytes, bytes] = {}
        self._entry: type[tuple[Any, ...]] | None = None
        #: (waiting, waiting_background, recently_failed, extensions): see
        #: dispatch_answers
        self._dispatch: tuple[Any, Any, dict[Any, Any], dict[Any, Any]] | None = None
        if requests is not None:
            self._core, self._pad, self._resent, self._entry = _check_requests(requests)
        #: (replay, records, client_pad, fair_share, stats, ping, values)
        #: while serving
        self._serving: _Serving | None = None
        #: RPC name -> its answers kept packed (find_values, find_value)
        self._kept = {rpc: _KeptAnswers() for rpc in _KEPT_RPCS}

    @property
    def pending(self) -> dict[bytes, tuple[Any, ...]]:
        return self._pending

    @property
    def shapes(self) -> dict[str, int] | None:
        return self._shapes

    def receive(
        self, datagram: bytes, address: object
    ) -> tuple[int, Any, Any, tuple[Any, ...] | None]:
        if type(datagram) is not bytes:
            raise InvalidArgumentTypeError(f"datagram must be bytes, got {type(datagram).__name__}")
        size = len(datagram)
        if size <= _HEADER_SIZE:
            return (_DROP, "short", None, None)
        kind = datagram[0]
        if kind == 0:
            if size - _HEADER_SIZE > _MAX_REQUEST_BODY:
                return (_DROP, "oversize_request", None, None)
        elif kind != 1:
            return (_DROP, "bad_kind", None, None)
        try:
            value = _unpackb(
                datagram[_HEADER_SIZE:], raw=False, strict_map_key=False, use_list=True
            )
        except UnicodeDecodeError:
            return (_DROP, "bad_utf8", None, None)
        except _MSGPACK_ERRORS:
            return (_DROP, "malformed", None, None)
        msg_id = datagram[1:_HEADER_SIZE]
        if kind == 0:
            return (_REQUEST, msg_id, value, None)
        pending = self._pending
        request = pending.get(msg_id)
        if request is None:
            return (_NOT_PENDING, msg_id, value, None)
        if request[1] != address:
            return (_WRONG_ADDRESS, msg_id, value, request)
        shapes = self._shapes
        code = None if shapes is None else shapes.get(request[2])
        if code is not None and (type(code) is not int or not 0 <= code < len(_SHAPE_CHECKS)):
            raise InvalidArgumentError(
                f"the shape of {request[2]!r} must be an int from 0 to 5, got {code!r}"
            )
        del pending[msg_id]
        if code is None:
            return (_ANSWERED, msg_id, value, request)
        return (
            _CHECKED if _SHAPE_CHECKS[code](value) else _BAD_SHAPE,
            msg_id,
            value,
            request,
        )

    def receive_at(
        self,
        datagram: bytes,
        address: object,
        now: float,
        lag: float,
        peers: PeerBook | None = None,
    ) -> tuple[int, Any, Any, tuple[Any, ...] | None, float]:
        core = self._opening()
        now = _check_now(now)
        lag = _check_float("lag", lag, allow_zero=True)
        serving = self._serving
        if (
            serving is not None
            and type(datagram) is bytes
            and len(datagram) > _HEADER_SIZE
            and datagram[0] == 0
        ):
            return self._serve_request(serving, datagram, address, now)
        status, first, value, request = self.receive(datagram, address)
        if request is None or status == _WRONG_ADDRESS:
            return (status, first, value, request, 0.0)
        query_id = request[_ENTRY_QUERY_ID]
        if type(query_id) is not QueryId:
            raise InvalidArgumentTypeError(
                f"a request's query id must be a QueryId, got {type(query_id).__name__}"
            )
        core.finish(query_id, now, Reason.ALL_PEERS)
        resent = self._resent
        if resent:
            resent.pop(query_id.bytes, None)
        retry = request[_ENTRY_RETRY]
        if retry is not None and retry[_RETRY_TRIES] > 1:
            rtt = _AMBIGUOUS_RTT
        else:
            rtt = now - request[_ENTRY_SENT]
            lagged = lag - request[_ENTRY_LAG] + request[_ENTRY_LAGGED]
            if lagged:
                # the time this node's loop was late is not the peer's round trip
                rtt = rtt - lagged if rtt > lagged else 0.0
        if peers is not None and status >= _CHECKED:
            # (the protocol's call to its book per answer, made here)
            peers.answered(address, rtt, status == _CHECKED, now)
        dispatch = self._dispatch
        if dispatch is not None and status == _CHECKED and rtt >= 0:
            callback = request[_ENTRY_CALLBACK] if len(request) > _ENTRY_CONTEXT else None
            waiting, waiting_background, recently_failed, extensions = dispatch
            if (
                type(callback) is LookupAnswers
                and not recently_failed
                and not waiting
                and not waiting_background
                and extensions.get(address) is True
            ):
                try:
                    callback(request[_ENTRY_CONTEXT], address, request[_ENTRY_NAME], True, value)
                except Exception as exc:  # (the protocol's to log)
                    return (_HANDLED, first, exc, request, rtt)
                return (_HANDLED, first, None, request, rtt)
        return (status, first, value, request, rtt)

    def receive_batch(
        self,
        receiver: BatchReceiver,
        socket: DatagramSocket,
        now: float,
        lag: float,
        peers: PeerBook | None,
        dispatch: Callable[[int, Any, Any, tuple[Any, ...] | None, float, Any], object],
        known: set[bytes] | None = None,
    ) -> int:
        if type(receiver) is not BatchReceiver:
            raise InvalidArgumentTypeError(
                f"receiver must be a BatchReceiver of this core, got {type(receiver).__name__}"
            )
        if type(socket) is not DatagramSocket:
            raise InvalidArgumentTypeError(
                f"socket must be a DatagramSocket of this core, got {type(socket).__name__}"
            )
        self._opening()
        now = _check_now(now)
        lag = _check_float("lag", lag, allow_zero=True)
        if not callable(dispatch):
            raise InvalidArgumentTypeError(
                f"dispatch must be callable, got {type(dispatch).__name__}"
            )
        if known is not None and type(known) is not set:
            raise InvalidArgumentTypeError(
                f"known must be a set or None, got {type(known).__name__}"
            )
        if socket.closed:
            return 0
        batch = receiver.receive(socket._sock)
        # (the answers served here go out after the batch, as the Rust
        # core's one sendmmsg sends them)
        replies: list[tuple[bytes, Any]] = []
        for datagram, address in batch:
            if len(address) != 2:
                address = address[:2]
            try:
                status, first, value, request, rtt = self.receive_at(
                    datagram, address, now, lag, peers
                )
            except Exception as exc:
                if not dispatch(_FAILED, None, exc, None, 0.0, address):
                    break
                continue
            # (served to a client, or to a node known already: nobody to
            # welcome)
            if (
                status == _REPLAYED
                or (status == _SERVED and (first is None or (known is not None and first in known)))
            ) and type(value) is bytes:
                replies.append((value, address))
                continue
            if status == _HANDLED and value is None:
                continue
            if not dispatch(status, first, value, request, rtt, address):
                break
        for value, address in replies:
            socket.send(value, address)
        return len(batch)

    def dispatch_answers(
        self,
        waiting: Any,
        waiting_background: Any,
        recently_failed: dict[Any, Any],
        extensions: dict[Any, Any],
    ) -> None:
        for name, value in (("recently_failed", recently_failed), ("extensions", extensions)):
            if type(value) is not dict:
                raise InvalidArgumentTypeError(f"{name} must be a dict, got {type(value).__name__}")
        if self._dispatch is not None:
            raise InvalidArgumentError("this engine dispatches answers already")
        self._dispatch = (waiting, waiting_background, recently_failed, extensions)

    def _serve_request(
        self,
        serving: _Serving,
        datagram: bytes,
        address: Any,
        now: float,
    ) -> tuple[int, Any, Any, None, float]:
        """``receive_at`` for a request while serving (see ``_core.pyi``)."""
        if len(datagram) - _HEADER_SIZE > _MAX_REQUEST_BODY:
            return (_DROP, "oversize_request", None, None, 0.0)
        replay, records, client_pad, fair_share, stats, ping, values = serving
        # (a find_value is answered here only given the store of plain
        # values, serve(values=); a ping only given its answer, serve(ping=))
        rpc, store = "find_values", records
        found = _find_values_request(datagram)
        if found is None and values is not None:
            rpc, store = "find_value", values
            found = _find_value_request(datagram)
        pinger = _ping_request(datagram) if found is None and ping is not None else None
        value = None
        if found is None and pinger is None:
            try:
                value = _unpackb(
                    datagram[_HEADER_SIZE:], raw=False, strict_map_key=False, use_list=True
                )
            except UnicodeDecodeError:
                return (_DROP, "bad_utf8", None, None, 0.0)
            except _MSGPACK_ERRORS:
                return (_DROP, "malformed", None, None, 0.0)
        msg_id = datagram[1:_HEADER_SIZE]
        # (the fair share asked about a request answered here, before it is;
        # one handed over is asked about by the protocol)
        answered = replay.get(address, msg_id, now)
        if answered is not None:
            if fair_share is not None and not fair_share.admit(address):
                return (_SHED, "fair_share", None, None, 0.0)
            _count(stats, "replayed")
            return (_REPLAYED, None, answered, None, 0.0)
        # what is answered here: a find_values or find_value of a kept key,
        # a ping
        ours: tuple[bytes, bytes] | None = None
        if found is not None:
            sender, key = found
            generation = getattr(store, "generation")  # noqa: B009 (as the core reads it)
            kept = self._kept[rpc].valid(key, generation, now)
            if kept is not None:
                ours = sender, kept
        elif pinger is not None and ping is not None:
            ours = pinger, ping
        if ours is not None:
            sender, body = ours
            if fair_share is not None and not fair_share.admit(address):
                return (_SHED, "fair_share", None, None, 0.0)
            answer = b"\x01" + msg_id + body
            replay.put(address, msg_id, answer, now)
            _count(stats, "served")
            if msg_id[16:] == client_pad:
                _count(stats, "client_requests")
                return (_SERVED, None, answer, None, 0.0)
            return (_SERVED, sender, answer, None, 0.0)
        if found is not None:
            value = _unpackb(
                datagram[_HEADER_SIZE:], raw=False, strict_map_key=False, use_list=True
            )
        return (_REQUEST, msg_id, value, None, 0.0)

    def serve(
        self,
        replay: ReplayCache,
        records: Any,
        client_pad: bytes,
        fair_share: Any = None,
        *,
        stats: dict[str, int] | None = None,
        max_answers: int = 1024,
        max_answer_bytes: int = 1024 * 1024,
        ping: bytes | None = None,
        values: Any = None,
    ) -> None:
        self._opening()
        if type(replay) is not ReplayCache:
            raise InvalidArgumentTypeError(
                f"replay must be a ReplayCache of this core, got {type(replay).__name__}"
            )
        if type(client_pad) is not bytes or len(client_pad) != _MSG_ID_SIZE - 16:
            raise InvalidArgumentError(f"client_pad must be 4 bytes, got {client_pad!r}")
        if stats is not None and not isinstance(stats, dict):
            raise InvalidArgumentTypeError(
                f"stats must be a dict or None, got {type(stats).__name__}"
            )
        if ping is not None and type(ping) is not bytes:
            raise InvalidArgumentTypeError(f"ping must be bytes or None, got {type(ping).__name__}")
        self._serving = (replay, records, client_pad, fair_share, stats, ping, values)
        for kept in self._kept.values():
            kept.max_count = max_answers
            kept.max_bytes = max_answer_bytes

    def _kept_of(self, rpc: Any) -> _KeptAnswers:
        if rpc is None:
            return self._kept["find_values"]
        if type(rpc) is not str:
            raise InvalidArgumentTypeError(f"rpc must be a str, got {type(rpc).__name__}")
        kept = self._kept.get(rpc)
        if kept is None:
            raise InvalidArgumentError(f'rpc must be "find_values" or "find_value", got {rpc!r}')
        return kept

    def keep_answer(
        self, key: bytes, generation: int, until: float, body: bytes, *, rpc: str | None = None
    ) -> None:
        until = _real(until)  # (the core's f64 argument, read before the rest)
        kept = self._kept_of(rpc)
        _check_exact(key, bytes, "key", "bytes")
        _check_exact(body, bytes, "body", "bytes")
        _check_exact(generation, int, "generation", "an int")
        if not _I64_MIN <= generation <= _I64_MAX:
            raise OverflowError("Python int too large to convert to C long")
        kept.keep(key, generation, until, body)

    def forget_answer(self, key: bytes, *, rpc: str | None = None) -> None:
        kept = self._kept_of(rpc)
        _check_exact(key, bytes, "key", "bytes")
        kept.forget(key)

    def forget_answers(self) -> None:
        for kept in self._kept.values():
            kept.clear()

    def kept_answer(
        self, key: bytes, generation: Any, now: float, *, rpc: str | None = None
    ) -> bytes | None:
        now = _real(now)
        kept = self._kept_of(rpc)
        _check_exact(key, bytes, "key", "bytes")
        return kept.valid(key, generation, now)

    def kept_answers(self, *, rpc: str | None = None) -> dict[bytes, tuple[int, float, bytes]]:
        return dict(self._kept_of(rpc).answers)

    @property
    def kept_bytes(self) -> int:
        return sum(kept.size for kept in self._kept.values())

    def open(
        self,
        timeout: float,
        now: float,
        lag: float,
        address: Any,
        name: Any,
        future: Any,
        callback: Any,
        context: Any,
        body: bytes,
        deadline: float | None = None,
        overdue: Any = None,
    ) -> bytes:
        self._opening()
        timeout = _check_float("timeout", timeout, allow_zero=False)
        if timeout > MAX_TIMEOUT:
            raise InvalidArgumentError(f"timeout must be <= {MAX_TIMEOUT}, got {timeout!r}")
        now = _check_now(now)
        lag = _check_float("lag", lag, allow_zero=True)
        if type(body) is not bytes:
            raise InvalidArgumentTypeError(f"body must be bytes, got {type(body).__name__}")
        if deadline is not None:
            deadline = _check_float("deadline", deadline, allow_zero=True)
        return self._open_one(
            timeout, now, lag, address, name, future, callback, context, body, deadline, overdue
        )

    def _open_one(
        self,
        timeout: float,
        now: float,
        lag: float,
        address: Any,
        name: Any,
        future: Any,
        callback: Any,
        context: Any,
        body: bytes,
        deadline: float | None,
        overdue: Any,
    ) -> bytes:
        """``open``'s work, its arguments checked."""
        core = self._core
        assert core is not None
        query_id = core.register(timeout, 1, 1, now)
        msg_id = query_id.bytes + self._pad
        datagram = b"\x00" + msg_id + body
        retry = None if deadline is None else [datagram, deadline, 1, timeout, now, overdue]
        fields = (query_id, address, name, future, callback, context, now, retry, lag, 0.0, 0.0)
        entry = self._entry
        self._pending[msg_id] = fields if entry is None else tuple.__new__(entry, fields)
        return datagram

    def open_asks(
        self,
        asks: list[tuple[Any, Any]],
        names: tuple[Any, Any],
        bodies: dict[Any, bytes],
        now: float,
        lag: float,
        peers: Any,
        extensions: dict[Any, Any],
        budget: float | None,
        span: float,
        first_span: float,
        callback: Any,
        overdue: Any,
        send: DatagramSocket | Callable[[bytes, Any], object],
    ) -> tuple[float, int, int]:
        self._opening()
        if type(asks) is not list:
            raise InvalidArgumentTypeError(f"asks must be a list, got {type(asks).__name__}")
        if type(names) is not tuple:
            raise InvalidArgumentTypeError(
                f"names must be a tuple (ours, stock), got {type(names).__name__}"
            )
        if len(names) != 2:
            raise InvalidArgumentTypeError(
                f"names must be a tuple (ours, stock), got {len(names)} items"
            )
        if type(bodies) is not dict:
            raise InvalidArgumentTypeError(f"bodies must be a dict, got {type(bodies).__name__}")
        if type(extensions) is not dict:
            raise InvalidArgumentTypeError(
                f"extensions must be a dict, got {type(extensions).__name__}"
            )
        now = _check_now(now)
        lag = _check_float("lag", lag, allow_zero=True)
        if budget is not None:
            budget = _check_float("timeout", budget, allow_zero=False)
            if budget > MAX_TIMEOUT:
                raise InvalidArgumentError(f"timeout must be <= {MAX_TIMEOUT}, got {budget!r}")
        span = _check_float("span", span, allow_zero=False)
        first_span = _check_float("first_span", first_span, allow_zero=False)
        if type(send) is DatagramSocket:
            send = send.send
        elif not callable(send):
            raise InvalidArgumentTypeError(
                f"send must be a DatagramSocket or callable, got {type(send).__name__}"
            )
        ours, stock = names
        earliest = math.inf
        refused = 0
        for index, ask in enumerate(asks):
            address = ask[1]
            known = extensions.get(address)
            is_stock = known is False
            name = stock if is_stock else ours
            body = bodies.get(name)
            if body is None:
                # (its body is not packed yet: the caller packs it and
                # sends the rest)
                return (earliest, refused, index)
            if type(body) is not bytes:
                raise InvalidArgumentTypeError(f"a body must be bytes, got {type(body).__name__}")
            _, due, measured = peers.timing(address)
            if not is_stock and known is None and peers.successes(address) > 0:
                # an extension RPC to a peer that answered others: one try
                # at its RTO (see DhtProtocol._request)
                timeout = due
            elif budget is not None:
                timeout = budget
            else:
                timeout = span * due if measured else first_span
            first = due if due < timeout else timeout
            if not 0 < first <= MAX_TIMEOUT:
                # (only a PeerBook of Python's own could say so)
                raise InvalidArgumentError(
                    f"timeout must be > 0 and <= {MAX_TIMEOUT!r}, got {first!r}"
                )
            datagram = self._open_one(
                first, now, lag, address, name, None, callback, ask, body, now + timeout, overdue
            )
            if first < earliest:
                earliest = first
            try:
                send(datagram, address)
            except ValueError:  # uvloop: an address of another family
                refused += 1
        return (earliest, refused, len(asks))

    def _opening(self) -> QueryCore:
        if self._core is None:
            raise InvalidArgumentTypeError(
                "this engine opens no requests: it was made without requests="
            )
        return self._core


# Where a request's entry (the RPC table's _Pending) keeps what the engine
# reads, and where its retry list keeps the tries made (as the Rust core).
_ENTRY_QUERY_ID = 0
_ENTRY_SENT = 6
_ENTRY_RETRY = 7
_ENTRY_LAG = 8
_ENTRY_LAGGED = 10
_RETRY_TRIES = 2
# The RTT of an answer to a request sent more than once (Karn's rule).
_AMBIGUOUS_RTT = -1.0
_PAD_SIZE = 4


def _check_requests(
    requests: object,
) -> tuple[QueryCore, bytes, dict[bytes, bytes], type[tuple[Any, ...]] | None]:
    if type(requests) is not tuple or len(requests) != 4:
        raise InvalidArgumentTypeError(
            f"requests must be a (core, pad, resent, entry) tuple, got {type(requests).__name__}"
        )
    core, pad, resent, entry = requests
    if type(core) is not QueryCore:
        raise InvalidArgumentTypeError(
            f"requests' core must be a QueryCore of this core, got {type(core).__name__}"
        )
    if type(pad) is not bytes or len(pad) != _PAD_SIZE:
        raise InvalidArgumentError(f"requests' pad must be 4 bytes, got {pad!r}")
    if type(resent) is not dict:
        raise InvalidArgumentTypeError(
            f"requests' resent must be a dict, got {type(resent).__name__}"
        )
    if entry is not None and not (isinstance(entry, type) and issubclass(entry, tuple)):
        raise InvalidArgumentTypeError(
            f"requests' entry must be a subclass of tuple or None, got {entry!r}"
        )
    return core, pad, resent, entry


# -- many datagrams per call ------------------------------------------------

_MAX_BATCH = 1024
_MAX_BATCH_SIZE = 65_536


class DatagramSocket:
    """Sends to a transport's own socket while its queue is empty and it is
    open, else through ``fallback`` (the transport's ``sendto``); made with
    ``call_soon``, defers its sends to ``flush``. The Rust core makes one
    ``sendto`` (one ``sendmmsg`` a flush) with no Python call; this twin
    calls the socket's ``sendto`` per datagram. See ``_core.pyi``."""

    __slots__ = (
        "_call_soon",
        "_closed",
        "_fallback",
        "_family",
        "_queued",
        "_scheduled",
        "_sent",
        "_sock",
        "_waiting",
    )

    def __init__(
        self,
        sock: _socket.socket,
        queued: Sized,
        fallback: Callable[[bytes, Any], object],
        call_soon: Callable[[Callable[[], object]], object] | None = None,
    ) -> None:
        if not isinstance(sock, _socket.socket):
            raise InvalidArgumentTypeError(f"sock must be a socket, got {type(sock).__name__}")
        if sock.fileno() < 0:
            raise InvalidArgumentError("sock is closed")
        if sock.family not in (_socket.AF_INET, _socket.AF_INET6):
            raise InvalidArgumentError(
                f"sock must be of family AF_INET or AF_INET6, got {int(sock.family)}"
            )
        try:
            len(queued)
        except TypeError:
            raise InvalidArgumentTypeError(
                f"queued must be a sized container, got {type(queued).__name__}"
            ) from None
        if not callable(fallback):
            raise InvalidArgumentTypeError(
                f"fallback must be callable, got {type(fallback).__name__}"
            )
        if call_soon is not None and not callable(call_soon):
            raise InvalidArgumentTypeError(
                f"call_soon must be callable or None, got {type(call_soon).__name__}"
            )
        self._sock = sock
        self._family = sock.family
        self._queued = queued
        self._fallback = fallback
        self._call_soon = call_soon
        self._closed = False
        self._sent = 0
        self._waiting: list[tuple[bytes, Any]] = []
        #: a flush is scheduled for what waits (see the Rust core's)
        self._scheduled = False

    def _open(self) -> bool:
        return not self._closed and not self._queued

    def _send_now(self, datagram: bytes, address: Any) -> bool:
        try:
            self._sock.sendto(datagram, _socket.MSG_DONTWAIT, address)
        except (OSError, ValueError, TypeError, OverflowError):
            return False
        self._sent += 1
        return True

    def send(self, datagram: bytes, address: Any) -> None:
        if type(datagram) is not bytes:
            raise InvalidArgumentTypeError(f"datagram must be bytes, got {type(datagram).__name__}")
        if self._open() and _ip_literal_of(address, self._family):
            if self._call_soon is not None:
                self._waiting.append((datagram, address))
                if not self._scheduled:
                    self._scheduled = True
                    try:
                        self._call_soon(self.flush)
                    except BaseException as exc:
                        self._scheduled = False
                        if not isinstance(exc, Exception):
                            raise
                        # (no loop to come back: sent now instead)
                        self.flush()
                return
            if self._send_now(datagram, address):
                return
        # What waits goes first; this datagram goes to the fallback even if
        # one of those failed there (the first error is raised after).
        try:
            self.flush()
        except Exception:
            # (as the Rust core: the flush's error is the one raised)
            with contextlib.suppress(Exception):
                self._fallback(datagram, address)
            raise
        self._fallback(datagram, address)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        self._scheduled = False
        if not waiting:
            return
        sent = 0
        if self._open():
            for datagram, address in waiting:
                # (the core's sendmmsg stops at the first the kernel refuses)
                if not self._send_now(datagram, address):
                    break
                sent += 1
        first_error: BaseException | None = None
        for datagram, address in waiting[sent:]:
            try:
                self._fallback(datagram, address)
            except Exception as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def waiting(self) -> int:
        return len(self._waiting)


def _ip_literal_of(address: Any, family: int) -> bool:
    """Is ``address`` ``(host, port, ...)`` with ``host`` an IP literal of
    ``family`` and ``port`` an int of 16 bits? (What the Rust core sends
    itself; anything else goes to the fallback.)"""
    if type(address) is not tuple or len(address) < 2:
        return False
    host, port = address[0], address[1]
    if type(host) is not str or type(port) is not int or not 0 <= port <= 0xFFFF:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == (4 if family == _socket.AF_INET else 6)


class BatchReceiver:
    """The datagrams waiting in a non-blocking socket, ``count`` at most per
    call: the Rust core makes one ``recvmmsg`` of it, this twin a
    ``recvfrom`` per datagram. See ``_core.pyi``."""

    __slots__ = ("_count", "_size")

    def __init__(self, count: int, size: int) -> None:
        for name, value, high in (("count", count, _MAX_BATCH), ("size", size, _MAX_BATCH_SIZE)):
            if type(value) is not int:
                raise InvalidArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
            if not 1 <= value <= high:
                raise InvalidArgumentError(f"{name} must be in [1, {high}], got {value!r}")
        self._count = count
        self._size = size

    @property
    def count(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        return self._size

    def receive(self, sock: _socket.socket) -> list[tuple[bytes, Any]]:
        if sock.fileno() < 0:
            raise InvalidArgumentError("sock is closed")
        received = []
        recvfrom, size, flags = sock.recvfrom, self._size, _socket.MSG_DONTWAIT
        for _ in range(self._count):
            try:
                received.append(recvfrom(size, flags))
            except BlockingIOError:
                break
        return received


# -- the lookup's decisions ---------------------------------------------------

_U64 = (1 << 64) - 1
#: Bytes of a node id a lookup reads: kademlia's are 20 (SHA-1), stock reads
#: any (shapes.MAX_NODE_ID_SIZE).
_MAX_ID_SIZE = 64
_ASK = LookupStep.ASK
_ENDED = LookupStep.ENDED
_NO_ASKS: tuple[()] = ()


def _check_id(node_id: object) -> bytes:
    if type(node_id) is not bytes:
        raise InvalidArgumentTypeError(f"node id must be bytes, got {type(node_id).__name__}")
    if not 0 < len(node_id) <= _MAX_ID_SIZE:
        raise InvalidArgumentError(f"node id must be 1 to 64 bytes, got {len(node_id)}")
    return node_id


def _checked_lists(ids: object, addresses: object) -> tuple[list[bytes], list[Any]]:
    if type(ids) is not list or type(addresses) is not list:
        raise InvalidArgumentTypeError("candidates' ids and addresses must be lists")
    if len(ids) != len(addresses):
        raise InvalidArgumentError(f"candidates: {len(ids)} ids but {len(addresses)} addresses")
    return ids, addresses


class Candidates:
    """The candidates a lookup starts from, read once for every lookup until
    they change: ids (1 to 64 bytes, distinct) as integers, and addresses.
    See ``_core.pyi``."""

    __slots__ = ("_entries",)

    def __init__(self, ids: list[bytes], addresses: list[Any]) -> None:
        ids, addresses = _checked_lists(ids, addresses)
        for node_id in ids:
            _check_id(node_id)
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("candidates: an id is there twice")
        #: (id as an int, id, address), in the given order
        self._entries = [
            (int.from_bytes(node_id, "big"), node_id, address)
            for node_id, address in zip(ids, addresses, strict=True)
        ]

    def __len__(self) -> int:
        return len(self._entries)


class LookupCore:
    """The decisions of one streaming lookup (``dhtquery.dht.lookup``):
    which candidates are the k closest, whom to ask next, when the lookup
    is over. The lookup sends, times and reads; this says what to do next.
    See ``_core.pyi`` for the contract (the Rust core's ``LookupCore`` keeps
    it too, with the same answers for the same calls and seed)."""

    __slots__ = (
        "_adaptive",
        "_alpha",
        "_answers",
        "_asked",
        "_clock",
        "_depth",
        "_failed_by_rto",
        "_failed_recently",
        "_fair_score",
        "_final_depth",
        "_holders",
        "_in_flight",
        "_ksize",
        "_late",
        "_max_depth",
        "_own_id",
        "_quorum",
        "_ranked",
        "_recently_failed",
        "_rng",
        "_scores",
        "_skipped",
        "_slowest",
        "_srtt",
        "_srtts",
        "_target",
        "_unmeasured",
    )

    def __init__(
        self,
        own_id: bytes,
        key: bytes,
        alpha: int,
        ksize: int,
        quorum: int,
        adaptive: bool,
        fair_score: float,
        seed: int,
        peers: Any,
        clock: Any,
        failed_recently: Any,
        recently_failed: Any,
    ) -> None:
        self._own_id = _check_id(own_id)
        self._target = int.from_bytes(_check_id(key), "big")
        self._alpha = _check_int("alpha", alpha, 1, MAX_EXPECTED_PEERS)
        self._ksize = _check_int("ksize", ksize, 1, MAX_EXPECTED_PEERS)
        self._quorum = _check_int("quorum", quorum, 1, MAX_EXPECTED_PEERS)
        if type(adaptive) is not bool:
            raise InvalidArgumentTypeError(
                f"adaptive must be a bool, got {type(adaptive).__name__}"
            )
        self._adaptive = adaptive
        if type(fair_score) is not float:
            raise InvalidArgumentTypeError(
                f"fair_score must be a float, got {type(fair_score).__name__}"
            )
        if not 0.0 < fair_score <= 1.0:
            raise InvalidArgumentError(f"fair_score must be in (0, 1], got {fair_score!r}")
        self._fair_score = fair_score
        self._rng = _check_int("seed", seed, 0, _U64)
        # a PeerBook, or anything with its srtt(address) and
        # scores(addresses, now)
        srtt = getattr(peers, "srtt", None)
        scores = getattr(peers, "scores", None)
        if not callable(srtt) or not callable(scores):
            raise InvalidArgumentTypeError(
                f"peers must be a PeerBook or have srtt() and scores(), got {type(peers).__name__}"
            )
        for name, function in (
            ("clock", clock),
            ("failed_recently", failed_recently),
            ("recently_failed", recently_failed),
        ):
            if not callable(function):
                raise InvalidArgumentTypeError(
                    f"{name} must be callable, got {type(function).__name__}"
                )
        self._srtt = srtt
        self._scores = scores
        self._clock = clock
        self._failed_recently = failed_recently
        self._recently_failed = recently_failed
        #: candidates not failed, (XOR distance, id, address), closest first
        #: (equal distances in arrival order); the first ksize are "the k
        #: closest"
        self._ranked: list[tuple[int, bytes, Any]] = []
        #: id -> its SRTT when it became a candidate (None: never measured)
        self._srtts: dict[bytes, float | None] = {}
        #: the largest of those: below RTT_BAND, time cannot rank candidates
        self._slowest = 0.0
        self._asked: set[bytes] = set()
        #: id -> depth of a contact learned from an answer (absent: 1)
        self._depth: dict[bytes, int] = {}
        #: requests past their RTO and still out: id -> address
        self._late: dict[bytes, Any] = {}
        #: candidates left out as failed lately: id -> ranked entry
        self._skipped: dict[bytes, tuple[int, bytes, Any]] = {}
        self._in_flight = 0
        #: ids of the requests in flight to peers of unknown round trip
        self._unmeasured: set[bytes] = set()
        self._holders = 0
        self._failed_by_rto = False
        #: answers counted (settle), the deepest of their depths, and the
        #: depth at which the lookup was complete (-1: not yet)
        self._answers = 0
        self._max_depth = 0
        self._final_depth = -1

    def _draw(self) -> int:
        # splitmix64 (Steele, Lea, Flood 2014), as the Rust core's
        state = self._rng = (self._rng + 0x9E3779B97F4A7C15) & _U64
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _U64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
        return z ^ (z >> 31)

    def start(
        self, candidates: Candidates | tuple[list[bytes], list[Any]], holders: int
    ) -> tuple[LookupStep, int, list[tuple[bytes, Any]]]:
        if type(candidates) is Candidates:
            snapshot = candidates
            lists = None
        else:
            if type(candidates) is not tuple or len(candidates) != 2:
                raise InvalidArgumentTypeError(
                    "candidates must be a Candidates or a tuple (ids, addresses),"
                    f" got {type(candidates).__name__}"
                )
            lists = _checked_lists(*candidates)
        self._holders = _check_int("holders", holders, 0, MAX_EXPECTED_PEERS)
        if holders >= self._quorum:
            self._final_depth = 0
            return (LookupStep.QUORUM, 0, [])
        if lists is not None:
            snapshot = Candidates(*lists)
        target = self._target
        entries = [
            (long_id ^ target, node_id, address) for long_id, node_id, address in snapshot._entries
        ]
        ksize = self._ksize
        key = _distance
        if self._recently_failed():
            # Contacts that failed lately do not take places in the k
            # closest (kept aside, as a last resort: see _fill).
            failed_recently = self._failed_recently
            skipped = self._skipped
            ranked = []
            for entry in sorted(entries, key=key):
                if failed_recently(entry[2]):
                    if len(skipped) < ksize:
                        skipped[entry[1]] = entry
                else:
                    ranked.append(entry)
                    if len(ranked) == ksize:
                        break
        else:
            # (heapq.nsmallest: sorted(...)[:ksize], stable, in O(n log k))
            ranked = heapq.nsmallest(ksize, entries, key=key)
        self._ranked = ranked
        srtt = self._srtt
        srtts = self._srtts
        slowest = 0.0
        for _, node_id, address in ranked:
            rtt = srtts[node_id] = srtt(address)
            if rtt is not None and rtt > slowest:
                slowest = rtt
        self._slowest = slowest
        return self._fill(False)

    def answered(
        self, node_id: bytes, contacts: Sequence[Any], holder: bool, ended: bool
    ) -> tuple[LookupStep, int, list[tuple[bytes, Any]]]:
        _check_id(node_id)
        self._request_ended(node_id)
        depth = self._depth.get(node_id, 1) if self._depth else 1
        if ended:
            return (_ENDED, depth, [])
        if contacts:
            self._learn(contacts, depth + 1)
        if holder:
            self._holders += 1
            if self._holders >= self._quorum:
                self._final_depth = depth
                return (LookupStep.QUORUM, depth, [])
        step, _, asks = self._fill(False)
        return (step, depth, asks)

    def _settle(
        self, node_id: bytes, contacts: Sequence[Any], holder: bool, ended: bool
    ) -> tuple[LookupStep, int, list[tuple[bytes, Any]], bool]:
        """``answered``, the answer counted (for LookupAnswers): ``(step,
        depth, asks, act)``, ``act`` whether the lookup has something to
        do (asks, or a step other than ASK, while the query runs). (The
        Rust core's answerer calls its own in Rust: not in the API.)"""
        self._answers += 1
        step, depth, asks = self.answered(node_id, contacts, holder, ended)
        if depth > self._max_depth:
            self._max_depth = depth
        if ended:
            self._final_depth = depth
        return (step, depth, asks, not ended and (step is not _ASK or bool(asks)))

    def failed(
        self, node_id: bytes, mode: LookupFailure, ended: bool
    ) -> tuple[LookupStep, int, list[tuple[bytes, Any]]]:
        _check_id(node_id)
        _check_int("mode", mode, 0, 2)
        self._request_ended(node_id)
        if mode == LookupFailure.STOCK:
            # asked again, the way a stock peer understands
            self._asked.discard(node_id)
        else:
            if mode == LookupFailure.TIMEOUT and self._adaptive:
                self._failed_by_rto = True
            ranked = self._ranked
            for index, entry in enumerate(ranked):
                if entry[1] == node_id:
                    del ranked[index]
                    break
        return self._fill(ended)

    def overdue(
        self, node_id: bytes, address: Any
    ) -> tuple[LookupStep, int, list[tuple[bytes, Any]]]:
        _check_id(node_id)
        late = self._late
        if node_id in late:  # (a later retransmission)
            return (_ASK, 0, [])
        late[node_id] = address
        self._in_flight -= 1
        if self._unmeasured:
            self._unmeasured.discard(node_id)
        return self._fill(False)

    def _request_ended(self, node_id: bytes) -> None:
        """A request ended (answered or failed): it leaves the late ones, or
        those in flight."""
        late = self._late
        if late and node_id in late:
            del late[node_id]
            return
        self._in_flight -= 1
        if self._unmeasured:
            self._unmeasured.discard(node_id)

    def position(self, node_id: bytes) -> tuple[int, int]:
        """(depth, rank in the candidates closest first, -1 if not one)."""
        _check_id(node_id)
        depth = self._depth.get(node_id, 1)
        for index, entry in enumerate(self._ranked):
            if entry[1] == node_id:
                return (depth, index)
        return (depth, -1)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def holders(self) -> int:
        return self._holders

    @property
    def answers(self) -> int:
        return self._answers

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def final_depth(self) -> int:
        return self._final_depth

    # -- internals: the same steps, in the same order, as rust/lookup.rs ----

    def _learn(self, contacts: Sequence[Any], depth: int) -> None:
        asked = self._asked
        depths = self._depth
        known = {entry[1] for entry in self._ranked}
        known.add(self._own_id)
        ranked = self._ranked
        target = self._target
        skipped = self._skipped
        failed = None  # (asked once, at the first new contact)
        for contact in contacts:
            if type(contact) not in (list, tuple) or len(contact) != 3:
                raise InvalidArgumentTypeError(
                    "a contact must be a list or tuple of (id, host, port),"
                    f" got {type(contact).__name__}"
                )
            contact_id, host, port = contact
            _check_id(contact_id)
            if contact_id in known or contact_id in asked or contact_id in skipped:
                continue
            known.add(contact_id)
            depths[contact_id] = depth
            address = (host, port)
            entry = (int.from_bytes(contact_id, "big") ^ target, contact_id, address)
            if failed is None:
                failed = bool(self._recently_failed())
            if failed and self._failed_recently(address):
                # failed lately: others' stale answers do not bring it
                # back, unless nobody else is left
                skipped[contact_id] = entry
                continue
            bisect.insort_right(ranked, entry, key=_distance)
            rtt = self._srtts[contact_id] = self._srtt(address)
            if rtt is not None and rtt > self._slowest:
                self._slowest = rtt

    def _fill(self, ended: bool) -> tuple[LookupStep, int, list[tuple[bytes, Any]]]:
        # Requests in flight that may each bring a holder count towards the
        # quorum: asking more before they answer only adds traffic.
        wanted = self._quorum - self._holders
        alpha = self._alpha
        target = alpha if wanted > alpha else wanted if wanted > 1 else 1
        count = target - self._in_flight
        unmeasured = self._unmeasured
        if unmeasured:
            count += HEDGE if len(unmeasured) > HEDGE else len(unmeasured)
        if ended:
            return (_ENDED, 0, [])
        if count <= 0:  # (some are in flight)
            return (_ASK, 0, [])
        asked = self._asked
        ranked = self._ranked
        ksize = self._ksize
        # (bounded: each pass that goes on takes one candidate out of ranked)
        for _ in range(len(ranked) + 1):
            closest = ranked[:ksize]
            fresh = [entry for entry in closest if entry[1] not in asked] if asked else closest
            if not self._recently_failed():
                break
            failed_recently = self._failed_recently
            stale = [entry for entry in fresh if failed_recently(entry[2])]
            if not stale:
                break
            for entry in stale:
                ranked.remove(entry)
                self._skipped[entry[1]] = entry
        if not fresh:
            if self._in_flight:
                return (_ASK, 0, [])
            late = self._late
            if not late and not self._holders and self._skipped:
                # Nobody else is left and no holder has answered: rather
                # than end with nothing, ask those that failed lately.
                asks = []
                for entry in sorted(self._skipped.values(), key=_distance)[:count]:
                    del self._skipped[entry[1]]
                    asks.append(self._ask(entry))
                return (_ASK, 0, asks)
            if not late:
                return (
                    LookupStep.ADAPTIVE if self._failed_by_rto else LookupStep.EXHAUSTED,
                    0,
                    [],
                )
            if self._holders and self._adaptive:
                return (LookupStep.GIVE_UP, 0, list(late.items()))
            return (_ASK, 0, [])  # wait for the overdue requests
        picked = self._best_of(fresh, count)
        asks = [self._ask(entry) for entry in picked]
        if unmeasured and len(fresh) > len(picked):
            # the hedge's room grew with the peers of unknown round trip
            # just asked
            room = (
                target + (HEDGE if len(unmeasured) > HEDGE else len(unmeasured)) - self._in_flight
            )
            if room > 0:
                rest = [entry for entry in fresh if entry[1] not in asked]
                asks.extend(self._ask(entry) for entry in self._best_of(rest, room))
        return (_ASK, 0, asks)

    def _best_of(
        self, fresh: list[tuple[int, bytes, Any]], count: int
    ) -> list[tuple[int, bytes, Any]]:
        if len(fresh) <= count or self._slowest < RTT_BAND:
            return fresh[:count]
        srtts = self._srtts
        rtts = [srtts.get(entry[1]) for entry in fresh]
        known = sorted([rtt for rtt in rtts if rtt is not None])
        if not known:
            return fresh[:count]
        guess = known[len(known) // 2]
        scores = self._scores([entry[2] for entry in fresh], self._clock())
        if len(scores) != len(fresh):
            raise InvalidArgumentError(
                f"scores returned {len(scores)} scores for {len(fresh)} addresses"
            )
        fair = self._fair_score
        per_band = fair / RTT_BAND
        draw = self._draw
        # (band number, a draw, rank): within a band, the order is drawn
        order = sorted(
            [
                (
                    int(
                        (guess if rtt is None else rtt)
                        * (
                            1 / RTT_BAND
                            if score >= fair
                            else per_band / (score if score > 0.01 else 0.01)
                        )
                    ),
                    draw(),
                    i,
                )
                for i, (rtt, score) in enumerate(zip(rtts, scores, strict=True))
            ]
        )
        return [fresh[i] for _, _, i in order[:count]]

    def _ask(self, entry: tuple[int, bytes, Any]) -> tuple[bytes, Any]:
        node_id = entry[1]
        self._asked.add(node_id)
        self._in_flight += 1
        if self._slowest >= RTT_BAND and self._srtts.get(node_id, 0.0) is None:
            # (only where round trips differ: on loopback every peer is as
            # near as any, and asking more would only add traffic)
            self._unmeasured.add(node_id)
        return (node_id, entry[2])


class LookupAnswers:
    """The callback of a streaming lookup's requests: the common answer (a
    ``find_values`` dict whose records ``cache.take`` takes all) read and
    counted here, Python's lookup called back only for what it must do
    (``lookup._answered_then``: welcome a peer learnt from an answer, act
    on the step) and for every other answer (``lookup._answered``, which
    reads the records and hands them to ``settle``). ``shared``: ``(queries,
    now, finish, cache, book)``, the query core and the manager's clock and
    ``finish``, the node's RecordCache and PeerBook; ``asking``: ``(asker,
    bodies, budget)``, to send a step ASK's asks itself (``Asker.ask``,
    ``lookup._act`` if it says None). See ``_core.pyi``."""

    __slots__ = (
        "_asking",
        "_book",
        "_cache",
        "_core",
        "_ended",
        "_finish",
        "_handle",
        "_key",
        "_latest",
        "_lookup",
        "_now",
        "_queries",
        "_query_id",
    )

    def __init__(
        self,
        lookup: Any,
        core: LookupCore,
        handle: Any,
        key: bytes,
        latest: dict[Any, Any],
        shared: tuple[QueryCore, Callable[[], float], Callable[..., object], Any, Any],
        asking: tuple[Asker, dict[str, bytes], float | None] | None = None,
    ) -> None:
        if type(core) is not LookupCore:
            raise InvalidArgumentTypeError(
                f"core must be a LookupCore of this core, got {type(core).__name__}"
            )
        if type(key) is not bytes:
            raise InvalidArgumentTypeError(f"key must be bytes, got {type(key).__name__}")
        if type(latest) is not dict:
            raise InvalidArgumentTypeError(f"latest must be a dict, got {type(latest).__name__}")
        query_id = handle.id
        if type(query_id) is not QueryId:
            raise InvalidArgumentTypeError(
                f"handle.id must be a QueryId of this core, got {type(query_id).__name__}"
            )
        ended = handle.ended
        if not callable(ended):
            raise InvalidArgumentTypeError(
                f"handle.ended must be callable, got {type(ended).__name__}"
            )
        if type(shared) is not tuple or len(shared) != 5:
            raise InvalidArgumentTypeError(
                "shared must be a (queries, now, finish, cache, book) tuple, got "
                + type(shared).__name__
            )
        queries, now, finish, cache, book = shared
        if type(queries) is not QueryCore:
            raise InvalidArgumentTypeError(
                f"queries must be a QueryCore of this core, got {type(queries).__name__}"
            )
        for name, function in (
            ("now", now),
            ("finish", finish),
            ("cache.take", getattr(cache, "take", None)),
            ("book.provided", getattr(book, "provided", None)),
        ):
            if not callable(function):
                raise InvalidArgumentTypeError(
                    f"{name} must be callable, got {type(function).__name__}"
                )
        self._lookup = lookup
        self._core = core
        self._handle = handle
        self._ended = ended
        self._query_id = query_id
        self._key = key
        self._latest = latest
        self._queries = queries
        self._now = now
        self._finish = finish
        self._cache = cache
        self._book = book
        if asking is not None:
            if type(asking) is not tuple or len(asking) != 3:
                raise InvalidArgumentTypeError(
                    "asking must be an (asker, bodies, budget) tuple or None, got "
                    + type(asking).__name__
                )
            asker, bodies, _ = asking
            if type(asker) is not Asker:
                raise InvalidArgumentTypeError(
                    f"asker must be an Asker of this core, got {type(asker).__name__}"
                )
            if type(bodies) is not dict:
                raise InvalidArgumentTypeError(
                    f"bodies must be a dict, got {type(bodies).__name__}"
                )
        self._asking = asking

    def __call__(self, context: Any, address: Any, name: str, ok: bool, value: Any) -> None:
        if ok is not True or name != "find_values" or type(value) is not dict or self._ended():
            self._lookup._answered(self, context, address, name, ok, value)
            return
        raws = value.get("records", ())
        records, taken = self._cache.take(raws, self._key, self._latest, address)
        if taken != len(raws):
            # Some to check in full: Python's (it takes the verified ones
            # again, to the same effect: take notes in latest only what it
            # returns).
            self._lookup._answered(self, context, address, name, ok, value)
            return
        self.settle(context, address, records, value.get("nodes", ()))

    def settle(
        self,
        ask: tuple[bytes, Any],
        address: Any,
        records: Sequence[tuple[bytes, Any]],
        contacts: Sequence[Any],
    ) -> None:
        node_id = ask[0]
        count = len(records)
        if count:
            self._book.provided(address, count)
        # QueryManager.submit_answer's work
        queries = self._queries
        if count:
            code, accepted, _ = queries.offer_many(self._query_id, address, records, self._now())
            if code == NEW:
                if accepted:
                    self._handle.wake()
            elif code == COMPLETED:
                self._finish(self._query_id, None)
        if queries.peer_done(self._query_id, address, True) == COMPLETED:
            self._finish(self._query_id, None)
        step, depth, asks, act = self._core._settle(node_id, contacts, count > 0, self._ended())
        if act and depth <= 1 and step is LookupStep.QUORUM:
            # (the lookup's _act would only finish the query)
            self._finish(self._query_id, Reason.ALL_PEERS)
            return
        asking = self._asking
        if act and asking is not None and step is LookupStep.ASK:
            # (Rust: the asks sent without the lookup's frames)
            if depth > 1:
                self._lookup._welcome(ask)
            self._ask(asking, depth, step, asks)
            return
        if depth > 1 or act:
            self._lookup._answered_then(self, ask, depth, step if act else None, asks)

    def _ask(
        self,
        asking: tuple[Asker, dict[str, bytes], float | None],
        depth: int,
        step: LookupStep,
        asks: list[tuple[bytes, Any]],
    ) -> None:
        """Step ASK's ``asks`` (not empty) sent by the Asker, else by the
        lookup's ``_act``; a stock peer's whose body is not packed yet by
        ``lookup._ask_stock``."""
        asker, bodies, budget = asking
        asked = asker.ask(self, asks, bodies, budget)
        if asked is None:
            self._lookup._act(self, step, depth, asks)
        elif asked < len(asks):
            self._lookup._ask_stock(self, asks[asked:])

    def overdue(self, ask: tuple[bytes, Any]) -> None:
        asking = self._asking
        if asking is None:
            self._lookup._overdue(self, ask)
            return
        # (the lookup's _overdue, done here as after an answer)
        if self._ended():
            return
        self._handle._resent += 1
        step, depth, asks = self._core.overdue(ask[0], ask[1])
        if step is LookupStep.ASK:
            if asks:
                self._ask(asking, depth, step, asks)
            return
        self._lookup._act(self, step, depth, asks)


class Asker:
    """A streaming lookup's asks sent as ``DhtProtocol.ask_many`` sends them
    when the window has room, in one call (``LookupAnswers`` calls it for
    an answer's step ASK, the lookup for its first asks): see
    ``_core.pyi``. Made once per protocol; reads the protocol's
    ``_waiting``, ``_peers``, ``extensions``, ``stats``, ``_timer``,
    ``clock.now`` and ``drop`` once, its ``_requests``, ``max_outstanding``
    and ``transport`` per call (replaced at run time by tests and harnesses)."""

    __slots__ = (
        "_drop",
        "_extensions",
        "_first_span",
        "_names",
        "_now",
        "_peers",
        "_protocol",
        "_span",
        "_stats",
        "_timer",
        "_waiting",
    )

    def __init__(self, protocol: Any, names: tuple[str, str], span: float, first_span: float):
        if (
            type(names) is not tuple
            or len(names) != 2
            or any(type(name) is not str for name in names)
        ):
            raise InvalidArgumentTypeError(
                f"names must be a tuple of two str (ours, stock), got {type(names).__name__}"
            )
        span = _check_float("span", span, allow_zero=False)
        first_span = _check_float("first_span", first_span, allow_zero=False)
        waiting = protocol._waiting
        len(waiting)  # (a deque: only its length is read)
        extensions = protocol.extensions
        if type(extensions) is not dict:
            raise InvalidArgumentTypeError(
                f"protocol.extensions must be a dict, got {type(extensions).__name__}"
            )
        stats = protocol.stats
        if not isinstance(stats, dict):
            raise InvalidArgumentTypeError(
                f"protocol.stats must be a dict, got {type(stats).__name__}"
            )
        now = protocol.clock.now
        drop = protocol.drop
        for name, function in (("protocol.clock.now", now), ("protocol.drop", drop)):
            if not callable(function):
                raise InvalidArgumentTypeError(
                    f"{name} must be callable, got {type(function).__name__}"
                )
        self._protocol = protocol
        self._waiting = waiting
        self._peers = protocol._peers
        self._extensions = extensions
        self._stats = stats
        self._timer = protocol._timer
        self._now = now
        self._drop = drop
        self._names = names
        self._span = span
        self._first_span = first_span

    def ask(
        self,
        answers: LookupAnswers,
        asks: list[tuple[bytes, Any]],
        bodies: dict[str, bytes],
        budget: float | None,
    ) -> int | None:
        if type(answers) is not LookupAnswers:
            raise InvalidArgumentTypeError(
                f"answers must be a LookupAnswers of this core, got {type(answers).__name__}"
            )
        if type(asks) is not list:
            raise InvalidArgumentTypeError(f"asks must be a list, got {type(asks).__name__}")
        if type(bodies) is not dict:
            raise InvalidArgumentTypeError(f"bodies must be a dict, got {type(bodies).__name__}")
        # ask_many's conditions for one engine call (else Python's path,
        # which queues or refuses)
        if self._waiting:
            return None
        protocol = self._protocol
        requests = protocol._requests
        if requests is None:
            return None
        engine = requests.engine
        if type(engine) is not DatagramEngine:
            return None
        if len(engine._pending) + len(asks) > protocol.max_outstanding:
            return None
        transport = protocol.transport
        # (the batched transport's core socket while the protocol's
        # transport is that one itself, not a wrapper)
        native = getattr(protocol, "_native_socket", None)
        if transport is not getattr(protocol, "_native_transport", None) or (
            type(native) is not DatagramSocket
        ):
            native = None
        if native.closed if native is not None else transport.is_closing():
            return None
        # the lookup's _act: its requests counted (sent or not)
        handle = answers._handle
        handle._requests += len(asks)
        now = self._now()
        timer = self._timer
        earliest, refused, asked = engine.open_asks(
            asks,
            self._names,
            bodies,
            now,
            timer.lag,
            self._peers,
            self._extensions,
            budget,
            self._span,
            self._first_span,
            answers,
            answers.overdue,
            native if native is not None else transport.sendto,
        )
        self._stats["requests"] += asked
        due = _check_now(now) + earliest
        if timer.armed_until > due:
            timer.arm(due)
        for _ in range(refused):
            self._drop("socket_error")
        return asked


def _distance(entry: tuple[int, bytes, Any]) -> int:
    return entry[0]


# -- PeerBook: per-peer RTT estimators and reputation ---------------------

_RTT_ALPHA = 1 / 8  # gain of the smoothed RTT (RFC 6298, 2.3)
_RTT_BETA = 1 / 4  # gain of the RTT variation
_RTT_K = 4
_INITIAL_RTO = 1.0  # seconds before any sample (RFC 6298, 2.1)
_MIN_RTO = 0.05
_MAX_BACKOFF = 16
_RTT_KEEP = 0.7  # weight of the old RTT in the reputation's EWMA
_INVALID_PENALTY = 0.25
_INVALID_COUNTED = 16
#: Records and estimators a PeerBook keeps by default (DhtProtocol.PEERS_KEPT,
#: reputation.MAX_PEERS).
PEERS_KEPT = 65_536
_U32 = (1 << 32) - 1


class _Estimator:
    """RFC 6298's state of one peer, as dht/rtt.py's RttEstimator (the same
    operations in the same order: the same floats)."""

    __slots__ = (
        "backed_off_at",
        "backoff",
        "base_rto",
        "max_rto",
        "min_rto",
        "rto",
        "rttvar",
        "srtt",
    )

    def __init__(self, min_rto: float, max_rto: float) -> None:
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.backoff = 0
        self.backed_off_at = -math.inf
        self.rto = self.base_rto = min(max(_INITIAL_RTO, min_rto), max_rto)

    def observe(self, sample: float) -> None:
        srtt = self.srtt
        if srtt is None:
            srtt = sample
            rttvar = sample / 2
        else:
            rttvar = (1 - _RTT_BETA) * self.rttvar + _RTT_BETA * abs(srtt - sample)
            srtt = (1 - _RTT_ALPHA) * srtt + _RTT_ALPHA * sample
        self.srtt = srtt
        self.rttvar = rttvar
        self.backoff = 0
        base = srtt + _RTT_K * rttvar
        low = self.min_rto
        high = self.max_rto
        self.rto = self.base_rto = low if base < low else high if base > high else base

    def back_off(self, sent: float | None, now: float | None) -> None:
        if sent is not None and sent < self.backed_off_at:
            return
        self.backoff = min(self.backoff + 1, _MAX_BACKOFF)
        if sent is not None:
            self.backed_off_at = sent if now is None else now
        srtt = self.srtt
        base = _INITIAL_RTO if srtt is None else srtt + _RTT_K * self.rttvar
        self.base_rto = min(max(base, self.min_rto), self.max_rto)
        base *= 1 << self.backoff
        self.rto = min(max(base, self.min_rto), self.max_rto)


class _Record:
    """What a peer did for us (dht/reputation.py's PeerStats)."""

    __slots__ = (
        "consecutive_failures",
        "failures",
        "invalid",
        "last_seen",
        "provided",
        "rtt_ms",
        "successes",
    )

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.rtt_ms: float | None = None
        self.provided = 0
        self.last_seen: float | None = None
        self.consecutive_failures = 0
        self.invalid = 0

    def score(self, now: float) -> float:
        tried = self.successes + self.failures
        success_rate = self.successes / tried if tried else 1.0
        rtt_ms = self.rtt_ms
        rtt_part = 1.0 if rtt_ms is None or rtt_ms <= 999.0 else 1000.0 / (rtt_ms + 1.0)
        provided_part = 1.0 if self.provided >= 10 else self.provided / 10.0
        last_seen = self.last_seen
        if last_seen is None:
            seen_part = 0.0
        elif now <= last_seen:
            seen_part = 1.0
        else:
            seen_part = 1.0 / ((now - last_seen) / 3600.0 + 1.0)
        score = 0.5 * success_rate + 0.25 * rtt_part + 0.15 * provided_part + 0.10 * seen_part
        if self.invalid:
            score *= _INVALID_PENALTY ** min(self.invalid, _INVALID_COUNTED)
        return score

    def success(self, rtt: float, now: float) -> None:
        self.successes += 1
        self.consecutive_failures = 0
        if rtt >= 0:
            rtt_ms = rtt * 1000.0
            old = self.rtt_ms
            self.rtt_ms = rtt_ms if old is None else (_RTT_KEEP * old + (1 - _RTT_KEEP) * rtt_ms)
        self.last_seen = now


#: The score of a peer with no record (it does not depend on the time).
_NEVER_SEEN_SCORE = _Record().score(0.0)


def _check_address(address: object) -> tuple[Any, ...]:
    if type(address) is not tuple or not address:
        raise InvalidArgumentTypeError(
            f"address must be a non-empty tuple (host, port), got {type(address).__name__}"
        )
    return address


def _check_bound(name: str, value: object) -> int:
    return _check_int(name, value, 1, _U32)


def _check_rto(name: str, value: object) -> float:
    seconds = _check_float(name, value, allow_zero=False)
    if seconds < _MIN_RTO:
        raise InvalidArgumentError(f"{name} must be >= {_MIN_RTO}, got {value!r}")
    return seconds


class PeerBook:
    """Every peer's RFC 6298 estimator and reputation record, the per-IP
    fallback of unmeasured ports and the network's pooled estimator: the
    state every answer and every ranking of a lookup touches, in one place
    the lookup's core reads directly.

    Estimators are keyed by the (host, port) address; records by any
    hashable peer (the DHT uses the address). Each kind is bounded (the
    oldest made leaves first: a peer forgotten starts again as never
    measured, never tried), and so are the IP addresses whose first
    ``rtt_per_ip`` estimators answer ``srtt`` for another port of theirs.
    An estimator forgotten by address stays in its IP's list, frozen, as
    dht/protocol.py's were.
    """

    __slots__ = (
        "_by_ip",
        "_network",
        "_network_samples",
        "_records",
        "_rtt",
        "first_rto_cap",
        "first_rto_samples",
        "max_peers",
        "max_rto",
        "peers_kept",
        "rtt_by_ip",
        "rtt_per_ip",
    )

    def __init__(
        self,
        max_rto: float = 10.0,
        peers_kept: int = PEERS_KEPT,
        max_peers: int = PEERS_KEPT,
        rtt_per_ip: int = 8,
        first_rto_samples: int = 8,
        first_rto_cap: float = 1.0,
    ) -> None:
        self.max_rto = _check_rto("max_rto", max_rto)
        self.peers_kept = _check_bound("peers_kept", peers_kept)
        self.max_peers = _check_bound("max_peers", max_peers)
        self.rtt_per_ip = _check_int("rtt_per_ip", rtt_per_ip, 0, 1 << 16)
        self.first_rto_samples = _check_int("first_rto_samples", first_rto_samples, 0, _U32)
        self.first_rto_cap = _check_rto("first_rto_cap", first_rto_cap)
        #: srtt() of a peer never measured falls back to its IP address's
        self.rtt_by_ip = True
        self._rtt: dict[Any, _Estimator] = {}
        self._by_ip: dict[Any, list[_Estimator]] = {}
        self._records: dict[Any, _Record] = {}
        self._network = _Estimator(_MIN_RTO, self.first_rto_cap)
        self._network_samples = 0

    # -- estimators -------------------------------------------------------

    def _estimator(self, address: Any) -> _Estimator:
        estimator = self._rtt.get(address)
        if estimator is None:
            _check_address(address)
            rtts = self._rtt
            estimator = rtts[address] = _Estimator(_MIN_RTO, self.max_rto)
            if len(rtts) > self.peers_kept:
                del rtts[next(iter(rtts))]
            by_ip = self._by_ip
            ip = address[0]
            same_ip = by_ip.get(ip)
            if same_ip is None:
                same_ip = by_ip[ip] = []
                if len(by_ip) > self.peers_kept:
                    del by_ip[next(iter(by_ip))]
            if len(same_ip) < self.rtt_per_ip:
                same_ip.append(estimator)
        return estimator

    def estimator_state(self, address: Any) -> tuple[float | None, float, float, float]:
        """(srtt, rttvar, rto, base_rto) of ``address``'s estimator (made
        if it had none)."""
        e = self._estimator(address)
        return (e.srtt, e.rttvar, e.rto, e.base_rto)

    def has_estimator(self, address: Any) -> bool:
        return address in self._rtt

    def forget_estimator(self, address: Any) -> bool:
        """Drop ``address``'s estimator (it stays in its IP's list); False
        if it had none."""
        return self._rtt.pop(address, None) is not None

    @property
    def estimators(self) -> int:
        return len(self._rtt)

    def observe(self, address: Any, sample: float) -> None:
        """Feed ``address``'s estimator (alone) a round trip in seconds."""
        if sample < 0:
            raise InvalidArgumentError(f"sample must be >= 0 seconds, got {sample!r}")
        self._estimator(address).observe(sample)

    def back_off(self, address: Any, sent: float | None, now: float | None) -> None:
        """A request to ``address`` sent at ``sent`` went unanswered within
        its RTO: back off (Karn's algorithm, as RttEstimator.timed_out)."""
        self._estimator(address).back_off(sent, now)

    def rto(self, address: Any) -> float:
        estimator = self._rtt.get(address)
        return (self._estimator(address) if estimator is None else estimator).rto

    def timing(self, address: Any) -> tuple[float, float, bool]:
        """What a request to ``address`` waits: (its RTO, when it is overdue
        (the base RTO if measured, else ``first_rto``), measured)."""
        estimator = self._rtt.get(address)
        if estimator is None:
            estimator = self._estimator(address)
        if estimator.srtt is None:
            return (estimator.rto, self.first_rto(address), False)
        return (estimator.rto, estimator.base_rto, True)

    def srtt(self, address: Any) -> float | None:
        """The peer's smoothed round trip, or, never measured, that of
        another port of its IP address (unless ``rtt_by_ip`` is off), or
        None."""
        estimator = self._rtt.get(address)
        if estimator is not None and estimator.srtt is not None:
            return estimator.srtt
        if self.rtt_by_ip:
            for other in self._by_ip.get(address[0], ()):
                if other.srtt is not None:
                    return other.srtt
        return None

    def srtts(self, addresses: Sequence[Any]) -> list[float | None]:
        srtt = self.srtt
        return [srtt(address) for address in addresses]

    def first_rto(self, address: Any) -> float:
        """When a request to a peer never measured is overdue: the base RTO
        of another port of its IP address that was measured (capped at
        ``first_rto_cap``), else the network's once it took
        ``first_rto_samples`` samples, else ``first_rto_cap``."""
        if self.rtt_by_ip:
            for other in self._by_ip.get(address[0], ()):
                if other.srtt is not None:
                    return min(other.base_rto, self.first_rto_cap)
        if self._network_samples >= self.first_rto_samples:
            return self._network.base_rto
        return self.first_rto_cap

    @property
    def network_samples(self) -> int:
        return self._network_samples

    @property
    def network_rto(self) -> float:
        """The base RTO over every sample taken (capped at first_rto_cap)."""
        return self._network.base_rto

    # -- records ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, peer: object) -> bool:
        return peer in self._records

    def _record(self, peer: Any) -> _Record:
        records = self._records
        record = records.get(peer)
        if record is None:
            record = records[peer] = _Record()
            if len(records) > self.max_peers:
                del records[next(iter(records))]
        return record

    def stats(self, peer: Any) -> tuple[int, int, float | None, int, float | None, int, int]:
        """(successes, failures, rtt_ms, provided, last_seen,
        consecutive_failures, invalid) of ``peer`` (a record made if it had
        none)."""
        r = self._record(peer)
        return (
            r.successes,
            r.failures,
            r.rtt_ms,
            r.provided,
            r.last_seen,
            r.consecutive_failures,
            r.invalid,
        )

    def successes(self, peer: Any) -> int:
        """The peer's answers (its record made if it had none)."""
        record = self._records.get(peer)
        return (self._record(peer) if record is None else record).successes

    def success(self, peer: Any, rtt: float, now: float) -> None:
        """A request answered after ``rtt`` seconds (< 0: not known)."""
        record = self._records.get(peer)
        (self._record(peer) if record is None else record).success(rtt, now)

    def failure(self, peer: Any) -> int:
        """A request timed out or its answer was wrong; returns the failures
        in a row."""
        record = self._record(peer)
        record.failures += 1
        record.consecutive_failures += 1
        return record.consecutive_failures

    def invalid(self, peer: Any) -> None:
        """The peer served a record failing its signature, slot or sequence."""
        record = self._record(peer)
        record.failures += 1
        record.invalid += 1

    def provided(self, peer: Any, count: int = 1) -> None:
        record = self._records.get(peer)
        (self._record(peer) if record is None else record).provided += count

    def score(self, peer: Any, now: float) -> float:
        record = self._records.get(peer)
        return _NEVER_SEEN_SCORE if record is None else record.score(now)

    def scores(self, peers: Sequence[Any], now: float) -> list[float]:
        get = self._records.get
        return [
            _NEVER_SEEN_SCORE if (record := get(peer)) is None else record.score(now)
            for peer in peers
        ]

    # -- one call per event of a request ------------------------------------

    def answered(self, address: Any, rtt: float, ok: bool, now: float) -> None:
        """An answer to a request to ``address`` after ``rtt`` seconds (< 0:
        retransmitted, not a sample: Karn's rule): the estimator and the
        network's learn it; ``ok`` (the answer's shape is right) a success,
        else a failure of the peer."""
        if rtt >= 0:
            estimator = self._rtt.get(address)
            (self._estimator(address) if estimator is None else estimator).observe(rtt)
            self._network.observe(rtt)
            self._network_samples += 1
        record = self._records.get(address)
        if record is None:
            record = self._record(address)
        if ok:
            record.success(rtt, now)
        else:
            record.failures += 1
            record.consecutive_failures += 1

    def answered_late(self, address: Any, rtt: float) -> None:
        """An answer to a request given up on: a sample (if ``rtt`` >= 0),
        and no longer failing in a row."""
        if rtt >= 0:
            self._estimator(address).observe(rtt)
            self._network.observe(rtt)
            self._network_samples += 1
        self._record(address).consecutive_failures = 0

    def timed_out(self, address: Any, sent: float, now: float, stock: bool | None) -> int:
        """A request to ``address`` sent at ``sent`` (< 0: not known) got no
        answer. ``stock`` True: the peer is known not to speak the RPC, None:
        it is taken as such if it answered before; either way -1 and nothing
        held against it. Else back off, count a failure and return the
        failures in a row."""
        record = self._record(address)
        if stock or (stock is None and record.successes):
            return -1
        self._estimator(address).back_off(sent if sent >= 0 else None, now)
        record.failures += 1
        record.consecutive_failures += 1
        return record.consecutive_failures


# -- RecordCache: the records a node verified, by signature ----------------

_SIGNATURE_SIZE = 64  # Ed25519: the only signatures a verified record has
_WIRE_FIELDS = 7  # public key, target, name, seq, expires, data, signature


def _wire_fields(value: object) -> Sequence[Any] | None:
    if type(value) is not list and type(value) is not tuple:
        return None
    return value if len(value) == _WIRE_FIELDS else None


def _put_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidArgumentTypeError(f"value's {name} must be bytes, got {type(value).__name__}")
    return value


def _put_u64(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"value's {name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _U64:
        raise InvalidArgumentError(f"value's {name} must be in [0, 2**64), got {value!r}")
    return value


class RecordCache:
    """The signed records a node has verified, by signature, each with the
    wire fields it was verified with (``dht.records.RecordVerifier``'s
    memory): a wire array whose every field equals them gets the record
    back without an Ed25519 verification. At most ``kept``, the oldest
    leave first (a record put again under a signature kept stays where it
    was). ``wall()``: the wall clock a record's expiry is read against.
    See ``_core.pyi`` for the contract (the Rust core's keeps it too)."""

    __slots__ = ("_entries", "_kept", "_wall")

    def __init__(self, kept: int, wall: Callable[[], float]) -> None:
        self._kept = _check_int("kept", kept, 0, _U32)
        if not callable(wall):
            raise InvalidArgumentTypeError(f"wall must be callable, got {type(wall).__name__}")
        self._wall = wall
        #: signature -> (record, its wire fields but the signature)
        self._entries: OrderedDict[bytes, tuple[Any, Sequence[Any]]] = OrderedDict()

    def _hit(self, fields: Sequence[Any]) -> tuple[Any, Sequence[Any]] | None:
        signature = fields[6]
        if type(signature) is not bytes:
            return None
        entry = self._entries.get(signature)
        if entry is None:
            return None
        kept = entry[1]
        # (each field of its type, exactly, and equal: data first, the
        # field most likely to differ)
        for index in (5, 1, 0, 2, 3, 4):
            given = fields[index]
            if type(given) is not _KEPT_TYPES[index] or given != kept[index]:
                return None
        return entry

    def get(self, value: object) -> Any:
        fields = _wire_fields(value)
        if fields is None:
            return None
        entry = self._hit(fields)
        return None if entry is None else entry[0]

    def put(self, value: object, record: Any) -> None:
        fields = _wire_fields(value)
        if fields is None:
            raise InvalidArgumentTypeError(
                "value must be a list or tuple of the 7 wire fields, got " + type(value).__name__
            )
        signature = _put_bytes("signature", fields[6])
        if len(signature) != _SIGNATURE_SIZE:
            raise InvalidArgumentError(
                f"value's signature must be {_SIGNATURE_SIZE} bytes, got {len(signature)}"
            )
        if not isinstance(fields[2], str):
            raise InvalidArgumentTypeError(
                f"value's name must be a str, got {type(fields[2]).__name__}"
            )
        kept = (
            _put_bytes("public key", fields[0]),
            _put_bytes("target", fields[1]),
            fields[2],
            _put_u64("seq", fields[3]),
            _put_u64("expires", fields[4]),
            _put_bytes("data", fields[5]),
        )
        entries = self._entries
        entries[signature] = (record, kept)
        if len(entries) > self._kept:
            entries.popitem(last=False)

    def take(
        self, values: object, target: bytes, latest: dict[Any, Any], address: Any
    ) -> tuple[list[tuple[bytes, Any]], int]:
        if type(target) is not bytes:
            raise InvalidArgumentTypeError(f"target must be bytes, got {type(target).__name__}")
        if type(latest) is not dict:
            raise InvalidArgumentTypeError(f"latest must be a dict, got {type(latest).__name__}")
        taken: list[tuple[bytes, Any]] = []
        if type(values) is not list and type(values) is not tuple:
            return taken, 0
        for index, value in enumerate(values):
            fields = _wire_fields(value)
            if fields is None:
                return taken, index
            entry = self._hit(fields)
            if entry is None:
                return taken, index
            record, kept = entry
            if kept[1] != target:
                return taken, index
            expires = kept[4]
            if expires and expires <= self._wall():
                return taken, index
            slot = (kept[0], kept[2])
            seen = latest.get(slot)
            if seen is None:
                latest[slot] = (kept[3], address)
            # (another sequence than the one seen: the caller's)
            elif type(seen) is not tuple or len(seen) != 2 or seen[0] != kept[3]:
                return taken, index
            taken.append((fields[6], record))
        return taken, len(values)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def kept(self) -> int:
        return self._kept


#: the type each kept wire field must have, exactly, to match
_KEPT_TYPES = (bytes, bytes, str, int, int, bytes)


# -- the answers kept for resent requests -------------------------------

#: Answers kept at most, and their bytes at most (dhtquery.dht.replay's).
REPLAY_COUNT = 1024
REPLAY_BYTES = 1024 * 1024


class ReplayCache:
    """(address, message id) -> the datagram answered, with when (see
    ``dhtquery.dht.replay`` for why, ``_core.pyi`` for the contract)."""

    __slots__ = ("_answers", "_bytes", "_expires", "max_age", "max_bytes", "max_count")

    def __init__(
        self,
        max_age: float,
        *,
        max_count: int = REPLAY_COUNT,
        max_bytes: int = REPLAY_BYTES,
    ) -> None:
        self.max_age = max_age
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._answers: OrderedDict[tuple[Hashable, bytes], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        #: when the oldest answer kept passes max_age, or earlier (answers
        #: that left by count or bytes leave a younger oldest): no answer
        #: is past max_age before then, so put() looks only then
        self._expires = 0.0

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, address: Hashable, msg_id: bytes, now: float) -> bytes | None:
        _check_exact(msg_id, bytes, "msg_id", "bytes")
        kept = self._answers.get((address, msg_id))
        if kept is None or now - kept[0] > self.max_age:
            return None
        return kept[1]

    def put(self, address: Hashable, msg_id: bytes, datagram: bytes, now: float) -> None:
        _check_exact(msg_id, bytes, "msg_id", "bytes")
        _check_exact(datagram, bytes, "datagram", "bytes")
        size = len(datagram)
        if size > self.max_bytes:
            return
        answers = self._answers
        old = answers.pop((address, msg_id), None)
        if old is not None:
            self._bytes -= len(old[1])
        answers[(address, msg_id)] = (now, datagram)
        self._bytes += size
        # oldest first: out go those past the bounds, and those past max_age
        # (no resend of them can come: a node that serves little keeps
        # little). (Once per request served: the oldest is read only when
        # one may be past max_age, not per put; a find_values served cost
        # 36.1 k -> 32.3 k instructions, bench profile --serve, callgrind.)
        while len(answers) > self.max_count or self._bytes > self.max_bytes:
            self._bytes -= len(answers.popitem(last=False)[1][1])
        if now < self._expires:
            return
        too_old = now - self.max_age
        while answers:
            when, dropped = next(iter(answers.values()))
            if when >= too_old:
                self._expires = when + self.max_age
                return
            answers.popitem(last=False)
            self._bytes -= len(dropped)


class FairShare:
    """Which requests an overloaded node sheds (``dhtquery.dht.fairness``
    says why, ``_core.pyi`` gives the contract).

    ``queued()`` gives the bytes waiting in the node's receive queue; it is
    read once every ``check_every`` calls of ``admit`` (and before a shed).
    The node is overloaded past ``mark`` bytes. Requests are counted only
    while the queue is past half the mark (*warm*): a node that keeps up
    pays one comparison a request (~0.05 us against ~0.45 us counting), and
    a queue on its way to the mark fills the window first (1,024 requests
    arrive within ms when they come faster than they are served)."""

    __slots__ = (
        "_check_every",
        "_counts",
        "_factor",
        "_floor",
        "_mark",
        "_queued",
        "_recent",
        "_since_check",
        "_under_load",
        "_warm",
        "_window",
        "shed",
    )

    def __init__(
        self,
        queued: Callable[[], int],
        mark: int,
        *,
        window: int = 1024,
        factor: float = 1.5,
        floor: int = 64,
        check_every: int = 32,
    ) -> None:
        if window < 1 or check_every < 1 or factor <= 0 or floor < 0 or mark < 0:
            raise InvalidArgumentError(
                f"window ({window}) and check_every ({check_every}) must be >= 1, "
                f"factor ({factor}) > 0, floor ({floor}) and mark ({mark}) >= 0"
            )
        self._queued = queued
        self._mark = mark
        self._recent: deque[Hashable] = deque()
        self._counts: Counter[Hashable] = Counter()
        self._factor = factor
        self._floor = floor
        self._check_every = check_every
        self._since_check = check_every  # look at the first request
        self._warm = False
        self._under_load = False
        #: the window's length (a deque's maxlen would drop without telling)
        self._window = window
        #: requests shed so far
        self.shed = 0

    def admit(self, source: Hashable) -> bool:
        """Count a request from ``source``; False if it is to be shed."""
        self._since_check += 1
        if self._since_check >= self._check_every:
            self._look()
        if not self._warm:
            return True
        recent = self._recent
        counts = self._counts
        recent.append(source)
        counts[source] += 1
        if len(recent) > self._window:
            oldest = recent.popleft()
            left = counts[oldest] - 1
            if left:
                counts[oldest] = left
            else:
                del counts[oldest]
        if not self._under_load:
            return True
        sent = counts[source]
        if sent <= self._floor or sent <= self._factor * len(recent) / len(counts):
            return True
        if self._since_check:
            # About to shed on a look up to check_every requests old: look
            # again, or a source would be refused after the queue drained.
            self._look()
            if not self._under_load:
                return True
        self.shed += 1
        return False

    def _look(self) -> None:
        self._since_check = 0
        queued = self._queued()
        self._under_load = queued > self._mark
        warm = 2 * queued > self._mark
        if self._warm and not warm:  # cooled down: the next warm-up counts afresh
            self._recent.clear()
            self._counts.clear()
        self._warm = warm

    @property
    def under_load(self) -> bool:
        """Whether the last look found the node overloaded."""
        return self._under_load

    def share(self, source: Hashable) -> float:
        """``source``'s fraction of the window's requests."""
        return self._counts.get(source, 0) / len(self._recent) if self._recent else 0.0

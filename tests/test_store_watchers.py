"""The stores' watchers (``ChangeWatchers``): told the key of every value or
record stored, replaced or dropped (None when every key's may have changed),
held weakly, so that a cache of answers forgets one key's, not all."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pytest
from kademlia.utils import digest

from dhtquery.dht.persist import NodeDatabase
from dhtquery.dht.storage import ChangeWatchers, PlainStorage, RecordStore, StoreLimits
from dhtquery.testing import FakeClock

from .dht_helpers import signed

KEY = digest("watched")
OTHER = digest("other")


class _Watcher:
    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    def changed(self, key: bytes | None) -> None:
        self.keys.append(key)


def test_a_plain_store_tells_each_value_stored_dropped_and_its_limits_set() -> None:
    clock = FakeClock()
    store = PlainStorage(StoreLimits(ttl=10.0), clock)
    watcher = _Watcher()
    store.watchers.add(watcher.changed)
    store[KEY] = "a"
    store[KEY] = "b"  # (stored again)
    clock.advance(5.0)
    store[OTHER] = "c"
    clock.advance(5.0)
    assert store.get(OTHER) == "c"  # (culls KEY, past its TTL)
    store.limits = StoreLimits(ttl=1.0)
    assert watcher.keys == [KEY, KEY, OTHER, KEY, None]


def test_a_record_store_tells_each_record_stored_and_dropped() -> None:
    clock = FakeClock()
    store = RecordStore(StoreLimits(ttl=10.0), clock=clock)
    watcher = _Watcher()
    store.watchers.add(watcher.changed)
    record = signed("alice", b"a", KEY)
    store.put(KEY, record, clock.now())
    store.put(KEY, record, clock.now())  # (the same record: its TTL refreshed)
    store.put(OTHER, signed("bob", b"b", OTHER), clock.now())
    clock.advance(10.0)
    assert store.get(KEY, clock.now()) == []  # (dropped: past its TTL)
    assert store.expire(clock.now()) == 1  # (OTHER's)
    assert watcher.keys == [KEY, KEY, OTHER, KEY, OTHER]


def test_watchers_are_held_weakly_and_can_be_removed() -> None:
    watchers = ChangeWatchers()
    kept, dropped, removed = _Watcher(), _Watcher(), _Watcher()
    for watcher in (kept, dropped, removed):
        watchers.add(watcher.changed)
    assert len(watchers) == 3
    watchers.remove(removed.changed)
    del dropped
    gc.collect()
    assert len(watchers) == 1
    watchers.changed(KEY)
    assert kept.keys == [KEY] and removed.keys == []
    watchers.remove(removed.changed)  # (not watching: nothing)
    assert len(watchers) == 1


class _Raising:
    def changed(self, key: bytes | None) -> None:
        raise RuntimeError("a watcher's bug")


def test_a_watcher_that_raises_is_logged_and_the_others_are_told_still(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = NodeDatabase(tmp_path / "node.db")
    store = PlainStorage(clock=FakeClock(), database=database)
    raising, watcher = _Raising(), _Watcher()
    store.watchers.add(raising.changed)
    store.watchers.add(watcher.changed)
    with caplog.at_level(logging.ERROR, logger="dhtquery.dht"):
        store[KEY] = "stored"
    assert watcher.keys == [KEY]
    assert "watcher failed" in caplog.text
    # the store's change is whole: in memory and in its file
    assert store.get(KEY) == "stored"
    assert [(key, value) for key, value, _ in database.values()] == [(KEY, "stored")]


def test_a_watcher_reading_the_key_back_leaves_the_store_whole() -> None:
    """A watcher that reads the key it is told of (a cache of answers
    rebuilding its own) while ``expire`` drops the key's records one by one:
    each record dropped once, the counts right."""
    clock = FakeClock()
    store = RecordStore(StoreLimits(ttl=10.0), clock=clock)
    empty = store.bytes_used
    for name in ("alice", "bob"):
        store.put(KEY, signed(name, b"x", KEY), clock.now())
    read: list[int] = []

    class _Reader:
        def changed(self, key: bytes | None) -> None:
            assert key is not None
            read.append(len(store.get(key, clock.now())))

    reader = _Reader()
    store.watchers.add(reader.changed)
    clock.advance(10.0)
    assert store.expire(clock.now()) == 1  # (the reader's get dropped the other)
    assert read == [0, 0] and len(store) == 0 and store.key_count() == 0
    assert store.bytes_used == empty

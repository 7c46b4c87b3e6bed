"""The stores' watchers (``ChangeWatchers``): told the key of every value or
record stored, replaced or dropped (None when every key's may have changed),
held weakly, so that a cache of answers forgets one key's, not all."""

from __future__ import annotations

import gc

from kademlia.utils import digest

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

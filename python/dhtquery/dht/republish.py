"""Republishing: the original publisher of a record stores it again on the
k closest nodes every ``interval`` seconds (stock kademlia: 3600 s), and
once more soon after it restarts and rejoins, so a record outlives the
holders that lost it (a holder that restarted ephemeral, left, or dropped it
at its TTL) as long as its publisher is up.

What a node published is remembered in memory and, with a data directory,
in its database (``published`` table), so a restarted publisher goes on.
The rounds run on the node's clock (a test's ``FakeClock`` too): one timer,
and while a round runs one task, which stores at most ``IN_FLIGHT`` records
at once (each store is a lookup plus k requests, through the node's bounded
request window).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Protocol

from ..errors import InvalidArgumentError, StorageFull
from ..query import Clock
from .persist import NodeDatabase
from .records import Record

__all__ = ["DEFAULT_INTERVAL", "IN_FLIGHT", "MAX_PUBLISHED", "Republisher"]

log = logging.getLogger("dhtquery.dht")

#: Seconds between republishing rounds (stock kademlia's).
DEFAULT_INTERVAL: Final = 3600.0
#: Records one node remembers as its own at most (as StoreLimits.keys):
#: beyond, ``put`` refuses (StorageFull) rather than forget one.
MAX_PUBLISHED: Final = 100_000
#: Records a round stores at once.
IN_FLIGHT: Final = 8

#: store(key, record) -> nodes that hold it
Store = Callable[[bytes, Record], Awaitable[int]]


class _Cancellable(Protocol):
    def cancel(self) -> None: ...


class Republisher:
    """The records one node published, and the rounds that store them again
    through ``store``. ``interval`` None: remembered, never republished by
    a timer (``round()`` still can). ``stats``: rounds, records republished,
    failed (no node took it), errors."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        database: NodeDatabase | None = None,
        *,
        interval: float | None = DEFAULT_INTERVAL,
        listening: Callable[[], bool] = lambda: True,
    ) -> None:
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0
        ):
            raise InvalidArgumentError(f"interval must be > 0 seconds or None, got {interval!r}")
        self._store = store
        self._clock = clock
        self._database = database
        self.interval = interval
        self._listening = listening
        #: (key, publisher, name) -> record, oldest first
        self._published: dict[tuple[bytes, str, str], Record] = {}
        self._timer: _Cancellable | None = None
        self._running = False
        self._task: asyncio.Task[int] | None = None
        self.stats: Counter[str] = Counter()
        #: remembered from the database and not republished yet since
        self.restored = False
        if database is not None:
            for key, record in list(database.published()):
                if not record.signature_valid():  # (a damaged row: never served)
                    database.delete_published(key, record.publisher, record.name)
                    continue
                self._published[(key, record.publisher, record.name)] = record
            self.restored = bool(self._published)

    def __len__(self) -> int:
        return len(self._published)

    def items(self) -> Iterator[tuple[bytes, Record]]:
        """(key, record) of every record remembered, oldest first."""
        return iter([(slot[0], record) for slot, record in self._published.items()])

    def remember(self, key: bytes, record: Record) -> None:
        """``record`` was published by this node under ``key``: republish it
        (it replaces an earlier record of its publisher and name). Raises
        StorageFull past ``MAX_PUBLISHED`` records."""
        slot = (key, record.publisher, record.name)
        if slot not in self._published and len(self._published) >= MAX_PUBLISHED:
            raise StorageFull(f"this node remembers its limit of {MAX_PUBLISHED} publications")
        self._published.pop(slot, None)  # (a replacement moves to the end)
        self._published[slot] = record
        if self._database is not None:
            self._database.save_published(key, record)
        if self._running and self._timer is None and self.interval is not None:
            self._schedule(self.interval)

    def forget(self, key: bytes, publisher: str, name: str = "") -> bool:
        """Stop republishing a record; False if it was not remembered."""
        if self._published.pop((key, publisher, name), None) is None:
            return False
        if self._database is not None:
            self._database.delete_published(key, publisher, name)
        return True

    # -- the loop -----------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a round is in progress."""
        return self._task is not None

    def start(self) -> None:
        """Schedule rounds every ``interval`` (none if None) while there is
        something to republish (a node that published nothing has no
        timer); again: the next round an interval from now."""
        self._running = True
        self._cancel_timer()
        if self.interval is not None and self._published:
            self._schedule(self.interval)

    def soon(self, delay: float = 0.0) -> None:
        """Run a round ``delay`` seconds from now (after a restart: the node
        has rejoined), then every ``interval`` again."""
        self._running = True
        self._cancel_timer()
        self._schedule(delay)

    def stop(self) -> None:
        """No more rounds: the timer is cancelled, a round in progress too."""
        self._running = False
        self._cancel_timer()
        if self._task is not None:
            self._task.cancel()

    async def drain(self) -> None:
        """Wait for a round in progress to end."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, delay: float) -> None:
        self._timer = self._clock.call_at(self._clock.now() + delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self._running or not self._listening():
            return  # stopped: listen() starts the rounds again
        if self._task is None and self._published:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # (a FakeClock advanced outside the loop)
                loop = None
            if loop is not None:
                self._task = loop.create_task(self.round())
                self._task.add_done_callback(self._round_done)
        if self.interval is not None and self._published:
            self._schedule(self.interval)

    def _round_done(self, task: asyncio.Task[int]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            self.stats["errors"] += 1
            log.warning("republishing failed: %r", task.exception())

    async def round(self) -> int:
        """Store every remembered record again, ``IN_FLIGHT`` at a time;
        returns how many some node took."""
        self.stats["rounds"] += 1
        self.restored = False
        pending = list(self.items())
        stored = 0

        async def one(key: bytes, record: Record) -> bool:
            try:
                held = await self._store(key, record)
            except StorageFull:
                held = 0
            return held > 0

        for start in range(0, len(pending), IN_FLIGHT):
            batch = pending[start : start + IN_FLIGHT]
            results: list[Any] = await asyncio.gather(*(one(k, r) for k, r in batch))
            done = sum(1 for ok in results if ok)
            stored += done
            self.stats["republished"] += done
            self.stats["failed"] += len(batch) - done
        log.debug("republished %d of %d records", stored, len(pending))
        return stored

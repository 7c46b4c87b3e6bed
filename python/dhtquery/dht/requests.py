"""Outstanding RPCs, tracked in a query core.

Each request is a one-result query in its own QueryCore: its deadline sits in
the core's expiry wheel (one loop timer for all of them, where rpcudp makes a
``call_later`` per request), a response ends it and records the RTT in the
core's latency histogram, and a response that comes after the request gave up
is told apart from one for an id never sent (late vs unknown).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Final

from .._backend import load_core
from ..timer import ExpiryTimer
from ..timer import now as clock
from .wire import MSG_ID_SIZE

if TYPE_CHECKING:
    from .._core_py import QueryCore, QueryId

__all__ = ["Reply", "RequestTable"]

#: The answer a caller gets: (True, value) or (False, None), as rpcudp gives.
Reply = tuple[bool, Any]
_NO_REPLY: Final[Reply] = (False, None)
_PAD: Final = bytes(MSG_ID_SIZE - 16)
_GIVEN_UP_KEPT: Final = 4096

# Response statuses for the protocol's drop counters.
ANSWERED: Final = "answered"
WRONG_ADDRESS: Final = "wrong_address"
LATE: Final = "late_response"
UNKNOWN: Final = "unknown_id"


class _Pending:
    __slots__ = ("address", "future", "name", "query_id", "sent")

    def __init__(
        self,
        query_id: QueryId,
        address: Hashable,
        name: str,
        future: asyncio.Future[Reply],
        sent: float,
    ) -> None:
        self.query_id = query_id
        self.address = address
        self.name = name
        self.future = future
        self.sent = sent


class RequestTable:
    """msg id -> pending request; the message id is the query id's 16 UUID
    bytes and 4 zero bytes, so a late response can still be looked up in
    the core's tombstones."""

    def __init__(self, loop: asyncio.AbstractEventLoop, backend: str = "auto", grace: float = 5.0):
        self.backend, module = load_core(backend)
        self._core: QueryCore = module.QueryCore(grace)
        self._query_id = module.QueryId
        self._loop = loop
        self._grace = grace
        self._pending: dict[bytes, _Pending] = {}
        self._given_up: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._by_query: dict[QueryId, bytes] = {}
        self._timer = ExpiryTimer(loop, self._core, self._expired)
        #: called as on_timeout(address, name, sent) for each request given up
        self.on_timeout: Any = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def core(self) -> QueryCore:
        return self._core

    def open(
        self, address: Hashable, name: str, timeout: float
    ) -> tuple[bytes, asyncio.Future[Reply]]:
        """Register a request to ``address`` that gives up after ``timeout``."""
        now = clock()
        query_id = self._core.register(timeout, 1, 1, now)
        # The UUID's 122 random bits make the id unguessable; rpcudp's ids
        # are 20 bytes, so pad.
        msg_id = query_id.uuid.bytes + _PAD
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[msg_id] = _Pending(query_id, address, name, future, now)
        self._by_query[query_id] = msg_id
        self._timer.arm(now + timeout)
        return msg_id, future

    def abandon(self, msg_id: bytes) -> None:
        """Forget a request that could not be sent."""
        pending = self._pending.pop(msg_id, None)
        if pending is not None:
            del self._by_query[pending.query_id]
            self._core.cancel(pending.query_id, clock())

    def answer(self, msg_id: bytes, address: Hashable, value: Any) -> tuple[str, str, float]:
        """A response arrived: (status, rpc name, rtt in seconds). A late
        answer (to a request given up less than ``grace`` ago) comes with its
        name and its real round trip too: the peer is slow, not gone."""
        pending = self._pending.get(msg_id)
        if pending is None:
            status = self._late_or_unknown(msg_id, address)
            given_up = self._given_up.pop(msg_id, None) if status == LATE else None
            if given_up is None:
                return status, "", 0.0
            name, sent = given_up
            return status, name, clock() - sent
        if pending.address != address:
            # Keep waiting for the real peer: a forged answer must not end it.
            return WRONG_ADDRESS, pending.name, 0.0
        del self._pending[msg_id]
        del self._by_query[pending.query_id]
        now = clock()
        self._core.finish(pending.query_id, now, "all_peers")
        self._timer.arm(now + self._grace)
        if not pending.future.done():
            pending.future.set_result((True, value))
        return ANSWERED, pending.name, now - pending.sent

    def _late_or_unknown(self, msg_id: bytes, address: Hashable) -> str:
        try:
            query_id = self._query_id(uuid.UUID(bytes=msg_id[:16]))
        except ValueError:
            return UNKNOWN
        # The core counts it: LATE while the id's tombstone lasts.
        status = self._core.offer(query_id, address, b"", None, clock())
        return LATE if status == 4 else UNKNOWN

    def _expired(self, outcome: Any) -> None:
        msg_id = self._by_query.pop(outcome[0])
        pending = self._pending.pop(msg_id)
        # Remember what was asked, so a late answer still tells what the
        # peer speaks.
        self._given_up[msg_id] = (pending.name, pending.sent)
        if len(self._given_up) > _GIVEN_UP_KEPT:
            self._given_up.popitem(last=False)
        if self.on_timeout is not None:
            self.on_timeout(pending.address, pending.name, pending.sent)
        if not pending.future.done():
            pending.future.set_result(_NO_REPLY)

    def close(self) -> None:
        """Give up every request now (each caller gets (False, None))."""
        self._timer.stop()
        now = clock()
        for msg_id, pending in list(self._pending.items()):
            del self._pending[msg_id]
            self._core.cancel(pending.query_id, now)
            if not pending.future.done():
                pending.future.set_result(_NO_REPLY)
        self._by_query.clear()

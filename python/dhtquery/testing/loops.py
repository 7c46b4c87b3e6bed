"""The one event-loop factory of the tests, the CLI, the benches and the
demo: ``asyncio.Runner(loop_factory=loop_factory("uvloop"))``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Literal

from ..errors import InvalidArgumentError

__all__ = ["LOOPS", "LoopName", "loop_factory"]

LoopName = Literal["asyncio", "uvloop"]
#: The event loops dhtquery runs under, by the name every tool takes.
LOOPS: Final[tuple[LoopName, ...]] = ("asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the event loop called ``name`` (``"asyncio"`` or
    ``"uvloop"``). ImportError naming the fix when uvloop is not installed,
    ValueError for any other name."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ImportError("uvloop is not installed (pip install uvloop)") from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise InvalidArgumentError(f"loop must be one of {', '.join(LOOPS)}, got {name!r}")

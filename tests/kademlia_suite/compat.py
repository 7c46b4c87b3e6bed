"""What kademlia 2.2.3's own test suite needs from a pytest-asyncio of its
day, under today's (>= 1.0): the ``event_loop`` fixture (the loop an async
test runs in) and a current event loop for the plain tests that call
``asyncio.get_event_loop()``. Nothing in kademlia's tests is changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def event_loop(_function_scoped_runner: Any) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = _function_scoped_runner.get_loop()
    return loop


@pytest.fixture(scope="session")
def _default_loop() -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for every plain test, as asyncio's default loop was then:
    # a transport a test closes finishes closing when the next one runs it.
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def _current_event_loop(
    request: pytest.FixtureRequest, _default_loop: asyncio.AbstractEventLoop
) -> Iterator[None]:
    if request.node.get_closest_marker("asyncio") is not None:
        yield
        return
    asyncio.set_event_loop(_default_loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)

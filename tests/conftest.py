"""Shared fixtures: every core test runs against both cores (ids ``rs`` and
``py``), and every asyncio test under both event loops."""

from __future__ import annotations

import asyncio
import atexit
import enum
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar

import pytest

from dhtquery.testing import LOOPS, loop_factory

T = TypeVar("T")

# A node given a real port keeps its data in the user data directory
# (platformdirs): in tests, and in every process they start, that is a
# temporary directory, removed when the session ends.
_DATA_HOME = tempfile.mkdtemp(prefix="dhtquery-tests-data-")
os.environ["XDG_DATA_HOME"] = _DATA_HOME
# Publisher keys and the trust store live in the user config directory: a
# temporary one too.
os.environ["XDG_CONFIG_HOME"] = os.path.join(_DATA_HOME, "config")
atexit.register(shutil.rmtree, _DATA_HOME, ignore_errors=True)

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    name: loop_factory(name) for name in LOOPS
}
# No test may hang the suite: every coroutine a test runs is bounded.
TEST_TIMEOUT = 60.0


def _rust_core() -> ModuleType | None:
    try:
        return importlib.import_module("dhtquery._core")
    except ImportError:
        return None


def require_rust() -> ModuleType:
    module = _rust_core()
    if module is None:
        message = (
            "the Rust core dhtquery._core is not built "
            "(pip install -e '.[test]' or maturin develop builds it)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return module


@pytest.fixture(params=["rust", "python"], ids=["rs", "py"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "rust":
        require_rust()
    return str(request.param)


@pytest.fixture
def core_module(backend: str) -> ModuleType:
    if backend == "rust":
        return require_rust()
    return importlib.import_module("dhtquery.query._core_py")


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    factory = LOOP_FACTORIES[request.param]

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as asyncio_runner:
            return asyncio_runner.run(asyncio.wait_for(coro, TEST_TIMEOUT))

    return runner


def typed_form(value: Any) -> Any:
    """``value`` with the type of each enum, list and tuple in it kept, so
    that the two cores' answers compare equal only if their types match too
    (an IntEnum equals its int; a tuple is not a list)."""
    if isinstance(value, enum.Enum):
        return (type(value), value)
    if isinstance(value, list | tuple):
        return (type(value), [typed_form(item) for item in value])
    return value

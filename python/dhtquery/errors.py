"""The exception tree of dhtquery: every error the package raises on purpose
derives from :class:`DhtQueryError`, and also from the built-in class a caller
would expect (``ValueError`` for a bad value, ``TypeError`` for a wrong type,
``RuntimeError`` for misuse), so ``except ValueError`` keeps working.

Both query cores raise these classes: the Rust core imports them from here.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "DhtQueryError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "ManagerClosedError",
    "NoRunningLoopError",
]


class DhtQueryError(Exception):
    """Root of every error raised by dhtquery."""


class InvalidArgumentError(DhtQueryError, ValueError):
    """An argument has a value outside what it accepts; the message names it."""


class InvalidArgumentTypeError(DhtQueryError, TypeError):
    """An argument has the wrong type; the message names it."""


class NoRunningLoopError(DhtQueryError, RuntimeError):
    """A QueryManager was used where no asyncio event loop is running."""


class ManagerClosedError(DhtQueryError, RuntimeError):
    """A QueryManager was used after ``close()``."""


class BackendUnavailableError(DhtQueryError, ImportError):
    """``DHTQUERY_BACKEND=rust`` (or ``backend="rust"``) was asked for, but the
    compiled core cannot be imported."""

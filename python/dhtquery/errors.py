"""The exception tree of dhtquery: every error the package raises on purpose
derives from :class:`DhtQueryError`, and also from the built-in class a caller
would expect (``ValueError`` for a bad value, ``TypeError`` for a wrong type,
``RuntimeError`` for misuse), so ``except ValueError`` keeps working.

Both query cores raise these classes: the Rust core imports them from here.
"""

from __future__ import annotations

from rpcudp.exceptions import MalformedMessage

__all__ = [
    "BackendUnavailableError",
    "DhtQueryError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "KeyFileError",
    "ManagerClosedError",
    "NoRunningLoopError",
    "NotListeningError",
    "RecordError",
    "SchemaError",
    "StorageFull",
    "TrustError",
    "UnsupportedError",
    "WireError",
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


class NotListeningError(DhtQueryError, RuntimeError):
    """A DhtNode was asked to do what needs its socket before ``listen()``."""


class UnsupportedError(DhtQueryError, RuntimeError):
    """Asked of a node what its configuration cannot do (a DhtNode running a
    stock kademlia protocol_class has no multi-record keys, say)."""


class WireError(DhtQueryError, MalformedMessage, ValueError):  # type: ignore[misc]
    """A datagram or message that cannot be read or written; ``kind`` names
    what was wrong (a node's drop counters are keyed by it). It is also
    rpcudp's ``MalformedMessage``, which stock kademlia raises for the same
    misuse (a value too large for a datagram, say)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RecordError(DhtQueryError, ValueError):
    """A record that fails its schema, its signature, its slot or its
    sequence number; the message names the field, ``kind`` what was wrong
    (``bad_record``, ``bad_signature``, ``wrong_slot``, ``stale_sequence``,
    ``expired``: a node's drop counters are keyed by it)."""

    def __init__(self, message: str, kind: str = "bad_record") -> None:
        super().__init__(message)
        self.kind = kind


class KeyFileError(DhtQueryError, ValueError):
    """A publisher key file that cannot be used: missing, malformed, readable
    by others (mode wider than 0600), or in the way of a new key; the
    message names the file and what is wrong with it."""


class TrustError(DhtQueryError, ValueError):
    """A namespace refused by the trust store: claimed by a key other than
    the one pinned, or (strict mode) not pinned at all; the message names
    the namespace and both keys."""


class StorageFull(DhtQueryError, RuntimeError):
    """A store refused a record or value; ``str()`` says which cap. What it
    already holds is kept."""


class SchemaError(DhtQueryError, ValueError):
    """A package, query or catalog entry that breaks the schema; ``field``
    names the part (and the package, where there is one)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

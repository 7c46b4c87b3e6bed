"""What a node keeps across restarts, in one SQLite file (the standard
library's ``sqlite3``): its node id, the records and plain values it holds
for others, the records it published itself (it republishes them), the
contacts of its routing table, and named key-value tables for the layers
above (the registry keeps its catalog in one).

Stores stay in memory and write through to the file, so serving never reads
the disk. The file runs in WAL mode with ``synchronous=NORMAL``: every write
is committed when its call returns, so a process killed (even ``kill -9``)
after ``put`` returned leaves the record on disk; only a power loss may
take the last commits. Times on disk are wall-clock seconds (a monotonic
clock does not survive a restart): an expiry is turned back into the node's
clock when the file is read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgpack

from ..errors import DhtQueryError, InvalidArgumentError, InvalidArgumentTypeError, RecordError
from .records import Record

__all__ = ["DATABASE_NAME", "KeyValueTable", "NodeDatabase"]

#: The file a node keeps in its data directory.
DATABASE_NAME: Final = "node.sqlite3"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    key BLOB NOT NULL, publisher TEXT NOT NULL, name TEXT NOT NULL,
    data BLOB NOT NULL, hash BLOB NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (key, publisher, name)
);
CREATE TABLE IF NOT EXISTS plain (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, stored REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id BLOB PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS published (
    key BLOB NOT NULL, publisher TEXT NOT NULL, name TEXT NOT NULL,
    data BLOB NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (key, publisher, name)
);
CREATE TABLE IF NOT EXISTS kv (
    space TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (space, key)
);
"""
#: Longest name of a key-value table.
MAX_TABLE_NAME: Final = 64


class NodeDatabase:
    """One node's file. Not shared between processes: a second node on the
    same directory would interleave two nodes' state."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit (isolation_level=None): each statement is its own
            # transaction, committed before the call returns.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise DhtQueryError(f"cannot open the node's database {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # -- identity ---------------------------------------------------------

    def node_id(self) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'node_id'").fetchone()
        return None if row is None else bytes(row[0])

    def set_node_id(self, node_id: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('node_id', ?)", (node_id,)
        )

    def publisher_seed(self) -> bytes | None:
        """The seed of the node's own publisher key (its default signer)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'publisher_seed'").fetchone()
        return None if row is None else bytes(row[0])

    def set_publisher_seed(self, seed: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('publisher_seed', ?)", (seed,)
        )

    # -- records ----------------------------------------------------------

    # A record is kept as its wire array (msgpack) in ``data``, its public key
    # (hex) in ``publisher`` and its signature in ``hash``: the table of the
    # unsigned records before it. Rows that do not read as a signed record
    # (an older file's) are dropped by the store when it loads them.

    def save_record(self, key: bytes, record: Record, expires: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records (key, publisher, name, data, hash, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                record.public_key.hex(),
                record.name,
                msgpack.packb(record.to_wire(), use_bin_type=True),
                record.signature,
                expires,
            ),
        )

    def delete_record(self, key: bytes, public_key: bytes, name: str) -> None:
        self._db.execute(
            "DELETE FROM records WHERE key = ? AND publisher = ? AND name = ?",
            (key, public_key.hex(), name),
        )

    def records(self) -> Iterator[tuple[bytes, Record, float]]:
        """(key, record, wall-clock expiry) of every record on file (read,
        not verified: the store verifies what it loads)."""
        rows = self._db.execute(
            "SELECT key, publisher, name, data, hash, expires FROM records"
        ).fetchall()
        for key, publisher, name, data, _, expires in rows:
            try:
                record = Record.from_wire(msgpack.unpackb(bytes(data), raw=False))
            except (RecordError, ValueError, TypeError, msgpack.ExtraData):
                self._db.execute(
                    "DELETE FROM records WHERE key = ? AND publisher = ? AND name = ?",
                    (key, publisher, name),
                )
                continue
            yield bytes(key), record, expires

    # -- plain values ------------------------------------------------------

    def save_value(self, key: bytes, value: Any, stored: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO plain (key, value, stored) VALUES (?, ?, ?)",
            (key, msgpack.packb(value, use_bin_type=True), stored),
        )

    def delete_value(self, key: bytes) -> None:
        self._db.execute("DELETE FROM plain WHERE key = ?", (key,))

    def values(self) -> Iterator[tuple[bytes, Any, float]]:
        """(key, value, wall-clock time stored), oldest first."""
        for key, packed, stored in self._db.execute(
            "SELECT key, value, stored FROM plain ORDER BY stored"
        ):
            yield bytes(key), msgpack.unpackb(packed, raw=False), stored

    # -- contacts ----------------------------------------------------------

    def save_contacts(self, contacts: list[tuple[bytes, str, int]]) -> None:
        """Replace the remembered contacts with ``contacts``."""
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM contacts")
            self._db.executemany(
                "INSERT OR REPLACE INTO contacts (id, host, port) VALUES (?, ?, ?)", contacts
            )

    def contacts(self) -> list[tuple[bytes, str, int]]:
        return [
            (bytes(node_id), host, int(port))
            for node_id, host, port in self._db.execute("SELECT id, host, port FROM contacts")
        ]

    # -- records this node published (it republishes them) -----------------

    # (as in ``records``: the wire array in ``data``, the signature in ``hash``)

    def save_published(self, key: bytes, record: Record) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO published (key, publisher, name, data, hash) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                key,
                record.publisher,
                record.name,
                msgpack.packb(record.to_wire(), use_bin_type=True),
                record.signature,
            ),
        )

    def delete_published(self, key: bytes, publisher: str, name: str) -> None:
        self._db.execute(
            "DELETE FROM published WHERE key = ? AND publisher = ? AND name = ?",
            (key, publisher, name),
        )

    def published(self) -> Iterator[tuple[bytes, Record]]:
        """(key, record) of every record this node published, oldest first
        (read, not verified; a row that is no signed record is dropped)."""
        rows = self._db.execute(
            "SELECT key, publisher, name, data, hash FROM published ORDER BY rowid"
        ).fetchall()
        for key, publisher, name, data, _ in rows:
            try:
                record = Record.from_wire(msgpack.unpackb(bytes(data), raw=False))
            except (RecordError, ValueError, TypeError, msgpack.ExtraData):
                self.delete_published(bytes(key), publisher, name)
                continue
            yield bytes(key), record

    # -- key-value tables of the layers above -------------------------------

    def table(self, name: str) -> KeyValueTable:
        """The key-value table ``name`` (made on first write)."""
        return KeyValueTable(self, name)

    def _kv_put(self, space: str, key: bytes, value: bytes) -> None:
        # (REPLACE deletes the old row and inserts a new one: a new rowid,
        # so rowid order is the order of last writes)
        self._db.execute(
            "INSERT OR REPLACE INTO kv (space, key, value) VALUES (?, ?, ?)", (space, key, value)
        )

    def _kv_delete(self, space: str, key: bytes) -> None:
        self._db.execute("DELETE FROM kv WHERE space = ? AND key = ?", (space, key))

    def _kv_get(self, space: str, key: bytes) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM kv WHERE space = ? AND key = ?", (space, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _kv_items(self, space: str) -> list[tuple[bytes, bytes]]:
        return [
            (bytes(key), bytes(value))
            for key, value in self._db.execute(
                "SELECT key, value FROM kv WHERE space = ? ORDER BY rowid", (space,)
            )
        ]

    def _kv_count(self, space: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM kv WHERE space = ?", (space,)).fetchone()
        return int(row[0])

    def _kv_clear(self, space: str) -> None:
        self._db.execute("DELETE FROM kv WHERE space = ?", (space,))


def _check_bytes(what: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidArgumentTypeError(f"{what} must be bytes, got {type(value).__name__}")
    return value


class KeyValueTable:
    """A named table of bytes -> bytes in a node's database, for a layer
    above the DHT (``DhtNode.table(name)``). Each write is committed when the
    call returns, as the node's own writes are. ``items()`` come in the
    order of their last write, oldest first."""

    def __init__(self, database: NodeDatabase, name: str) -> None:
        if not isinstance(name, str):
            raise InvalidArgumentTypeError(f"name must be a str, got {type(name).__name__}")
        if not 0 < len(name) <= MAX_TABLE_NAME:
            raise InvalidArgumentError(
                f"name must be 1 to {MAX_TABLE_NAME} characters, got {name!r:.80}"
            )
        self._database = database
        self.name = name

    def put(self, key: bytes, value: bytes) -> None:
        """Keep ``value`` under ``key`` (replacing what was there)."""
        self._database._kv_put(self.name, _check_bytes("key", key), _check_bytes("value", value))

    def get(self, key: bytes) -> bytes | None:
        return self._database._kv_get(self.name, _check_bytes("key", key))

    def delete(self, key: bytes) -> None:
        """Forget ``key`` (nothing happens if it is not there)."""
        self._database._kv_delete(self.name, _check_bytes("key", key))

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value), oldest write first."""
        return self._database._kv_items(self.name)

    def clear(self) -> None:
        self._database._kv_clear(self.name)

    def __len__(self) -> int:
        return self._database._kv_count(self.name)

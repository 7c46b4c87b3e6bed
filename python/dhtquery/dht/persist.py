"""What a node keeps across restarts, in one SQLite file (the standard
library's ``sqlite3``): its node id, the records and plain values it holds
for others, and the contacts of its routing table.

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

from ..errors import DhtQueryError
from .records import Record

__all__ = ["DATABASE_NAME", "NodeDatabase"]

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
"""


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

    # -- records ----------------------------------------------------------

    def save_record(self, key: bytes, record: Record, expires: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records (key, publisher, name, data, hash, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key, record.publisher, record.name, record.data, record.hash, expires),
        )

    def delete_record(self, key: bytes, publisher: str, name: str) -> None:
        self._db.execute(
            "DELETE FROM records WHERE key = ? AND publisher = ? AND name = ?",
            (key, publisher, name),
        )

    def records(self) -> Iterator[tuple[bytes, Record, float]]:
        """(key, record, wall-clock expiry) of every record on file."""
        for key, publisher, name, data, digest, expires in self._db.execute(
            "SELECT key, publisher, name, data, hash, expires FROM records"
        ):
            yield bytes(key), Record(publisher, bytes(data), bytes(digest), name), expires

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

"""The trust store: which publisher key owns each package namespace, as
this client believes.

- **Trust on first use** (the default): the first key seen publishing into
  a namespace owns it from then on (an entry ``pinned=False``).
- **Pinned**: ``pin(namespace, key)`` (``dhtquery trust NAMESPACE KEY``)
  states the owner explicitly; it replaces a first-use entry.
- **Strict** mode accepts only pinned namespaces.

A second key publishing into a namespace that has an owner is a conflict:
refused, never silently accepted, and reported to every ``on_conflict``
listener (the registry turns it into an event, a metric and a CLI
warning). With a ``path`` the store is a JSON file, rewritten on every
change (first-use entries included, so they survive a restart).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

from ..errors import InvalidArgumentError, TrustError

__all__ = ["NamespaceConflict", "Pin", "TrustStore", "Verdict", "parse_key"]

KEY_SIZE: Final = 32
_FORMAT: Final = "dhtquery-trust-v1"


class Verdict(Enum):
    """What the store says of (namespace, key)."""

    PINNED = "pinned"  # the key pinned explicitly
    TRUSTED = "trusted"  # the key trusted on first use (earlier or now)
    CONFLICT = "conflict"  # another key owns the namespace
    UNPINNED = "unpinned"  # strict mode, and the namespace has no pin

    @property
    def accepted(self) -> bool:
        return self in (Verdict.PINNED, Verdict.TRUSTED)


@dataclass(frozen=True, slots=True)
class Pin:
    key: bytes
    pinned: bool  # explicit (True) or trusted on first use (False)


@dataclass(frozen=True, slots=True)
class NamespaceConflict:
    """A key other than the namespace's owner published into it."""

    namespace: str
    owner: str  # hex
    claimant: str  # hex
    pinned: bool  # whether the owner was pinned explicitly

    def __str__(self) -> str:
        how = "pinned" if self.pinned else "trusted on first use"
        return (
            f"namespace {self.namespace!r} is {how} to key {self.owner[:16]}..., "
            f"but key {self.claimant[:16]}... published into it: refused"
        )


def parse_key(key: str | bytes) -> bytes:
    """A publisher key from its 64 hex digits (or its 32 bytes)."""
    if isinstance(key, bytes):
        raw = key
    else:
        try:
            raw = bytes.fromhex(key.strip())
        except ValueError:
            raise InvalidArgumentError(
                f"key must be 64 hex digits (a publisher's public key), got {key!r:.80}"
            ) from None
    if len(raw) != KEY_SIZE:
        raise InvalidArgumentError(
            f"key must be {KEY_SIZE} bytes (64 hex digits), got {len(raw)} bytes"
        )
    return raw


class TrustStore:
    """``path``: the JSON file to load and keep (None: memory only);
    ``strict``: accept only pinned namespaces."""

    def __init__(self, path: Path | str | None = None, *, strict: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.strict = strict
        self._pins: dict[str, Pin] = {}
        self._listeners: list[Callable[[NamespaceConflict], object]] = []
        #: conflicts seen (a second key claiming an owned namespace)
        self.conflicts = 0
        #: bumped on every change of an owner: what was judged under an
        #: older version is judged again
        self.version = 0
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def __len__(self) -> int:
        return len(self._pins)

    def __contains__(self, namespace: object) -> bool:
        return namespace in self._pins

    def owner(self, namespace: str) -> Pin | None:
        return self._pins.get(namespace)

    def pins(self) -> dict[str, Pin]:
        return dict(self._pins)

    def on_conflict(self, listener: Callable[[NamespaceConflict], object]) -> None:
        self._listeners.append(listener)

    def pin(self, namespace: str, key: str | bytes) -> Pin | None:
        """Pin ``namespace`` to ``key`` explicitly; returns the entry it
        replaced (None if there was none)."""
        if not isinstance(namespace, str) or not namespace:
            raise InvalidArgumentError(f"namespace must be a non-empty str, got {namespace!r}")
        before = self._pins.get(namespace)
        self._pins[namespace] = Pin(parse_key(key), True)
        self._save()
        return before

    def check(self, namespace: str, key: bytes, *, first_use: bool = True) -> Verdict:
        """Whether ``key`` may publish into ``namespace``. A namespace with no
        owner is trusted to ``key`` on first use (unless strict, or
        ``first_use`` is False: then UNPINNED); a conflict is reported."""
        pin = self._pins.get(namespace)
        if pin is None:
            if self.strict or not first_use:
                return Verdict.UNPINNED
            self._pins[namespace] = Pin(key, False)
            self._save()
            return Verdict.TRUSTED
        if pin.key == key:
            return Verdict.PINNED if pin.pinned else Verdict.TRUSTED
        self.conflicts += 1
        conflict = NamespaceConflict(namespace, pin.key.hex(), key.hex(), pin.pinned)
        for listener in self._listeners:
            listener(conflict)
        return Verdict.CONFLICT

    def claim_own(self, namespace: str, key: bytes) -> Verdict:
        """This client publishes into ``namespace`` with ``key``: trusted
        (on first use, even in strict mode: it is our own key); TrustError
        if another key owns it."""
        pin = self._pins.get(namespace)
        if pin is None:
            self._pins[namespace] = Pin(key, False)
            self._save()
            return Verdict.TRUSTED
        if pin.key != key:
            raise TrustError(
                f"namespace {namespace!r} is {'pinned' if pin.pinned else 'trusted'} to key "
                f"{pin.key.hex()}, not to the publishing key {key.hex()}"
            )
        return Verdict.PINNED if pin.pinned else Verdict.TRUSTED

    def is_pinned(self, namespace: str, key: bytes) -> bool:
        pin = self._pins.get(namespace)
        return pin is not None and pin.pinned and pin.key == key

    # -- the file ---------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            document = json.loads(path.read_text())
            if document.get("format") != _FORMAT:
                raise ValueError(f"format is not {_FORMAT}")
            for namespace, entry in document["namespaces"].items():
                self._pins[namespace] = Pin(parse_key(entry["key"]), bool(entry["pinned"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TrustError(f"{path}: not a readable trust store ({exc})") from None

    def _save(self) -> None:
        self.version += 1
        path = self.path
        if path is None:
            return
        document = {
            "format": _FORMAT,
            "namespaces": {
                namespace: {"key": pin.key.hex(), "pinned": pin.pinned}
                for namespace, pin in sorted(self._pins.items())
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(partial, path)

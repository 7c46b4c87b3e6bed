"""Publisher identities: Ed25519 key pairs (PyNaCl, i.e. libsodium) that
sign records, and the key files they live in.

A key file is one line of text, ``dhtquery-ed25519-v1 <64 hex digits of the
32-byte seed>``, created with mode 0600 and never overwritten. A key file
that others can read (any group or other bit set) is refused when loaded:
whoever can read it can publish as its owner.

Why PyNaCl: measured on this project's machine (2 shared cores, a 300-byte
message, 20,000 rounds): sign / verify 22 / 57 us with PyNaCl 1.6.2, 45 /
110 us with cryptography 50.0.2 (OpenSSL), 19 / 37 us with ed25519-dalek 2
in native Rust; wheels 1.4 MB and 4.8 MB. PyNaCl verifies twice as fast as
cryptography from a wheel a third the size, both are PyCA projects with
abi3 wheels; dalek in the Rust core would save ~20 us a cold record but
needs a second verification path (and a library like this one anyway) in
the pure-Python twin. See docs/signed-records.md.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.signing

from ..errors import InvalidArgumentTypeError, KeyFileError

__all__ = ["KEY_FILE_HEADER", "PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "Publisher", "verify_signature"]

PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
_SEED_SIZE: Final = 32
KEY_FILE_HEADER: Final = "dhtquery-ed25519-v1"
#: Mode bits a key file may not have: readable, writable or runnable by
#: anyone but its owner.
_LOOSE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO


class Publisher:
    """An Ed25519 key pair that signs records. ``public_key`` (32 bytes) is
    who the publisher is on the network; ``key_id`` its hex form."""

    __slots__ = ("_last_seq", "_signing_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != _SEED_SIZE:
            raise InvalidArgumentTypeError(f"seed must be {_SEED_SIZE} bytes, got {seed!r:.40}")
        self._signing_key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._signing_key.verify_key)
        #: (target, name) -> the last sequence number this object signed
        self._last_seq: dict[tuple[bytes, str], int] = {}

    @classmethod
    def generate(cls) -> Publisher:
        """A new key pair from the operating system's random source."""
        return cls(os.urandom(_SEED_SIZE))

    @property
    def seed(self) -> bytes:
        """The secret seed (32 bytes) the key pair derives from: what a key
        file or a node's database keeps. Whoever has it can sign as this
        publisher."""
        return bytes(self._signing_key)

    @property
    def key_id(self) -> str:
        """The public key in hex: how a publisher is shown and pinned."""
        return self.public_key.hex()

    def __repr__(self) -> str:
        return f"Publisher({self.key_id})"

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(self._signing_key.sign(message).signature)

    def next_seq(self, target: bytes, name: str, at_least: int) -> int:
        """A sequence number for the slot's next record: ``at_least`` (the
        caller passes the wall clock in microseconds, so a restarted
        publisher still counts up), and above anything signed before."""
        slot = (target, name)
        seq = max(at_least, self._last_seq.get(slot, -1) + 1)
        self._last_seq[slot] = seq
        return seq

    # -- key files ------------------------------------------------------

    def save(self, path: Path | str) -> Path:
        """Write the key to a new file of mode 0600; refuses (KeyFileError)
        if the file exists."""
        path = Path(path)
        text = f"{KEY_FILE_HEADER} {self.seed.hex()}\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{path}: exists; a key file is never overwritten") from None
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot create the key file ({exc.strerror})") from None
        try:
            os.fchmod(fd, 0o600)  # (whatever the umask did)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return path

    @classmethod
    def load(cls, path: Path | str) -> Publisher:
        """Read a key file; KeyFileError if it is missing, malformed, or
        others may read it (mode wider than 0600)."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot open the key file ({exc.strerror})") from None
        try:
            mode = os.fstat(fd).st_mode
            if mode & _LOOSE_BITS:
                raise KeyFileError(
                    f"{path}: permissions {stat.S_IMODE(mode):04o} are too open "
                    f"(others could publish as this key); run: chmod 600 {path}"
                )
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            header, seed_hex = raw.decode("ascii").split()
            seed = bytes.fromhex(seed_hex)
        except (UnicodeDecodeError, ValueError):
            raise KeyFileError(f"{path}: not a dhtquery key file") from None
        if header != KEY_FILE_HEADER or len(seed) != _SEED_SIZE:
            raise KeyFileError(
                f"{path}: not a dhtquery key file (expected '{KEY_FILE_HEADER} <64 hex digits>')"
            )
        return cls(seed)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of
    ``message`` (False for a malformed key or signature too)."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True

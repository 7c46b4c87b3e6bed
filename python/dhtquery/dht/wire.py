"""The wire format: rpcudp's framing, byte-compatible with stock kademlia.

A datagram is one kind byte (0x00 request, 0x01 response), a 20-byte message
id, and a msgpack body: ``[name, [args...]]`` for a request, the return value
for a response. Stock rpcudp packs with u-msgpack-python (pure Python);
msgpack's C codec with ``use_bin_type`` writes the same bytes (str as str,
bytes as bin, tuples as arrays) and reads them back the same way.
"""

from __future__ import annotations

import os
from typing import Any, Final, NamedTuple

import msgpack

from ..errors import WireError

__all__ = [
    "CLIENT_PAD",
    "MAX_DATAGRAM",
    "MAX_REQUEST_BODY",
    "MSG_ID_SIZE",
    "REQUEST",
    "RESPONSE",
    "Frame",
    "WireError",
    "decode",
    "encode_request",
    "encode_response",
    "frame_request",
    "frame_response",
    "new_message_id",
    "pack_request",
    "pack_response",
]

REQUEST: Final = 0x00
RESPONSE: Final = 0x01
MSG_ID_SIZE: Final = 20
HEADER_SIZE: Final = 1 + MSG_ID_SIZE
#: rpcudp refuses to send a request body over 8 KiB; we refuse to read one.
MAX_REQUEST_BODY: Final = 8192
#: The most one UDP datagram over IPv4 can carry.
MAX_DATAGRAM: Final = 65_507
#: The last 4 bytes of a client node's message ids (a random 16-byte UUID
#: otherwise padded with zeros to rpcudp's 20): our nodes serve such a
#: request but never add its sender to their routing tables.
CLIENT_PAD: Final = b"dqC1"

_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack


class Frame(NamedTuple):
    """A decoded datagram."""

    kind: int
    msg_id: bytes
    body: Any


def new_message_id() -> bytes:
    return os.urandom(MSG_ID_SIZE)


def encode_request(msg_id: bytes, name: str, args: tuple[Any, ...] | list[Any]) -> bytes:
    return frame_request(msg_id, pack_request(name, args))


def pack_request(name: str, args: tuple[Any, ...] | list[Any]) -> bytes:
    """A request's body, without its message id (which a request gets only
    when it goes on the wire); refused if over the size limit."""
    body: bytes = _pack([name, args])
    if len(body) > MAX_REQUEST_BODY:
        raise WireError(
            "oversize_request",
            f"request {name!r} is {len(body)} bytes; the limit is {MAX_REQUEST_BODY}",
        )
    return body


def frame_request(msg_id: bytes, body: bytes) -> bytes:
    """The datagram of a request body from :func:`pack_request`."""
    return b"\x00" + msg_id + body


def encode_response(msg_id: bytes, value: Any) -> bytes:
    return frame_response(msg_id, pack_response(value))


def pack_response(value: Any) -> bytes:
    """A response's body, without its message id: an answer made once may
    be framed for several requests (:func:`frame_response`); refused if the
    datagram would be over the size limit."""
    body: bytes = _pack(value)
    if len(body) + HEADER_SIZE > MAX_DATAGRAM:
        raise WireError(
            "oversize_response",
            f"response is {len(body) + HEADER_SIZE} bytes; one datagram holds {MAX_DATAGRAM}",
        )
    return body


def frame_response(msg_id: bytes, body: bytes) -> bytes:
    """The datagram of a response body from :func:`pack_response`."""
    return b"\x01" + msg_id + body


def decode(datagram: bytes) -> Frame:
    """Read a datagram, or raise WireError naming what is wrong with it."""
    size = len(datagram)
    if size <= HEADER_SIZE:
        raise WireError("short", f"datagram of {size} bytes has no body")
    kind = datagram[0]
    if kind == REQUEST:
        if size - HEADER_SIZE > MAX_REQUEST_BODY:
            raise WireError("oversize_request", f"request body of {size - HEADER_SIZE} bytes")
    elif kind != RESPONSE:
        raise WireError("bad_kind", f"unknown datagram kind 0x{kind:02x}")
    try:
        body = msgpack.unpackb(
            datagram[HEADER_SIZE:],
            raw=False,
            strict_map_key=False,
            use_list=True,
        )
    except UnicodeDecodeError as exc:
        raise WireError("bad_utf8", f"invalid UTF-8 in a string: {exc.reason}") from None
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise WireError("malformed", f"not one msgpack value: {exc}") from None
    # (tuple.__new__: NamedTuple's own __new__ is a Python function, and
    # this runs for every datagram)
    return tuple.__new__(Frame, (kind, datagram[1:HEADER_SIZE], body))

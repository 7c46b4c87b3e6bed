"""The shapes of the answers to kademlia's RPCs (and ours), as the datagram
engine checks them: the reference the Rust core's ``DatagramEngine`` keeps
(``rust/datagram.rs``), and the checks ``dhtquery.dht.protocol`` applies.

An answer of the wrong shape counts as no answer (the caller sees (False,
None)) and as a failure of the peer. Each shape has a code, the int a
``DatagramEngine``'s ``shapes`` dict maps an RPC name to.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "ANY",
    "BOOL",
    "CHECKS",
    "CONTACTS",
    "FOUND_VALUE",
    "FOUND_VALUES",
    "MAX_NODE_ID_SIZE",
    "NODE_ID",
    "any_value",
    "contacts",
    "found_value",
    "found_values",
    "ip_literal",
    "is_bool",
    "node_id",
    "node_id_pair",
    "plain",
]

#: kademlia's node ids are SHA-1 digests (20 bytes), but stock accepts any
#: bytes (a uuid4's 16, say): ids and keys of 1 to this many bytes are read.
MAX_NODE_ID_SIZE: Final = 64
_PLAIN_VALUE = (int, float, bool, str, bytes)


def node_id(value: Any) -> bool:
    return type(value) is bytes and 0 < len(value) <= MAX_NODE_ID_SIZE


def node_id_pair(value: list[Any]) -> bool:
    """Two node ids, ``value`` being a list of two (the arguments of a
    find_node, find_value or find_values request after its sender's):
    ``node_id`` of each, written out (one call a request served, not two)."""
    first, second = value
    return (
        type(first) is bytes
        and 0 < len(first) <= MAX_NODE_ID_SIZE
        and type(second) is bytes
        and 0 < len(second) <= MAX_NODE_ID_SIZE
    )


def plain(value: Any) -> bool:
    """A value stock kademlia stores: int, float, bool, str or bytes."""
    return isinstance(value, _PLAIN_VALUE)


def any_value(value: Any) -> bool:
    return True


def is_bool(value: Any) -> bool:
    return type(value) is bool


@functools.lru_cache(maxsize=4096)
def ip_literal(host: str) -> bool:
    """An IPv4 or IPv6 address literal (``inet_pton``'s rules). A contact's
    host is sent to as is: a name would cost a blocking DNS lookup in
    sendto (asyncio) or raise in it (uvloop). Cached: answers repeat the
    same few hosts."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


def contacts(value: Any) -> bool:
    """A list of [node id, IP literal, port] (find_node's answer)."""
    if type(value) is not list:
        return False
    return not value or all(
        type(c) is list
        and len(c) == 3
        and node_id(c[0])
        and type(c[1]) is str
        and ip_literal(c[1])
        and type(c[2]) is int
        and 0 < c[2] < 65536
        for c in value
    )


def found_value(value: Any) -> bool:
    """find_value's answer: {"value": a plain value}, or contacts."""
    return (type(value) is dict and "value" in value and plain(value["value"])) or contacts(value)


def found_values(value: Any) -> bool:
    """find_values' answer: {"records": [...], "nodes": contacts (optional)}
    (each record is checked by the lookup)."""
    return (
        type(value) is dict
        and type(value.get("records")) is list
        and contacts(value.get("nodes", []))
    )


# The codes of the shapes, and their checks by code.
ANY: Final = 0
BOOL: Final = 1
NODE_ID: Final = 2
CONTACTS: Final = 3
FOUND_VALUE: Final = 4
FOUND_VALUES: Final = 5
CHECKS: Final[tuple[Callable[[Any], bool], ...]] = (
    any_value,
    is_bool,
    node_id,
    contacts,
    found_value,
    found_values,
)

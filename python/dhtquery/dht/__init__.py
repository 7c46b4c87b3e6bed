"""The DHT layer: kademlia's network on a fast, hardened protocol, with
multi-record keys, streaming lookups into the query layer, and a generic
gossip overlay. It knows nothing of packages."""

from ..errors import KeyFileError, RecordError, StorageFull, WireError
from .drops import DROP_KINDS, SHED_KINDS
from .gossip import Gossip
from .lookup import LookupHandle, LookupStats
from .node import DhtNode
from .persist import KeyValueTable
from .protocol import STOCK_RPCS, DhtProtocol, RpcSpec
from .records import MAX_DATA, Record, RecordVerifier, latest
from .republish import DEFAULT_INTERVAL as REPUBLISH_INTERVAL
from .reputation import INVALID_PENALTY, PeerStats, Reputation
from .rtt import RttEstimator
from .signing import Publisher, verify_signature
from .storage import MAX_RECORDS_PER_KEY, StoreLimits

__all__ = [
    "DROP_KINDS",
    "INVALID_PENALTY",
    "MAX_DATA",
    "MAX_RECORDS_PER_KEY",
    "REPUBLISH_INTERVAL",
    "SHED_KINDS",
    "STOCK_RPCS",
    "DhtNode",
    "DhtProtocol",
    "Gossip",
    "KeyFileError",
    "KeyValueTable",
    "LookupHandle",
    "LookupStats",
    "PeerStats",
    "Publisher",
    "Record",
    "RecordError",
    "RecordVerifier",
    "Reputation",
    "RpcSpec",
    "RttEstimator",
    "StorageFull",
    "StoreLimits",
    "WireError",
    "latest",
    "verify_signature",
]

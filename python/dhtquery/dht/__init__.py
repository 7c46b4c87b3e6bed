"""The DHT transport: kademlia's network on a fast, hardened protocol, with
multi-record keys and streaming lookups into the query manager."""

from .node import DhtNode
from .protocol import RpcSpec
from .records import Record, RecordError
from .reputation import PeerStats, Reputation
from .rtt import RttEstimator
from .storage import StorageFull, StoreLimits

__all__ = [
    "DhtNode",
    "PeerStats",
    "Record",
    "RecordError",
    "Reputation",
    "RpcSpec",
    "RttEstimator",
    "StorageFull",
    "StoreLimits",
]

"""The swap: kademlia's ``Server`` is dhtquery's ``DhtNode`` for every test
of kademlia's own suite, and nothing else changes."""

from __future__ import annotations

import kademlia.network

from dhtquery import DhtNode

kademlia.network.Server = DhtNode

"""The kinds a DhtNode counts in ``drops``: one list, for exporters and
dashboards that show every kind from zero (rates and alerts work before
the first drop)."""

from __future__ import annotations

from typing import Final

__all__ = ["DROP_KINDS", "SHED_KINDS"]

#: Datagrams and records dropped: what a peer sent that this node could not
#: read, would not serve, or did not ask for (``DhtProtocol.drop``,
#: ``WireError.kind``, ``RecordError.kind``, ``RpcStatus``).
DROP_KINDS: Final = (
    # framing and decoding (wire.py)
    "short", "bad_kind", "malformed", "bad_utf8", "oversize_request", "oversize_response",
    # requests this node would not serve
    "unknown_rpc", "bad_args", "bad_request", "handler_error", "socket_error",
    # answers that match no request of ours, or not as asked (rpc_table.py)
    "wrong_address", "unknown_id", "late_response", "duplicate_response", "bad_response",
    # records refused (records.py)
    "bad_record", "bad_signature", "stale_sequence", "wrong_slot", "expired",
)  # fmt: skip

#: Work refused to keep queues bounded (``DhtProtocol.shed``): requests of
#: our own not sent, hand-overs not made, peers not welcomed or verified,
#: a greedy source's requests not served while this node is overloaded.
SHED_KINDS: Final = (
    "queue_full", "queue_full_background", "handover_dropped", "verify_dropped",
    "welcome_rate_limited", "fair_share",
)  # fmt: skip

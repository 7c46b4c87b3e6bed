"""Prometheus metrics of one DhtNode (and its P2PRegistry), served over HTTP.

A custom collector reads the node's state on every scrape: the counters of
its QueryManager (``QueryMetrics``), its transport's counters
(``node.stats``), its routing table and its registry. The snapshot is taken
on the node's event loop thread (the loop owns that state; the HTTP server
runs in its own thread), with a short bound so a busy loop cannot hang a
scrape.

Latency comes in two forms, named for what they are:

- ``dhtquery_query_duration_seconds``: a real Prometheus histogram, fed with
  the duration of every query the node's manager ends after the exporter was
  attached (successful and timed-out ones; cancelled ones are not latency).
- ``dhtquery_query_duration_quantile_seconds{quantile}``: p50/p95/p99/max
  from the core's HDR histogram, over the manager's whole life. These are
  quantiles, not a Prometheus summary (the core keeps no sum).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..dht import DROP_KINDS as DHT_DROP_KINDS
from ..dht import SHED_KINDS, DhtNode
from ..query import QueryMetrics, QueryOutcome
from ..registry import REGISTRY_DROP_KINDS

__all__ = [
    "DROP_KINDS",
    "DURATION_BUCKETS",
    "MetricsExporter",
    "NodeCollector",
    "NodeSnapshot",
    "observe_queries",
]

log = logging.getLogger("dhtquery.metrics")

#: Seconds, from a loopback lookup (~1 ms) to the longest sane deadline.
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_SCRAPE_WAIT: Final = 2.0
#: The kinds a node counts in ``drops`` (its own, what it shed to keep its
#: queues bounded, and its registry's), exported at zero from the first
#: scrape so that rates and alerts work before the first drop.
DROP_KINDS: Final = (*DHT_DROP_KINDS, *SHED_KINDS, *REGISTRY_DROP_KINDS)


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    metrics: QueryMetrics
    stats: dict[str, int]
    drops: dict[str, int]
    peers: int
    backend: str
    catalog: int | None
    registry_stats: dict[str, int]


def observe_queries(node: DhtNode, observe: Callable[[QueryOutcome], None]) -> None:
    """Call ``observe(outcome)`` whenever a query of ``node.queries`` ends."""
    node.queries.add_listener(observe)


class NodeCollector(Collector):
    """Reads a snapshot on each scrape (see the module doc)."""

    def __init__(self, snapshot: Callable[[], NodeSnapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        if snap is None:
            return
        m = snap.metrics
        queries = CounterMetricFamily(
            "dhtquery_queries", "Queries ended, by outcome", labels=["outcome"]
        )
        queries.add_metric(["successful"], m.successful)
        queries.add_metric(["timed_out"], m.timed_out)
        queries.add_metric(["cancelled"], m.cancelled)
        yield queries
        yield CounterMetricFamily("dhtquery_queries_started", "Queries started", value=m.total)
        yield GaugeMetricFamily("dhtquery_queries_in_flight", "Queries running", value=m.in_flight)
        yield CounterMetricFamily(
            "dhtquery_results", "Unique results accepted by queries", value=m.results
        )
        yield CounterMetricFamily(
            "dhtquery_duplicates", "Duplicate results dropped by queries", value=m.duplicates
        )
        yield CounterMetricFamily(
            "dhtquery_late_results",
            "Results that arrived after their query had ended",
            value=m.late,
        )
        quantiles = GaugeMetricFamily(
            "dhtquery_query_duration_quantile_seconds",
            "Query latency quantiles from the core's HDR histogram, since the node started",
            labels=["quantile"],
        )
        for label, value in (
            ("0.5", m.latency_p50),
            ("0.95", m.latency_p95),
            ("0.99", m.latency_p99),
            ("1", m.latency_max),
        ):
            quantiles.add_metric([label], value)
        yield quantiles
        dropped = CounterMetricFamily(
            "dhtquery_rpc_dropped",
            "Datagrams and records dropped by the transport, by kind",
            labels=["kind"],
        )
        for kind, count in sorted({**dict.fromkeys(DROP_KINDS, 0), **snap.drops}.items()):
            dropped.add_metric([kind], count)
        yield dropped
        yield CounterMetricFamily(
            "dhtquery_rpc_served", "RPC requests served", value=snap.stats.get("served", 0)
        )
        yield CounterMetricFamily(
            "dhtquery_rpc_timeouts",
            "Outgoing RPC requests that got no answer in time",
            value=snap.stats.get("timeouts", 0),
        )
        yield CounterMetricFamily(
            "dhtquery_store_refused",
            "Stores refused because a storage cap was reached",
            value=snap.stats.get("store_refused", 0),
        )
        yield CounterMetricFamily(
            "dhtquery_namespace_conflicts",
            "Packages refused because a key other than their namespace's owner signed them",
            value=snap.drops.get("namespace_conflict", 0),
        )
        yield GaugeMetricFamily("dhtquery_peers", "Contacts in the routing table", value=snap.peers)
        if snap.catalog is not None:
            yield GaugeMetricFamily(
                "dhtquery_catalog_packages", "Packages this node can answer", value=snap.catalog
            )
        announcements = CounterMetricFamily(
            "dhtquery_announcements", "Package announcements, by event", labels=["event"]
        )
        for event, count in sorted(snap.registry_stats.items()):
            announcements.add_metric([event], count)
        yield announcements
        info = GaugeMetricFamily(
            "dhtquery_info", "Version and query core backend", labels=["version", "backend"]
        )
        info.add_metric([__version__, snap.backend], 1)
        yield info


class MetricsExporter:
    """``/metrics`` for one node, on ``addr:port`` (127.0.0.1 by default).

    Make it on the node's loop thread (it captures the running loop), then
    ``start()``; ``stop()`` shuts the HTTP server down and joins its thread.
    """

    def __init__(self, node: DhtNode, registry: Any = None) -> None:
        self.node = node
        self.registry = registry
        self._loop = asyncio.get_running_loop()
        self.prometheus = CollectorRegistry(auto_describe=True)
        self.duration = Histogram(
            "dhtquery_query_duration_seconds",
            "Duration of the node's queries ended since the exporter started "
            "(successful and timed out)",
            buckets=DURATION_BUCKETS,
            registry=self.prometheus,
        )
        self.prometheus.register(NodeCollector(self._snapshot_from_any_thread))
        observe_queries(node, self._observe)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _observe(self, outcome: QueryOutcome) -> None:
        if not outcome.cancelled:
            self.duration.observe(outcome.duration)

    def snapshot(self) -> NodeSnapshot:
        """The node's state now; call on the loop thread."""
        node = self.node
        registry = self.registry
        return NodeSnapshot(
            metrics=node.queries.metrics,
            stats=dict(node.stats) if node.listening else {},
            drops=dict(node.drops) if node.listening else {},
            peers=node.peer_count,
            backend=node.queries.backend,
            catalog=len(registry.catalog) if registry is not None else None,
            registry_stats=dict(registry.stats) if registry is not None else {},
        )

    def _snapshot_from_any_thread(self) -> NodeSnapshot | None:
        loop = self._loop
        try:
            if asyncio.get_running_loop() is loop:
                return self.snapshot()
        except RuntimeError:
            pass
        if loop.is_closed():
            return None
        future: concurrent.futures.Future[NodeSnapshot] = concurrent.futures.Future()

        def take() -> None:
            try:
                future.set_result(self.snapshot())
            except Exception as exc:
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(take)
            return future.result(timeout=_SCRAPE_WAIT)
        except (RuntimeError, concurrent.futures.TimeoutError) as exc:
            log.warning("metrics scrape got no snapshot from the node's loop: %s", exc or "timeout")
            return None

    def start(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics``; returns the port (useful with ``port=0``)."""
        server, thread = start_http_server(port, addr=addr, registry=self.prometheus)
        self._server, self._thread = server, thread
        bound = int(server.server_address[1])
        log.debug("metrics on http://%s:%d/metrics", addr, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

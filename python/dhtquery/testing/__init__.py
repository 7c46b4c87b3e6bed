"""Tools for running dhtquery without a real network's setup: a clock moved
by hand, a local network of nodes (in this process or in worker processes,
optionally on simulated hosts: network namespaces with delay and loss), a
catalog generator and the event-loop factory. The demo, the benchmarks and
the tests all use these."""

from .catalog import (
    BENCH_SEED,
    DEMO_SEED,
    MAX_PACKAGES_PER_TAG,
    CatalogStyle,
    generate_catalog,
    namespace_publisher,
)
from .clock import FakeClock
from .hosts import HostNetwork, HostNetworkError, Link, LinkTransport, namespaces_permitted
from .loops import LOOPS, LoopName, loop_factory
from .network import (
    HOST,
    Address,
    JoinStrategy,
    LocalNetwork,
    Worker,
    WorkerError,
    forget_all_but,
)

__all__ = [
    "BENCH_SEED",
    "DEMO_SEED",
    "HOST",
    "LOOPS",
    "MAX_PACKAGES_PER_TAG",
    "Address",
    "CatalogStyle",
    "FakeClock",
    "HostNetwork",
    "HostNetworkError",
    "JoinStrategy",
    "Link",
    "LinkTransport",
    "LocalNetwork",
    "LoopName",
    "Worker",
    "WorkerError",
    "forget_all_but",
    "generate_catalog",
    "loop_factory",
    "namespace_publisher",
    "namespaces_permitted",
]

"""The benchmarks, shipped in the package: ``dhtquery bench
core|dht|registry|churn|scale|barrage``
or ``python -m dhtquery.bench NAME [options]``.

Modules: :mod:`.core` (the query core across backends), :mod:`.dht`
(lookups on a loopback network, against stock kademlia and OpenDHT),
:mod:`.registry` (``P2PRegistry.search`` against a naive search),
:mod:`.scale` (lookups on 10 to 1,000 nodes over simulated hosts, against
stock kademlia), :mod:`.barrage` (a hostile barrage against one node, and
stock kademlia's; then :mod:`.greedy`, one greedy client against a light
one, the node's fair share on and off),
:mod:`.profile_client` (a DHT client's CPU per lookup, a tool), and what
they share: :mod:`.load` (the load loops and percentiles) and :mod:`.common`
(timing, repetitions, tables, JSON). Each module's docstring documents its
method."""

from ..errors import InvalidArgumentError
from .load import Operation, Phase, closed_loop, open_loop, percentiles_ms, warm_up

__all__ = [
    "BENCHES",
    "Operation",
    "Phase",
    "closed_loop",
    "open_loop",
    "percentiles_ms",
    "run",
    "warm_up",
]

#: ``dhtquery bench NAME`` -> the module whose ``main(argv)`` runs it.
BENCHES = {
    "core": "dhtquery.bench.core",
    "dht": "dhtquery.bench.dht",
    "registry": "dhtquery.bench.registry",
    "churn": "dhtquery.bench.churn",
    "profile": "dhtquery.bench.profile_client",
    "scale": "dhtquery.bench.scale",
    "barrage": "dhtquery.bench.barrage",
}


def run(name: str, argv: list[str] | None = None) -> int:
    """Run bench ``name`` with command-line ``argv``; its exit status."""
    import importlib

    if name not in BENCHES:
        raise InvalidArgumentError(f"bench must be one of {', '.join(BENCHES)}, got {name!r}")
    status: int = importlib.import_module(BENCHES[name]).main(argv)
    return status

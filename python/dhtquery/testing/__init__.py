"""Tools for running dhtquery without a real network's setup: a clock moved
by hand, a local network of nodes, a catalog generator and event-loop
factories. The demo, the benchmarks and the tests all use these."""

from .clock import FakeClock

__all__ = ["FakeClock"]

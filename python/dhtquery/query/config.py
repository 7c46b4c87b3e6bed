"""QueryConfig: the knobs of a query, validated, with named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidArgumentError, InvalidArgumentTypeError
from .types import MAX_RESULTS_LIMIT, MAX_TIMEOUT

__all__ = ["QueryConfig"]


@dataclass(frozen=True, slots=True)
class QueryConfig:
    """How long a query may run, how many results end it early, whether
    per-peer RTO may end it before its deadline, and how many peers it asks.

    The defaults are the settings for a real network (there are no
    ``staging()``/``production()`` presets: they were the defaults under
    other names). The presets below each change what their name says.

    >>> QueryConfig()
    QueryConfig(default_timeout=10.0, max_results=20, adaptive_timeout=True, fan_out=3)
    """

    default_timeout: float = 10.0
    max_results: int = 20
    adaptive_timeout: bool = True
    fan_out: int = 3

    def __post_init__(self) -> None:
        timeout = self.default_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise InvalidArgumentTypeError(
                f"default_timeout must be a number of seconds, got {type(timeout).__name__}"
            )
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise InvalidArgumentError(
                f"default_timeout must be > 0 and <= {MAX_TIMEOUT}, got {timeout!r}"
            )
        _check_count("max_results", self.max_results, MAX_RESULTS_LIMIT)
        _check_count("fan_out", self.fan_out, 1024)
        if not isinstance(self.adaptive_timeout, bool):
            raise InvalidArgumentTypeError(
                f"adaptive_timeout must be a bool, got {type(self.adaptive_timeout).__name__}"
            )
        object.__setattr__(self, "default_timeout", float(timeout))

    @classmethod
    def development(cls) -> QueryConfig:
        """Long timeout, one peer, no adaptive cut-off: predictable to debug."""
        return cls(default_timeout=30.0, max_results=10, adaptive_timeout=False, fan_out=1)

    @classmethod
    def low_latency(cls) -> QueryConfig:
        """A short deadline, few results and one peer: an answer fast or none."""
        return cls(default_timeout=2.0, max_results=10, adaptive_timeout=False, fan_out=1)

    @classmethod
    def high_throughput(cls) -> QueryConfig:
        """Many results from five peers, a deadline cut short by per-peer RTOs."""
        return cls(default_timeout=5.0, max_results=50, adaptive_timeout=True, fan_out=5)


def _check_count(name: str, value: object, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 1 <= value <= limit:
        raise InvalidArgumentError(f"{name} must be in [1, {limit}], got {value!r}")

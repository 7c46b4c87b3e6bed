"""QueryConfig: defaults, presets, validation."""

from __future__ import annotations

import math

import pytest

from dhtquery import InvalidArgumentError, InvalidArgumentTypeError, QueryConfig


def test_query_config_defaults() -> None:
    config = QueryConfig()
    assert config.default_timeout == 10.0
    assert config.max_results == 20
    assert config.adaptive_timeout is True
    assert config.fan_out == 3


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (QueryConfig.development, (30.0, 10, False, 1)),
        (QueryConfig.low_latency, (2.0, 10, False, 1)),
        (QueryConfig.high_throughput, (5.0, 50, True, 5)),
    ],
)
def test_presets(preset: object, expected: tuple[float, int, bool, int]) -> None:
    config = preset()  # type: ignore[operator]
    assert (
        config.default_timeout,
        config.max_results,
        config.adaptive_timeout,
        config.fan_out,
    ) == expected


def test_each_preset_differs_from_the_defaults_and_the_others() -> None:
    presets = [QueryConfig.development(), QueryConfig.low_latency(), QueryConfig.high_throughput()]
    assert len({*presets, QueryConfig()}) == len(presets) + 1
    assert QueryConfig.low_latency().default_timeout < QueryConfig().default_timeout
    assert QueryConfig.high_throughput().max_results > QueryConfig().max_results
    assert not hasattr(QueryConfig, "staging") and not hasattr(QueryConfig, "production")


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"default_timeout": 0}, InvalidArgumentError, "default_timeout"),
        ({"default_timeout": -3.0}, InvalidArgumentError, "default_timeout"),
        ({"default_timeout": math.inf}, InvalidArgumentError, "default_timeout"),
        ({"default_timeout": "10"}, InvalidArgumentTypeError, "default_timeout"),
        ({"max_results": 0}, InvalidArgumentError, "max_results"),
        ({"max_results": 1.5}, InvalidArgumentTypeError, "max_results"),
        ({"fan_out": 0}, InvalidArgumentError, "fan_out"),
        ({"fan_out": True}, InvalidArgumentTypeError, "fan_out"),
        ({"adaptive_timeout": "yes"}, InvalidArgumentTypeError, "adaptive_timeout"),
    ],
)
def test_bad_values_name_the_field(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name) as caught:
        QueryConfig(**kwargs)  # type: ignore[arg-type]
    if error is InvalidArgumentError:  # a bad value is quoted back
        assert repr(kwargs[name]) in str(caught.value)


def test_config_is_immutable() -> None:
    config = QueryConfig()
    with pytest.raises(AttributeError):
        config.fan_out = 9  # type: ignore[misc]

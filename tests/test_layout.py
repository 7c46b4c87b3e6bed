"""The package's shape: the public API importable from the top, one
exception tree, and the layers' own packages."""

from __future__ import annotations

import asyncio
import importlib

import pytest

import dhtquery
from dhtquery import errors


def test_every_public_name_of_the_package_imports() -> None:
    for name in dhtquery.__all__:
        assert getattr(dhtquery, name) is not None, name


def test_layer_packages_keep_their_public_names() -> None:
    from dhtquery.dht import DhtNode
    from dhtquery.registry import P2PRegistry

    assert dhtquery.DhtNode is DhtNode
    assert dhtquery.P2PRegistry is P2PRegistry
    for layer in ("query", "dht", "registry", "testing", "cli"):
        module = importlib.import_module(f"dhtquery.{layer}")
        for name in module.__all__:
            assert hasattr(module, name), f"dhtquery.{layer}.{name}"


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_derives_from_the_root_and_a_builtin(name: str) -> None:
    error = getattr(errors, name)
    assert issubclass(error, errors.DhtQueryError)
    if error is not errors.DhtQueryError:
        builtin = [base for base in error.__mro__ if base.__module__ == "builtins"]
        # a class a caller would catch, beyond Exception itself
        assert set(builtin) - {Exception, BaseException, object}, name


def test_errors_raised_by_each_layer_are_in_the_tree() -> None:
    from dhtquery.dht import Record, StoreLimits
    from dhtquery.dht.wire import decode
    from dhtquery.registry import Package

    with pytest.raises(errors.WireError) as wire:
        decode(b"")
    with pytest.raises(errors.RecordError) as record:
        Record.create("not a key pair", b"target", b"data")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgumentError) as limits:
        StoreLimits(keys=0)
    with pytest.raises(errors.SchemaError) as schema:
        Package.from_record({"namespace": "a"})
    for caught in (wire, record, limits, schema):
        assert isinstance(caught.value, errors.DhtQueryError)
        assert isinstance(caught.value, ValueError)


def test_a_node_not_listening_says_so() -> None:
    node = dhtquery.DhtNode()
    with pytest.raises(errors.NotListeningError, match="listen"):
        _ = node.address
    assert isinstance(errors.NotListeningError("x"), RuntimeError)
    assert node.peer_count == 0 and node.pending_requests == 0 and not node.listening


def test_a_stopped_node_is_no_longer_listening() -> None:
    async def scenario() -> tuple[bool, bool]:
        node = dhtquery.DhtNode()
        await node.listen(0, "127.0.0.1")
        before = node.listening
        node.stop()
        return before, node.listening

    assert asyncio.run(scenario()) == (True, False)


def test_a_node_calls_its_stop_callbacks_once_each_even_if_one_fails() -> None:
    node = dhtquery.DhtNode()
    called: list[str] = []

    def broken() -> None:
        called.append("broken")
        raise RuntimeError("a layer's bug")

    node.on_stop(broken)
    node.on_stop(lambda: called.append("second"))
    node.stop()
    assert called == ["broken", "second"]

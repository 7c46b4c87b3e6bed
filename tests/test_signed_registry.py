"""The marketplace with signed packages, end to end on real nodes (UDP on
127.0.0.1), both cores: a package published with a key is found by search
and get_package from other nodes with its key shown; a forged higher
version published by another node's key never appears; a pinned
namespace claimed by a second key is refused and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhtquery.errors import TrustError
from dhtquery.query import QueryConfig, QueryManager, new_core
from dhtquery.registry import P2PRegistry, Package, PackageId, Query, TrustStore, Verdict

from .dht_helpers import eventually, open_nodes, publisher_named, run_paired

CONFIG = QueryConfig(default_timeout=3.0, fan_out=3)
ACME = publisher_named("acme")
MALLORY = publisher_named("mallory")


def _package(version: str, title: str = "HTTP client") -> Package:
    return Package(PackageId("acme", "http-client"), version, title, tags=("http",))


async def _registries(backend: str, nodes: object, count: int) -> list[P2PRegistry]:
    registries = []
    for _ in range(count):
        node = await nodes.add(  # type: ignore[attr-defined]
            bootstrap=[registries[0].node.address] if registries else None,
            join=bool(registries),
            registry=False,
            queries=QueryManager(CONFIG, core=new_core(backend)),
        )
        registries.append(P2PRegistry(node, anti_entropy_period=None))
    return registries


def test_published_package_is_found_with_its_key_and_a_forged_version_never_is(
    backend: str,
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            owner, attacker, *others = await _registries(backend, nodes, 6)
            genuine = _package("1.0.0")
            assert await owner.publish(genuine, publisher=ACME) >= 3
            assert await eventually(
                lambda: all(genuine.id in r.catalog for r in others), timeout=5.0
            )
            # another node, with its own key (and a trust store of its own
            # that does not stop it), publishes a higher version
            attacker.trust = TrustStore()
            forged = _package("9.9.9", "HTTP client (forged)")
            assert await attacker.publish(forged, publisher=MALLORY) >= 1
            assert await nodes.settle(5.0)
            for registry in others:
                found = await registry.search(Query("http"))
                assert [(p.id, str(p.version), p.publisher) for p in found] == [
                    (genuine.id, "1.0.0", ACME.key_id)
                ]
                got = await registry.get_package(genuine.id)
                assert got == genuine and got.publisher == ACME.key_id
                assert got.pinned is False  # trusted on first use, not pinned
                assert registry.node.drops.get("namespace_conflict", 0) >= 1
                assert {c.claimant for c in registry.conflicts} == {MALLORY.key_id}
            # pinned by the user: results say so
            reader = others[0]
            reader.trust.pin("acme", ACME.public_key)
            got = await reader.get_package(genuine.id)
            assert got is not None and got.pinned
            assert [p.pinned for p in await reader.search(Query("http"))] == [True]

    run_paired(backend, scenario())


def test_strict_mode_accepts_pinned_namespaces_only(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            owner, reader = await _registries(backend, nodes, 2)
            reader.trust.strict = True
            await owner.publish(_package("1.0.0"), publisher=ACME)
            assert await nodes.settle(5.0)
            assert await reader.get_package(_package("1.0.0").id) is None
            assert reader.node.drops["namespace_unpinned"] >= 1
            reader.trust.pin("acme", ACME.key_id)
            got = await reader.get_package(_package("1.0.0").id)
            assert got is not None and got.publisher == ACME.key_id and got.pinned

    run_paired(backend, scenario())


def test_a_registry_refuses_to_publish_into_a_namespace_another_key_owns(
    backend: str,
) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            (registry,) = await _registries(backend, nodes, 1)
            registry.trust.pin("acme", ACME.public_key)
            with pytest.raises(TrustError, match="pinned to key"):
                await registry.publish(_package("2.0.0"), publisher=MALLORY)
            assert _package("2.0.0").id not in registry.catalog

    run_paired(backend, scenario())


def test_publish_stores_a_signed_namespace_claim(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            owner, reader = await _registries(backend, nodes, 2)
            await owner.publish(_package("1.0.0"), publisher=ACME)
            assert await reader.claims("acme") == [ACME.key_id]
            assert await reader.claims("nobody") == []

    run_paired(backend, scenario())


def test_trust_store_keeps_pins_and_first_uses_in_its_file(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    store = TrustStore(path)
    assert store.check("acme", ACME.public_key) is Verdict.TRUSTED
    store.pin("tools", MALLORY.key_id)
    again = TrustStore(path)
    assert again.check("acme", ACME.public_key) is Verdict.TRUSTED
    assert again.check("tools", MALLORY.public_key) is Verdict.PINNED
    seen = []
    again.on_conflict(seen.append)
    assert again.check("tools", ACME.public_key) is Verdict.CONFLICT
    assert [(c.namespace, c.owner, c.claimant, c.pinned) for c in seen] == [
        ("tools", MALLORY.key_id, ACME.key_id, True)
    ]
    assert "pinned to key" in str(seen[0]) and again.conflicts == 1
    strict = TrustStore(strict=True)
    assert strict.check("new", ACME.public_key) is Verdict.UNPINNED
    assert "new" not in strict


def test_cli_warns_of_a_namespace_conflict_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from dhtquery.cli.common import warn_conflict
    from dhtquery.registry import NamespaceConflict

    warn_conflict(NamespaceConflict("acme", ACME.key_id, MALLORY.key_id, True))
    err = capsys.readouterr().err
    assert err.startswith("dhtquery: warning: namespace 'acme' is pinned to key ")
    assert MALLORY.key_id[:16] in err and err.endswith("refused\n")


def test_a_lower_version_published_later_is_refused_by_holders(backend: str) -> None:
    async def scenario() -> None:
        async with open_nodes(backend) as nodes:
            owner, other, reader = await _registries(backend, nodes, 3)
            assert await owner.publish(_package("2.0.0"), publisher=ACME) >= 2
            # the same key, another node, an older version: every holder
            # refuses it (stale sequence), as catalogs keep the highest
            assert await other.publish(_package("1.9.9"), publisher=ACME) == 0
            assert sum(r.node.drops.get("stale_sequence", 0) for r in (owner, reader)) >= 1
            reader.catalog = type(reader.catalog)()  # (the DHT must answer alone)
            got = await reader.get_package(_package("2.0.0").id)
            assert got is not None and str(got.version) == "2.0.0"

    run_paired(backend, scenario())


def test_sequence_numbers_follow_versions() -> None:
    ordered = ["0.9.9", "1.0.0-alpha", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0"]
    sequences = [_package(version).sequence for version in ordered]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(ordered)
    assert _package("1.0.0+build.7").sequence == _package("1.0.0").sequence

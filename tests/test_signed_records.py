"""Signed records on real nodes (UDP on 127.0.0.1), each case on both cores:
a peer serving a forged, replayed, tampered or misplaced record has it
refused with its reason counted, the honest record still reaches the
caller, and the peer drops below every honest one in whom we ask first;
holders refuse the same records; spoofed datagrams never cost an honest
peer its score."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kademlia.node import Node
from kademlia.utils import digest

from dhtquery.dht import DhtNode, Publisher, Record, RecordError, latest
from dhtquery.dht.records import RecordVerifier
from dhtquery.dht.storage import RecordStore, StoreLimits
from dhtquery.dht.wire import frame_request, pack_request
from dhtquery.errors import KeyFileError
from dhtquery.testing import FakeClock

from .dht_helpers import dht_network, publisher_named, run_paired, signed

KEY = "signed-key"
DKEY = digest(KEY)
FAR = 10**9  # an expiry no test reaches


def _serve_unchecked(node: DhtNode, key: bytes, record: Record) -> None:
    """Make ``node`` serve ``record`` under ``key`` as a hostile holder
    would: into its store's table, past every check."""
    node.records._keys.setdefault(key, {})[record.slot] = (record, FAR)


def _forged_signature() -> Record:
    alice, mallory = publisher_named("alice"), publisher_named("mallory")
    by_mallory = Record.create(mallory, DKEY, b"mallory's data", seq=5)
    return dataclasses.replace(by_mallory, public_key=alice.public_key)


def _replayed() -> Record:
    return signed("alice", b"alice's old data", KEY, seq=1)


def _tampered_data() -> Record:
    honest = signed("alice", b"alice's data", KEY, seq=2)
    return dataclasses.replace(honest, data=b"alice's dat\x00")


def _tampered_name() -> Record:
    honest = signed("alice", b"alice's data", KEY, seq=2)
    return dataclasses.replace(honest, name="other")


def _other_slot() -> Record:
    return signed("alice", b"alice's data for another key", "another key", seq=3)


CASES: dict[str, tuple[Callable[[], Record], str]] = {
    "forged_signature": (_forged_signature, "bad_signature"),
    "replayed_older_sequence": (_replayed, "stale_sequence"),
    "tampered_data": (_tampered_data, "bad_signature"),
    "tampered_name": (_tampered_name, "bad_signature"),
    "valid_signature_other_slot": (_other_slot, "wrong_slot"),
}


async def _lookup_case(backend: str, make_bad: Callable[[], Record]) -> dict[str, Any]:
    """Two honest holders and one hostile one; a fourth node looks the key
    up from all three. Returns what the test asserts on."""
    async with dht_network(backend, 4) as net:
        caller, honest_a, hostile, honest_b = net.dht_nodes
        honest = signed("alice", b"alice's data", KEY, seq=2)
        for holder in (honest_a, honest_b):
            holder.records.put(DKEY, honest, holder.clock.now())
        _serve_unchecked(hostile, DKEY, make_bad())
        outcome = await caller.get_all(KEY, quorum=10, timeout=5.0)
        reputation = caller.reputation
        now = caller.clock.now()
        peers = [honest_a.address, hostile.address, honest_b.address]
        return {
            "latest": latest(outcome.items),
            "drops": dict(caller.drops),
            "hostile_invalid": reputation.stats(hostile.address).invalid,
            "honest_invalid": [reputation.stats(p).invalid for p in peers if p != hostile.address],
            "hostile_score": reputation.score(hostile.address, now),
            "honest_scores": [reputation.score(p, now) for p in peers if p != hostile.address],
            "asked_last": reputation.best(peers, len(peers), now)[-1] == hostile.address,
            "honest": honest,
        }


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record_from_a_peer_is_refused_counted_and_penalised(backend: str, case: str) -> None:
    make_bad, kind = CASES[case]
    seen = run_paired(backend, _lookup_case(backend, make_bad))
    assert seen["latest"] == [seen["honest"]]
    assert seen["drops"].get(kind, 0) >= 1
    assert seen["hostile_invalid"] >= 1
    assert seen["honest_invalid"] == [0, 0]
    assert seen["hostile_score"] < min(seen["honest_scores"])
    # one invalid record is no rounding error: the hostile peer scores
    # under half of the worst honest one, and is asked last
    assert seen["hostile_score"] < 0.5 * min(seen["honest_scores"])
    assert seen["asked_last"]


def test_both_cores_agree_on_every_case() -> None:
    pytest.importorskip("dhtquery._core")
    summaries: dict[str, list[tuple[Any, ...]]] = {}
    for backend in ("rust", "python"):
        summaries[backend] = []
        for case in sorted(CASES):
            make_bad, kind = CASES[case]
            seen = run_paired(backend, _lookup_case(backend, make_bad))
            summaries[backend].append(
                (
                    case,
                    [r.to_wire() for r in seen["latest"]],
                    seen["drops"].get(kind, 0) >= 1,
                    seen["hostile_invalid"] >= 1,
                    seen["asked_last"],
                )
            )
    assert summaries["rust"] == summaries["python"]


async def _store_case(backend: str) -> dict[str, Any]:
    """A node asks a holder to store each bad record (store_record RPC)."""
    async with dht_network(backend, 2) as net:
        sender, holder = net.dht_nodes
        protocol = sender.protocol
        assert protocol is not None
        honest = signed("alice", b"alice's data", KEY, seq=2)
        holder.records.put(DKEY, honest, holder.clock.now())
        node = Node(holder.node.id, *holder.address)
        accepted = {}
        for case, (make_bad, _) in sorted(CASES.items()):
            ok, value = await protocol.call_store_record(node, DKEY, make_bad())
            accepted[case] = ok and value is True
        # a different key's record is no replacement: it fills its own slot
        mallory = Record.create(publisher_named("mallory"), DKEY, b"mallory's data", seq=99)
        ok, value = await protocol.call_store_record(node, DKEY, mallory)
        return {
            "accepted": accepted,
            "mallory_accepted": ok and value is True,
            "held": holder.records.get(DKEY, holder.clock.now()),
            "drops": dict(holder.drops),
            "sender_invalid": holder.reputation.stats(sender.address).invalid,
            "honest": honest,
            "mallory": mallory,
        }


def test_holders_refuse_bad_records_and_keep_the_honest_one(backend: str) -> None:
    seen = run_paired(backend, _store_case(backend))
    assert seen["accepted"] == dict.fromkeys(CASES, False)
    assert seen["drops"]["bad_signature"] == 3
    assert seen["drops"]["stale_sequence"] == 1
    assert seen["drops"]["wrong_slot"] == 1
    assert seen["mallory_accepted"]
    held = {record.publisher: record for record in seen["held"]}
    assert held[publisher_named("alice").key_id] == seen["honest"]
    assert held[publisher_named("mallory").key_id] == seen["mallory"]
    # an unsolicited request proves nothing about its source: no penalty
    assert seen["sender_invalid"] == 0


def test_a_publisher_replaces_its_record_with_a_higher_sequence_only(backend: str) -> None:
    async def scenario() -> None:
        async with dht_network(backend, 3) as net:
            owner, other, caller = net.dht_nodes
            alice = publisher_named("alice")
            assert await owner.put(KEY, b"v1", publisher=alice, seq=10) >= 2
            assert await owner.put(KEY, b"v2", publisher=alice, seq=11) >= 2
            # the same slot again with a lower sequence: every holder refuses
            assert await other.put(KEY, b"rolled back", publisher=alice, seq=10) == 0
            # another key's put is another slot: alice's record is untouched
            assert await other.put(KEY, b"forged", publisher=publisher_named("mallory")) >= 2
            outcome = await caller.get_all(KEY, quorum=10, timeout=5.0)
            by_key = {r.publisher: (r.seq, r.data) for r in latest(outcome.items)}
            assert by_key[alice.key_id] == (11, b"v2")
            assert by_key[publisher_named("mallory").key_id][1] == b"forged"

    run_paired(backend, scenario())


def test_spoofed_datagrams_never_lower_an_honest_peers_score(backend: str) -> None:
    async def scenario() -> None:
        async with dht_network(backend, 2) as net:
            node, honest = net.dht_nodes
            protocol = node.protocol
            assert protocol is not None
            # the honest peer answers a request of ours: it has a score
            await node.get_all("anything", timeout=2.0)
            now = node.clock.now()
            before = node.reputation.score(honest.address, now)
            stats = node.reputation.stats(honest.address)
            failures, invalid = stats.failures, stats.invalid
            # what a blind spoofer can send with the honest peer's address
            # as source: requests carrying forged records, and answers to
            # requests it cannot see (random message ids)
            bad = _forged_signature().to_wire()
            for _ in range(50):
                body = pack_request("store_record", (honest.node.id, DKEY, bad))
                protocol.datagram_received(frame_request(os.urandom(20), body), honest.address)
                response = b"\x01" + os.urandom(20) + b"\x81\xa7records\x91\xc0"
                protocol.datagram_received(response, honest.address)
            assert node.drops["bad_signature"] == 50
            assert node.reputation.stats(honest.address).failures == failures
            assert node.reputation.stats(honest.address).invalid == invalid
            assert node.reputation.score(honest.address, now) == before

    run_paired(backend, scenario())


# ---------------------------------------------------------------- units


def test_store_refuses_an_expired_record_and_drops_one_at_its_expiry() -> None:
    clock = FakeClock()
    store = RecordStore(StoreLimits(ttl=3600.0), clock=clock)
    wall = int(clock.wall())
    expired = Record.create(publisher_named("a"), DKEY, b"old", seq=1, expires=wall - 1)
    with pytest.raises(RecordError) as caught:
        store.put(DKEY, expired, clock.now())
    assert caught.value.kind == "expired"
    soon = Record.create(publisher_named("a"), DKEY, b"soon", seq=2, expires=wall + 60)
    store.put(DKEY, soon, clock.now())
    assert store.get(DKEY, clock.now()) == [soon]
    clock.advance(61.0)
    assert store.get(DKEY, clock.now()) == []


def test_same_record_again_refreshes_equal_sequence_other_data_is_refused() -> None:
    clock = FakeClock()
    store = RecordStore(StoreLimits(ttl=100.0), clock=clock)
    first = signed("a", b"first", DKEY, seq=7)
    store.put(DKEY, first, clock.now())
    clock.advance(90.0)
    store.put(DKEY, first, clock.now())  # a republish: its TTL starts again
    clock.advance(90.0)
    assert store.get(DKEY, clock.now()) == [first]
    with pytest.raises(RecordError) as caught:
        store.put(DKEY, signed("a", b"other data", DKEY, seq=7), clock.now())
    assert caught.value.kind == "stale_sequence"
    assert store.get(DKEY, clock.now()) == [first]


def test_signature_covers_every_field_with_domain_separation() -> None:
    record = signed("a", b"data", DKEY, name="n", seq=3)
    assert record.signature_valid()
    for change in (
        {"public_key": publisher_named("b").public_key},
        {"target": b"\x00" * 20},
        {"name": "m"},
        {"seq": 4},
        {"expires": 1},
        {"data": b"dat"},
    ):
        assert not dataclasses.replace(record, **change).signature_valid(), change
    # the same bytes signed without the context prefix do not verify
    from dhtquery.dht.records import CONTEXT, signed_message

    message = signed_message(record.public_key, DKEY, "n", 3, 0, b"data")
    bare = publisher_named("a").sign(message[len(CONTEXT) :])
    assert not dataclasses.replace(record, signature=bare).signature_valid()


def test_verifier_cache_is_bounded_and_verifies_a_hot_record_once() -> None:
    verifier = RecordVerifier(lambda: 1_800_000_000.0, kept=4)
    records = [signed("a", b"%d" % i, DKEY, name=str(i)) for i in range(6)]
    for record in records:
        verifier.from_wire(record.to_wire(), DKEY)
    assert len(verifier) == 4 and verifier.verified == 6
    for _ in range(100):
        verifier.from_wire(records[-1].to_wire(), DKEY)
    assert verifier.verified == 6


# ---------------------------------------------------------------- key files


def test_key_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    publisher = Publisher.generate()
    path = publisher.save(tmp_path / "key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Publisher.load(path).public_key == publisher.public_key


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = Publisher.generate().save(tmp_path / "key")
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="exists"):
        Publisher.generate().save(path)
    assert path.read_bytes() == before


def test_key_file_with_loose_permissions_is_refused(tmp_path: Path) -> None:
    path = Publisher.generate().save(tmp_path / "key")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match=r"0644 are too open.*chmod 600"):
        Publisher.load(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "not a dhtquery key file"), (b"dhtquery-ed25519-v1 abcd\n", "64 hex digits")],
)
def test_malformed_key_file_is_refused(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=match):
        Publisher.load(path)


def test_put_refuses_a_publisher_name_instead_of_a_key(backend: str) -> None:
    async def scenario() -> None:
        async with dht_network(backend, 1) as net:
            with pytest.raises(TypeError, match="Publisher"):
                await net.dht_nodes[0].put(KEY, b"x", publisher="alice")  # type: ignore[arg-type]

    run_paired(backend, scenario())

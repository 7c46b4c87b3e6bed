"""The client profiler (``python -m dhtquery.bench profile``) runs its
lookups against the transport that plays the peers."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from dhtquery.bench import profile_client
from dhtquery.dht import wire
from dhtquery.errors import InvalidArgumentError

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_the_profiler_measures_lookups_that_all_succeed(run: Run, backend: str) -> None:
    # (measure raises if any lookup failed: the transport must be one the
    # protocol can use, is_closing included)
    samples = run(profile_client.measure(backend, 200, 2, False, "cached"))
    assert len(samples) == 2
    assert all(0 < sample < 100_000 for sample in samples)  # us per lookup


def test_the_serving_profile_answers_every_request_from_the_records_held(
    run: Run, backend: str
) -> None:
    # (measure_serving raises unless every request got an answer sent)
    samples = run(profile_client.measure_serving(backend, 300, 2, False))
    assert len(samples) == 2
    assert all(0 < sample < 100_000 for sample in samples)  # us per request


def test_the_serving_profile_answers_every_find_value_from_the_values_held(
    run: Run, backend: str
) -> None:
    samples = run(profile_client.measure_serving(backend, 300, 2, False, "find_value"))
    assert len(samples) == 2
    assert all(0 < sample < 100_000 for sample in samples)  # us per request
    with pytest.raises(InvalidArgumentError, match="find_node"):
        run(profile_client.measure_serving(backend, 1, 1, False, "find_node"))


def test_a_frozen_clock_stands_still_and_its_timers_never_fire(run: Run) -> None:
    async def scenario() -> tuple[float, float, list[str]]:
        clock = profile_client.FrozenClock()
        fired: list[str] = []
        first = clock.now()
        clock.call_at(first - 1.0, lambda: fired.append("due"))  # due already
        for _ in range(3):
            await asyncio.sleep(0)
        return first, clock.now(), fired

    first, later, fired = run(scenario())
    assert first == later
    assert fired == []


def test_the_profiler_runs_its_lookups_on_a_frozen_clock(run: Run, backend: str) -> None:
    # (no deadline or RTO can pass: every lookup must end by its answers)
    samples = run(profile_client.measure(backend, 200, 1, False, "cached", frozen_clock=True))
    assert len(samples) == 1
    assert 0 < samples[0] < 100_000  # us per lookup


def test_the_socket_profile_runs_its_lookups_through_real_sockets(run: Run, backend: str) -> None:
    # (measure raises unless every lookup got the key's record: the peers'
    # sockets answered each request, and the client's batched transport
    # read them; its node is stopped and the peers' sockets closed after)
    samples = run(profile_client.measure(backend, 200, 1, False, "cached", sockets=True))
    assert len(samples) == 1
    assert 0 < samples[0] < 100_000  # us per lookup


def test_the_socket_peers_answer_each_request_with_the_keys_record(run: Run) -> None:
    async def scenario() -> tuple[Any, bytes, int, list[Any]]:
        loop = asyncio.get_running_loop()
        record = profile_client.Record.create(
            profile_client.PUBLISHER, b"k" * 20, b"the value"
        ).to_wire()
        peers = profile_client.SocketPeers(loop, {b"k" * 20: record})
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            msg_id = os.urandom(20)
            body = wire.pack_request("find_values", (b"i" * 20, b"k" * 20))
            # (a UDP send does not block; uvloop has no sock_sendto)
            client.sendto(wire.frame_request(msg_id, body), peers.addresses[3])
            data = await asyncio.wait_for(loop.sock_recv(client, 65536), 5.0)
            return wire.decode(data), msg_id, len(peers.sockets), list(record)
        finally:
            client.close()
            peers.close()
            assert peers.sockets == []

    (kind, got_id, answer), msg_id, count, record = run(scenario())
    assert count == profile_client.PEERS
    assert kind == wire.RESPONSE
    assert got_id == msg_id
    assert answer == {"records": [record], "nodes": [], "more": False}
    assert record[5] == b"the value"

"""Simulated hosts (``dhtquery.testing.hosts``): network namespaces on a
bridge, a userspace link delay, nftables loss, and nothing left behind.

These tests create namespaces named ``dhtq-<pid>x<hex>-*`` and talk only to
addresses inside them (10.77.0.0/16); where namespaces are not permitted
they skip and say why."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import pytest

from dhtquery.errors import InvalidArgumentError
from dhtquery.testing import LocalNetwork
from dhtquery.testing.hosts import (
    NODE_BLOCK,
    HostNetwork,
    Link,
    cleanup_stale,
    list_namespaces,
    namespaces_permitted,
)

_WHY_NOT = namespaces_permitted()
needs_namespaces = pytest.mark.skipif(
    _WHY_NOT is not None, reason=f"network namespaces are not permitted here: {_WHY_NOT}"
)
needs_nft = pytest.mark.skipif(
    shutil.which("nft") is None,
    reason="nftables ('nft') is not installed: apt-get install nftables",
)

KEYS_PER_HOST = 4
RTT_MS = 20.0


def _links() -> set[str]:
    """Interface names in this (the test's) namespace."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _ours(hosts: HostNetwork) -> list[str]:
    return [name for name in list_namespaces() if hosts.run_id in name]


# -- hooks the workers run (by name) ------------------------------------------


async def publish(network: LocalNetwork, host: int) -> int:
    """Each worker's first node stores records under keys named by its host."""
    node = network.nodes[0]
    stored = 0
    for i in range(KEYS_PER_HOST):
        stored += await node.put(f"host-{host}-key-{i}", f"from {host}/{i}".encode())
    return stored


async def _find_all(node: Any, hosts: int) -> int:
    """How many of every host's keys ``node`` finds with get_all."""
    found = 0
    for host in range(hosts):
        for i in range(KEYS_PER_HOST):
            outcome = await node.get_all(f"host-{host}-key-{i}", timeout=5.0)
            want = f"from {host}/{i}".encode()
            found += any(record.data == want for record in outcome.items)
    return found


async def look_up(network: LocalNetwork, hosts: int) -> dict[str, Any]:
    """get_all every host's keys from this worker's last node; RTT of pings
    to a node on the same host and to nodes on the others (medians, ms)."""
    node = network.nodes[-1]
    found = await _find_all(node, hosts)
    own_ip = node.address[0]
    local = [p for p in node.peers() if p.ip == own_ip][:5]
    remote = [p for p in node.peers() if p.ip != own_ip][:5]

    async def rtt_ms(peers: list[Any]) -> float:
        samples = []
        for _ in range(3):
            for peer in peers:
                started = time.perf_counter()
                answered = await node.bootstrap_node((peer.ip, peer.port))
                if answered is not None:
                    samples.append((time.perf_counter() - started) * 1e3)
        return statistics.median(samples) if samples else float("nan")

    return {
        "found": found,
        "local_ms": await rtt_ms(local),
        "remote_ms": await rtt_ms(remote),
        "remote_hosts": len({p.ip for p in remote}),
    }


# -- tests -----------------------------------------------------------------------


@needs_namespaces
@pytest.mark.slow
def test_lookups_succeed_across_three_hosts_with_20_ms_links_and_nothing_is_left() -> None:
    links_before = _links()
    hosts = HostNetwork(3, rtt_ms=RTT_MS, seed=1)
    with hosts, LocalNetwork(30, processes=3, hosts=hosts, join="full") as net:
        assert hosts.namespaced, hosts.fallback_reason
        assert len(_ours(hosts)) == 4  # three hosts and the bridge
        assert {a[0] for a in net.addresses} == {"10.77.0.1", "10.77.0.2", "10.77.0.3"}
        stored = [
            net.call(f"{__name__}:publish", workers=[w], host=net.worker_host(w))[0]
            for w in range(3)
        ]
        assert all(count >= 3 for count in stored), stored
        results = net.call(f"{__name__}:look_up", hosts=3)
        pids = net.worker_pids
    for result in results:
        assert result["found"] == 3 * KEYS_PER_HOST, results
        assert result["remote_hosts"] >= 1
        # a round trip between two hosts takes the link's RTT, within one host
        # not (bounds loose above: two shared cores add their own lag to both)
        assert RTT_MS <= result["remote_ms"] < RTT_MS + 100, results
        assert result["remote_ms"] - result["local_ms"] >= RTT_MS / 2, results
    assert _ours(hosts) == []
    assert _links() == links_before
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def find_every_host(network: LocalNetwork, hosts: int) -> dict[str, Any]:
    """get_all every host's keys from this worker's last node; the IP
    addresses its peers have, and on how many hosts they are."""
    node = network.nodes[-1]
    found = await _find_all(node, hosts)
    link = network.link
    assert link is not None
    peers = node.peers()
    return {
        "found": found,
        "peer_ips": len({peer.ip for peer in peers}),
        "peers": len(peers),
        "peer_hosts": len({link.host_by_ip[peer.ip] for peer in peers}),
    }


@needs_namespaces
@pytest.mark.slow
def test_with_node_addresses_every_node_has_an_address_of_its_own() -> None:
    """``node_addresses``: each of the 12 nodes binds its own address in its
    host's namespace (none shares one, as on a real network), lookups
    succeed across the hosts, and nothing is left afterwards."""
    hosts = HostNetwork(3, rtt_ms=RTT_MS, seed=1, node_addresses=4)
    with hosts, LocalNetwork(12, processes=3, hosts=hosts, join="full") as net:
        assert hosts.namespaced, hosts.fallback_reason
        ips = [address[0] for address in net.addresses]
        assert len(set(ips)) == 12, ips
        assert {hosts.host_of_ip()[ip] for ip in ips} == {0, 1, 2}
        assert hosts.node_address(2, 3) in ips
        stored = [
            net.call(f"{__name__}:publish", workers=[w], host=net.worker_host(w))[0]
            for w in range(3)
        ]
        assert all(count >= 3 for count in stored), stored
        results = net.call(f"{__name__}:find_every_host", hosts=3)
    for result in results:
        assert result["found"] == 3 * KEYS_PER_HOST, results
        assert result["peer_ips"] == result["peers"] >= 3, results
        assert result["peer_hosts"] >= 2, results
    assert _ours(hosts) == []
    with pytest.raises(InvalidArgumentError):
        HostNetwork(2, node_addresses=NODE_BLOCK)


@needs_namespaces
@needs_nft
def test_the_loss_rule_drops_about_the_asked_share_of_arriving_datagrams() -> None:
    sent = 4000
    with HostNetwork(2, rtt_ms=0, loss_percent=20, seed=2) as hosts:
        assert hosts.loss_by == "nftables"
        target = hosts.address(1)
        sender = (
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range({sent}): s.sendto(b'x', ('{target}', 9))\n"
        )
        subprocess.run(
            [*hosts.exec_prefix(0), sys.executable, "-c", sender], check=True, timeout=60
        )
        seen, dropped = hosts.loss_counters(1)
        assert seen == sent
        # binomial: sd = sqrt(4000 * 0.2 * 0.8) = 25 datagrams; 4 sd either side
        assert abs(dropped - 0.2 * sent) < 100, (seen, dropped)
        hosts.set_loss(0)
        subprocess.run(
            [*hosts.exec_prefix(0), sys.executable, "-c", sender], check=True, timeout=60
        )
        assert hosts.loss_counters(1) == (sent, 0)
    assert _ours(hosts) == []


@needs_namespaces
def test_namespaces_and_workers_are_removed_when_the_block_raises() -> None:
    links_before = _links()
    hosts = HostNetwork(2, rtt_ms=5)
    pids: list[int] = []
    with (
        pytest.raises(RuntimeError, match="boom"),
        hosts,
        LocalNetwork(2, processes=2, hosts=hosts) as net,
    ):
        pids = net.worker_pids
        assert len(_ours(hosts)) == 3
        raise RuntimeError("boom")
    assert _ours(hosts) == []
    assert _links() == links_before
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


@needs_namespaces
def test_an_owned_host_network_goes_with_its_local_network_and_stale_ones_are_cleaned() -> None:
    with LocalNetwork(2, processes=2, hosts=2) as net:
        assert net.hosts is not None
        owned = net.hosts
        assert len(_ours(owned)) == 3
    assert _ours(owned) == []
    # a namespace whose owner pid is dead is removed by the next start
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"dhtq-{dead.pid}x0abc-h0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True, check=False)
    assert stale not in list_namespaces()


def test_without_namespaces_the_hosts_fall_back_to_loopback_and_say_so() -> None:
    with HostNetwork(3, rtt_ms=(10, 30), namespaces=False, seed=3) as hosts:
        assert not hosts.namespaced
        assert hosts.fallback_reason == "namespaces=False"
        assert hosts.address(2) == "127.0.0.1"
        assert "loopback" in hosts.describe()
        assert hosts.loss_by == "transport"
        rtts = [hosts.rtt_ms[i][j] for i in range(3) for j in range(3) if i != j]
        assert all(10 <= rtt <= 30 for rtt in rtts)
        assert hosts.rtt_ms[0][1] == hosts.rtt_ms[1][0]


def test_the_link_delays_by_destination_host_and_injects_loss() -> None:
    async def main() -> dict[str, Any]:
        sent: list[tuple[float, bytes]] = []
        loop = asyncio.get_running_loop()

        class Raw:
            def sendto(self, data: bytes, addr: Any) -> None:
                sent.append((loop.time(), data))

            def is_closing(self) -> bool:
                return False

        class Protocol:
            transport: Any = Raw()

        class Server:
            protocol = Protocol()

        link = Link(0, [[0.0, 0.04], [0.04, 0.0]], {}, seed=1)
        link.host_by_address = {("127.0.0.1", 2): 1}
        transport = link.attach(Server())
        start = loop.time()
        transport.sendto(b"\x00near", ("127.0.0.1", 1))
        transport.sendto(b"\x01far", ("127.0.0.1", 2))
        await asyncio.sleep(0.1)
        link.loss = 1.0
        transport.sendto(b"\x00lost", ("127.0.0.1", 1))
        return {
            "delays": {data: when - start for when, data in sent},
            "counters": link.counters(),
        }

    result = asyncio.run(main())
    assert result["delays"][b"\x00near"] < 0.01
    assert 0.019 <= result["delays"][b"\x01far"] < 0.06
    assert b"\x00lost" not in result["delays"]
    assert result["counters"] == {"requests": 2, "responses": 1, "dropped": 1}


def test_bad_host_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        HostNetwork(0)
    with pytest.raises(InvalidArgumentError):
        HostNetwork(2, rtt_ms=(50, 10))
    with pytest.raises(InvalidArgumentError):
        HostNetwork(2, loss_percent=101)
    with pytest.raises(InvalidArgumentError):
        LocalNetwork(2, hosts=2)

"""Simulated hosts for a LocalNetwork: one Linux network namespace per host,
joined by veth pairs to a bridge in a namespace of its own, each host with
its own round trips, jitter and datagram loss.

    with HostNetwork(hosts=8, rtt_ms=(10, 200), jitter_ms=2, loss_percent=1, seed=1) as hosts:
        with LocalNetwork(80, processes=8, hosts=hosts) as net:
            net.call("mymodule:hook")       # workers run inside the hosts

    LocalNetwork(30, processes=3, hosts=3)  # three hosts, default links

What it builds (``HostNetwork.start()``, or entering it):

namespaces
    ``<prefix>-<run id>-br`` holds the bridge ``br0``; ``<prefix>-<run
    id>-h<i>`` is host i, whose ``eth0`` (the host end of a veth pair, the
    other end ``h<i>`` on the bridge) has the private address ``10.77.0.0/16``
    + i + 1. Both ends of every veth pair are created inside those
    namespaces: nothing is added to the caller's namespace, and nothing is
    sent anywhere but between them. The run id is ``<pid>x<random hex>``.
workers
    a LocalNetwork worker of host i is started as ``ip netns exec <host i>
    python -m dhtquery.testing._worker ...`` and binds its nodes to the
    host's address; the worker of index w lives on host ``w % hosts``. The
    parent process stays in its own namespace and cannot reach the nodes:
    everything that talks to them runs in a worker (``LocalNetwork.call``).
one address per node (``node_addresses``)
    with ``node_addresses=N`` each host also gets N addresses of its own on
    its ``eth0``, ``10.77.0.0`` + (i + 1) * NODE_BLOCK + j + 1 for its node
    j (:meth:`HostNetwork.node_address`), each host's block routed by the
    others through the host's own address (no neighbour entry per node),
    and a LocalNetwork's nodes bind one each: as on a real network, where
    no two nodes share an address, a peer's address tells nothing of its
    round trip. Without namespaces (the fallback) nodes share 127.0.0.1 as
    before.
delay and jitter (a userspace link)
    this kernel has no ``netem``, so each node's transport in a worker is
    wrapped (:class:`LinkTransport`): a datagram to a node on host j is held
    for ``rtt(i, j) / 2`` plus a uniform jitter in ``[0, jitter_ms]``
    (``loop.call_later``) before ``sendto``; a round trip between two hosts
    therefore takes ``rtt(i, j)`` plus jitter. Nodes on one host talk without
    delay. ``rtt_ms`` is a number (every pair) or a ``(low, high)`` range
    from which each pair's RTT is drawn uniformly, reproducibly by ``seed``.
loss (real, in the kernel)
    nftables in each host namespace drops ``loss_percent`` of the UDP
    datagrams arriving there (table ``inet lossy``, an input-hook chain, a
    ``numgen random`` rule with counters: :meth:`HostNetwork.loss_counters`).
    Dropping in the output hook instead would make ``sendto`` fail with
    EPERM, which is not loss. :meth:`HostNetwork.set_loss` changes it while
    the network runs.

Cleanup: everything is removed by ``close()`` (leaving the ``with`` block,
an exception, Ctrl-C; SIGTERM is turned into ``SystemExit`` while the hosts
exist, where the handler was the default; ``atexit`` as a last resort); the
processes still inside a namespace are killed first. At start, namespaces
of this prefix whose owner process (the pid in the run id) is gone are
removed.

Fallback: where namespaces are not permitted (not root, ``ip netns add``
fails, no ``ip``), ``HostNetwork`` says why in ``fallback_reason`` and
``describe()``, and the hosts are labels on 127.0.0.1: the workers run
there, the link still delays datagrams by the destination's host (known by
address), and loss is injected in the same transport wrapper (counted in
:meth:`Link.counters`). The same happens to loss alone where ``nft`` is
missing.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any, Final

from ..errors import DhtQueryError, InvalidArgumentError

__all__ = [
    "DEFAULT_PREFIX",
    "NODE_BLOCK",
    "SUBNET",
    "HostNetwork",
    "HostNetworkError",
    "Link",
    "LinkTransport",
    "cleanup_stale",
    "namespaces_permitted",
]

#: Every namespace this module creates starts with this (and a dash).
DEFAULT_PREFIX: Final = "dhtq"
#: The private addresses of the hosts, inside their namespaces only.
SUBNET: Final = ipaddress.IPv4Network("10.77.0.0/16")
#: Addresses set aside per host for its nodes' own (``node_addresses``).
NODE_BLOCK: Final = 1024
#: Seconds any one ``ip`` or ``nft`` command may take.
COMMAND_TIMEOUT: Final = 20.0
#: nftables' loss rule draws from this many values (0.01 % steps).
_LOSS_SCALE: Final = 10_000

Address = tuple[str, int]


class HostNetworkError(DhtQueryError, RuntimeError):
    """A namespace command failed while the hosts were being built."""


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _check(argv: Sequence[str], stdin: str | None = None) -> str:
    done = _run(argv, stdin)
    if done.returncode:
        message = (done.stderr or done.stdout).strip()
        raise HostNetworkError(f"{' '.join(argv)}: {message or f'status {done.returncode}'}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    """The names ``ip netns list`` shows ([] without ``ip``)."""
    if shutil.which("ip") is None:
        return []
    try:
        done = _run(["ip", "netns", "list"])
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _remove_namespace(name: str) -> None:
    """Kill what still runs inside ``name`` (our workers), then delete it:
    a namespace with a process in it outlives its name."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        pids = _run(["ip", "netns", "pids", name]).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run(["ip", "netns", "delete", name])


def cleanup_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Remove the namespaces of ``prefix`` whose owner (the pid in their
    run id) is no longer alive; the names removed."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)x[0-9a-f]+-(?:br|h\d+)$")
    removed = []
    for name in list_namespaces():
        match = pattern.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _remove_namespace(name)
            removed.append(name)
    return removed


def namespaces_permitted() -> str | None:
    """None if this process may create network namespaces, else why not
    (a cheap check; :meth:`HostNetwork.start` still tries and falls back)."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root: 'ip netns add' needs CAP_SYS_ADMIN"
    return None


def _node_ip(host: int, index: int) -> str:
    return str(SUBNET.network_address + (host + 1) * NODE_BLOCK + index + 1)


def _node_block(host: int) -> str:
    """The block of ``host``'s node addresses, as a prefix."""
    bits = NODE_BLOCK.bit_length() - 1
    return f"{SUBNET.network_address + (host + 1) * NODE_BLOCK}/{32 - bits}"


def _rtt_matrix(hosts: int, rtt_ms: float | tuple[float, float], seed: int) -> list[list[float]]:
    if isinstance(rtt_ms, int | float):
        low = high = float(rtt_ms)
    else:
        low, high = (float(v) for v in rtt_ms)
    if low < 0 or high < low:
        raise InvalidArgumentError(f"rtt_ms must be >= 0 and low <= high, got {rtt_ms!r}")
    draw = random.Random(seed)
    matrix = [[0.0] * hosts for _ in range(hosts)]
    for i in range(hosts):
        for j in range(i + 1, hosts):
            matrix[i][j] = matrix[j][i] = draw.uniform(low, high)
    return matrix


class HostNetwork:
    """``hosts`` simulated hosts (see the module's docstring). A context
    manager; ``start()`` / ``close()`` for the same by hand."""

    def __init__(
        self,
        hosts: int = 8,
        *,
        rtt_ms: float | tuple[float, float] = (10.0, 200.0),
        jitter_ms: float = 0.0,
        loss_percent: float = 0.0,
        seed: int = 0,
        prefix: str = DEFAULT_PREFIX,
        namespaces: bool | None = None,
        node_addresses: int = 0,
    ) -> None:
        if isinstance(hosts, bool) or not isinstance(hosts, int) or not 1 <= hosts <= 4000:
            raise InvalidArgumentError(f"hosts must be an int in 1..4000, got {hosts!r}")
        blocks = SUBNET.num_addresses // NODE_BLOCK - 1
        if not 0 <= node_addresses < NODE_BLOCK - 1 or (node_addresses and hosts > blocks):
            raise InvalidArgumentError(
                f"node_addresses must be in 0..{NODE_BLOCK - 2}, on at most {blocks} hosts;"
                f" got {node_addresses!r} on {hosts}"
            )
        if jitter_ms < 0:
            raise InvalidArgumentError(f"jitter_ms must be >= 0, got {jitter_ms!r}")
        if not 0 <= loss_percent <= 100:
            raise InvalidArgumentError(f"loss_percent must be in 0..100, got {loss_percent!r}")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", prefix):
            raise InvalidArgumentError(f"prefix must be short lowercase letters/digits: {prefix!r}")
        self.count = hosts
        self.rtt_ms = _rtt_matrix(hosts, rtt_ms, seed)
        self.jitter_ms = float(jitter_ms)
        self.loss_percent = float(loss_percent)
        self.seed = seed
        #: addresses of its own each host has for its nodes (0: they share
        #: the host's)
        self.node_addresses = node_addresses
        self.prefix = prefix
        #: True: namespaces are required; False: never (loopback); None: where permitted
        self.want_namespaces = namespaces
        self.run_id = f"{os.getpid()}x{secrets.token_hex(3)}"
        #: True once the namespaces exist
        self.namespaced = False
        #: why the hosts are on loopback (None when they are namespaces)
        self.fallback_reason: str | None = None
        #: where loss is applied: "nftables" or "transport"
        self.loss_by = "transport"
        self.stale_removed: list[str] = []
        self._created: list[str] = []
        self._started = False
        self._lock = threading.Lock()
        self._old_sigterm: Any = None

    # -- names and addresses -----------------------------------------------

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-{self.run_id}-br"

    def name(self, host: int) -> str:
        """The namespace of host ``host``."""
        return f"{self.prefix}-{self.run_id}-h{host}"

    @property
    def names(self) -> list[str]:
        """Every namespace of this run (hosts, then the bridge)."""
        return [*(self.name(i) for i in range(self.count)), self.bridge]

    def address(self, host: int) -> str:
        """The IP address nodes on ``host`` bind to."""
        if not self.namespaced:
            return "127.0.0.1"
        return self.address_of(host)

    @staticmethod
    def address_of(host: int) -> str:
        """Host ``host``'s own address in its namespace."""
        return str(SUBNET.network_address + host + 1)

    def node_address(self, host: int, index: int) -> str:
        """The address node ``index`` of ``host`` binds to: its own with
        ``node_addresses`` (index below it), else the host's."""
        if not self.namespaced or not self.node_addresses:
            return self.address(host)
        if not 0 <= index < self.node_addresses:
            raise InvalidArgumentError(
                f"host {host} has {self.node_addresses} node addresses, not {index + 1}"
            )
        return _node_ip(host, index)

    def host_of_ip(self) -> dict[str, int]:
        """IP -> host, where every host has an address of its own (and its
        nodes theirs, with ``node_addresses``)."""
        if not self.namespaced:
            return {}
        found = {self.address(i): i for i in range(self.count)}
        for host in range(self.count):
            for index in range(self.node_addresses):
                found[_node_ip(host, index)] = host
        return found

    def exec_prefix(self, host: int) -> list[str]:
        """The argv prefix that runs a command on ``host``."""
        return ["ip", "netns", "exec", self.name(host)] if self.namespaced else []

    def link_spec(self, host: int) -> dict[str, Any]:
        """What a worker on ``host`` needs for its :class:`Link` (JSON)."""
        return {
            "host": host,
            "rtt_s": [[ms / 1e3 for ms in row] for row in self.rtt_ms],
            "host_by_ip": self.host_of_ip(),
            "jitter_s": self.jitter_ms / 1e3,
            "loss": 0.0 if self.loss_by == "nftables" else self.loss_percent / 100,
            "seed": self.seed * 7919 + host,
        }

    def describe(self) -> str:
        """How the hosts are made, in a sentence or three (for bench output)."""
        rtts = [self.rtt_ms[i][j] for i in range(self.count) for j in range(i + 1, self.count)]
        spread = f"{min(rtts):.0f}-{max(rtts):.0f} ms" if rtts else "-"
        each = (
            f", {self.node_addresses} addresses of its own per host for its nodes"
            if self.node_addresses
            else ""
        )
        where = (
            f"{self.count} network namespaces ({self.prefix}-{self.run_id}-h*, "
            f"{SUBNET}{each}) on a bridge"
            if self.namespaced
            else f"{self.count} hosts on loopback (no namespaces: {self.fallback_reason})"
        )
        loss = (
            "loss: nftables input-hook rule in each host namespace"
            if self.loss_by == "nftables"
            else "loss: injected in the worker's transport wrapper (not the kernel)"
        )
        return (
            f"{where}; RTT per host pair {spread}, jitter 0-{self.jitter_ms:g} ms, "
            "as a userspace link: each datagram is held for RTT/2 + jitter before "
            f"sendto (no netem on this kernel); {loss}, now {self.loss_percent:g} %"
        )

    # -- lifetime ------------------------------------------------------------

    def __enter__(self) -> HostNetwork:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> HostNetwork:
        """Build the namespaces (or settle for loopback); idempotent."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        reason = None if self.want_namespaces is False else namespaces_permitted()
        if self.want_namespaces is False:
            reason = "namespaces=False"
        if reason is None:
            self.stale_removed = cleanup_stale(self.prefix)
            self._guard()
            try:
                self._build()
            except HostNetworkError as exc:
                self.close()
                reason = str(exc)
            except BaseException:
                self.close()
                raise
            else:
                self.namespaced = True
        if reason is not None:
            if self.want_namespaces:
                raise HostNetworkError(f"network namespaces were asked for: {reason}")
            self.fallback_reason = reason
        return self

    def close(self) -> None:
        """Remove every namespace of this run (their processes first)."""
        created, self._created = self._created, []
        for name in reversed(created):
            _remove_namespace(name)
        self.namespaced = False
        self._unguard()

    def _guard(self) -> None:
        atexit.register(self.close)
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def _unguard(self) -> None:
        atexit.unregister(self.close)
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    def _add_namespace(self, name: str) -> None:
        _check(["ip", "netns", "add", name])
        self._created.append(name)
        _check(["ip", "-n", name, "link", "set", "lo", "up"])

    def _build(self) -> None:
        bridge = self.bridge
        self._add_namespace(bridge)
        _check(["ip", "-n", bridge, "link", "add", "br0", "type", "bridge"])
        _check(["ip", "-n", bridge, "link", "set", "br0", "up"])
        for host in range(self.count):
            name = self.name(host)
            self._add_namespace(name)
            peer = f"h{host}"
            # both ends made inside the namespaces: the caller's gets nothing
            veth = ["ip", "-n", bridge, "link", "add", peer, "type", "veth"]
            _check([*veth, "peer", "name", "eth0", "netns", name])
            _check(["ip", "-n", bridge, "link", "set", peer, "master", "br0", "up"])
            prefix = f"{SUBNET.network_address + host + 1}/{SUBNET.prefixlen}"
            _check(["ip", "-n", name, "addr", "add", prefix, "dev", "eth0"])
            _check(["ip", "-n", name, "link", "set", "eth0", "up"])
            if self.node_addresses:
                # one batch per host: a command per address took ~5 ms each
                batch = "".join(
                    f"addr add {_node_ip(host, i)}/32 dev eth0\n"
                    for i in range(self.node_addresses)
                )
                _check(["ip", "-n", name, "-batch", "-"], batch)
        if self.node_addresses:
            # Each host reaches another's node addresses through that host's
            # own address (a route per block), not on the link: on the link
            # every host would keep a neighbour (ARP) entry per remote node,
            # and the kernel's table is one for all namespaces (gc_thresh3,
            # 1,024 here): 1,000 nodes overflowed it ("neighbor table
            # overflow") and datagrams were dropped.
            for host in range(self.count):
                batch = "".join(
                    f"route add {_node_block(other)} via {self.address_of(other)} dev eth0\n"
                    for other in range(self.count)
                    if other != host
                )
                if batch:
                    _check(["ip", "-n", self.name(host), "-batch", "-"], batch)
        if shutil.which("nft") is None:
            self.loss_by = "transport"
            return
        self.loss_by = "nftables"
        for host in range(self.count):
            self._nft_rules(host, self.loss_percent)

    # -- loss ------------------------------------------------------------------

    def _nft_rules(self, host: int, percent: float) -> None:
        threshold = round(percent / 100 * _LOSS_SCALE)
        drop = (
            f"meta l4proto udp numgen random mod {_LOSS_SCALE} < {threshold} counter drop"
            if threshold
            else ""
        )
        script = (
            "table inet lossy\n"
            "delete table inet lossy\n"
            "table inet lossy {\n"
            "  chain inp {\n"
            "    type filter hook input priority 0; policy accept;\n"
            "    meta l4proto udp counter\n"
            f"    {drop}\n"
            "  }\n"
            "}\n"
        )
        _check(["ip", "netns", "exec", self.name(host), "nft", "-f", "-"], script)

    def set_loss(self, percent: float, network: Any = None) -> None:
        """Drop ``percent`` % of arriving UDP datagrams on every host from
        now on. With nftables that is the kernel's business; otherwise the
        workers' links inject it, so pass the LocalNetwork (``network``)
        whose workers should."""
        if not 0 <= percent <= 100:
            raise InvalidArgumentError(f"percent must be in 0..100, got {percent!r}")
        self.loss_percent = float(percent)
        if self.namespaced and self.loss_by == "nftables":
            for host in range(self.count):
                self._nft_rules(host, percent)
        elif network is not None:
            network.set_link_loss(percent / 100)

    def loss_counters(self, host: int) -> tuple[int, int]:
        """(UDP datagrams that arrived at ``host``, of which dropped) since
        the rules were last set; (0, 0) without nftables."""
        if not (self.namespaced and self.loss_by == "nftables"):
            return (0, 0)
        text = _check(
            ["ip", "netns", "exec", self.name(host), "nft", "list", "table", "inet", "lossy"]
        )
        counts = [int(m) for m in re.findall(r"counter packets (\d+)", text)]
        seen = counts[0] if counts else 0
        dropped = counts[1] if len(counts) > 1 else 0
        return seen, dropped


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the with blocks, which remove the namespaces
    raise SystemExit(128 + signum)


# -- the userspace link (runs in the workers) ----------------------------------


class Link:
    """The delay, jitter and injected loss of one worker's host; attach it
    to each node (:meth:`attach`) after the node listens."""

    def __init__(
        self,
        host: int,
        rtt_s: Sequence[Sequence[float]],
        host_by_ip: dict[str, int],
        *,
        jitter_s: float = 0.0,
        loss: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.host = host
        self.rtt_s = [list(row) for row in rtt_s]
        self.host_by_ip = dict(host_by_ip)
        #: (ip, port) -> host, for hosts that share an address (loopback)
        self.host_by_address: dict[Address, int] = {}
        self.jitter_s = jitter_s
        self.loss = loss
        self.random = random.Random(seed)
        self.transports: list[LinkTransport] = []

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Link:
        return cls(
            spec["host"],
            spec["rtt_s"],
            spec["host_by_ip"],
            jitter_s=spec["jitter_s"],
            loss=spec["loss"],
            seed=spec["seed"],
        )

    def delay_to(self, address: Address) -> float:
        """Seconds a datagram to ``address`` is held (half the pair's RTT
        plus jitter; 0 on the same host or to an unknown address)."""
        host = self.host_by_ip.get(address[0])
        if host is None:
            host = self.host_by_address.get((address[0], address[1]), self.host)
        if host == self.host:
            return 0.0
        delay = self.rtt_s[self.host][host] / 2
        if self.jitter_s:
            delay += self.random.uniform(0.0, self.jitter_s)
        return delay

    def attach(self, server: Any) -> LinkTransport:
        """Wrap the transport ``server``'s protocol sends through (a
        DhtNode or a stock kademlia Server, listening)."""
        protocol = server.protocol
        wrapped = protocol.transport
        if isinstance(wrapped, LinkTransport):
            return wrapped
        link = LinkTransport(wrapped, self)
        protocol.transport = link
        self.transports.append(link)
        return link

    def counters(self) -> dict[str, int]:
        """Datagrams sent through this link: requests, responses, and those
        it dropped (injected loss), summed over its transports."""
        total = {"requests": 0, "responses": 0, "dropped": 0}
        for transport in self.transports:
            for key in total:
                total[key] += getattr(transport, key)
        return total


class LinkTransport:
    """A datagram transport whose ``sendto`` goes through a :class:`Link`;
    every other attribute is the wrapped transport's."""

    def __init__(self, transport: Any, link: Link) -> None:
        self.transport = transport
        self.link = link
        self.requests = 0
        self.responses = 0
        self.dropped = 0
        self._loop = asyncio.get_running_loop()

    def sendto(self, data: bytes, addr: Address | None = None) -> None:
        # rpcudp framing: 0x00 request, 0x01 response
        if data[:1] == b"\x00":
            self.requests += 1
        else:
            self.responses += 1
        link = self.link
        if link.loss and link.random.random() < link.loss:
            self.dropped += 1
            return
        delay = link.delay_to(addr) if addr is not None else 0.0
        if delay <= 0:
            self.transport.sendto(data, addr)
        else:
            self._loop.call_later(delay, self._send, data, addr)

    def _send(self, data: bytes, addr: Address | None) -> None:
        # a node stopped (or killed) meanwhile sends nothing more
        if not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

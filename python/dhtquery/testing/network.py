"""One local network of dhtquery nodes on 127.0.0.1, for the demo, the
benches and the tests.

``LocalNetwork`` is an async context manager (a sync one too, when every
node lives in worker processes): its nodes listen on port 0 of 127.0.0.1,
each bootstrapped into the network, optionally with a ``P2PRegistry`` each
and stock kademlia ``Server`` peers beside them; everything is stopped on the
way out, errors included.

Where the nodes run:

in this process (``processes=0``)
    ``net.nodes``, ``net.registries`` and ``net.stock_nodes`` are the objects
    themselves, under the running loop.
in worker processes (``processes=N``)
    the nodes are spread over N children (``python -m
    dhtquery.testing._worker``), each running them under its own loop
    (``loop=``) and core (``core=``). A worker is only ever spoken to through
    its line protocol (:class:`Worker`): JSON lines on its stdin and stdout,
    nothing shared. A worker is killed in a ``finally`` if it does not exit
    once its stdin closes. ``net.addresses`` holds every node's address;
    :meth:`LocalNetwork.add` adds nodes in this process, bootstrapped into
    the whole network.

on simulated hosts (``processes=N, hosts=H``)
    the workers are spread over H hosts (:mod:`dhtquery.testing.hosts`): a
    network namespace each where permitted (``ip netns exec``), with their
    own addresses, delay, jitter and loss; stock peers (``stock=``) are then
    spread over the workers too, and everything that talks to the nodes runs
    in the workers (:meth:`LocalNetwork.call`), as this process cannot reach
    them. :meth:`LocalNetwork.kill_worker` kills a worker abruptly (churn).

The split between *where a node runs* (:class:`Worker`, reached through
``argv`` and pipes) and *what the network is* (:class:`LocalNetwork`) is the
seam the hosts plug into.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from kademlia.network import Server

from ..dht import DhtNode
from ..errors import DhtQueryError, InvalidArgumentError
from ..query import QueryConfig, QueryManager, new_core
from ..registry import P2PRegistry
from .hosts import HostNetwork, Link
from .loops import LOOPS

__all__ = [
    "HOST",
    "Address",
    "JoinStrategy",
    "LocalNetwork",
    "Worker",
    "WorkerError",
    "forget_all_but",
]

HOST: Final = "127.0.0.1"
Address = tuple[str, int]
#: ``"first"``: every node bootstraps off the network's first node, one
#: after another. ``"full"``: that, all at once, then every node off every
#: other (full routing tables, as the benches want).
JoinStrategy = Literal["first", "full"]
#: Seconds a closing worker gets to exit on its own before it is killed.
WORKER_GRACE: Final = 10.0


class WorkerError(DhtQueryError, RuntimeError):
    """A worker process failed, exited, or did not answer in time."""


def class_path(cls: type[Any]) -> str:
    """``module:QualName``, the form a worker imports a class or hook by."""
    return f"{cls.__module__}:{cls.__qualname__}"


class Worker:
    """One worker process and its line protocol (blocking calls; see
    ``dhtquery.testing._worker`` for the commands)."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        ready_timeout: float = 120.0,
        argv_prefix: Sequence[str] = (),
    ) -> None:
        env = dict(os.environ)
        # the worker imports this very dhtquery, installed or not
        source = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        #: set by :meth:`kill`: the worker is gone, its nodes with it
        self.killed = False
        # ``ip netns exec`` execs the command: the pid stays the worker's
        self.argv = [
            *argv_prefix,
            sys.executable,
            "-m",
            "dhtquery.testing._worker",
            json.dumps(dict(spec)),
        ]
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            ready = self._reply(ready_timeout)
        except BaseException:
            self.close()
            raise
        self.addresses: list[Address] = [(host, port) for host, port in ready["addresses"]]
        self.stock_addresses: list[Address] = [
            (host, port) for host, port in ready.get("stock", [])
        ]

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: its nodes vanish without a word, as a crashed host's do."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10.0)

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError(f"worker {self.pid} said nothing for {timeout:.0f} s") from None
        if line is None:
            raise WorkerError(f"worker {self.pid} exited (status {self.process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, command: str, timeout: float = 60.0, **args: Any) -> Any:
        """Send ``command`` and return its result; WorkerError if it failed."""
        with self._lock:
            stdin = self.process.stdin
            if stdin is None or stdin.closed:
                raise WorkerError(f"worker {self.pid} is closed")
            ident = next(self._ids)
            stdin.write(json.dumps({"id": ident, "cmd": command, "args": args}) + "\n")
            stdin.flush()
            reply = self._reply(timeout)
        if reply.get("id") != ident:
            raise WorkerError(f"worker {self.pid}: answer {reply!r:.80} to request {ident}")
        if not reply.get("ok"):
            raise WorkerError(f"worker {self.pid}: {command}: {reply.get('error')}")
        return reply.get("result")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the worker so far (Linux), else None."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def close(self, grace: float = WORKER_GRACE) -> None:
        """Close its stdin (it stops its nodes and exits), kill it if it has
        not exited after ``grace`` seconds."""
        try:
            with contextlib.suppress(OSError):
                if self.process.stdin is not None:
                    self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5.0)
            if self.process.stdout is not None:
                self.process.stdout.close()


class LocalNetwork:
    """``nodes`` DhtNodes on 127.0.0.1 (see the module's docstring)."""

    def __init__(
        self,
        nodes: int = 0,
        *,
        core: str = "auto",
        config: QueryConfig | None = None,
        registries: bool = False,
        stock: int = 0,
        processes: int = 0,
        loop: str = "asyncio",
        join: JoinStrategy | None = "first",
        node_class: type[DhtNode] = DhtNode,
        ksize: int = 20,
        alpha: int = 3,
        ready_timeout: float = 120.0,
        hosts: HostNetwork | int | None = None,
        host: str = HOST,
        binds: Sequence[str] | None = None,
        link: Link | None = None,
        registry_options: Mapping[str, Any] | None = None,
    ) -> None:
        if nodes < 0 or stock < 0 or processes < 0:
            raise InvalidArgumentError("nodes, stock and processes must be >= 0")
        if hosts is not None and not processes:
            raise InvalidArgumentError("hosts need worker processes (processes >= 1)")
        if loop not in LOOPS:
            raise InvalidArgumentError(f"loop must be one of {', '.join(LOOPS)}, got {loop!r}")
        if processes > max(nodes, 1):
            raise InvalidArgumentError(f"processes ({processes}) must not exceed nodes ({nodes})")
        self.count = nodes
        self.core = core
        self.config = config
        self.with_registries = registries
        self.stock_count = stock
        self.processes = processes
        self.loop = loop
        self.join = join
        self.node_class = node_class
        self.ksize = ksize
        self.alpha = alpha
        self.ready_timeout = ready_timeout
        self.nodes: list[DhtNode] = []
        self.registries: list[P2PRegistry] = []
        self.stock_nodes: list[Server] = []
        self.workers: list[Worker] = []
        #: the simulated hosts the workers run on (None: all on loopback)
        self.hosts = HostNetwork(hosts) if isinstance(hosts, int) else hosts
        self._owns_hosts = isinstance(hosts, int)
        #: the address this process's nodes bind to (a worker's: its host's)
        self.host = host
        #: the address of each node this process starts (in a worker whose
        #: host gives each node its own: HostNetwork's node_addresses);
        #: past its end, or None, ``host``
        self.binds = list(binds or ())
        #: the userspace link this process's nodes send through (in a worker)
        self.link = link
        #: keyword arguments of every P2PRegistry (JSON, passed to workers)
        self.registry_options = dict(registry_options or {})

    # -- the whole network -----------------------------------------------

    @property
    def addresses(self) -> list[Address]:
        """Every node's address: the workers' nodes, then this process's
        (DhtNodes, then stock peers)."""
        return [
            *(address for w in self.workers if not w.killed for address in w.addresses),
            *(node.address for node in self.nodes if node.listening),
            *(_address_of(node) for node in self.stock_nodes if node.transport is not None),
        ]

    @property
    def stock_addresses(self) -> list[Address]:
        """The workers' stock kademlia peers (when they hold some)."""
        return [a for w in self.workers if not w.killed for a in w.stock_addresses]

    @property
    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    def worker_host(self, index: int) -> int:
        """The host worker ``index`` runs on (0 without hosts)."""
        return index % self.hosts.count if self.hosts is not None else 0

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index``: its nodes disappear without a goodbye.
        It is left out of ``addresses`` and ``call`` from then on."""
        self.workers[index].kill()

    def live_workers(self) -> list[int]:
        return [i for i, worker in enumerate(self.workers) if not worker.killed]

    def set_link_loss(self, fraction: float) -> None:
        """Loss injected in every live worker's link (see
        :meth:`HostNetwork.set_loss`, which calls this when it must)."""
        for index in self.live_workers():
            self.workers[index].request("loss", fraction=fraction)

    async def __aenter__(self) -> LocalNetwork:
        try:
            if self.processes:
                await asyncio.to_thread(self._start_workers)
            else:
                for _ in range(self.count):
                    await self.add(join=False)
                if self.join is not None:
                    await self.join_into(self.addresses, self.join)
            first = self.addresses[:1]
            # (with hosts the stock peers live in the workers)
            for _ in range(self.stock_count if self.hosts is None else 0):
                await self.add_stock(bootstrap=first)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> LocalNetwork:
        """Workers only: a network that outlives any one event loop."""
        if not self.processes or (self.stock_count and self.hosts is None):
            raise InvalidArgumentError("a LocalNetwork used with 'with' runs every node in workers")
        try:
            self._start_workers()
        except BaseException:
            self.close_workers()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close_workers()

    def stop(self) -> None:
        """Stop this process's nodes (not the workers: :meth:`close_workers`)."""
        for node in self.nodes:
            node.stop()
        for server in self.stock_nodes:
            server.stop()

    def close_workers(self) -> None:
        workers, self.workers = self.workers, []
        try:
            for worker in workers:
                worker.close()
        finally:
            if self.hosts is not None and self._owns_hosts:
                self.hosts.close()

    async def aclose(self) -> None:
        try:
            self.stop()
        finally:
            await asyncio.to_thread(self.close_workers)
            # let the transports' connection_lost callbacks run
            await asyncio.sleep(0)

    # -- nodes in this process ---------------------------------------------

    def new_node(self, node_class: type[DhtNode] | None = None, **kwargs: Any) -> DhtNode:
        """A DhtNode of this network's kind (core, config, ksize, alpha),
        not listening yet; ``kwargs`` go to the node."""
        if "queries" not in kwargs:
            config = kwargs.get("config", self.config)
            kwargs["queries"] = QueryManager(config, core=new_core(self.core))
        kwargs.setdefault("ksize", self.ksize)
        kwargs.setdefault("alpha", self.alpha)
        return (node_class or self.node_class)(**kwargs)

    async def add(
        self,
        *,
        bootstrap: Sequence[Address] | None = None,
        join: bool = True,
        registry: bool | None = None,
        node_class: type[DhtNode] | None = None,
        **kwargs: Any,
    ) -> DhtNode:
        """One more DhtNode in this process, listening, bootstrapped off
        ``bootstrap`` (default: the network's first node; ``join=False``:
        not at all), with a registry if ``registry`` (default: the
        network's ``registries``)."""
        node = self.new_node(node_class, **kwargs)
        first = self.addresses[:1]
        binds = self.binds
        where = binds[len(self.nodes)] if len(self.nodes) < len(binds) else self.host
        self.nodes.append(node)
        await node.listen(0, where)
        if self.link is not None:
            self.link.attach(node)
        targets = list(bootstrap) if bootstrap is not None else first
        if join and targets:
            await node.bootstrap(targets)
        if self.with_registries if registry is None else registry:
            self.registries.append(P2PRegistry(node, **self.registry_options))
        return node

    async def add_stock(self, *, bootstrap: Sequence[Address] = (), **kwargs: Any) -> Server:
        """A stock kademlia ``Server`` peer, listening on 127.0.0.1."""
        server = Server(**kwargs)
        self.stock_nodes.append(server)
        await server.listen(0, self.host)
        if self.link is not None:
            self.link.attach(server)
        if bootstrap:
            await server.bootstrap(list(bootstrap))
        return server

    async def join_into(self, addresses: Sequence[Address], strategy: JoinStrategy) -> None:
        """Bootstrap this process's DhtNodes (and stock peers) into
        ``addresses``."""
        if not addresses:
            return
        if self.stock_nodes:
            await asyncio.gather(
                *(
                    server.bootstrap([a for a in addresses if a != _address_of(server)])
                    for server in self.stock_nodes
                )
            )
        first = list(addresses[:1])
        others = [node for node in self.nodes if node.address != first[0]]
        if strategy == "first":
            for node in others:
                await node.bootstrap(first)
            return
        await asyncio.gather(*(node.bootstrap(first) for node in others))
        await asyncio.gather(
            *(
                node.bootstrap([a for a in addresses if a != node.address])
                for node in self.nodes
                if len(addresses) > 1
            )
        )

    def idle(self) -> bool:
        """No query and no request in flight on any node of this process."""
        return all(
            node.queries.in_flight == 0 and node.pending_requests == 0 for node in self.nodes
        )

    async def settle(self, timeout: float = 3.0) -> bool:
        """Wait (bounded) until every node is idle, the workers' included;
        False if ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.idle() and all(
                [await self.command(w, "idle") for w in range(len(self.workers))]
            ):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)

    def stats(self) -> dict[str, dict[str, int]]:
        """This process's nodes' transport counters (``transport``) and
        their registries' gossip counters (``gossip``), summed."""
        transport: Counter[str] = Counter()
        for node in self.nodes:
            transport.update(node.stats)
        gossip: Counter[str] = Counter()
        for registry in self.registries:
            gossip.update(registry.stats)
        return {"transport": dict(transport), "gossip": dict(gossip)}

    def forget_strangers(self) -> int:
        """Every node, here and in the workers, drops the contacts that are
        not nodes of this network (clients that came and went); returns how
        many were dropped."""
        members = set(self.addresses)
        removed = forget_all_but(self.nodes, members)
        for worker in self.workers:
            removed += int(worker.request("forget_strangers", members=sorted(members)))
        return removed

    # -- workers -------------------------------------------------------------

    def _start_workers(self) -> None:
        started = time.perf_counter()
        if self.hosts is not None:
            self.hosts.start()
        base, extra = divmod(self.count, self.processes)
        stock_base, stock_extra = divmod(self.stock_count if self.hosts else 0, self.processes)
        specs = []
        #: nodes given to the workers so far, per host (node_addresses)
        on_host: dict[int, int] = {}
        for index in range(self.processes):
            spec: dict[str, Any] = {
                "nodes": base + (index < extra),
                "stock": stock_base + (index < stock_extra),
                "core": self.core,
                "loop": self.loop,
                "registries": self.with_registries,
                "registry_options": self.registry_options,
                "node_class": class_path(self.node_class),
                "ksize": self.ksize,
                "alpha": self.alpha,
                "timeout": self.config.default_timeout if self.config else None,
            }
            if self.hosts is not None:
                host = self.worker_host(index)
                spec["bind"] = self.hosts.address(host)
                spec["link"] = self.hosts.link_spec(host)
                if self.hosts.namespaced and self.hosts.node_addresses:
                    first = on_host.get(host, 0)
                    on_host[host] = first + spec["nodes"]
                    spec["binds"] = [
                        self.hosts.node_address(host, first + i) for i in range(spec["nodes"])
                    ]
            specs.append(spec)
        self._spawn(specs)
        if self.hosts is not None:
            # hosts sharing 127.0.0.1 are told apart by port: every link
            # learns which address lives on which host
            table = [
                [ip, port, self.worker_host(index)]
                for index, worker in enumerate(self.workers)
                for ip, port in [*worker.addresses, *worker.stock_addresses]
            ]
            for worker in self.workers:
                worker.request("link", addresses=table)
        if self.join is not None:
            addresses = [list(a) for a in [*self.addresses, *self.stock_addresses]]
            # the first worker holds the first node: it joins before the rest
            self.workers[0].request(
                "join", self.ready_timeout, addresses=addresses, strategy=self.join
            )
            threads = [
                threading.Thread(
                    target=worker.request,
                    args=("join", self.ready_timeout),
                    kwargs={"addresses": addresses, "strategy": self.join},
                )
                for worker in self.workers[1:]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.setup_seconds = time.perf_counter() - started

    def _spawn(self, specs: Sequence[dict[str, Any]]) -> None:
        """Start one worker per spec, side by side (each takes a second or
        so to import); all or none: a failure closes those that started."""
        started: list[Worker | None] = [None] * len(specs)
        errors: list[BaseException] = []

        def start(index: int) -> None:
            prefix = self.hosts.exec_prefix(self.worker_host(index)) if self.hosts else []
            try:
                started[index] = Worker(
                    specs[index], ready_timeout=self.ready_timeout, argv_prefix=prefix
                )
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(len(specs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.workers.extend(worker for worker in started if worker is not None)
        if errors:
            raise errors[0]

    async def command(self, worker: int, command: str, **args: Any) -> Any:
        """``command`` on worker ``worker`` without blocking this loop (this
        process's nodes go on answering meanwhile)."""
        return await asyncio.to_thread(self.workers[worker].request, command, **args)

    def call(
        self,
        hook: str,
        timeout: float = 1800.0,
        *,
        workers: Sequence[int] | None = None,
        **params: Any,
    ) -> list[Any]:
        """Run ``await module.function(network, **params)`` (``hook`` is
        ``"module:function"``) in every live worker (or those of index in
        ``workers``), on the worker's own LocalNetwork, all at once; their
        results, in worker order. Blocking: for a caller with no node of its
        own in this process."""
        chosen = self.live_workers() if workers is None else list(workers)
        results: list[Any] = [None] * len(chosen)
        errors: list[BaseException] = []

        def one(slot: int, index: int) -> None:
            try:
                results[slot] = self.workers[index].request(
                    "call", timeout, hook=hook, params=params
                )
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [
            threading.Thread(target=one, args=(slot, index)) for slot, index in enumerate(chosen)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results

    def cpu_seconds(self) -> float | None:
        """CPU time the workers used so far; None where /proc is not there."""
        times = [worker.cpu_seconds() for worker in self.workers]
        return None if any(t is None for t in times) else sum(t or 0.0 for t in times)


def forget_all_but(nodes: Sequence[DhtNode], members: set[Address]) -> int:
    """Drop from every node's routing table each contact not in
    ``members``; kademlia promotes replacements, so repeat (bounded)."""
    removed = 0
    for node in nodes:
        for _ in range(64):
            strangers = [(p.ip, p.port) for p in node.peers() if (p.ip, p.port) not in members]
            if not strangers:
                break
            removed += sum(node.forget(address) for address in strangers)
    return removed


def _address_of(server: Server) -> Address:
    host, port = server.transport.get_extra_info("sockname")[:2]
    return host, port

"""A worker process of a LocalNetwork: ``python -m dhtquery.testing._worker
SPEC`` runs ``SPEC["nodes"]`` DhtNodes (and ``SPEC["stock"]`` stock kademlia
peers) on ``SPEC["bind"]`` (default 127.0.0.1) under the loop and core it
names, each sending through ``SPEC["link"]`` (a :class:`~.hosts.Link`: delay,
jitter, injected loss) when given, and is driven by JSON lines.

Its first line on stdout: ``{"event": "ready", "pid": ..., "addresses":
[[host, port], ...], "stock": [[host, port], ...]}`` (the nodes listen, and
have not joined anything).
Then one request a line on stdin, ``{"id": n, "cmd": name, "args": {...}}``,
answered in order by one line, ``{"id": n, "ok": true, "result": ...}`` or
``{"id": n, "ok": false, "error": "..."}``. Commands:

``join`` {addresses, strategy}
    bootstrap the nodes (stock peers too) into the whole network
    (``LocalNetwork.join_into``); result: the seconds it took.
``link`` {addresses: [[ip, port, host], ...]}: which address is on which host.
``loss`` {fraction}: the link's injected loss from now on.
``counters``: the link's datagrams sent (requests, responses, dropped).
``call`` {hook, params}
    ``await module.function(network, **params)`` for ``hook`` =
    ``"module:function"``, ``network`` this worker's LocalNetwork; result:
    what it returns (JSON).
``forget_strangers`` {members}: drop every contact not in ``members``.
``stats``: the nodes' transport counters and the registries' counters, summed.
``idle``: no query and no request in flight on any node.
``set`` / ``get`` {node, key[, value]}: kademlia ``Server.set`` / ``get``
    (str values) on node ``node``.

It exits once stdin closes (the parent is done, or gone), stopping its
nodes; or after ``SPEC["max_seconds"]``. Anything else printed to stdout
goes to stderr: stdout is the protocol's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import InvalidArgumentError
from ..query import QueryConfig
from .hosts import Link
from .loops import loop_factory
from .network import HOST, Address, LocalNetwork, forget_all_but


def import_path(path: str) -> Any:
    """The object named ``module:qual.name``."""
    module_name, _, name = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in name.split("."):
        found = getattr(found, part)
    return found


async def _handle(net: LocalNetwork, command: str, args: dict[str, Any]) -> Any:
    if command == "join":
        started = time.perf_counter()
        addresses: list[Address] = [(host, port) for host, port in args["addresses"]]
        await net.join_into(addresses, args["strategy"])
        return time.perf_counter() - started
    if command == "call":
        result = import_path(args["hook"])(net, **args.get("params", {}))
        return await result if inspect.isawaitable(result) else result
    if command == "forget_strangers":
        return forget_all_but(net.nodes, {(host, port) for host, port in args["members"]})
    if command in ("link", "loss", "counters"):
        link = net.link
        if link is None:
            raise InvalidArgumentError(f"{command}: this worker has no link")
        if command == "link":
            link.host_by_address = {(ip, port): host for ip, port, host in args["addresses"]}
            return len(link.host_by_address)
        if command == "loss":
            link.loss = float(args["fraction"])
            return link.loss
        return link.counters()
    if command == "stats":
        return net.stats()
    if command == "idle":
        return net.idle()
    if command == "set":
        return await net.nodes[args["node"]].set(args["key"], args["value"])
    if command == "get":
        return await net.nodes[args["node"]].get(args["key"])
    raise InvalidArgumentError(f"unknown command {command!r}")


async def serve(spec: dict[str, Any], out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(requests.put_nowait, line)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(requests.put_nowait, None)

    def write(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    timeout = spec.get("timeout")
    network = LocalNetwork(
        spec["nodes"],
        core=spec["core"],
        config=None if timeout is None else QueryConfig(default_timeout=timeout),
        registries=spec["registries"],
        join=None,
        node_class=import_path(spec["node_class"]),
        ksize=spec["ksize"],
        alpha=spec["alpha"],
        stock=spec.get("stock", 0),
        registry_options=spec.get("registry_options"),
        host=spec.get("bind", HOST),
        binds=spec.get("binds"),
        link=Link.from_spec(spec["link"]) if spec.get("link") else None,
    )
    async with network as net:
        nodes = [node.address for node in net.nodes]
        stock = [address for address in net.addresses if address not in nodes]
        write({"event": "ready", "pid": os.getpid(), "addresses": nodes, "stock": stock})
        threading.Thread(target=read, daemon=True).start()
        deadline = loop.time() + float(spec.get("max_seconds", 3600.0))
        while True:
            try:
                line = await asyncio.wait_for(requests.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                print("worker: no EOF on stdin in time, exiting", file=sys.stderr)
                return
            if line is None:
                return
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                result = await _handle(net, request["cmd"], request.get("args", {}))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                write({"id": request.get("id"), "ok": False, "error": error})
            else:
                write({"id": request.get("id"), "ok": True, "result": result})


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    # stdout is the protocol's: whatever else prints goes to stderr
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.ERROR)
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    factory: Callable[[], asyncio.AbstractEventLoop] = loop_factory(spec["loop"])
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(spec, out))
    out.flush()
    # threads a hook started (OpenDHT's C++ ones) must not hold the exit up
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

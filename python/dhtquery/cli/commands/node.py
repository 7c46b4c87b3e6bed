"""``dhtquery node``: run a node until Ctrl-C or SIGTERM, with its catalog,
metrics and traffic log."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import platformdirs
import typer

from ...dht import REPUBLISH_INTERVAL, Publisher
from ...query import QueryConfig
from ...registry import Package
from ..common import (
    BOOTSTRAP_TIMEOUT,
    Address,
    BootstrapOption,
    BootstrapTimeoutOption,
    CliError,
    LogLevel,
    LogLevelOption,
    addresses,
    join,
    listen,
    load_publisher,
    plural,
    publish_packages,
    read_catalog,
    run_async,
    set_level,
)

__all__ = ["node"]

log = logging.getLogger("dhtquery.cli")


def node(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=0, max=65535, help="UDP port (0: a free one)")] = 8468,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    bootstrap: BootstrapOption = [],  # noqa: B006 - typer reads the default
    bootstrap_timeout: BootstrapTimeoutOption = BOOTSTRAP_TIMEOUT,
    catalog: Annotated[
        Path | None, typer.Option(help="JSON file of packages to publish once up")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="serve Prometheus /metrics on 127.0.0.1")
    ] = None,
    stats_interval: Annotated[
        float, typer.Option(min=0.1, help="seconds between traffic/drop summaries in the log")
    ] = 60.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="where the node keeps its id, records and contacts across restarts "
            "(default: the user data directory, per port; --port 0 is ephemeral)",
        ),
    ] = None,
    ephemeral: Annotated[
        bool, typer.Option("--ephemeral", help="keep everything in memory only")
    ] = False,
    republish_interval: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="how often the node stores again the records it published (and after a restart)",
        ),
    ] = REPUBLISH_INTERVAL,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            "-k",
            metavar="FILE",
            help="publisher key file --catalog is signed with (default: the node's own key)",
        ),
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run a node until Ctrl-C or SIGTERM."""
    set_level(ctx, log_level if log_level is not None else (ctx.obj or LogLevel.info))
    peers = addresses(bootstrap)
    packages = read_catalog(catalog) if catalog is not None else []
    publisher = load_publisher(key) if key is not None else None
    where = _data_dir(data_dir, ephemeral, port)
    run_async(
        _run_node(
            host,
            port,
            peers,
            packages,
            metrics_port,
            stats_interval,
            bootstrap_timeout,
            where,
            republish_interval,
            publisher,
        )
    )


def _data_dir(given: Path | None, ephemeral: bool, port: int) -> Path | None:
    """The node's data directory, or None to keep everything in memory: a
    node on a free port (0) has no stable identity to keep."""
    if ephemeral:
        if given is not None:
            raise CliError("--ephemeral and --data-dir: choose one", 2)
        return None
    if given is not None:
        return given
    if port == 0:
        return None
    return Path(platformdirs.user_data_dir("dhtquery")) / f"node-{port}"


async def _run_node(
    host: str,
    port: int,
    peers: Sequence[Address],
    packages: Sequence[Package],
    metrics_port: int | None,
    stats_interval: float,
    wait: float,
    data_dir: Path | None,
    republish_interval: float = REPUBLISH_INTERVAL,
    publisher: Publisher | None = None,
) -> None:
    from ...dht import DhtNode
    from ...registry import P2PRegistry
    from ..exporter import MetricsExporter

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    node = DhtNode(config=QueryConfig(), data_dir=data_dir, republish_interval=republish_interval)
    registry = P2PRegistry(node)
    # a restarted node rejoins through the contacts it had (best effort)
    known = [] if peers else node.known_peers()
    exporter: MetricsExporter | None = None
    try:
        await listen(node, host, port)
        bound_host, bound_port = node.address
        # stdout, once (scripts read the port here); the log does not repeat it
        print(f"dhtquery node listening on {bound_host}:{bound_port} "
              f"(id {node.node.id.hex()[:16]}, core {node.queries.backend}, "
              f"{'data in ' + str(data_dir) if data_dir else 'ephemeral'})",
              flush=True)  # fmt: skip
        if peers:
            await join(node, peers, wait)
        elif known:
            found = await node.bootstrap(known)
            log.info("rejoined through %s of %s it knew",
                     plural(len(found), "peer"), plural(len(known), "contact"))  # fmt: skip
        if metrics_port is not None:
            exporter = MetricsExporter(node, registry)
            try:
                bound = exporter.start(metrics_port)
            except OSError as exc:
                raise CliError(
                    f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc.strerror or exc}", 1
                ) from None
            print(f"metrics on http://127.0.0.1:{bound}/metrics", flush=True)
        if packages:
            signer = node.identity if publisher is None else publisher
            log.info("catalog signed with key %s", signer.key_id)
            results = await publish_packages(registry, packages, signer)
            failed = sum(1 for _, held in results if isinstance(held, str))
            log.info("catalog: %s published, %d failed",
                     plural(len(results) - failed, "package"), failed)  # fmt: skip
        last: dict[str, int] = {}
        last_drops: dict[str, int] = {}
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), stats_interval)
            stats = dict(node.stats)
            delta = {k: v - last.get(k, 0) for k, v in stats.items() if v != last.get(k, 0)}
            last = stats
            dropped_now = dict(node.drops)
            drops = {
                kind: count - last_drops.get(kind, 0)
                for kind, count in dropped_now.items()
                if count != last_drops.get(kind, 0)
            }
            last_drops = dropped_now
            if drops:
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
                log.warning("dropped %s in the last %g s: %s",
                            plural(sum(drops.values()), "datagram"), stats_interval,
                            kinds)  # fmt: skip
            if delta.get("served") or delta.get("timeouts"):
                log.info("served %s, %s timed out, %s known",
                         plural(delta.get("served", 0), "RPC"),
                         plural(delta.get("timeouts", 0), "request"),
                         plural(node.peer_count, "peer"))  # fmt: skip
        log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if exporter is not None:
            exporter.stop()
        node.stop()
        await asyncio.sleep(0)
        log.info("node stopped")

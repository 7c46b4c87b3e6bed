"""The ``dhtquery`` command line: ``demo``, ``node``, ``publish``, ``search``,
``bench``.

Every command that talks to a network is itself a DhtNode: ``publish`` and
``search`` listen on a free port, bootstrap, work, and stop. Bad input gives
one line on stderr naming the problem and exit status 2; a failure at run
time gives one line and status 1; never a traceback (``--log-level debug``
logs one for unexpected errors).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..errors import DhtQueryError, InvalidArgumentError
from ..query import QueryConfig, QueryResult
from ..registry import Package, Query, SchemaError, highest_versions, load_catalog

__all__ = ["CliError", "app", "main", "parse_address", "read_catalog"]

log = logging.getLogger("dhtquery.cli")
T = TypeVar("T")
Address = tuple[str, int]

#: Seconds a ``publish`` process stays up after its stores, for the gossip it
#: started to be answered (it returns sooner once no request is pending).
PUBLISH_LINGER: Final = 2.0
#: Bench modules (``dhtquery.bench``), by the name ``dhtquery bench`` takes.
BENCHES: Final = {
    "core": "dhtquery.bench.core",
    "dht": "dhtquery.bench.dht",
    "registry": "dhtquery.bench.registry",
}


class CliError(DhtQueryError):
    """A one-line error for the user, with the exit status to leave with."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class LogLevel(enum.StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LoopName(enum.StrEnum):
    asyncio = "asyncio"
    uvloop = "uvloop"


class BackendName(enum.StrEnum):
    auto = "auto"
    rust = "rust"
    python = "python"


class BenchName(enum.StrEnum):
    core = "core"
    dht = "dht"
    registry = "registry"


app = typer.Typer(
    name="dhtquery",
    help="Asynchronous queries over a Kademlia DHT: a package registry on loopback or real nodes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# -- input --------------------------------------------------------------------


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> (ip literal, port); the host is
    resolved here (kademlia wants IP literals). Raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text:
        raise InvalidArgumentError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidArgumentError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise InvalidArgumentError(f"{text!r}: port {port} is not in 1-65535")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidArgumentError(f"{text!r}: cannot resolve host {host!r} ({exc})") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first
    return str(infos[0][4][0]), port


def _addresses(values: Sequence[str] | None) -> list[Address]:
    try:
        return [parse_address(value) for value in values or ()]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--bootstrap'") from None


def read_catalog(path: Path) -> list[Package]:
    """``registry.load_catalog``, its errors as CliError(status 2)."""
    try:
        return load_catalog(path)
    except OSError as exc:
        raise CliError(f"cannot read catalog {path}: {exc.strerror or exc}", 2) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"catalog {path} is not UTF-8 text: {exc.reason}", 2) from None
    except SchemaError as exc:
        raise CliError(str(exc), 2) from None


# -- plumbing -----------------------------------------------------------------


def setup_logging(level: LogLevel | None) -> None:
    chosen = getattr(logging, (level or LogLevel.warning).value.upper())
    logging.basicConfig(
        level=chosen,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # kademlia logs every unanswered ping as a warning: only under debug
    quiet = logging.DEBUG if chosen <= logging.DEBUG else logging.ERROR
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(quiet)


def _loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    from ..testing import loop_factory

    try:
        return loop_factory(name.value)
    except ImportError as exc:
        raise CliError(f"--loop {name.value}: {exc}", 2) from None


def _default_loop() -> LoopName:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return LoopName.asyncio
    return LoopName.uvloop


def run_async(coro: Coroutine[Any, Any, T], loop: LoopName | None = None) -> T:
    with asyncio.Runner(loop_factory=_loop_factory(loop or _default_loop())) as runner:
        return runner.run(coro)


def _config(timeout: float, fan_out: int, max_results: int = 100) -> QueryConfig:
    try:
        return QueryConfig(
            default_timeout=timeout, max_results=max_results, adaptive_timeout=True, fan_out=fan_out
        )
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc), 2) from None


def _client_host(bootstrap: Sequence[Address]) -> str:
    loopback = all(ipaddress.ip_address(host).is_loopback for host, _ in bootstrap)
    if loopback:
        return "127.0.0.1"
    return "::" if any(":" in host for host, _ in bootstrap) else "0.0.0.0"


async def _listen(node: Any, host: str, port: int) -> None:
    try:
        await node.listen(port, interface=host)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1) from None
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc}", 2) from None


async def _bootstrap(node: Any, peers: Sequence[Address]) -> int:
    """Join through ``peers``; CliError(2) if none of them answers."""

    started = time.perf_counter()
    await node.bootstrap(list(peers))
    known = node.peer_count
    shown = ", ".join(f"{h}:{p}" for h, p in peers)
    if not known:
        raise CliError(f"bootstrap peer {shown} did not answer (is a node running there?)", 2)
    log.info(
        "bootstrapped through %s: %d peers known (%.0f ms)",
        shown,
        known,
        (time.perf_counter() - started) * 1e3,
    )
    return int(known)


@asynccontextmanager
async def client_node(
    bootstrap: Sequence[Address], host: str | None, config: QueryConfig
) -> AsyncIterator[Any]:
    """A short-lived node with a registry, joined to the network; stopped on
    the way out."""
    from ..dht import DhtNode
    from ..registry import P2PRegistry

    node = DhtNode(config=config)
    registry = P2PRegistry(node)
    try:
        await _listen(node, host or _client_host(bootstrap), 0)
        log.info("client node up on %s:%d", *node.address)
        await _bootstrap(node, bootstrap)
        yield registry
    finally:
        node.stop()
        await asyncio.sleep(0)


async def _drain_requests(node: Any, linger: float) -> None:
    """Wait until the node has no request in flight, at most ``linger`` s."""
    deadline = time.monotonic() + linger
    while time.monotonic() < deadline:
        if not node.pending_requests:
            return
        await asyncio.sleep(0.02)


async def _publish_packages(
    registry: Any, packages: Sequence[Package]
) -> list[tuple[Package, int | str]]:
    """Publish each package; [(package, nodes holding it | error text)]."""
    results: list[tuple[Package, int | str]] = []
    for package in packages:
        try:
            held = await registry.publish(package)
        except Exception as exc:  # StorageFull and friends: report, go on
            log.warning("publishing %s failed: %s", package.id, exc)
            results.append((package, f"{type(exc).__name__}: {exc}"))
        else:
            log.info("published %s@%s: %d nodes hold it", package.id, package.version, held)
            results.append((package, held))
    return results


# -- commands -----------------------------------------------------------------

LogLevelOption = Annotated[
    LogLevel | None,
    typer.Option("--log-level", case_sensitive=False, help="debug, info, warning or error"),
]
BootstrapOption = Annotated[
    list[str],
    typer.Option("--bootstrap", "-b", help="HOST:PORT of a running node (repeatable)"),
]


def _print_version(value: bool) -> None:
    if value:
        print(f"dhtquery {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    log_level: LogLevelOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    ctx.obj = log_level
    setup_logging(log_level)


def _level(ctx: typer.Context, level: LogLevel | None) -> None:
    """A command's own --log-level wins over the global one."""
    if level is not None:
        setup_logging(level)


@app.command()
def demo(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option(min=2, max=200, help="nodes in the network")] = 20,
    packages: Annotated[int, typer.Option(min=1, max=20_000, help="packages published")] = 1000,
    backend: Annotated[BackendName, typer.Option(help="query core")] = BackendName.auto,
    loop: Annotated[LoopName, typer.Option(help="event loop")] = LoopName.uvloop,
    burst: Annotated[int, typer.Option(min=0, help="searches in the concurrent burst")] = 200,
    log_level: LogLevelOption = None,
) -> None:
    """Start a network on 127.0.0.1 in this process, publish a catalog, search it."""
    _level(ctx, log_level)
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(
        nodes=nodes, packages=packages, backend=backend.value, loop=loop.value,
        searches_in_burst=burst,
    )  # fmt: skip
    console = _console()
    status = run_async(run_demo(settings, console), loop)
    if status:
        raise CliError("a demo search found nothing", 1)


@app.command()
def node(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=0, max=65535, help="UDP port (0: a free one)")] = 8468,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    bootstrap: BootstrapOption = [],  # noqa: B006 - typer reads the default
    catalog: Annotated[
        Path | None, typer.Option(help="JSON file of packages to publish once up")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="serve Prometheus /metrics on 127.0.0.1")
    ] = None,
    stats_interval: Annotated[
        float, typer.Option(min=0.1, help="seconds between traffic/drop summaries in the log")
    ] = 60.0,
    log_level: LogLevelOption = None,
) -> None:
    """Run a node until Ctrl-C or SIGTERM."""
    _level(ctx, log_level if log_level is not None else (ctx.obj or LogLevel.info))
    peers = _addresses(bootstrap)
    packages = read_catalog(catalog) if catalog is not None else []
    run_async(_run_node(host, port, peers, packages, metrics_port, stats_interval))


async def _run_node(
    host: str,
    port: int,
    peers: Sequence[Address],
    packages: Sequence[Package],
    metrics_port: int | None,
    stats_interval: float,
) -> None:
    from ..dht import DhtNode
    from ..registry import P2PRegistry
    from .exporter import MetricsExporter

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    node = DhtNode(config=QueryConfig())
    registry = P2PRegistry(node)
    exporter: MetricsExporter | None = None
    try:
        await _listen(node, host, port)
        bound_host, bound_port = node.address
        log.info("node up on %s:%d (id %s, core %s)", bound_host, bound_port,
                 node.node.id.hex()[:16], node.queries.backend)  # fmt: skip
        print(f"dhtquery node listening on {bound_host}:{bound_port}", flush=True)
        if peers:
            await _bootstrap(node, peers)
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
            results = await _publish_packages(registry, packages)
            failed = sum(1 for _, held in results if isinstance(held, str))
            log.info("catalog: %d packages published, %d failed", len(results) - failed, failed)
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
                log.warning("dropped %d datagrams in the last %.0f s: %s",
                            sum(drops.values()), stats_interval, kinds)  # fmt: skip
            if delta.get("served") or delta.get("timeouts"):
                log.info("served %d RPCs, %d requests timed out, %d peers known",
                         delta.get("served", 0), delta.get("timeouts", 0),
                         node.peer_count)  # fmt: skip
        log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if exporter is not None:
            exporter.stop()
        node.stop()
        await asyncio.sleep(0)
        log.info("node stopped")


@app.command()
def publish(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON file: a list of package objects")],
    bootstrap: BootstrapOption = [],  # noqa: B006
    host: Annotated[str | None, typer.Option(help="interface for this client node")] = None,
    linger: Annotated[
        float, typer.Option(min=0.0, help="max seconds to stay up for gossip after storing")
    ] = PUBLISH_LINGER,
    log_level: LogLevelOption = None,
) -> None:
    """Publish the packages of FILE to the network.

    FILE holds a JSON list of objects shaped like Package.to_record():
    namespace, name, version, title (required), description, categories,
    tags, license, authors; "hash" may be omitted (it is computed) and, if
    given, must match. This process is a node that joins, stores, waits for
    its announcements to go out, and stops: the packages then live on the
    network's nodes.
    """
    _level(ctx, log_level)
    peers = _addresses(bootstrap)
    if not peers:
        raise typer.BadParameter("at least one is needed", param_hint="'--bootstrap'")
    packages = read_catalog(file)
    results = run_async(_publish(peers, host, packages, linger))
    failed = 0
    for package, held in results:
        if isinstance(held, str):
            failed += 1
            print(f"FAILED {package.id}@{package.version}: {held}")
        else:
            print(f"published {package.id}@{package.version} ({held} nodes hold it)")
    if failed:
        raise CliError(f"{failed} of {len(results)} packages were not published", 1)


async def _publish(
    peers: Sequence[Address], host: str | None, packages: Sequence[Package], linger: float
) -> list[tuple[Package, int | str]]:
    async with client_node(peers, host, QueryConfig()) as registry:
        results = await _publish_packages(registry, packages)
        await _drain_requests(registry.node, linger)
        return results


@app.command()
def search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="words that must all match")] = "",
    tag: Annotated[list[str], typer.Option("--tag", "-t", help="any of these tags")] = [],  # noqa: B006
    category: Annotated[
        list[str], typer.Option("--category", "-c", help="any of these categories")
    ] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="results to return (1-1000)")] = 20,
    offset: Annotated[int, typer.Option(help="results to skip")] = 0,
    timeout: Annotated[float, typer.Option(help="seconds before partial results")] = 5.0,
    fan_out: Annotated[int, typer.Option(help="peers asked at once")] = 3,
    bootstrap: BootstrapOption = [],  # noqa: B006
    host: Annotated[str | None, typer.Option(help="interface for this client node")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    log_level: LogLevelOption = None,
) -> None:
    """Search the network's packages."""
    _level(ctx, log_level)
    peers = _addresses(bootstrap)
    if not peers:
        raise typer.BadParameter("at least one is needed", param_hint="'--bootstrap'")
    try:
        query = Query(text, tuple(category), tuple(tag), limit, offset)
    except SchemaError as exc:
        raise CliError(f"bad query: {exc}", 2) from None
    config = _config(timeout, fan_out)
    started = time.perf_counter()
    outcome, rows = run_async(_search(peers, host, config, query, timeout))
    elapsed = time.perf_counter() - started
    if as_json:
        print(json.dumps(_search_json(query, outcome, rows), indent=2))
        return
    table = Table(
        title=f"{len(rows)} result(s) in {outcome.duration * 1e3:.1f} ms "
        f"({outcome.reason}; peers ok {outcome.peers_ok}, failed {outcome.peers_failed}; "
        f"{elapsed:.2f} s with joining)",
        title_justify="left",
    )
    for column in ("package", "version", "title", "categories", "tags", "answered by", "at"):
        table.add_column(column, justify="right" if column == "at" else "left")
    for package, peer, _key, at in rows:
        table.add_row(str(package.id), str(package.version), package.title,
                      ",".join(package.categories), ",".join(package.tags),
                      _peer_text(peer), f"{at * 1e3:.1f} ms")  # fmt: skip
    _console().print(table)


def _console() -> Console:
    """rich output; 110 columns when stdout is not a terminal (80 is too narrow)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 110)


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) == 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def _search(
    peers: Sequence[Address], host: str | None, config: QueryConfig, query: Query, timeout: float
) -> tuple[Any, list[QueryResult]]:
    async with client_node(peers, host, config) as registry:
        outcome = await registry.search_outcome(query, timeout=timeout)
        rows = highest_versions(outcome.results)[query.offset : query.offset + query.limit]
        return outcome, rows


def _search_json(query: Query, outcome: Any, rows: Sequence[QueryResult]) -> Any:
    return {
        "query": {
            "text": query.text,
            "categories": list(query.categories),
            "tags": list(query.tags),
            "limit": query.limit,
            "offset": query.offset,
        },
        "reason": outcome.reason,
        "duration_ms": outcome.duration * 1e3,
        "peers_ok": outcome.peers_ok,
        "peers_failed": outcome.peers_failed,
        "duplicates": outcome.duplicates,
        "results": [
            {**package.to_record(), "peer": _peer_text(peer), "at_ms": at * 1e3}
            for package, peer, _key, at in rows
        ],
    }


@app.command()
def bench(
    ctx: typer.Context,
    which: Annotated[BenchName, typer.Argument(help="core, dht or registry")],
    quick: Annotated[bool, typer.Option(help="small sizes, a short run")] = False,
    plot: Annotated[Path | None, typer.Option(help="write a PNG of the results")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="write the results here")] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run a benchmark (``dhtquery.bench``) and optionally plot it."""
    _level(ctx, log_level)
    if plot is not None:
        from .plots import PlotError, require_matplotlib

        try:
            require_matplotlib()
        except PlotError as exc:
            raise CliError(str(exc), 2) from None
    with tempfile.TemporaryDirectory(prefix="dhtquery-bench-") as scratch:
        output = json_file or Path(scratch) / f"{which.value}.json"
        # a process of its own: the benches start event loops and workers
        command = [sys.executable, "-m", BENCHES[which.value], "--json", str(output)]
        if quick:
            command.append("--quick")
        env = dict(os.environ)
        # the child imports this very dhtquery, installed or a source tree
        source = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        log.info("running %s", " ".join(command))
        status = subprocess.call(command, env=env)
        if plot is not None and output.is_file():
            from .plots import PlotError, plot_json

            try:
                written = plot_json([output], plot, title=f"dhtquery bench {which.value}")
            except PlotError as exc:
                raise CliError(str(exc), 1) from None
            print(f"plot: {written}")
        if status:
            raise CliError(f"bench {which.value} exited with status {status}", 1)


# -- entry point ----------------------------------------------------------------


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"dhtquery: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dhtquery`` console script. Returns (or exits with) the status."""
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="dhtquery",
            standalone_mode=False,
        )
    except CliError as exc:
        _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except (DhtQueryError, OSError) as exc:
        log.debug("failure", exc_info=True)
        _fail(str(exc) or type(exc).__name__, 1)
    except Exception as exc:
        # click's errors (usage: exit 2) without importing click: typer may vendor it
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):
            message = exc.format_message()
            ctx = getattr(exc, "ctx", None)
            if ctx is not None and getattr(exc, "exit_code", 1) == 2:
                message += f" (see '{ctx.command_path} --help')"
            _fail(message, int(exc.exit_code))
        if type(exc).__name__ == "Abort":
            _fail("aborted", 1)
        log.debug("unexpected failure", exc_info=True)
        _fail(f"{type(exc).__name__}: {exc}", 1)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the commands share: the one-line error, option types, address and
catalog parsing, logging, the event loop, and a short-lived client node."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import platformdirs
import typer
from rich.console import Console

from ..dht import Publisher
from ..errors import DhtQueryError, InvalidArgumentError, KeyFileError
from ..query import QueryConfig
from ..registry import NamespaceConflict, Package, SchemaError, TrustStore, load_catalog

__all__ = [
    "BOOTSTRAP_TIMEOUT",
    "KEY_ENV",
    "TRUST_ENV",
    "Address",
    "BackendName",
    "BootstrapOption",
    "BootstrapTimeoutOption",
    "CliError",
    "KeyOption",
    "LogLevel",
    "LogLevelOption",
    "LoopName",
    "StrictOption",
    "addresses",
    "client_host",
    "client_node",
    "config_of",
    "console",
    "default_key_path",
    "default_loop",
    "drain_requests",
    "join",
    "listen",
    "load_publisher",
    "loop_choice",
    "parse_address",
    "peer_text",
    "plural",
    "publish_packages",
    "read_catalog",
    "run_async",
    "set_level",
    "setup_logging",
    "trust_path",
    "trust_store",
    "usage_message",
    "warn_conflict",
]

log = logging.getLogger("dhtquery.cli")
#: Seconds a command waits for a bootstrap peer that does not answer yet.
BOOTSTRAP_TIMEOUT: Final = 10.0
#: The publisher key file ``publish`` signs with, if ``--key`` is not given.
KEY_ENV: Final = "DHTQUERY_KEY"
#: The trust store file (default: trust.json in the user config directory).
TRUST_ENV: Final = "DHTQUERY_TRUST_FILE"


def default_key_path() -> Path:
    """Where ``dhtquery keygen`` writes and ``publish`` looks by default."""
    return Path(platformdirs.user_config_dir("dhtquery")) / "publisher.key"


def trust_path() -> Path:
    """The trust store file: DHTQUERY_TRUST_FILE, else the user config
    directory's trust.json."""
    configured = os.environ.get(TRUST_ENV)
    if configured:
        return Path(configured)
    return Path(platformdirs.user_config_dir("dhtquery")) / "trust.json"


def trust_store(strict: bool = False) -> TrustStore:
    """The user's trust store (its file is created on the first change)."""
    return TrustStore(trust_path(), strict=strict)


def load_publisher(path: Path | None) -> Publisher:
    """The key ``publish`` signs with: ``path`` (``--key`` or DHTQUERY_KEY),
    else the default key file; a CliError naming the problem if none."""
    chosen = path if path is not None else default_key_path()
    if path is None and not chosen.exists():
        raise CliError(
            f"publish needs a publisher key: --key FILE or {KEY_ENV}=FILE "
            f"(make one with: dhtquery keygen {chosen})",
            2,
        )
    try:
        return Publisher.load(chosen)
    except KeyFileError as exc:
        raise CliError(str(exc), 2) from None


def warn_conflict(conflict: NamespaceConflict) -> None:
    """A second key publishing into an owned namespace: one line on stderr."""
    sys.stderr.write(f"dhtquery: warning: {conflict}\n")
    sys.stderr.flush()


KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        "-k",
        envvar=KEY_ENV,
        metavar="FILE",
        help="publisher key file (dhtquery keygen); default: the keygen default",
    ),
]

StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict", help="accept packages only from namespaces pinned with dhtquery trust"
    ),
]
T = TypeVar("T")
Address = tuple[str, int]


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


def addresses(values: Sequence[str] | None) -> list[Address]:
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


def loop_choice(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    from ..testing import loop_factory

    try:
        return loop_factory(name.value)
    except ImportError as exc:
        raise CliError(f"--loop {name.value}: {exc}", 2) from None


def default_loop() -> LoopName:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return LoopName.asyncio
    return LoopName.uvloop


def run_async(coro: Coroutine[Any, Any, T], loop: LoopName | None = None) -> T:
    with asyncio.Runner(loop_factory=loop_choice(loop or default_loop())) as runner:
        return runner.run(coro)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 peer``, ``2 peers`` (``words`` for irregular plurals)."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


#: pydantic's error types (what typer 0.2x validates options with) in plain words.
_PROBLEMS: Final[dict[str, Callable[[dict[str, Any]], str]]] = {
    "less_than_equal": lambda ctx: f"must be at most {_number(ctx['le'])}",
    "less_than": lambda ctx: f"must be less than {_number(ctx['lt'])}",
    "greater_than_equal": lambda ctx: f"must be at least {_number(ctx['ge'])}",
    "greater_than": lambda ctx: f"must be more than {_number(ctx['gt'])}",
    "int_parsing": lambda ctx: "is not a whole number",
    "int_from_float": lambda ctx: "is not a whole number",
    "float_parsing": lambda ctx: "is not a number",
    "bool_parsing": lambda ctx: "is not yes or no",
}


def usage_message(exc: Any) -> str:
    """One line for a usage error of click/typer, naming the option as typed
    on the command line: ``--port 70000: must be at most 65535``."""
    message = str(exc.format_message())
    param = getattr(exc, "param", None)
    cause = exc.__cause__ or exc.__context__
    errors = getattr(cause, "errors", None)
    if param is not None and callable(errors):
        opts = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
        name = opts[0] if opts else str(getattr(param, "metavar", None) or param.name).upper()
        problems = []
        given = None
        for error in errors():
            given = error.get("input", given)
            describe = _PROBLEMS.get(error.get("type", ""))
            if describe is not None:
                problems.append(describe(error.get("ctx") or {}))
                continue
            text = str(error.get("msg", "")).removeprefix("Value error, ").rstrip(".")
            choices = re.fullmatch(r"'.*' is not one of (.*)", text)
            if choices:
                text = "choose one of " + choices.group(1).replace("'", "")
            problems.append(text)
        if problems:
            shown = f" {given}" if isinstance(given, str) and given else ""
            message = f"{name}{shown}: {'; '.join(problems)}"
    message = " ".join(message.split())  # click's choice lists come on several lines
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(exc, "exit_code", 1) == 2:
        message += f" (see '{ctx.command_path} --help')"
    return message


#: QueryConfig's field names, as the options that set them are typed.
_CONFIG_OPTIONS: Final = {
    "default_timeout": "--timeout",
    "fan_out": "--fan-out",
    "max_results": "--max-results",
}


def config_of(timeout: float, fan_out: int, max_results: int = 100) -> QueryConfig:
    """The search's QueryConfig; a bad value names the option it came from."""
    if not timeout > 0:
        raise CliError(f"--timeout {_number(timeout)}: must be more than 0 seconds", 2)
    if fan_out < 1:
        raise CliError(f"--fan-out {fan_out}: must be at least 1 peer", 2)
    try:
        return QueryConfig(
            default_timeout=timeout, max_results=max_results, adaptive_timeout=True, fan_out=fan_out
        )
    except (ValueError, TypeError) as exc:
        text = str(exc)
        for field, option in _CONFIG_OPTIONS.items():
            text = text.replace(field, option)
        raise CliError(text, 2) from None


def client_host(bootstrap: Sequence[Address]) -> str:
    loopback = all(ipaddress.ip_address(host).is_loopback for host, _ in bootstrap)
    if loopback:
        return "127.0.0.1"
    return "::" if any(":" in host for host, _ in bootstrap) else "0.0.0.0"


async def listen(node: Any, host: str, port: int) -> None:
    try:
        await node.listen(port, interface=host)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1) from None
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc}", 2) from None


async def join(node: Any, peers: Sequence[Address], wait: float = BOOTSTRAP_TIMEOUT) -> int:
    """Join through ``peers``, asking again for up to ``wait`` seconds while
    none answers (it may be starting too); CliError(2) if none did."""

    started = time.perf_counter()
    shown = ", ".join(f"{h}:{p}" for h, p in peers)
    await node.bootstrap(list(peers))
    if not node.peer_count and wait > 0:
        print(
            f"waiting for bootstrap peer {shown} to answer (up to {wait:g} s)...",
            file=sys.stderr,
            flush=True,
        )
        await node.bootstrap(
            list(peers), retry_for=max(0.0, wait - (time.perf_counter() - started))
        )
    known = node.peer_count
    if not known:
        raise CliError(
            f"bootstrap peer {shown} did not answer in {wait:g} s (is a node running there?)", 2
        )
    log.info(
        "bootstrapped through %s: %s known (%.0f ms)",
        shown,
        plural(int(known), "peer"),
        (time.perf_counter() - started) * 1e3,
    )
    return int(known)


@asynccontextmanager
async def client_node(
    bootstrap: Sequence[Address],
    host: str | None,
    config: QueryConfig,
    wait: float = BOOTSTRAP_TIMEOUT,
    *,
    trust: TrustStore | None = None,
) -> AsyncIterator[Any]:
    """A short-lived node with a registry (on ``trust``, default: the user's
    trust store), joined to the network; stopped on the way out. It runs in
    client mode: the network's nodes answer it but do not add it to their
    routing tables, so once it has left it costs later commands nothing; it
    keeps no copy of what it publishes, runs no anti-entropy and does not
    republish (it leaves in seconds). A namespace conflict is a warning on
    stderr."""
    from ..dht import DhtNode
    from ..registry import P2PRegistry

    node = DhtNode(config=config, client=True, republish_interval=None)
    registry = P2PRegistry(
        node, anti_entropy_period=None, trust=trust_store() if trust is None else trust
    )
    registry.on_conflict(warn_conflict)
    try:
        await listen(node, host or client_host(bootstrap), 0)
        log.info("client node up on %s:%d", *node.address)
        await join(node, bootstrap, wait)
        yield registry
    finally:
        node.stop()
        await asyncio.sleep(0)


async def drain_requests(node: Any, linger: float) -> None:
    """Wait until the node has no request in flight, at most ``linger`` s."""
    deadline = time.monotonic() + linger
    while time.monotonic() < deadline:
        if not node.pending_requests:
            return
        await asyncio.sleep(0.02)


async def publish_packages(
    registry: Any, packages: Sequence[Package], publisher: Publisher | None = None
) -> list[tuple[Package, int | str]]:
    """Publish each package, signed by ``publisher`` (default: the node's
    key); [(package, nodes holding it | error text)]."""
    results: list[tuple[Package, int | str]] = []
    for package in packages:
        try:
            held = await registry.publish(package, publisher=publisher)
        except Exception as exc:  # StorageFull and friends: report, go on
            log.warning("publishing %s failed: %s", package.id, exc)
            results.append((package, f"{type(exc).__name__}: {exc}"))
        else:
            log.info("published %s@%s: %d nodes hold it", package.id, package.version, held)
            results.append((package, held))
    return results


LogLevelOption = Annotated[
    LogLevel | None,
    typer.Option("--log-level", case_sensitive=False, help="debug, info, warning or error"),
]


BootstrapTimeoutOption = Annotated[
    float,
    typer.Option(
        "--bootstrap-timeout",
        min=0.0,
        metavar="SECONDS",
        help="how long to keep asking a bootstrap peer that does not answer yet",
    ),
]

BootstrapOption = Annotated[
    list[str],
    typer.Option(
        "--bootstrap", "-b", metavar="HOST:PORT", help="a running node to join through (repeatable)"
    ),
]


def set_level(ctx: typer.Context, level: LogLevel | None) -> None:
    """A command's own --log-level wins over the global one."""
    if level is not None:
        setup_logging(level)


def console() -> Console:
    """rich output; 110 columns when stdout is not a terminal (80 is too narrow)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 110)


def peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) == 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)

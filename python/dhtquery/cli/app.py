"""The ``dhtquery`` command line: ``demo``, ``node``, ``publish``, ``search``,
``bench``, ``keygen``, ``trust`` (in ``commands/``).

Every command that talks to a network is itself a DhtNode: ``publish`` and
``search`` listen on a free port, bootstrap, work, and stop. Bad input gives
one line on stderr naming the problem and exit status 2; a failure at run
time gives one line and status 1; never a traceback (``--log-level debug``
logs one for unexpected errors).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer

from .. import __version__
from ..errors import DhtQueryError
from .commands import bench, demo, keys, node, publish, search
from .common import CliError, LogLevelOption, parse_address, setup_logging, usage_message

__all__ = ["BENCHES", "CliError", "app", "main", "parse_address"]

log = logging.getLogger("dhtquery.cli")


app = typer.Typer(
    name="dhtquery",
    help="Asynchronous queries over a Kademlia DHT: a package registry on loopback or real nodes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
            "--version",
            callback=_print_version,
            is_eager=True,
            metavar="",
            help="print the version and exit",
        ),
    ] = False,
) -> None:
    ctx.obj = log_level
    setup_logging(log_level)


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"dhtquery: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def _tidy_metavars(command: Any) -> None:
    """Help that reads like a man page: no ``<bool>`` after a flag (``--help``
    included), ``TAG`` rather than ``<list[str]>``; recursively."""
    helper = command.get_help_option(typer.Context(command))
    for param in [*getattr(command, "params", ()), *([helper] if helper else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None and getattr(param, "multiple", False):
            param.metavar = param.name.upper()
    for sub in getattr(command, "commands", {}).values():
        _tidy_metavars(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dhtquery`` console script. Returns (or exits with) the status."""
    command = typer.main.get_command(app)
    _tidy_metavars(command)
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
        if type(exc).__name__ == "NoArgsIsHelpError":
            # bare ``dhtquery``: the help is the answer, already printed
            text = exc.format_message() if hasattr(exc, "format_message") else ""
            if text.strip():
                print(text)
            return 0
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):
            _fail(usage_message(exc), int(exc.exit_code))
        if type(exc).__name__ == "Abort":
            _fail("aborted", 1)
        log.debug("unexpected failure", exc_info=True)
        _fail(f"{type(exc).__name__}: {exc}", 1)
    return result if isinstance(result, int) else 0


for _command in (
    demo.demo,
    node.node,
    publish.publish,
    search.search,
    bench.bench,
    keys.keygen,
    keys.trust,
):
    app.command()(_command)

#: Bench modules, by the name ``dhtquery bench`` takes.
BENCHES = bench.BENCHES


if __name__ == "__main__":
    sys.exit(main())

"""``dhtquery bench``: run one of the shipped benchmarks (``dhtquery.bench``) and plot it."""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Final

import typer

from ..common import CliError, LogLevelOption, set_level

__all__ = ["BENCHES", "BenchName", "bench"]

log = logging.getLogger("dhtquery.cli")


#: Bench modules (``dhtquery.bench``), by the name ``dhtquery bench`` takes.
BENCHES: Final = {
    "core": "dhtquery.bench.core",
    "dht": "dhtquery.bench.dht",
    "registry": "dhtquery.bench.registry",
    "churn": "dhtquery.bench.churn",
    "scale": "dhtquery.bench.scale",
    "barrage": "dhtquery.bench.barrage",
}


class BenchName(enum.StrEnum):
    core = "core"
    dht = "dht"
    registry = "registry"
    churn = "churn"
    scale = "scale"
    barrage = "barrage"


def bench(
    ctx: typer.Context,
    which: Annotated[
        BenchName,
        typer.Argument(metavar="BENCH", help="core, dht, registry, churn, scale or barrage"),
    ],
    quick: Annotated[bool, typer.Option("--quick", help="small sizes, a short run")] = False,
    plot: Annotated[Path | None, typer.Option(help="write a PNG of the results")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="write the results here")] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run a benchmark shipped in the package and optionally plot it."""
    set_level(ctx, log_level)
    if plot is not None and which in (BenchName.churn, BenchName.barrage):
        raise CliError(f"bench {which.value} has no plot: its figures are a table and --json", 2)
    if plot is not None:
        from ..plots import PlotError, require_matplotlib

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
        source = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        log.info("running %s", " ".join(command))
        status = subprocess.call(command, env=env)
        if plot is not None and output.is_file():
            from ..plots import PlotError, plot_json

            try:
                written = plot_json([output], plot, title=f"dhtquery bench {which.value}")
            except PlotError as exc:
                raise CliError(str(exc), 1) from None
            print(f"plot: {written}")
        if status:
            raise CliError(f"bench {which.value} exited with status {status}", 1)

"""``dhtquery demo``: a network on 127.0.0.1 in this process, a catalog published and searched."""

from __future__ import annotations

from typing import Annotated

import typer

from ..common import BackendName, CliError, LogLevelOption, LoopName, console, run_async, set_level

__all__ = ["demo"]


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
    set_level(ctx, log_level)
    from ..demo import DemoSettings, run_demo

    settings = DemoSettings(
        nodes=nodes, packages=packages, backend=backend.value, loop=loop.value,
        searches_in_burst=burst,
    )  # fmt: skip
    status = run_async(run_demo(settings, console()), loop)
    if status:
        raise CliError("a demo search found nothing", 1)

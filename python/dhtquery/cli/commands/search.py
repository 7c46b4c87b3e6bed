"""``dhtquery search``: join, search the packages on the network, print a table or JSON, leave."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from ...query import QueryConfig, QueryResult
from ...registry import Query, SchemaError, highest_versions
from ..common import (
    Address,
    BootstrapOption,
    CliError,
    LogLevelOption,
    addresses,
    client_node,
    config_of,
    console,
    peer_text,
    run_async,
    set_level,
)

__all__ = ["search"]


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
    set_level(ctx, log_level)
    peers = addresses(bootstrap)
    if not peers:
        raise typer.BadParameter("at least one is needed", param_hint="'--bootstrap'")
    try:
        query = Query(text, tuple(category), tuple(tag), limit, offset)
    except SchemaError as exc:
        raise CliError(f"bad query: {exc}", 2) from None
    config = config_of(timeout, fan_out)
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
                      peer_text(peer), f"{at * 1e3:.1f} ms")  # fmt: skip
    console().print(table)


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
            {**package.to_record(), "peer": peer_text(peer), "at_ms": at * 1e3}
            for package, peer, _key, at in rows
        ],
    }

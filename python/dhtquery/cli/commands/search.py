"""``dhtquery search``: join, search the packages on the network, print a table or JSON, leave."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from ...query import QueryConfig, QueryResult
from ...registry import Query, SchemaError, highest_versions
from ..common import (
    BOOTSTRAP_TIMEOUT,
    Address,
    BootstrapOption,
    BootstrapTimeoutOption,
    CliError,
    LogLevelOption,
    StrictOption,
    addresses,
    client_node,
    config_of,
    console,
    peer_text,
    run_async,
    set_level,
    trust_store,
)
from ..report import Column, fitted_table, ms, outcome_text, query_text

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
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="seconds before partial results")
    ] = 5.0,
    fan_out: Annotated[int, typer.Option(help="peers asked at once")] = 3,
    bootstrap: BootstrapOption = [],  # noqa: B006
    bootstrap_timeout: BootstrapTimeoutOption = BOOTSTRAP_TIMEOUT,
    host: Annotated[str | None, typer.Option(help="interface for this client node")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    strict: StrictOption = False,
    log_level: LogLevelOption = None,
) -> None:
    """Search the network's packages.

    Each result shows the key that signed it, and "pinned" if its namespace
    is pinned to that key (dhtquery trust); a namespace seen for the first
    time is trusted to its first key (unless --strict).
    """
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
    outcome, rows = run_async(
        _search(peers, host, config, query, timeout, bootstrap_timeout, strict)
    )
    elapsed = time.perf_counter() - started
    if as_json:
        print(json.dumps(_search_json(query, outcome, rows), indent=2))
        return
    out = console()
    summary = (
        f"{outcome_text(outcome, len(rows), lookups=len(query.tags))} "
        f"({elapsed:.2f} s with joining the network)"
    )
    if not rows:
        out.print(f"no package matched {query_text(query)}: {summary}")
        return
    columns = [
        Column("package", style="cyan"),
        Column("version", style="green"),
        Column("title", wrap=True, min_width=24),
        Column("publisher key", priority=4, style="blue"),
        Column("from, at", priority=3, style="yellow"),
        Column("tags", priority=2, style="magenta", wrap=True),
        Column("categories", priority=1, wrap=True),
    ]
    for package, peer, _key, at in rows:
        cells = (str(package.id), str(package.version), package.title,
                 _key_text(package), f"{peer_text(peer)}, {ms(at)}",
                 ", ".join(package.tags), ", ".join(package.categories))  # fmt: skip
        for column, cell in zip(columns, cells, strict=True):
            column.cells.append(cell)
    out.print(fitted_table(out.width, columns, caption=summary))


async def _search(
    peers: Sequence[Address],
    host: str | None,
    config: QueryConfig,
    query: Query,
    timeout: float,
    wait: float,
    strict: bool = False,
) -> tuple[Any, list[QueryResult]]:
    async with client_node(peers, host, config, wait, trust=trust_store(strict)) as registry:
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
        "duration_ms": _ms(outcome.duration),
        "peers_ok": outcome.peers_ok,
        "peers_failed": outcome.peers_failed,
        "duplicates": outcome.duplicates,
        "results": [
            {
                **package.to_record(),
                "publisher": package.publisher,
                "pinned": package.pinned,
                "peer": peer_text(peer),
                "at_ms": _ms(at),
            }
            for package, peer, _key, at in rows
        ],
    }


def _key_text(package: Any) -> str:
    """The publishing key, shortened, and whether its namespace is pinned."""
    if not package.publisher:
        return "unsigned"
    return f"{package.publisher[:16]}{' pinned' if package.pinned else ''}"


def _ms(seconds: float) -> float:
    """Milliseconds to the microsecond: finer is clock noise."""
    return round(seconds * 1e3, 3)

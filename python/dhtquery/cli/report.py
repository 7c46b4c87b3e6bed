"""The demo's report: its progress bars and tables (rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..bench import percentiles_ms
from ..query import QueryMetrics, QueryOutcome
from ..registry import Query, highest_versions

__all__ = ["ms", "progress", "query_text", "results_table", "sum_counts", "summary_table"]


def query_text(query: Query) -> str:
    parts = [repr(query.text)] if query.text else []
    if query.tags:
        parts.append("tags=" + ",".join(query.tags))
    if query.categories:
        parts.append("categories=" + ",".join(query.categories))
    if query.offset:
        parts.append(f"offset={query.offset}")
    parts.append(f"limit={query.limit}")
    return " ".join(parts)


def progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def results_table(
    label: Callable[[Any], str], query: Query, outcome: QueryOutcome, shown: int = 8
) -> Table:
    """One search: its packages (highest versions), who answered each and
    when; ``label`` names a peer."""
    rows = highest_versions(outcome.results)[query.offset : query.offset + query.limit]
    table = Table(
        title=f"search {query_text(query)}",
        title_justify="left",
        caption=(
            f"{len(rows)} result(s) in {ms(outcome.duration)} · reason {outcome.reason} · "
            f"peers ok {outcome.peers_ok}, failed {outcome.peers_failed} · "
            f"duplicates dropped {outcome.duplicates}"
        ),
        caption_justify="left",
    )
    table.add_column("package", style="cyan", no_wrap=True)
    table.add_column("version", style="green", no_wrap=True, min_width=7)
    table.add_column("title", no_wrap=True, max_width=30)
    table.add_column("tags", style="magenta", no_wrap=True, max_width=16)
    table.add_column("answered by", style="yellow", no_wrap=True)
    table.add_column("at", justify="right", no_wrap=True, min_width=7)
    for package, peer, _key, at in rows[:shown]:
        table.add_row(
            str(package.id),
            str(package.version),
            package.title,
            ",".join(package.tags),
            label(peer),
            ms(at),
        )
    if len(rows) > shown:
        table.add_row(f"... {len(rows) - shown} more", "", "", "", "", "")
    return table


def sum_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for kind, value in count.items():
            total[kind] = total.get(kind, 0) + value
    return total


def summary_table(
    metrics: QueryMetrics,
    backend: str,
    loop_name: str,
    burst: tuple[float, list[float], int],
    dropped: dict[str, int],
    served: int,
) -> Table:
    wall, latencies, timed_out = burst
    table = Table(title="metrics (the client node's QueryManager)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("queries", f"{metrics.total}")
    table.add_row("success rate", f"{metrics.success_rate:.1%}")
    table.add_row("timed out / cancelled", f"{metrics.timed_out} / {metrics.cancelled}")
    table.add_row("latency p50", ms(metrics.latency_p50))
    table.add_row("latency p95", ms(metrics.latency_p95))
    table.add_row("latency p99", ms(metrics.latency_p99))
    table.add_row("latency max", ms(metrics.latency_max))
    table.add_row("unique results / duplicates", f"{metrics.results} / {metrics.duplicates}")
    if latencies:
        table.add_row(
            "burst throughput",
            f"{len(latencies) / wall:,.0f} searches/s ({len(latencies)} in {wall:.2f} s)",
        )
        burst_ms = percentiles_ms(latencies)
        table.add_row("burst p50 / p99", f"{burst_ms['p50']:.1f} ms / {burst_ms['p99']:.1f} ms")
        table.add_row("burst timed out", f"{timed_out}")
    total = sum(dropped.values())
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])[:3])
    table.add_row("RPCs served (network)", f"{served:,}")
    table.add_row("datagrams dropped (network)", f"{total:,}" + (f" ({kinds})" if kinds else ""))
    table.add_row("core backend", backend)
    table.add_row("event loop", loop_name)
    return table

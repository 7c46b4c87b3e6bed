"""The demo's report: its progress bars and tables (rich), and the table
fitting ``search`` shares: columns drop by priority until the table fits
the terminal, and a wide terminal gets every column at full width."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..bench import percentiles_ms
from ..query import QueryOutcome
from ..registry import Query, highest_versions

__all__ = [
    "Column",
    "DemoFigures",
    "fitted_table",
    "ms",
    "outcome_text",
    "progress",
    "query_text",
    "results_table",
    "sum_counts",
    "summary_table",
]


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
        TextColumn("{task.description:<20}"),
        BarColumn(bar_width=None if console.width > 100 else 30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _count(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else words or word + 's'}"


# -- fitting a table to the terminal ---------------------------------------------


@dataclass
class Column:
    """A table column; ``priority``: the lowest is left out first when the
    table does not fit (0: never left out)."""

    header: str
    priority: int = 0
    style: str | None = None
    justify: Any = "left"
    wrap: bool = False  # wraps (down to ``min_width``) rather than push the table wider
    min_width: int = 16
    cells: list[str] = field(default_factory=list)

    def slack(self) -> int:
        """Columns this one can give up by wrapping."""
        if not self.wrap:
            return 0
        natural = max(map(cell_len, [self.header, *self.cells]))
        return max(0, natural - self.min_width)


def _build(title: str | None, caption: str | None, columns: Sequence[Column]) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        header_style="bold",
    )
    for column in columns:
        table.add_column(column.header, style=column.style, justify=column.justify,
                         no_wrap=not column.wrap, overflow="fold")  # fmt: skip
    for row in zip(*(column.cells for column in columns), strict=True):
        table.add_row(*row)
    return table


def fitted_table(
    width: int, columns: Sequence[Column], title: str | None = None, caption: str | None = None
) -> Table:
    """A table of ``columns`` no wider than ``width``: while its natural width
    is more, the column of lowest priority is left out (and named in the
    caption); what still does not fit wraps in the ``wrap`` columns."""
    console = Console(width=100_000, highlight=False)  # measures the natural width
    kept = list(columns)
    left_out: list[str] = []
    while True:
        table = _build(title, caption, kept)
        natural = Measurement.get(console, console.options, table).maximum
        droppable = [c for c in kept if c.priority > 0]
        if natural - sum(c.slack() for c in kept) <= width or not droppable:
            break
        lowest = min(droppable, key=lambda c: c.priority)
        kept.remove(lowest)
        left_out.append(lowest.header)
    if left_out:
        note = f"(not shown, for width: {', '.join(left_out)})"
        table = _build(title, f"{caption}\n{note}" if caption else note, kept)
    return table


# -- the demo's tables --------------------------------------------------------------

_REASONS = {
    "max_results": "ended with enough results",
    "adaptive": "stopped waiting for slow peers",
    "timeout": "timed out: partial results",
    "cancelled": "cancelled",
}


def outcome_text(outcome: QueryOutcome, shown: int, lookups: int = 0) -> str:
    """One line on how a search ended, in words; ``lookups``: how many of its
    sources were DHT lookups of a tag's key rather than peers asked."""
    asked = outcome.peers_ok + outcome.peers_failed
    peers = asked - lookups
    sources = _count(peers, "peer") + (f" and {_count(lookups, 'tag lookup')}" if lookups else "")
    if outcome.reason == "all_peers" and not outcome.peers_failed:
        if asked == 2 and not lookups:
            how = "both peers answered"
        else:
            how = f"all {sources} answered" if asked > 1 else f"{sources} answered"
    else:
        how = (f"{_REASONS.get(str(outcome.reason), str(outcome.reason))}: "
               f"{outcome.peers_ok} of {sources} answered")  # fmt: skip
    parts = [f"{_count(shown, 'result')} in {ms(outcome.duration)}", how]
    if outcome.duplicates:
        parts.append(f"{_count(outcome.duplicates, 'duplicate copy', 'duplicate copies')} dropped")
    return " · ".join(parts)


def results_table(
    label: Callable[[Any], str],
    query: Query,
    outcome: QueryOutcome,
    width: int,
    shown: int = 8,
) -> Table:
    """One search: its packages (highest versions), who answered each and
    when; ``label`` names a peer."""
    rows = highest_versions(outcome.results)[query.offset : query.offset + query.limit]
    columns = [
        Column("package", style="cyan"),
        Column("version", style="green"),
        Column("title", wrap=True, min_width=24),
        Column("from, at", priority=2, style="yellow"),
        Column("tags", priority=1, style="magenta", wrap=True, min_width=22),
    ]
    cells = [
        (str(package.id), str(package.version), package.title, f"{label(peer)}, {ms(at)}",
         ", ".join(package.tags))
        for package, peer, _key, at in rows[:shown]
    ]  # fmt: skip
    if len(rows) > shown:
        cells.append((f"... {len(rows) - shown} more", "", "", "", ""))
    for row in cells:
        for column, cell in zip(columns, row, strict=True):
            column.cells.append(cell)
    title = f"search {query_text(query)}"
    caption = outcome_text(outcome, len(rows), lookups=len(query.tags))
    return fitted_table(width, columns, title=title, caption=caption)


def sum_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for kind, value in count.items():
            total[kind] = total.get(kind, 0) + value
    return total


@dataclass
class DemoFigures:
    """What the demo measured, for its summary: each figure with what it counts."""

    nodes: int
    shown: list[float]  # durations of the searches shown one at a time (s)
    burst_wall: float
    burst: list[float]  # durations of the burst's searches (s)
    burst_concurrency: int
    burst_timed_out: int
    queries: int  # queries the client's QueryManager ran
    tag_lookups: int  # of which DHT lookups of a tag's key
    success_rate: float
    timed_out: int
    results: int
    duplicates: int
    served: int  # RPCs served by the network's nodes
    timeouts: dict[str, int]  # the network's RPC timeouts, by phase
    dropped: dict[str, dict[str, int]]  # the network's dropped datagrams, by phase and kind
    backend: str
    loop_name: str
    #: RPCs the network's nodes sent (first copies), by phase; {}: not counted
    sent: dict[str, int] = field(default_factory=dict)


def _late_text(f: DemoFigures) -> str:
    """RPCs sent by phase, with the share whose answer came late."""
    parts = []
    for phase, count in f.sent.items():
        late = f.dropped.get(phase, {}).get("late_response", 0)
        parts.append(f"{count:,} {phase} ({late / count if count else 0:.2%} answered late)")
    return "; ".join(parts)


def _drops_text(dropped: Mapping[str, Mapping[str, int]]) -> str:
    parts = []
    for phase, kinds in dropped.items():
        total = sum(kinds.values())
        top = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in
                        sorted(kinds.items(), key=lambda kv: -kv[1])[:3])  # fmt: skip
        parts.append(f"{total:,} {phase}" + (f" ({top})" if top else ""))
    return "; ".join(parts)


def summary_table(figures: DemoFigures, width: int) -> Table:
    f = figures
    searches = len(f.shown) + len(f.burst)
    rows: list[tuple[str, str]] = [
        ("searches", f"{searches:,}: {len(f.shown)} shown above, {len(f.burst):,} in the burst"),
        ("queries of the client", f"{f.queries:,}: the searches + {f.tag_lookups:,} DHT lookups "
                                  "of a tag's key (a tag search makes one)"),
        ("success rate", f"{f.success_rate:.1%} ({f.timed_out:,} timed out)"),
    ]  # fmt: skip
    if f.shown:
        one = percentiles_ms(f.shown)
        rows.append(("one at a time", f"p50 {one['p50']:.1f} ms, max {max(f.shown) * 1e3:.1f} ms"))
    if f.burst:
        rate = len(f.burst) / f.burst_wall
        burst = percentiles_ms(f.burst)
        rows.append((f"burst, {f.burst_concurrency} at a time",
                     f"{rate:,.0f} searches/s; p50 {burst['p50']:.1f} ms, "
                     f"p99 {burst['p99']:.1f} ms, {f.burst_timed_out} timed out"))  # fmt: skip
        rows.append(("", f"(a search waits its turn: {f.burst_concurrency} in flight at "
                         f"{rate:,.0f}/s is ~{f.burst_concurrency / rate * 1e3:.0f} ms each, "
                         f"with all {f.nodes} nodes on this one process's CPU)"))  # fmt: skip
    rows += [
        ("results", f"{f.results:,} unique, {f.duplicates:,} duplicate copies dropped "
                    "(peers asked hold the same packages)"),
        ("RPCs served", f"{f.served:,} by the network's nodes"),
        *([("RPCs sent", _late_text(f))] if f.sent else []),
        ("RPC timeouts", ", ".join(f"{v:,} {k}" for k, v in f.timeouts.items())),
        ("datagrams dropped", _drops_text(f.dropped)),
        ("", "(late response: the answer came after its request had been given up)"),
        ("core / event loop", f"{f.backend} / {f.loop_name}"),
    ]  # fmt: skip
    columns = [Column("figure"), Column("value", wrap=True)]
    for name, value in rows:
        columns[0].cells.append(name)
        columns[1].cells.append(value)
    return fitted_table(width, columns, title="summary (the client node and the network)")

"""Plots of the benches' JSON: throughput per backend as bars, latency as a
CDF. matplotlib is imported only when a plot is drawn (it is in the
``bench`` extra, not a dependency of the package).

Shapes read (what ``benches/*.py`` write):

- core (``bench_core.py``): ``workloads[].medians[backend][phase]`` with a
  ``<things>/s`` rate: one group of bars per phase, one bar per backend.
- registry (``bench_registry.py``): ``results[loop/core][contender]`` with
  ``throughput_per_s`` and ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``.
- scale (``dhtquery bench scale``): ``results[]`` per network size with
  ``runs[label].hops`` and ``latency_ms``, and ``fits[label]`` (hops = a +
  b log2 n): hops and latency against network size (:func:`plot_scale`).
- rows (``bench_dht.py``): ``rows[]`` with
  ``client``, ``run``, ``loop``, ``core``, ``throughput.ok_per_s`` and
  ``latency.latency_ms`` (``p50``, ``p90``, ... ``max``); a row may carry
  ``latency.cdf_ms`` (sorted ``[ms, fraction]`` pairs) or
  ``latency.latencies_ms`` (raw samples) for an exact CDF; otherwise the CDF
  is drawn through the percentiles it reports, and the legend says so.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DhtQueryError

__all__ = [
    "PlotData",
    "PlotError",
    "extract",
    "plot_file",
    "plot_json",
    "plot_scale",
    "require_matplotlib",
]

_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)$")


class PlotError(DhtQueryError, RuntimeError):
    """Nothing to plot, or no matplotlib: the message says which."""


@dataclass
class PlotData:
    #: group (a workload phase, or "lookups/s") -> [(bar label, value)]
    throughput: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    throughput_unit: dict[str, str] = field(default_factory=dict)
    #: curve label -> sorted [(latency ms, cumulative fraction)]
    latency: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _row_label(row: Mapping[str, Any]) -> str:
    parts = [
        str(row.get(k)) for k in ("client", "run", "loop", "core") if row.get(k) not in (None, "-")
    ]
    return " / ".join(parts) or "row"


def _cdf_of(latency: Mapping[str, Any]) -> tuple[list[tuple[float, float]], bool] | None:
    """(points, exact) from a row's latency summary."""
    cdf = latency.get("cdf_ms")
    if isinstance(cdf, list) and cdf:
        return [(float(ms), float(frac)) for ms, frac in cdf], True
    samples = latency.get("latencies_ms")
    if isinstance(samples, list) and samples:
        ordered = sorted(float(v) for v in samples)
        n = len(ordered)
        return [(v, (i + 1) / n) for i, v in enumerate(ordered)], True
    percentiles = latency.get("latency_ms")
    if not isinstance(percentiles, Mapping):
        return None
    points = []
    for name, value in percentiles.items():
        match = _PERCENTILE.match(str(name))
        if match and isinstance(value, int | float):
            points.append((float(value), float(match.group(1)) / 100))
        elif name == "max" and isinstance(value, int | float):
            points.append((float(value), 1.0))
    return (sorted(points), False) if points else None


def extract(report: Mapping[str, Any]) -> PlotData:
    """What can be plotted from one bench report (see the module doc)."""
    data = PlotData()
    for workload in report.get("workloads") or ():
        phases = {p["name"]: p for p in workload.get("phases", ()) if isinstance(p, Mapping)}
        for backend, by_phase in (workload.get("medians") or {}).items():
            for phase_name, derived in by_phase.items():
                unit = (phases.get(phase_name) or {}).get("rate_unit") or ""
                if not unit or unit not in derived:
                    continue
                key = str(workload.get("key", ""))
                label = " ".join(str(phases[phase_name].get("label", phase_name)).split())
                group = label if label.startswith(key) else f"{key} {label}".strip()
                data.throughput.setdefault(group, []).append((backend, float(derived[unit])))
                data.throughput_unit[group] = unit
    for row in report.get("rows") or ():
        if not isinstance(row, Mapping) or row.get("error"):
            continue
        label = _row_label(row)
        throughput = row.get("throughput")
        if isinstance(throughput, Mapping) and isinstance(throughput.get("ok_per_s"), int | float):
            group = str(row.get("run") or "lookups")
            data.throughput.setdefault(group, []).append((label, float(throughput["ok_per_s"])))
            data.throughput_unit[group] = "ok/s"
        latency = row.get("latency")
        if isinstance(latency, Mapping):
            found = _cdf_of(latency)
            if found:
                points, exact = found
                data.latency[label if exact else f"{label} (percentiles)"] = points
    _extract_registry(report, data)
    return data


def _extract_registry(report: Mapping[str, Any], data: PlotData) -> None:
    """bench_registry's shape: ``results[loop/core][contender]`` with
    ``throughput_per_s`` and ``p50_ms`` ... ``max_ms``."""
    results = report.get("results")
    if not isinstance(results, Mapping):
        return
    for setup, contenders in results.items():
        if not isinstance(contenders, Mapping):
            continue
        for contender, figures in contenders.items():
            if not isinstance(figures, Mapping) or "throughput_per_s" not in figures:
                continue
            label = f"{contender} / {setup}"
            data.throughput.setdefault("searches", []).append(
                (label, float(figures["throughput_per_s"]))
            )
            data.throughput_unit["searches"] = "searches/s"
            points = [
                (float(figures[f"{name}_ms"]), fraction)
                for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
                if isinstance(figures.get(f"{name}_ms"), int | float)
            ]
            if points:
                data.latency[f"{label} (percentiles)"] = sorted(points)


def plot_json(paths: Sequence[Path], output: Path, title: str | None = None) -> Path:
    """Read bench JSON files and write one PNG: throughput bars on the left,
    the latency CDF on the right (when there are latencies). Raises
    PlotError with a one-line message."""
    merged = PlotData()
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PlotError(f"cannot read bench results {path}: {exc}") from None
        if not isinstance(report, Mapping):
            raise PlotError(f"{path} is not a bench report (a JSON object)")
        if report.get("benchmark") == "scale" and len(paths) == 1:
            return plot_scale(report, output, title)
        data = extract(report)
        merged.throughput.update(data.throughput)
        merged.throughput_unit.update(data.throughput_unit)
        merged.latency.update(data.latency)
    if not merged.throughput and not merged.latency:
        raise PlotError(f"no throughput or latency figures in {', '.join(map(str, paths))}")
    return plot_file(merged, output, title)


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend, or PlotError saying how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(
            "plots need matplotlib: pip install matplotlib (or dhtquery[bench])"
        ) from None
    return plt


def plot_file(data: PlotData, output: Path, title: str | None = None) -> Path:
    plt = require_matplotlib()
    panels = [name for name, has in (("bars", data.throughput), ("cdf", data.latency)) if has]
    groups = list(data.throughput)
    bar_rows = max(1, len(groups)) if "bars" in panels else 0
    figure = plt.figure(figsize=(6.5 * len(panels), max(3.2, 2.6 * max(bar_rows, 1))))
    grid = figure.add_gridspec(max(bar_rows, 1), len(panels))
    column = 0
    colors: dict[str, str] = {}  # one colour per bar label across the groups
    if "bars" in panels:
        for index, group in enumerate(groups):
            axes = figure.add_subplot(grid[index, column])
            bars = data.throughput[group]
            labels = [label for label, _ in bars]
            values = [value for _, value in bars]
            positions = list(range(len(bars)))
            axes.barh(
                positions,
                values,
                color=[colors.setdefault(lb, f"C{len(colors) % 10}") for lb in labels],
            )
            axes.set_yticks(positions, labels, fontsize=8)
            axes.invert_yaxis()
            axes.set_xlabel(data.throughput_unit.get(group, ""), fontsize=8)
            axes.set_title(group, fontsize=9)
            for position, value in zip(positions, values, strict=True):
                axes.annotate(f"{value:,.0f}", (value, position), fontsize=7, va="center",
                              xytext=(3, 0), textcoords="offset points")  # fmt: skip
            axes.margins(x=0.2)
        column += 1
    if "cdf" in panels:
        axes = figure.add_subplot(grid[:, column])
        for label, points in data.latency.items():
            xs = [ms for ms, _ in points]
            ys = [fraction for _, fraction in points]
            axes.step(xs, ys, where="post", label=label, marker="." if len(xs) < 12 else None)
        axes.set_xscale("log")
        axes.set_xlabel("latency (ms, log scale)")
        axes.set_ylabel("fraction of lookups")
        axes.set_ylim(0, 1.02)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
        axes.set_title("latency CDF", fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def plot_scale(report: Mapping[str, Any], output: Path, title: str | None = None) -> Path:
    """bench scale's report: mean hops (with the log2 fit) and latency
    p50/p99 against the network size, one line per client and key kind."""
    results = sorted(
        (r for r in report.get("results") or () if isinstance(r, Mapping) and r.get("runs")),
        key=lambda r: r["nodes"],
    )
    if not results:
        raise PlotError("no network sizes in the scale report")
    plt = require_matplotlib()
    figure, (hops_axes, latency_axes) = plt.subplots(1, 2, figsize=(12, 4.6))
    labels = list(dict.fromkeys(label for r in results for label in r["runs"]))
    fits = report.get("fits") or {}
    for index, label in enumerate(labels):
        color = f"C{index % 10}"
        rows = [(r["nodes"], r["runs"][label]) for r in results if label in r["runs"]]
        sizes = [n for n, _ in rows]
        hops = [run["hops"].get("mean", 0.0) for _, run in rows]
        hops_axes.plot(sizes, hops, "o-", color=color, label=label)
        fit = fits.get(label)
        if isinstance(fit, Mapping) and len(sizes) > 1:
            span = [min(sizes), max(sizes)]
            line = [fit["a"] + fit["b"] * math.log2(n) for n in span]
            hops_axes.plot(span, line, "--", color=color, alpha=0.6,
                           label=f"fit {fit['a']:.2f} + {fit['b']:.2f} log2 n")  # fmt: skip
        for quantile, style in (("p50", "o-"), ("p99", "s--")):
            values = [run["latency_ms"].get(quantile, float("nan")) for _, run in rows]
            latency_axes.plot(sizes, values, style, color=color, label=f"{label} {quantile}")
    for axes in (hops_axes, latency_axes):
        axes.set_xscale("log", base=10)
        axes.set_xlabel("nodes in the network (log scale)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    hops_axes.set_ylabel("hops per lookup (mean)")
    hops_axes.set_title("hops against network size", fontsize=9)
    hops_axes.set_ylim(bottom=0)
    latency_axes.set_ylabel("latency (ms)")
    latency_axes.set_title("lookup latency p50 / p99", fontsize=9)
    latency_axes.set_ylim(bottom=0)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output

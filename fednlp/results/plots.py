"""The study's figures, drawn from leaderboard rows: metric vs label-skew alpha per algorithm, learning curves,
and the federated-centralized gap per task. Matplotlib's Agg canvas, never pyplot's global figure registry.

Legends sit below the axes, inside the figure (constrained layout makes room for them: the figure grows with
the legend instead of the axes shrinking), in TEXT_POINTS text at DPI: about 14 px where the image is shown at
its own size, which the HTML leaderboard does for figures of FIGURE_WIDTH inches in a 1280 px window.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from fednlp.files import atomic_write_bytes
from fednlp.results.leaderboard import Row, ScoredRun, setting_columns, setting_text
from fednlp.results.run_files import RunDirectory

ALPHA = re.compile(r"^niid_label_.*alpha=([0-9.eE+-]+)$")
DPI = 100
TEXT_POINTS = 10  # legend and tick labels; matplotlib's "x-small" at 90 dpi was about 8 px, too small to read
FIGURE_WIDTH = 11.0  # inches: 1100 px at DPI, shown unscaled in a 1280 px browser window
LINE_HEIGHT = 1.45 * TEXT_POINTS / 72  # inches per legend line


def legend_pixels() -> float:
    """The legend's text height in pixels where a figure is shown at its own size."""
    return TEXT_POINTS * DPI / 72


def row_label(row: Row, settings: list[str]) -> str:
    """The algorithm plus the settings that tell its rows apart, e.g. 'fedadam server_lr=0.01'."""
    extra = [f"{k}={setting_text(row.settings[k])}" for k in settings if row.settings.get(k) is not None]
    return " ".join([row.algorithm, *extra])


def read_curve(run: ScoredRun) -> list[dict[str, Any]]:
    """The evaluations of metrics.jsonl that hold the run's primary metric (none without the file)."""
    return [record for record in RunDirectory(run.run_dir).read_metrics()
            if isinstance(record, dict) and isinstance(record.get(run.metric), (int, float))]


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def legend_below(fig: Any, handles: list[Any], labels: list[str]) -> Any:
    """One legend for the whole figure, below the axes, in as many columns as the longest label allows, a
    label longer than the figure is wide wrapped onto several lines; the figure grows by the legend's height
    so that the axes keep theirs."""
    width, height = fig.get_size_inches()
    char = 0.6 * TEXT_POINTS / 72  # inches per character, a little over DejaVu Sans's average
    sample = 0.8  # inches: the line sample, its padding and the gap between columns
    fits = max(20, int((width - sample) / char))  # characters per line of a one-column legend
    labels = [textwrap.fill(label, fits, break_on_hyphens=False) for label in labels]
    longest = max(len(line) for label in labels for line in label.splitlines())
    ncol = max(1, min(len(labels), int(width // (longest * char + sample))))
    lines = sum(max(label.count("\n") + 1 for label in labels[i:i + ncol]) for i in range(0, len(labels), ncol))
    fig.set_size_inches(width, height + lines * LINE_HEIGHT + 0.2)
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=TEXT_POINTS, frameon=False)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def learning_curves_figure(rows: list[Row], title: str) -> Any | None:
    """Primary metric vs round and vs wall time: one line per run, one colour and one legend entry per row (its
    seeds); a matplotlib Figure, or None without curves."""
    fig, (by_round, by_time) = _figure(FIGURE_WIDTH, 3.6, ncols=2)
    settings = setting_columns(rows)
    handles, labels = [], []
    for i, row in enumerate(rows):
        colour = f"C{i % 10}"
        style = ("-", "--", ":", "-.")[i // 10 % 4]  # more rows than colours: the line style tells them apart
        drawn = None
        for run in row.runs:
            points = read_curve(run)
            rounds = [(p["round"], p[run.metric]) for p in points if isinstance(p.get("round"), (int, float))]
            times = [(p["elapsed_s"], p[run.metric]) for p in points if isinstance(p.get("elapsed_s"), (int, float))]
            for axes, xy in ((by_round, rounds), (by_time, times)):
                if xy:
                    (drawn,) = axes.plot(*zip(*xy), marker=".", color=colour, linestyle=style)
        if drawn is not None:
            seeds = f"{row.n_runs} seeds" if row.n_runs > 1 else f"seed {row.runs[0].seed}"
            handles.append(drawn)
            labels.append(" ".join(filter(None, [f"row {row.number}:", row_label(row, settings),
                                                 row.partition_method, f"({seeds})"])))
    if not handles:
        return None
    metric = rows[0].metric
    by_round.set(xlabel="round (epoch/step chunk for centralized)", ylabel=metric)
    by_time.set(xlabel="wall time (s)", ylabel=metric)
    for axes in (by_round, by_time):
        axes.tick_params(labelsize=TEXT_POINTS)
    legend_below(fig, handles, labels)
    fig.suptitle(title)
    return fig


def learning_curves(rows: list[Row], title: str) -> bytes | None:
    """learning_curves_figure as PNG bytes, or None without curves."""
    fig = learning_curves_figure(rows, title)
    return None if fig is None else _png(fig)


def learning_curves_png(rows: list[Row], title: str) -> str | None:
    """learning_curves as base64 text, for an HTML page."""
    png = learning_curves(rows, title)
    return None if png is None else base64.b64encode(png).decode("ascii")


def metric_vs_alpha(rows: list[Row], title: str) -> bytes | None:
    """Mean metric (error bars: std over seeds) vs Dirichlet label-skew alpha, one line per algorithm and
    setting; uniform clients at the right end; the best matching centralized row as a dashed line."""
    federated = [r for r in rows if not r.is_centralized]
    skewed = [r for r in federated if r.partition_method and ALPHA.match(r.partition_method)]
    if not skewed:
        return None
    alphas = sorted({float(ALPHA.match(r.partition_method).group(1)) for r in skewed})
    x_of = {a: i for i, a in enumerate(alphas)}
    uniform_x = len(alphas)
    fig, (ax,) = _figure(9, 4.5)
    settings = setting_columns(rows)
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for row in federated:
        method = row.partition_method or ""
        match = ALPHA.match(method)
        x = x_of[float(match.group(1))] if match else uniform_x if method.startswith("uniform") else None
        if x is not None:
            lines.setdefault(row_label(row, settings), []).append((x, row.value, row.std or 0.0))
    for label, points in sorted(lines.items()):
        points.sort()
        xs, ys, errs = zip(*points)
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=label)
    baselines = {r.baseline.number: r.baseline for r in federated if r.baseline is not None}
    for base in baselines.values():
        ax.axhline(base.value, linestyle="--", color="grey")
        ax.annotate(f"centralized (row {base.number})", (0, base.value), fontsize="small", va="bottom")
    ax.set_xticks(range(len(alphas) + 1), [f"{a:g}" for a in alphas] + ["uniform"])
    ax.set(xlabel="label skew: Dirichlet alpha (smaller = more skewed)", ylabel=rows[0].metric, title=title)
    ax.tick_params(labelsize=TEXT_POINTS)
    legend_below(fig, *ax.get_legend_handles_labels())
    return _png(fig)


def short_partition(method: str | None) -> str:
    """A partition group's short name for a plot label: uniform, alpha 0.1, quantity beta 1.0, natural, ..."""
    if not method:
        return ""
    kinds = (("niid_label_", "alpha", "alpha"), ("niid_quantity_", "beta", "quantity beta"),
             ("niid_cluster_", "alpha", "cluster alpha"))
    for prefix, key, name in kinds:
        found = re.search(rf"{key}=([0-9.eE+-]+)", method)
        if method.startswith(prefix) and found:
            return f"{name} {found.group(1)}"
    return method.split("_clients=")[0]


def gap_error(row: Row) -> float:
    """The spread of a gap: the row's and its baseline's seed spreads combined (independent seeds)."""
    baseline = row.baseline.std if row.baseline is not None and row.baseline.std else 0.0
    return math.sqrt((row.std or 0.0) ** 2 + baseline ** 2)


def gaps(rows: list[Row]) -> bytes | None:
    """Federated minus centralized (signed so that negative is worse), one panel per task and dataset, one bar
    per federated row with a baseline, labelled by its table row; error bars: the row's and its baseline's seed
    spreads combined (gap_error)."""
    blocks: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.gap is not None:
            blocks.setdefault((row.task, row.dataset, row.metric), []).append(row)
    if not blocks:
        return None
    fig, axes = _figure(FIGURE_WIDTH, 1.5 + 0.3 * max(map(len, blocks.values())), ncols=len(blocks))
    for ax, ((task, dataset, metric), block) in zip(axes, blocks.items()):
        labels = [" ".join(filter(None, [f"row {r.number}:", r.algorithm, short_partition(r.partition_method)]))
                  for r in block]
        ax.barh(range(len(block)), [r.gap for r in block], xerr=[gap_error(r) for r in block], capsize=2)
        ax.set_yticks(range(len(block)), labels, fontsize=TEXT_POINTS)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(title=f"{task} / {dataset} (rows of the table; bars: ±1 std of row and baseline)",
               xlabel=f"gap in {metric} (federated - centralized)")
    return _png(fig)


def write_study_plots(rows: list[Row], directory: str | os.PathLike) -> list[Path]:
    """learning_curves.png, metric_vs_alpha.png (when label-skew rows exist), gap.png and curves_by_budget.png
    (fednlp/results/curves.py) under directory;
    each written beside its target and renamed, so a reader never sees half a file. Returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    title = ", ".join(sorted({f"{r.task} / {r.dataset} / {r.model}" for r in rows}))
    from fednlp.results.curves import budget_curves

    figures = {"learning_curves.png": learning_curves(rows, title), "metric_vs_alpha.png": metric_vs_alpha(rows, title),
               "gap.png": gaps(rows), "curves_by_budget.png": budget_curves(rows, title)}
    written = []
    for name, png in figures.items():
        if png is None:
            continue
        atomic_write_bytes(directory / name, png)
        written.append(directory / name)
    return written

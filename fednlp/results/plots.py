"""The study's figures, drawn from leaderboard rows: metric vs label-skew alpha per algorithm, learning curves,
and the federated-centralized gap per task. Matplotlib's Agg canvas, never pyplot's global figure registry."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import Any

from fednlp.files import atomic_write_bytes
from fednlp.results.leaderboard import Row, ScoredRun, setting_columns, setting_text
from fednlp.results.run_files import RunDirectory

ALPHA = re.compile(r"^niid_label_.*alpha=([0-9.eE+-]+)$")


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

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    # The legends sit outside the axes (right of them): a tight bounding box keeps them in the image.
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def learning_curves(rows: list[Row], title: str) -> bytes | None:
    """Primary metric vs round and vs wall time, one line per run; PNG bytes, or None without curves."""
    fig, (by_round, by_time) = _figure(11, 4, ncols=2)
    settings = setting_columns(rows)
    drawn = False
    for row in rows:
        for run in row.runs:
            points = read_curve(run)
            label = " ".join(filter(None, [row_label(row, settings), run.partition_method, f"seed={run.seed}"]))
            rounds = [(p["round"], p[run.metric]) for p in points if isinstance(p.get("round"), (int, float))]
            times = [(p["elapsed_s"], p[run.metric]) for p in points if isinstance(p.get("elapsed_s"), (int, float))]
            if rounds:
                by_round.plot(*zip(*rounds), marker=".", label=label)
            if times:
                by_time.plot(*zip(*times), marker=".", label=label)
            drawn = drawn or bool(rounds or times)
    if not drawn:
        return None
    metric = rows[0].metric
    by_round.set(xlabel="round (epoch/step chunk for centralized)", ylabel=metric)
    by_time.set(xlabel="wall time (s)", ylabel=metric)
    (by_time if by_time.lines else by_round).legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    return _png(fig)


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
    fig, (ax,) = _figure(7, 4.5)
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
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def gaps(rows: list[Row]) -> bytes | None:
    """Federated minus centralized (signed so that negative is worse), one panel per task and dataset,
    one bar per federated row with a baseline; error bars: std over seeds."""
    blocks: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.gap is not None:
            blocks.setdefault((row.task, row.dataset, row.metric), []).append(row)
    if not blocks:
        return None
    fig, axes = _figure(5.5 * len(blocks), 5, ncols=len(blocks))
    for ax, ((task, dataset, metric), block) in zip(axes, blocks.items()):
        settings = setting_columns(block)  # what tells this task's rows apart, not what differs across tasks
        labels = [f"{row_label(r, settings)} | {r.partition_method}" for r in block]
        ax.barh(range(len(block)), [r.gap for r in block], xerr=[r.std or 0.0 for r in block], capsize=2)
        ax.set_yticks(range(len(block)), labels, fontsize="x-small")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(title=f"{task} / {dataset}", xlabel=f"gap in {metric} (federated - centralized)")
    return _png(fig)


def write_study_plots(rows: list[Row], directory: str | os.PathLike) -> list[Path]:
    """learning_curves.png, metric_vs_alpha.png (when label-skew rows exist) and gap.png under directory;
    each written beside its target and renamed, so a reader never sees half a file. Returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    title = ", ".join(sorted({f"{r.task} / {r.dataset} / {r.model}" for r in rows}))
    figures = {"learning_curves.png": learning_curves(rows, title), "metric_vs_alpha.png": metric_vs_alpha(rows, title),
               "gap.png": gaps(rows)}
    written = []
    for name, png in figures.items():
        if png is None:
            continue
        atomic_write_bytes(directory / name, png)
        written.append(directory / name)
    return written

"""Learning curves on a budget axis every run shares: the metric against examples trained on and against
sequential optimizer steps, one line per leaderboard row (the mean over its seeds) with a band of +-1 std.

A round or an epoch is not comparable across federated and centralized runs; examples and steps are. Each
evaluation of a run is placed at its share of the run's totals (result.json's local_examples_total, or steps x
batch for older records, and local_steps_total): evaluation i of a run whose training is cut into n equal parts
(rounds, or epochs) sits at i/n of them. For a federated run the step axis is the sequential depth: a round's
local steps of an average client (total steps / rounds / clients per round), since a round's clients train
side by side. Only evaluations that every seed of a row has are averaged (the band needs them all).
"""

from __future__ import annotations

import statistics
from typing import Any

from fednlp.results.leaderboard import Row, ScoredRun, setting_columns


def budget_points(run: ScoredRun, points: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """(examples, sequential steps, metric) for each evaluation of `run` that has a round or epoch number."""
    from fednlp.results.run_files import RunDirectory

    result = RunDirectory(run.run_dir).result
    config = result.config
    per_round = result.record.get("clients_per_round")
    parts = result.record.get("rounds") if per_round else (config.get("epochs") or 1)
    examples = result.local_examples_total
    if examples is None and result.local_steps_total is not None:
        examples = result.local_steps_total * (config.get("batch_size") or 0)
    steps = result.local_steps_total
    if not parts or examples is None or steps is None:
        return []
    if per_round:
        steps = steps / per_round  # sequential depth: clients of a round train side by side
    out = []
    for p in points:
        index = p.get("round")
        if isinstance(index, (int, float)) and isinstance(p.get(run.metric), (int, float)):
            share = min(1.0, index / parts) if config.get("steps") is None else 1.0  # --steps: one chunk
            out.append((examples * share, steps * share, float(p[run.metric])))
    return out


def row_curve(row: Row) -> list[tuple[float, float, float, float]]:
    """(examples, steps, mean, std) at the evaluations every run of the row has (by position)."""
    from fednlp.results.plots import read_curve

    curves = [budget_points(run, read_curve(run)) for run in row.runs]
    if not curves or not all(curves):
        return []
    n = min(len(c) for c in curves)
    out = []
    for i in range(n):
        values = [c[i][2] for c in curves]
        out.append((statistics.fmean(c[i][0] for c in curves), statistics.fmean(c[i][1] for c in curves),
                    statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0))
    return out


def budget_curves(rows: list[Row], title: str) -> bytes | None:
    """The two panels as PNG bytes, or None without curves."""
    from fednlp.results.plots import FIGURE_WIDTH, TEXT_POINTS, _figure, _png, legend_below, row_label

    fig, (by_examples, by_steps) = _figure(FIGURE_WIDTH, 3.8, ncols=2)
    settings = setting_columns(rows)
    handles, labels = [], []
    for i, row in enumerate(rows):
        curve = row_curve(row)
        if not curve:
            continue
        colour, style = f"C{i % 10}", ("-", "--", ":", "-.")[i // 10 % 4]
        examples, steps, mean, std = zip(*curve)
        for axes, x in ((by_examples, examples), (by_steps, steps)):
            (line,) = axes.plot(x, mean, marker=".", color=colour, linestyle=style)
            axes.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                              color=colour, alpha=0.15, linewidth=0)
        seeds = f"{row.n_runs} seeds" if row.n_runs > 1 else f"seed {row.runs[0].seed}"
        handles.append(line)
        labels.append(" ".join(filter(None, [f"row {row.number}:", row_label(row, settings), row.partition_method,
                                             f"({seeds})"])))
    if not handles:
        return None
    metric = rows[0].metric
    by_examples.set(xlabel="examples trained on", ylabel=f"{metric} (mean, band: ±1 std over seeds)")
    by_steps.set(xlabel="sequential optimizer steps", ylabel=metric)
    for axes in (by_examples, by_steps):
        axes.tick_params(labelsize=TEXT_POINTS)
        axes.grid(alpha=0.3)
    by_steps.set_xscale("log")
    legend_below(fig, handles, labels)
    fig.suptitle(title)
    return _png(fig)

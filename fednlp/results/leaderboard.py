"""`fednlp leaderboard`: read every run under a directory, one row per experiment, the gap to centralized.

A row is one (task, dataset, model, partition method, algorithm); runs that share it (different seeds) are
averaged. Each federated row is compared with the centralized row of the same (task, dataset, model), the
comparison the FedNLP benchmark (Lin et al., 2022, "FedNLP: Benchmarking Federated Learning Methods for
Natural Language Processing Tasks") reports.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import statistics
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any

from fednlp.errors import UserError
from fednlp.results.run_files import atomic_write_text

CENTRALIZED = "centralized"
FORMATS = ("markdown", "csv", "html")
COLUMNS = ("task", "dataset", "model", "partition_method", "algorithm", "metric",
           "value", "std", "runs", "gap", "gap_pct", "wall_time_s")
REQUIRED_STR = ("task", "dataset", "model", "algorithm", "metric")


@dataclass(frozen=True)
class RunRecord:
    """One run's result.json, reduced to what the leaderboard reads."""

    run_dir: Path
    task: str
    dataset: str
    model: str
    partition_method: str | None
    algorithm: str
    metric: str
    value: float
    best_value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float | None = None
    seed: int | None = None

    @property
    def is_centralized(self) -> bool:
        return self.algorithm == CENTRALIZED


@dataclass(frozen=True)
class Row:
    """One leaderboard line. std is None for a single run; gap and gap_pct are None without a baseline."""

    task: str
    dataset: str
    model: str
    partition_method: str | None
    algorithm: str
    metric: str
    value: float
    std: float | None
    gap: float | None
    gap_pct: float | None
    wall_time_s: float | None
    runs: tuple[RunRecord, ...]

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def is_centralized(self) -> bool:
        return self.algorithm == CENTRALIZED


def load_runs(root: str | os.PathLike) -> list[RunRecord]:
    """Every result.json under root, at any depth, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"runs directory {root} does not exist or is not a directory")
    paths = sorted(root.rglob("result.json"))
    if not paths:
        raise UserError(f"no result.json found under {root}")
    return [_read_result(p) for p in paths]


def _read_result(path: Path) -> RunRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(data).__name__}")
    for key in (*REQUIRED_STR, "partition_method", "value"):
        if key not in data:
            raise UserError(f"{path}: missing required key '{key}'")
    for key in REQUIRED_STR:
        if not isinstance(data[key], str) or not data[key]:
            raise UserError(f"{path}: '{key}' must be a non-empty string, found {data[key]!r}")
    if data["partition_method"] is not None and not isinstance(data["partition_method"], str):
        raise UserError(f"{path}: 'partition_method' must be a string or null, found {data['partition_method']!r}")
    if not _is_number(data["value"]):
        raise UserError(f"{path}: 'value' must be a number, found {data['value']!r}")
    return RunRecord(
        run_dir=path.parent,
        task=data["task"],
        dataset=data["dataset"],
        model=data["model"],
        partition_method=data["partition_method"],
        algorithm=data["algorithm"],
        metric=data["metric"],
        value=float(data["value"]),
        best_value=data.get("best_value"),
        metrics=dict(data.get("metrics") or {}),
        wall_time_s=data.get("wall_time_s"),
        seed=data.get("seed"),
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _row_key(r: RunRecord | Row) -> tuple:
    return (r.task, r.dataset, r.model, not r.is_centralized, r.partition_method or "", r.algorithm)


def leaderboard_rows(runs: list[RunRecord]) -> list[Row]:
    """One row per (task, dataset, model, partition method, algorithm), centralized first in each block."""
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        key = (run.task, run.dataset, run.model, run.partition_method, run.algorithm)
        groups.setdefault(key, []).append(run)
    rows = sorted((_aggregate(g) for g in groups.values()), key=_row_key)
    out: list[Row] = []
    for _, block in groupby(rows, key=lambda r: (r.task, r.dataset, r.model)):
        block = list(block)
        baseline = next((r for r in block if r.is_centralized), None)
        out.extend(_with_gap(r, baseline) for r in block)
    return out


def _aggregate(runs: list[RunRecord]) -> Row:
    first = runs[0]
    for run in runs[1:]:
        if run.metric != first.metric:
            raise UserError(f"{run.run_dir / 'result.json'}: metric '{run.metric}' differs from "
                            f"'{first.metric}' in {first.run_dir / 'result.json'} for the same experiment")
    values = [r.value for r in runs]
    times = [r.wall_time_s for r in runs if _is_number(r.wall_time_s)]
    return Row(
        task=first.task, dataset=first.dataset, model=first.model,
        partition_method=first.partition_method, algorithm=first.algorithm, metric=first.metric,
        value=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else None,
        gap=None, gap_pct=None,
        wall_time_s=statistics.fmean(times) if times else None,
        runs=tuple(runs),
    )


def _with_gap(row: Row, baseline: Row | None) -> Row:
    if row.is_centralized or baseline is None or baseline.metric != row.metric:
        return row
    gap = row.value - baseline.value
    gap_pct = 100.0 * gap / baseline.value if baseline.value != 0 else None
    return replace(row, gap=gap, gap_pct=gap_pct)


# ---------------------------------------------------------------- rendering

def _cells(row: Row, human: bool) -> list[str]:
    def num(x: float | None, spec: str, suffix: str = "") -> str:
        if x is None:
            return ""
        return f"{x:{spec}}{suffix}" if human else repr(round(x, 6))

    return [row.task, row.dataset, row.model, row.partition_method or "", row.algorithm, row.metric,
            num(row.value, ".4f"), num(row.std, ".4f"), str(row.n_runs),
            num(row.gap, "+.4f"), num(row.gap_pct, "+.2f", "%"), num(row.wall_time_s, ".1f")]


def render(rows: list[Row], fmt: str) -> str:
    """The table as "markdown", "csv" or "html" (a single self-contained page with learning curves)."""
    if fmt == "markdown":
        return _markdown(rows)
    if fmt == "csv":
        return _csv(rows)
    if fmt == "html":
        return _html(rows)
    raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")


def _markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row, human=True)) + " |")
    return "\n".join(lines) + "\n"


def _csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(row, human=False) for row in rows)
    return buf.getvalue()


def _html(rows: list[Row]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row, human=True)) + "</tr>"
                     for row in rows)
    figures = []
    for (task, dataset, model), block in groupby(rows, key=lambda r: (r.task, r.dataset, r.model)):
        title = f"{task} / {dataset} / {model}"
        png = _curves_png(list(block), title)
        if png is not None:
            figures.append(f"<h3>{html.escape(title)}</h3>\n"
                           f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">')
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>fednlp leaderboard</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head>
<body><h1>fednlp leaderboard</h1>
<table>
<tr>{head}</tr>
{body}
</table>
<h2>Learning curves</h2>
{chr(10).join(figures) or "<p>No metrics.jsonl found.</p>"}
</body></html>
"""


def _read_curve(run: RunRecord) -> list[dict[str, Any]]:
    path = run.run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    points = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if isinstance(record, dict) and _is_number(record.get(run.metric)):
            points.append(record)
    return points


def _curves_png(rows: list[Row], title: str) -> str | None:
    """Primary metric vs round and vs wall time, one line per run; base64 PNG, or None without curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)  # Agg, without pyplot's global figure registry
    by_round, by_time = fig.subplots(1, 2)
    drawn = False
    for row in rows:
        for run in row.runs:
            points = _read_curve(run)
            label = " ".join(filter(None, [run.algorithm, run.partition_method, f"seed={run.seed}"]))
            rounds = [(p["round"], p[run.metric]) for p in points if _is_number(p.get("round"))]
            times = [(p["elapsed_s"], p[run.metric]) for p in points if _is_number(p.get("elapsed_s"))]
            if rounds:
                by_round.plot(*zip(*rounds), marker=".", label=label)
            if times:
                by_time.plot(*zip(*times), marker=".", label=label)
            drawn = drawn or bool(rounds or times)
    if not drawn:
        return None
    metric = rows[0].metric
    by_round.set(xlabel="round (epoch/step for centralized)", ylabel=metric)
    by_time.set(xlabel="wall time (s)", ylabel=metric)
    (by_time if by_time.lines else by_round).legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_leaderboard(root: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None) -> str:
    """Render the leaderboard of every run under root; write it atomically to out when given. Returns the text."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    text = render(leaderboard_rows(load_runs(root)), fmt)
    if out is not None:
        atomic_write_text(out, text)
    return text

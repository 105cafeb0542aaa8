"""`fednlp leaderboard`: read every run under a directory, one row per experiment, the gap to centralized.

A row is one experiment: runs whose resolved configs agree on everything but the seed, the output paths and
the settings that only change what a run prints or logs (PRESENTATION_ONLY), on the data and partition files'
checksums, and on task, dataset, model, partition method, algorithm and metric. Only such runs (seeds) are
averaged, each seed once (a repeated seed is listed under the table, not averaged: it would shrink the std);
settings that differ between rows become columns, so a FedProx with mu 0.01 and one with mu 1.0 are two rows
with a `mu` column.

Each federated row is compared with a centralized row trained on the same data file with the same model
settings and the same budget (examples seen), the comparison the FedNLP benchmark (Lin et al., 2022,
"FedNLP: Benchmarking Federated Learning Methods for Natural Language Processing Tasks") reports; the
`baseline` column names that row. Every metric is shown as a fraction in [0, 1] (a run recorded in percent
must say `"metric_scale": "percent"`), except metrics where lower is better (`"greater_is_better": false`,
e.g. perplexity), whose gap is signed so that a negative gap is always worse than centralized. Rows no better
than a constant predictor on the same test split are marked ≈chance (fednlp/results/chance.py).
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fednlp.errors import UserError
from fednlp.files import atomic_write_text, check_output
from fednlp.results.run_files import RESULT, RunDirectory
from fednlp.results.chance import AT_CHANCE, SINGLE_SEED_TOLERANCE, chance_table, with_chance
from fednlp.results.run_result import RunResult, is_number

CENTRALIZED = "centralized"
FORMATS = ("markdown", "csv", "html")
IDENTITY = ("task", "dataset", "model", "partition_method", "algorithm")
HEAD_COLUMNS = ("row", *IDENTITY)
TAIL_COLUMNS = ("metric", "value", "std", "runs", "examples_seen", "baseline", "baseline_value", "baseline_std",
                "gap", "gap_pct", "best", "wall_time_s")
CHANCE_COLUMNS = ("chance", "at_chance")
COLUMNS = (*HEAD_COLUMNS, *TAIL_COLUMNS)  # the columns every table has; settings and optional stats go between
REQUIRED_STR = ("task", "dataset", "model", "algorithm", "metric")
# Optional per-run statistics other commands add to result.json, shown when any run has them:
# column -> path of keys in result.json.
OPTIONAL_STATS = {
    "clients_worst10_mean": ("clients", "worst10_mean"),
    "clients_std": ("clients", "std"),
    # What the run reached, named apart from the budget asked (the dp_epsilon/dp_delta settings, shown as
    # SETTING_HEADERS says): both are columns of a table comparing DP runs.
    "dp_epsilon_spent": ("dp", "epsilon"),
    "dp_delta_spent": ("dp", "delta"),
    "dp_epsilon_heuristic": ("dp", "epsilon_heuristic"),  # --dp-accept-sampler-bound: no proven epsilon
    "mia_auc": ("audit", "mia_auc"),
    "mia_tpr_at_1pct_fpr": ("audit", "mia_tpr_at_1pct_fpr"),
    "canary_max_exposure": ("audit", "canary_max_exposure"),
    "canary_extraction_rate": ("audit", "canary_extraction_rate"),
    "flip_rate": ("fairness", "flip_rate"),
    "cf_prob_change": ("fairness", "mean_abs_prob_change"),  # the counterfactual's mean |change| in probability
    # `fednlp fairness --metric prediction-sensitivity` and `--metric ceat` (docs/fairness.md)
    "prediction_sensitivity": ("prediction_sensitivity", "all", "mean"),
    **{f"ceat_{t}": ("ceat", "tests", t, "combined_effect_size") for t in ("weat6", "weat7", "weat8")},
    "disparity_tv_mean": ("disparity", "total_variation_mean"),  # `--metric disparity` of an LM run
}
# The statistics above where less is better (a spread, a bias, a privacy loss or leak); the rest are scores.
LOWER_IS_BETTER_STATS = frozenset({"clients_std", "dp_epsilon_spent", "dp_delta_spent", "dp_epsilon_heuristic",
                                   "mia_auc", "mia_tpr_at_1pct_fpr", "canary_max_exposure", "canary_extraction_rate",
                                   "flip_rate", "cf_prob_change", "prediction_sensitivity",
                                   "disparity_tv_mean"})
# Config keys (fednlp/config.py) that only change what a run prints, logs or writes beside its result, never the
# result: the progress bar, the TensorBoard log, how evaluation is batched (the same examples, the same model:
# the same scores), whether the model and checkpoints are saved. Runs that differ only in them are seeds of one
# experiment, and a federated row keeps its centralized baseline whatever they are.
PRESENTATION_ONLY = frozenset({"quiet", "report_to", "eval_batch_size", "save_model", "checkpoint_every"})
# Config keys that cannot change a result: the seed (runs that differ only in it are averaged), where the
# run writes, the input paths, which the data and partition checksums replace, and PRESENTATION_ONLY.
NOT_SETTINGS = frozenset({"seed", "out", "overwrite", "resume", "config", "data", "partition"}) | PRESENTATION_ONLY
# Settings shown under another name, where the config's name would read as a result column: the DP budget
# asked (--dp-epsilon, --dp-delta) beside what the run spent (OPTIONAL_STATS).
SETTING_HEADERS = {"dp_epsilon": "dp_epsilon_budget", "dp_delta": "dp_delta_budget"}
PATH_SUFFIXES = ("_dir", "_path", "_file")
# Settings a centralized baseline may differ in from the federated row it is compared with: the training
# recipe (each side is tuned on its own) and how evaluation is batched or scheduled. Everything else both
# configs hold (model, lengths, frozen layers, evaluation subset, ...) must agree, and so must the budget.
RECIPE = frozenset({"lr", "optimizer", "weight_decay", "max_grad_norm", "batch_size", "eval_every",
                    "eval_batch_size", "device", "precision"})
BUDGET_TOLERANCE = 0.10  # examples seen may differ this much (local epochs make a federated budget vary)


@dataclass(frozen=True)
class ScoredRun:
    """One run as the leaderboard counts it (from its RunResult); `value` is on the fraction scale."""

    run_dir: Path
    task: str
    dataset: str
    model: str
    partition_method: str | None
    algorithm: str
    metric: str
    value: float
    greater_is_better: bool = True
    settings: dict[str, Any] = field(default_factory=dict)
    examples_seen: int | None = None
    stats: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float | None = None
    seed: int | None = None
    data_path: str | None = None  # the data file as the run's config names it (chance levels are computed from it)

    @property
    def is_centralized(self) -> bool:
        return self.algorithm == CENTRALIZED

    @property
    def fingerprint(self) -> tuple:
        """What makes two runs the same experiment: everything but the seed and the output paths."""
        identity = tuple(getattr(self, k) for k in IDENTITY)
        return (*identity, self.metric, self.greater_is_better, tuple(sorted(self.settings.items(), key=str)))


@dataclass(frozen=True)
class Row:
    """One leaderboard line: the mean over seeds of one experiment. std is None for a single run;
    baseline, gap and gap_pct are None without a matching centralized row."""

    task: str
    dataset: str
    model: str
    partition_method: str | None
    algorithm: str
    metric: str
    greater_is_better: bool
    settings: dict[str, Any]
    value: float
    std: float | None
    examples_seen: int | None
    stats: dict[str, float]
    wall_time_s: float | None
    runs: tuple[ScoredRun, ...]
    number: int = 0
    baseline: Row | None = None
    gap: float | None = None
    gap_pct: float | None = None
    is_best: bool = False
    chance: float | None = None  # a constant predictor's score on the test split (fednlp/results/chance.py)
    at_chance: bool = False  # value within the row's spread of chance
    repeats: tuple[ScoredRun, ...] = ()  # runs of a seed already counted (same experiment, same seed): not averaged

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def is_centralized(self) -> bool:
        return self.algorithm == CENTRALIZED


# ---------------------------------------------------------------- reading

def load_runs(root: str | os.PathLike) -> list[ScoredRun]:
    """Every result.json under root, at any depth, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"runs directory {root} does not exist or is not a directory")
    paths = sorted(root.rglob(RESULT))
    if not paths:
        raise UserError(f"no result.json found under {root}")
    return [_scored(RunDirectory(p.parent).result, p) for p in paths]


def _scored(result: RunResult, path: Path) -> ScoredRun:
    """The run as the leaderboard counts it; RunResult has checked the types of the keys it holds."""
    for key in (*REQUIRED_STR, "partition_method", "value"):
        if key not in result.record:
            raise UserError(f"{path}: missing required key '{key}'")
    if result.value is None:
        raise UserError(f"{path}: 'value' must be a number, found None")
    return ScoredRun(
        run_dir=path.parent,
        task=result.task,
        dataset=result.dataset,
        model=result.model,
        partition_method=result.partition_method,
        algorithm=result.algorithm,
        metric=result.metric,
        value=as_fraction(path, result),
        greater_is_better=result.greater_is_better,
        settings=run_settings(result),
        examples_seen=_examples_seen(result),
        stats=_optional_stats(path, result),
        metrics=result.metrics,
        wall_time_s=result.wall_time_s,
        seed=result.seed,
        data_path=result.config.get("data") if isinstance(result.config.get("data"), str) else None,
    )


def as_fraction(path: Path, result: RunResult) -> float:
    """The primary metric on one scale: fractions in [0, 1] for every score where greater is better."""
    value = float(result.value)
    scale = result.metric_scale or "fraction"
    if scale == "percent":
        value /= 100.0
    elif scale != "fraction":
        raise UserError(f"{path}: 'metric_scale' must be 'fraction' or 'percent', found {scale!r}")
    if result.greater_is_better and not 0.0 <= value <= 1.0:
        raise UserError(f"{path}: {result.metric} = {result.value!r} is not a fraction in [0, 1]; the "
                        "leaderboard puts every metric on one scale (a run recorded in percent must say "
                        "\"metric_scale\": \"percent\")")
    return value


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (e.g. algorithm_options.mu); lists become tuples."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def run_settings(result: RunResult) -> dict[str, Any]:
    """The resolved config minus what cannot change the result, plus the input files' checksums."""
    config = result.config
    settings = {k: v for k, v in flatten(config).items()
                if k.split(".")[0] not in NOT_SETTINGS and not k.endswith(PATH_SUFFIXES)}
    for key, checksum in (("data", result.data_sha256), ("partition", result.partition_sha256)):
        if checksum is not None:
            settings[f"{key}_sha256"] = checksum
        elif config.get(key) is not None:  # an older record without checksums: the path is all there is
            settings[key] = config[key]
    return settings


def _examples_seen(result: RunResult) -> int | None:
    """The rows trained on; older records, without the count, as steps x batch (a partial batch counted whole)."""
    if is_number(result.local_examples_total):
        return int(result.local_examples_total)
    steps, batch = result.local_steps_total, result.config.get("batch_size")
    return int(steps * batch) if is_number(steps) and is_number(batch) else None


def _optional_stats(path: Path, result: RunResult) -> dict[str, float]:
    stats = {}
    for column, keys in OPTIONAL_STATS.items():
        value = result.block(*keys)
        if value is None:
            continue
        if not is_number(value):
            raise UserError(f"{path}: '{'.'.join(keys)}' must be a number, found {value!r}")
        stats[column] = float(value)
    return stats


# ---------------------------------------------------------------- rows

def _row_key(r: Row) -> tuple:
    return (r.task, r.dataset, r.model, r.metric, not r.is_centralized, r.partition_method or "", r.algorithm,
            sorted(((k, str(v)) for k, v in r.settings.items())))


def leaderboard_rows(runs: list[ScoredRun]) -> list[Row]:
    """One row per experiment (runs with the same fingerprint), centralized first in each block, numbered
    from 1; each federated row carries its centralized baseline, its gap, and whether it is its block's best."""
    groups: dict[tuple, list[ScoredRun]] = {}
    for run in runs:
        groups.setdefault(run.fingerprint, []).append(run)
    rows = sorted((_aggregate(*one_per_seed(g)) for g in groups.values()), key=_row_key)
    rows = [replace(r, number=i) for i, r in enumerate(rows, 1)]
    centralized = [r for r in rows if r.is_centralized]
    rows = [r if r.is_centralized else _with_gap(r, _baseline(r, centralized)) for r in rows]
    return _mark_best(rows)


def one_per_seed(runs: list[ScoredRun]) -> tuple[list[ScoredRun], list[ScoredRun]]:
    """(the runs counted, the repeats): of the runs of one experiment that used the same seed, the first by
    path is counted and the others are repeats. The same seed is the same experiment run again (or, on a
    non-deterministic device, the same draw of the data order and initialisation): averaging it as another
    seed would claim a spread over seeds that was never measured. A run that records no seed counts as its own."""
    counted: dict[Any, ScoredRun] = {}
    repeats = []
    for run in sorted(runs, key=lambda r: r.run_dir):
        key = run.run_dir if run.seed is None else ("seed", run.seed)
        if key in counted:
            repeats.append(run)
        else:
            counted[key] = run
    return list(counted.values()), repeats


def _aggregate(runs: list[ScoredRun], repeats: list[ScoredRun] = ()) -> Row:
    first = runs[0]
    values = [r.value for r in runs]
    times = [r.wall_time_s for r in runs if is_number(r.wall_time_s)]
    seen = [r.examples_seen for r in runs if r.examples_seen is not None]
    stats = {}
    for column in OPTIONAL_STATS:
        found = [r.stats[column] for r in runs if column in r.stats]
        if found:
            stats[column] = statistics.fmean(found)
    return Row(
        task=first.task, dataset=first.dataset, model=first.model, partition_method=first.partition_method,
        algorithm=first.algorithm, metric=first.metric, greater_is_better=first.greater_is_better,
        settings=first.settings,
        value=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else None,
        examples_seen=round(statistics.fmean(seen)) if seen else None,
        stats=stats,
        wall_time_s=statistics.fmean(times) if times else None,
        runs=tuple(runs),
        repeats=tuple(repeats),
    )


def _baseline(row: Row, centralized: list[Row]) -> Row | None:
    """The best centralized row on the same data, model settings, metric and budget, or None."""
    def comparable(c: Row) -> bool:
        if (c.task, c.dataset, c.model, c.metric, c.greater_is_better) != (
                row.task, row.dataset, row.model, row.metric, row.greater_is_better):
            return False
        shared = (set(c.settings) & set(row.settings)) - RECIPE
        if any(c.settings[k] != row.settings[k] for k in shared):
            return False
        if (c.examples_seen is None) != (row.examples_seen is None):
            return False
        return c.examples_seen is None or (
            abs(c.examples_seen - row.examples_seen) <= BUDGET_TOLERANCE * max(c.examples_seen, row.examples_seen))

    candidates = [c for c in centralized if comparable(c)]
    if not candidates:
        return None
    return max(candidates, key=lambda c: c.value if c.greater_is_better else -c.value)


def _with_gap(row: Row, baseline: Row | None) -> Row:
    """gap = row - baseline in the metric's own direction: negative is always worse than centralized."""
    if baseline is None:
        return row
    gap = row.value - baseline.value if row.greater_is_better else baseline.value - row.value
    gap_pct = 100.0 * gap / abs(baseline.value) if baseline.value != 0 else None
    return replace(row, baseline=baseline, gap=gap, gap_pct=gap_pct)


def _mark_best(rows: list[Row]) -> list[Row]:
    """The best federated row of each (task, dataset, model, metric) block, by mean, in the metric's direction."""
    best: dict[tuple, Row] = {}
    for row in rows:
        if row.is_centralized:
            continue
        block = (row.task, row.dataset, row.model, row.metric)
        sign = 1 if row.greater_is_better else -1
        if block not in best or sign * row.value > sign * best[block].value:
            best[block] = row
    winners = {r.number for r in best.values()}
    return [replace(r, is_best=r.number in winners) for r in rows]


def setting_columns(rows: list[Row]) -> list[str]:
    """Settings that take more than one value among the federated rows or among the centralized rows (a
    difference between a federated and a centralized config, e.g. rounds vs steps, is not a setting)."""
    shown = set(IDENTITY) | {"method"}
    columns = set()
    for kind in (True, False):
        same_kind = [r for r in rows if r.is_centralized == kind]
        for key in {k for r in same_kind for k in r.settings} - shown:
            if len({repr(r.settings[key]) for r in same_kind if key in r.settings}) > 1:
                columns.add(key)
    return sorted(columns)


def stat_columns(rows: list[Row]) -> list[str]:
    return [c for c in OPTIONAL_STATS if any(c in r.stats for r in rows)]


def chance_columns(rows: list[Row]) -> list[str]:
    """chance and at_chance, after std, when any row has a chance level (fednlp/results/chance.py)."""
    return list(CHANCE_COLUMNS) if any(r.chance is not None for r in rows) else []


def setting_header(key: str) -> str:
    """A setting's column name: SETTING_HEADERS's, and never the name of another column (a config key named
    like a result column gets `_setting` appended)."""
    name = SETTING_HEADERS.get(key, key)
    return f"{name}_setting" if name in (*COLUMNS, *CHANCE_COLUMNS, *OPTIONAL_STATS) else name


def columns_of(rows: list[Row]) -> list[str]:
    value_std = TAIL_COLUMNS.index("std") + 1
    return [*HEAD_COLUMNS, *map(setting_header, setting_columns(rows)), *TAIL_COLUMNS[:value_std],
            *chance_columns(rows), *TAIL_COLUMNS[value_std:], *stat_columns(rows)]


# ---------------------------------------------------------------- rendering

def setting_text(value: Any) -> str:
    """A setting as a table cell or plot label: floats short, checksums cut to 10 characters."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:10]  # a checksum: enough to tell files apart
    return str(value)


def _cells(row: Row, settings: list[str], stats: list[str], human: bool, chance: bool = False) -> list[str]:
    def num(x: float | None, spec: str, suffix: str = "") -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return ""
        return f"{x:{spec}}{suffix}" if human else repr(round(x, 6))

    base = row.baseline
    return [
        str(row.number), row.task, row.dataset, row.model, row.partition_method or "", row.algorithm,
        *(setting_text(row.settings.get(k)) for k in settings),
        row.metric, num(row.value, ".4f"), num(row.std, ".4f"),
        *((num(row.chance, ".4f"), AT_CHANCE if row.at_chance else "") if chance else ()), str(row.n_runs),
        "" if row.examples_seen is None else str(row.examples_seen),
        "" if base is None else str(base.number), num(None if base is None else base.value, ".4f"),
        num(None if base is None else base.std, ".4f"),
        num(row.gap, "+.4f"), num(row.gap_pct, "+.2f", "%"), "yes" if row.is_best else "",
        num(row.wall_time_s, ".1f"),
        *(num(row.stats.get(k), ".3g" if k.startswith("dp_") else ".4f") for k in stats),
    ]


def render(rows: list[Row], fmt: str) -> str:
    """The table as "markdown", "csv" or "html" (a single self-contained page with learning curves)."""
    if fmt == "markdown":
        return _markdown(rows)
    if fmt == "csv":
        return _csv(rows)
    if fmt == "html":
        from fednlp.results.leaderboard_html import html_page

        return html_page(rows)
    raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")


def table(rows: list[Row], human: bool) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of every row: numbers formatted for people (`human`) or for a program."""
    settings, stats, chance = setting_columns(rows), stat_columns(rows), bool(chance_columns(rows))
    return columns_of(rows), [_cells(r, settings, stats, human, chance) for r in rows]


def _markdown(rows: list[Row]) -> str:
    header, body = table(rows, human=True)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    notes = "".join(dict.fromkeys(metric_note(rows, m, g) for m, g in metric_scales(rows)))
    return ("\n".join(lines) + "\n" + notes + (CHANCE_NOTE if chance_columns(rows) else "")
            + repeats_note(rows))


_FRACTION_NOTE = ("\n{subject} fractions in [0, 1] (mean over the row's runs, which differ only in the seed; std "
                  "over seeds). gap = row - baseline, the centralized row named in `baseline` (same data, model "
                  "settings and examples seen), signed so that negative is worse; `best`: the best federated row of "
                  "its block.\n")
NOTE = _FRACTION_NOTE.format(subject="Values are")
LOWER_NOTE = ("\n{metric}: values in the metric's own units, lower is better (mean over the row's runs, which "
              "differ only in the seed; std over seeds). gap = baseline - row, the centralized row named in "
              "`baseline` (same data, model settings and examples seen), so that negative is worse; `best`: the "
              "lowest federated row of its block.\n")


def metric_scales(rows: list[Row]) -> list[tuple[str, bool]]:
    """(metric, greater_is_better) of the rows, in table order, each once."""
    return list(dict.fromkeys((r.metric, r.greater_is_better) for r in rows))


def metric_note(rows: list[Row], metric: str, greater_is_better: bool) -> str:
    """The note on one metric's values: fractions in [0, 1], or the metric's own units where lower is better
    (perplexity). NOTE alone when every metric of the table is a fraction."""
    if not greater_is_better:
        return LOWER_NOTE.format(metric=metric)
    if all(g for _, g in metric_scales(rows)):
        return NOTE
    fractions = ", ".join(m for m, g in metric_scales(rows) if g)
    return _FRACTION_NOTE.format(subject=f"{fractions}: values are")


def repeats_note(rows: list[Row]) -> str:
    """Which runs repeated a seed already counted (one_per_seed), row by row; empty when none did."""
    repeated = [r for r in rows if r.repeats]
    if not repeated:
        return ""
    every = [run.run_dir for r in rows for run in (*r.runs, *r.repeats)]
    root = Path(os.path.commonpath(every)) if len(every) > 1 else every[0].parent

    def name(run: ScoredRun) -> str:
        return run.run_dir.relative_to(root).as_posix() if run.run_dir != root else run.run_dir.name

    lines = []
    for row in repeated:
        for run in row.repeats:
            kept = next(k for k in row.runs if k.seed == run.seed)
            lines.append(f"row {row.number}: {name(run)} repeats seed {run.seed} of {name(kept)}")
    return ("\nRepeated seeds are counted once (the first run by path; `runs` counts seeds): "
            + "; ".join(lines) + ".\n")


CHANCE_NOTE = (f"\n`chance`: a constant predictor's score on the whole test split (majority class, all-O tags, empty "
               f"answer or summary); `{AT_CHANCE}`: the value is within the row's std of it (one seed: within "
               f"{SINGLE_SEED_TOLERANCE}).\n")


def _csv(rows: list[Row]) -> str:
    header, body = table(rows, human=False)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def marked_rows(root: str | os.PathLike, chance_data: list[str] | None = None) -> list[Row]:
    """The leaderboard rows of every run under root, with their chance marks (fednlp/results/chance.py)."""
    runs = load_runs(root)
    return with_chance(leaderboard_rows(runs), chance_table(root, runs, chance_data))


def write_leaderboard(root: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None,
                      plots: str | os.PathLike | None = None, chance_data: list[str] | None = None) -> str:
    """Render the leaderboard of every run under root; write it atomically to out when given, and the
    study's figures (fednlp.results.plots) as PNG files under plots when given. Returns the text. Rows get
    their chance level from root/chance.json, or from the data files (the runs' own, or `chance_data`).
    Outputs are checked before any work (fednlp/files.py check_output): `out` must not be a directory or an
    HDF5 file, `plots` not an existing file; a refusal is one line and writes nothing."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    check_output(out, {"--chance-data": chance_data}, "report")
    check_output(plots, {"--chance-data": chance_data, "--out": out}, "directory", "--plots")
    rows = marked_rows(root, chance_data)
    text = render(rows, fmt)
    if out is not None:
        atomic_write_text(out, text)
    if plots is not None:
        from fednlp.results.plots import write_study_plots

        write_study_plots(rows, plots)
    return text

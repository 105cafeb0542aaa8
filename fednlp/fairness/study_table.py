"""The fairness study's tables in docs/fairness.md, rebuilt from its records (run_scripts/study_fairness.sh).

A page holds them between markers naming the records folder (relative to the page):

    <!-- fairness study: results/study_fairness/runs -->
    <!-- end fairness study -->

and `fednlp leaderboard --update-docs PAGE` rebuilds them with the result tables (fednlp/results/docs_tables.py).
Each run directory is named REGIME-sSEED and holds result.json with the `fairness`, `prediction_sensitivity` and
`ceat` blocks `fednlp fairness` writes, and fairness_predictions.csv. Four tables:

1. per regime, each metric's mean ± sample std over seeds;
2. Spearman's rank correlation over every run between each pair of bias metrics (intrinsic vs extrinsic): do
   the metrics order the models alike?
3. each question (a regime against another: federated vs centralized, label skew, DP, augmentation, training
   vs the pretrained start), per metric: the difference and the docs' verdict (fednlp/results/compare.py);
4. counterfactual augmentation against the same runs without it, per metric, with Welch's interval.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from fednlp.errors import UserError
from fednlp.results.compare import FINDING, ONE_SEED, WITHIN_SPREAD, Group, compare_groups
from fednlp.results.run_files import RunDirectory

MARKERS = re.compile(r"(<!-- fairness study: (?P<runs>[^>]+?) -->\n)(?P<body>.*?)(<!-- end fairness study -->)", re.S)
CEAT_TESTS = ("weat6", "weat7", "weat8")
#: column -> (what it is, how to read it); the order of the tables' columns.
METRICS = {
    "accuracy": "test accuracy",
    "flip_rate": "share of gendered test sentences whose prediction flips when the gender words are swapped",
    "prob_change": "mean |change| of the predicted class's probability under the swap",
    "eo_gap": "equal-opportunity gap: |TPR(male) - TPR(female)| averaged over the labels",
    "sensitivity": "accumulated prediction sensitivity, mean over the test sentences (word-list PSM)",
    **{f"ceat_{t}": f"CEAT combined effect size, {t.upper()}" for t in CEAT_TESTS},
}
BIAS = [m for m in METRICS if m != "accuracy"]
#: Metrics shown scaled, so their spread is visible at the tables' decimals (column -> factor).
SCALE = {"sensitivity": 1000}


def header(metric: str) -> str:
    return f"{metric} ×{SCALE[metric]}" if metric in SCALE else metric
BASELINE, AUGMENTED = "fedavg-uniform", "fedavg-uniform-augment"
#: The regime every other starts from (the pretrained encoder, an untrained head): a reference row for the
#: intrinsic metric, left out of the correlations (its classifier's decisions are a random head's).
REFERENCE = "pretrained"


@dataclass(frozen=True)
class StudyRun:
    regime: str
    seed: int
    values: dict[str, float]


def equal_opportunity_gap(predictions: Path, groups: tuple[str, str] = ("male", "female")) -> float:
    """|TPR(groups[0]) - TPR(groups[1])| per true label, averaged over the labels both groups have."""
    with open(predictions, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["group"] in groups]
    gaps = []
    for label in sorted({r["label"] for r in rows}):
        rates = []
        for group in groups:
            of_label = [r for r in rows if r["group"] == group and r["label"] == label]
            if not of_label:
                break
            rates.append(sum(r["predicted"] == label for r in of_label) / len(of_label))
        if len(rates) == 2:
            gaps.append(abs(rates[0] - rates[1]))
    if not gaps:
        raise UserError(f"{predictions}: no label has test examples of both groups {groups[0]} and {groups[1]}")
    return statistics.fmean(gaps)


def read_run(run_dir: Path) -> StudyRun:
    match = re.fullmatch(r"(?P<regime>.+)-s(?P<seed>\d+)", run_dir.name)
    if match is None:
        raise UserError(f"{run_dir}: a fairness study run is named REGIME-sSEED")
    result = RunDirectory(run_dir).result
    values = {"accuracy": result.block("value"), "flip_rate": result.block("fairness", "flip_rate"),
              "prob_change": result.block("fairness", "mean_abs_prob_change"),
              "sensitivity": result.block("prediction_sensitivity", "all", "mean"),
              **{f"ceat_{t}": result.block("ceat", "tests", t, "combined_effect_size") for t in CEAT_TESTS}}
    missing = [name for name, value in values.items() if not isinstance(value, (int, float))]
    if missing:
        raise UserError(f"{run_dir}/result.json has no {', '.join(missing)}: run `fednlp fairness` on it "
                        "(the flips, prediction-sensitivity and ceat metrics)")
    values["eo_gap"] = equal_opportunity_gap(run_dir / "fairness_predictions.csv")
    return StudyRun(match["regime"], int(match["seed"]), {m: float(values[m]) for m in METRICS})


def read_runs(runs: Path) -> list[StudyRun]:
    if not runs.is_dir():
        raise UserError(f"fairness study records {runs}: no such folder")
    found = [read_run(d) for d in sorted(runs.iterdir()) if (d / "result.json").is_file()]
    if not found:
        raise UserError(f"fairness study records {runs}: no run directory with a result.json")
    return found


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def regime_table(runs: list[StudyRun]) -> list[str]:
    regimes = sorted({r.regime for r in runs})
    lines = [_row(["regime", "seeds", *map(header, METRICS)]), "|" + "---|" * (len(METRICS) + 2)]
    for regime in regimes:
        of = [r for r in runs if r.regime == regime]
        cells = []
        for metric in METRICS:
            values = [r.values[metric] * SCALE.get(metric, 1) for r in of]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.fmean(values):.3f}{spread}")
        lines.append(_row([regime, ",".join(str(r.seed) for r in sorted(of, key=lambda r: r.seed)), *cells]))
    return lines


def correlation_table(runs: list[StudyRun]) -> list[str]:
    """Spearman's rho (and its p-value) over every trained run for each pair of bias metrics."""
    from scipy.stats import spearmanr

    runs = [r for r in runs if r.regime != REFERENCE]
    lines = [_row(["", *BIAS]), "|" + "---|" * (len(BIAS) + 1)]
    for first in BIAS:
        cells = []
        for second in BIAS:
            if first == second:
                cells.append("1")
                continue
            x, y = [r.values[first] for r in runs], [r.values[second] for r in runs]
            if len(set(x)) < 2 or len(set(y)) < 2:  # a constant metric ranks nothing
                cells.append("-")
                continue
            rho, p = spearmanr(x, y)
            cells.append(f"{rho:+.2f} (p {p:.2g})")
        lines.append(_row([first, *cells]))
    return lines


def _group(runs: list[StudyRun], regime: str, metric: str) -> Group:
    """The seeds of one regime as `fednlp compare` takes a side (the metric as the tables show it)."""
    of = sorted((r for r in runs if r.regime == regime), key=lambda r: r.seed)
    return Group(name=regime, task="fairness", metric=metric, greater_is_better=metric == "accuracy",
                 seeds=tuple(r.seed for r in of), values=tuple(r.values[metric] * SCALE.get(metric, 1) for r in of),
                 paths=())


def augmentation_table(runs: list[StudyRun]) -> list[str]:
    """Each metric of the augmented FedAvg runs against the same runs without augmentation."""
    lines = [_row(["metric", f"{BASELINE}: mean ± std (seeds)", f"{AUGMENTED}: mean ± std (seeds)",
                   "difference [95% interval]", "verdict"]), "|---|---|---|---|---|"]

    def side(g: Group) -> str:
        return f"{g.mean:.4f}" + ("" if g.std is None else f" ± {g.std:.4f}") + f" ({g.n})"

    for metric in METRICS:
        a, b = _group(runs, BASELINE, metric), _group(runs, AUGMENTED, metric)
        if not a.n or not b.n:
            lines.append(_row([header(metric), side(a) if a.n else "not run", side(b) if b.n else "not run", "", ""]))
            continue
        c = compare_groups(a, b)
        interval = "" if c.interval is None else f" [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]"
        lines.append(_row([header(metric), side(a), side(b), f"{c.difference:+.4f}{interval}", c.verdict]))
    return lines


#: The study's questions, each B against A: does the regime change each metric? (A, B)
COMPARISONS = [("centralized", "fedavg-uniform"), ("fedavg-uniform", "fedavg-a0.1"),
               ("fedavg-uniform", "fedavg-uniform-dp"), ("fedavg-uniform", "fedavg-uniform-augment"),
               ("pretrained", "centralized"), ("pretrained", "fedavg-uniform")]
MARKS = {FINDING: "finding", WITHIN_SPREAD: "≈", ONE_SEED: "1 seed"}


def comparisons_table(runs: list[StudyRun]) -> list[str]:
    """One row per question (B - A), one cell per metric: the difference and its verdict's mark."""
    lines = [_row(["B − A", *map(header, METRICS)]), "|" + "---|" * (len(METRICS) + 1)]
    for a_name, b_name in COMPARISONS:
        cells = []
        for metric in METRICS:
            a, b = _group(runs, a_name, metric), _group(runs, b_name, metric)
            if not a.n or not b.n:
                cells.append("not run")
                continue
            c = compare_groups(a, b)
            cells.append(f"{c.difference:+.3f} {MARKS[c.verdict]}")
        lines.append(_row([f"{b_name} − {a_name}", *cells]))
    return lines


def study_tables(runs_dir: Path) -> str:
    runs = read_runs(runs_dir)
    parts = [f"{len(runs)} runs. Each metric's mean ± sample std over seeds:", "", *regime_table(runs), "",
             f"Spearman's rank correlation between the bias metrics over every run but {REFERENCE}'s (p-value in "
             "brackets):", "",
             *correlation_table(runs), "",
             "Does a regime change a metric? B − A for each question, each cell the difference and `fednlp compare`'s "
             "verdict over seeds (finding; ≈: within the spread; 1 seed: no claim):", "", *comparisons_table(runs), "",
             "Counterfactual augmentation (B) against the same FedAvg runs without it (A), by `fednlp compare`'s "
             "rule:", "", *augmentation_table(runs)]
    return "\n".join(parts) + "\n"


def rebuild(page: Path, text: str, changed: list[str]) -> str:
    """`text` (the page's) with every fairness-study block rebuilt; appends the changed blocks' folders."""
    def one(match: re.Match) -> str:
        body = study_tables((page.parent / match["runs"].strip()).resolve())
        if body != match["body"]:
            changed.append(match["runs"].strip())
        return match.group(1) + body + match.group(4)

    return MARKERS.sub(one, text)

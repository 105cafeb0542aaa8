"""The findings table of docs/results.md: each question a study asks, answered from its records by `fednlp compare`.

A study commits its questions beside its records (a YAML list; paths relative to the file):

    - question: "FedOPT (AdamW clients) beats FedAvg (SGD clients) on label-skewed clients, alpha 0.1"
      source: "FedNLP (Lin et al., 2022)"
      a: runs/fedavg-a0.1-s*        # the seeds of one setting each, as `fednlp compare` takes them
      b: runs/fedopt-a0.1-s*
      expect: b            # the side the source found better ("a" or "b")
      stat: clients_worst10_mean   # optional: a leaderboard column of result.json (OPTIONAL_STATS), not the metric
      vary: [model]        # optional: settings a side's seeds may differ in (`fednlp compare --vary`)

and the page holds the table between markers that name the file:

    <!-- findings: results/study_classification/findings.yaml -->
    <!-- end findings -->

`fednlp leaderboard --update-docs PAGE` rebuilds it with the tables (fednlp/results/docs_tables.py), so a verdict
is never typed by hand. The verdict follows the docs' rule (a difference within the seed-to-seed spread is not a
finding): "reproduced" when the comparison is a finding in the expected direction, "not reproduced: the opposite"
when it is a finding the other way, "not reproduced: within the spread" when it is not a finding, "not testable:
one seed" when a side has a single seed, "not run" when a side has no record yet.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from fednlp.errors import UserError
from fednlp.results.compare import FINDING, ONE_SEED, Group, compare_groups, load_group
from fednlp.results.leaderboard import LOWER_IS_BETTER_STATS, OPTIONAL_STATS
from fednlp.results.run_files import RunDirectory

KEYS = {"question", "source", "a", "b", "expect"}
OPTIONAL = {"stat", "vary"}
HEADER = ["question", "source", "A: mean ± std (seeds)", "B: mean ± std (seeds)", "B − A [95% interval]", "verdict"]


def read_questions(path: Path) -> list[dict[str, Any]]:
    """The questions of a findings file, each checked for its keys."""
    if not path.is_file():
        raise UserError(f"findings file {path}: no such file")
    questions = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(questions, list):
        raise UserError(f"findings file {path}: expected a YAML list of questions")
    for i, q in enumerate(questions, 1):
        if not isinstance(q, dict) or not KEYS <= set(q) <= KEYS | OPTIONAL or q["expect"] not in ("a", "b") \
                or q.get("stat", "clients_std") not in OPTIONAL_STATS \
                or not (isinstance(q.get("vary", []), list) and all(isinstance(k, str) for k in q.get("vary", []))):
            raise UserError(f"findings file {path}: question {i} must have the keys {', '.join(sorted(KEYS))} "
                            f"(and optionally stat, one of {', '.join(OPTIONAL_STATS)}, and vary, a list of "
                            "setting names), with expect 'a' or 'b'")
    return questions


def stat_group(group: Group, stat: str | None) -> Group:
    """`group` with each run's value of the result.json statistic `stat` (lower is better for those in
    LOWER_IS_BETTER_STATS, e.g. a spread or a bias) in place of its primary metric; `group` itself without a stat."""
    if stat is None:
        return group
    values = []
    for run_dir in group.paths:
        value = RunDirectory(Path(run_dir)).result.block(*OPTIONAL_STATS[stat])
        if not isinstance(value, (int, float)):
            raise UserError(f"findings: {run_dir} has no {stat} ({'.'.join(OPTIONAL_STATS[stat])} in result.json)")
        values.append(float(value))
    return Group(name=group.name, task=group.task, metric=stat, greater_is_better=stat not in LOWER_IS_BETTER_STATS,
                 seeds=group.seeds, values=tuple(values), paths=group.paths)


def decimals(*means: float) -> int:
    """3 decimals, or enough for 3 significant digits of the smallest non-zero mean under 0.01 (a disparity of
    0.002 would read 0.002 ± 0.000 at 3)."""
    small = [abs(m) for m in means if 0 < abs(m) < 0.01]
    return 3 if not small else 2 - math.floor(math.log10(min(small)))


def verdict(question: dict[str, Any], base: Path) -> list[str]:
    """One table row: the question, both sides, the difference with its interval, the verdict."""
    try:
        vary = tuple(question.get("vary", ()))
        a, b = (stat_group(load_group(str(base / question[side]), vary), question.get("stat")) for side in ("a", "b"))
    except UserError as exc:
        if "holds no result.json" not in str(exc):
            raise
        return [question["question"], question["source"], "", "", "", "not run"]
    c = compare_groups(a, b)
    d = decimals(a.mean, b.mean)

    def side(g: Any) -> str:
        spread = "" if g.std is None else f" ± {g.std:.{d}f}"
        return f"{g.mean:.{d}f}{spread} ({g.n})"

    interval = "" if c.interval is None else f" [{c.interval[0]:+.{d}f}, {c.interval[1]:+.{d}f}]"
    better_b = c.difference > 0 if a.greater_is_better else c.difference < 0
    if c.verdict == ONE_SEED:
        text = "not testable: one seed"
    elif c.verdict != FINDING:
        text = "not reproduced: within the spread"
    elif better_b == (question["expect"] == "b"):
        text = "reproduced"
    else:
        text = "not reproduced: the opposite"
    what = f" ({question['stat']})" if question.get("stat") else ""
    return [question["question"] + what, question["source"], side(a), side(b), f"{c.difference:+.{d}f}{interval}",
            text]


def findings_table(path: Path) -> str:
    """The Markdown table of a findings file."""
    rows = [verdict(q, path.parent) for q in read_questions(path)]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

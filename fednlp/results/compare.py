"""`fednlp compare A B`: is the difference between two groups of runs a finding, by the docs' own rule?

docs/results.md's rule: a difference smaller than the seed-to-seed spread is not a finding. Each group is the
seeds of one setting (a directory holding result.json files at any depth, or a glob pattern of run
directories or result.json files). For the primary metric, on the leaderboard's scale (fractions), the tool
reports each side's mean and spread (sample standard deviation over seeds), the difference B - A, Welch's t
interval for it (unequal variances: the two settings need not be equally stable), and a verdict:

- "one seed: no claim" when either side has a single seed (no spread, no interval);
- "finding" when the interval excludes 0 and the difference exceeds both sides' spreads;
- "not a finding: within the spread" otherwise.
"""

from __future__ import annotations

import glob
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fednlp.errors import UserError
from fednlp.results.leaderboard import as_fraction, run_settings
from fednlp.results.run_files import RESULT, RunDirectory
from fednlp.results.run_result import RunResult

FORMATS = ("markdown", "json")
FINDING, WITHIN_SPREAD, ONE_SEED = "finding", "not a finding: within the spread", "one seed: no claim"


@dataclass(frozen=True)
class Group:
    """One side of a comparison: its runs' primary metric values, one per seed."""

    name: str  # as given on the command line
    task: str | None
    metric: str
    greater_is_better: bool
    seeds: tuple[Any, ...]
    values: tuple[float, ...]
    paths: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None for one seed."""
        return statistics.stdev(self.values) if self.n > 1 else None


@dataclass(frozen=True)
class Comparison:
    a: Group
    b: Group
    confidence: float
    difference: float  # b.mean - a.mean
    interval: tuple[float, float] | None  # Welch's t interval for the difference; None with one seed
    df: float | None  # its degrees of freedom (None when both spreads are 0: the interval is a point)
    verdict: str
    why: str


def result_paths(spec: str) -> list[Path]:
    """The result.json files a group names: a directory (searched at any depth), a result.json, or a glob
    pattern of either."""
    matches = [Path(p) for p in sorted(glob.glob(spec, recursive=True))] if glob.has_magic(spec) else [Path(spec)]
    found: list[Path] = []
    for path in matches:
        if path.is_dir():
            found += sorted(path.rglob(RESULT))
        elif path.name == RESULT and path.is_file():
            found.append(path)
    if not found:
        raise UserError(f"compare: {spec} holds no result.json (expected run directories, a folder of them, "
                        "or a glob pattern)")
    return sorted(set(found))


def load_group(spec: str, vary: tuple[str, ...] = ()) -> Group:
    """The runs `spec` names, checked to be one task and metric with one run per seed; the settings named in
    `vary` may differ between them (a fine-tuning study whose seed s starts from the model of seed s's run:
    the model path changes with the seed)."""
    results: list[tuple[Path, RunResult]] = [(p, RunDirectory(p.parent).result) for p in result_paths(spec)]
    for path, result in results:
        if result.metric is None or result.value is None:
            raise UserError(f"compare: {path} has no primary metric value ('metric' and 'value')")
    kinds = sorted({(r.task or "?", r.metric, r.greater_is_better) for _, r in results}, key=str)
    if len(kinds) > 1:
        raise UserError(f"compare: {spec} mixes tasks or metrics ({', '.join(f'{t}/{m}' for t, m, _ in kinds)}); "
                        "a group is the seeds of one setting")
    _check_one_setting(spec, results, vary)
    seen: dict[Any, Path] = {}
    for path, result in results:
        if result.seed in seen:
            raise UserError(f"compare: {spec} holds two runs with seed {result.seed} ({seen[result.seed].parent} and "
                            f"{path.parent}); a group is the seeds of one setting")
        seen[result.seed] = path
    task, metric, greater = kinds[0]
    return Group(name=spec, task=task, metric=metric, greater_is_better=greater,
                 seeds=tuple(r.seed for _, r in results), values=tuple(as_fraction(p, r) for p, r in results),
                 paths=tuple(str(p.parent) for p, _ in results))


#: What, besides the config, makes runs different settings (the leaderboard's row identity).
IDENTITY_KEYS = ("dataset", "model", "partition_method", "algorithm")


def _check_one_setting(spec: str, results: list[tuple[Path, RunResult]], vary: tuple[str, ...] = ()) -> None:
    """Every run of a group has the first one's settings (config but seed and paths, data checksums, and the
    leaderboard's identity keys), those named in `vary` aside: averaging seeds of different settings would hide
    the difference asked about."""
    def found(result: RunResult) -> dict[str, Any]:
        return {**run_settings(result), **{k: result.record.get(k) for k in IDENTITY_KEYS}}

    def setting(result: RunResult) -> dict[str, Any]:
        return {k: v for k, v in found(result).items() if k not in vary}

    known = set().union(*(found(r) for _, r in results))
    unknown = sorted(set(vary) - known)
    if unknown:  # a misspelt --vary would silently allow nothing
        raise UserError(f"compare: --vary {unknown[0]} is not a setting of the runs in {spec} (expected a key of "
                        f"their config.yaml, or one of {', '.join(IDENTITY_KEYS)})")
    (first_path, first), reference = results[0], setting(results[0][1])
    for path, result in results[1:]:
        other = setting(result)
        differ = sorted(k for k in reference.keys() | other.keys() if reference.get(k) != other.get(k))
        if differ:
            key = differ[0]
            raise UserError(f"compare: {spec} mixes settings: {key} is {reference.get(key)!r} in {first_path.parent} "
                            f"but {other.get(key)!r} in {path.parent}; a group is the seeds of one setting")


def compare_groups(a: Group, b: Group, confidence: float = 0.95) -> Comparison:
    """The difference b - a, its Welch interval and the docs' verdict."""
    if (a.task, a.metric, a.greater_is_better) != (b.task, b.metric, b.greater_is_better):
        raise UserError(f"compare: A is {a.task}/{a.metric} but B is {b.task}/{b.metric}; compare runs of one "
                        "task and metric")
    if not 0 < confidence < 1:
        raise UserError(f"--confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    difference = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return Comparison(a, b, confidence, difference, None, None, ONE_SEED,
                          "a side with one seed has no spread to compare the difference with")
    interval, df = welch_interval(a.values, b.values, confidence)
    excludes_zero = interval[0] > 0 or interval[1] < 0
    beyond_spread = abs(difference) > max(a.std, b.std)
    if excludes_zero and beyond_spread:
        verdict, why = FINDING, "the interval excludes 0 and the difference exceeds both spreads"
    elif not excludes_zero:
        verdict, why = WITHIN_SPREAD, "the interval includes 0"
    else:
        verdict, why = WITHIN_SPREAD, "the difference does not exceed both spreads"
    return Comparison(a, b, confidence, difference, interval, df, verdict, why)


def welch_interval(a: tuple[float, ...], b: tuple[float, ...], confidence: float) -> tuple[tuple[float, float], float | None]:
    """Welch's t interval for mean(b) - mean(a) (Welch-Satterthwaite degrees of freedom)."""
    from scipy import stats

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    difference = statistics.fmean(b) - statistics.fmean(a)
    se = math.sqrt(va + vb)
    if se == 0:  # every seed of both sides agrees: the difference is exact
        return (difference, difference), None
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return (difference - half, difference + half), df


# ---------------------------------------------------------------- rendering

def render_comparison(c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(comparison_dict(c), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return _markdown(c)
    raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")


def comparison_dict(c: Comparison) -> dict[str, Any]:
    def side(g: Group) -> dict[str, Any]:
        return {"group": g.name, "runs": g.n, "seeds": list(g.seeds), "values": list(g.values), "mean": g.mean,
                "std": g.std, "run_dirs": list(g.paths)}

    return {"task": c.a.task, "metric": c.a.metric, "greater_is_better": c.a.greater_is_better, "a": side(c.a),
            "b": side(c.b), "difference": c.difference, "confidence": c.confidence,
            "interval": None if c.interval is None else list(c.interval), "interval_method": "welch_t", "df": c.df,
            "verdict": c.verdict, "why": c.why}


def _markdown(c: Comparison) -> str:
    def num(x: float | None, spec: str = ".4f") -> str:
        return "" if x is None else f"{x:{spec}}"

    lines = [f"{c.a.task} / {c.a.metric} ({'higher' if c.a.greater_is_better else 'lower'} is better)", "",
             "| side | group | runs | seeds | mean | std |", "|---|---|---|---|---|---|"]
    for label, g in (("A", c.a), ("B", c.b)):
        seeds = ", ".join(str(s) for s in g.seeds)
        lines.append(f"| {label} | {g.name.replace('|', '/')} | {g.n} | {seeds} | {num(g.mean)} | {num(g.std)} |")
    lines.append("")
    lines.append(f"difference B - A: {num(c.difference, '+.4f')}")
    if c.interval is not None:
        df = "" if c.df is None else f", df {c.df:.1f}"
        lines.append(f"{100 * c.confidence:g}% interval (Welch's t{df}): [{num(c.interval[0], '+.4f')}, "
                     f"{num(c.interval[1], '+.4f')}]")
    lines.append(f"verdict: {c.verdict} ({c.why})")
    return "\n".join(lines) + "\n"


def compare(a: str, b: str, fmt: str = "markdown", confidence: float = 0.95, vary: tuple[str, ...] = ()) -> str:
    """The report of `fednlp compare A B`."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    return render_comparison(compare_groups(load_group(a, vary), load_group(b, vary), confidence), fmt)

"""The tables and the plot of docs/real-world.md, from the run directories run_scripts/real_world.sh wrote.

    python scripts/real_world_report.py results/real-world/runs --plot docs/real-world/curves.png

Runs are named <task>-<condition>-s<seed>. Per task and condition, over seeds: the final metric (each seed,
mean, spread = max - min), the metric at every period's end (the global test subset, and under --continual
the next period's test examples, future_*), per-client statistics of the final evaluation (clients.csv) for heavy
users (the top decile by training examples, from the partition the run used) and light users (the rest),
and the wall time. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from fednlp.data_partition.partition_file import read_partition

RUN_NAME = re.compile(r"^(?P<task>[a-z]+)-(?P<condition>.+)-s(?P<seed>\d+)$")
ORDER = ["static-uniform", "static-act0.5", "static-act1", "cont-unlim"]  # cont-b<B> after these
LABELS = {"static-uniform": "static, uniform (all data)", "static-act0.5": "static, activity G=0.5",
          "static-act1": "static, activity G=1", "cont-unlim": "continual, unlimited storage"}


def label(condition: str) -> str:
    if condition.startswith("cont-b"):
        return f"continual, storage B={condition[len('cont-b'):]}"
    return LABELS.get(condition, condition)


def load_run(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    clients = list(csv.DictReader((run_dir / "clients.csv").open())) if (run_dir / "clients.csv").exists() else []
    return {"result": result, "records": records, "clients": clients}


def heavy_clients(config: dict) -> tuple[set[int], np.ndarray, int]:
    """Clients whose training-example count is in the top decile (at least the 90th percentile)."""
    stored = read_partition(config["partition"], config["method"])
    sizes = np.array([len(t) for t in stored.train])
    cut = int(math.ceil(np.quantile(sizes, 0.9)))  # sizes are whole numbers: n >= the quantile <=> n >= cut
    return {c for c, n in enumerate(sizes) if n >= cut}, sizes, cut


def client_split(run: dict, metric: str) -> dict[str, dict[str, float]]:
    """Mean and median of the final per-client metric, heavy vs light users (clients with test examples)."""
    config = run["result"]["config"]
    heavy, sizes, cut = heavy_clients(config)
    last = max(int(row["round"]) for row in run["clients"])
    out = {}
    for name, keep in (("heavy", lambda c: c in heavy), ("light", lambda c: c not in heavy)):
        rows = [r for r in run["clients"] if int(r["round"]) == last and keep(int(r["client"]))]
        values = np.array([float(r[metric]) for r in rows])
        examples = np.array([int(r["examples"]) for r in rows])
        out[name] = {"clients": len(rows), "test_examples": int(examples.sum()),
                     "train_examples": int(sum(sizes[int(r["client"])] for r in rows)),
                     "mean": float(values.mean()), "median": float(np.median(values)),
                     "cut": cut, "in_partition": len(heavy) if name == "heavy" else len(sizes) - len(heavy)}
    return out


def fmt(x: float | None, scale: float | None = None) -> str:
    """3 decimals for fractions, whole numbers for perplexities; `scale` (a value of the same quantity, for a
    difference or a spread) picks which."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}" if abs(x if scale is None else scale) < 10 else f"{x:.0f}"


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return fmt(values[0])
    mean = float(np.mean(values))
    return f"{fmt(mean)} ± {fmt((max(values) - min(values)) / 2, mean)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of the per-period curves")
    parser.add_argument("--title", default="20 Newsgroups authors", help="the plot's title (the clients)")
    args = parser.parse_args()
    runs: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for run_dir in sorted(args.runs.iterdir()):
        match = RUN_NAME.match(run_dir.name)
        if match and (run_dir / "result.json").exists():
            runs[match["task"]][match["condition"]][int(match["seed"])] = load_run(run_dir)
    if not runs:
        print(f"no finished runs under {args.runs}", file=sys.stderr)
        return 2
    curves = {}
    for task, conditions in sorted(runs.items()):
        order = [c for c in ORDER if c in conditions] + sorted(c for c in conditions if c not in ORDER)
        any_run = next(iter(next(iter(conditions.values())).values()))
        metric = any_run["result"]["metric"]
        print(f"\n### {task}: {metric} ({'higher' if any_run['result']['greater_is_better'] else 'lower'} is better)\n")
        print(f"Final {metric} on the run's evaluation subset ({any_run['result']['config']['eval_max_examples']} "
              f"test examples drawn by the seed: the same for every condition of one seed), mean ± half the range "
              f"over seeds, each seed, the difference to static uniform of the same seed, the example-weighted "
              f"mean over the clients' own test examples (the same examples in every run) and wall time.\n")
        print(f"| condition | seeds | final {metric} | per seed | minus static uniform, per seed "
              f"| clients' weighted mean, per seed | wall time (s, mean) |")
        print("|---|---|---|---|---|---|---|")
        base = conditions.get("static-uniform", {})
        for c in order:
            seeds = sorted(conditions[c])
            values = [conditions[c][s]["result"]["value"] for s in seeds]
            walls = [conditions[c][s]["result"]["wall_time_s"] for s in seeds]
            deltas = [fmt(conditions[c][s]["result"]["value"] - base[s]["result"]["value"], base[s]["result"]["value"])
                      if s in base else "-"
                      for s in seeds]
            weighted = [fmt(conditions[c][s]["result"].get("clients", {}).get("weighted_mean")) for s in seeds]
            print(f"| {label(c)} | {len(seeds)} | {mean_spread(values)} | {', '.join(fmt(v) for v in values)} "
                  f"| {', '.join(deltas)} | {', '.join(weighted)} | {np.mean(walls):.0f} |")
        # The metric at each evaluation (period ends), mean over seeds; continual runs' future_* beside it.
        rounds = sorted({r["round"] for c in order for s in conditions[c].values() for r in s["records"]
                         if metric in r})
        print(f"\n{metric} at each period's end, mean over seeds (in brackets: under --continual, on the next "
              f"period's test examples, future_{metric}).\n")
        print("| condition | " + " | ".join(f"round {r}" for r in rounds) + " |")
        print("|---|" + "---|" * len(rounds))
        curves[task] = (metric, {}, any_run["result"]["greater_is_better"])
        for c in order:
            cells, line = [], []
            for r in rounds:
                now = [rec[metric] for s in conditions[c].values() for rec in s["records"]
                       if rec["round"] == r and metric in rec]
                future = [rec[f"future_{metric}"] for s in conditions[c].values() for rec in s["records"]
                          if rec["round"] == r and f"future_{metric}" in rec]
                value = float(np.mean(now)) if now else float("nan")
                line.append(value)
                cells.append(fmt(value) + (f" ({fmt(float(np.mean(future)))})" if future else ""))
            curves[task][1][c] = (rounds, line)
            print(f"| {label(c)} | " + " | ".join(cells) + " |")
        # Heavy vs light users.
        first = next(s for c in order for s in conditions[c].values() if s["clients"])
        split = client_split(first, metric)
        print(f"\nPer-client {metric} at the final evaluation (each client's own test examples): heavy users, the "
              f"top decile by training examples ({split['heavy']['in_partition']} clients with at least "
              f"{split['heavy']['cut']} training examples), vs light users (the other {split['light']['in_partition']}); "
              f"only clients with test examples count. Mean over seeds of the per-client mean (± half the seed "
              f"range) and median.\n")
        print("| condition | heavy: clients (train / test examples) | heavy mean | heavy median "
              "| light: clients (train / test examples) | light mean | light median |")
        print("|---|---|---|---|---|---|---|")
        for c in order:
            splits = [client_split(s, metric) for s in conditions[c].values() if s["clients"]]
            if not splits:
                continue
            h, light = splits[0]["heavy"], splits[0]["light"]
            print(f"| {label(c)} | {h['clients']} ({h['train_examples']} / {h['test_examples']}) "
                  f"| {mean_spread([x['heavy']['mean'] for x in splits])} "
                  f"| {fmt(float(np.mean([x['heavy']['median'] for x in splits])))} "
                  f"| {light['clients']} ({light['train_examples']} / {light['test_examples']}) "
                  f"| {mean_spread([x['light']['mean'] for x in splits])} "
                  f"| {fmt(float(np.mean([x['light']['median'] for x in splits])))} |")
    if args.plot:
        plot(curves, args.plot, args.title)
    return 0


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (task, (metric, lines, greater_is_better)) in zip(axes[0], sorted(curves.items())):
        for c, (rounds, values) in lines.items():
            ax.plot(rounds, values, marker="o", linestyle="--" if c.startswith("cont") else "-", label=label(c))
        ax.set_title(f"{title}: {task}")
        ax.set_xlabel("round")
        if not greater_is_better:  # perplexity falls by orders of magnitude from a random start
            ax.set_yscale("log")
        ax.set_ylabel(f"{metric} (mean over seeds)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())

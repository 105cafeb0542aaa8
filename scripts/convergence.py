"""Has a run converged? For each run directory (or record) given, the primary metric's change over the last fifth
of its evaluations, relative to its final value: docs/results.md's rule calls a run converged when it moves less
than 1% over the last fifth of training.

    .venv/bin/python scripts/convergence.py docs/results/study_classification/runs/centralized-*
"""

from __future__ import annotations

import sys
from pathlib import Path

from fednlp.results.run_files import RunDirectory


def last_fifth_change(run_dir: Path) -> tuple[str, int, float, float, float] | None:
    """(metric, evaluations, value at the start of the last fifth, final value, relative change)."""
    directory = RunDirectory(run_dir)
    metric = directory.result.metric
    values = [r[metric] for r in directory.read_metrics() if isinstance(r, dict) and isinstance(r.get(metric), float)]
    if len(values) < 5:
        return None
    start = values[len(values) - 1 - len(values) // 5]  # the evaluation a fifth of them before the last
    return metric, len(values), start, values[-1], (values[-1] - start) / abs(values[-1])


def main(paths: list[str]) -> int:
    for path in paths:
        found = last_fifth_change(Path(path))
        if found is None:
            print(f"{path}: fewer than 5 evaluations")
            continue
        metric, n, start, final, change = found
        verdict = "converged" if abs(change) < 0.01 else "still moving"
        print(f"{path}: {metric} {start:.4f} -> {final:.4f} over the last fifth of {n} evaluations "
              f"({100 * change:+.2f}%): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

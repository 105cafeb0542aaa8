"""How the global model serves each client: the statistics LEAF and FederatedScope report over the
per-client values of one metric.

Percentiles use numpy's default (linear interpolation). "Worst 10%" is the mean over the ceil(10%) clients
with the worst values in the metric's own direction (lowest accuracy, highest perplexity), "best 10%" the
same at the other end; the weighted mean weights each client by its number of test examples.
"""

from __future__ import annotations

import math

import numpy as np


def client_statistics(values: np.ndarray, examples: np.ndarray, greater_is_better: bool = True) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    examples = np.asarray(examples, dtype=np.float64)
    if len(values) == 0:
        return {"n": 0}
    tail = max(1, math.ceil(0.1 * len(values)))
    ordered = np.sort(values) if greater_is_better else np.sort(values)[::-1]  # worst first
    return {
        "n": int(len(values)),
        "mean": float(values.mean()),
        "weighted_mean": float(np.average(values, weights=examples)) if examples.sum() > 0 else float("nan"),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "p10": float(np.percentile(values, 10)),
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "worst10_mean": float(ordered[:tail].mean()),
        "best10_mean": float(ordered[-tail:].mean()),
    }

"""The client-size distribution of a partition: a text summary and a log-log plot.

Natural users have a heavy tail (on 20 Newsgroups' training split 3,919 of 5,754 authors wrote one post
while 121 wrote 2,037 of the 11,314), which min / median / max alone hide: the summary counts clients
per decade of size and says what share of the examples the largest tenth of the clients hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.files import atomic_output


def size_decades(sizes: np.ndarray) -> str:
    """Clients per size range, `1: a  2-9: b  10-99: c ...` (0 and 1 on their own; empty ranges left out)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    largest = int(sizes.max()) if len(sizes) else -1
    ranges = [(0, 0), (1, 1), (2, 9)] + [(10**k, 10 ** (k + 1) - 1) for k in range(1, len(str(max(largest, 1))))]
    parts = []
    for low, high in ranges:
        n = int(((sizes >= low) & (sizes <= high)).sum())
        if n:
            parts.append(f"{low}: {n}" if low == high else f"{low}-{high}: {n}")
    return "  ".join(parts) or "no clients"


def top_decile_share(sizes: np.ndarray) -> float:
    """The share of all examples held by the largest tenth of the clients (at least one client)."""
    sizes = np.sort(np.asarray(sizes, dtype=np.int64))[::-1]
    total = sizes.sum()
    if total == 0:
        return 0.0
    return float(sizes[: max(1, len(sizes) // 10)].sum() / total)


def dropped_line(values: Mapping[str, Any]) -> str | None:
    """What a natural partition's --min-examples dropped, from its group's stored values (None: nothing)."""
    if "dropped_clients" not in values:
        return None
    return (f"dropped {values['dropped_clients']} clients with fewer than {values['min_examples']} train examples "
            f"(--min-examples): {values['dropped_train_examples']} train and {values['dropped_test_examples']} "
            "test examples are in no client")


def plot_client_sizes(named_sizes: Sequence[tuple[str, np.ndarray]], plot_path: str | os.PathLike) -> None:
    """Number of clients of each train size, both axes logarithmic (a power law is a straight line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    for name, sizes in named_sizes:
        values, counts = np.unique(np.asarray(sizes)[np.asarray(sizes) > 0], return_counts=True)
        ax.plot(values, counts, marker="o", markersize=3, linewidth=0.8, label=f"{name} ({len(sizes)} clients)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("client size (train examples)")
    ax.set_ylabel("number of clients")
    ax.set_title("client sizes", fontsize=9)
    ax.legend(fontsize=6)
    save_figure(fig, plot_path)


def save_figure(fig: Any, plot_path: str | os.PathLike) -> None:
    """Written to a temporary file beside the target, then renamed: no half-written PNG is ever left."""
    import matplotlib.pyplot as plt

    plot_path = Path(plot_path)
    try:
        with atomic_output(plot_path, suffix=plot_path.suffix) as tmp:  # matplotlib picks the format by suffix
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)

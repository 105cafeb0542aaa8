"""The ROC curves of an audit as one PNG, FPR on a log scale (the low-FPR region is what matters)."""

from __future__ import annotations

import io

import numpy as np


def roc_png(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> bytes:
    """panels: title -> {curve label: (fpr, tpr)}; one subplot per panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(panels), 4.5))
    FigureCanvasAgg(fig)
    for i, (title, curves) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), i)
        floor = 1.0
        for label, (fpr, tpr) in curves.items():
            positive = fpr > 0  # FPR 0 has no place on a log axis
            ax.plot(fpr[positive], tpr[positive], label=label)
            if positive.any():
                floor = min(floor, float(fpr[positive].min()))
        floor = min(floor, 1e-2)  # a curve with no FPR between 0 and 1 (few non-members) still gets an axis
        grid = np.logspace(np.log10(floor), 0, 100)
        ax.plot(grid, grid, color="grey", linestyle="--", linewidth=0.8, label="chance")
        ax.set_xscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("false positive rate (log)")
        ax.set_ylabel("true positive rate")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()

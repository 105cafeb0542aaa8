"""How well a score separates members from non-members: the numbers membership-inference papers report.

A score is higher for what the attack believes is a member (e.g. minus the loss, Yeom et al. 2018, "Privacy
Risk in Machine Learning"). AUC alone hides the cases that matter; the true-positive rate at a low
false-positive rate (1%, 0.1%) is what Carlini et al. 2022 ("Membership Inference Attacks From First
Principles", LiRA) argue for. The ROC curve comes from scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

#: The false-positive rates at which the true-positive rate is reported, and their key names.
LOW_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The highest TPR among thresholds whose FPR is at most `max_fpr` (0 when none is)."""
    allowed = fpr <= max_fpr + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def attack_metrics(scores: np.ndarray, is_member: np.ndarray) -> dict[str, Any]:
    """AUC, TPR at 1% and 0.1% FPR, and the best balanced accuracy over thresholds.

    `fpr_resolution` is 1 / non-members: a TPR at an FPR below it is read at FPR 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member, dtype=bool)
    n_members, n_non = int(is_member.sum()), int((~is_member).sum())
    if n_members == 0 or n_non == 0:
        raise ValueError(f"attack metrics need members and non-members, got {n_members} and {n_non}")
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return {
        "auc": float(roc_auc_score(is_member, scores)),
        **{name: tpr_at_fpr(fpr, tpr, rate) for name, rate in LOW_FPRS.items()},
        "balanced_accuracy": float(np.max((tpr + 1 - fpr) / 2)),
        "n_members": n_members,
        "n_non_members": n_non,
        "fpr_resolution": 1.0 / n_non,
    }


def roc_points(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(np.asarray(is_member, dtype=bool), np.asarray(scores, dtype=np.float64))
    return fpr, tpr

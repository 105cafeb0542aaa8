"""Group fairness of a classifier's predictions, given a group for every example.

Accuracy per group and the gap between the best and the worst group; equal opportunity (Hardt, Price and
Srebro, "Equality of Opportunity in Supervised Learning", NeurIPS 2016) per label: the true positive rate
P(predicted = label | true = label, group) should not depend on the group, and the difference between the
largest and the smallest rate over the groups is reported. A gap needs two groups to compare: None otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def group_names(groups: np.ndarray) -> list[str]:
    return sorted({str(g) for g in groups})


def per_group_accuracy(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    labels, predicted, groups = np.asarray(labels), np.asarray(predicted), np.asarray(groups)
    return {g: float((predicted[groups == g] == labels[groups == g]).mean()) for g in group_names(groups)}


def gap(values: dict[str, float]) -> float | None:
    """Largest minus smallest value; None with fewer than two values."""
    return float(max(values.values()) - min(values.values())) if len(values) >= 2 else None


def true_positive_rates(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray, label: int) -> dict[str, float]:
    """TPR of `label` in every group holding at least one example of that label."""
    labels, predicted, groups = np.asarray(labels), np.asarray(predicted), np.asarray(groups)
    positives = labels == label
    return {g: float((predicted[positives & (groups == g)] == label).mean())
            for g in group_names(groups) if (positives & (groups == g)).any()}


def equal_opportunity_difference(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray,
                                 label_names: list[str]) -> dict[str, float | None]:
    """Per label name: the TPR gap between groups (None where fewer than two groups hold that label)."""
    return {name: gap(true_positive_rates(labels, predicted, groups, i)) for i, name in enumerate(label_names)}


def group_report(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """The group block of the fairness report."""
    groups = np.asarray(groups)
    accuracy = per_group_accuracy(labels, predicted, groups)
    return {
        "per_group_examples": {g: int((groups == g).sum()) for g in accuracy},
        "per_group_accuracy": accuracy,
        "group_accuracy_gap": gap(accuracy),
        "equal_opportunity_difference": equal_opportunity_difference(labels, predicted, groups, label_names),
    }

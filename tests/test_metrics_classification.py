"""Text classification's metrics: macro-F1 follows scikit-learn's convention, not the label vocabulary."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fednlp.tasks.classification import TextClassification, macro_f1

# Vocabulary of 4 labels; label 3 is neither in the references nor in the predictions.
# Per-class F1: label 0 = 6/7 (one 0 predicted as 1), label 1 = 2/3 (three false positives), label 2 = 2/3.
REFERENCES = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
PREDICTED = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1])


def test_macro_f1_averages_over_labels_present_in_references_or_predictions():
    # (6/7 + 2/3 + 2/3) / 3 = 0.7302; counting the absent label 3 as F1 = 0 would give / 4 = 0.5476.
    assert macro_f1(REFERENCES, PREDICTED) == pytest.approx(46 / 63)
    assert round(macro_f1(REFERENCES, PREDICTED), 4) == 0.7302


def test_a_label_only_predicted_counts_as_zero():
    # Label 3 predicted once but never a reference: present in the predictions, so F1 = 0 is averaged in.
    predicted = PREDICTED.copy()
    predicted[4] = 3  # a true 1 predicted as 3: label 1 now has tp=2, fp=3, fn=1 -> F1 = 4/8
    assert macro_f1(REFERENCES, predicted) == pytest.approx((6 / 7 + 4 / 8 + 2 / 3 + 0) / 4)


def test_the_task_reports_it_beside_accuracy():
    features = SimpleNamespace(arrays={"labels": REFERENCES})
    task = SimpleNamespace(data=SimpleNamespace(label_vocab={str(i): i for i in range(4)}))
    metrics = TextClassification.compute_metrics(task, np.arange(len(REFERENCES)), PREDICTED.tolist(), features)
    assert metrics == {"accuracy": pytest.approx(8 / 11), "macro_f1": pytest.approx(46 / 63)}

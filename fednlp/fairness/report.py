"""`fednlp fairness RUN_DIR --data D`: the counterfactual and group report of a run's saved classifier.

Counterfactual statistics (flip rate, probability change, accuracy on original vs rewritten texts) are over
the affected test examples: those holding at least one protected term. `test_accuracy_*` are over the whole
test split (unaffected texts keep their prediction). Group metrics use the original texts' predictions on
the whole test split, where the data file has a `group` field; examples with an empty group are left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.data.datafile import read_data_file
from fednlp.errors import UserError
from fednlp.fairness.counterfactual import Rewriter, counterfactual_metrics, counterfactual_metrics_per_label
from fednlp.fairness.group_metrics import group_report
from fednlp.fairness.model_outputs import ClassProbabilities, check_labels, class_probabilities, load_run_model
from fednlp.fairness.pairs import load_substitution
from fednlp.results.run_files import RunDirectory

GROUP_FIELD = "group"


PREDICTIONS_FILE = "fairness_predictions.csv"
PREDICTION_COLUMNS = ("example", "label", "group", "affected", "predicted", "predicted_counterfactual",
                      "prob_predicted", "prob_predicted_counterfactual", "counterfactual_text")


def classification_test_split(run_dir: str | os.PathLike, data_path: str | os.PathLike, what: str
                              ) -> tuple[RunDirectory, Any, Any, np.ndarray]:
    """(the run, its checked model directory, the data file, its test examples) for a metric of classifiers
    (`what` names it in errors): the cheap checks come before reading a large data file."""
    directory = RunDirectory(run_dir)
    model_dir = directory.check_model()
    directory.evaluation_config()
    data = read_data_file(data_path)
    if data.task_type != ClassProbabilities.task_type:
        raise UserError(f"data file {data_path} holds {data.task_type} data; {what} evaluates "
                        f"{ClassProbabilities.task_type} models")
    test = np.asarray(data.test_index_list, dtype=np.int64)
    if len(test) == 0:
        raise UserError(f"data file {data_path} has no test examples to evaluate")
    return directory, model_dir, data, test


def fairness_report(run_dir: str | os.PathLike, data_path: str | os.PathLike,
                    pairs_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """Every number of the report; reads the run and the data file, writes nothing."""
    return fairness_evaluation(run_dir, data_path, pairs_file)[0]


def fairness_evaluation(run_dir: str | os.PathLike, data_path: str | os.PathLike,
                        pairs_file: str | os.PathLike | None = None) -> tuple[dict[str, Any], str]:
    """The report and its per-example predictions (CSV text, PREDICTION_COLUMNS: every test example's label,
    group, original and counterfactual prediction, and the probability of the originally predicted class on
    both texts), from which anyone can recompute every number of the report; writes nothing."""
    substitution = load_substitution(pairs_file)
    directory, model_dir, data, test = classification_test_split(run_dir, data_path, "fednlp fairness")
    texts = [data.fields["X"][i] for i in test]
    label_names = sorted(data.label_vocab, key=data.label_vocab.get)
    label_ids = np.array([data.label_vocab[data.fields["Y"][i]] for i in test], dtype=np.int64)

    rewriter = Rewriter(substitution)
    rewritten = [rewriter.rewrite(t) for t in texts]
    affected = np.array([swaps > 0 for _, swaps in rewritten], dtype=bool)
    counterfactual_texts = [text for text, swaps in rewritten if swaps > 0]

    run = load_run_model(directory)
    check_labels(run.model, data.label_vocab, model_dir, data_path)
    label_strings = [label_names[i] for i in label_ids]
    prob_original = class_probabilities(run, texts, label_strings, data.label_vocab)
    prob_counterfactual = class_probabilities(run, counterfactual_texts, [label_strings[i] for i in np.flatnonzero(affected)],
                                              data.label_vocab)

    predicted = prob_original.argmax(axis=1)
    predicted_counterfactual = predicted.copy()
    predicted_counterfactual[affected] = prob_counterfactual.argmax(axis=1)
    report: dict[str, Any] = {
        "data": str(data_path),
        "pairs": substitution.source,
        "n_test": int(len(test)),
        **counterfactual_metrics(label_ids[affected], prob_original[affected], prob_counterfactual),
        "test_accuracy_original": float((predicted == label_ids).mean()),
        "test_accuracy_counterfactual": float((predicted_counterfactual == label_ids).mean()),
        "per_label": counterfactual_metrics_per_label(label_ids[affected], prob_original[affected], prob_counterfactual,
                                                      label_names),
    }
    groups = np.full(len(test), "", dtype=object)
    if GROUP_FIELD in data.fields:
        groups = np.array(["" if data.fields[GROUP_FIELD][i] is None else str(data.fields[GROUP_FIELD][i]) for i in test])
        known = groups != ""
        report.update(group_report(label_ids[known], predicted[known], groups[known], label_names))
    rows = np.arange(len(test))
    prob_predicted = prob_original[rows, predicted]
    prob_predicted_counterfactual = prob_predicted.copy()
    prob_predicted_counterfactual[affected] = prob_counterfactual[np.arange(int(affected.sum())), predicted[affected]]
    table = {"example": test, "label": label_strings, "group": groups, "affected": affected.astype(int),
             "predicted": [label_names[i] for i in predicted],
             "predicted_counterfactual": [label_names[i] for i in predicted_counterfactual],
             "prob_predicted": prob_predicted, "prob_predicted_counterfactual": prob_predicted_counterfactual,
             "counterfactual_text": [text if swaps else "" for text, swaps in rewritten]}
    report["predictions_file"] = PREDICTIONS_FILE
    return report, _csv(table)


def _csv(columns: dict[str, Any]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    writer.writerows(zip(*(columns[name] for name in PREDICTION_COLUMNS)))
    return out.getvalue()


def write_report(run_dir: str | os.PathLike, report: dict[str, Any], out: str | os.PathLike | None = None,
                 predictions: str | None = None, block: str = "fairness",
                 per_example_file: str = PREDICTIONS_FILE) -> Path:
    """The report as JSON (default RUN_DIR/<block>.json) and as result.json's `<block>` block, if the run
    has a result.json, and the per-example rows as RUN_DIR/<per_example_file>. result.json is
    parsed before anything is written, so a bad one leaves no file changed; the run directory's lock is held
    meanwhile, so a run still writing there (a --resume) is not overwritten; each file is written atomically."""
    directory = RunDirectory(run_dir)
    out = Path(out) if out else directory.path / f"{block}.json"
    files = {out: (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()}
    if predictions is not None:
        files[directory.path / per_example_file] = predictions.encode()
    directory.add_block(block, report, files=files, missing_ok=True)
    return out


def format_report(report: dict[str, Any]) -> str:
    """The report as a small plain-text table."""
    lines = [f"counterfactual evaluation ({report['pairs']}): {report['n_affected']} of {report['n_test']} test "
             f"examples hold a protected term"]
    header = f"{'label':24s} {'affected':>8s} {'flip rate':>9s} {'|dp|':>7s} {'acc orig':>8s} {'acc cf':>7s}"
    lines += [header, "-" * len(header), _label_row("(all)", report)]
    lines += [_label_row(name, stats) for name, stats in report["per_label"].items()]
    lines.append(f"test accuracy (all {report['n_test']}): original {report['test_accuracy_original']:.4f}, "
                 f"counterfactual {report['test_accuracy_counterfactual']:.4f}")
    if "per_group_accuracy" in report:
        lines += ["", f"{'group':24s} {'examples':>8s} {'accuracy':>8s}"]
        lines += [f"{g[:24]:24s} {report['per_group_examples'][g]:8d} {acc:8.4f}"
                  for g, acc in report["per_group_accuracy"].items()]
        lines.append(f"accuracy gap (best - worst group): {_number(report['group_accuracy_gap'])}")
        gaps = ", ".join(f"{name} {_number(v)}" for name, v in report["equal_opportunity_difference"].items())
        lines.append(f"equal opportunity difference (TPR gap) per label: {gaps}")
    return "\n".join(lines)


def _label_row(name: str, stats: dict[str, Any]) -> str:
    return (f"{name[:24]:24s} {stats['n_affected']:8d} {_number(stats['flip_rate']):>9s} "
            f"{_number(stats['mean_abs_prob_change']):>7s} {_number(stats['accuracy_original']):>8s} "
            f"{_number(stats['accuracy_counterfactual']):>7s}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"

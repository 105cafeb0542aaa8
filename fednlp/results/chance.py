"""Chance: what a constant predictor scores on a data file's test split, and the leaderboard rows that are no better.

A federated run that predicts one class for every document reaches the majority class's accuracy, not 0; a
reader comparing it with a centralized row should know it learnt nothing. The constant predictor of each head
(`CONSTANT_PREDICTORS`, by task name):

- classification: the test split's majority class for every example (accuracy and macro-F1);
- tagging: "O" for every word (span F1 = 0: no entity is found);
- qa: the empty answer for every question (EM and F1 = 0 where every question has an answer);
- seq2seq: the empty summary (ROUGE = 0).

Each is scored with the head's own metric code (fednlp/tasks/*: `compute_metrics`, or QA's `score`) on the
whole test split, so chance is the number a run's metric would show for that predictor. Computing it needs the
data file; the values are kept in `chance.json` beside the runs (keyed by the data file's sha256 and the task),
so the tables rebuild from committed records on a checkout without the data files.

A row is marked at chance when its value is no more than chance plus its seed spread (std over seeds), or
plus SINGLE_SEED_TOLERANCE for a row of one seed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.errors import UserError
from fednlp.files import atomic_write_text, file_sha256

CHANCE_FILE = "chance.json"
#: The margin for a row of one seed, which has no spread of its own: docs/results.md's single-seed rule
#: ("a single-seed difference smaller than about 0.02 is not a finding"), the seed-to-seed spread measured on
#: its three-seed rows (0.002-0.033, typically 0.01-0.02).
SINGLE_SEED_TOLERANCE = 0.02
AT_CHANCE = "≈chance"


def _metric_task(task_name: str, data: Any) -> Any:
    """The head, holding the data file but no tokenizer or model: enough for its metric code, which reads only
    the data file's fields and label vocabulary."""
    from fednlp.tasks.registry import TASKS

    cls = TASKS[task_name]
    task = cls.__new__(cls)
    task.data = data
    return task


def _features(example_of_row: np.ndarray, **arrays: np.ndarray) -> Any:
    from fednlp.tasks.base import Features

    return Features(arrays=arrays, lengths=np.ones(len(example_of_row), dtype=np.int32),
                    example_of_row=example_of_row)


def majority_class(task: Any, test: np.ndarray) -> dict[str, float]:
    vocab = task.data.label_vocab
    labels = np.array([vocab[y] for y in task.data.fields["Y"]], dtype=np.int64)
    majority = int(np.bincount(labels[test]).argmax())
    rows = np.arange(len(test))
    return task.compute_metrics(rows, [majority] * len(test), _features(test, labels=labels[test]))


def all_outside(task: Any, test: np.ndarray) -> dict[str, float]:
    vocab = task.data.label_vocab
    if "O" not in vocab:
        raise UserError(f"the tagging data file's label vocabulary has no 'O' tag ({sorted(vocab)[:5]}...)")
    gold = task.data.fields["Y"]
    predictions = [[vocab["O"]] * len(gold[e]) for e in test.tolist()]
    return task.compute_metrics(np.arange(len(test)), predictions,
                                _features(test, first_word=np.zeros(len(test), dtype=np.int64)))


def empty_answer(task: Any, test: np.ndarray) -> dict[str, float]:
    from fednlp.tasks.qa import _references, question_of_example

    task.question_of = question_of_example(task.data.fields)  # as ExtractiveQA.__init__ sets them
    task.references = _references(task.data.fields, task.question_of)
    return task.score({int(e): "" for e in test})


def empty_summary(task: Any, test: np.ndarray) -> dict[str, float]:
    return task.compute_metrics(np.arange(len(test)), [""] * len(test), _features(test))


#: Each head's constant predictor, by task name (heads without one get no chance mark).
CONSTANT_PREDICTORS: dict[str, Callable[[Any, np.ndarray], dict[str, float]]] = {
    "classification": majority_class,
    "tagging": all_outside,
    "qa": empty_answer,
    "seq2seq": empty_summary,
}


def chance_metrics(data_path: str | os.PathLike, task_name: str) -> dict[str, float] | None:
    """Every metric of the head's constant predictor on the data file's whole test split (None: no predictor)."""
    from fednlp.data.datafile import read_data_file

    if task_name not in CONSTANT_PREDICTORS:
        return None
    data = read_data_file(data_path, lazy=True)
    test = np.asarray(data.test_index_list, dtype=np.int64)
    metrics = CONSTANT_PREDICTORS[task_name](_metric_task(task_name, data), test)
    return {k: float(v) for k, v in sorted(metrics.items())}


# ---------------------------------------------------------------- the cache beside the runs

def read_chance(root: str | os.PathLike) -> dict[str, dict[str, dict[str, Any]]]:
    """Every chance.json under root (root's own last, so it wins), merged: data sha256 -> task -> {metric:
    value, ...}; {} without any."""
    root = Path(root)
    paths = sorted(p for p in root.rglob(CHANCE_FILE) if p.parent != root) + [root / CHANCE_FILE]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
            raise UserError(f"{path} must map data checksums to {{task: {{metric: value}}}}")
        for checksum, tasks in found.items():
            table.setdefault(checksum, {}).update(tasks)
    return table


def chance_table(root: str | os.PathLike, runs: list[Any],
                 data_files: list[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """The chance values of every (data file, task) among `runs`: from root/chance.json, else computed from a
    data file with the run's recorded checksum (the one its config names, where it still lies, or one of
    `data_files`), then added to root/chance.json so a checkout without the data files has them. A pair with
    neither stays absent (its rows get no mark)."""
    table = read_chance(root)
    candidates: dict[str, str] | None = None  # checksum -> data file, hashed only when needed
    added = False
    for run in runs:
        checksum = run.settings.get("data_sha256")
        if checksum is None or run.task not in CONSTANT_PREDICTORS or run.task in table.get(checksum, {}):
            continue
        if candidates is None:
            candidates = {file_sha256(p): str(p) for p in map(Path, data_files or []) if p.is_file()}
        if checksum not in candidates and run.data_path and Path(run.data_path).is_file():
            candidates.setdefault(file_sha256(run.data_path), run.data_path)
        if checksum not in candidates:
            continue
        table.setdefault(checksum, {})[run.task] = chance_record(candidates[checksum], run.task)
        added = True
    if added:
        atomic_write_text(Path(root) / CHANCE_FILE, json.dumps(table, indent=2, sort_keys=True) + "\n")
    return table


def chance_record(data_path: str, task_name: str) -> dict[str, Any]:
    """chance.json's entry for one (data file, task): the constant predictor's metrics, which predictor, and
    on how many test examples."""
    from fednlp.data.datafile import read_data_file

    n = len(read_data_file(data_path, lazy=True).test_index_list)
    return {**chance_metrics(data_path, task_name), "predictor": CONSTANT_PREDICTORS[task_name].__name__,
            "test_examples": n, "data_file": Path(data_path).name}


def with_chance(rows: list[Any], table: dict[str, dict[str, dict[str, Any]]]) -> list[Any]:
    """Rows with their chance value (the constant predictor's score in the row's metric) and `at_chance`:
    mean <= chance + spread (std over seeds; SINGLE_SEED_TOLERANCE for one seed). Only metrics where greater
    is better have a chance level here."""
    marked = []
    for row in rows:
        checksum = row.settings.get("data_sha256")
        chance = table.get(checksum, {}).get(row.task, {}).get(row.metric) if checksum else None
        if chance is None or not row.greater_is_better:
            marked.append(row)
            continue
        margin = row.std if row.std is not None else SINGLE_SEED_TOLERANCE
        marked.append(replace(row, chance=float(chance), at_chance=row.value <= chance + margin))
    return marked

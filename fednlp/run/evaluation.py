"""Evaluation of the global model on the test set, sharded over the ranks.

Each rank predicts a contiguous block of test examples (all rows of an example stay on one rank), the
predictions are gathered, and the metric is computed once on all of them: the same numbers as one rank.
Batches hold rows of similar length (less padding); the order of the rows never changes a prediction
(tests/test_eval_batching.py).
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from fednlp.run.device import autocast
from fednlp.tasks.base import Features, Task


def test_rows(features: Features, test_examples: np.ndarray) -> np.ndarray:
    return features.rows_of(np.asarray(test_examples))


def shard_examples(test_examples: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    return np.array_split(np.asarray(test_examples), world_size)[rank]


def show_progress(comm, quiet: bool) -> bool:
    """The evaluation bar is drawn by rank 0 only, and never under --quiet or when stderr is not a terminal
    (a log file would fill with carriage returns)."""
    return comm.rank == 0 and not quiet and sys.stderr.isatty()


@torch.no_grad()
def predict_rows(model: torch.nn.Module, task: Task, features: Features, rows: np.ndarray, batch_size: int,
                 device: torch.device, precision: str, progress: bool = False) -> list:
    """Predictions for `rows`, in the order of `rows`; batches of similar length to cut padding.

    `progress`: a bar over this rank's rows (examples/s and time left; QA counts context windows)."""
    model.eval()
    order = np.argsort(features.lengths[rows], kind="stable")
    by_length = rows[order]
    in_length_order: list = []
    one_row_each = len(np.unique(features.example_of_row[rows])) == len(rows)
    with tqdm(total=len(rows), desc="evaluation", unit="ex" if one_row_each else "window", leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(by_length), batch_size):
            chunk = by_length[i : i + batch_size]
            with autocast(device, precision):
                in_length_order += task.predict(model, features.batch(chunk, device), chunk)
            bar.update(len(chunk))
    predictions: list = [None] * len(rows)
    for position, prediction in zip(order.tolist(), in_length_order):
        predictions[position] = prediction
    return predictions


def evaluate(model: torch.nn.Module, task: Task, features: Features, test_examples: np.ndarray, comm,
             batch_size: int, device: torch.device, precision: str, progress: bool = False) -> dict[str, float]:
    shard = shard_examples(test_examples, comm.rank, comm.world_size)
    rows = test_rows(features, shard)
    predictions = predict_rows(model, task, features, rows, batch_size, device, precision, progress)
    gathered = comm.allgather((rows, predictions))
    all_rows = np.concatenate([r for r, _ in gathered])
    all_predictions = [p for _, preds in gathered for p in preds]
    return task.compute_metrics(all_rows, all_predictions, features)


def evaluate_clients(model: torch.nn.Module, task: Task, features: Features, client_tests: dict[int, np.ndarray],
                     comm, batch_size: int, device: torch.device, precision: str, progress: bool = False
                     ) -> dict[int, dict[str, float]]:
    """The global model on each client's own test examples: every rank predicts a block of all of them
    (sharded like `evaluate`), the predictions are gathered, and each client's metrics (and its mean
    per-example loss, where the task has one) are computed from its own rows: the numbers one rank gets."""
    clients = sorted(client_tests)
    examples = np.concatenate([np.asarray(client_tests[c], dtype=np.int64) for c in clients])
    shard = shard_examples(examples, comm.rank, comm.world_size)
    rows = test_rows(features, shard)
    predictions = predict_rows(model, task, features, rows, batch_size, device, precision, progress)
    gathered = comm.allgather((rows, predictions))
    prediction_of = {r: p for part_rows, preds in gathered for r, p in zip(part_rows.tolist(), preds)}
    losses = _example_losses(model, task, features, examples, comm, batch_size, device, precision)
    out, start = {}, 0
    for client in clients:
        mine = np.asarray(client_tests[client], dtype=np.int64)
        client_rows = test_rows(features, mine)
        metrics = task.compute_metrics(client_rows, [prediction_of[r] for r in client_rows.tolist()], features)
        if losses is not None:
            metrics["loss"] = float(np.nanmean(losses[start : start + len(mine)]))
        metrics["examples"] = len(mine)
        out[client] = metrics
        start += len(mine)
    return out


def _example_losses(model, task, features, examples, comm, batch_size, device, precision) -> np.ndarray | None:
    from fednlp.run.example_losses import example_losses  # it builds on this module's batching: imported late

    if type(task).example_losses is Task.example_losses:
        return None
    return example_losses(model, task, features, examples, comm, batch_size, device, precision)


def evaluation_setting(config, test_examples: int, all_test_examples: int, final: bool, generates: bool
                       ) -> dict[str, object]:
    """What produced an evaluation's numbers, as metrics.jsonl and result.json record it beside them: the test
    examples it saw (of how many), whether it was the final one, and for generating heads the beams.

    Intermediate evaluations use --eval-max-examples and --eval-num-beams (when given); the final one uses
    them too unless --final-eval full, which evaluates every test example with --num-beams. The defaults
    change nothing: every evaluation is the one --num-beams and --eval-max-examples always meant."""
    setting: dict[str, object] = {"examples": int(test_examples), "test_examples": int(all_test_examples),
                                  "final": final}
    if generates:
        setting["num_beams"] = eval_num_beams(config, final)
    return setting


def eval_num_beams(config, final: bool) -> int:
    if final and config.final_eval == "full" or config.eval_num_beams is None:
        return config.num_beams
    return config.eval_num_beams


@contextmanager
def generation_beams(task: Task, num_beams: int) -> Iterator[None]:
    """The task sees a config with `num_beams` for the time of one evaluation (heads read their generation
    settings from their config); the run's own config is left as it was."""
    saved = task.config
    if getattr(saved, "num_beams", num_beams) != num_beams:
        task.config = dataclasses.replace(saved, num_beams=num_beams)
    try:
        yield
    finally:
        task.config = saved

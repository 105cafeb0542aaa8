"""Evaluation of the global model on the test set, sharded over the ranks.

Each rank predicts a contiguous block of test examples (all rows of an example stay on one rank), the
predictions are gathered, and the metric is computed once on all of them: the same numbers as one rank.
"""

from __future__ import annotations

import numpy as np
import torch

from fednlp.federation.device import autocast
from fednlp.tasks.base import Features, Task


def test_rows(features: Features, test_examples: np.ndarray) -> np.ndarray:
    return features.rows_of(np.asarray(test_examples))


def shard_examples(test_examples: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    return np.array_split(np.asarray(test_examples), world_size)[rank]


@torch.no_grad()
def predict_rows(model: torch.nn.Module, task: Task, features: Features, rows: np.ndarray, batch_size: int,
                 device: torch.device, precision: str) -> list:
    """Predictions for `rows`, in the order of `rows`; batches of similar length to cut padding."""
    model.eval()
    by_length = rows[np.argsort(features.lengths[rows], kind="stable")]
    predictions: dict[int, object] = {}
    for i in range(0, len(by_length), batch_size):
        chunk = by_length[i : i + batch_size]
        with autocast(device, precision):
            out = task.predict(model, features.batch(chunk, device), chunk)
        predictions.update(zip(chunk.tolist(), out))
    return [predictions[r] for r in rows.tolist()]


def evaluate(model: torch.nn.Module, task: Task, features: Features, test_examples: np.ndarray, comm,
             batch_size: int, device: torch.device, precision: str) -> dict[str, float]:
    shard = shard_examples(test_examples, comm.rank, comm.world_size)
    rows = test_rows(features, shard)
    predictions = predict_rows(model, task, features, rows, batch_size, device, precision)
    gathered = comm.allgather((rows, predictions))
    all_rows = np.concatenate([r for r, _ in gathered])
    all_predictions = [p for _, preds in gathered for p in preds]
    return task.compute_metrics(all_rows, all_predictions, features)


def evaluate_clients(model: torch.nn.Module, task: Task, features: Features, client_tests: dict[int, np.ndarray],
                     comm, batch_size: int, device: torch.device, precision: str) -> dict[int, dict[str, float]]:
    """The global model on each client's own test examples: every rank predicts a block of all of them
    (sharded like `evaluate`), the predictions are gathered, and each client's metrics (and its mean
    per-example loss, where the task has one) are computed from its own rows: the numbers one rank gets."""
    clients = sorted(client_tests)
    examples = np.concatenate([np.asarray(client_tests[c], dtype=np.int64) for c in clients])
    shard = shard_examples(examples, comm.rank, comm.world_size)
    rows = test_rows(features, shard)
    predictions = predict_rows(model, task, features, rows, batch_size, device, precision)
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
    from fednlp.audit.example_losses import example_losses

    if type(task).example_losses is Task.example_losses:
        return None
    return example_losses(model, task, features, examples, comm, batch_size, device, precision)

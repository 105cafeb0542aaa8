"""Per-example losses of a model on data-file examples, sharded over the ranks like evaluation.

Each rank scores a contiguous block of the examples (all rows of an example on one rank) with the runtime's
length-bucketed batching (evaluation.predict_rows), the task reduces rows to examples (the mean of a tagged
sentence's windows, a question's answer window), and the ranks' losses are gathered: every rank gets the
same array, in the order of the examples asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fednlp.errors import UserError
from fednlp.run.evaluation import predict_rows, shard_examples
from fednlp.tasks.base import Features, Task


class _RowLosses:
    """The task seen by predict_rows: its `predict` is the task's per-row loss."""

    def __init__(self, task: Task):
        self.task = task

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[float]:
        return self.task.example_losses(model, batch).float().cpu().tolist()


def local_example_losses(model: torch.nn.Module, task: Task, features: Features, examples: np.ndarray,
                         batch_size: int, device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Loss of each of `examples` (data-file indices), on this process alone; NaN for an example that has
    no model input (an empty tagged sentence)."""
    examples = np.asarray(examples, dtype=np.int64)
    out = np.full(len(examples), np.nan, dtype=np.float64)
    has_rows = (np.searchsorted(features.example_of_row, examples, side="right")
                > np.searchsorted(features.example_of_row, examples, side="left"))
    if not has_rows.any():
        return out
    rows = features.rows_of(examples[has_rows])
    try:
        losses = predict_rows(model, _RowLosses(task), features, rows, batch_size, device, precision)
    except NotImplementedError as exc:
        raise UserError(f"{exc}: it cannot be audited") from None
    out[has_rows] = task.reduce_row_losses(np.asarray(losses, dtype=np.float64), features, rows)
    return out


def example_losses(model: torch.nn.Module, task: Task, features: Features, examples: np.ndarray, comm: Any,
                   batch_size: int, device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Loss of each of `examples`, computed sharded over the ranks of `comm` and gathered on every rank."""
    shard = shard_examples(np.asarray(examples, dtype=np.int64), comm.rank, comm.world_size)
    local = local_example_losses(model, task, features, shard, batch_size, device, precision)
    return np.concatenate([np.asarray(part, dtype=np.float64) for part in comm.allgather(local)])

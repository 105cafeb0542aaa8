"""Local training: the same loop for a client's local steps and for the centralized baseline.

One model and one optimizer live for the whole run; a client gets fresh optimizer state, its own
seeded batch order and dropout seed, so its update does not depend on which rank trains it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fednlp.config import RunConfig
from fednlp.run.device import autocast
from fednlp.tasks.base import Features, Task

if TYPE_CHECKING:
    from fednlp.algorithms.interface import Algorithm


def batch_plan(n_rows: int, batch_size: int, rng: np.random.Generator, *, steps: int | None = None,
               epochs: float | None = None) -> list[np.ndarray]:
    """Positions (into a client's rows) of each local batch: reshuffled every epoch.

    `steps` runs exactly that many batches, cycling epochs; `epochs` runs ceil(epochs * batches per epoch)
    batches (a fractional epoch stops part-way). The last batch of an epoch may be smaller.
    """
    per_epoch = math.ceil(n_rows / batch_size)
    total = steps if steps is not None else max(1, math.ceil((1.0 if epochs is None else epochs) * per_epoch))
    batches: list[np.ndarray] = []
    while len(batches) < total:
        order = rng.permutation(n_rows)
        batches.extend(order[i : i + batch_size] for i in range(0, n_rows, batch_size))
    return batches[:total]


@dataclass
class PhaseTimer:
    """Seconds spent per phase (local training, data loading, weight copies, aggregation, evaluation)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - start
        return now


class LocalTrainer:
    def __init__(self, model: torch.nn.Module, task: Task, features: Features, config: RunConfig,
                 device: torch.device, timer: PhaseTimer, algorithm: Algorithm | None = None):
        """`algorithm` None: plain local training (the centralized baseline), no hooks."""
        self.model = model
        self.task = task
        self.features = features
        self.config = config
        self.device = device
        self.timer = timer
        self.algorithm = algorithm
        self.params = [p for p in model.parameters() if p.requires_grad]
        custom = None
        if algorithm is not None:
            algorithm.attach_model(model)  # e.g. DP-SGD's per-example gradient hooks (fednlp/privacy/)
            custom = algorithm.make_client_optimizer(self.params)
        self.optimizer = custom if custom is not None else self._make_optimizer()
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
        self.steps_done = 0
        self.examples_done = 0  # rows trained on, summed over batches: a budget in examples, exact
        self._loss_first: torch.Tensor | None = None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(self.params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        return torch.optim.AdamW(self.params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def reset_optimizer(self) -> None:
        """Fresh local optimizer state for the next client (FedAvg clients keep no state across rounds)."""
        self.optimizer.state.clear()

    def train(self, rows: np.ndarray, batches: list[np.ndarray], global_params: list[torch.Tensor] | None = None) -> int:
        """Run one optimizer step per batch of positions into `rows`; returns the number of steps.

        The batches' losses are kept on the device (no sync per step): `losses()` reads them once."""
        self.model.train()
        self._loss_first = self._loss_last = None
        self._loss_sum = torch.zeros((), device=self.device)
        algorithm = self.algorithm
        per_example = algorithm is not None and algorithm.per_example_loss
        for positions in batches:
            if len(positions) == 0:  # only an algorithm's client_batches plans one (DP-SGD's Poisson batches)
                if algorithm is not None:
                    algorithm.step_without_examples(self.optimizer)
                continue
            start = time.perf_counter()
            batch = self.features.batch(rows[positions], self.device)
            start = self.timer.add("data_loading", start)
            with autocast(self.device, self.config.precision):
                if per_example:  # DP-SGD (either clipping mode): each row's own loss, backpropagated by the algorithm
                    example_losses = algorithm.example_losses(self.task, self.model, batch)
                    loss = example_losses.mean()
                else:
                    loss = self.task.loss(self.model, batch)
            detached = loss.detach().float()
            self._loss_sum += detached
            if self._loss_first is None:
                self._loss_first = detached
            self._loss_last = detached
            if per_example:
                algorithm.backward(example_losses)
            elif self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if algorithm is not None and global_params is not None:
                algorithm.adjust_gradients(self.params, global_params)
            if self.config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.timer.add("local_training", start)
        self.steps_done += len(batches)
        self.examples_done += sum(len(b) for b in batches)
        self._steps = len(batches)
        return len(batches)

    def totals(self, comm: Any) -> dict[str, int]:
        """The optimizer steps and examples trained on by every rank (result.json's local_*_total)."""
        steps, examples = zip(*comm.allgather((self.steps_done, self.examples_done)))
        return {"local_steps_total": int(sum(steps)), "local_examples_total": int(sum(examples))}

    def losses(self) -> tuple[float, float, float]:
        """(first batch, mean over the batches, last batch) losses of the last `train` call."""
        if self._loss_first is None:
            return math.nan, math.nan, math.nan
        values = torch.stack([self._loss_first, self._loss_sum / self._steps, self._loss_last]).tolist()
        return values[0], values[1], values[2]

    @torch.no_grad()
    def mean_loss(self, rows: np.ndarray, batch_size: int) -> float:
        """Mean of the batch losses over `rows` at the model's current weights, in eval mode (no dropout)."""
        self.model.eval()
        total, count = torch.zeros((), device=self.device), 0
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            with autocast(self.device, self.config.precision):
                total += self.task.loss(self.model, self.features.batch(chunk, self.device)).float() * len(chunk)
            count += len(chunk)
        return float(total) / max(count, 1)

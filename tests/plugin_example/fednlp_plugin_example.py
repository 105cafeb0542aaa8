"""FedAvg with server-side update clipping: a fednlp algorithm in a package of its own."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fednlp.algorithms.base import Algorithm
from fednlp.config import TrainConfig
from fednlp.errors import UserError


@dataclass(frozen=True)
class ClipOptions:
    clip_norm: float = 1.0


class FedAvgClip(Algorithm):
    """FedAvg whose aggregated update is clipped to an L2 norm (--algorithm-options clip_norm=1.0)."""

    Options = ClipOptions

    def __init__(self, config: TrainConfig):
        super().__init__(config)  # reads --server-lr and parses --algorithm-options into self.options
        if self.options.clip_norm <= 0:
            raise UserError(f"--algorithm-options clip_norm must be positive, got {self.options.clip_norm}")

    def server_step(self, global_flat: torch.Tensor, mean_update: torch.Tensor, round_idx: int) -> None:
        norm = float(mean_update.norm())
        if norm > self.options.clip_norm:
            mean_update.mul_(self.options.clip_norm / norm)  # the runtime's scratch buffer: ours to change
        super().server_step(global_flat, mean_update, round_idx)  # FedAvg: global += server_lr * update

"""FedAvgM: FedAvg with server momentum (Hsu et al., "Measuring the Effects of Non-Identical Data
Distribution for Federated Visual Classification", 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fednlp.algorithms.interface import Algorithm, algorithm_option
from fednlp.algorithms.registry import register_algorithm
from fednlp.config import TrainConfig


@dataclass(frozen=True)
class FedAvgMOptions:
    server_momentum: float = algorithm_option("fedavgm: server momentum beta (default 0.9)", default=0.9)


@register_algorithm("fedavgm")
class FedAvgM(Algorithm):
    """FedAvg with server momentum: v = beta v + mean update; w += server_lr v (--server-momentum, default 0.9).

    The paper's rule (v <- beta v + dw, w <- w - v, with dw = w - mean of the local models) in our sign
    convention, with v = 0 before the first round; momentum 0 is FedAvg. It equals torch's SGD with
    momentum (dampening 0) on the pseudo-gradient -mean update.
    """

    Options = FedAvgMOptions

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.velocity: torch.Tensor | None = None

    def server_step(self, global_flat: torch.Tensor, mean_update: torch.Tensor, ctx: Any) -> None:
        if self.velocity is None:
            self.velocity = torch.zeros_like(global_flat)
        self.velocity = self.velocity.to(global_flat.device)  # a no-op unless loaded from a checkpoint on the CPU
        self.velocity.mul_(self.options.server_momentum).add_(mean_update)
        global_flat.add_(self.velocity, alpha=self.server_lr)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.velocity is None else {"velocity": self.velocity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = state["velocity"].clone() if "velocity" in state else None

"""The algorithm interface: a client side (hooks into local training) and a server side (mean update ->
next global model), both testable without MPI. The runtime calls nothing else.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fednlp.config import TrainConfig


class Algorithm:
    """FedAvg's behaviour by default; subclasses override the one hook their rule changes."""

    name: ClassVar[str]

    def __init__(self, config: TrainConfig):
        self.config = config

    # -- client side -----------------------------------------------------------------------------
    def adjust_gradients(self, params: list[torch.Tensor], global_params: list[torch.Tensor]) -> None:
        """Called after each local backward pass, before clipping and the optimizer step."""

    def client_weight(self, n_examples: int) -> float:
        """Aggregation weight of a client's update (FedAvg: its number of training examples)."""
        return float(n_examples)

    # -- server side -----------------------------------------------------------------------------
    def server_step(self, global_flat: torch.Tensor, mean_update: torch.Tensor, round_idx: int) -> None:
        """Turn the weighted mean client update (local - global) into the next global model, in place."""
        global_flat.add_(mean_update, alpha=self.config.server_lr)

    def state_dict(self) -> dict[str, Any]:
        """Server state carried across rounds (checkpointed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

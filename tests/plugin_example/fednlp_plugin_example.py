"""Clipped client updates plus Gaussian server noise: a fednlp algorithm in a package of its own."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fednlp.algorithms.interface import Algorithm, algorithm_option


@dataclass(frozen=True)
class ClipNoiseOptions:
    clip_norm: float = algorithm_option("fedavg_clip: clip each client's update to this L2 norm", default=1.0)
    noise_std: float = algorithm_option("fedavg_clip: std of the Gaussian noise added to the aggregate", default=0.0)


class FedAvgClip(Algorithm):
    """FedAvg whose client updates are clipped to an L2 norm, with Gaussian noise on the aggregate."""

    Options = ClipNoiseOptions
    slots = ("clipped",)  # a per-round sum, carried in the round's one Allreduce

    def process_client_update(self, update, ctx) -> None:
        norm = update.norm()  # exact over every trainable weight
        if norm > self.options.clip_norm:
            update.scale_(self.options.clip_norm / norm)
            update.add("clipped", 1)

    def server_step(self, global_flat: torch.Tensor, aggregate: torch.Tensor, ctx) -> None:
        # Drawn on the CPU from the round's generator: the same noise on every rank, no broadcast.
        noise = torch.randn(aggregate.shape, generator=ctx.generator) * self.options.noise_std
        aggregate.add_(noise.to(aggregate.device))
        self.clipped_last_round = ctx.sums["clipped"]
        super().server_step(global_flat, aggregate, ctx)  # FedAvg: global += server_lr * aggregate

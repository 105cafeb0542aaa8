"""The round's one buffer and its one Allreduce: [weighted client updates | the runtime's sums | the
algorithm's slots]. Everything the ranks must agree on after a round travels in it, so a round costs one
collective whatever the algorithm adds (its `slots`, e.g. q-FedAvg's h, DP's unclipped count).

The sums are added on the host per client (a device write per add would sync) and copied into the buffer
once per round, just before the Allreduce.
"""

from __future__ import annotations

from typing import Any

import torch

from fednlp.errors import RunDiverged

# The runtime's own sums, after the update and before the algorithm's slots: a stop vote (a rank that got
# SIGINT/SIGTERM), the weighted training loss and its weight, the sampler's weight of the clients that came,
# and the clients left out for a non-finite loss or update.
STOP, LOSS, LOSS_WEIGHT, PLANNED_WEIGHT, NONFINITE = range(5)
RUNTIME_SLOTS = 5


class RoundBuffer:
    def __init__(self, numel: int, slots: tuple[str, ...], device: torch.device):
        self.numel = numel
        self.slot_index = {name: i for i, name in enumerate(slots)}
        self.buffer = torch.zeros(numel + RUNTIME_SLOTS + len(self.slot_index), dtype=torch.float32, device=device)
        self.updates = self.buffer[:numel]  # sum of weight * (local - global) over this rank's clients
        self.sums = torch.zeros(RUNTIME_SLOTS, dtype=torch.float64)  # the runtime's, on the host
        self.slot_values = torch.zeros(len(self.slot_index), dtype=torch.float64)  # the algorithm's, on the host

    def zero_(self) -> None:
        self.buffer.zero_()
        self.sums.zero_()
        self.slot_values.zero_()

    def allreduce(self, comm: Any) -> list[float]:
        """Sum the buffer over the ranks, in place; returns the runtime's sums (indexed by STOP, LOSS, ...)."""
        self.buffer[self.numel : self.numel + RUNTIME_SLOTS].copy_(self.sums)
        self.buffer[self.numel + RUNTIME_SLOTS :].copy_(self.slot_values)
        if comm.world_size > 1:
            if self.buffer.device.type == "cpu":
                comm.allreduce_sum_(self.buffer.numpy())
            else:
                host = self.buffer.cpu().numpy()
                comm.allreduce_sum_(host)
                self.buffer.copy_(torch.from_numpy(host))
        return self.buffer[self.numel : self.numel + RUNTIME_SLOTS].double().tolist()

    def slot_sums(self) -> dict[str, float]:
        """The algorithm's slots summed over every client of every rank (after `allreduce`)."""
        return dict(zip(self.slot_index, self.buffer[self.numel + RUNTIME_SLOTS :].double().tolist()))


def skipped_clients(totals: list[float], cohort_size: int, round_idx: int, on_nonfinite: str) -> int:
    """The round's clients left out for a non-finite loss or update (totals: `RoundBuffer.allreduce`'s sums).
    Under --on-nonfinite skip-client a round that left out every client of its cohort trained nothing: the run
    has diverged (exit 3), as under stop, rather than finishing with exit 0 and a model nobody trained."""
    skipped = int(round(totals[NONFINITE]))
    if on_nonfinite != "stop" and skipped and skipped >= cohort_size:
        raise RunDiverged(f"round {round_idx + 1}: every one of its {cohort_size} clients had a non-finite loss or "
                          "update (NaN or infinity), so --on-nonfinite skip-client left nothing to aggregate; the "
                          "run stopped and keeps its last finite checkpoint (expected e.g. a smaller --lr)")
    return skipped

"""q-FedAvg (Li, Sanjabi, Beirami, Smith, "Fair Resource Allocation in Federated Learning", ICLR 2020,
Algorithm 2): the q-FFL objective sum_k p_k F_k^{q+1} / (q+1), which weighs clients with a high loss more
as q grows (q = 0 is FedAvg's objective)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fednlp.algorithms.interface import Algorithm, algorithm_option
from fednlp.algorithms.registry import register_algorithm
from fednlp.config import TrainConfig
from fednlp.errors import RunDiverged


@dataclass(frozen=True)
class QFedAvgOptions:
    q: float = algorithm_option("qfedavg: fairness parameter q >= 0 (0 = FedAvg with uniform weights; the paper "
                                "tunes it in 0.001..15)")


@register_algorithm("qfedavg")
class QFedAvg(Algorithm):
    """q-FFL's q-FedAvg (--q): client k's step scaled by F_k^q, normalised by sum_k h_k (Lipschitz L = 1/lr).

    With F_k the client's mean loss over its training data at the global weights w, Delta w_k = L (w - w_k)
    its update in gradient units (w_k its local model, L = 1 / --lr, the paper's estimate), the paper's rule is

        Delta_k = F_k^q Delta w_k,    h_k = q F_k^(q-1) ||Delta w_k||^2 + L F_k^q,
        w <- w - sum_k Delta_k / sum_k h_k.

    Here each client enters the aggregate with weight L F_k^q (so the aggregate is -sum_k Delta_k, whatever
    the sampler's weights: the paper's cohort is not size-weighted) and h_k travels as a slot of the round's
    one Allreduce; the server step is w += server_lr * aggregate / sum_k h_k (server_lr 1 = the paper).
    With q = 0 every h_k = L and the step is the plain mean of the client updates.
    """

    Options = QFedAvgOptions
    slots = ("h",)
    needs_global_loss = True
    normalises_itself = True  # sum_k h_k counts the kept clients only: no renormalisation by sampler weights
    # Its step divides by sum_k h_k, built from each client's unclipped update norm and loss, unnoised: the
    # released weights give that sum back, so no --dp mechanism covers it (Algorithm.dp_compatible).
    dp_compatible = False

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.lipschitz = 1.0 / config.lr

    def process_client_update(self, update, ctx) -> None:
        q, lipschitz = self.options.q, self.lipschitz
        loss = max(float(update.loss_global), 1e-12)  # F_k > 0 for the losses of these heads; guard 0 ** (q - 1)
        scaled_norm_sq = (lipschitz * update.norm()) ** 2
        update.weight = lipschitz * _power(loss, q)
        update.add("h", q * _power(loss, q - 1) * scaled_norm_sq + lipschitz * _power(loss, q))

    def server_step(self, global_flat: torch.Tensor, aggregate: torch.Tensor, ctx) -> None:
        h = ctx.sums["h"]
        if not (math.isfinite(h) and h > 0):  # the same sum on every rank, so every rank stops here
            raise RunDiverged(f"round {ctx.round_idx + 1}: q-FedAvg's step normaliser sum_k h_k is {h} (F_k^q with "
                              f"--q {self.options.q} over- or underflows a double for these client losses F_k); the "
                              "last finite checkpoint is kept; expected a smaller --q (the paper tunes it in 0.001..15)")
        global_flat.add_(aggregate, alpha=self.server_lr / h)


def _power(base: float, exponent: float) -> float:
    """base ** exponent, inf where a double overflows (Python's float power raises OverflowError instead)."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf

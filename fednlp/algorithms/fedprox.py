"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fednlp.algorithms.interface import Algorithm, algorithm_option
from fednlp.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class FedProxOptions:
    mu: float = algorithm_option("fedprox: weight of the proximal term mu/2 ||w - w_global||^2 (Li et al. tune it "
                                 "in 0.001..1; required)")


@register_algorithm("fedprox")
class FedProx(Algorithm):
    """FedAvg whose clients minimise loss + mu/2 ||w - w_global||^2 (--mu); the server side is FedAvg's.

    The proximal term enters as its gradient, mu (w - w_global), added to every local step's gradient
    in place, against views of the round's global weights: no copy of the model per step or per client.
    A parameter with no gradient this step is left alone: it has not moved (an optimizer skips it), so its
    term is zero. mu = 0 is FedAvg exactly.
    """

    keeps_untouched_rows = True  # mu (w - w_global) is exactly 0 where w never moved (sparse embedding path)

    Options = FedProxOptions

    @torch.no_grad()
    def adjust_gradients(self, params: list[torch.Tensor], global_params: list[torch.Tensor]) -> None:
        mu = self.options.mu
        if mu == 0:
            return
        pairs = [(p, g) for p, g in zip(params, global_params, strict=True) if p.grad is not None]
        grads = [p.grad for p, _ in pairs]
        # grad += mu * w - mu * w_global: two fused passes, no temporary the size of the model.
        torch._foreach_add_(grads, [p for p, _ in pairs], alpha=mu)
        torch._foreach_add_(grads, [g for _, g in pairs], alpha=-mu)

"""The client optimizers (--optimizer sgd | adamw) and --max-grad-norm on stacked tensors: row g of every tensor
is client g of a group (fednlp/federation/parallel_clients.py), and one step moves every client at once.

Each rule is torch's own single-tensor rule (torch.optim.SGD without momentum, torch.optim.AdamW with its
default betas and eps, torch.nn.utils.clip_grad_norm_), written elementwise in the same order, so a client
trained in a group ends where torch's optimizer would take it alone (the tests compare with 1e-5). A client
that has taken all its steps sits in a group that still steps: `active` says who moves, and the others' rows
are put back after the step, exactly.
"""

from __future__ import annotations

import torch

#: torch.optim.AdamW's defaults (the local trainer builds AdamW with them: fednlp/run/local_training.py).
BETAS, EPS = (0.9, 0.999), 1e-8
#: clip_grad_norm_'s guard against a zero norm.
CLIP_EPS = 1e-6


class StackedOptimizer:
    """SGD or AdamW over a list of stacked tensors [G, ...], with fresh state for a new group (`reset`)."""

    def __init__(self, kind: str, lr: float, weight_decay: float):
        if kind not in ("sgd", "adamw"):
            raise ValueError(f"no stacked rule for optimizer {kind!r}")
        self.kind, self.lr, self.weight_decay = kind, lr, weight_decay
        self.exp_avg: list[torch.Tensor] = []
        self.exp_avg_sq: list[torch.Tensor] = []
        self.steps = 0

    def reset(self, params: list[torch.Tensor]) -> None:
        self.steps = 0
        if self.kind == "adamw":
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], active: torch.Tensor) -> None:
        """One step of every active client (active: [G] bool); `grads` may be overwritten."""
        idle = (~active).nonzero().flatten()
        kept = [[t[idle].clone() for t in group] for group in self._tensors(params)] if len(idle) else None
        self.steps += 1  # every active client of a group is at the same step: they all started together
        if self.kind == "sgd":
            self._sgd(params, grads)
        else:
            self._adamw(params, grads)
        if kept is not None:
            for group, saved in zip(self._tensors(params), kept):
                for tensor, rows in zip(group, saved):
                    tensor[idle] = rows

    def _tensors(self, params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        return [params, self.exp_avg, self.exp_avg_sq] if self.kind == "adamw" else [params]

    def _sgd(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        for param, grad in zip(params, grads):
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            param.add_(grad, alpha=-self.lr)

    def _adamw(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        (beta1, beta2), lr, step = BETAS, self.lr, self.steps
        for param, grad, exp_avg, exp_avg_sq in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            if self.weight_decay != 0:
                param.mul_(1 - lr * self.weight_decay)  # decoupled (AdamW)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1**step)
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(EPS)
            param.addcdiv_(exp_avg, denom, value=-step_size)


def clip_stacked_(grads: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ for each client (row) of stacked gradients: the norm over all its gradients."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # [tensors, G]
    total = torch.linalg.vector_norm(norms, dim=0)
    coef = torch.clamp(max_norm / (total + CLIP_EPS), max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

"""A protected status model (PSM) trained by fednlp, for prediction sensitivity (Krishna et al., ACL 2022).

The PSM predicts the protected attribute (the data file's `group` field) from a text's word embeddings, the same
features the task classifier's sensitivity is taken at: a multinomial logistic model on the mean word embedding
of the text's non-special tokens, g(x) = softmax(B mean_t e_t + c), fitted by L-BFGS on the training examples
that have a group (zero start, so the fit is deterministic; a small L2 penalty keeps separable data finite).
Its relevance of feature (t, k) is v_tk = sum_a |d g_a / d e_tk|: the dimensions that move the predicted group
count, and special tokens, which the mean leaves out, get none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

L2 = 1e-3  # penalty on B, per example


@dataclass(frozen=True)
class TrainedPSM:
    weight: torch.Tensor  # B [groups, dim]
    bias: torch.Tensor  # c [groups]
    groups: tuple[str, ...]
    train_accuracy: float
    n_train: int

    def probabilities(self, embeddings: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """g(x) [groups] of one text: embeddings [tokens, dim], token_mask [tokens] (1: a real word piece)."""
        mean = (embeddings * token_mask[:, None]).sum(dim=0) / token_mask.sum().clamp(min=1)
        return torch.softmax(mean @ self.weight.T + self.bias, dim=-1)

    def relevance(self, embeddings: torch.Tensor, token_mask: torch.Tensor) -> np.ndarray:
        """v [tokens, dim] = sum_a |d g_a / d e_tk| at this text."""
        embeddings = embeddings.detach().double().clone().requires_grad_(True)
        probabilities = self.probabilities(embeddings, token_mask.double())
        total = torch.zeros_like(embeddings)
        for a in range(len(self.groups)):
            (gradient,) = torch.autograd.grad(probabilities[a], embeddings, retain_graph=True)
            total += gradient.abs()
        return total.detach().numpy()


def mean_embeddings(embeddings: list[torch.Tensor], token_masks: list[torch.Tensor]) -> torch.Tensor:
    """[texts, dim]: each text's mean embedding over its real tokens."""
    return torch.stack([(e * m[:, None]).sum(dim=0) / m.sum().clamp(min=1) for e, m in zip(embeddings, token_masks)])


def train_psm(features: torch.Tensor, labels: list[str]) -> TrainedPSM:
    """Fit g on mean embeddings [n, dim] and their groups (at least two distinct)."""
    groups = tuple(sorted(set(labels)))
    targets = torch.tensor([groups.index(label) for label in labels])
    x = features.detach().double()
    weight = torch.zeros(len(groups), x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(groups), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ weight.T + bias, targets) + L2 * (weight**2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        accuracy = float(((x @ weight.T + bias).argmax(dim=1) == targets).double().mean())
    return TrainedPSM(weight.detach(), bias.detach(), groups, accuracy, len(labels))

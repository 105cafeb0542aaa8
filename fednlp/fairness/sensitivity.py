"""Accumulated prediction sensitivity of a text classifier (Krishna, Gupta, Verma, Dhamala, Pruksachatkun, Chang,
"Measuring Fairness of Text Classifiers via Prediction Sensitivity", ACL 2022).

How much one prediction of the task classifier (TC) moves when the input features that encode membership in a
protected group move. For an input x with features x_1..x_n (here: the word embeddings of its tokens, every
dimension of every token), class probabilities f(x) in R^C and Jacobian J = df/dx (C x n):

    P(x) = w^T |J| v,

with |J| the element-wise absolute Jacobian, w in R^C the weights of the classes (uniform, 1/C) and v in R^n
the protected status model's (PSM) relevance of each feature to the protected attribute, normalised to sum to
1 over the input's features, so P is the class-averaged |d probability / d feature| over the protected
features and does not grow with the number of them. An input whose PSM marks no feature has P = 0.

The PSM here is the word list (`wordlist`): relevance 1 on every dimension of the tokens that belong to a
protected word of the pair list (built-in gender pairs, or --pairs), 0 elsewhere. The dataset value is the
mean of P over the test examples with its standard deviation, over all examples and over those holding a
protected word.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

ProbabilitiesOf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accumulated_sensitivity(abs_jacobian: np.ndarray, relevance: np.ndarray,
                            class_weights: np.ndarray | None = None) -> float:
    """P = w^T |J| v for one input: abs_jacobian [C, n] = |df_c/dx_i|, relevance [n] >= 0 (normalised here to
    sum to 1; all zero gives 0), class_weights [C] (default uniform 1/C)."""
    abs_jacobian = np.asarray(abs_jacobian, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64).reshape(-1)
    classes = abs_jacobian.shape[0]
    weights = np.full(classes, 1.0 / classes) if class_weights is None else np.asarray(class_weights, np.float64)
    total = relevance.sum()
    if total == 0:
        return 0.0
    return float(weights @ abs_jacobian.reshape(classes, -1) @ (relevance / total))


def abs_embedding_jacobian(probabilities_of: ProbabilitiesOf, embeddings: torch.Tensor,
                           attention_mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """|df_c/dx| for one input ([C, tokens, dim]) and its class probabilities [C]: `probabilities_of(embeddings
    [1, tokens, dim], mask)` is the classifier from its word embeddings to its probabilities [1, C]."""
    embeddings = embeddings.detach().clone().requires_grad_(True)
    probabilities = probabilities_of(embeddings, attention_mask)[0]
    rows = []
    for c in range(probabilities.shape[0]):
        (gradient,) = torch.autograd.grad(probabilities[c], embeddings, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(embeddings[0]) if gradient is None else gradient[0].abs())
    return torch.stack(rows).detach().double().cpu().numpy(), probabilities.detach().double().cpu().numpy()


def token_relevance(offsets: list[tuple[int, int]], protected_spans: list[tuple[int, int]]) -> np.ndarray:
    """The word-list PSM on one tokenized text: 1 for a token whose characters overlap a protected word's span,
    0 for the others and for special tokens (empty offsets)."""
    relevance = np.zeros(len(offsets), dtype=np.float64)
    for i, (start, end) in enumerate(offsets):
        if end > start and any(start < span_end and span_start < end for span_start, span_end in protected_spans):
            relevance[i] = 1.0
    return relevance


def summary(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean and standard deviation (ddof 1; None below two values) of per-example sensitivities."""
    values = np.asarray(values, dtype=np.float64)
    return {"n": int(len(values)), "mean": float(values.mean()) if len(values) else None,
            "std": float(values.std(ddof=1)) if len(values) > 1 else None}

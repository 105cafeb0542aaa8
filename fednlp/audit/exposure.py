"""Canary exposure (Carlini et al. 2019, "The Secret Sharer", USENIX Security): how much more likely the model
finds a canary's true secret than the other candidates.

Every candidate secret is put into the canary's template and scored by the model's log-perplexity of it, the
summed loss of the sequence as in the paper (text classification: the cross-entropy of the canary's label;
seq2seq: the summed token loss of the target; a language model: of the text). A mean token loss would rank
candidates of different token lengths (a `--secret FILE` of phrases) differently. The rank of the true
secret among the |R| candidates gives exposure = log2 |R| - log2 rank: log2 |R| when the secret is the
model's first choice, and in expectation about log2(e) = 1.44 bits for a model that never saw it (ranks
uniform). Ties share the mean of their ranks.

Exact by enumeration when |R| <= ENUMERATION_LIMIT; above it only when asked, by the paper's extrapolation
(section 4.3: fit a skew-normal distribution to the losses of a random sample of candidates, and read the
secret's rank fraction from its CDF: exposure = -log2 CDF(loss of the secret)).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fednlp.audit.secrets import SecretSpace
from fednlp.errors import UserError
from fednlp.run.random_streams import AuditStream, run_rng

ENUMERATION_LIMIT = 10**6


def check_enumerable(space: SecretSpace, extrapolate: int | None) -> None:
    if space.size > ENUMERATION_LIMIT and extrapolate is None:
        raise UserError(f"the canaries' secret space ({space.source}) has {space.size:,} candidates, over the "
                        f"{ENUMERATION_LIMIT:,} that exposure enumerates; pass --extrapolate N to estimate it from a "
                        "skew-normal fit to N sampled candidates (Carlini et al. 2019, section 4.3)")
    if extrapolate is not None and extrapolate < 100:
        raise UserError(f"--extrapolate {extrapolate}: expected at least 100 sampled candidates to fit a distribution")


def rank_of(candidate_losses: np.ndarray, secret_index: int) -> float:
    """1-based rank of the secret among the candidates by loss (lowest first); ties share their mean rank."""
    losses = np.asarray(candidate_losses, dtype=np.float64)
    own = losses[secret_index]
    lower = int(np.sum(losses < own))
    tied_others = int(np.sum(losses == own)) - 1
    return 1.0 + lower + tied_others / 2.0


def exposure_of_rank(rank: float, size: int) -> float:
    return float(np.log2(size) - np.log2(rank))


def exact_exposures(candidate_losses: np.ndarray, secret_indices: list[int]) -> list[dict[str, float]]:
    size = len(candidate_losses)
    out = []
    for index in secret_indices:
        rank = rank_of(candidate_losses, index)
        out.append({"rank": rank, "exposure": exposure_of_rank(rank, size)})
    return out


def extrapolated_exposures(sample_losses: np.ndarray, secret_losses: np.ndarray, size: int) -> list[dict[str, float]]:
    """The paper's estimate: a skew-normal fitted to sampled candidates' losses; exposure = -log2 CDF(secret)."""
    from scipy.stats import skewnorm

    shape, location, scale = skewnorm.fit(np.asarray(sample_losses, dtype=np.float64))
    out = []
    for loss in np.asarray(secret_losses, dtype=np.float64):
        fraction = max(float(skewnorm.cdf(loss, shape, location, scale)), 1.0 / size)  # rank >= 1
        out.append({"rank": fraction * size, "exposure": float(-np.log2(fraction))})
    return out


def canary_exposures(space: SecretSpace, canaries: list[dict[str, Any]],
                     score: Callable[[list[str]], np.ndarray], seed: int, extrapolate: int | None) -> dict[str, Any]:
    """Exposure of each canary. `score(secrets)` is the model's loss of the template filled with each secret
    (the same template and label for every canary, so the candidates are scored once for all)."""
    secret_indices = [int(c["secret_index"]) for c in canaries]
    if space.size <= ENUMERATION_LIMIT and extrapolate is None:
        losses = score(space.candidates(np.arange(space.size)))
        per_canary = exact_exposures(losses, secret_indices)
        method = {"method": "enumeration", "candidates_scored": space.size}
    else:
        rng = run_rng(seed, AuditStream.EXTRAPOLATION)
        sample = rng.choice(space.size, size=min(extrapolate, space.size), replace=False) if space.size <= 10**7 \
            else rng.integers(space.size, size=extrapolate)
        losses = score(space.candidates(sample) + space.candidates(np.asarray(secret_indices)))
        per_canary = extrapolated_exposures(losses[: len(sample)], losses[len(sample):], space.size)
        method = {"method": "skew-normal extrapolation", "candidates_scored": int(len(sample))}
    return {**method, "log2_candidates": float(np.log2(space.size)), "per_canary": per_canary}


def by_repeats(canaries: list[dict[str, Any]], values: list[float], trained: list[bool]) -> dict[str, Any]:
    """Mean and max of a per-canary value per repeat count, over the canaries whose clients trained."""
    out: dict[str, Any] = {}
    for repeats in sorted({int(c["repeats"]) for c in canaries}):
        picked = [v for c, v, t in zip(canaries, values, trained) if int(c["repeats"]) == repeats and t]
        out[str(repeats)] = {"n": len(picked), "mean": float(np.mean(picked)) if picked else None,
                             "max": float(np.max(picked)) if picked else None}
    return out

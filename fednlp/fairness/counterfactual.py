"""Counterfactual texts (protected terms swapped for their counterparts) and how predictions move under the swap.

The rewriting is whole-word and case-preserving (he -> she, He -> She, HE -> SHE); "theme" or "she's" keep
their letters except where a whole term stands ("he's" -> "she's": the apostrophe ends the word). The
statistics follow counterfactual fairness evaluations of text classifiers (Garg et al., "Counterfactual
Fairness in Text Classification through Robustness", AIES 2019): how often the predicted class flips and how
far the probability of the originally predicted class moves.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from fednlp.fairness.pairs import Substitution
from fednlp.fairness.pronouns import Context

# The two words after a term, each only when whitespace alone separates it (punctuation ends the context).
_NEXT_WORDS = re.compile(r"\s*([^\W_][\w'-]*)?(?:\s+([^\W_][\w'-]*))?")
# The word before a term, when whitespace alone separates them (None after punctuation: a sentence start).
_PREVIOUS_WORD = re.compile(r"([^\W_][\w'-]*)\s+$")


class Rewriter:
    """Rewrites texts with one substitution; the pattern is compiled once for every text."""

    def __init__(self, substitution: Substitution):
        self.substitution = substitution
        terms = sorted(substitution.terms, key=lambda t: (-len(t), t))  # longest first: "himself" before "him"
        self.pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\b", re.IGNORECASE)

    def rewrite(self, text: str) -> tuple[str, int]:
        """The counterfactual text and the number of terms swapped (0: the text has no protected term)."""
        swapped = 0

        def swap(match: re.Match) -> str:
            nonlocal swapped
            swapped += 1
            other = self.substitution.counterpart(match.group(0).lower(), context_of(text, match.start(), match.end()))
            return match_case(match.group(0), other)

        return self.pattern.sub(swap, text), swapped


def context_of(text: str, start: int, end: int) -> Context:
    """The words around text[start:end], lower case (fednlp/fairness/pronouns.py reads them)."""
    before = _PREVIOUS_WORD.search(text[max(0, start - 64) : start])
    following, after = _NEXT_WORDS.match(text, end).groups()
    if following is None:
        after = None
    return Context(before.group(1).lower() if before else None, following.lower() if following else None,
                   after.lower() if after else None)


def match_case(original: str, replacement: str) -> str:
    """`replacement` in the case pattern of `original`: UPPER, Capitalised or lower."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def counterfactual_metrics(labels: np.ndarray, prob_original: np.ndarray, prob_counterfactual: np.ndarray) -> dict[str, Any]:
    """Flip statistics over the affected examples: true label ids [n], class probabilities [n, classes] on the
    original and the rewritten texts. None where there is no example to average over."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return {"n_affected": 0, "flip_rate": None, "mean_abs_prob_change": None, "accuracy_original": None,
                "accuracy_counterfactual": None}
    predicted = prob_original.argmax(axis=1)
    predicted_counterfactual = prob_counterfactual.argmax(axis=1)
    rows = np.arange(n)
    change = np.abs(prob_counterfactual[rows, predicted] - prob_original[rows, predicted])
    return {
        "n_affected": int(n),
        "flip_rate": float((predicted != predicted_counterfactual).mean()),
        "mean_abs_prob_change": float(change.mean()),
        "accuracy_original": float((predicted == labels).mean()),
        "accuracy_counterfactual": float((predicted_counterfactual == labels).mean()),
    }


def counterfactual_metrics_per_label(labels: np.ndarray, prob_original: np.ndarray, prob_counterfactual: np.ndarray,
                                     label_names: list[str]) -> dict[str, dict[str, Any]]:
    """counterfactual_metrics of the affected examples of each true label that has any."""
    labels = np.asarray(labels)
    return {name: counterfactual_metrics(labels[labels == i], prob_original[labels == i], prob_counterfactual[labels == i])
            for i, name in enumerate(label_names) if (labels == i).any()}

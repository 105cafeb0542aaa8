"""CEAT, the Contextualized Embedding Association Test (Guo & Caliskan, "Detecting Emergent Intersectional
Biases: Contextualized Word Embeddings Contain a Distribution of Human-like Biases", AIES 2021), built on
WEAT (Caliskan, Bryson & Narayanan, "Semantics derived automatically from language corpora contain human-like
biases", Science 2017).

The word sets are WEAT 6, 7 and 8 of Caliskan et al. (2017), as CEAT uses them (its tests C6-C8): target sets
X, Y and attribute sets A, B.

- WEAT 6: male vs female names (X, Y) with career vs family (A, B);
- WEAT 7: math vs arts (X, Y) with male vs female terms (A, B);
- WEAT 8: science vs arts (X, Y) with male vs female terms (A, B).

A word contributes a contextual embedding (its hidden state in one sentence); CEAT draws one of each word's
embeddings at random, computes the WEAT effect size of that draw, repeats N times, and combines the N effect
sizes with a random-effects model: inverse-variance weights with the DerSimonian-Laird between-sample variance
(DerSimonian & Laird, "Meta-analysis in clinical trials", 1986), the combined effect size (CES) and its
two-sided p-value under the normal distribution (the paper's; the authors' released code reports the one-sided
upper tail). The in-sample variance V of one effect size is, by default, what the authors' released code
computes: the sample variance (ddof 1) of the associations s(w, A, B) over X u Y, the square of the effect size's
denominator (VARIANCES["authors"]), so published CES values are comparable. VARIANCES["hedges-olkin"] is the
sampling variance of a standardized mean difference (Hedges & Olkin, "Statistical Methods for Meta-Analysis",
1985), V = (n_X + n_Y) / (n_X n_Y) + ES^2 / (2 (n_X + n_Y)), the textbook weight of a meta-analysis. The two
weight the draws differently; with the authors' (small, ~1e-3) variances tau^2 usually dominates, so the CES is
close to the plain mean of the effect sizes.

wefe (PyPI) implements WEAT on static embeddings only, pins numpy<=1.26.4 and scipy<1.13 (fednlp runs numpy 2)
and has no CEAT; so the few formulas are here, each tested against a hand computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class WeatTest:
    name: str
    description: str
    x: tuple[str, ...]  # target set X
    y: tuple[str, ...]  # target set Y
    a: tuple[str, ...]  # attribute set A
    b: tuple[str, ...]  # attribute set B
    set_names: tuple[str, str, str, str]

    def sets(self) -> dict[str, tuple[str, ...]]:
        return dict(zip(self.set_names, (self.x, self.y, self.a, self.b)))


_MALE_TERMS_7 = ("male", "man", "boy", "brother", "he", "him", "his", "son")
_FEMALE_TERMS_7 = ("female", "woman", "girl", "sister", "she", "her", "hers", "daughter")

#: Caliskan et al. (2017), Science 356(6334), supplementary WEAT 6-8.
WEAT_TESTS: dict[str, WeatTest] = {t.name: t for t in (
    WeatTest("weat6", "male vs female names, career vs family",
             ("John", "Paul", "Mike", "Kevin", "Steve", "Greg", "Jeff", "Bill"),
             ("Amy", "Joan", "Lisa", "Sarah", "Diana", "Kate", "Ann", "Donna"),
             ("executive", "management", "professional", "corporation", "salary", "office", "business", "career"),
             ("home", "parents", "children", "family", "cousins", "marriage", "wedding", "relatives"),
             ("male names", "female names", "career", "family")),
    WeatTest("weat7", "math vs arts, male vs female terms",
             ("math", "algebra", "geometry", "calculus", "equations", "computation", "numbers", "addition"),
             ("poetry", "art", "dance", "literature", "novel", "symphony", "drama", "sculpture"),
             _MALE_TERMS_7, _FEMALE_TERMS_7, ("math", "arts", "male terms", "female terms")),
    WeatTest("weat8", "science vs arts, male vs female terms",
             ("science", "technology", "physics", "chemistry", "Einstein", "NASA", "experiment", "astronomy"),
             ("poetry", "art", "Shakespeare", "dance", "literature", "novel", "symphony", "drama"),
             ("brother", "father", "uncle", "grandfather", "son", "he", "his", "him"),
             ("sister", "mother", "aunt", "grandmother", "daughter", "she", "hers", "her"),
             ("science", "arts", "male terms", "female terms")),
)}


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def associations(words: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b) for every row w of `words` ([n, d] arrays)."""
    w = _unit(words)
    return (w @ _unit(a).T).mean(axis=1) - (w @ _unit(b).T).mean(axis=1)


def weat_effect_size(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """(mean_x s(x,A,B) - mean_y s(y,A,B)) / std_{w in X u Y} s(w,A,B), the sample std (ddof 1) as Caliskan
    et al. compute it. NaN when every target word has the same association (std 0)."""
    sx, sy = associations(x, a, b), associations(y, a, b)
    spread = np.concatenate([sx, sy]).std(ddof=1)
    return float((sx.mean() - sy.mean()) / spread) if spread > 0 else float("nan")


def effect_size_variance(effect_size: float, n_x: int, n_y: int) -> float:
    """In-sample variance of a standardized mean difference (Hedges & Olkin 1985)."""
    return (n_x + n_y) / (n_x * n_y) + effect_size**2 / (2 * (n_x + n_y))


def association_variance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The sample variance (ddof 1) of s(w, A, B) over X u Y: CEAT's in-sample variance in its authors' code."""
    return float(np.concatenate([associations(x, a, b), associations(y, a, b)]).var(ddof=1))


#: The in-sample variance of one draw's effect size, from the draw's (ES, X, Y, A, B).
VARIANCES = {
    "authors": lambda es, x, y, a, b: association_variance(x, y, a, b),
    "hedges-olkin": lambda es, x, y, a, b: effect_size_variance(es, len(x), len(y)),
}


@dataclass(frozen=True)
class RandomEffects:
    ces: float  # combined effect size
    se: float  # its standard error, sqrt(1 / sum of weights)
    z: float
    p_value: float  # two-sided, normal
    tau2: float  # DerSimonian-Laird between-sample variance
    q: float  # Cochran's Q


def random_effects(effect_sizes: np.ndarray, variances: np.ndarray) -> RandomEffects:
    """CEAT's combination of N effect sizes ES_i with in-sample variances V_i: W_i = 1/V_i,
    Q = sum W ES^2 - (sum W ES)^2 / sum W, tau^2 = max(0, (Q - (N-1)) / (sum W - sum W^2 / sum W)),
    v_i = 1 / (V_i + tau^2), CES = sum v ES / sum v, SE = sqrt(1 / sum v), p = 2 (1 - Phi(|CES| / SE))."""
    es = np.asarray(effect_sizes, dtype=np.float64)
    within = np.asarray(variances, dtype=np.float64)
    w = 1.0 / within
    q = float((w * es**2).sum() - (w * es).sum() ** 2 / w.sum())
    scale = w.sum() - (w**2).sum() / w.sum()
    tau2 = max(0.0, (q - (len(es) - 1)) / scale) if scale > 0 else 0.0
    v = 1.0 / (within + tau2)
    ces = float((v * es).sum() / v.sum())
    se = float(np.sqrt(1.0 / v.sum()))
    z = ces / se
    return RandomEffects(ces=ces, se=se, z=float(z), p_value=float(2 * norm.sf(abs(z))), tau2=float(tau2), q=q)


def sample_effect_sizes(embeddings: dict[str, np.ndarray], test: WeatTest, n_samples: int,
                        rng: np.random.Generator, variance: str = "authors") -> tuple[np.ndarray, np.ndarray]:
    """N draws of one contextual embedding per word (embeddings: word -> [contexts, d], the words of the test
    found in the corpus), each draw's effect size and in-sample variance (VARIANCES[variance])."""
    sets = [[w for w in words if w in embeddings] for words in (test.x, test.y, test.a, test.b)]
    in_sample = VARIANCES[variance]
    effect_sizes, variances = np.empty(n_samples), np.empty(n_samples)
    for i in range(n_samples):
        x, y, a, b = (np.stack([embeddings[w][rng.integers(len(embeddings[w]))] for w in words]) for words in sets)
        effect_sizes[i] = weat_effect_size(x, y, a, b)
        variances[i] = in_sample(effect_sizes[i], x, y, a, b)
    return effect_sizes, variances

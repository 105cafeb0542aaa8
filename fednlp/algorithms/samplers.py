"""Client samplers: which clients train in a round, and the weight of each one's update.

The two belong together: the weights must undo the sampling's preferences so that the aggregate
sum_{i in S} w_i u_i estimates the population's size-weighted mean update U = sum_i n_i u_i / N
(N = sum_i n_i), the FedAvg objective's. Sampling by size and also weighting by size counts size twice.
Built-ins register here; packages add theirs through the `fednlp.samplers` entry-point group.

Every `sample` is a pure function of (seed, round): every rank computes the same cohort with no message.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np

from fednlp.registry import Registry
from fednlp.errors import UserError
from fednlp.run.random_streams import Stream, round_rng


class Sampler:
    """`sample` picks k distinct clients (sorted ids); `aggregation_weights` gives each its final coefficient:
    the runtime's aggregate is sum_i w_i (local_i - global), with no further normalisation."""

    name: ClassVar[str]
    # How differential privacy accounts for this sampler's cohorts (fednlp/privacy/accounting.py): "poisson"
    # (each client independently), "fixed_size" (k of n without replacement) or None (no exact accounting).
    privacy_sampling: ClassVar[str | None] = None

    @classmethod
    def from_config(cls, config) -> "Sampler":
        """The sampler a run asks for (a sampler with options of its own reads them from the config)."""
        return cls()

    def sample(self, seed: int, round_idx: int, client_sizes: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def aggregation_weights(self, cohort: np.ndarray, client_sizes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def expected_cohort_size(self, client_sizes: np.ndarray, k: int) -> float:
        """E[|cohort|]: k for the fixed-size samplers; a sampler whose cohort size varies says its mean."""
        return float(k)

    def inclusion_probabilities(self, client_sizes: np.ndarray, k: int) -> np.ndarray | None:
        """Each client's probability of being in a round's cohort, where the sampler knows it (None: unknown).
        --dp-accept-sampler-bound accounts a sampler without exact DP accounting at the largest of them."""
        return None


SAMPLERS: Registry[type[Sampler]] = Registry("sampler", "--sampler", group="fednlp.samplers", base=Sampler)


def register_sampler(name: str) -> Callable[[type[Sampler]], type[Sampler]]:
    return SAMPLERS.register(name)


def get_sampler(name: str) -> type[Sampler]:
    return SAMPLERS.get(name)


def _uniform_cohort(seed: int, round_idx: int, n_clients: int, k: int) -> np.ndarray:
    if k > n_clients:
        raise UserError(f"--clients-per-round {k} exceeds the {n_clients} clients")
    rng = round_rng(seed, round_idx, Stream.COHORT)
    return np.sort(rng.choice(n_clients, size=k, replace=False))


@register_sampler("uniform")
class UniformSampler(Sampler):
    """Uniform without replacement; weights n_i / sum_{j in S} n_j (FedAvg's rule, as FedNLP ran it).

    A ratio estimator of U: exact with every client in the cohort or equal client sizes, otherwise biased by
    O(1/k) (E[a/b] != E[a]/E[b]) in exchange for weights that always sum to 1. `uniform_ht` is the unbiased one.
    """

    privacy_sampling = "fixed_size"

    def sample(self, seed: int, round_idx: int, client_sizes: np.ndarray, k: int) -> np.ndarray:
        return _uniform_cohort(seed, round_idx, len(client_sizes), k)

    def aggregation_weights(self, cohort: np.ndarray, client_sizes: np.ndarray) -> np.ndarray:
        sizes = np.asarray(client_sizes, dtype=np.float64)[cohort]
        total = sizes.sum()
        return sizes / total if total > 0 else np.zeros_like(sizes)


@register_sampler("uniform_ht")
class UniformHTSampler(Sampler):
    """Uniform without replacement; Horvitz-Thompson weights n_i M / (k N): exactly unbiased for U.

    Each client is in the cohort with probability k/M, so E[sum_{i in S} n_i M/(k N) u_i] = sum_i n_i u_i / N.
    The weights sum to 1 only on average: a round of large clients takes a longer step.
    """

    privacy_sampling = "fixed_size"

    def sample(self, seed: int, round_idx: int, client_sizes: np.ndarray, k: int) -> np.ndarray:
        return _uniform_cohort(seed, round_idx, len(client_sizes), k)

    def aggregation_weights(self, cohort: np.ndarray, client_sizes: np.ndarray) -> np.ndarray:
        sizes = np.asarray(client_sizes, dtype=np.float64)
        return sizes[cohort] * len(sizes) / (len(cohort) * sizes.sum())


def inclusion_probabilities(client_sizes: np.ndarray, k: int, power: float = 1.0) -> np.ndarray:
    """pi_i = k n_i^G / sum_j n_j^G (G = `power`; G = 1: k n_i / N), except clients for which that reaches 1: they
    are taken every round (pi = 1) and the others share the remaining k - #taken slots in the same proportion
    (repeated until no probability exceeds 1). sum_i pi_i = k; an empty client's pi is 0.

    The proportions are taken relative to the largest remaining client, (n_i / n_max)^G = exp(G (log n_i -
    log n_max)) <= 1, so no finite G overflows (n_i^1000 would: inf / inf is NaN); a client whose share is below
    the smallest double gets pi = 0."""
    sizes = np.asarray(client_sizes, dtype=np.float64)
    has_data = sizes > 0
    if np.count_nonzero(has_data) < k:
        raise UserError(f"--sampler activity needs at least --clients-per-round {k} clients with training "
                        f"examples; {np.count_nonzero(has_data)} have any")
    log_sizes = np.log(np.where(has_data, sizes, 1.0))
    certain = np.zeros(len(sizes), dtype=bool)
    while True:
        pi = np.where(certain, 1.0, 0.0)
        rest = has_data & ~certain
        slots = k - certain.sum()
        if slots > 0:  # at least `slots` clients with data remain, so `rest` is not empty
            with np.errstate(over="ignore", under="ignore"):  # a share beyond a double's range is just 0
                shares = np.exp(power * (log_sizes[rest] - log_sizes[rest].max()))  # the largest is 1: sum >= 1
            pi[rest] = slots * shares / shares.sum()
        newly = rest & (pi >= 1.0)
        if not newly.any():
            return pi
        certain |= newly


@register_sampler("activity")
class ActivitySampler(Sampler):
    """Probability proportional to the client's number of training examples (Dupuy et al., "Learnings from
    federated learning in the real world", ICASSP 2022); equal weights.

    Randomised systematic pi-ps sampling (Hartley & Rao 1962): clients in a random order, each an interval
    of length pi_i (see `inclusion_probabilities`) on [0, k); one uniform offset u in [0, 1) selects the
    intervals holding u, u+1, ..., u+k-1. Every interval is shorter than 1, so this gives k distinct clients
    and client i is in the cohort with probability exactly pi_i = k n_i / N (capped clients: 1).

    Weights: the Horvitz-Thompson estimator sum_{i in S} (n_i / N) u_i / pi_i is exactly unbiased for U,
    and with pi_i = k n_i / N its weights are all 1/k: sampling by size already counts size, so the update
    is not weighted by size again. Clients taken every round get n_i / N and the others
    (N - N_taken) / (N (k - #taken)); the weights always sum to 1.

    --activity-power G: inclusion proportional to n_i^G instead (G = 0 uniform, 0.5, 1 the default), the
    same systematic sampling over those probabilities and the same Horvitz-Thompson weights
    (n_i / N) / pi_i, so the aggregate stays exactly unbiased for U whatever G (the weights then sum to 1
    only on average).
    """

    def __init__(self, power: float = 1.0):
        self.power = power

    @classmethod
    def from_config(cls, config) -> "ActivitySampler":
        return cls(config.activity_power)

    def sample(self, seed: int, round_idx: int, client_sizes: np.ndarray, k: int) -> np.ndarray:
        pi = inclusion_probabilities(client_sizes, k, self.power)
        certain = np.flatnonzero(pi >= 1.0)
        rng = round_rng(seed, round_idx, Stream.COHORT)
        order = rng.permutation(np.flatnonzero((pi > 0) & (pi < 1.0)))
        slots = k - len(certain)
        ends = np.cumsum(pi[order])
        if len(ends):
            ends *= slots / ends[-1]  # the sum is `slots` up to rounding: make it exact
        points = rng.random() + np.arange(slots)
        chosen = order[np.minimum(np.searchsorted(ends, points, side="right"), len(order) - 1)]
        cohort = np.sort(np.concatenate([certain, chosen]))
        assert len(np.unique(cohort)) == k, "systematic sampling picked a client twice"
        return cohort

    def aggregation_weights(self, cohort: np.ndarray, client_sizes: np.ndarray) -> np.ndarray:
        sizes = np.asarray(client_sizes, dtype=np.float64)
        pi = inclusion_probabilities(sizes, len(cohort), self.power)
        return sizes[cohort] / (sizes.sum() * pi[cohort])

    def inclusion_probabilities(self, client_sizes: np.ndarray, k: int) -> np.ndarray:
        return inclusion_probabilities(client_sizes, k, self.power)


@register_sampler("poisson")
class PoissonSampler(Sampler):
    """Each client independently with probability q = k / n (n clients): the cohort size varies around k and
    may be 0. The sampling that client-level DP's accounting amplifies by (fednlp/privacy/accounting.py).

    Weights: n_i / sum_{j in S} n_j, FedAvg's ratio rule as `uniform`'s (an empty cohort has none); under
    --dp client the mechanism replaces them with 1 / k (clipped updates summed without size weights, then
    divided by the expected cohort size E|S| = k), as the accounting requires.
    """

    privacy_sampling = "poisson"

    def sample(self, seed: int, round_idx: int, client_sizes: np.ndarray, k: int) -> np.ndarray:
        n_clients = len(client_sizes)
        if k > n_clients:
            raise UserError(f"--clients-per-round {k} exceeds the {n_clients} clients")
        rng = round_rng(seed, round_idx, Stream.COHORT)
        return np.flatnonzero(rng.random(n_clients) < k / n_clients)

    def aggregation_weights(self, cohort: np.ndarray, client_sizes: np.ndarray) -> np.ndarray:
        return UniformSampler().aggregation_weights(cohort, client_sizes)

    def inclusion_probabilities(self, client_sizes: np.ndarray, k: int) -> np.ndarray:
        return np.full(len(client_sizes), k / len(client_sizes))

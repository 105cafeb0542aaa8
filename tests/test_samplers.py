"""Client samplers: cohorts are pure functions of (seed, round); selection frequencies match the stated
inclusion probabilities (Pearson chi-square over many draws); the aggregate is unbiased for the
population's size-weighted mean update where the docstring says so."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy import stats  # a dependency of scikit-learn, which fednlp pins

from fednlp.algorithms.samplers import (
    ActivitySampler,
    UniformHTSampler,
    UniformSampler,
    get_sampler,
    inclusion_probabilities,
)
from fednlp.errors import UserError

SIZES = np.array([3, 10, 1, 25, 7, 60, 14, 0, 5, 40])  # N = 165; one client without data
K = 3
DRAWS = 20_000


def _cohorts(sampler, sizes=SIZES, k=K, draws=DRAWS, seed=11) -> list[np.ndarray]:
    return [sampler.sample(seed, r, sizes, k) for r in range(draws)]


@pytest.mark.parametrize("name", ["uniform", "uniform_ht", "activity"])
def test_cohorts_are_pure_functions_of_seed_and_round(name: str) -> None:
    sampler = get_sampler(name)()
    a = sampler.sample(7, 3, SIZES, K)
    assert np.array_equal(a, get_sampler(name)().sample(7, 3, SIZES, K))
    assert len(np.unique(a)) == K and np.array_equal(a, np.sort(a)) and a.max() < len(SIZES)
    assert any(not np.array_equal(a, sampler.sample(7, r, SIZES, K)) for r in range(4, 8))
    assert any(not np.array_equal(sampler.sample(7, r, SIZES, K), sampler.sample(8, r, SIZES, K)) for r in range(4))


def test_inclusion_probabilities_by_hand() -> None:
    # 2 * 4/8 = 1: that client is taken every round; the other slot goes by size among the rest (N = 4).
    np.testing.assert_allclose(inclusion_probabilities(np.array([1, 1, 2, 4]), 2), [0.25, 0.25, 0.5, 1.0])
    # 2 * 10/16 > 1: capped; then 1 slot over sizes 1, 2, 3.
    np.testing.assert_allclose(inclusion_probabilities(np.array([1, 2, 3, 10]), 2), [1 / 6, 2 / 6, 3 / 6, 1.0])
    # No cap: k n_i / N.
    np.testing.assert_allclose(inclusion_probabilities(np.array([1, 2, 3, 4]), 2), [0.2, 0.4, 0.6, 0.8])
    with pytest.raises(UserError, match="needs at least --clients-per-round 3 clients with training examples"):
        inclusion_probabilities(np.array([5, 0, 0, 2]), 3)


def _member_frequencies(cohorts: list[np.ndarray], n_clients: int) -> np.ndarray:
    """One member drawn uniformly from each cohort: client i with probability pi_i / k, independently per
    draw, so its counts are multinomial and Pearson's statistic is chi-square with n - 1 degrees of freedom."""
    rng = np.random.default_rng(5)
    picks = [cohort[rng.integers(len(cohort))] for cohort in cohorts]
    return np.bincount(picks, minlength=n_clients)


def _chi_square_p(observed: np.ndarray, probabilities: np.ndarray) -> float:
    keep = probabilities > 0
    assert observed[~keep].sum() == 0, "a client with probability 0 was drawn"
    return stats.chisquare(observed[keep], observed.sum() * probabilities[keep] / probabilities[keep].sum()).pvalue


def test_activity_sampler_selects_in_proportion_to_size() -> None:
    cohorts = _cohorts(ActivitySampler())
    pi = inclusion_probabilities(SIZES, K)  # 3 * 60/165 > 1: client 5 is taken every round
    assert pi[5] == 1.0 and all(5 in c for c in cohorts)
    np.testing.assert_allclose(pi[pi < 1], 2 * SIZES[pi < 1] / (SIZES.sum() - 60))
    assert _chi_square_p(_member_frequencies(cohorts, len(SIZES)), pi / K) > 1e-3
    # And the plain inclusion counts: each within 4.5 binomial standard deviations of DRAWS * pi_i.
    counts = np.bincount(np.concatenate(cohorts), minlength=len(SIZES))
    sd = np.sqrt(DRAWS * pi * (1 - pi))
    assert np.all(np.abs(counts - DRAWS * pi) <= 4.5 * sd + 1e-9)


def test_activity_sampler_without_a_capped_client_is_proportional() -> None:
    sizes = np.array([5, 10, 20, 40, 15, 30, 25, 8, 12, 35])  # max k n_i / N = 3 * 40/200 < 1
    cohorts = _cohorts(ActivitySampler(), sizes)
    assert _chi_square_p(_member_frequencies(cohorts, len(sizes)), sizes / sizes.sum()) > 1e-3
    # A cohort member is client i with probability n_i / N; the uniform law is far off and rejected.
    assert _chi_square_p(_member_frequencies(cohorts, len(sizes)), np.ones(len(sizes))) < 1e-10


def test_uniform_sampler_selects_every_client_alike() -> None:
    cohorts = _cohorts(UniformSampler())
    assert _chi_square_p(_member_frequencies(cohorts, len(SIZES)), np.ones(len(SIZES))) > 1e-3


def _aggregates(sampler, cohorts, updates, sizes=SIZES) -> np.ndarray:
    return np.array([sampler.aggregation_weights(c, sizes) @ updates[c] for c in cohorts])


UPDATES = np.random.default_rng(3).normal(size=(len(SIZES), 4)) + np.arange(len(SIZES))[:, None] * 0.3
TARGET = SIZES @ UPDATES / SIZES.sum()  # the population's size-weighted mean update


def _assert_unbiased(aggregates: np.ndarray) -> None:
    """The mean of the draws is within 4.5 standard errors of TARGET in every coordinate."""
    error = aggregates.mean(axis=0) - TARGET
    standard_error = aggregates.std(axis=0, ddof=1) / np.sqrt(len(aggregates))
    assert np.all(np.abs(error) < 4.5 * standard_error), (error, standard_error)


def test_activity_sampling_with_equal_weights_is_unbiased() -> None:
    sampler = ActivitySampler()
    cohorts = _cohorts(sampler)
    _assert_unbiased(_aggregates(sampler, cohorts, UPDATES))
    # The weights are 1/k when no client is capped: sampling by size already counts size.
    sizes = np.array([5, 10, 20, 40, 15, 30, 25, 8, 12, 35])
    np.testing.assert_allclose(sampler.aggregation_weights(sampler.sample(0, 0, sizes, 3), sizes), [1 / 3] * 3)
    # Weighting by size as well counts size twice: clearly biased.
    double = np.array([SIZES[c] @ UPDATES[c] / SIZES[c].sum() for c in cohorts])
    error = double.mean(axis=0) - TARGET
    assert np.max(np.abs(error) / (double.std(axis=0, ddof=1) / np.sqrt(len(double)))) > 20


def test_weights_sum_to_one_where_stated() -> None:
    for sampler in (ActivitySampler(), UniformSampler()):
        for r in range(50):
            assert sampler.aggregation_weights(sampler.sample(1, r, SIZES, K), SIZES).sum() == pytest.approx(1.0)


def test_uniform_ht_is_exactly_unbiased_over_every_cohort() -> None:
    sampler = UniformHTSampler()
    every = [np.array(c) for c in combinations(range(len(SIZES)), K)]  # all equally likely
    np.testing.assert_allclose(_aggregates(sampler, every, UPDATES).mean(axis=0), TARGET, rtol=1e-12)
    _assert_unbiased(_aggregates(sampler, _cohorts(sampler), UPDATES))


def test_uniform_self_normalised_weights_are_exact_only_for_equal_sizes_or_full_cohorts() -> None:
    """FedAvg's n_i / sum_S n_j is a ratio estimator: documented as biased for unequal sizes and k < M."""
    sampler = UniformSampler()
    every = [np.array(c) for c in combinations(range(len(SIZES)), K)]
    equal = np.full(len(SIZES), 4)
    np.testing.assert_allclose(_aggregates(sampler, every, UPDATES, equal).mean(axis=0), UPDATES.mean(axis=0))
    full = sampler.sample(0, 0, SIZES, len(SIZES))
    np.testing.assert_allclose(_aggregates(sampler, [full], UPDATES)[0], TARGET)
    assert not np.allclose(_aggregates(sampler, every, UPDATES).mean(axis=0), TARGET, rtol=1e-3)


def test_unknown_sampler_names_the_known_ones() -> None:
    known = "--sampler 'bogus' is not a known sampler; known: activity, poisson, uniform, uniform_ht"
    with pytest.raises(UserError, match=known):
        get_sampler("bogus")


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_activity_power_inclusion_and_unbiased_weights(power: float) -> None:
    """Inclusion proportional to n^G (capped at 1), and Horvitz-Thompson weights: summed over every client,
    pi_i * w_i = n_i / N exactly, so E[aggregate] is the population's size-weighted mean for every G."""
    sampler = ActivitySampler(power)
    scores = np.where(SIZES > 0, SIZES.astype(float) ** power, 0.0)
    pi = sampler.inclusion_probabilities(SIZES, K)
    np.testing.assert_allclose(pi, inclusion_probabilities(scores, K))
    assert pi[SIZES == 0].sum() == 0 and pi.sum() == pytest.approx(K)
    cohorts = _cohorts(sampler, draws=6000)
    for cohort in cohorts[:50]:  # a client's weight whenever it is drawn, times its inclusion probability
        np.testing.assert_allclose(pi[cohort] * sampler.aggregation_weights(cohort, SIZES),
                                   SIZES[cohort] / SIZES.sum(), rtol=1e-12)
    counts = np.bincount(np.concatenate(cohorts), minlength=len(SIZES))
    assert np.all(np.abs(counts - 6000 * pi) <= 4.5 * np.sqrt(6000 * pi * (1 - pi)) + 1e-9)
    aggregates = np.array([sampler.aggregation_weights(c, SIZES) @ UPDATES[c] for c in cohorts])
    _assert_unbiased(aggregates)


def test_activity_power_zero_selects_uniformly_among_clients_with_data() -> None:
    cohorts = _cohorts(ActivitySampler(0.0), draws=6000)
    with_data = (SIZES > 0).astype(float)
    assert _chi_square_p(_member_frequencies(cohorts, len(SIZES)), with_data) > 1e-3

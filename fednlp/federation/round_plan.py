"""The round plan: everything about a round that is decided before any client trains, as a pure function
of (seed, round). The runtime, the tests and the benchmarks all use `plan_round`, so what they study is
what runs.

A plan says which clients train (the sampler's cohort), each one's aggregation weight, which rank trains
which clients, and the seed of each client's batch order and dropout. `RoundContext` is the part handed
to the sampler's consumers: the algorithm's client hook and server step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from fednlp.federation.cohort import assign_to_ranks
from fednlp.run.random_streams import Stream, round_generator, round_rng, run_rng


@dataclass(frozen=True)
class RoundContext:
    """What an algorithm may know about the round: the same on every rank.

    `generator` is a CPU generator seeded from (seed, round): draw noise from it on the CPU (then move it
    to the device) and every rank adds the same noise with no broadcast. `sums` holds the algorithm's
    extra slots summed over all clients of all ranks; it is filled after the round's Allreduce, so only
    the server step sees it.
    """

    round_idx: int
    cohort: np.ndarray
    expected_cohort_size: float
    n_clients: int
    world_size: int
    rank: int
    seed: int
    generator: torch.Generator = field(compare=False)
    sums: Mapping[str, float] = field(default_factory=dict)

    def with_sums(self, sums: Mapping[str, float]) -> "RoundContext":
        return dataclasses.replace(self, sums=dict(sums))


def make_context(seed: int, round_idx: int, cohort: np.ndarray, n_clients: int, expected_cohort_size: float,
                 world_size: int = 1, rank: int = 0) -> RoundContext:
    return RoundContext(round_idx=round_idx, cohort=np.asarray(cohort), expected_cohort_size=float(expected_cohort_size),
                        n_clients=n_clients, world_size=world_size, rank=rank, seed=seed,
                        generator=round_generator(seed, round_idx, Stream.SERVER_NOISE))


@dataclass(frozen=True)
class RoundPlan:
    """One round, decided in advance. `weights[i]` is the aggregation coefficient of `cohort[i]`; `active`
    are the cohort's clients with training examples and a non-zero weight (the others would add nothing,
    and every rank skips the same ones); `shares[r]` are the clients rank r trains."""

    round_idx: int
    cohort: np.ndarray
    weights: np.ndarray
    active: frozenset[int]
    shares: tuple[tuple[int, ...], ...]
    context: RoundContext

    def weight_of(self, client: int) -> float:
        return float(self.weights[int(np.searchsorted(self.cohort, client))])

    @property
    def active_weight(self) -> float:
        """Sum of the active clients' weights (what a skipped client's weight is renormalised against)."""
        return float(sum(self.weight_of(c) for c in self.active))


def plan_round(sampler, seed: int, round_idx: int, client_sizes: np.ndarray, clients_per_round: int,
               world_size: int = 1, rank: int = 0, eligible: np.ndarray | None = None) -> RoundPlan:
    """`eligible` (sorted client ids) restricts the population the sampler sees (e.g. without held-out
    clients): it samples and weights among them alone, and the plan speaks of the real client ids."""
    sizes = np.asarray(client_sizes)
    pool = sizes if eligible is None else sizes[eligible]
    cohort = np.asarray(sampler.sample(seed, round_idx, pool, clients_per_round), dtype=np.int64)
    weights = np.asarray(sampler.aggregation_weights(cohort, pool), dtype=np.float64)
    if eligible is not None:
        cohort = np.asarray(eligible, dtype=np.int64)[cohort]  # increasing, so still sorted
    active = frozenset(int(c) for c, w in zip(cohort, weights) if w != 0 and sizes[c] > 0)
    shares = tuple(tuple(s) for s in assign_to_ranks(cohort, sizes, world_size))
    context = make_context(seed, round_idx, cohort, len(pool), sampler.expected_cohort_size(pool, clients_per_round),
                           world_size, rank)
    return RoundPlan(round_idx, cohort, weights, active, shares, context)


def client_rng(seed: int, round_idx: int, client: int) -> np.random.Generator:
    """A client's batch order and dropout seed in a round: independent of the rank that trains it."""
    return round_rng(seed, round_idx, Stream.CLIENT, client)


def holdout_clients(seed: int, n_clients: int, fraction: float) -> np.ndarray:
    """A seeded set of round(fraction * n) clients kept out of every cohort (e.g. membership-inference
    non-members), sorted."""
    count = int(round(fraction * n_clients))
    return np.sort(run_rng(seed, Stream.HOLDOUT).choice(n_clients, size=count, replace=False))

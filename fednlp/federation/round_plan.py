"""The round plan: everything about a round that is decided before any client trains, as a pure function
of (seed, round). The runtime, the tests and the benchmarks all use `plan_round`, so what they study is
what runs.

A plan says which clients train (the sampler's cohort), each one's aggregation weight, which rank trains
which clients, and the seed of each client's batch order and dropout. Its `RoundContext` (declared beside
the Algorithm in fednlp/algorithms/interface.py) is the part handed to the algorithm's hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fednlp.algorithms.interface import RoundContext
from fednlp.errors import UserError
from fednlp.federation.cohort import assign_to_ranks
from fednlp.run.random_streams import Stream, round_generator, round_rng, run_rng


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


def eligible_clients(held_out: np.ndarray, n_clients: int) -> np.ndarray | None:
    """The clients a sampler may pick, as plan_round's `eligible`: None (all) or all but the held-out ones."""
    return None if len(held_out) == 0 else np.setdiff1d(np.arange(n_clients), held_out)


def sampling_pool(config: Any, n_clients: int) -> tuple[np.ndarray, np.ndarray | None]:
    """--holdout-clients' held-out clients and the `eligible` rest (None: every client); refuses a
    --clients-per-round larger than what is left."""
    held_out = holdout_clients(config.seed, n_clients, config.holdout_clients)
    if config.clients_per_round > n_clients - len(held_out):
        raise UserError(f"--clients-per-round {config.clients_per_round} exceeds the {n_clients} clients "
                        f"of {config.method!r}" + (f" less the {len(held_out)} held out" if len(held_out) else ""))
    return held_out, eligible_clients(held_out, n_clients)

"""The examples a run actually trained on: the members of example-level membership inference.

A client in a round's cohort trains on its local batches only: under --continual on what it held in the
round's period, with --local-steps fewer than an epoch on part of it, and under DP-SGD on its Poisson batches.
Counting every training example of every client that trained as a member would mix never-used examples into
the members and pull the attack's AUC toward 0.5. The cohort (round_plan.plan_round), what a client holds
(client_data) and its batches (federation/local_batches.py) are pure functions of (seed, round, client), so
the audit recomputes them, through the same functions the runtime called, instead of reading a record the
run would have had to write: exact, free at training time, and the same for a resumed run. A centralized
run's batches (fednlp/centralized.py: centralized_batches) are pure in its seed too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: How result.json's audit block defines the members (`mia_members`).
FEDERATED_MEMBERS = ("training examples in at least one local batch of a client in some round's cohort "
                     "(recomputed from the run's pure batch plans: seed, round, client)")
CENTRALIZED_MEMBERS = ("training examples in at least one of the centralized run's batches (recomputed from its "
                       "pure batch plan: seed)")


@dataclass(frozen=True)
class UsedExamples:
    used: np.ndarray  # bool over the data file's examples: in some local batch of some round
    client_rounds: int  # (client, round) pairs that trained
    examples_held: int  # distinct examples the trained clients held in the rounds they trained

    @property
    def members(self) -> np.ndarray:
        return np.flatnonzero(self.used)


def used_examples(config: Any, data: Any, features: Any, clients: Any) -> UsedExamples:
    """Every example a federated run trained on, by replaying its rounds' plans (no model, no training)."""
    from fednlp.algorithms.registry import get_algorithm
    from fednlp.algorithms.samplers import get_sampler
    from fednlp.federation.client_data import client_data
    from fednlp.federation.local_batches import local_batches
    from fednlp.federation.round_plan import plan_round, sampling_pool
    from fednlp.privacy.plan import privatize

    sampler = get_sampler(config.sampler).from_config(config)
    _, eligible = sampling_pool(config, clients.n_clients)
    active_of = lambda r: plan_round(sampler, config.seed, r, clients.sizes, config.clients_per_round,  # noqa: E731
                                     eligible=eligible).active
    # The run's algorithm as the run composed it (--dp sample plans Poisson batches of its own).
    algorithm, _ = privatize(get_algorithm(config.algorithm)(config), config, sampler, clients.sizes, eligible,
                             active_of)
    provider = client_data(config, data, features, clients)
    used = np.zeros(data.n_examples, dtype=bool)
    held = np.zeros(data.n_examples, dtype=bool)
    client_rounds = 0
    for round_idx in range(config.rounds):
        plan = plan_round(sampler, config.seed, round_idx, provider.sizes(round_idx), config.clients_per_round,
                          eligible=eligible)
        for client in sorted(plan.active):
            rows = provider.rows(client, round_idx)
            _, batches = local_batches(algorithm, config, client, round_idx, len(rows))
            positions = np.concatenate(batches).astype(np.int64) if batches else np.zeros(0, dtype=np.int64)
            used[features.example_of_row[rows[positions]]] = True
            held[features.example_of_row[rows]] = True
            client_rounds += 1
    return UsedExamples(used, client_rounds, int(held.sum()))


def used_examples_centralized(config: Any, data: Any, features: Any) -> UsedExamples:
    """Every example a centralized run trained on (--steps below an epoch leaves some out), by its batch plan."""
    from fednlp.centralized import centralized_batches

    rows = features.rows_of(np.asarray(data.train_index_list, dtype=np.int64))
    _, chunks = centralized_batches(config, len(rows))
    positions = [b for batches in chunks for b in batches]
    used = np.zeros(data.n_examples, dtype=bool)
    if positions:
        used[features.example_of_row[rows[np.concatenate(positions).astype(np.int64)]]] = True
    return UsedExamples(used, 0, len(data.train_index_list))

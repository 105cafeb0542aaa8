"""Which clients train in a round, and on which rank: pure functions of (seed, round).

Every rank calls these with the same arguments and gets the same answer, so no message is needed.
"""

from __future__ import annotations

import numpy as np


def round_rng(seed: int, round_idx: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, round, stream...): no global state, no reuse across rounds."""
    return np.random.default_rng([seed, round_idx, *stream])


def sample_cohort(seed: int, round_idx: int, n_clients: int, clients_per_round: int) -> np.ndarray:
    """Uniform sampling without replacement, sorted (the order carries no meaning)."""
    rng = round_rng(seed, round_idx, 0)
    return np.sort(rng.choice(n_clients, size=clients_per_round, replace=False))


def assign_to_ranks(cohort: np.ndarray, client_sizes: np.ndarray, world_size: int) -> list[list[int]]:
    """Balance ranks by work: largest client first to the least-loaded rank (LPT), ties to the lower rank.

    Deterministic: a stable sort by size (descending) then client id, so every rank agrees.
    """
    order = sorted(cohort.tolist(), key=lambda c: (-int(client_sizes[c]), c))
    loads = [0] * world_size
    assignment: list[list[int]] = [[] for _ in range(world_size)]
    for client in order:
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        assignment[rank].append(client)
        loads[rank] += int(client_sizes[client])
    return [sorted(clients) for clients in assignment]

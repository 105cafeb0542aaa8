"""The spread of a round's cohort over the ranks: a pure function of the cohort and the client sizes
(the random streams are in fednlp/run/random_streams.py).

Every rank calls these with the same arguments and gets the same answer, so no message is needed.
Which clients form the cohort is the sampler's choice (fednlp/algorithms/samplers.py).
"""

from __future__ import annotations

import numpy as np


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

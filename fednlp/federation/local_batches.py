"""Which of its rows a client trains on in a round, and in which batches: a pure function of (seed, round,
client), whichever rank trains it. The runtime trains on these batches; the audit recomputes them to know
the examples a run actually used (fednlp/audit/members.py), so both call this one function."""

from __future__ import annotations

from typing import Any

import numpy as np

from fednlp.federation.round_plan import client_rng
from fednlp.run.local_training import batch_plan


def local_batches(algorithm: Any, config: Any, client: int, round_idx: int,
                  n_rows: int) -> tuple[int, list[np.ndarray]]:
    """(the client's dropout seed, its local batches as positions into its `n_rows` rows): the algorithm's own
    plan (DP-SGD's Poisson batches, drawn from the same stream) or --local-steps / --local-epochs batches of
    --batch-size."""
    rng = client_rng(config.seed, round_idx, client)
    dropout_seed = int(rng.integers(2**62))
    batches = algorithm.client_batches(client, round_idx, n_rows, rng)
    if batches is None:
        batches = batch_plan(n_rows, config.batch_size, rng, steps=config.local_steps, epochs=config.local_epochs)
    return dropout_seed, batches

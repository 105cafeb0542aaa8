"""What each client holds in a round: the feature rows it trains on and every client's size (what the sampler
sees). A static run gives each client all its training examples in every round; under --continual the data
arrives over time and a client holds what the schedule says for the round's period
(fednlp/federation/continual.py). The round loop asks only `rows` and `sizes`, never which kind runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fednlp.fairness.augment import CopySelection
from fednlp.federation.clients import ClientData
from fednlp.federation.continual import ContinualOptions, ContinualSchedule, order_field
from fednlp.tasks.base import Features


class StaticClientData:
    """Every client trains on all its training examples, in every round."""

    schedule: ContinualSchedule | None = None

    def __init__(self, clients: ClientData, features: Features, copies: CopySelection | None = None):
        self.clients, self.features = clients, features
        self.copies = copies or CopySelection(1.0, 0)  # --augment-fraction (fednlp/fairness/augment.py)
        self._rows: dict[tuple[int, int], np.ndarray] = {}

    def period(self, round_idx: int) -> int:
        """Rounds that share a period share every client's data (one period here)."""
        return 0

    def examples(self, client: int, period: int) -> np.ndarray:
        """The client's training examples (data-file indices) in `period`."""
        return self.clients.train[client]

    def rows(self, client: int, round_idx: int) -> np.ndarray:
        """The feature rows the client trains on in round `round_idx` (computed once per period): its examples'
        rows and, with --augment counterfactual, the kept swapped copies of exactly those rows."""
        key = (client, self.period(round_idx))
        if key not in self._rows:
            self._rows[key] = self.copies.rows(self.features, self.features.rows_of(self.examples(*key)), *key)
        return self._rows[key]

    def sizes(self, round_idx: int) -> np.ndarray:
        """Each client's number of training examples in round `round_idx`."""
        return self.clients.sizes


class ContinualClientData(StaticClientData):
    """--continual: in period t a client holds its examples of periods 0..t, at most --storage-limit of them."""

    def __init__(self, clients: ClientData, features: Features, schedule: ContinualSchedule,
                 copies: CopySelection | None = None):
        super().__init__(clients, features, copies)
        self.schedule = schedule
        self._sizes: dict[int, np.ndarray] = {}

    def period(self, round_idx: int) -> int:
        return self.schedule.period_of_round(round_idx)

    def examples(self, client: int, period: int) -> np.ndarray:
        return self.schedule.held(self.clients.train[client], period)

    def sizes(self, round_idx: int) -> np.ndarray:
        period = self.period(round_idx)
        if period not in self._sizes:
            self._sizes[period] = self.schedule.sizes(self.clients.train, period)
        return self._sizes[period]


def client_data(config: Any, data: Any, features: Features, clients: ClientData) -> StaticClientData:
    """The run's provider: continual when --continual is on (the schedule read from the data's order field)."""
    options: ContinualOptions = config.continual
    copies = CopySelection.of(config)
    if not options.enabled:
        return StaticClientData(clients, features, copies)
    schedule = ContinualSchedule.from_data(order_field(data.fields, config.data), options.periods,
                                           options.rounds_per_period, options.storage_limit)
    return ContinualClientData(clients, features, schedule, copies)

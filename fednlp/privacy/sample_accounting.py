"""Per-client accounting of sample-level DP-SGD: client k's examples are protected by its own Poisson
rate q_k = min(1, B / n_k) over its local steps in the rounds it took part in. Which rounds those are is a
pure function of the round plans, so the ledger recomputes participation rather than storing it (a
resumed run gets the same numbers).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from fednlp.privacy.accounting import Accountant, Sampling
from fednlp.privacy.sample_dp import client_rate, client_steps
from fednlp.privacy.settings import SampleDPSettings

ActiveOf = Callable[[int], "frozenset[int] | set[int]"]  # round -> the clients that trained in it


class SampleLedger:
    def __init__(self, settings: SampleDPSettings, client_sizes: np.ndarray, active_of: ActiveOf):
        self.dp = settings
        self.sizes = np.asarray(client_sizes, dtype=np.int64)
        self.active_of = active_of
        self.rates = np.array([client_rate(int(n), settings) for n in self.sizes])
        self.steps = np.array([client_steps(int(n), settings) if n else 0 for n in self.sizes], dtype=np.int64)
        self._rounds = np.zeros(len(self.sizes), dtype=np.int64)  # rounds taken part in, over the first _counted
        self._counted = 0

    def rounds_taken(self, rounds: int) -> np.ndarray:
        """Per client, how many of rounds 0..rounds-1 it trained in."""
        if rounds < self._counted:
            self._rounds[:], self._counted = 0, 0
        for r in range(self._counted, rounds):
            for client in self.active_of(r):
                self._rounds[client] += 1
        self._counted = rounds
        return self._rounds.copy()

    @functools.lru_cache(maxsize=None)
    def _accountant(self, rate: float) -> Accountant:
        return Accountant(self.dp.noise_multiplier, Sampling("poisson", rate))

    def epsilons(self, rounds: int, method: str = "pld") -> np.ndarray:
        """Each client's epsilon at delta after `rounds` rounds (0 for a client that never trained)."""
        taken = self.rounds_taken(rounds)
        out = np.zeros(len(self.sizes))
        for rate, total in sorted({(float(self.rates[c]), int(self.steps[c] * taken[c])) for c in np.flatnonzero(taken)}):
            accountant = self._accountant(rate)
            eps = accountant.epsilon_pld(total, self.dp.delta) if method == "pld" else None
            if eps is None:  # RDP's, asked for or where there is no PLD (a noise multiplier below 0.05)
                eps = accountant.epsilon_rdp(total, self.dp.delta)
            out[(self.rates == rate) & (self.steps * taken == total)] = eps
        return out

    def worst_case(self) -> tuple[float, int]:
        """(largest rate, most steps of one round) over the clients: calibration's upper bound."""
        has_data = self.sizes > 0
        return float(self.rates[has_data].max()), int(self.steps[has_data].max())

"""Turning the --dp options into a run's mechanism, before any training, and the record it leaves in
result.json["dp"]. The mechanism comes from the registry (fednlp/privacy/mechanisms.py; the built-ins are
client_level.py and sample_level.py); what they share lives here: the noise multiplier (given, or calibrated to
--dp-epsilon), the budget's rounds, and the record's common part. Every refusal is a UserError (one line,
exit 2)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fednlp.errors import UserError
from fednlp.files import atomic_write_text
from fednlp.privacy.accounting import Sampling, accountant_version, calibrate_noise
from fednlp.privacy.mechanisms import DP_MECHANISMS
from fednlp.privacy.release import noise_secret, scrub_result, unprotected_outputs


def privatize(algorithm: Any, config: Any, sampler: Any, client_sizes: np.ndarray, eligible: np.ndarray | None,
              active_of: Callable[[int], Any]) -> tuple[Any, "PrivacyPlan | None"]:
    """The run's algorithm with --dp's mechanism composed over it (the same object when --dp none)."""
    if not config.dp.enabled:
        return algorithm, None
    if not type(algorithm).dp_compatible:
        raise UserError(f"--algorithm {config.algorithm} cannot run with --dp {config.dp.mechanism}: it uses "
                        f"per-client values that are neither clipped nor noised (see Algorithm.dp_compatible); use "
                        f"another --algorithm or --dp none")
    sizes = np.asarray(client_sizes)
    pool = sizes if eligible is None else sizes[eligible]
    mechanism = DP_MECHANISMS.get(config.dp.mechanism)()
    return mechanism.privatize(algorithm, config, sampler, sizes, pool, active_of)


def default_delta(population: int) -> float:
    """1/N^1.1: below 1/N, as the DP-FedAvg literature sets it (a delta of 1/N allows a mechanism that
    publishes one of the N units, client or example, in the clear)."""
    return float(population) ** -1.1


def resolve_delta(given: float | None, population: int, unit: str) -> float:
    """--dp-delta, refused at or above 1/N for the `population` of `unit`s accounted; default 1/N^1.1."""
    if given is None:
        return default_delta(population)
    if given >= 1.0 / population:
        raise UserError(f"--dp-delta {given:g} must be below 1/N = {1.0 / population:.4g} (N = {population} {unit} "
                        f"accounted): a delta of 1/N allows publishing one {unit.rstrip('s')} in the clear; leave it "
                        f"out for the default 1/N^1.1")
    return given


def noise_multiplier(config: Any, make: Callable, sampling: Sampling, delta: float, what: str,
                     rounds_to_steps: Callable[[int], int] = lambda r: r) -> float:
    """--dp-noise-multiplier as given (the rounds checked against --dp-epsilon), or calibrated to --dp-epsilon."""
    epsilon, steps = config.dp.epsilon, rounds_to_steps(config.rounds)
    if config.dp.noise_multiplier is None:
        return calibrate_noise(epsilon, delta, steps, sampling, what=what)
    z = config.dp.noise_multiplier
    if epsilon is not None:
        accountant = make(z, sampling)
        spent = accountant.epsilon(steps, delta)
        if spent > epsilon:
            low, high = 0, config.rounds
            while low < high:  # the most rounds within the budget
                mid = (low + high + 1) // 2
                low, high = (mid, high) if accountant.epsilon(rounds_to_steps(mid), delta) <= epsilon else (low, mid - 1)
            raise UserError(f"--rounds {config.rounds} exceeds the --dp-epsilon {epsilon} budget at delta {delta:g} "
                            f"with noise multiplier {z}: epsilon would be {spent:.4g}; the largest feasible "
                            f"--rounds is {low}")
    return z


class PrivacyPlan:
    """What result.json["dp"] records, computed after the run from the rounds done (pure functions). A
    mechanism subclasses it: `details` adds its own keys, `per_client_csv` its dp_clients.csv (or None)."""

    def __init__(self, level: str, settings: Any, notes: list[str]):
        self.level, self.settings, self.notes = level, settings, notes

    def record(self, algorithm: Any, rounds: int, config: Any) -> dict[str, Any]:
        s, dp = self.settings, config.dp
        record: dict[str, Any] = {"level": self.level, "noise_multiplier": s.noise_multiplier, "delta": s.delta,
                                  "accountant": accountant_version(), "rounds": rounds,
                                  "calibrated_to_epsilon": dp.epsilon if dp.noise_multiplier is None else None,
                                  "accounting": getattr(s, "accounting", "exact"),
                                  "epsilon_budget": dp.epsilon, "notes": list(self.notes),
                                  "release": dp.release, "unprotected_outputs": unprotected_outputs(config),
                                  "noise_seed": "OS entropy, not recorded" if dp.release else "--seed (config.yaml)"}
        record.update(self.details(algorithm, rounds))
        return record

    def details(self, algorithm: Any, rounds: int) -> dict[str, Any]:
        """The mechanism's own part of the record (its epsilon, clip, sampling, ...)."""
        return {}

    def per_client_csv(self) -> str | None:
        """dp_clients.csv, called after `record`; None: no such file."""
        return None

    def start(self, session: Any, algorithm: Any) -> None:
        """Before the first round, on every rank: --dp-release's noise seed from OS entropy (fednlp/privacy/
        release.py), shared by the ranks and kept in memory only."""
        if session.config.dp.release:
            algorithm.noise_seed = noise_secret(session.comm)

    def scrub(self, result: dict[str, Any], config: Any) -> None:
        """result.json under --dp-release: only protected outputs (in place)."""
        if config.dp.release:
            scrub_result(result)

    def write(self, session: Any, algorithm: Any, config: Any) -> dict[str, Any]:
        """The record for result.json["dp"]; rank 0 also writes dp_clients.csv (sample level) atomically."""
        if session.comm.rank != 0:  # only rank 0 writes result.json (and holds the per-round series)
            return {"level": self.level}
        record = self.record(algorithm, config.rounds, config)
        table = self.per_client_csv()
        if table is not None and session.writer is not None and not config.dp.release:
            atomic_write_text(session.run_dir / "dp_clients.csv", table)
        return record

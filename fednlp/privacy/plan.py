"""Turning the --dp options into a run's mechanism, before any training: the sampler's accounting, the
delta, the noise multiplier (given, or calibrated to --dp-epsilon), the budget's rounds, and the record
written to result.json["dp"]. Every refusal here is a UserError (one line, exit 2)."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Callable

import numpy as np

from fednlp.algorithms.base import Algorithm
from fednlp.errors import UserError
from fednlp.files import atomic_write_text
from fednlp.privacy.accounting import Accountant, Sampling, accountant_version, calibrate_noise
from fednlp.privacy.client_dp import ClientDP, finite_or_none, with_client_dp
from fednlp.privacy.options import parse_clip
from fednlp.privacy.sample_accounting import SampleLedger
from fednlp.privacy.sample_dp import with_sample_dp
from fednlp.privacy.settings import ClientDPSettings, SampleDPSettings

# Andrew et al. 2021 (Sec. 4): the clipped count's noise std sigma_b = M / 20 in clients.
COUNT_STDDEV_PER_CLIENT = 1 / 20


def privatize(algorithm: Any, config: Any, sampler: Any, client_sizes: np.ndarray, eligible: np.ndarray | None,
              active_of: Callable[[int], Any]) -> tuple[Any, "PrivacyPlan | None"]:
    """The run's algorithm with --dp's mechanism composed over it (the same object when --dp none)."""
    if config.dp == "none":
        return algorithm, None
    sizes = np.asarray(client_sizes)
    pool = sizes if eligible is None else sizes[eligible]
    if config.dp == "client":
        settings, notes = client_settings(config, sampler, pool)
        cls = with_client_dp(type(algorithm), settings)
        return cls(config), PrivacyPlan("client", settings, notes, None)
    if config.continual:
        # Under --continual a client's holding, so each example's sampling rate B / n_k and its steps per round,
        # change every period; the ledger accounts one rate per client over the whole run and would understate it.
        raise UserError("--dp sample with --continual true: per-period sampling rates are not accounted; use --dp "
                        "client (a client's participation does not depend on what it holds) or a static run")
    if type(algorithm).adjust_gradients is not Algorithm.adjust_gradients:
        raise UserError(f"--dp sample: algorithm {config.algorithm} changes local gradients (adjust_gradients), "
                        f"which DP-SGD's noisy step would overwrite; use --dp client or another algorithm")
    settings = sample_settings(config, pool)
    ledger = SampleLedger(settings, sizes, active_of)
    notes: list[str] = []
    settings = calibrate_sample(config, settings, ledger, notes)
    ledger.dp = settings
    algorithm = with_sample_dp(type(algorithm), settings)(config)
    algorithm.ledger = ledger
    return algorithm, PrivacyPlan("sample", settings, notes, ledger)


def client_settings(config: Any, sampler: Any, pool: np.ndarray) -> tuple[ClientDPSettings, list[str]]:
    n, k = len(pool), config.clients_per_round
    notes: list[str] = []
    kind = getattr(sampler, "privacy_sampling", None)
    if kind == "poisson":
        sampling = Sampling("poisson", k / n)
    elif kind == "fixed_size":
        sampling = Sampling("fixed_size", k / n, n, k)
    elif config.dp_accept_sampler_bound and hasattr(sampler, "inclusion_probabilities"):
        q = float(np.max(sampler.inclusion_probabilities(pool, k)))
        sampling = Sampling("poisson", q)
        notes.append(f"sampler {config.sampler} has no exact DP accounting: epsilon is a bound computed as Poisson "
                     f"sampling at its largest inclusion probability {q:.6g} (--dp-accept-sampler-bound)")
    else:
        raise UserError(f"--dp client with --sampler {config.sampler}: this sampler has no exact privacy accounting; "
                        f"use --sampler poisson or uniform, or pass --dp-accept-sampler-bound true to account with "
                        f"its largest inclusion probability as a Poisson rate")
    delta = config.dp_delta if config.dp_delta is not None else 1.0 / n
    expected = float(sampler.expected_cohort_size(pool, k))
    noise_cohort = float(config.dp_noise_cohort_size or expected)
    if config.dp_noise_cohort_size:
        notes.append(f"noise calibrated as if {config.dp_noise_cohort_size} clients took part per round: the "
                     f"accounting assumes a deployment of {round(n * config.dp_noise_cohort_size / k)} clients "
                     f"sampled at the same rate q={k / n:.6g}, not this simulation's {n}")
    clip = parse_clip(config.dp_clip)
    count_stddev = 0.0
    z = noise_multiplier(config, Accountant, sampling, delta, " of client-level DP")
    if clip is None and z > 0:
        count_stddev = COUNT_STDDEV_PER_CLIENT * noise_cohort
        if z >= 2 * count_stddev:
            raise UserError(f"--dp-clip adaptive: noise multiplier {z:.4g} (from {'--dp-epsilon' if config.dp_noise_multiplier is None else '--dp-noise-multiplier'}) "
                            f"must stay below 2 sigma_b = {2 * count_stddev:.4g} (sigma_b = cohort/20, Andrew et al. "
                            f"2021); raise --clients-per-round (or --dp-noise-cohort-size), or use a fixed --dp-clip")
    update_z = z if count_stddev == 0 else (z ** -2 - (2 * count_stddev) ** -2) ** -0.5
    settings = ClientDPSettings(clip=clip, clip_init=config.dp_clip_init, noise_multiplier=z,
                                update_noise_multiplier=update_z, count_stddev=count_stddev,
                                target_quantile=config.dp_target_quantile, clip_lr=config.dp_clip_lr,
                                expected_cohort_size=expected, noise_cohort_size=noise_cohort, sampling=sampling,
                                delta=delta)
    return settings, notes


def noise_multiplier(config: Any, make: Callable, sampling: Sampling, delta: float, what: str,
                     rounds_to_steps: Callable[[int], int] = lambda r: r) -> float:
    """--dp-noise-multiplier as given (the rounds checked against --dp-epsilon), or calibrated to --dp-epsilon."""
    epsilon, steps = config.dp_epsilon, rounds_to_steps(config.rounds)
    if config.dp_noise_multiplier is None:
        return calibrate_noise(epsilon, delta, steps, sampling, what=what)
    z = config.dp_noise_multiplier
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


def sample_settings(config: Any, pool: np.ndarray) -> SampleDPSettings:
    clip = parse_clip(config.dp_clip)
    delta = config.dp_delta if config.dp_delta is not None else 1.0 / max(1, int(pool.sum()))
    return SampleDPSettings(clip=clip, noise_multiplier=config.dp_noise_multiplier or 0.0,
                            batch_size=config.batch_size, local_steps=config.local_steps,
                            local_epochs=config.local_epochs, delta=delta,
                            grad_sample_mode=config.dp_grad_sample)


def calibrate_sample(config: Any, settings: SampleDPSettings, ledger: SampleLedger,
                     notes: list[str]) -> SampleDPSettings:
    """Z for --dp sample: given, or calibrated to --dp-epsilon at the worst client's rate and local steps over
    every round (an upper bound on any client's epsilon)."""
    if config.dp_epsilon is None:
        return settings
    rate, steps = ledger.worst_case()
    sampling = Sampling("poisson", rate)
    z = noise_multiplier(config, Accountant, sampling, settings.delta, " of sample-level DP-SGD",
                         rounds_to_steps=lambda r: r * steps)
    if config.dp_noise_multiplier is None:
        notes.append(f"noise multiplier calibrated to --dp-epsilon {config.dp_epsilon} for the worst client "
                     f"(rate {rate:.6g}, {steps} steps per round, every round): a bound for every client")
    return SampleDPSettings(**{**settings.__dict__, "noise_multiplier": z})


class PrivacyPlan:
    """What result.json["dp"] records, computed after the run from the rounds done (pure functions)."""

    def __init__(self, level: str, settings: Any, notes: list[str], ledger: SampleLedger | None):
        self.level, self.settings, self.notes, self.ledger = level, settings, notes, ledger

    def record(self, algorithm: Any, rounds: int, config: Any) -> dict[str, Any]:
        s = self.settings
        record: dict[str, Any] = {"level": self.level, "noise_multiplier": s.noise_multiplier, "delta": s.delta,
                                  "accountant": accountant_version(), "rounds": rounds,
                                  "calibrated_to_epsilon": config.dp_epsilon if config.dp_noise_multiplier is None
                                  else None, "epsilon_budget": config.dp_epsilon, "notes": list(self.notes)}
        if self.level == "client":
            record.update(self._client(algorithm, rounds))
        else:
            record.update(self._sample(rounds))
        return record

    def _client(self, algorithm: ClientDP, rounds: int) -> dict[str, Any]:
        s: ClientDPSettings = self.settings
        accountant = algorithm.accountant  # the run's per-round series: the last round's line equals this
        rdp, pld = accountant.epsilon_rdp(rounds, s.delta), accountant.epsilon_pld(rounds, s.delta)
        out: dict[str, Any] = {
            "mechanism": "DP-FedAvg (McMahan et al. 2018): per-client L2 clipping, Gaussian noise on the sum, "
                         "divided by the expected cohort size",
            "sampling": s.sampling.kind, "sampling_description": s.sampling.describe(), "q": s.sampling.q,
            "steps": rounds, "expected_cohort_size": s.expected_cohort_size,
            "noise_cohort_size": s.noise_cohort_size,
            "epsilon": finite_or_none(pld if pld is not None else rdp), "epsilon_rdp": finite_or_none(rdp),
            "epsilon_pld": finite_or_none(pld),
            "neighbouring": "add or remove one client" if s.sampling.kind == "poisson" else
                            "replace one client (sensitivity 2C; PLD has no fixed-size event: epsilon is RDP's)",
        }
        if s.adaptive:
            out["clip"] = "adaptive"
            out["adaptive_clipping"] = {"paper": "Andrew et al. 2021", "initial_clip": s.clip_init,
                                        "target_quantile": s.target_quantile, "clip_lr": s.clip_lr,
                                        "count_stddev": s.count_stddev,
                                        "update_noise_multiplier": s.update_noise_multiplier,
                                        "final_clip": algorithm.clip}
        else:
            out["clip"] = s.clip if math.isfinite(s.clip) else None
        return out

    def _sample(self, rounds: int) -> dict[str, Any]:
        s: SampleDPSettings = self.settings
        ledger = self.ledger
        pld = ledger.epsilons(rounds, "pld")
        rdp = ledger.epsilons(rounds, "rdp")
        trained = np.flatnonzero(ledger.rounds_taken(rounds))
        worst = int(trained[np.argmax(pld[trained])]) if len(trained) else None
        taken = ledger.rounds_taken(rounds)
        self.per_client = [(int(c), int(ledger.sizes[c]), float(ledger.rates[c]), int(ledger.steps[c] * taken[c]),
                            int(taken[c]), finite_or_none(float(pld[c])), finite_or_none(float(rdp[c])))
                           for c in trained]
        return {
            "mechanism": "DP-SGD (Abadi et al. 2016) in every client: per-example clipping and Gaussian noise each "
                         "local step, per-example clipping by Opacus ("
                         + ("ghost clipping: per-example norms, clip-weighted losses backpropagated)"
                            if s.grad_sample_mode == "ghost" else "GradSampleModule hooks: per-example gradients)"),
            "clip": s.clip, "per_example_clipping": s.grad_sample_mode, "sampling": "poisson",
            "sampling_description": "Poisson batches in each client at rate q_k = min(1, batch_size / n_k)",
            "q": float(ledger.rates[worst]) if worst is not None else None,
            "q_max": float(ledger.rates[trained].max()) if len(trained) else None,
            "steps": int(ledger.steps[worst] * taken[worst]) if worst is not None else 0,
            "epsilon": finite_or_none(float(pld[trained].max())) if len(trained) else 0.0,
            "epsilon_pld": finite_or_none(float(pld[trained].max())) if len(trained) else 0.0,
            "epsilon_rdp": finite_or_none(float(rdp[trained].max())) if len(trained) else 0.0,
            "epsilon_median": finite_or_none(float(np.median(pld[trained]))) if len(trained) else 0.0,
            "epsilon_of": "the maximum over clients (the guarantee for any example); per client in dp_clients.csv",
            "worst_client": worst, "clients_trained": int(len(trained)),
            "neighbouring": "add or remove one example of a client",
        }

    def per_client_csv(self) -> str | None:
        if self.level != "sample":
            return None
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["client", "examples", "sampling_rate", "steps", "rounds", "epsilon_pld", "epsilon_rdp"])
        writer.writerows(self.per_client)
        return out.getvalue()

    def write(self, session: Any, algorithm: Any, config: Any) -> dict[str, Any]:
        """The record for result.json["dp"]; rank 0 also writes dp_clients.csv (sample level) atomically."""
        if session.comm.rank != 0:  # only rank 0 writes result.json (and holds the per-round series)
            return {"level": self.level}
        record = self.record(algorithm, config.rounds, config)
        table = self.per_client_csv()
        if table is not None and session.writer is not None:
            atomic_write_text(session.run_dir / "dp_clients.csv", table)
        return record

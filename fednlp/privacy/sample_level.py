"""`--dp sample`: DP-SGD (Abadi et al. 2016) inside every client: per-example clipping and Gaussian noise at
each local step, accounted per client from its own sampling rate and steps (fednlp/privacy/sample_accounting.py)."""

from __future__ import annotations

import csv
import io
from typing import Any, Callable

import numpy as np

from fednlp.algorithms.interface import Algorithm
from fednlp.errors import UserError
from fednlp.privacy.accounting import Accountant, Sampling
from fednlp.privacy.client_dp import finite_or_none
from fednlp.privacy.mechanisms import DPMechanism, register_dp_mechanism
from fednlp.privacy.options import DPOptions, parse_clip
from fednlp.privacy.plan import PrivacyPlan, noise_multiplier, resolve_delta
from fednlp.privacy.sample_accounting import SampleLedger
from fednlp.privacy.sample_dp import with_sample_dp
from fednlp.privacy.settings import SampleDPSettings


#: --dp-grad-sample -> how result.json's DP record names the per-example clipping.
CLIPPING = {"hooks": "by Opacus (GradSampleModule hooks: per-example gradients)",
            "ghost": "by Opacus (ghost clipping: per-example norms, clip-weighted losses backpropagated)",
            "func": "by torch.func (vmap of grad over the trainable weights: per-example gradients)"}


@register_dp_mechanism("sample")
class SampleLevel(DPMechanism):
    help = "DP-SGD inside each client"

    def check(self, options: DPOptions, config: Any) -> None:
        if options.noise_cohort_size is not None:
            raise UserError("--dp-noise-cohort-size is for --dp client only")
        if config.precision != "fp32":
            raise UserError(f"--dp sample needs --precision fp32 (per-example gradients), got {config.precision}")
        if config.max_grad_norm is not None:
            raise UserError("--dp sample clips each example's gradient to --dp-clip; drop --max-grad-norm")

    def privatize(self, algorithm: Any, config: Any, sampler: Any, sizes: np.ndarray, pool: np.ndarray,
                  active_of: Callable[[int], Any]) -> tuple[Any, PrivacyPlan]:
        if config.continual.enabled:
            # Under --continual a client's holding, so each example's sampling rate B / n_k and its steps per
            # round, change every period; the ledger accounts one rate per client over the whole run and would
            # understate it.
            raise UserError("--dp sample with --continual true: per-period sampling rates are not accounted; use "
                            "--dp client (a client's participation does not depend on what it holds) or a static run")
        if type(algorithm).adjust_gradients is not Algorithm.adjust_gradients:
            raise UserError(f"--dp sample: algorithm {config.algorithm} changes local gradients (adjust_gradients), "
                            f"which DP-SGD's noisy step would overwrite; use --dp client or another algorithm")
        settings = sample_settings(config, pool)
        ledger = SampleLedger(settings, sizes, active_of)
        notes: list[str] = []
        settings = calibrate_sample(config, settings, ledger, notes)
        ledger.dp = settings
        private = with_sample_dp(type(algorithm), settings)(config)
        private.ledger = ledger
        return private, SamplePlan("sample", settings, notes, ledger)


def sample_settings(config: Any, pool: np.ndarray) -> SampleDPSettings:
    dp = config.dp
    delta = resolve_delta(dp.delta, max(1, int(pool.sum())), "training examples")
    return SampleDPSettings(clip=parse_clip(dp.clip), noise_multiplier=dp.noise_multiplier or 0.0,
                            batch_size=config.batch_size, local_steps=config.local_steps,
                            local_epochs=config.local_epochs, delta=delta, grad_sample_mode=dp.grad_sample)


def calibrate_sample(config: Any, settings: SampleDPSettings, ledger: SampleLedger,
                     notes: list[str]) -> SampleDPSettings:
    """Z for --dp sample: given, or calibrated to --dp-epsilon at the worst client's rate and local steps over
    every round (an upper bound on any client's epsilon)."""
    if config.dp.epsilon is None:
        return settings
    rate, steps = ledger.worst_case()
    sampling = Sampling("poisson", rate)
    z = noise_multiplier(config, Accountant, sampling, settings.delta, " of sample-level DP-SGD",
                         rounds_to_steps=lambda r: r * steps)
    if config.dp.noise_multiplier is None:
        notes.append(f"noise multiplier calibrated to --dp-epsilon {config.dp.epsilon} for the worst client "
                     f"(rate {rate:.6g}, {steps} steps per round, every round): a bound for every client")
    return SampleDPSettings(**{**settings.__dict__, "noise_multiplier": z})


class SamplePlan(PrivacyPlan):
    def __init__(self, level: str, settings: SampleDPSettings, notes: list[str], ledger: SampleLedger):
        super().__init__(level, settings, notes)
        self.ledger = ledger
        self.per_client: list[tuple] = []

    def details(self, algorithm: Any, rounds: int) -> dict[str, Any]:
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
                         "local step, per-example clipping " + CLIPPING[s.grad_sample_mode],
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
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["client", "examples", "sampling_rate", "steps", "rounds", "epsilon_pld", "epsilon_rdp"])
        writer.writerows(self.per_client)
        return out.getvalue()

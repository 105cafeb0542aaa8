"""`--dp client`: DP-FedAvg (McMahan et al. 2018): each client's update clipped, Gaussian noise on the sum,
accounted over the sampler's client sampling; `--dp-clip adaptive` follows Andrew et al. 2021."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from fednlp.errors import UserError
from fednlp.privacy.accounting import Accountant, Sampling
from fednlp.privacy.client_dp import ClientDP, finite_or_none, with_client_dp
from fednlp.privacy.mechanisms import DPMechanism, register_dp_mechanism
from fednlp.privacy.options import parse_clip
from fednlp.privacy.plan import PrivacyPlan, noise_multiplier, resolve_delta
from fednlp.privacy.settings import ClientDPSettings

# Andrew et al. 2021 (Sec. 4): the clipped count's noise std sigma_b = M / 20 in clients.
COUNT_STDDEV_PER_CLIENT = 1 / 20


@register_dp_mechanism("client")
class ClientLevel(DPMechanism):
    help = "DP-FedAvg: clip each client's update, noise the sum"
    adaptive_clip = True

    def privatize(self, algorithm: Any, config: Any, sampler: Any, sizes: np.ndarray, pool: np.ndarray,
                  active_of: Callable[[int], Any]) -> tuple[Any, PrivacyPlan]:
        settings, notes = client_settings(config, sampler, pool)
        return with_client_dp(type(algorithm), settings)(config), ClientPlan("client", settings, notes)


def client_settings(config: Any, sampler: Any, pool: np.ndarray) -> tuple[ClientDPSettings, list[str]]:
    dp = config.dp
    n, k = len(pool), config.clients_per_round
    notes: list[str] = []
    kind, accounting = sampler.privacy_sampling, "exact"
    if kind == "poisson":
        sampling = Sampling("poisson", k / n)
    elif kind == "fixed_size":
        sampling = Sampling("fixed_size", k / n, n, k)
    elif dp.accept_sampler_bound and sampler.inclusion_probabilities(pool, k) is not None:
        q = float(np.max(sampler.inclusion_probabilities(pool, k)))
        sampling, accounting = Sampling("poisson", q), "heuristic"
        notes.append(f"sampler {config.sampler} has no exact DP accounting: epsilon_heuristic is Poisson sampling's "
                     f"at its largest inclusion probability {q:.6g} (--dp-accept-sampler-bound), a heuristic that "
                     f"nothing proves an upper bound; the run has no proven epsilon")
    else:
        raise UserError(f"--dp client with --sampler {config.sampler}: this sampler has no exact privacy accounting; "
                        f"use --sampler poisson or uniform, or pass --dp-accept-sampler-bound true to account with "
                        f"its largest inclusion probability as a Poisson rate")
    expected = float(sampler.expected_cohort_size(pool, k))
    noise_cohort = float(dp.noise_cohort_size or expected)
    deployment = deployment_delta = None
    if dp.noise_cohort_size:
        # The deployment's population: M' clients per round at the same rate q. Its delta follows it, and a
        # given --dp-delta must suit both populations (the larger one's 1/N is the stricter).
        deployment = max(n, round(n * dp.noise_cohort_size / k))
        deployment_delta = resolve_delta(dp.delta, deployment, "clients")
        notes.append(f"noise added as if {dp.noise_cohort_size} clients took part per round: deployment_epsilon "
                     f"is that of a deployment of {deployment} clients sampled at the same rate q={k / n:.6g} (at "
                     f"deployment_delta); epsilon is that of the model this run releases, whose noise multiplier "
                     f"is only Z M / M'")
    delta = resolve_delta(dp.delta, n, "clients")
    clip = parse_clip(dp.clip)
    count_stddev = 0.0
    # --dp-epsilon calibrates Z for the deployment when there is one (the simulation studies its utility).
    z = noise_multiplier(config, Accountant, sampling, deployment_delta or delta, " of client-level DP")
    if clip is None and z > 0:
        count_stddev = COUNT_STDDEV_PER_CLIENT * noise_cohort
        if z >= 2 * count_stddev:
            raise UserError(f"--dp-clip adaptive: noise multiplier {z:.4g} (from {'--dp-epsilon' if dp.noise_multiplier is None else '--dp-noise-multiplier'}) "
                            f"must stay below 2 sigma_b = {2 * count_stddev:.4g} (sigma_b = cohort/20, Andrew et al. "
                            f"2021); raise --clients-per-round (or --dp-noise-cohort-size), or use a fixed --dp-clip")
    update_z = z if count_stddev == 0 else (z ** -2 - (2 * count_stddev) ** -2) ** -0.5
    settings = ClientDPSettings(clip=clip, clip_init=dp.clip_init, noise_multiplier=z,
                                update_noise_multiplier=update_z, count_stddev=count_stddev,
                                target_quantile=dp.target_quantile, clip_lr=dp.clip_lr,
                                expected_cohort_size=expected, noise_cohort_size=noise_cohort, sampling=sampling,
                                delta=delta, accounting=accounting, deployment_clients=deployment,
                                deployment_delta=deployment_delta)
    return settings, notes


class ClientPlan(PrivacyPlan):
    def details(self, algorithm: ClientDP, rounds: int) -> dict[str, Any]:
        s: ClientDPSettings = self.settings
        accountant = algorithm.accountant  # the run's per-round series: the last round's line equals this
        rdp, pld = accountant.epsilon_rdp(rounds, s.delta), accountant.epsilon_pld(rounds, s.delta)
        epsilon = finite_or_none(pld if pld is not None else rdp)
        out: dict[str, Any] = {
            "mechanism": "DP-FedAvg (McMahan et al. 2018): per-client L2 clipping, Gaussian noise on the sum, "
                         "divided by the expected cohort size",
            "sampling": s.sampling.kind, "sampling_description": s.sampling.describe(), "q": s.sampling.q,
            "steps": rounds, "expected_cohort_size": s.expected_cohort_size,
            "noise_cohort_size": s.noise_cohort_size,
            "epsilon": epsilon, "epsilon_rdp": finite_or_none(rdp), "epsilon_pld": finite_or_none(pld),
            "released_noise_multiplier": s.released_noise_multiplier,
            "neighbouring": "add or remove one client" if s.sampling.kind == "poisson" else
                            "replace one client (sensitivity 2C; PLD has no fixed-size event: epsilon is RDP's)",
        }
        if s.deployment_clients is not None:
            out["deployment_epsilon"] = finite_or_none(algorithm.deployment_accountant.epsilon(rounds,
                                                                                           s.deployment_delta))
            out.update(deployment_delta=s.deployment_delta, deployment_clients=s.deployment_clients)
        if s.accounting == "heuristic":  # no proven epsilon: the numbers are named for what they are
            out.update(epsilon=None, epsilon_rdp=None, epsilon_pld=None, epsilon_heuristic=epsilon)
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

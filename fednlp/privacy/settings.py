"""The resolved DP settings of a run (after calibration): frozen, handed to the mechanisms and the record."""

from __future__ import annotations

from dataclasses import dataclass

from fednlp.privacy.accounting import Sampling


@dataclass(frozen=True)
class ClientDPSettings:
    """Client level. `clip` None = adaptive from `clip_init`. `noise_multiplier` is what the accountant sees;
    `update_noise_multiplier` is the update's own (raised under adaptive clipping: Andrew et al. 2021, Thm 1),
    `count_stddev` the clipped count's noise std. Noise is added as if `noise_cohort_size` clients took part
    while the sum is divided by `expected_cohort_size`, the sampler's mean cohort size."""

    clip: float | None
    clip_init: float
    noise_multiplier: float
    update_noise_multiplier: float
    count_stddev: float
    target_quantile: float
    clip_lr: float
    expected_cohort_size: float
    noise_cohort_size: float
    sampling: Sampling
    delta: float
    # "exact", or "heuristic" (--dp-accept-sampler-bound: a sampler accounted as Poisson at its largest
    # inclusion probability, which nothing proves an upper bound).
    accounting: str = "exact"
    # --dp-noise-cohort-size: the imagined deployment's population and delta (None: no such deployment).
    deployment_clients: int | None = None
    deployment_delta: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.clip is None

    @property
    def released_noise_multiplier(self) -> float:
        """The noise multiplier of the model this run releases: its noise on the sum is Z C M / M' (M the
        expected cohort, M' = --dp-noise-cohort-size), so Z M / M' against a sensitivity of C. Z itself is the
        deployment's, where M' clients take part."""
        return self.noise_multiplier * self.expected_cohort_size / self.noise_cohort_size


@dataclass(frozen=True)
class SampleDPSettings:
    """Sample level: DP-SGD inside each client, per-example clip `clip`, noise std `noise_multiplier` * clip on
    the summed gradient, Poisson batches of expected size `batch_size` (at most the client's examples)."""

    clip: float
    noise_multiplier: float
    batch_size: int
    local_steps: int | None
    local_epochs: float | None
    delta: float
    grad_sample_mode: str = "hooks"  # or "ghost": Opacus's ghost clipping (sample_dp.py)

"""Client-level DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models"), composed over any server algorithm: each client's update is clipped to L2 norm C, the clipped
updates are summed with equal weights, N(0, (Z C)^2) noise is added to the sum once per round, the sum is
divided by the expected cohort size, and the wrapped algorithm's server step (FedAvg, FedAvgM, FedAdam...)
steps on that noisy mean. The noise comes from the round context's generator: every rank adds the same.

Adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with Adaptive Clipping", Alg. 1
and Thm. 1): each client reports b_i = 1[||update_i|| <= C] in a slot of the round's Allreduce, centred to
b_i - 1/2 (sensitivity 1/2) and noised with std sigma_b; b = noised sum / M + 1/2 is the noised fraction of
unclipped clients and C <- C exp(-eta (b - gamma)): C shrinks while more than a fraction gamma of the
clients are unclipped and grows otherwise, converging to the gamma-quantile of the update norms. The
update's own noise multiplier is raised to (Z^-2 - (2 sigma_b)^-2)^-1/2 so that the round, update and
count together, is a Gaussian mechanism with noise multiplier Z (what the accountant sees).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from fednlp.algorithms.interface import Algorithm
from fednlp.privacy.accounting import Accountant
from fednlp.privacy.release import scrub_round
from fednlp.privacy.settings import ClientDPSettings
from fednlp.run.random_streams import Stream, round_generator

if TYPE_CHECKING:
    from fednlp.algorithms.interface import ClientUpdate, RoundContext

UNCLIPPED, CONTRIBUTED = "dp_unclipped", "dp_contributed"


class ClientDP(Algorithm):
    """Put before an Algorithm class by `with_client_dp` (its MRO: ClientDP, the algorithm, Algorithm): its
    hooks clip and noise, then defer to the algorithm's own (super()). It adds no client optimizer or gradient
    hook, so the sparse embedding path stays on (ClientUpdate.norm and scale_ are exact over the sparse rows)."""

    dp: ClassVar[ClientDPSettings]
    # The noisy sum is divided by the expected cohort size whatever came: an empty (Poisson) round still
    # adds its noise and steps, and a skipped client is not renormalised away (Algorithm.fixed_denominator).
    fixed_denominator: ClassVar[bool] = True

    def __init__(self, config: Any):
        super().__init__(config)  # type: ignore[call-arg]
        self.clip = self.dp.clip if self.dp.clip is not None else self.dp.clip_init
        # The released model's accounting (its own noise multiplier), and the imagined deployment's when
        # --dp-noise-cohort-size sets one (ClientDPSettings.released_noise_multiplier).
        self.accountant = Accountant(self.dp.released_noise_multiplier, self.dp.sampling, incremental=True)
        self.deployment_accountant = (Accountant(self.dp.noise_multiplier, self.dp.sampling, incremental=True)
                                      if self.dp.deployment_clients is not None else None)
        self._record: dict[str, Any] = {}
        self.noise_seed: int | None = None  # --dp-release: OS entropy (PrivacyPlan.start); else the round's generator

    def process_client_update(self, update: ClientUpdate, ctx: RoundContext) -> None:
        super().process_client_update(update, ctx)  # type: ignore[misc]
        norm = update.norm()
        if self.dp.adaptive:
            update.add(UNCLIPPED, 1.0 if norm <= self.clip else 0.0)
            update.add(CONTRIBUTED, 1.0)
        if norm > self.clip:
            update.scale_(self.clip / norm)
        update.weight = 1.0 / self.dp.expected_cohort_size

    def server_step(self, global_flat: torch.Tensor, aggregate: torch.Tensor, ctx: RoundContext) -> None:
        dp = self.dp
        # Noise on the sum with std z C M / M' is, on the mean, z C / M' (M' = M unless --dp-noise-cohort-size).
        std = dp.update_noise_multiplier * self.clip / dp.noise_cohort_size
        generator = (ctx.generator if self.noise_seed is None
                     else round_generator(self.noise_seed, ctx.round_idx, Stream.SERVER_NOISE))
        if std > 0:
            noise = torch.empty(aggregate.shape, dtype=torch.float32).normal_(0.0, std, generator=generator)
            aggregate.add_(noise.to(aggregate.device))
        self._record = {"dp_clip": self.clip} if dp.adaptive else {}
        if dp.adaptive:
            self._adapt_clip(ctx, generator)
        super().server_step(global_flat, aggregate, ctx)  # type: ignore[misc]

    def _adapt_clip(self, ctx: RoundContext, generator: torch.Generator) -> None:
        dp = self.dp
        centred = ctx.sums[UNCLIPPED] - 0.5 * ctx.sums[CONTRIBUTED]
        if dp.count_stddev > 0:
            # std on the sum scaled like the update's, so the fraction's noise is sigma_b / M'.
            scale = dp.count_stddev * dp.expected_cohort_size / dp.noise_cohort_size
            centred += float(torch.randn((), generator=generator, dtype=torch.float64)) * scale
        unclipped = centred / dp.expected_cohort_size + 0.5
        self.clip *= math.exp(-dp.clip_lr * (unclipped - dp.target_quantile))
        self._record["dp_unclipped_fraction"] = unclipped  # noised: private to publish

    def round_record(self, ctx: RoundContext) -> dict[str, Any]:
        """The round's DP numbers for metrics.jsonl: epsilon after round_idx + 1 rounds (rank 0 computes it)."""
        record = {**super().round_record(ctx), **self._record}
        if ctx.rank == 0:
            record.update(epsilon_record(self.accountant, ctx.round_idx + 1, self.dp.delta))
            if self.deployment_accountant is not None:
                record["dp_deployment_epsilon"] = finite_or_none(
                    self.deployment_accountant.epsilon(ctx.round_idx + 1, self.dp.deployment_delta))
            if self.dp.accounting == "heuristic":  # --dp-accept-sampler-bound: no proven epsilon
                record = {(f"{k}_heuristic" if k.startswith("dp_epsilon") else k): v for k, v in record.items()}
        return scrub_round(record) if self.config.dp.release else record

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dp_clip": self.clip}  # type: ignore[misc]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.clip = float(state.pop("dp_clip", self.clip))
        super().load_state_dict(state)  # type: ignore[misc]


def epsilon_record(accountant: Accountant, steps: int, delta: float) -> dict[str, Any]:
    rdp, pld = accountant.epsilon_rdp(steps, delta), accountant.epsilon_pld(steps, delta)
    return {"dp_epsilon": finite_or_none(pld if pld is not None else rdp), "dp_epsilon_rdp": finite_or_none(rdp),
            "dp_epsilon_pld": finite_or_none(pld)}


def finite_or_none(value: float | None) -> float | None:
    """JSON has no infinity: an unbounded epsilon (no noise) is written as null."""
    return None if value is None or not math.isfinite(value) else value


def with_client_dp(algorithm_cls: type, settings: ClientDPSettings) -> type:
    """`algorithm_cls` with client-level DP: a subclass whose hooks run ClientDP's before the algorithm's."""
    slots = tuple(algorithm_cls.slots) + ((UNCLIPPED, CONTRIBUTED) if settings.clip is None else ())
    return type(f"{algorithm_cls.__name__}WithClientDP", (ClientDP, algorithm_cls), {"dp": settings, "slots": slots})

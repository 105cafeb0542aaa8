"""The DP options (DPOptions, TrainConfig's `dp` section) and their checks that need nothing but the config
(TrainConfig.validate calls DPOptions.validate).

What needs the partition (the number of clients, the sampler's accounting, an epsilon that can be met)
is checked by fednlp/privacy/plan.py, still before any training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from fednlp.errors import UserError
from fednlp.options import option
from fednlp.privacy.mechanisms import DP_MECHANISMS, NONE, DPMechanism, dp_choices, dp_help

ADAPTIVE = "adaptive"


def parse_clip(text: str | None) -> float | None:
    """--dp-clip: a positive number (inf only means 'never clip'), 'adaptive' -> None."""
    if text is None:
        raise UserError("--dp needs --dp-clip (a positive clip norm, or 'adaptive')")
    if str(text).strip().lower() == ADAPTIVE:
        return None
    try:
        clip = float(text)
    except ValueError:
        raise UserError(f"--dp-clip must be a positive number or 'adaptive', got {text!r}") from None
    if math.isnan(clip) or clip <= 0:
        raise UserError(f"--dp-clip must be a positive number or 'adaptive', got {text!r}")
    return clip


#: --dp-grad-sample: Opacus's per-example gradients (hooks), its ghost clipping (norms only), or torch.func's
#: vmap of grad over the trainable weights (func: fednlp/privacy/per_example.py).
GRAD_SAMPLE_MODES = ("hooks", "ghost", "func")


@dataclass
class DPOptions:
    """The --dp options of a federated run (TrainConfig.dp): flat flags `--dp`, `--dp-clip`, ... on the
    command line, a `dp:` section in YAML and config.yaml (fednlp/options.py). `mechanism` names a registered
    mechanism (fednlp/privacy/mechanisms.py) or none."""

    FLAG_PREFIX: ClassVar[str] = "dp_"

    mechanism: str = option(dp_help, default=NONE, name="dp")
    clip: str | None = option("DP clip norm C (a positive number), or 'adaptive' (client level: Andrew et al. 2021)")
    clip_init: float = option("--dp-clip adaptive: the initial clip norm", default=0.1)
    noise_multiplier: float | None = option("DP noise multiplier Z (noise std = Z C); or give --dp-epsilon")
    epsilon: float | None = option("DP budget: calibrate Z to it (or, with --dp-noise-multiplier, refuse more "
                                   "rounds than it allows)")
    delta: float | None = option("DP delta, below 1/N (default 1/N^1.1: N clients at client level, training "
                                 "examples at sample level; with --dp-noise-cohort-size, the deployment's clients)")
    target_quantile: float = option("--dp-clip adaptive: the fraction of clients left unclipped", default=0.5)
    clip_lr: float = option("--dp-clip adaptive: the geometric learning rate of the clip norm", default=0.2)
    noise_cohort_size: int | None = option("client level: noise as if this many clients took part per round; "
                                           "epsilon stays the released model's, deployment_epsilon is that "
                                           "deployment's (--dp-epsilon calibrates the deployment's)")
    grad_sample: str = option("--dp sample: per-example clipping by Opacus's per-example gradients (hooks) or by "
                              "ghost clipping (ghost: per-example norms without the gradients, two backward "
                              "passes), or by torch.func (func: vmap of grad over the trainable weights only; "
                              "docs/privacy.md)", default="func")
    release: bool = option("a DP release: the run directory holds only protected outputs (no train_loss, per-client "
                           "values or checkpoints) and the noise is seeded from OS entropy, not --seed "
                           "(docs/privacy.md)", default=False)
    accept_sampler_bound: bool = option("allow --dp with a sampler that has no exact accounting, bounded with its "
                                        "largest inclusion probability as a Poisson rate", default=False)

    @property
    def enabled(self) -> bool:
        return self.mechanism != NONE

    def validate(self, config: Any) -> None:
        """What every mechanism shares, then the mechanism's own checks; `config` is the run (TrainConfig).
        Each number's range (--dp-noise-cohort-size positive, ...) and each option used only with --dp (or
        with one mechanism, or --dp-clip adaptive) are checked with every option (fednlp/config_checks.py)."""
        choices = dp_choices()
        if self.mechanism not in choices:
            raise UserError(f"--dp must be one of {', '.join(choices)}, got {self.mechanism!r}")
        if self.release:
            self._check_release(config)
        if not self.enabled:
            return
        mechanism = DP_MECHANISMS.get(self.mechanism)()
        clip = parse_clip(self.clip)
        z, eps, delta = self.noise_multiplier, self.epsilon, self.delta
        if z is None and eps is None:
            raise UserError(f"--dp {self.mechanism} needs --dp-noise-multiplier Z or a budget --dp-epsilon E")
        if z is not None and z < 0:
            raise UserError(f"--dp-noise-multiplier must be 0 or more, got {z}")
        if eps is not None and eps <= 0:
            raise UserError(f"--dp-epsilon must be positive, got {eps}")
        if delta is not None and not 0 < delta < 1:
            raise UserError(f"--dp-delta must lie strictly between 0 and 1, got {delta}")
        if clip is not None and math.isinf(clip) and (z is None or z > 0):
            raise UserError("--dp-clip inf (no clipping) is only allowed with --dp-noise-multiplier 0 "
                            "(the noise std is Z C)")
        if clip is None:
            self._check_adaptive(mechanism)
        if self.grad_sample not in GRAD_SAMPLE_MODES:
            raise UserError(f"--dp-grad-sample must be one of {', '.join(GRAD_SAMPLE_MODES)}, got {self.grad_sample!r}")
        mechanism.check(self, config)

    def _check_release(self, config: Any) -> None:
        """--dp-release writes only protected outputs: refuse the options whose outputs are not (without --dp it
        is refused with every option out of its context: fednlp/config_checks.py CONTEXTS)."""
        unprotected = [("--eval-clients", "per-client test metrics and example counts (clients.csv)")
                       if getattr(config, "eval_clients", None) is not None else None,
                       ("--checkpoint-every", "checkpoints (weights, history and the clip before each round)")
                       if getattr(config, "checkpoint_every", None) is not None else None,
                       ("--on-nonfinite stop", "the diverging client's identity; use --on-nonfinite skip-client")
                       if getattr(config, "on_nonfinite", "stop") == "stop" else None]
        for flag, what in filter(None, unprotected):
            raise UserError(f"--dp-release cannot be combined with {flag}: it publishes {what} unprotected")

    def _check_adaptive(self, mechanism: DPMechanism) -> None:
        if not mechanism.adaptive_clip:
            takers = " or ".join(name for name, cls in DP_MECHANISMS.items() if cls.adaptive_clip) or "no mechanism"
            raise UserError(f"--dp-clip adaptive is for --dp {takers} only; --dp {self.mechanism} needs a number")
        if self.clip_init <= 0:
            raise UserError(f"--dp-clip-init must be positive, got {self.clip_init}")
        if not 0 < self.target_quantile < 1:
            raise UserError(f"--dp-target-quantile must lie strictly between 0 and 1, got {self.target_quantile}")
        if self.clip_lr <= 0:
            raise UserError(f"--dp-clip-lr must be positive, got {self.clip_lr}")

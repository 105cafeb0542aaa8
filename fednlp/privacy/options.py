"""The DP options' checks that need nothing but the config (TrainConfig.validate calls `check_dp_config`).

What needs the partition (the number of clients, the sampler's accounting, an epsilon that can be met)
is checked by fednlp/privacy/plan.py, still before any training.
"""

from __future__ import annotations

import math
from typing import Any

from fednlp.errors import UserError

LEVELS = ("none", "client", "sample")
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


#: --dp-grad-sample: Opacus's per-example gradients (hooks) or its ghost clipping (norms only).
GRAD_SAMPLE_MODES = ("hooks", "ghost")


def check_dp_config(config: Any) -> None:
    if config.dp not in LEVELS:
        raise UserError(f"--dp must be one of {', '.join(LEVELS)}, got {config.dp!r}")
    if config.dp == "none":
        return
    clip = parse_clip(config.dp_clip)
    z, eps, delta = config.dp_noise_multiplier, config.dp_epsilon, config.dp_delta
    if z is None and eps is None:
        raise UserError(f"--dp {config.dp} needs --dp-noise-multiplier Z or a budget --dp-epsilon E")
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
        if config.dp != "client":
            raise UserError("--dp-clip adaptive is for --dp client only; --dp sample needs a number")
        if config.dp_clip_init <= 0:
            raise UserError(f"--dp-clip-init must be positive, got {config.dp_clip_init}")
        if not 0 < config.dp_target_quantile < 1:
            raise UserError(f"--dp-target-quantile must lie strictly between 0 and 1, got {config.dp_target_quantile}")
        if config.dp_clip_lr <= 0:
            raise UserError(f"--dp-clip-lr must be positive, got {config.dp_clip_lr}")
    if config.dp_noise_cohort_size is not None:
        if config.dp != "client":
            raise UserError("--dp-noise-cohort-size is for --dp client only")
        if config.dp_noise_cohort_size <= 0:
            raise UserError(f"--dp-noise-cohort-size must be positive, got {config.dp_noise_cohort_size}")
    if config.dp_grad_sample not in GRAD_SAMPLE_MODES:
        raise UserError(f"--dp-grad-sample must be one of {', '.join(GRAD_SAMPLE_MODES)}, got {config.dp_grad_sample!r}")
    if config.dp == "sample":
        if config.precision != "fp32":
            raise UserError(f"--dp sample needs --precision fp32 (per-example gradients), got {config.precision}")
        if config.max_grad_norm is not None:
            raise UserError("--dp sample clips each example's gradient to --dp-clip; drop --max-grad-norm")

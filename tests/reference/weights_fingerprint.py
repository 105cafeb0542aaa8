"""A compact, order-sensitive fingerprint of a model's weights, for "the weights did not move" tests.

Per parameter: its L2 norm and its dot product with a fixed pattern (sin of the position), in float64.
Two models with equal weights have equal fingerprints; a change in any weight moves the dot products.
"""

from __future__ import annotations

import torch


def fingerprint(model: torch.nn.Module) -> dict[str, list[float]]:
    out = {}
    for name, p in model.named_parameters():
        x = p.detach().double().flatten().cpu()
        pattern = torch.sin(torch.arange(x.numel(), dtype=torch.float64) * 0.618)
        out[name] = [float(x.norm()), float(x @ pattern)]
    return out

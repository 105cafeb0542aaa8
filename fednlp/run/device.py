"""Devices and mixed precision: rank r uses GPU (local rank mod GPU count) when there are GPUs."""

from __future__ import annotations

import contextlib

import torch

from fednlp.errors import UserError


def pick_device(local_rank: int, requested: str = "auto") -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if requested != "cpu" and torch.cuda.is_available():
        index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on GPU; full precision on the CPU (where autocast buys nothing here)."""
    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16 is not supported by this GPU; use fp16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)

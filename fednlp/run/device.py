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


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision this device cannot run, before a run writes anything (autocast raises the same later)."""
    if precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a GPU (fp16 matmuls are slow on a CPU and need a GradScaler); "
                        "on the CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16 is not supported by this GPU; use fp16 or fp32")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on GPU, bf16 autocast on the CPU; fp32: none.

    On a CPU with AVX512-BF16 or AMX (oneDNN's bf16 kernels) it pays: on this project's machine a MiniLM step
    1.3x, a cached-frozen run 1.7x, the frozen cache's build 2.1x (benchmarks/README.md, "Cached frozen
    layers"); without them it still runs, emulated, and slower."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(device, precision)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)

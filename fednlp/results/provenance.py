"""Where a run's numbers came from: the `provenance` block of result.json (train and centralized).

A record already says what was trained (config, seed, data and partition checksums, library versions); this
block says how and where, so that two records that disagree can be told apart by something other than
guesswork: the command line, the script and profile that launched it (FEDNLP_SCRIPT / FEDNLP_PROFILE, set by
run_scripts/results_common.sh), the environment settings that change floating-point results (threads, hash
seed, cuBLAS workspace, visible GPUs, torch's deterministic flags), the CPU model and GPU name, the fednlp
checkout's commit with a dirty-tree flag and a hash of its diff, and a checksum of the final weights (two
runs with the same checksum trained the same model, bit for bit).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

#: Environment variables that can change a run's numbers (thread counts change reduction orders; the rest
#: change hashing, cuBLAS's algorithms or which GPU runs), recorded with null where unset.
RESULT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG",
              "CUDA_VISIBLE_DEVICES")
#: Set by run_scripts/results_common.sh: the script and PROFILE that launched the run.
SCRIPT_ENV, PROFILE_ENV = "FEDNLP_SCRIPT", "FEDNLP_PROFILE"


def run_provenance(model: torch.nn.Module, device: torch.device | str | None = None) -> dict[str, Any]:
    """The provenance block of a finished run whose final model is `model` (on `device`)."""
    return {
        "command": list(sys.argv),
        "script": os.environ.get(SCRIPT_ENV),
        "profile": os.environ.get(PROFILE_ENV),
        "env": {name: os.environ.get(name) for name in RESULT_ENV},
        "torch": torch_settings(),
        "cpu": cpu_model(),
        "gpu": gpu_name(device),
        "git": git_state(),
        "weights_sha256": weights_sha256(model),
    }


def torch_settings() -> dict[str, Any]:
    """The torch settings that decide reduction order and kernel choice."""
    return {
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo's first "model name"), else what platform says, else None."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_name(device: torch.device | str | None) -> str | None:
    """The GPU the run used (None on the CPU)."""
    if device is None or torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.device(device))


def git_state(root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The fednlp checkout's commit, whether its tree differs from that commit (tracked changes or untracked
    files), and the sha256 of `git diff HEAD`; None when fednlp does not run from a git checkout (an installed
    package), since another repository around it would say nothing about fednlp's code."""
    import fednlp

    source = Path(fednlp.__file__).resolve().parent.parent if root is None else Path(root).resolve()
    toplevel = _git(source, "rev-parse", "--show-toplevel")
    if toplevel is None or Path(toplevel.decode().strip()).resolve() != source:
        return None
    commit = _git(source, "rev-parse", "HEAD")
    diff = _git(source, "diff", "HEAD", "--binary")
    status = _git(source, "status", "--porcelain")
    if commit is None or diff is None or status is None:
        return None
    return {"commit": commit.decode().strip(), "dirty": bool(status.strip()),
            "diff_sha256": hashlib.sha256(diff).hexdigest()}


def _git(cwd: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the model's state dict: each tensor's name, dtype, shape and bytes, in name order. Equal
    checksums mean bit-identical weights (and buffers); the device they sit on does not count."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()

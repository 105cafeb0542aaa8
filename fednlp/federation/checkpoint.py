"""Checkpoints of a federated run: everything needed to continue after the last completed round.

What a checkpoint holds: the global trainable weights (flat), the algorithm's server state, the round
count and the metrics so far. Nothing else is needed: cohorts, client batch orders and dropout seeds
are pure functions of (seed, round, client), and frozen weights are rebuilt from the seed.

On disk: `checkpoints/round-000010.pt`, written to a temporary file and renamed, then its sha256 in
`round-000010.sha256` (written the same way). A checkpoint whose checksum file is missing or does not
match (a crash mid-write, a truncated copy) is skipped with a warning and the previous one is used.

When: `Checkpointing`, a callback of the round loop (never under --dp-release); a resumed run starts from
`restore`, after `check_resume` has refused a change of what a DP run's accounting rests on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from fednlp.errors import UserError
from fednlp.federation.callbacks import Callback, RoundEnd
from fednlp.files import atomic_write_bytes

if TYPE_CHECKING:
    from fednlp.federation.runtime import Federation

KEEP = 2  # checkpoints kept on disk; older ones are deleted once a newer one is complete


@dataclass
class Checkpoint:
    round: int  # completed rounds
    global_weights: torch.Tensor
    algorithm_state: dict[str, Any]
    history: list[dict[str, Any]]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "global_weights": self.global_weights.cpu(), "algorithm_state": self.algorithm_state,
                "history": self.history, "elapsed_s": self.elapsed_s, "format": 1}


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> Path:
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(checkpoint.to_dict(), buffer)
    payload = buffer.getvalue()
    path = directory / f"round-{checkpoint.round:06d}.pt"
    _atomic_write(path, payload)
    _atomic_write(path.with_suffix(".sha256"), hashlib.sha256(payload).hexdigest().encode())
    for old in sorted(directory.glob("round-*.pt"))[:-KEEP]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return path


def load_latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint whose checksum verifies; corrupt ones are reported and skipped."""
    for path in sorted(checkpoint_dir(run_dir).glob("round-*.pt"), reverse=True):
        problem = _verify(path)
        if problem:
            print(f"fednlp: warning: checkpoint {path} {problem}; using the previous one", file=sys.stderr, flush=True)
            continue
        state = torch.load(path, map_location="cpu", weights_only=False)
        return Checkpoint(round=state["round"], global_weights=state["global_weights"],
                          algorithm_state=state["algorithm_state"], history=state["history"],
                          elapsed_s=state["elapsed_s"])
    return None


def _verify(path: Path) -> str | None:
    checksum = path.with_suffix(".sha256")
    if not checksum.exists():
        return "has no checksum file (incomplete write)"
    expected = checksum.read_text().strip()
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    return None if actual == expected else "fails its sha256 check (corrupt or truncated)"


def _atomic_write(path: Path, payload: bytes) -> None:
    atomic_write_bytes(path, payload, durable=True)


class Checkpointing(Callback):
    """--checkpoint-every N (and after the last round), and always when the run stops on a signal. Every rank
    has it; rank 0 writes."""

    def __init__(self, federation: Federation):
        self.federation = federation

    def on_round_end(self, event: RoundEnd) -> None:
        every = self.federation.config.checkpoint_every
        if self.federation.config.dp.release:  # --dp-release writes no checkpoint, not even on a signal
            return
        if event.stopping or (every and (event.round % every == 0 or event.round == event.total_rounds)):
            write_checkpoint(self.federation, event.round)


def write_checkpoint(federation: Federation, completed_rounds: int) -> None:
    """The global weights, the algorithm's server state and the history after `completed_rounds` (rank 0)."""
    session = federation.session
    if session.comm.rank != 0:
        return
    start = time.perf_counter()
    save_checkpoint(session.run_dir, Checkpoint(
        round=completed_rounds, global_weights=federation.global_flat, algorithm_state=federation.algorithm.state_dict(),
        history=federation.history, elapsed_s=time.perf_counter() - session.started))
    session.timer.add("checkpoint", start)


# What a resumed DP run may not change: its accounting (a pure function of the rounds done) would re-account the
# rounds already run with the new values. Sample-level rates and steps follow the batch plan's options.
DP_FIXED = ("clients_per_round", "sampler", "seed", "method")
SAMPLE_DP_FIXED = ("batch_size", "local_steps", "local_epochs")


def check_resume(config: Any) -> None:
    """Refuse (UserError, before anything is written) a resume that changes what a DP run's accounting of the
    rounds already done rests on: any DP option, the cohort size, the sampler (and the seed and partition that
    draw the cohorts), DP-SGD's batch plan, or the round count of a run calibrated to --dp-epsilon (its noise
    multiplier was calibrated for those rounds). Re-accounting the history exactly is not attempted."""
    path = Path(config.out) / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # the resume itself reports an unreadable run directory
    now = dataclasses.asdict(config)
    saved_dp = saved.get("dp")
    if not isinstance(saved_dp, dict):  # an older flat file: `dp: client`, `dp_clip: 1.0`, ...
        saved_dp = {"mechanism": saved_dp or "none", **{k[3:]: v for k, v in saved.items() if k.startswith("dp_")}}
    was_dp, is_dp = saved_dp.get("mechanism", "none") != "none", config.dp.enabled
    if not (was_dp or is_dp):
        return
    changed = [(f"--dp{'' if key == 'mechanism' else '-' + key.replace('_', '-')}", saved_dp.get(key), value)
               for key, value in now["dp"].items() if key in saved_dp and saved_dp[key] != value]
    fixed = DP_FIXED + (SAMPLE_DP_FIXED if "sample" in (saved_dp.get("mechanism"), config.dp.mechanism) else ())
    changed += [(f"--{key.replace('_', '-')}", saved[key], now[key]) for key in fixed
                if key in saved and key in now and saved[key] != now[key]]
    if saved_dp.get("noise_multiplier") is None and saved_dp.get("epsilon") is not None \
            and saved.get("rounds") != config.rounds:
        changed.append(("--rounds", saved.get("rounds"), config.rounds))
    if changed:
        flag, old, new = changed[0]
        raise UserError(f"--resume {config.out}: a DP run cannot change {flag} ({old} -> {new}): its privacy "
                        f"accounting covers the rounds already run with the old value"
                        + (" (its noise multiplier was calibrated to --dp-epsilon for that many rounds)"
                           if flag == "--rounds" else "") + "; resume with the run's own options or start a new run")


def restore(federation: Federation) -> tuple[int, list[dict[str, Any]]]:
    """Continue from the run directory's newest complete checkpoint (read by rank 0, sent to all): the rounds
    it completed and their history."""
    session = federation.session
    checkpoint = load_latest_checkpoint(session.run_dir) if session.comm.rank == 0 else None
    checkpoint = session.comm.broadcast(checkpoint)
    if checkpoint is None:
        raise UserError(f"--resume {session.run_dir}: no complete checkpoint in {checkpoint_dir(session.run_dir)} "
                        "(was the run started with --checkpoint-every?)")
    if checkpoint.global_weights.numel() != federation.flat.numel:
        raise UserError(f"--resume {session.run_dir}: the checkpoint holds {checkpoint.global_weights.numel()} "
                        f"weights, this model {federation.flat.numel}; was the model or --freeze-layers changed?")
    federation.global_flat.copy_(checkpoint.global_weights.to(federation.global_flat.device))
    federation.flat.flat.copy_(federation.global_flat)
    federation.algorithm.load_state_dict(checkpoint.algorithm_state)
    session.started = time.perf_counter() - checkpoint.elapsed_s
    if session.writer is not None:
        session.writer.rewrite_metrics(checkpoint.history)
        session.writer.truncate_clients(checkpoint.round)
    return checkpoint.round, checkpoint.history

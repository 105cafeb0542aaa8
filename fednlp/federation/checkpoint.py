"""Checkpoints of a federated run: everything needed to continue after the last completed round.

What a checkpoint holds: the global trainable weights (flat), the algorithm's server state, the round
count and the metrics so far. Nothing else is needed: cohorts, client batch orders and dropout seeds
are pure functions of (seed, round, client), and frozen weights are rebuilt from the seed.

On disk: `checkpoints/round-000010.pt`, written to a temporary file and renamed, then its sha256 in
`round-000010.sha256` (written the same way). A checkpoint whose checksum file is missing or does not
match (a crash mid-write, a truncated copy) is skipped with a warning and the previous one is used.

When: `Checkpointing`, a callback of the round loop; a resumed run starts from `restore`.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

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

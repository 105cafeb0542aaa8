"""What a run does beside the round's math: progress, the metrics file, TensorBoard, checkpoints.

The round loop calls `on_round_end` of each callback after every round (with that round's record: the
training loss always, the evaluation metrics on evaluation rounds) and `on_train_end` once. Callbacks
never change the model or the algorithm's state, so a run with or without them trains the same weights.
Only rank 0 gets the callbacks that write or print (see `default_callbacks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from tqdm import tqdm

from fednlp.errors import UserError


@dataclass(frozen=True)
class RoundEnd:
    """A finished round: `record` is its metrics.jsonl line; `stopping` when the run stops after it."""

    round: int  # completed rounds
    total_rounds: int
    record: dict[str, Any]
    evaluated: bool
    stopping: bool


class Callback:
    def on_round_end(self, event: RoundEnd) -> None:
        return None

    def on_train_end(self) -> None:
        return None


class Progress(Callback):
    """A bar over rounds, with the training loss, drawn only on a terminal (tqdm's disable=None); a line per
    evaluation (like HF's Trainer), also in logs."""

    def __init__(self, start_round: int, total_rounds: int, enabled: bool):
        self.bar = tqdm(total=total_rounds, initial=start_round, desc="rounds", unit="round",
                        disable=None if enabled else True)

    def on_round_end(self, event: RoundEnd) -> None:
        loss = event.record.get("train_loss")
        if loss is not None:
            self.bar.set_postfix(train_loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)
        if event.evaluated:
            shown = " ".join(f"{k}={v:.4f}" for k, v in event.record.items()
                             if k not in ("round", "elapsed_s") and isinstance(v, (int, float)))
            self.bar.write(f"round {event.round}/{event.total_rounds}: {shown} ({event.record['elapsed_s']:.1f}s)")

    def on_train_end(self) -> None:
        self.bar.close()


class MetricsFile(Callback):
    """Appends each round's record to metrics.jsonl (a line per round; evaluation rounds carry the metrics)."""

    def __init__(self, append: Callable[[dict[str, Any]], None]):
        self.append = append

    def on_round_end(self, event: RoundEnd) -> None:
        self.append(event.record)


class TensorBoard(Callback):
    """Every number of every round's record as a scalar (`--report-to tensorboard`, HF Trainer's flag name);
    event files in RUN_DIR/tensorboard, the step being the round (centralized: the epoch).

    Each step appears once: a run resumed after round R hides the steps after R that the killed process wrote
    (purge_step R + 1); and since this callback runs before the checkpoint is written, a round checkpointed
    has its events written already (killed in between, the round is run and written again, the old events
    hidden)."""

    def __init__(self, log_dir: str, start_round: int = 0):
        self.writer = tensorboard_writer(log_dir, purge_step=start_round + 1 if start_round else None)

    def on_round_end(self, event: RoundEnd) -> None:
        for key, value in _scalars(event.record):
            self.writer.add_scalar(key, value, event.round)
        self.writer.flush()

    def on_train_end(self) -> None:
        self.writer.close()


def default_callbacks(session: Any, start_round: int, checkpointing: Callback) -> list[Callback]:
    """A run's callbacks: progress, the metrics file and TensorBoard on rank 0 only (the rank holding the run's
    writer), then checkpoints on every rank (rank 0 writes): what a checkpoint covers is logged before it."""
    config = session.config
    callbacks: list[Callback] = []
    if session.writer is not None:
        callbacks.append(Progress(start_round, config.rounds, enabled=not config.quiet))
    return [*callbacks, *record_callbacks(session, start_round), checkpointing]


def record_callbacks(session: Any, start_round: int = 0) -> list[Callback]:
    """What records a run's rounds (federated) or epochs (centralized), on rank 0: the metrics file, and
    TensorBoard with --report-to tensorboard."""
    if session.writer is None:
        return []
    callbacks: list[Callback] = [MetricsFile(session.writer.append_metrics)]
    if session.config.report_to == "tensorboard":
        callbacks.append(TensorBoard(str(session.writer.tensorboard_dir), start_round))
    return callbacks


def _scalars(record: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """The finite numbers of a record, nested blocks as 'block/key' (e.g. clients/worst10_mean)."""
    out = []
    for key, value in record.items():
        if isinstance(value, dict):
            out += _scalars(value, f"{prefix}{key}/")
        elif key != "round" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append((f"{prefix}{key}", float(value)))
    return out


def _summary_writer_class() -> Any:
    """torch.utils.tensorboard's SummaryWriter (it needs the tensorboard package installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--report-to tensorboard needs the `tensorboard` package: pip install tensorboard "
                        "(or pip install 'fednlp[tensorboard]')") from None
    return SummaryWriter


def check_reporter(report_to: str) -> None:
    """Refuse a reporter whose package is missing before the run writes anything (fednlp/run/preflight.py)."""
    if report_to == "tensorboard":
        _summary_writer_class()


def tensorboard_writer(log_dir: str, purge_step: int | None = None) -> Any:
    """A SummaryWriter on `log_dir`. `purge_step` S: the events of steps S and later that an earlier, killed
    process wrote are hidden from TensorBoard (a resumed run writes those steps again)."""
    return _summary_writer_class()(log_dir=log_dir, purge_step=purge_step)


REPORTERS = ("none", "tensorboard")

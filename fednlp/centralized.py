"""The centralized baseline: the same task, model and test set, trained on the union of all training data."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from fednlp.config import CentralizedConfig
from fednlp.errors import RunDiverged, UserError
from fednlp.fairness.augment import CopySelection
from fednlp.run.random_streams import Stream, run_rng
from fednlp.federation.callbacks import RoundEnd, record_callbacks
from fednlp.federation.communicator import LocalCommunicator, make_communicator
from fednlp.run.local_training import LocalTrainer, batch_plan
from fednlp.run.session import base_result, finish, open_session, path_stem


def default_run_name(config: CentralizedConfig) -> str:
    return f"{path_stem(config.data)}-centralized-{path_stem(config.model)}-seed{config.seed}"


def train_centralized(config: CentralizedConfig) -> dict[str, Any]:
    if make_communicator().world_size > 1:
        raise UserError("fednlp centralized runs on one process; start it without mpirun")
    session = open_session(config, LocalCommunicator(), default_run_name(config))
    train_rows = session.features.rows_of(np.asarray(session.data.train_index_list, dtype=np.int64))
    train_rows = CopySelection.of(config).rows(session.features, train_rows)  # --augment-fraction's copies
    trainer = LocalTrainer(session.model, session.task, session.features, config, session.device, session.timer)
    dropout_seed, chunks = centralized_batches(config, len(train_rows))
    torch.manual_seed(dropout_seed)
    history: list[dict[str, Any]] = []
    loop_start = time.perf_counter()
    callbacks = record_callbacks(session)  # metrics.jsonl; TensorBoard with --report-to tensorboard (rank 0)
    try:
        for chunk, batches in enumerate(chunks, start=1):
            trainer.train(train_rows, batches)
            train_loss = trainer.losses()[1]  # the mean batch loss of this chunk's steps
            if not math.isfinite(train_loss):
                raise RunDiverged(f"epoch {chunk}: the training loss is not finite (NaN or infinity)")
            last = chunk == len(chunks)
            if chunk % config.eval_every == 0 or last:
                metrics = session.evaluate(final=last)
                record = {"round": chunk, "elapsed_s": round(time.perf_counter() - session.started, 3),
                          "train_loss": train_loss, **metrics, **session.eval_setting(last)}
                history.append(record)
                for callback in callbacks:
                    callback.on_round_end(RoundEnd(chunk, len(chunks), record, evaluated=True, stopping=False))
                if session.writer is not None:
                    print(f"epoch {chunk}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
    finally:
        for callback in callbacks:
            callback.on_train_end()
    result = base_result(session)
    result.update(
        partition_method=None,
        algorithm="centralized",
        rounds=len(_chunks(config)),
        epochs=config.epochs if config.steps is None else None,
        steps=config.steps,
        clients_per_round=None,
        train_loop_s=round(time.perf_counter() - loop_start, 3),
        **trainer.totals(session.comm),
    )
    return finish(session, result, history)


def centralized_batches(config: CentralizedConfig, n_rows: int) -> tuple[int, list[list[np.ndarray]]]:
    """The dropout seed and each chunk's batches (positions into the training rows): pure in the config, so
    `fednlp audit` recomputes which examples the run used (fednlp/audit/members.py)."""
    rng = run_rng(config.seed, Stream.CENTRALIZED)
    dropout_seed = int(rng.integers(2**62))
    return dropout_seed, [batch_plan(n_rows, config.batch_size, rng, steps=steps, epochs=epochs)
                          for steps, epochs in _chunks(config)]


def _chunks(config: CentralizedConfig) -> list[tuple[int | None, float | None]]:
    """(steps, epochs) per training chunk, evaluated after each: whole epochs, or one chunk of fixed steps."""
    if config.steps is not None:
        return [(config.steps, None)]
    epochs = 1.0 if config.epochs is None else config.epochs
    return [(None, min(1.0, epochs - e)) for e in range(math.ceil(epochs))]

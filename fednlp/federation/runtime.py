"""The round loop. Every rank holds the same global model and server state; per round:

1. the cohort and its spread over ranks come from (seed, round) alone: no message;
2. a rank trains its clients one after another on ONE model: global weights copied in place, local
   steps, the update times its weight added into one flat buffer;
3. one in-place Allreduce of that buffer;
4. every rank applies the same server step, so all stay identical without a broadcast.

The buffer's last slot carries stop votes: a rank that got SIGINT/SIGTERM votes during the round, and
after the Allreduce every rank sees the same sum, so all stop after the same round with no extra message.

The sampler owns both the cohort and the weights (they must match for the aggregate to be unbiased), and
the weights are final coefficients: every rank knows them all, so no weight sum travels.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from fednlp.algorithms.registry import get_algorithm
from fednlp.algorithms.samplers import Sampler, get_sampler
from fednlp.config import TrainConfig
from fednlp.data.datafile import read_attributes
from fednlp.data.feature_cache import file_sha256
from fednlp.errors import RunInterrupted, UserError
from fednlp.federation.checkpoint import Checkpoint, load_latest_checkpoint, save_checkpoint
from fednlp.federation.client_updates import (DenseClientUpdates, SparseEmbeddingClientUpdates, sparse_embedding,
                                              touched_rows)
from fednlp.federation.clients import read_clients
from fednlp.federation.cohort import assign_to_ranks, round_rng
from fednlp.federation.communicator import make_communicator
from fednlp.federation.flat import FlatParameters
from fednlp.federation.local_training import LocalTrainer, batch_plan
from fednlp.federation.session import Session, base_result, finish, open_session, path_stem


def default_run_name(config: TrainConfig) -> str:
    return f"{path_stem(config.data)}-{config.method}-{config.algorithm}-{path_stem(config.model)}-seed{config.seed}"


def train_federated(config: TrainConfig, comm: Any = None, resume: bool = False) -> dict[str, Any]:
    comm = comm or make_communicator()
    # Bad names and options fail here, before any heavy work.
    algorithm = get_algorithm(config.algorithm)(config)
    sampler = get_sampler(config.sampler)()
    clients = read_clients(config.partition, config.method, len(read_attributes(config.data)["index_list"]),
                           config.data)
    if config.clients_per_round > clients.n_clients:
        raise UserError(f"--clients-per-round {config.clients_per_round} exceeds the {clients.n_clients} clients "
                        f"of {config.method!r}")
    session = open_session(config, comm, default_run_name(config), resume=resume)
    federation = Federation(session, algorithm, clients, sampler)
    start_round, history = federation.restore() if resume else (0, [])
    with stop_on_signals() as stop:
        history = federation.run(start_round, history, stop)
    result = base_result(session)
    result.update(
        partition_method=config.method,
        partition_sha256=file_sha256(str(config.partition)),
        algorithm=config.algorithm,
        sampler=config.sampler,
        rounds=config.rounds,
        clients_per_round=config.clients_per_round,
        n_clients=clients.n_clients,
        round_loop_s=round(federation.round_loop_s, 3),
        local_steps_total=int(sum(session.comm.allgather(federation.trainer.steps_done))),
        timing_s={k: round(v, 4) for k, v in sorted(session.timer.seconds.items())},
    )
    return finish(session, result, history)


class Federation:
    """Holds the flat global weights, the accumulation buffer and the local trainer for a whole run."""

    def __init__(self, session: Session, algorithm: Any, clients: Any, sampler: Sampler | None = None):
        self.session = session
        self.config: TrainConfig = session.config  # type: ignore[assignment]
        self.algorithm = algorithm
        self.sampler = sampler if sampler is not None else get_sampler(self.config.sampler)()
        self.clients = clients
        self.client_sizes = clients.sizes
        self.flat = FlatParameters(session.model)
        self.global_flat = self.flat.flat.clone()
        self.global_views = self.flat.views_of(self.global_flat)
        # The last slot holds this round's stop votes (see the module docstring).
        self.accumulator = torch.zeros(self.flat.numel + 1, dtype=torch.float32, device=session.device)
        self.trainer = LocalTrainer(session.model, session.task, session.features, self.config, session.device,
                                    session.timer, algorithm)
        embedding = sparse_embedding(session.model, self.flat, self.config, algorithm)
        self.sparse = embedding is not None
        self.client_updates = (SparseEmbeddingClientUpdates(self.flat, self.global_flat, embedding) if self.sparse
                               else DenseClientUpdates(self.flat, self.global_flat))
        self._rows: dict[int, np.ndarray] = {}
        self.round_loop_s = 0.0

    def client_rows(self, client: int) -> np.ndarray:
        if client not in self._rows:
            self._rows[client] = self.session.features.rows_of(self.clients.train[client])
        return self._rows[client]

    def run(self, start_round: int = 0, history: list[dict[str, Any]] | None = None,
            stop: StopFlag | None = None) -> list[dict[str, Any]]:
        config, session = self.config, self.session
        history = list(history or [])
        stop = stop or StopFlag()
        loop_start = time.perf_counter()
        bar = tqdm(range(start_round, config.rounds), desc="rounds", unit="round", initial=start_round,
                   total=config.rounds, disable=session.comm.rank != 0)
        for round_idx in bar:
            stopping = self.run_round(round_idx, stop.requested)
            done = round_idx + 1
            if done % config.eval_every == 0 or done == config.rounds:
                metrics = session.evaluate()
                record = {"round": done, "elapsed_s": round(time.perf_counter() - session.started, 3), **metrics}
                history.append(record)
                if session.writer is not None:
                    session.writer.append_metrics(record)
                    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                    tqdm.write(f"round {done}/{config.rounds}: {shown} ({record['elapsed_s']:.1f}s)")
            every = config.checkpoint_every
            if stopping or (every and (done % every == 0 or done == config.rounds)):
                self.checkpoint(done, history)
            if stopping:
                bar.close()
                raise RunInterrupted(stop.signum or signal.SIGTERM, f"interrupted after round {done} of {config.rounds}; checkpoint in "
                                     f"{session.run_dir}; continue with: fednlp train --resume {session.run_dir}")
        self.round_loop_s = time.perf_counter() - loop_start
        return history

    def checkpoint(self, completed_rounds: int, history: list[dict[str, Any]]) -> None:
        if self.session.comm.rank != 0:
            return
        start = time.perf_counter()
        save_checkpoint(self.session.run_dir, Checkpoint(
            round=completed_rounds, global_weights=self.global_flat, algorithm_state=self.algorithm.state_dict(),
            history=history, elapsed_s=time.perf_counter() - self.session.started))
        self.session.timer.add("checkpoint", start)

    def restore(self) -> tuple[int, list[dict[str, Any]]]:
        """Continue from the run directory's newest complete checkpoint (read by rank 0, sent to all)."""
        session = self.session
        checkpoint = load_latest_checkpoint(session.run_dir) if session.comm.rank == 0 else None
        checkpoint = session.comm.broadcast(checkpoint)
        if checkpoint is None:
            raise UserError(f"--resume {session.run_dir}: no complete checkpoint in {session.run_dir / 'checkpoints'} "
                            "(was the run started with --checkpoint-every?)")
        if checkpoint.global_weights.numel() != self.flat.numel:
            raise UserError(f"--resume {session.run_dir}: the checkpoint holds {checkpoint.global_weights.numel()} "
                            f"weights, this model {self.flat.numel}; was the model or --freeze-layers changed?")
        self.global_flat.copy_(checkpoint.global_weights.to(self.global_flat.device))
        self.flat.flat.copy_(self.global_flat)
        self.algorithm.load_state_dict(checkpoint.algorithm_state)
        session.started = time.perf_counter() - checkpoint.elapsed_s
        if session.writer is not None:
            session.writer.rewrite_metrics(checkpoint.history)
        return checkpoint.round, checkpoint.history

    def run_round(self, round_idx: int, stop_requested: Callable[[], bool] = lambda: False) -> bool:
        """One round; returns whether any rank asked to stop (the same answer on every rank)."""
        config, session, timer = self.config, self.session, self.session.timer
        cohort = self.sampler.sample(config.seed, round_idx, self.client_sizes, config.clients_per_round)
        weights = self.sampler.aggregation_weights(cohort, self.client_sizes)
        weight_of = dict(zip(cohort.tolist(), weights.tolist()))
        # A client without rows or weight would add nothing: every rank skips it, so all agree on `active`.
        active = {c for c, w in weight_of.items() if w != 0 and len(self.client_rows(c)) > 0}
        mine = assign_to_ranks(cohort, self.client_sizes, session.comm.world_size)[session.comm.rank]
        self.client_updates.begin_round()
        self.accumulator.zero_()
        updates, stop_votes = self.accumulator[:-1], self.accumulator[-1:]
        for client in mine:
            if client not in active:
                continue
            rows = self.client_rows(client)
            start = time.perf_counter()
            self.client_updates.load_global()
            timer.add("weight_copy", start)
            rng = round_rng(config.seed, round_idx, 1, client)
            torch.manual_seed(int(rng.integers(2**62)))  # dropout depends on the client, not on its rank
            batches = batch_plan(len(rows), config.batch_size, rng, steps=config.local_steps, epochs=config.local_epochs)
            self.trainer.reset_optimizer()
            self.trainer.train(rows, batches, self.global_views)
            start = time.perf_counter()
            touched = None
            if self.sparse:
                touched = touched_rows(self.session.features.arrays["input_ids"][rows[np.concatenate(batches)]])
            self.client_updates.accumulate(updates, weight_of[client], touched)
            timer.add("aggregation", start)
        start = time.perf_counter()
        if stop_requested():
            stop_votes.fill_(1.0)
        self._allreduce()
        if active:
            self.algorithm.server_step(self.global_flat, updates, round_idx)
        self.client_updates.end_round()
        timer.add("aggregation", start)
        return bool(stop_votes.item() > 0)

    def _allreduce(self) -> None:
        if self.session.comm.world_size == 1:
            return
        if self.accumulator.device.type == "cpu":
            self.session.comm.allreduce_sum_(self.accumulator.numpy())
        else:
            host = self.accumulator.cpu().numpy()
            self.session.comm.allreduce_sum_(host)
            self.accumulator.copy_(torch.from_numpy(host))


class StopFlag:
    """Set by a signal handler; read once per round (a vote in that round's Allreduce)."""

    def __init__(self) -> None:
        self.signum = 0

    def requested(self) -> bool:
        return self.signum != 0


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM finish the current round, checkpoint it and end the run cleanly (RunInterrupted)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

"""The round loop. Every rank holds the same global model and server state; per round:

1. the cohort and its spread over ranks come from (seed, round) alone: no message;
2. a rank trains its clients one after another on ONE model: global weights copied in place, local
   steps, the update times its weight added into one flat buffer;
3. one in-place Allreduce of that buffer;
4. every rank applies the same server step, so all stay identical without a broadcast.

The sampler owns both the cohort and the weights (they must match for the aggregate to be unbiased), and
the weights are final coefficients: every rank knows them all, so no weight sum travels.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fednlp.algorithms.registry import get_algorithm
from fednlp.algorithms.samplers import Sampler, get_sampler
from fednlp.config import TrainConfig
from fednlp.data.feature_cache import file_sha256
from fednlp.errors import UserError
from fednlp.federation.clients import read_clients
from fednlp.federation.cohort import assign_to_ranks, round_rng
from fednlp.federation.communicator import make_communicator
from fednlp.federation.flat import FlatParameters
from fednlp.federation.local_training import LocalTrainer, batch_plan
from fednlp.federation.session import Session, base_result, finish, open_session


def default_run_name(config: TrainConfig) -> str:
    return f"{_stem(config.data)}-{config.method}-{config.algorithm}-{_stem(config.model)}-seed{config.seed}"


def _stem(path: str) -> str:
    return str(path).rstrip("/").split("/")[-1].removesuffix(".h5")


def train_federated(config: TrainConfig, comm: Any = None) -> dict[str, Any]:
    comm = comm or make_communicator()
    # Bad names and options fail here, before any heavy work.
    algorithm = get_algorithm(config.algorithm)(config)
    sampler = get_sampler(config.sampler)()
    session = open_session(config, comm, default_run_name(config))
    clients = read_clients(config.partition, config.method, session.data, config.data)
    if config.clients_per_round > clients.n_clients:
        raise UserError(f"--clients-per-round {config.clients_per_round} exceeds the {clients.n_clients} clients "
                        f"of {config.method!r}")
    federation = Federation(session, algorithm, clients, sampler)
    history = federation.run()
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
        self.accumulator = torch.zeros(self.flat.numel, dtype=torch.float32, device=session.device)
        self.trainer = LocalTrainer(session.model, session.task, session.features, self.config, session.device,
                                    session.timer, algorithm)
        self._rows: dict[int, np.ndarray] = {}
        self.round_loop_s = 0.0

    def client_rows(self, client: int) -> np.ndarray:
        if client not in self._rows:
            self._rows[client] = self.session.features.rows_of(self.clients.train[client])
        return self._rows[client]

    def run(self) -> list[dict[str, Any]]:
        config, session = self.config, self.session
        history: list[dict[str, Any]] = []
        loop_start = time.perf_counter()
        bar = tqdm(range(config.rounds), desc="rounds", unit="round", disable=session.comm.rank != 0)
        for round_idx in bar:
            self.run_round(round_idx)
            last = round_idx == config.rounds - 1
            if (round_idx + 1) % config.eval_every == 0 or last:
                metrics = session.evaluate()
                record = {"round": round_idx + 1, "elapsed_s": round(time.perf_counter() - session.started, 3), **metrics}
                history.append(record)
                if session.writer is not None:
                    session.writer.append_metrics(record)
                    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                    tqdm.write(f"round {round_idx + 1}/{config.rounds}: {shown} ({record['elapsed_s']:.1f}s)")
        self.round_loop_s = time.perf_counter() - loop_start
        return history

    def run_round(self, round_idx: int) -> None:
        config, session, timer = self.config, self.session, self.session.timer
        cohort = self.sampler.sample(config.seed, round_idx, self.client_sizes, config.clients_per_round)
        weights = self.sampler.aggregation_weights(cohort, self.client_sizes)
        weight_of = dict(zip(cohort.tolist(), weights.tolist()))
        # A client without rows or weight would add nothing: every rank skips it, so all agree on `active`.
        active = {c for c, w in weight_of.items() if w != 0 and len(self.client_rows(c)) > 0}
        mine = assign_to_ranks(cohort, self.client_sizes, session.comm.world_size)[session.comm.rank]
        self.accumulator.zero_()
        for client in mine:
            if client not in active:
                continue
            rows = self.client_rows(client)
            start = time.perf_counter()
            self.flat.flat.copy_(self.global_flat)
            timer.add("weight_copy", start)
            rng = round_rng(config.seed, round_idx, 1, client)
            torch.manual_seed(int(rng.integers(2**62)))  # dropout depends on the client, not on its rank
            batches = batch_plan(len(rows), config.batch_size, rng, steps=config.local_steps, epochs=config.local_epochs)
            self.trainer.reset_optimizer()
            self.trainer.train(rows, batches, self.global_views)
            start = time.perf_counter()
            self.flat.flat.sub_(self.global_flat)  # the model's weights are overwritten by the next client anyway
            self.accumulator.add_(self.flat.flat, alpha=weight_of[client])
            timer.add("aggregation", start)
        start = time.perf_counter()
        self._allreduce()
        if active:
            self.algorithm.server_step(self.global_flat, self.accumulator, round_idx)
        self.flat.flat.copy_(self.global_flat)  # the model now holds the new global weights (for evaluation)
        timer.add("aggregation", start)

    def _allreduce(self) -> None:
        if self.session.comm.world_size == 1:
            return
        if self.accumulator.device.type == "cpu":
            self.session.comm.allreduce_sum_(self.accumulator.numpy())
        else:
            host = self.accumulator.cpu().numpy()
            self.session.comm.allreduce_sum_(host)
            self.accumulator.copy_(torch.from_numpy(host))

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

import math
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from fednlp.algorithms.registry import get_algorithm
from fednlp.algorithms.samplers import Sampler, get_sampler
from fednlp.config import TrainConfig
from fednlp.data.datafile import read_attributes
from fednlp.files import file_sha256
from fednlp.errors import RunDiverged, RunInterrupted, UserError
from fednlp.federation.checkpoint import Checkpoint, load_latest_checkpoint, save_checkpoint
from fednlp.federation.callbacks import Callback, MetricsFile, Progress, RoundEnd, TensorBoard
from fednlp.federation.client_updates import (ClientUpdate, DenseClientUpdates, SparseEmbeddingClientUpdates, sparse_embedding,
                                              touched_rows)
from fednlp.fairness.client_stats import client_statistics
from fednlp.federation.clients import clients_to_evaluate, read_clients
from fednlp.federation.communicator import make_communicator
from fednlp.federation.continual import ContinualSchedule, order_field
from fednlp.federation.flat import FlatParameters
from fednlp.run.local_training import LocalTrainer, batch_plan
from fednlp.federation.round_plan import RoundPlan, client_rng, holdout_clients, plan_round
from fednlp.run.session import Session, base_result, finish, open_session, path_stem
from fednlp.privacy.plan import privatize


def default_run_name(config: TrainConfig) -> str:
    return f"{path_stem(config.data)}-{config.method}-{config.algorithm}-{path_stem(config.model)}-seed{config.seed}"


def train_federated(config: TrainConfig, comm: Any = None, resume: bool = False) -> dict[str, Any]:
    comm = comm or make_communicator()
    # Bad names and options fail here, before any heavy work.
    algorithm = get_algorithm(config.algorithm)(config)
    sampler = get_sampler(config.sampler).from_config(config)
    clients = read_clients(config.partition, config.method, len(read_attributes(config.data)["index_list"]),
                           config.data)
    held_out = holdout_clients(config.seed, clients.n_clients, config.holdout_clients)
    if config.clients_per_round > clients.n_clients - len(held_out):
        raise UserError(f"--clients-per-round {config.clients_per_round} exceeds the {clients.n_clients} clients "
                        f"of {config.method!r}" + (f" less the {len(held_out)} held out" if len(held_out) else ""))
    eligible = None if len(held_out) == 0 else np.setdiff1d(np.arange(clients.n_clients), held_out)
    active_of = lambda r: plan_round(sampler, config.seed, r, clients.sizes, config.clients_per_round,  # noqa: E731
                                     eligible=eligible).active
    algorithm, privacy = privatize(algorithm, config, sampler, clients.sizes, eligible, active_of)  # --dp
    clients_to_evaluate(config.eval_clients, clients, config.seed)  # bad --eval-clients fails before any work
    session = open_session(config, comm, default_run_name(config), resume=resume,
                           check_model=getattr(algorithm, "check_model", None))
    federation = Federation(session, algorithm, clients, sampler, held_out)
    start_round, history = federation.restore() if resume else (0, [])
    if start_round > config.rounds:
        raise UserError(f"--rounds {config.rounds}: the run in {session.run_dir} has already completed {start_round} "
                        f"rounds; give --rounds {start_round} or more to continue it")
    with stop_on_signals() as stop:
        history = federation.run(start_round, history, stop)
    result = base_result(session)
    clients_block = next((h["clients"] for h in reversed(history) if "clients" in h), None)
    if clients_block is not None:
        result["clients"] = clients_block
    result.update(
        partition_method=config.method,
        partition_sha256=file_sha256(str(config.partition)),
        algorithm=config.algorithm,
        sampler=config.sampler,
        rounds=config.rounds,
        clients_per_round=config.clients_per_round,
        n_clients=clients.n_clients,
        holdout_clients=held_out.tolist(),
        clients_trained=federation.participants(config.rounds),
        round_loop_s=round(federation.round_loop_s, 3),
        local_steps_total=int(sum(session.comm.allgather(federation.trainer.steps_done))),
        timing_s={k: round(v, 4) for k, v in sorted(session.timer.seconds.items())},
    )
    if privacy is not None:
        result["dp"] = privacy.write(session, algorithm, config)  # fednlp/privacy/plan.py
    return finish(session, result, history)


# The runtime's own sums in the round's buffer, after the update and before the algorithm's `slots`.
STOP, LOSS, LOSS_WEIGHT, PLANNED_WEIGHT, NONFINITE = range(5)
RUNTIME_SLOTS = 5


class Federation:
    """Holds the flat global weights, the accumulation buffer and the local trainer for a whole run."""

    def __init__(self, session: Session, algorithm: Any, clients: Any, sampler: Sampler | None = None,
                 held_out: np.ndarray | None = None):
        self.session = session
        self.config: TrainConfig = session.config  # type: ignore[assignment]
        self.algorithm = algorithm
        self.sampler = sampler if sampler is not None else get_sampler(self.config.sampler).from_config(self.config)
        self.clients = clients
        self.client_sizes = clients.sizes
        held_out = np.asarray([] if held_out is None else held_out, dtype=np.int64)
        self.eligible = None if len(held_out) == 0 else np.setdiff1d(np.arange(clients.n_clients), held_out)
        self.flat = FlatParameters(session.model)
        self.global_flat = self.flat.flat.clone()
        self.global_views = self.flat.views_of(self.global_flat)
        # One buffer, one Allreduce per round: [weighted updates | the runtime's sums | the algorithm's slots].
        self.slot_index = {name: i for i, name in enumerate(algorithm.slots)}
        self.accumulator = torch.zeros(self.flat.numel + RUNTIME_SLOTS + len(self.slot_index), dtype=torch.float32,
                                       device=session.device)
        self.updates = self.accumulator[: self.flat.numel]
        self.runtime_sums = self.accumulator[self.flat.numel : self.flat.numel + RUNTIME_SLOTS]
        # The algorithm's sums are added on the host per client (a device write per add would sync) and
        # copied into the buffer once per round.
        self.slot_values = torch.zeros(len(self.slot_index), dtype=torch.float64)
        self.trainer = LocalTrainer(session.model, session.task, session.features, self.config, session.device,
                                    session.timer, algorithm)
        embedding = sparse_embedding(session.model, self.flat, self.config, algorithm)
        self.sparse = embedding is not None
        self.client_updates = (SparseEmbeddingClientUpdates(self.flat, self.global_flat, embedding) if self.sparse
                               else DenseClientUpdates(self.flat, self.global_flat))
        self._rows: dict[tuple[int, int], np.ndarray] = {}
        self.schedule = continual_schedule(self.config, session.data)
        self._period_sizes: dict[int, np.ndarray] = {}
        self.eval_clients = clients_to_evaluate(self.config.eval_clients, clients, self.config.seed)
        self.history: list[dict[str, Any]] = []  # every round's record so far (checkpointed)
        self.round_loop_s = 0.0

    def client_rows(self, client: int, round_idx: int = 0) -> np.ndarray:
        """The feature rows a client trains on in a round: all its training examples, or under --continual
        what it holds in the round's period."""
        key = (client, self.schedule.period_of_round(round_idx)) if self.schedule else (client, 0)
        if key not in self._rows:
            examples = self.clients.train[client]
            if self.schedule is not None:
                examples = self.schedule.held(examples, key[1])
            self._rows[key] = self.session.features.rows_of(examples)
        return self._rows[key]

    def sizes_in_round(self, round_idx: int) -> np.ndarray:
        """Each client's number of training examples now (under --continual: those it holds this period)."""
        if self.schedule is None:
            return self.client_sizes
        period = self.schedule.period_of_round(round_idx)
        if period not in self._period_sizes:
            self._period_sizes[period] = self.schedule.sizes(self.clients.train, period)
        return self._period_sizes[period]

    def run(self, start_round: int = 0, history: list[dict[str, Any]] | None = None,
            stop: StopFlag | None = None, callbacks: list[Callback] | None = None) -> list[dict[str, Any]]:
        config, session = self.config, self.session
        history = self.history = list(history or [])
        stop = stop or StopFlag()
        callbacks = callbacks if callbacks is not None else self.default_callbacks(start_round)
        loop_start = time.perf_counter()
        try:
            for round_idx in range(start_round, config.rounds):
                stopping, record = self.run_round(round_idx, stop.requested)
                done = round_idx + 1
                evaluated = done % config.eval_every == 0 or done == config.rounds
                if self.schedule is not None:
                    record["period"] = self.schedule.period_of_round(round_idx) + 1
                    if done % self.schedule.rounds_per_period == 0:
                        evaluated = True
                        record.update(self.evaluate_future(round_idx))
                if evaluated:
                    record.update(session.evaluate(final=done == config.rounds), **session.eval_setting(done == config.rounds))
                    if self.eval_clients and (done == config.rounds or (config.eval_clients_every
                                                                         and done % config.eval_clients_every == 0)):
                        record["clients"] = self.evaluate_clients(done)
                record = {"round": done, "elapsed_s": round(time.perf_counter() - session.started, 3), **record}
                history.append(record)
                event = RoundEnd(done, config.rounds, record, evaluated, stopping)
                for callback in callbacks:
                    callback.on_round_end(event)
                if stopping:
                    raise RunInterrupted(stop.signum or signal.SIGTERM,
                                         f"interrupted after round {done} of {config.rounds}; checkpoint in "
                                         f"{session.run_dir}; continue with: fednlp train --resume {session.run_dir}")
        finally:
            for callback in callbacks:
                callback.on_train_end()
        self.round_loop_s = time.perf_counter() - loop_start
        return history

    def evaluate_future(self, round_idx: int) -> dict[str, float]:
        """At the end of a period: the metrics on the next period's test examples (the future), as future_*."""
        future = self.schedule.future_test(self.session.test_examples, self.schedule.period_of_round(round_idx))
        if len(future) == 0:
            return {}
        return {f"future_{k}": v for k, v in self.session.evaluate(future).items()}

    def evaluate_clients(self, done: int) -> dict[str, float]:
        """Each selected client's metric on its own test data: statistics for the round's record, every
        client's line in clients.csv (rank 0)."""
        session = self.session
        primary = session.task.primary_metric
        per_client = session.evaluate_clients(self.eval_clients)
        if session.writer is not None:
            session.writer.append_clients(done, per_client, primary)
        values = np.array([m[primary] for m in per_client.values()])
        examples = np.array([m["examples"] for m in per_client.values()])
        return client_statistics(values, examples, getattr(session.task, "greater_is_better", True))

    def default_callbacks(self, start_round: int) -> list[Callback]:
        """Checkpoints on every rank (rank 0 writes); progress, metrics file and TensorBoard on rank 0 only."""
        session, config = self.session, self.config
        callbacks: list[Callback] = [Checkpointing(self)]
        if session.writer is not None:
            callbacks.append(Progress(start_round, config.rounds, enabled=not config.quiet))
            callbacks.append(MetricsFile(session.writer.append_metrics))
            if config.report_to == "tensorboard":
                callbacks.append(TensorBoard(str(session.run_dir / "tensorboard")))
        return callbacks

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
            session.writer.truncate_clients(checkpoint.round)
        return checkpoint.round, checkpoint.history

    def plan(self, round_idx: int) -> RoundPlan:
        comm = self.session.comm
        return plan_round(self.sampler, self.config.seed, round_idx, self.sizes_in_round(round_idx),
                          self.config.clients_per_round,
                          comm.world_size, comm.rank, self.eligible)

    def participants(self, rounds: int) -> list[int]:
        """Every client that trained in rounds 0..rounds-1 (plans are pure: a resumed run gets the same list)."""
        return sorted(set().union(*(self.plan(r).active for r in range(rounds))))

    def run_round(self, round_idx: int, stop_requested: Callable[[], bool] = lambda: False
                  ) -> tuple[bool, dict[str, Any]]:
        """One round; returns whether any rank asked to stop (the same answer on every rank) and the round's
        record (training loss, skipped clients)."""
        config, session, timer = self.config, self.session, self.session.timer
        plan = self.plan(round_idx)
        ctx = plan.context
        self.algorithm.begin_round(ctx)
        self.client_updates.begin_round()
        self.accumulator.zero_()
        self.slot_values.zero_()
        sums = torch.zeros(RUNTIME_SLOTS, dtype=torch.float64)  # host-side, copied into the buffer once
        nonfinite: list[int] = []
        for client in plan.shares[session.comm.rank]:
            if client not in plan.active:
                continue
            update = self.train_client(client, plan)
            start = time.perf_counter()
            if not (math.isfinite(update.loss_mean) and update.is_finite()):
                nonfinite.append(client)  # left out of the aggregate; the round stops or skips it below
                sums[NONFINITE] += 1
                timer.add("aggregation", start)
                continue
            self.algorithm.process_client_update(update, ctx)
            self.client_updates.accumulate(self.updates, update.weight, update.parts)
            sums[LOSS] += update.weight * update.loss_mean
            sums[LOSS_WEIGHT] += update.weight
            sums[PLANNED_WEIGHT] += plan.weight_of(client)
            timer.add("aggregation", start)
        start = time.perf_counter()
        if stop_requested():
            sums[STOP] = 1.0
        self.runtime_sums.copy_(sums)
        self.accumulator[self.flat.numel + RUNTIME_SLOTS :].copy_(self.slot_values)
        self._allreduce()
        totals = self.runtime_sums.double().tolist()
        skipped = int(round(totals[NONFINITE]))
        if skipped and config.on_nonfinite == "stop":
            self._diverged(round_idx, nonfinite)
        # A DP mechanism divides by the expected cohort size whatever came: it still steps (adds its noise) on
        # an empty round, and a skipped client is not renormalised away (fednlp/privacy/client_dp.py).
        fixed_denominator = getattr(self.algorithm, "fixed_denominator", False)
        if totals[PLANNED_WEIGHT] > 0 or fixed_denominator:
            if skipped and not fixed_denominator:  # renormalise to the clients kept, as the sampler's weights of the whole cohort sum
                self.updates.mul_(plan.active_weight / totals[PLANNED_WEIGHT])
            slot_sums = dict(zip(self.slot_index, self.accumulator[self.flat.numel + RUNTIME_SLOTS :].double().tolist()))
            self.algorithm.server_step(self.global_flat, self.updates, ctx.with_sums(slot_sums))
            if not bool(torch.isfinite(self.global_flat.sum())):
                raise RunDiverged(f"round {round_idx + 1}: the server step of {config.algorithm} made the global "
                                  f"weights non-finite (NaN or infinity); the last finite checkpoint is kept")
        self.client_updates.end_round()
        timer.add("aggregation", start)
        record: dict[str, Any] = {}
        if totals[LOSS_WEIGHT] > 0:
            record["train_loss"] = totals[LOSS] / totals[LOSS_WEIGHT]
        if skipped:
            record["clients_skipped_nonfinite"] = skipped
        if hasattr(self.algorithm, "round_record"):  # e.g. DP's epsilon after this round
            record.update(self.algorithm.round_record(ctx))
        return bool(totals[STOP] > 0), record

    def train_client(self, client: int, plan: RoundPlan) -> ClientUpdate:
        """Local training of one client from the global weights; returns its update (the delta lies in the
        model's own buffer until the next client)."""
        config, timer = self.config, self.session.timer
        rows = self.client_rows(client, plan.round_idx)
        start = time.perf_counter()
        self.client_updates.load_global()
        timer.add("weight_copy", start)
        rng = client_rng(config.seed, plan.round_idx, client)
        torch.manual_seed(int(rng.integers(2**62)))  # dropout depends on the client, not on its rank
        if hasattr(self.algorithm, "client_batches"):  # e.g. DP-SGD's Poisson batches
            batches = self.algorithm.client_batches(client, plan.round_idx, len(rows), rng)
        else:
            batches = batch_plan(len(rows), config.batch_size, rng, steps=config.local_steps, epochs=config.local_epochs)
        loss_global = self.trainer.mean_loss(rows, config.eval_batch_size) if self.algorithm.needs_global_loss else None
        self.trainer.reset_optimizer()
        steps = self.trainer.train(rows, batches, self.global_views)
        start = time.perf_counter()
        touched = None
        if self.sparse:
            touched = touched_rows(self.session.features.arrays["input_ids"][rows[np.concatenate(batches)]])
        parts = self.client_updates.delta(touched)
        first, mean, last = self.trainer.losses()
        timer.add("aggregation", start)
        return ClientUpdate(client, plan.weight_of(client), len(rows), steps, first, mean, last,
                            parts, self.slot_values, self.slot_index, loss_global)

    def _diverged(self, round_idx: int, nonfinite: list[int]) -> None:
        """Every rank knows a client diverged (the sum); one gather, on this failure path only, says which."""
        found = [(rank, client) for rank, clients in enumerate(self.session.comm.allgather(nonfinite))
                 for client in clients]
        rank, client = found[0]
        raise RunDiverged(f"round {round_idx + 1}: client {client} (trained on rank {rank}) has a non-finite loss or "
                          f"update (NaN or infinity); the run stopped before this round's server step and keeps its "
                          f"last finite checkpoint (--on-nonfinite skip-client leaves such clients out instead)")

    def _allreduce(self) -> None:
        if self.session.comm.world_size == 1:
            return
        if self.accumulator.device.type == "cpu":
            self.session.comm.allreduce_sum_(self.accumulator.numpy())
        else:
            host = self.accumulator.cpu().numpy()
            self.session.comm.allreduce_sum_(host)
            self.accumulator.copy_(torch.from_numpy(host))


def continual_schedule(config: TrainConfig, data: Any) -> ContinualSchedule | None:
    if not config.continual:
        return None
    return ContinualSchedule.from_data(order_field(data.fields, config.data), config.periods, config.rounds_per_period,
                                       config.storage_limit)


class Checkpointing(Callback):
    """--checkpoint-every N (and after the last round), and always when the run stops on a signal."""

    def __init__(self, federation: Federation):
        self.federation = federation

    def on_round_end(self, event: RoundEnd) -> None:
        every = self.federation.config.checkpoint_every
        if event.stopping or (every and (event.round % every == 0 or event.round == event.total_rounds)):
            self.federation.checkpoint(event.round, self.federation.history)


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

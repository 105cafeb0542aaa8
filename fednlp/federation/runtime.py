"""The round loop. Every rank holds the same global model and server state; per round:

1. the cohort and its spread over ranks come from (seed, round) alone: no message;
2. a rank trains its clients one after another on ONE model: global weights copied in place, local
   steps, the update times its weight added into one flat buffer;
3. one in-place Allreduce of that buffer, stop votes (signals.py) and sums included (round_buffer.py);
4. every rank applies the same server step, so all stay identical without a broadcast.

The algorithm is seen only through its declared contract (fednlp/algorithms/interface.py); the sampler owns
the cohort and its weights (final coefficients every rank knows: no weight sum travels). What a client holds
in a round comes from client_data.py; what is measured after it from evaluations.py; the rest hangs off
callbacks (checkpoints, progress, the metrics file).
"""

from __future__ import annotations

import math
import signal
import time
from typing import Any, Callable

import numpy as np
import torch

from fednlp.algorithms.interface import Algorithm, ClientUpdate, RoundContext
from fednlp.algorithms.registry import get_algorithm
from fednlp.algorithms.samplers import Sampler, get_sampler
from fednlp.config import TrainConfig
from fednlp.data.datafile import read_attributes
from fednlp.errors import RunDiverged, RunInterrupted, UserError
from fednlp.federation.callbacks import Callback, RoundEnd, default_callbacks
from fednlp.federation.checkpoint import Checkpointing, check_resume, restore
from fednlp.federation.client_data import client_data
from fednlp.federation.client_updates import make_client_updates, touched_rows
from fednlp.federation.clients import ClientData, clients_to_evaluate, read_clients
from fednlp.federation.communicator import make_communicator
from fednlp.federation.evaluations import RoundEvaluations
from fednlp.federation.flat import FlatParameters
from fednlp.federation.round_buffer import LOSS, LOSS_WEIGHT, NONFINITE, PLANNED_WEIGHT, STOP, RoundBuffer, skipped_clients
from fednlp.federation.local_batches import local_batches
from fednlp.federation.parallel_clients import ParallelClients
from fednlp.federation.round_plan import RoundPlan, eligible_clients, plan_round, sampling_pool
from fednlp.federation.signals import StopFlag, stop_on_signals
from fednlp.files import file_sha256
from fednlp.privacy.plan import privatize
from fednlp.run.local_training import LocalTrainer
from fednlp.run.session import Session, base_result, finish, open_session, path_stem


def default_run_name(config: TrainConfig) -> str:
    return f"{path_stem(config.data)}-{config.method}-{config.algorithm}-{path_stem(config.model)}-seed{config.seed}"


def train_federated(config: TrainConfig, comm: Any = None, resume: bool = False) -> dict[str, Any]:
    comm = comm or make_communicator()
    if resume:
        check_resume(config)  # a DP run's accounted options are fixed (fednlp/federation/checkpoint.py)
    # Bad names and options fail here, before any heavy work.
    algorithm = get_algorithm(config.algorithm)(config)
    sampler = get_sampler(config.sampler).from_config(config)
    clients = read_clients(config.partition, config.method, len(read_attributes(config.data)["index_list"]),
                           config.data)
    held_out, eligible = sampling_pool(config, clients.n_clients)
    active_of = lambda r: plan_round(sampler, config.seed, r, clients.sizes, config.clients_per_round,  # noqa: E731
                                     eligible=eligible).active
    algorithm, privacy = privatize(algorithm, config, sampler, clients.sizes, eligible, active_of)  # --dp
    clients_to_evaluate(config.eval_clients, clients, config.seed)  # bad --eval-clients fails before any work
    active_of(0)  # the sampler's refusals (too few clients with data for --sampler activity) before any output
    session = open_session(config, comm, default_run_name(config), resume=resume, check_model=algorithm.check_model)
    federation = Federation(session, algorithm, clients, sampler, held_out)
    if privacy is not None:
        privacy.start(session, algorithm)  # --dp-release: noise seeded from OS entropy
    start_round, history = restore(federation) if resume else (0, [])
    if start_round > config.rounds:
        raise UserError(f"--rounds {config.rounds}: the run in {session.run_dir} has already completed {start_round} "
                        f"rounds; give --rounds {start_round} or more to continue it")
    with stop_on_signals() as stop:
        history = federation.run(start_round, history, stop)
    result = {**base_result(session), **federation.result_fields()}
    if privacy is not None:
        result["dp"] = privacy.write(session, algorithm, config)  # fednlp/privacy/plan.py
        privacy.scrub(result, config)  # --dp-release: only protected outputs
    return finish(session, result, history)


class Federation:
    """Holds the flat global weights, the round's buffer and the local trainer for a whole run."""

    def __init__(self, session: Session, algorithm: Algorithm, clients: ClientData, sampler: Sampler | None = None,
                 held_out: np.ndarray | None = None):
        self.session = session
        self.config: TrainConfig = session.config  # type: ignore[assignment]
        self.algorithm = algorithm
        self.sampler = sampler if sampler is not None else get_sampler(self.config.sampler).from_config(self.config)
        self.clients = clients
        self.client_sizes = clients.sizes
        self.held_out = np.asarray([] if held_out is None else held_out, dtype=np.int64)
        self.eligible = eligible_clients(self.held_out, clients.n_clients)
        self.flat = FlatParameters(session.model)
        self.global_flat = self.flat.flat.clone()
        self.global_views = self.flat.views_of(self.global_flat)
        self.buffer = RoundBuffer(self.flat.numel, algorithm.slots, session.device)
        self.trainer = LocalTrainer(session.model, session.task, session.features, self.config, session.device,
                                    session.timer, algorithm)
        self.client_updates = make_client_updates(session.model, self.flat, self.global_flat, self.config, algorithm)
        self.sparse = self.client_updates.sparse
        self.data = client_data(self.config, session.data, session.features, clients)
        self.parallel = ParallelClients(self)  # --parallel-clients: N clients of a round trained at once
        self.evaluations = RoundEvaluations.of(session, clients_to_evaluate(self.config.eval_clients, clients,
                                                                            self.config.seed), self.data.schedule)
        self.history: list[dict[str, Any]] = []  # every round's record so far (checkpointed)
        self.round_loop_s = 0.0

    def run(self, start_round: int = 0, history: list[dict[str, Any]] | None = None,
            stop: StopFlag | None = None, callbacks: list[Callback] | None = None) -> list[dict[str, Any]]:
        config, session = self.config, self.session
        history = self.history = list(history or [])
        stop = stop or StopFlag()
        if callbacks is None:
            callbacks = default_callbacks(session, start_round, Checkpointing(self))
        loop_start = time.perf_counter()
        try:
            for round_idx in range(start_round, config.rounds):
                stopping, record = self.run_round(round_idx, stop.requested)
                done = round_idx + 1
                evaluated = self.evaluations(done, record)
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

    def plan(self, round_idx: int) -> RoundPlan:
        comm = self.session.comm
        return plan_round(self.sampler, self.config.seed, round_idx, self.data.sizes(round_idx),
                          self.config.clients_per_round, comm.world_size, comm.rank, self.eligible)

    def result_fields(self) -> dict[str, Any]:
        """The federated run's own keys of result.json (beside base_result's)."""
        config, session = self.config, self.session
        clients_block = next((h["clients"] for h in reversed(self.history) if "clients" in h), None)
        return {**({} if clients_block is None else {"clients": clients_block}), "partition_method": config.method,
                "partition_sha256": file_sha256(str(config.partition)), "algorithm": config.algorithm, "sampler": config.sampler, "rounds": config.rounds,
                "clients_per_round": config.clients_per_round, "n_clients": self.clients.n_clients,
                "holdout_clients": self.held_out.tolist(), "parallel_clients": self.parallel.record(),
                # plans are pure: a resumed run gets the same list
                "clients_trained": sorted(set().union(*(self.plan(r).active for r in range(config.rounds)))),
                "round_loop_s": round(self.round_loop_s, 3),
                **self.trainer.totals(session.comm),
                "timing_s": {k: round(v, 4) for k, v in sorted(session.timer.seconds.items())}}

    def run_round(self, round_idx: int, stop_requested: Callable[[], bool] = lambda: False
                  ) -> tuple[bool, dict[str, Any]]:
        """One round; returns whether any rank asked to stop (the same answer on every rank) and the round's
        record (training loss, skipped clients, the algorithm's round_record)."""
        plan = self.plan(round_idx)
        self.algorithm.begin_round(plan.context)
        self.client_updates.begin_round()
        self.buffer.zero_()
        nonfinite = self.train_clients(plan)
        start = time.perf_counter()
        if stop_requested():
            self.buffer.sums[STOP] = 1.0
        totals = self.buffer.allreduce(self.session.comm)
        skipped = skipped_clients(totals, len(plan.active), round_idx, self.config.on_nonfinite)  # all: exit 3
        if skipped and self.config.on_nonfinite == "stop":
            self._diverged(round_idx, nonfinite)
        ctx = plan.context.with_sums(self.buffer.slot_sums())
        self.server_step(plan, ctx, totals[PLANNED_WEIGHT], skipped)
        self.client_updates.end_round()
        self.session.timer.add("aggregation", start)
        record: dict[str, Any] = {}
        if totals[LOSS_WEIGHT] > 0:
            record["train_loss"] = totals[LOSS] / totals[LOSS_WEIGHT]
        if skipped:
            record["clients_skipped_nonfinite"] = skipped
        record.update(self.algorithm.round_record(ctx))  # e.g. DP's epsilon after this round
        return bool(totals[STOP] > 0), record

    def train_clients(self, plan: RoundPlan) -> list[int]:
        """This rank's share of the round: each client trained, passed to the algorithm's hook and added into
        the buffer; returns the clients left out for a non-finite loss or update."""
        sums, nonfinite = self.buffer.sums, []
        for update in self.parallel.updates(plan, self.session.comm.rank):  # one by one, or N at once
            start = time.perf_counter()
            if not (math.isfinite(update.loss_mean) and update.is_finite()):
                nonfinite.append(update.client)  # left out of the aggregate; the round stops or skips it
                sums[NONFINITE] += 1
            else:
                self.algorithm.process_client_update(update, plan.context)
                self.client_updates.accumulate(self.buffer.updates, update.weight, update.parts)
                sums[LOSS] += update.weight * update.loss_mean
                sums[LOSS_WEIGHT] += update.weight
                sums[PLANNED_WEIGHT] += plan.weight_of(update.client)
            self.session.timer.add("aggregation", start)
        return nonfinite

    def server_step(self, plan: RoundPlan, ctx: RoundContext, planned_weight: float, skipped: int) -> None:
        """The algorithm's server step on the summed updates; skipped on an empty round, and renormalised to
        the clients kept when some were skipped, unless the algorithm's denominator is fixed (DP-FedAvg adds
        its noise to an empty round too, and a skipped client is not renormalised away) or its own (q-FedAvg)."""
        fixed = self.algorithm.fixed_denominator
        if planned_weight == 0 and not fixed:
            return
        if skipped and not (fixed or self.algorithm.normalises_itself):  # as the sampler's weights of the cohort sum
            self.buffer.updates.mul_(plan.active_weight / planned_weight)
        self.algorithm.server_step(self.global_flat, self.buffer.updates, ctx)
        if not bool(torch.isfinite(self.global_flat.sum())):
            raise RunDiverged(f"round {plan.round_idx + 1}: the server step of {self.config.algorithm} made the "
                              f"global weights non-finite (NaN or infinity); the last finite checkpoint is kept")

    def train_client(self, client: int, plan: RoundPlan) -> ClientUpdate:
        """Local training of one client from the global weights; returns its update (the delta lies in the
        model's own buffer until the next client)."""
        config, timer, algorithm = self.config, self.session.timer, self.algorithm
        rows = self.data.rows(client, plan.round_idx)
        start = time.perf_counter()
        self.client_updates.load_global()
        timer.add("weight_copy", start)
        dropout_seed, batches = local_batches(algorithm, config, client, plan.round_idx, len(rows))  # audits redo it
        torch.manual_seed(dropout_seed)  # dropout depends on the client, not on its rank
        loss_global = self.trainer.mean_loss(rows, config.eval_batch_size) if algorithm.needs_global_loss else None
        self.trainer.reset_optimizer()
        steps = self.trainer.train(rows, batches, self.global_views)
        start = time.perf_counter()
        seen = self.session.features.arrays["input_ids"][rows[np.concatenate(batches)]] if self.sparse else None
        parts = self.client_updates.delta(None if seen is None else touched_rows(seen))
        first, mean, last = self.trainer.losses()
        timer.add("aggregation", start)
        return ClientUpdate(client, plan.weight_of(client), len(rows), steps, first, mean, last,
                            parts, self.buffer.slot_values, self.buffer.slot_index, loss_global)

    def _diverged(self, round_idx: int, nonfinite: list[int]) -> None:
        """Every rank knows a client diverged (the sum); one gather, on this failure path only, says which."""
        found = [(rank, client) for rank, clients in enumerate(self.session.comm.allgather(nonfinite))
                 for client in clients]
        rank, client = found[0]
        raise RunDiverged(f"round {round_idx + 1}: client {client} (trained on rank {rank}) has a non-finite loss or "
                          f"update (NaN or infinity); the run stopped before this round's server step and keeps its "
                          f"last finite checkpoint (--on-nonfinite skip-client leaves such clients out instead)")

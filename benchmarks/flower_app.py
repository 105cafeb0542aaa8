"""Flower 1.42's simulation of one exported work unit: the other side of benchmarks/flower_compare.py.

Runs ONLY in the Flower virtual environment (benchmarks/.work/flower-venv, made by flower_compare), never
in fednlp's: it imports flwr, ray, torch, transformers and numpy, and nothing of fednlp.

    benchmarks/.work/flower-venv/bin/python -m benchmarks.flower_app \
        --inputs benchmarks/.work/flower-WU-A.npz --out benchmarks/.work/flower-WU-A.json

What it runs (Flower's Message API: a ServerApp with a FedAvg strategy, a ClientApp, and
`flwr.simulation.run_simulation` with the Ray backend):

- one virtual SuperNode per client of the partition (100 for WU-A, 1,000 for WU-B);
- the ServerApp runs `flwr.serverapp.strategy.FedAvg` (weighted by each reply's "num-examples": n_i / sum
  n_j, the same weights as fednlp's uniform sampler) with ONE override, `configure_train`: instead of its
  random sample of nodes, each round trains exactly the exported cohort (fednlp's, from fednlp's sampler).
  Flower's ServerApp only sees random node ids (it cannot know which node got which partition-id
  without an extra query round to every node), and simulation ClientApps are stateless, so the round's
  k messages go to k nodes picked by Flower's own `sample_nodes`, and message j carries "client-id" =
  cohort[j]: the ClientApp trains that client's rows. Exactly k ClientApp runs per round, of exactly the
  cohort's clients; no other client is contacted. Federated evaluation is off (fraction_evaluate=0).
- the ClientApp loads the exported arrays once per Ray actor, keeps one tiny-bert model per actor (built
  from the exported config, as fednlp builds it: AutoModelForSequenceClassification.from_config), loads
  the received weights, seeds dropout with fednlp's per-(round, client) seed, runs fednlp's exact batch
  plan (the same rows, the same order, SGD with the same lr, fresh optimizer per client, each batch cut
  to its longest row) and replies with all weights and its example count;
- the final global model is evaluated once, after the last round, by the strategy's `evaluate_fn` on the
  exported test rows (sorted by length, batches of eval_batch_size, dynamic padding: fednlp's way).

Threads: 1 CPU per client (Ray `client_resources.num_cpus=1`), Ray started with `num_cpus` = the
machine's cores, so as many actors as cores, each with torch.set_num_threads(1); the ServerApp (driver
process) evaluates with as many torch threads as cores, like fednlp's single process (OMP_NUM_THREADS =
cores). Override with --actors / --client-threads.

Measured: round loop = from the first round's configure_train to the end of the last round's
aggregate_train (evaluation is not inside), the final evaluation, the whole run_simulation call, and
the process from its start to the JSON write. Written to --out as JSON.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

INPUTS_ENV = "FEDNLP_FLOWER_INPUTS"
THREADS_ENV = "FEDNLP_FLOWER_CLIENT_THREADS"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------------
# The exported work unit (benchmarks/flower_compare.py writes it from fednlp's own objects).
# ---------------------------------------------------------------------------------------------------------


class Inputs:
    """The arrays of one work unit, loaded once per process (each Ray actor and the driver)."""

    def __init__(self, path: str):
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            self.meta = json.loads(str(z["meta"]))
            self.sequence_arrays = list(self.meta["sequence_arrays"])
            self.token_arrays = {name: z[name] for name in self.meta["token_arrays"]}
            self.lengths = z["lengths"]
            self.labels = z["labels"]
            self.client_rows_flat = z["client_rows_flat"]
            self.client_rows_offsets = z["client_rows_offsets"]
            self.cohorts = z["cohorts"]
            self.num_examples = z["num_examples"]
            self.dropout_seeds = z["dropout_seeds"]
            self.plan_positions = z["plan_positions"]
            self.plan_batch_offsets = z["plan_batch_offsets"]
            self.plan_first_batch = z["plan_first_batch"]
            self.plan_n_batches = z["plan_n_batches"]
            self.test_rows = z["test_rows"]
            self.init_names = list(self.meta["param_names"])
            self.init_weights = {name: z[f"init__{name}"] for name in self.init_names}

    def client_rows(self, client: int):
        return self.client_rows_flat[self.client_rows_offsets[client]:self.client_rows_offsets[client + 1]]

    def batches(self, round_idx: int, slot: int):
        """fednlp's batch plan of the cohort's slot-th client in this round: positions into its rows."""
        first = int(self.plan_first_batch[round_idx, slot])
        offsets = self.plan_batch_offsets
        return [self.plan_positions[offsets[b]:offsets[b + 1]] for b in range(first, first + int(self.plan_n_batches[round_idx, slot]))]

    def batch(self, rows, with_labels: bool = True):
        """Tensors for `rows`, cut to the longest real length among them (fednlp's dynamic padding)."""
        import numpy as np
        import torch

        width = int(self.lengths[rows].max())
        out = {}
        for name, array in self.token_arrays.items():
            part = array[rows, :width] if name in self.sequence_arrays else array[rows]
            out[name] = torch.from_numpy(np.ascontiguousarray(part.astype(np.int64)))
        if with_labels:
            out["labels"] = torch.from_numpy(np.ascontiguousarray(self.labels[rows].astype(np.int64)))
        return out

    def build_model(self):
        from transformers import AutoModelForSequenceClassification, BertConfig
        from transformers.utils import logging

        logging.set_verbosity_error()
        config = BertConfig.from_dict(self.meta["model_config"])
        return AutoModelForSequenceClassification.from_config(config)


_INPUTS: Inputs | None = None
_MODEL = None


def inputs() -> Inputs:
    global _INPUTS
    if _INPUTS is None:
        _INPUTS = Inputs(os.environ[INPUTS_ENV])
    return _INPUTS


def actor_model():
    """One model per Ray actor, reused by every client the actor runs (its weights are overwritten)."""
    global _MODEL
    if _MODEL is None:
        import torch

        torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
        _MODEL = inputs().build_model()
    return _MODEL


# ---------------------------------------------------------------------------------------------------------
# The ClientApp.
# ---------------------------------------------------------------------------------------------------------


def train(msg, context):
    """The ClientApp's train function (module level, so Ray pickles it by reference, not by value)."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    data = inputs()
    model = actor_model()
    config = msg.content["config"]
    round_idx, slot, client = int(config["server-round"]) - 1, int(config["slot"]), int(config["client-id"])
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict(), strict=True)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=float(config["lr"]),
                                weight_decay=float(config["weight-decay"]))
    torch.manual_seed(int(data.dropout_seeds[round_idx, slot]))  # fednlp's dropout seed of this client
    rows = data.client_rows(client)
    model.train()
    steps, loss_sum = 0, 0.0
    for positions in data.batches(round_idx, slot):
        loss = model(**data.batch(rows[positions])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        loss_sum += float(loss.detach())
    reply = RecordDict({
        "arrays": ArrayRecord(model.state_dict()),
        "metrics": MetricRecord({"num-examples": int(data.num_examples[round_idx, slot]), "steps": steps,
                                 "train-loss": loss_sum / max(steps, 1)}),
    })
    return Message(content=reply, reply_to=msg)


def make_client_app():
    from flwr.clientapp import ClientApp

    client_app = ClientApp()
    client_app.train()(train)
    return client_app


# ---------------------------------------------------------------------------------------------------------
# The ServerApp: FedAvg over exactly the exported cohorts, timed; one evaluation at the end.
# ---------------------------------------------------------------------------------------------------------


def evaluate(model, data: Inputs, batch_size: int) -> dict[str, float]:
    import numpy as np
    import torch

    model.eval()
    rows = data.test_rows
    by_length = rows[np.argsort(data.lengths[rows], kind="stable")]
    predicted: dict[int, int] = {}
    with torch.no_grad():
        for i in range(0, len(by_length), batch_size):
            chunk = by_length[i:i + batch_size]
            logits = model(**data.batch(chunk, with_labels=False)).logits
            predicted.update(zip(chunk.tolist(), logits.argmax(dim=-1).tolist()))
    labels = data.labels[rows]
    preds = np.array([predicted[r] for r in rows.tolist()])
    n_labels = int(data.meta["num_labels"])
    f1s = []
    for label in range(n_labels):  # sklearn's macro F1 with labels=all classes, zero_division=0
        tp = np.sum((preds == label) & (labels == label))
        fp = np.sum((preds == label) & (labels != label))
        fn = np.sum((preds != label) & (labels == label))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((preds == labels).mean()), "macro_f1": float(np.mean(f1s))}


def make_server_app(report: dict, weights_out: str | None = None):
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.serverapp.strategy.strategy_utils import sample_nodes

    data = inputs()
    meta = data.meta
    rounds, per_round = data.cohorts.shape

    class CohortFedAvg(FedAvg):
        """FedAvg whose round r trains exactly cohorts[r] (fednlp's), one message per cohort client."""

        def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
            if server_round == 1:
                report["round_loop_start"] = time.perf_counter()
            report.setdefault("round_start_s", []).append(time.perf_counter())
            cohort = data.cohorts[server_round - 1]
            node_ids, _ = sample_nodes(grid, self.min_available_nodes, len(cohort))
            messages = []
            for slot, (node_id, client) in enumerate(zip(node_ids, cohort.tolist())):
                if client < 0:  # fednlp skips a client without rows (never happens in WU-A/WU-B)
                    continue
                record = RecordDict({
                    self.arrayrecord_key: arrays,
                    self.configrecord_key: ConfigRecord({**config, "server-round": server_round, "slot": slot,
                                                         "client-id": client}),
                })
                messages.append(Message(content=record, message_type=MessageType.TRAIN, dst_node_id=node_id))
            return messages

        def aggregate_train(self, server_round: int, replies):
            replies = list(replies)
            errors = [m.error.reason for m in replies if m.has_error()]
            if errors:
                raise RuntimeError(f"round {server_round}: {len(errors)} client(s) failed: {errors[0]}")
            report["local_steps_total"] = report.get("local_steps_total", 0) + sum(
                int(m.content["metrics"]["steps"]) for m in replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            now = time.perf_counter()
            report.setdefault("round_end_s", []).append(now)
            if server_round == rounds:
                report["round_loop_end"] = now
            return arrays, metrics

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round != rounds:  # evaluation once, after the last round (as fednlp's eval_every = rounds)
            return None
        start = time.perf_counter()
        torch.set_num_threads(cores())
        model = data.build_model()
        model.load_state_dict(arrays.to_torch_state_dict(), strict=True)
        metrics = evaluate(model, data, int(meta["eval_batch_size"]))
        report["evaluation_s"] = time.perf_counter() - start
        report["metrics"] = metrics
        return MetricRecord(metrics)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        n_nodes = int(meta["n_clients"])
        strategy = CohortFedAvg(fraction_train=per_round / n_nodes, fraction_evaluate=0.0, min_train_nodes=per_round,
                                min_evaluate_nodes=0, min_available_nodes=n_nodes)
        initial = ArrayRecord({name: torch.from_numpy(data.init_weights[name]) for name in data.init_names})
        train_config = ConfigRecord({"lr": float(meta["lr"]), "weight-decay": float(meta["weight_decay"])})
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, train_config=train_config,
                                evaluate_fn=evaluate_fn)
        if weights_out:  # after the timed loop; only with --weights-out (flower_compare --verify)
            import numpy as np

            final = result.arrays.to_torch_state_dict()
            np.savez(weights_out, **{name: final[name].numpy() for name in data.init_names})

    return server_app


def main(argv: list[str] | None = None, process_start: float = PROCESS_START) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", required=True, help="the .npz written by benchmarks.flower_compare")
    parser.add_argument("--out", required=True, help="JSON file of the timings")
    parser.add_argument("--actors", type=int, default=cores(), help="Ray CPUs = actors (1 CPU each); default: cores")
    parser.add_argument("--client-threads", type=int, default=1, help="torch threads per client actor")
    parser.add_argument("--weights-out", help="write the final global weights here (.npz), after the round loop")
    args = parser.parse_args(argv)

    os.environ[INPUTS_ENV] = str(Path(args.inputs).resolve())  # Ray workers inherit the driver's environment
    os.environ[THREADS_ENV] = str(args.client_threads)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import flwr
    import numpy as np
    import ray
    import torch
    import transformers
    from flwr.simulation import run_simulation

    imported = time.perf_counter()
    report: dict = {}
    data = inputs()
    loaded = time.perf_counter()
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": args.actors, "num_gpus": 0},
    }
    sim_start = time.perf_counter()
    run_simulation(server_app=make_server_app(report, args.weights_out), client_app=make_client_app(),
                   num_supernodes=int(data.meta["n_clients"]), backend_name="ray", backend_config=backend_config)
    sim_end = time.perf_counter()
    if "round_loop_end" not in report:
        raise SystemExit("the Flower simulation ended before its last round (see the log above)")
    rounds = int(data.cohorts.shape[0])
    out = {
        "unit": data.meta["unit"],
        "round_loop_s": report["round_loop_end"] - report["round_loop_start"],
        "per_round_s": [e - s for s, e in zip(report["round_start_s"], report["round_end_s"])],
        "evaluation_s": report.get("evaluation_s"),
        "simulation_s": sim_end - sim_start,
        "startup_s": report["round_loop_start"] - sim_start,
        "imports_s": imported - process_start,
        "load_inputs_s": loaded - imported,
        "process_s": time.perf_counter() - process_start,
        "rounds": rounds,
        "clients_per_round": int(data.cohorts.shape[1]),
        "n_clients": int(data.meta["n_clients"]),
        "local_steps_total": report.get("local_steps_total"),
        "metrics": report.get("metrics"),
        "actors": args.actors,
        "client_threads": args.client_threads,
        "server_threads": cores(),
        "versions": {"flwr": flwr.__version__, "ray": ray.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
    }
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True))
    print(json.dumps({k: out[k] for k in ("unit", "round_loop_s", "evaluation_s", "simulation_s", "process_s")}))
    return 0


if __name__ == "__main__":
    # Run the copy imported under its package name: Ray pickles `train` and `inputs` by reference to
    # benchmarks.flower_app (importable in the actors), so each actor keeps one cache of the inputs.
    from benchmarks import flower_app

    sys.exit(flower_app.main(process_start=PROCESS_START))

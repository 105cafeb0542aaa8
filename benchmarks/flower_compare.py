"""fednlp and Flower 1.42's simulation side by side: same machine, same tensors, same clients, same steps.

    .venv/bin/python -m benchmarks.flower_compare --units WU-A WU-B

Optional: Flower is never a dependency of fednlp. The first run makes its own virtual environment,
benchmarks/.work/flower-venv (torch==2.13.0 first, the local CPU wheel, then flwr[simulation]==1.42.0 with
fednlp's pins of transformers, tokenizers, numpy and safetensors); later runs reuse it.

Per unit:
1. `benchmarks.run.prepare` makes (or reuses) the data and partition files;
2. in this (fednlp's) process, fednlp's own objects export benchmarks/.work/flower-<unit>.npz: the cached
   token arrays of fednlp's feature cache (input_ids, attention_mask, token_type_ids, lengths, labels), every
   client's training rows, each round's cohort from fednlp's sampler (the one the runtime calls), each
   cohort client's dropout seed and batch plan (fednlp's `round_rng` and `batch_plan`), its FedAvg weight
   (example count), the test rows of the final evaluation, the model config and the initial weights
   (torch.manual_seed(seed), then the task's build_model, as `fednlp train` builds them);
3. `fednlp train` runs the unit as one process (`benchmarks.run.run_federated`, OMP_NUM_THREADS = cores),
   then benchmarks/flower_app.py runs Flower's simulation of the same inputs with the Flower venv's python;
4. prints and appends to benchmarks/results.jsonl (kind "flower") both round loops (evaluation excluded),
   both end-to-end process times, the ratios Flower / fednlp and the final metrics of both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.run import RESULTS, REPO, UNITS, WORK, Unit, loop_without_evaluation, machine, prepare, run_federated

FLOWER_VENV = WORK / "flower-venv"
TORCH_PIN = "torch==2.13.0"  # the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build
FLOWER_PINS = ("flwr[simulation]==1.42.0", "transformers==5.24.0", "tokenizers==0.23.3", "numpy==2.4.6",
               "safetensors==0.8.0")
TARGETS = {"WU-A": 1.4, "WU-B": 5.0}  # the issue's: Flower round loop / fednlp round loop at least this


def flower_python() -> Path:
    return FLOWER_VENV / "bin" / "python"


def ensure_flower_venv() -> Path:
    """Make benchmarks/.work/flower-venv once (idempotent: a marker records the pins it was made with)."""
    python = flower_python()
    marker = FLOWER_VENV / ".fednlp-flower-pins"
    wanted = "\n".join((TORCH_PIN, *FLOWER_PINS))
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        print(f"making the Flower virtual environment {FLOWER_VENV} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(FLOWER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, TORCH_PIN, *FLOWER_PINS], check=True)
    subprocess.run([str(python), "-c", "import flwr, ray, torch, transformers; "
                    "assert flwr.__version__ == '1.42.0', flwr.__version__"], check=True)
    marker.write_text(wanted)
    return python


def export_inputs(unit: Unit, data: Path, part: Path) -> Path:
    """The unit's inputs as fednlp's runtime sees them, written to benchmarks/.work/flower-<unit>.npz."""
    import torch

    from fednlp.algorithms.samplers import get_sampler
    from fednlp.config import TrainConfig
    from fednlp.data.datafile import read_data_file
    from fednlp.tasks.feature_cache import load_or_build_features
    from fednlp.federation.clients import read_clients
    from fednlp.run.random_streams import round_rng
    from fednlp.run.local_training import batch_plan
    from fednlp.run.session import evaluation_examples
    from fednlp.tasks.models import load_tokenizer
    from fednlp.tasks.registry import resolve_task

    config = TrainConfig(data=str(data), partition=str(part), method=unit.method,
                         **{**unit.train, "eval_every": unit.train["rounds"]})
    config.validate()
    datafile = read_data_file(config.data)
    task = resolve_task(config.task, datafile.task_type, config.data)(datafile, load_tokenizer(config.model), config)
    features = load_or_build_features(task, config.data)
    unsupported = set(features.arrays) - {"input_ids", "attention_mask", "token_type_ids", "labels"}
    if unsupported or features.host_arrays:
        raise SystemExit(f"{unit.name}: the Flower side supports text classification only (found {sorted(unsupported)})")
    clients = read_clients(config.partition, config.method, datafile.n_examples, config.data)
    sizes = clients.sizes

    rows_of_client = [features.rows_of(train) for train in clients.train]
    offsets = np.zeros(len(rows_of_client) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows_of_client])

    # The same calls, in the same order, as Federation.run_round (fednlp/federation/runtime.py).
    sampler = get_sampler(config.sampler)()
    k = config.clients_per_round
    cohorts = np.full((config.rounds, k), -1, dtype=np.int64)
    num_examples = np.zeros((config.rounds, k), dtype=np.int64)
    dropout_seeds = np.zeros((config.rounds, k), dtype=np.int64)
    first_batch = np.zeros((config.rounds, k), dtype=np.int64)
    n_batches = np.zeros((config.rounds, k), dtype=np.int64)
    positions: list[np.ndarray] = []
    for round_idx in range(config.rounds):
        cohort = sampler.sample(config.seed, round_idx, sizes, k)
        weights = sampler.aggregation_weights(cohort, sizes)
        expected = sizes[cohort] / sizes[cohort].sum()
        if not np.allclose(weights, expected, rtol=1e-12, atol=0):
            raise SystemExit(f"sampler {config.sampler!r} does not weight by n_i / sum n_j, Flower's FedAvg rule")
        for slot, client in enumerate(cohort.tolist()):
            rows = rows_of_client[client]
            if len(rows) == 0:
                continue  # fednlp skips it; so does the Flower side (client id -1)
            cohorts[round_idx, slot] = client
            num_examples[round_idx, slot] = sizes[client]
            rng = round_rng(config.seed, round_idx, 1, client)
            dropout_seeds[round_idx, slot] = int(rng.integers(2**62))
            plan = batch_plan(len(rows), config.batch_size, rng, steps=config.local_steps, epochs=config.local_epochs)
            first_batch[round_idx, slot] = len(positions)
            n_batches[round_idx, slot] = len(plan)
            positions.extend(plan)
    batch_offsets = np.zeros(len(positions) + 1, dtype=np.int64)
    batch_offsets[1:] = np.cumsum([len(p) for p in positions])

    test_rows = features.rows_of(evaluation_examples(datafile, config))

    torch.manual_seed(config.seed)  # as open_session: the same initial model
    model = task.build_model(config.model)
    state = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    token_arrays = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in features.arrays]
    meta = {
        "unit": unit.name, "n_clients": clients.n_clients, "rounds": config.rounds, "clients_per_round": k,
        "batch_size": config.batch_size, "lr": config.lr, "optimizer": config.optimizer,
        "weight_decay": config.weight_decay, "eval_batch_size": config.eval_batch_size, "seed": config.seed,
        "num_labels": int(model.config.num_labels), "model_config": model.config.to_dict(),
        "token_arrays": token_arrays, "sequence_arrays": list(features.sequence_arrays), "param_names": list(state),
        "trainable_names": [name for name, p in model.named_parameters() if p.requires_grad],  # fednlp's flat order
    }
    if config.optimizer != "sgd" or config.max_grad_norm is not None or config.precision != "fp32":
        raise SystemExit(f"{unit.name}: the Flower client runs plain fp32 SGD without clipping")
    out = WORK / f"flower-{unit.name}.npz"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), lengths=features.lengths, labels=features.arrays["labels"],
             client_rows_flat=np.concatenate(rows_of_client).astype(np.int64), client_rows_offsets=offsets,
             cohorts=cohorts, num_examples=num_examples, dropout_seeds=dropout_seeds,
             plan_positions=np.concatenate(positions).astype(np.int64), plan_batch_offsets=batch_offsets,
             plan_first_batch=first_batch, plan_n_batches=n_batches, test_rows=test_rows.astype(np.int64),
             **{name: features.arrays[name] for name in token_arrays},
             **{f"init__{name}": value for name, value in state.items()})
    os.replace(tmp, out)
    return out


def run_flower(unit: Unit, inputs: Path, actors: int | None, log: Path, weights_out: Path | None = None) -> dict:
    out = WORK / f"flower-{unit.name}.json"
    out.unlink(missing_ok=True)
    cmd = [str(flower_python()), "-m", "benchmarks.flower_app", "--inputs", str(inputs), "--out", str(out)]
    if weights_out is not None:
        weights_out.unlink(missing_ok=True)
        cmd += ["--weights-out", str(weights_out)]
    if actors is not None:
        cmd += ["--actors", str(actors)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("OMP_NUM_THREADS", None)  # Ray sets it to each actor's num_cpus (1); the app sets torch's threads
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0 or not out.exists():
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"the Flower simulation of {unit.name} failed (exit {done.returncode}); log {log}:\n{tail}")
    result = json.loads(out.read_text())
    result["process_wall_s"] = wall
    return result


def compare(unit: Unit, actors: int | None, verify: bool = False) -> dict:
    data, part = prepare(unit)
    inputs = export_inputs(unit, data, part)
    # Its own run directory (runs/<unit>-vs-flower-r1): benchmarks.run may be running the same unit beside it.
    # --verify: both sides keep their final global weights (fednlp: a checkpoint after the last round).
    train = {**unit.train, "checkpoint_every": unit.train["rounds"]} if verify else unit.train
    fed_unit = dataclasses.replace(unit, name=f"{unit.name}-vs-flower", train=train)
    fed = run_federated(fed_unit, data, part, 1)
    weights = WORK / f"flower-{unit.name}-weights.npz" if verify else None
    flower = run_flower(unit, inputs, actors, WORK / f"flower-{unit.name}.log", weights)
    fed_loop = loop_without_evaluation(fed, "round_loop_s") - fed["timing_s"].get("checkpoint", 0.0)
    if flower["local_steps_total"] != fed["local_steps_total"]:
        raise SystemExit(f"{unit.name}: Flower ran {flower['local_steps_total']} local steps, fednlp "
                         f"{fed['local_steps_total']}")
    row = {
        "kind": "flower", "unit": unit.name, "steps": fed["local_steps_total"],
        "fednlp_round_loop_s": round(fed_loop, 2), "flower_round_loop_s": round(flower["round_loop_s"], 2),
        "ratio_round_loop": round(flower["round_loop_s"] / fed_loop, 3),
        "target_ratio": TARGETS.get(unit.name),
        "fednlp_wall_s": round(fed["process_wall_s"], 2), "flower_wall_s": round(flower["process_wall_s"], 2),
        "ratio_wall": round(flower["process_wall_s"] / fed["process_wall_s"], 3),
        "fednlp_evaluation_s": round(fed["timing_s"].get("evaluation", 0.0), 2),
        "flower_evaluation_s": round(flower["evaluation_s"], 2),
        "flower_startup_s": round(flower["startup_s"], 2), "flower_imports_s": round(flower["imports_s"], 2),
        "flower_per_round_s": [round(s, 3) for s in flower["per_round_s"]],
        "fednlp_metrics": fed["metrics"], "flower_metrics": flower["metrics"],
        "flower_actors": flower["actors"], "flower_client_threads": flower["client_threads"],
        "fednlp_threads": os.cpu_count(), "verify": verify,
        "versions": {**fed["versions"], **{f"flower_{k}": v for k, v in flower["versions"].items()}},
        "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if verify:
        row["final_weights"] = weight_difference(WORK / "runs" / f"{fed_unit.name}-r1", weights, inputs)
    return row


def weight_difference(run_dir: Path, flower_weights: Path, inputs: Path) -> dict:
    """fednlp's final global weights (its last checkpoint) against Flower's, parameter by parameter."""
    from fednlp.federation.checkpoint import load_latest_checkpoint

    fed_flat = load_latest_checkpoint(run_dir).global_weights.double().numpy()
    with np.load(inputs) as z:
        names = json.loads(str(z["meta"]))["trainable_names"]
        init = np.concatenate([z[f"init__{name}"].reshape(-1) for name in names]).astype(np.float64)
    with np.load(flower_weights) as z:
        flower_flat = np.concatenate([z[name].reshape(-1) for name in names]).astype(np.float64)
    diff = np.abs(fed_flat - flower_flat)
    return {"max_abs_diff": float(diff.max()),
            "rel_diff": float(np.linalg.norm(fed_flat - flower_flat) / np.linalg.norm(fed_flat - init)),
            "params": int(diff.size)}


def table(rows: list[dict]) -> str:
    lines = ["| unit | steps | fednlp round loop s | Flower round loop s | Flower / fednlp (target) | fednlp end to end s "
             "| Flower end to end s | Flower / fednlp | accuracy fednlp / Flower |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        target = f" ({r['target_ratio']}x)" if r["target_ratio"] else ""
        lines.append(f"| {r['unit']} | {r['steps']} | {r['fednlp_round_loop_s']:.2f} | {r['flower_round_loop_s']:.2f} | "
                     f"{r['ratio_round_loop']:.2f}x{target} | {r['fednlp_wall_s']:.1f} | {r['flower_wall_s']:.1f} | "
                     f"{r['ratio_wall']:.2f}x | {r['fednlp_metrics'].get('accuracy', float('nan')):.4f} / "
                     f"{(r['flower_metrics'] or {}).get('accuracy', float('nan')):.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", nargs="+", default=["WU-A", "WU-B"], choices=sorted(UNITS))
    parser.add_argument("--actors", type=int, default=None, help="Flower's Ray actors, 1 CPU each (default: cores)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side per unit, alternating")
    parser.add_argument("--verify", action="store_true",
                        help="also compare the final global weights of both (fednlp writes a checkpoint)")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_flower_venv()
    rows = []
    for name in args.units:
        for _ in range(args.repeats):
            row = compare(UNITS[name], args.actors, args.verify)
            rows.append(row)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            print(json.dumps({k: row[k] for k in ("unit", "fednlp_round_loop_s", "flower_round_loop_s",
                                                  "ratio_round_loop", "fednlp_wall_s", "flower_wall_s",
                                                  "ratio_wall", "final_weights") if k in row}), flush=True)
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())

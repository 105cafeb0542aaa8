"""The benchmark harness: named work units, federated vs the centralized floor of the same steps.

    .venv/bin/python -m benchmarks.run                      # every unit, 1 process and mpirun -n 2
    .venv/bin/python -m benchmarks.run --units WU-A --ranks 1

For each unit it runs `fednlp train` (as 1 process, and under mpirun -n R) and `fednlp centralized` with
the same total number of local steps, batch size, model and data (the floor), each in a fresh process,
and prints: end-to-end wall time, round-loop time (evaluation excluded), the floor, R = round loop /
floor, the per-round split (local training, weight copies, aggregation incl. the collective,
evaluation, data loading) and peak memory per rank. Every run appends one JSON line (machine,
versions, git commit, numbers) to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEDNLP_SHARED_DATA", REPO.parent / "shared" / "data"))
WORK = REPO / "benchmarks" / ".work"
RESULTS = REPO / "benchmarks" / "results.jsonl"
PHASES = ("local_training", "weight_copy", "aggregation", "evaluation", "data_loading")


@dataclass(frozen=True)
class Dataset:
    reader: str
    source: Path
    prepare_flags: tuple[str, ...] = ()


DATASETS = {
    "20news": Dataset("20news", SHARED / "20newsgroups" / "20news-bydate.tar.gz"),
    "sst2": Dataset("sst2", SHARED / "sst2"),
    # The other heads' data, as their run_scripts prepare it (benchmarks/frozen_cache.py --head).
    "conll2003": Dataset("conll2003", SHARED / "conll2003"),
    # SQuAD's train file is not available offline: its dev file re-split 80/20 with seed 0 (results_qa.sh).
    "squad": Dataset("squad", SHARED / "squad_v1.1" / "dev-v1.1.json", ("--test-fraction", "0.2", "--seed", "0")),
    "aeslc": Dataset("aeslc", SHARED / "aeslc" / "enron_subject_line.tar.gz"),
}


@dataclass(frozen=True)
class Unit:
    """One work unit: the data, its partition and the federated schedule."""

    name: str
    dataset: str
    clients: int
    alpha: float
    train: dict = field(default_factory=dict)  # flags of `fednlp train` (and, where shared, of centralized)

    @property
    def method(self) -> str:
        return f"niid_label_clients={self.clients}_alpha={self.alpha}"


UNITS = {
    unit.name: unit
    for unit in (
        Unit("WU-A", "20news", 100, 1.0, dict(model="tiny-bert", max_seq_length=128, rounds=5, clients_per_round=10,
                                               local_steps=5, batch_size=16, lr=0.1, optimizer="sgd",
                                               eval_max_examples=1000)),
        Unit("WU-B", "sst2", 1000, 1.0, dict(model="tiny-bert", max_seq_length=32, rounds=20, clients_per_round=50,
                                              local_steps=1, batch_size=8, lr=0.1, optimizer="sgd")),
        Unit("WU-B10k", "sst2", 10000, 1.0, dict(model="tiny-bert", max_seq_length=32, rounds=20,
                                                  clients_per_round=50, local_steps=1, batch_size=8, lr=0.1,
                                                  optimizer="sgd")),
        Unit("WU-C", "20news", 100, 1.0, dict(model="minilm", max_seq_length=128, rounds=3, clients_per_round=10,
                                               local_epochs=1, batch_size=16, lr=5e-5, optimizer="adamw",
                                               eval_max_examples=1000)),
    )
}


def selected_units(names: list[str], rounds: int | None) -> list[Unit]:
    """The named units, each with `rounds` in place of its own when given (a quick check)."""
    return [dataclasses.replace(UNITS[n], train={**UNITS[n].train, "rounds": rounds}) if rounds else UNITS[n]
            for n in names]


SHARED_FLAGS = ("model", "max_seq_length", "batch_size", "lr", "optimizer", "eval_max_examples")


FEDNLP_BIN = os.environ.get("FEDNLP_BIN", str(REPO / ".venv" / "bin" / "fednlp"))


def fednlp(*args: str, ranks: int = 1, threads: int | None = None) -> None:
    cmd = [FEDNLP_BIN, *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
               "-x", "OMP_NUM_THREADS", "-x", "HF_HUB_OFFLINE", "-x", "TOKENIZERS_PARALLELISM", *cmd]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def prepare(unit: Unit) -> tuple[Path, Path]:
    """Data and partition files (made once, kept in benchmarks/.work)."""
    dataset = DATASETS[unit.dataset]
    data = WORK / f"{unit.dataset}.h5"
    part = WORK / f"{unit.dataset}_partition.h5"
    if not data.exists():
        fednlp("data", "prepare", "--dataset", dataset.reader, "--source", str(dataset.source), "--out", str(data),
               *dataset.prepare_flags)
    has_group = False
    if part.exists():
        import h5py

        with h5py.File(part, "r") as f:
            has_group = unit.method in f
    if not has_group:
        fednlp("partition", "--data", str(data), "--out", str(part), "--method", "niid_label", "--clients",
               str(unit.clients), "--alpha", str(unit.alpha), "--seed", "0")
    return data, part


def flags(values: dict) -> list[str]:
    return [x for key, value in values.items() for x in (f"--{key.replace('_', '-')}", str(value))]


def run_federated(unit: Unit, data: Path, part: Path, ranks: int, extra: tuple[str, ...] = ()) -> dict:
    out = WORK / "runs" / f"{unit.name}-r{ranks}"
    threads = max(1, (os.cpu_count() or 1) // ranks)
    start = time.perf_counter()
    fednlp("train", "--data", str(data), "--partition", str(part), "--method", unit.method,
           *flags({**unit.train, "eval_every": unit.train["rounds"]}), "--out", str(out), "--overwrite", "true",
           *extra, ranks=ranks, threads=threads)
    result = json.loads((out / "result.json").read_text())
    result["process_wall_s"] = time.perf_counter() - start
    return result


def run_floor(unit: Unit, data: Path, steps: int, extra: tuple[str, ...] = ()) -> dict:
    out = WORK / "runs" / f"{unit.name}-floor"
    start = time.perf_counter()
    shared = {k: v for k, v in unit.train.items() if k in SHARED_FLAGS}
    fednlp("centralized", "--data", str(data), *flags(shared), "--steps", str(steps), "--out", str(out),
           "--overwrite", "true", *extra, threads=os.cpu_count())
    result = json.loads((out / "result.json").read_text())
    result["process_wall_s"] = time.perf_counter() - start
    return result


def loop_without_evaluation(result: dict, loop_key: str) -> float:
    return result[loop_key] - result["timing_s"].get("evaluation", 0.0)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def measure(unit: Unit, ranks_list: list[int], extra: tuple[str, ...] = ()) -> list[dict]:
    data, part = prepare(unit)
    rows = []
    floor = None
    for ranks in ranks_list:
        fed = run_federated(unit, data, part, ranks, extra)
        if floor is None:
            floor = run_floor(unit, data, fed["local_steps_total"], extra)
        fed_loop = loop_without_evaluation(fed, "round_loop_s")
        floor_loop = loop_without_evaluation(floor, "train_loop_s")
        rounds = unit.train["rounds"]
        rows.append({
            "unit": unit.name, "ranks": ranks, "steps": fed["local_steps_total"],
            "wall_s": round(fed["process_wall_s"], 2), "round_loop_s": round(fed_loop, 2),
            "floor_s": round(floor_loop, 2), "R": round(fed_loop / floor_loop, 3),
            "examples_per_s": round(fed["local_steps_total"] * unit.train["batch_size"] / fed_loop, 1),
            "floor_examples_per_s": round(fed["local_steps_total"] * unit.train["batch_size"] / floor_loop, 1),
            "device": fed["device"], "options": list(extra),
            "per_round_s": {p: round(fed["timing_s"].get(p, 0.0) / rounds, 4) for p in PHASES},
            "peak_rss_mb_per_rank": fed["peak_rss_mb_per_rank"], "floor_peak_rss_mb": floor["peak_rss_mb_per_rank"][0],
            "peak_cuda_mb_per_rank": fed.get("peak_cuda_mb_per_rank"),  # on a GPU run only
            "floor_peak_cuda_mb": (floor.get("peak_cuda_mb_per_rank") or [None])[0],
            "metric": fed["metric"], "value": fed["value"], "floor_value": floor["value"],
            "versions": fed["versions"], "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        })
    return rows


def table(rows: list[dict]) -> str:
    head = ("| unit | ranks | steps | wall s | round loop s | floor s | R | train / copy / aggr / eval / data "
            "s per round | peak MB per rank |\n|---|---:|---:|---:|---:|---:|---:|---|---|")
    lines = [head]
    for r in rows:
        split = " / ".join(f"{r['per_round_s'][p]:.3f}" for p in PHASES)
        lines.append(f"| {r['unit']} | {r['ranks']} | {r['steps']} | {r['wall_s']:.1f} | {r['round_loop_s']:.2f} | "
                     f"{r['floor_s']:.2f} | {r['R']:.3f} | {split} | "
                     f"{', '.join(f'{m:.0f}' for m in r['peak_rss_mb_per_rank'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", nargs="+", default=["WU-A", "WU-B", "WU-C"], choices=sorted(UNITS))
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--rounds", type=int, help="override every unit's rounds (quick checks)")
    args = parser.parse_args(argv)
    extra = ("--device", args.device, "--precision", args.precision)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for unit in selected_units(args.units, args.rounds):
        for row in measure(unit, args.ranks, extra):
            rows.append(row)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            print(json.dumps({k: row[k] for k in ("unit", "ranks", "device", "options", "R", "round_loop_s", "floor_s",
                                                  "examples_per_s", "floor_examples_per_s")}), flush=True)
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())

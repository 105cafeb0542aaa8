"""Cached frozen layers (`--cache-frozen`): the cache's build time and disk size, and one local step cached vs
the same frozen model computing its frozen blocks every step vs full fine-tuning (benchmarks, not tests).

    .venv/bin/python -m benchmarks.frozen_cache                  # MiniLM, 20 Newsgroups, length 256, K = 5
    .venv/bin/python -m benchmarks.frozen_cache --steps 10 --rebuild --dtype bf16

The data file is benchmarks/run.py's 20 Newsgroups (made once in benchmarks/.work from ../shared/data). The
cache covers every row of the data file (train and test: evaluation reads it too) and is built here in one
process (`--rebuild` deletes an earlier one first, so its build is timed). On a CPU that build takes long
(MiniLM's 5 blocks over 18,846 rows of 256 tokens); `--build-rows N` builds the first N rows only (by the same
code), times them and extrapolates to every row and to the training split; the steps then draw from those N
rows (training rows: the data file lists its training split first). The step timings run side by
side in this process on the same random batches of the training split (batch 16, AdamW, the local trainer of
fednlp/run/local_training.py, data loading included: the cached step reads its states from the memory map):
- cached: `--freeze-layers 5 --cache-frozen` (blocks 6.. and the head run);
- uncached frozen: `--freeze-layers 5` (today's: the frozen blocks run at every step, with dropout);
- full: nothing frozen.
Each reports the median of --steps steps after two warm-up steps. A JSON line goes to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import fields

import numpy as np
import torch

from benchmarks.run import RESULTS, UNITS, WORK, machine, prepare

WARMUP = 2  # untimed steps per mode


def step_times(model: torch.nn.Module, task, features, config, rows: np.ndarray, batches: list[np.ndarray]) -> list[float]:
    from fednlp.run.local_training import LocalTrainer, PhaseTimer

    trainer = LocalTrainer(model, task, features, config, torch.device("cpu"), PhaseTimer())
    times = []
    for positions in batches:
        start = time.perf_counter()
        trainer.train(rows, [positions])
        times.append(time.perf_counter() - start)
    return times[WARMUP:]  # the first steps warm up (allocations, the optimizer's state, the memory map's pages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--freeze-layers", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per mode (after two warm-up steps)")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--rebuild", action="store_true", help="delete an earlier cache first (time its build)")
    parser.add_argument("--build-rows", type=int, default=0,
                        help="build the cache of the first N rows only and extrapolate its time (0: every row)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from fednlp.config import RunConfig
    from fednlp.data.datafile import read_data_file
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.tasks.feature_cache import load_or_build_features
    from fednlp.tasks.base import Features
    from fednlp.tasks.frozen_prefix import (STORAGE, CachedPrefixFeatures, FrozenPrefix, build_cache_file,
                                            cache_shape, cached_prefix_features, frozen_cache_path)
    from fednlp.tasks.models import freeze_layers, load_tokenizer
    from fednlp.tasks.registry import resolve_task

    data_path, _ = prepare(UNITS["WU-C"])
    load = os.getloadavg()[0]
    config = RunConfig(data=str(data_path), model=args.model, max_seq_length=args.max_seq_length,
                       batch_size=args.batch_size, optimizer="adamw", lr=5e-5, freeze_layers=args.freeze_layers,
                       cache_frozen=True, frozen_cache_dtype=args.dtype, eval_batch_size=64)
    data = read_data_file(str(data_path), lazy=True)
    task = resolve_task("classification", data.task_type, str(data_path))(data, load_tokenizer(args.model), config)
    features = load_or_build_features(task, str(data_path))

    def model(k: int | None) -> torch.nn.Module:
        torch.manual_seed(0)
        built = task.build_model(args.model)
        if k is not None:
            freeze_layers(built, k)
        return built

    cached_model = model(args.freeze_layers)
    prefix = FrozenPrefix(cached_model, args.freeze_layers, args.model)
    n = features.n_rows if args.build_rows in (0, None) else min(args.build_rows, features.n_rows)
    if n == features.n_rows:  # the run's own path: the cache beside the feature cache, reused unless --rebuild
        path = frozen_cache_path(prefix, task, str(data_path), config.precision, args.dtype)
        if args.rebuild:
            path.unlink(missing_ok=True)
        reused = path.exists()
        start = time.perf_counter()
        cached = cached_prefix_features(cached_model, task, features, config, LocalCommunicator(), torch.device("cpu"))
        build_s = time.perf_counter() - start
        some = features
    else:  # the first n rows only (train rows: the data file lists the training split first); timed, extrapolated
        some = Features({k: v[:n] for k, v in features.arrays.items()}, features.lengths[:n],
                        features.example_of_row[:n], features.sequence_arrays, features.host_arrays)
        path, reused = WORK / f"frozen_cache_first{n}.npy", False
        start = time.perf_counter()
        build_cache_file(prefix, cached_model, some, path, config, LocalCommunicator(), torch.device("cpu"))
        build_s = time.perf_counter() - start
        cached = CachedPrefixFeatures(**{f.name: getattr(some, f.name) for f in fields(Features)},
                                      states=np.load(path, mmap_mode="r"), prefix=prefix)
    rows_total, width, hidden = cache_shape(prefix, features)
    row_bytes = width * hidden * np.dtype(STORAGE[args.dtype][0]).itemsize
    full_bytes = path.stat().st_size - some.n_rows * row_bytes + rows_total * row_bytes  # .npy header + rows

    rng = np.random.default_rng(0)
    train = np.asarray(data.train_index_list, dtype=np.int64)
    rows = features.rows_of(train[train < n])  # training rows the cache holds (all of them with the full cache)
    batches = [rng.choice(len(rows), size=args.batch_size, replace=False) for _ in range(args.steps + WARMUP)]
    timings = {
        "cached": step_times(cached_model, task, cached, config, rows, batches),
        "uncached_frozen": step_times(model(args.freeze_layers), task, features, config, rows, batches),
        "full": step_times(model(None), task, features, config, rows, batches),
    }
    median = {mode: statistics.median(t) for mode, t in timings.items()}
    record = {
        "benchmark": "frozen_cache", "machine": machine(), "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2), "model": args.model,
        "max_seq_length": args.max_seq_length, "freeze_layers": args.freeze_layers, "batch_size": args.batch_size,
        "dtype": args.dtype, "rows": rows_total, "width": width, "train_rows": len(data.train_index_list),
        "cache_rows_built": some.n_rows, "cache_reused": reused, "cache_build_s": round(build_s, 2),
        "cache_rows_per_s": None if reused else round(some.n_rows / build_s, 2),
        "cache_build_s_all_rows": None if reused else round(rows_total * build_s / some.n_rows, 1),
        "cache_build_s_train_split": None if reused else round(len(data.train_index_list) * build_s / some.n_rows, 1),
        "cache_bytes_all_rows": int(full_bytes), "steps": args.steps,
        "step_s_median": {mode: round(v, 4) for mode, v in median.items()},
        "step_s_all": {mode: [round(x, 4) for x in t] for mode, t in timings.items()},
        "speedup_vs_uncached_frozen": round(median["uncached_frozen"] / median["cached"], 2),
        "speedup_vs_full": round(median["full"] / median["cached"], 2),
        "torch_threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(RESULTS, "a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

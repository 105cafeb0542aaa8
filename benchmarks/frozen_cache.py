"""Cached frozen layers (`--cache-frozen`): the cache's build time and disk size, and one local step cached vs
the same frozen model computing its frozen blocks every step vs full fine-tuning, for each head (benchmarks, not
tests).

    .venv/bin/python -m benchmarks.frozen_cache                  # classification: MiniLM, 20 Newsgroups, 256, K = 5
    .venv/bin/python -m benchmarks.frozen_cache --steps 10 --rebuild --dtype bf16
    .venv/bin/python -m benchmarks.frozen_cache --steps 8 --build-rows 512 --precision bf16   # bf16 autocast
    .venv/bin/python -m benchmarks.frozen_cache --steps 8 --build-rows 512 --cls-only-last-block
    .venv/bin/python -m benchmarks.frozen_cache --head tagging --max-seq-length 128 --steps 8 --build-rows 512
    .venv/bin/python -m benchmarks.frozen_cache --head qa --max-seq-length 256 --steps 8 --build-rows 512
    .venv/bin/python -m benchmarks.frozen_cache --head seq2seq --max-seq-length 128 --steps 8 --build-rows 512

Heads (`--head`, default classification) and their data, each as its run_scripts prepare it (benchmarks/run.py's
DATASETS, made once in benchmarks/.work from $FEDNLP_SHARED_DATA, else ../shared/data):
- classification: 20 Newsgroups; K = 5 of MiniLM's 6 blocks;
- tagging: CoNLL-2003 NER (run_scripts/study.sh TASK=tagging); K = 5;
- qa: SQuAD v1.1 dev re-split 80/20 with seed 0, contexts cut into windows with --doc-stride 64 (results_qa.sh);
  several feature rows per question; K = 5;
- seq2seq: AESLC, MiniLM warm-started as a BERT2BERT, targets of 32 tokens, K = 4 of the encoder's blocks
  (results_seq2seq.sh's CPU profile; the decoder is never frozen or cached).
The cache covers every row of the data file's features (train and test: evaluation reads it too) and is built
here in one process (`--rebuild` deletes an earlier one first, so its build is timed). On a CPU that build takes
long (e.g. MiniLM's 5 blocks over 18,846 rows of 256 tokens); `--build-rows N` builds the first N feature rows
only (by the same code), times them and extrapolates to every row and to the training split; the steps then
draw from the training rows among those N (the data file lists its training split first, except SQuAD's seeded
split, whose first rows are a mix). The step timings run side by side in this process on the same random
batches of training rows (batch 16, AdamW, the local trainer of fednlp/run/local_training.py, data loading
included: the cached step reads its states from the memory map):
- cached: `--freeze-layers K --cache-frozen` (blocks K+1.. and the head run; seq2seq: and the decoder);
- uncached frozen: `--freeze-layers K` (the frozen blocks run at every step, with dropout);
- full: nothing frozen.
Each reports the median of --steps steps after two warm-up steps. A JSON line (with "head" and "dataset") goes to
benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from benchmarks.run import DATASETS, RESULTS, WORK, fednlp, machine

WARMUP = 2  # untimed steps per mode

#: --head -> (benchmarks/run.py's dataset, default --freeze-layers, the head's own RunConfig options). Each as its
#: run_scripts run it, so K means there what it means here (seq2seq: results_seq2seq.sh's 4 encoder blocks).
HEADS = {
    "classification": ("20news", 5, {}),
    "tagging": ("conll2003", 5, {}),
    "qa": ("squad", 5, {}),  # --doc-stride is a flag: it must stay below a window's context tokens
    "seq2seq": ("aeslc", 4, {"max_target_length": 32, "num_beams": 1}),
}


def data_file(name: str) -> Path:
    """The dataset's data file (made once in benchmarks/.work, as benchmarks/run.py's prepare makes it; no
    partition: the steps draw from the whole training split)."""
    dataset, path = DATASETS[name], WORK / f"{name}.h5"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        fednlp("data", "prepare", "--dataset", dataset.reader, "--source", str(dataset.source), "--out", str(path),
               *dataset.prepare_flags)
    return path


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
    parser.add_argument("--head", default="classification", choices=sorted(HEADS))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--freeze-layers", type=int, default=None, help="K (default: the head's, see above)")
    parser.add_argument("--doc-stride", type=int, default=64, help="qa: window overlap (results_qa.sh's 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per mode (after two warm-up steps)")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="the run's --precision: the build and all three modes' steps (bf16: autocast)")
    parser.add_argument("--cls-only-last-block", action="store_true",
                        help="classification: all three modes' last block computes the [CLS] row only")
    parser.add_argument("--rebuild", action="store_true", help="delete an earlier cache first (time its build)")
    parser.add_argument("--build-rows", type=int, default=0,
                        help="build the cache of the first N rows only and extrapolate its time (0: every row)")
    args = parser.parse_args(argv)
    dataset, default_k, options = HEADS[args.head]
    if args.freeze_layers is None:
        args.freeze_layers = default_k
    if args.head == "qa":
        options = {**options, "doc_stride": args.doc_stride}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from fednlp.config import RunConfig
    from fednlp.data.datafile import read_data_file
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.tasks.feature_cache import load_or_build_features
    from fednlp.tasks.base import Features
    from fednlp.tasks.frozen_prefix import (STORAGE, CachedPrefixFeatures, FrozenPrefix, build_cache_file,
                                            cache_shape, frozen_cache_path, load_or_build_cache)
    from fednlp.tasks.cls_only import cls_only_last_block
    from fednlp.tasks.models import freeze_layers, load_tokenizer
    from fednlp.tasks.registry import resolve_task

    data_path = data_file(dataset)
    load = os.getloadavg()[0]
    config = RunConfig(data=str(data_path), model=args.model, task=args.head, max_seq_length=args.max_seq_length,
                       batch_size=args.batch_size, optimizer="adamw", lr=5e-5, freeze_layers=args.freeze_layers,
                       cache_frozen=True, frozen_cache_dtype=args.dtype, eval_batch_size=64,
                       precision=args.precision, cls_only_last_block=args.cls_only_last_block, **options)
    data = read_data_file(str(data_path), lazy=True)
    task = resolve_task(args.head, data.task_type, str(data_path))(data, load_tokenizer(args.model), config)
    features = load_or_build_features(task, str(data_path))

    def model(k: int | None) -> torch.nn.Module:
        torch.manual_seed(0)
        built = task.build_model(args.model)
        if k is not None:
            freeze_layers(built, k)
        if args.cls_only_last_block:
            cls_only_last_block(built, args.model)
        return built

    cached_model = model(args.freeze_layers)
    prefix = FrozenPrefix(cached_model, args.freeze_layers, args.model)
    n = features.n_rows if args.build_rows in (0, None) else min(args.build_rows, features.n_rows)
    if n == features.n_rows:  # the run's own path: the cache beside the feature cache, reused unless --rebuild
        path = frozen_cache_path(prefix, task, str(data_path), config.precision, args.dtype, features)
        if args.rebuild:
            path.unlink(missing_ok=True)
        reused = path.exists()
        some = features
        start = time.perf_counter()  # load_or_build_cache, not cached_prefix_features: one prefix on the model
        states = load_or_build_cache(prefix, cached_model, task, features, config, LocalCommunicator(),
                                     torch.device("cpu"))
        build_s = time.perf_counter() - start
    else:  # the first n feature rows only; timed, extrapolated
        some = Features({k: v[:n] for k, v in features.arrays.items()}, features.lengths[:n],
                        features.example_of_row[:n], features.sequence_arrays, features.host_arrays)
        path, reused = WORK / f"frozen_cache_{args.head}_first{n}.npy", False
        start = time.perf_counter()
        build_cache_file(prefix, cached_model, some, path, config, LocalCommunicator(), torch.device("cpu"))
        build_s = time.perf_counter() - start
        states = np.load(path, mmap_mode="r")
    cached = CachedPrefixFeatures(**{f.name: getattr(some, f.name) for f in fields(Features)}, states=states,
                                  prefix=prefix)
    rows_total, width, hidden = cache_shape(prefix, features)
    row_bytes = width * hidden * np.dtype(STORAGE[args.dtype][0]).itemsize
    full_bytes = path.stat().st_size - some.n_rows * row_bytes + rows_total * row_bytes  # .npy header + rows

    rng = np.random.default_rng(0)
    train = np.asarray(data.train_index_list, dtype=np.int64)
    train_rows = features.rows_of(train)  # QA: each question's windows (rows are what the cache and a step cost)
    rows = train_rows[train_rows < n]  # training rows the cache holds (all of them with the full cache)
    batches = [rng.choice(len(rows), size=args.batch_size, replace=False) for _ in range(args.steps + WARMUP)]
    prefix.fed_calls = prefix.live_calls = 0  # count the cached steps' forwards, not the build's
    timings = {
        "cached": step_times(cached_model, task, cached, config, rows, batches),
        "uncached_frozen": step_times(model(args.freeze_layers), task, features, config, rows, batches),
        "full": step_times(model(None), task, features, config, rows, batches),
    }
    median = {mode: statistics.median(t) for mode, t in timings.items()}
    record = {
        "benchmark": "frozen_cache", "head": args.head, "dataset": dataset, **options, "machine": machine(),
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2), "model": args.model,
        "max_seq_length": args.max_seq_length, "freeze_layers": args.freeze_layers, "batch_size": args.batch_size,
        "dtype": args.dtype, "precision": args.precision, "cls_only_last_block": args.cls_only_last_block,
        "rows": rows_total, "width": width,
        "train_rows": len(train_rows),
        "train_examples": len(train),
        "cache_rows_built": some.n_rows, "cache_reused": reused, "cache_build_s": round(build_s, 2),
        "cache_rows_per_s": None if reused else round(some.n_rows / build_s, 2),
        "cache_build_s_all_rows": None if reused else round(rows_total * build_s / some.n_rows, 1),
        "cache_build_s_train_split": None if reused else round(len(train_rows) * build_s / some.n_rows, 1),
        "cache_bytes_all_rows": int(full_bytes), "steps": args.steps,
        "step_s_median": {mode: round(v, 4) for mode, v in median.items()},
        "step_s_all": {mode: [round(x, 4) for x in t] for mode, t in timings.items()},
        "speedup_vs_uncached_frozen": round(median["uncached_frozen"] / median["cached"], 2),
        "speedup_vs_full": round(median["full"] / median["cached"], 2),
        # every cached step's forward fed from the cache (live > 0: the prefix ran, the timing is not the cache's)
        "cached_forwards": {"fed": prefix.fed_calls, "live": prefix.live_calls},
        "torch_threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(RESULTS, "a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

"""Evaluation speed per head against its floor, on real data.

    .venv/bin/python -m benchmarks.eval_speed                          # 4 heads, 200 test examples each
    .venv/bin/python -m benchmarks.eval_speed --heads seq2seq --max-examples 0   # the whole test split

Per head (AESLC seq2seq, SQuAD v1.1 QA, CoNLL-2003 tagging, 20 Newsgroups classification), in a fresh
process each (peak memory is the process's): tiny-bert with seeded random weights (or --model, e.g. minilm,
the pretrained backbone with a seeded head), the same test examples
(a seeded subset of --max-examples, 0 = all), batch size --batch-size, fp32 on the CPU, and:

- evaluation: `fednlp.run.evaluation.evaluate` as a run calls it (length-bucketed batches, the task's
  predictions, the gather, the metric);
- floor: the bare loop over the same batches in the same order: `model(**inputs)` (no labels), or for
  seq2seq `model.generate` with the run's generation settings (beams, max new tokens, no sampling). Nothing
  else: no decoding, no post-processing, no metric.

A warm-up batch runs first; then evaluation and floor alternate --repeats times (best of each). Reported:
examples/s of both, their ratio (evaluation time / floor time), the same ratio in process CPU
time (all threads; less sensitive than wall time to other load on a shared machine) and peak RSS. Every run appends a
JSON line to benchmarks/results.jsonl. The floor uses the evaluation's own length-sorted batches, so the
ratio isolates what evaluation adds around the model; a naive loop in file order would be slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.run import RESULTS, SHARED, WORK, fednlp, machine

#: head -> (reader, source, prepare flags, options of the run config)
HEADS = {
    "seq2seq": ("aeslc", SHARED / "aeslc" / "enron_subject_line.tar.gz", (),
                {"max_seq_length": 64, "max_target_length": 64, "num_beams": 4}),
    "qa": ("squad", SHARED / "squad_v1.1" / "dev-v1.1.json", ("--test-fraction", "0.2"),
           {"max_seq_length": 384, "doc_stride": 128}),
    "tagging": ("conll2003", SHARED / "conll2003", (), {"max_seq_length": 128}),
    "classification": ("20news", SHARED / "20newsgroups" / "20news-bydate.tar.gz", (), {"max_seq_length": 128}),
}


def data_file(head: str) -> Path:
    reader, source, prepare_flags, _ = HEADS[head]
    path = WORK / f"eval_{reader}.h5"
    if not path.exists():
        fednlp("data", "prepare", "--dataset", reader, "--source", str(source), "--out", str(path), *prepare_flags)
    return path


def measure_head(head: str, max_examples: int, batch_size: int, seed: int, repeats: int,
                 model_name: str = "tiny-bert") -> dict:
    """One head in this process: the evaluation and its floor, timed on the same examples."""
    import numpy as np
    import torch

    from fednlp.config import RunConfig
    from fednlp.data.datafile import read_data_file
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.run.evaluation import evaluate
    from fednlp.run.session import evaluation_examples
    from fednlp.tasks.models import load_tokenizer
    from fednlp.tasks.registry import resolve_task

    try:
        from fednlp.tasks.feature_cache import load_or_build_features
    except ImportError:  # before the feature cache moved beside the tasks
        from fednlp.data.feature_cache import load_or_build_features

    path = data_file(head)
    config = RunConfig(data=str(path), model=model_name, eval_batch_size=batch_size, seed=seed,
                       eval_max_examples=max_examples or None, **HEADS[head][3])
    data = read_data_file(path)
    task = resolve_task(None, data.task_type, str(path))(data, load_tokenizer(config.model), config)
    features = load_or_build_features(task, str(path))
    torch.manual_seed(seed)
    model = task.build_model(config.model).eval()
    examples = evaluation_examples(data, config)
    cpu = torch.device("cpu")
    rows = features.rows_of(examples)

    by_length = rows[np.argsort(features.lengths[rows], kind="stable")]

    def bare_loop(chunks: list) -> None:
        with torch.no_grad():
            for chunk in chunks:
                batch = features.batch(chunk, cpu)
                if head == "seq2seq":
                    model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   num_beams=config.num_beams, max_new_tokens=config.max_target_length,
                                   do_sample=False)
                else:
                    model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")})

    chunks = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    bare_loop(chunks[-1:])  # warm-up (the first forward pays one-time allocations), outside every timing
    timings: dict[str, list[tuple[float, float]]] = {"evaluation": [], "floor": []}
    metrics: dict = {}
    for _ in range(repeats):  # alternated, best of each: load from other processes hits both alike
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics = evaluate(model, task, features, examples, LocalCommunicator(), batch_size, cpu, "fp32")
        timings["evaluation"].append((time.perf_counter() - start, time.process_time() - cpu_start))
        start, cpu_start = time.perf_counter(), time.process_time()
        bare_loop(chunks)
        timings["floor"].append((time.perf_counter() - start, time.process_time() - cpu_start))
    evaluation_s, evaluation_cpu_s = (min(t[i] for t in timings["evaluation"]) for i in (0, 1))
    floor_s, floor_cpu_s = (min(t[i] for t in timings["floor"]) for i in (0, 1))
    return {"head": head, "dataset": HEADS[head][0], "model": model_name, "examples": len(examples), "rows": len(rows),
            "batch_size": batch_size, "evaluation_s": round(evaluation_s, 3), "floor_s": round(floor_s, 3),
            "examples_per_s": round(len(examples) / evaluation_s, 2),
            "floor_examples_per_s": round(len(examples) / floor_s, 2), "ratio": round(evaluation_s / floor_s, 3),
            "evaluation_cpu_s": round(evaluation_cpu_s, 3), "floor_cpu_s": round(floor_cpu_s, 3),
            "cpu_ratio": round(evaluation_cpu_s / floor_cpu_s, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "metrics": metrics, "options": HEADS[head][3], "threads": torch.get_num_threads(), "repeats": repeats}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--max-examples", type=int, default=200, help="seeded test subset per head (0: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny-bert", help="the backbone (tiny-bert, minilm, a local directory)")
    parser.add_argument("--repeats", type=int, default=3, help="evaluation and floor alternated, best of N "
                        "(seq2seq: 1, its beam search is slow enough on a CPU)")
    parser.add_argument("--one", choices=list(HEADS), help=argparse.SUPPRESS)  # the child process of one head
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.one:
        repeats = 1 if args.one == "seq2seq" else args.repeats
        print(json.dumps(measure_head(args.one, args.max_examples, args.batch_size, args.seed, repeats, args.model)))
        return
    rows = []
    for head in args.heads:
        data_file(head)  # prepared outside the timed child
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run([sys.executable, "-m", "benchmarks.eval_speed", "--one", head, "--max-examples",
                               str(args.max_examples), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                               "--repeats", str(args.repeats), "--model", args.model],
                              check=True, capture_output=True, text=True, env=env)
        row = {**json.loads(done.stdout.strip().splitlines()[-1]), "machine": machine(),
               "load_avg_1m": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        rows.append(row)
        with open(RESULTS, "a") as f:
            f.write(json.dumps({"benchmark": "eval_speed", **row}, sort_keys=True) + "\n")
        print(json.dumps({k: row[k] for k in ("head", "examples", "examples_per_s", "floor_examples_per_s", "ratio",
                                              "cpu_ratio", "peak_rss_mb", "load_avg_1m")}), flush=True)
    print("| head | data | examples | eval ex/s | floor ex/s | wall ratio | CPU-time ratio | peak MB |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['head']} | {r['dataset']} | {r['examples']} | {r['examples_per_s']} | "
              f"{r['floor_examples_per_s']} | {r['ratio']} | {r['cpu_ratio']} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())

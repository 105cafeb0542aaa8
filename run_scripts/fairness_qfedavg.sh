#!/usr/bin/env bash
# docs/fairness.md's q-FedAvg table: FedAvg vs q-FedAvg (q = 1, 5) on 20 Newsgroups with label-skewed clients
# (Dirichlet alpha 1.0, 100 clients), the same budget for each, every client's test split evaluated at the end
# (their example-weighted mean is the accuracy on the whole test split; the global evaluation uses a subset).
#
#   nice -n 15 bash run_scripts/fairness_qfedavg.sh
#
# It reuses results_classification.sh's data file, partition file and 2-block MiniLM (made here if missing).
# AdamW clients for every row (plain SGD from this start stayed at chance within the budget); q-FedAvg's
# Lipschitz estimate L = 1/lr is the paper's rule, stated for SGD clients.
source "$(dirname "$0")/results_common.sh"
OUT=${OUT:-results/fairness}
DATA_DIR=${DATA_DIR:-results/classification}
mkdir -p "$OUT" "$DATA_DIR"
: "${MODEL:=$DATA_DIR/minilm-l2}" "${MAXLEN:=32}" "${BATCH:=16}" "${CLIENTS_PER_ROUND:=10}" "${ROUNDS:=15}"
: "${LOCAL_STEPS:=3}" "${LR:=1e-3}" "${SEEDS:=0 1}" "${QS:=1 5}"
truncated_minilm "$DATA_DIR/minilm-l2" 2
data=$DATA_DIR/20news.h5 part=$DATA_DIR/20news_partition.h5
[ -f "$data" ] || "$FEDNLP" data prepare --dataset 20news --source "$SHARED/20newsgroups/20news-bydate.tar.gz" --out "$data"
[ -f "$part" ] || "$FEDNLP" partition --data "$data" --out "$part" --method niid_label --clients 100 --alpha 1.0 --seed 0
method=niid_label_clients=100_alpha=1.0
common=(--data "$data" --partition "$part" --method "$method" --model "$MODEL" --max-seq-length "$MAXLEN"
        --freeze-layers 1 --batch-size "$BATCH" --optimizer adamw --lr "$LR" --max-grad-norm 1.0
        --rounds "$ROUNDS" --clients-per-round "$CLIENTS_PER_ROUND" --local-steps "$LOCAL_STEPS"
        --eval-every "$ROUNDS" --eval-max-examples 500 --eval-clients all --eval-batch-size 128 --save-model false --quiet true)
failed=()
for seed in $SEEDS; do
  fed_run "fedavg-seed$seed" "${common[@]}" --algorithm fedavg --seed "$seed"
  for q in $QS; do
    fed_run "qfedavg-q$q-seed$seed" "${common[@]}" --algorithm qfedavg --q "$q" --seed "$seed"
  done
done
"$PYTHON" - "$OUT/runs" <<'PY'
import json, statistics, sys
from collections import defaultdict
from pathlib import Path
rows = defaultdict(list)
for result in sorted(Path(sys.argv[1]).glob("*/result.json")):
    r = json.loads(result.read_text())
    name = r["algorithm"] + (f" q={r['config']['q']:g}" if r["algorithm"] == "qfedavg" else "")
    rows[name].append(r)
print("| algorithm | seeds | accuracy (500 test examples) | client mean | client std | worst-10% mean | best-10% mean | wall s |")
print("|---|---|---|---|---|---|---|---|")
def cell(values):
    return f"{statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
for name, runs in sorted(rows.items()):
    c = [r["clients"] for r in runs]
    print(f"| {name} | {len(runs)} | {cell([r['value'] for r in runs])} | {cell([x['mean'] for x in c])} | "
          f"{cell([x['std'] for x in c])} | {cell([x['worst10_mean'] for x in c])} | {cell([x['best10_mean'] for x in c])} | "
          f"{statistics.mean(r['wall_time_s'] for r in runs):.0f} |")
PY
[ "${#failed[@]}" -eq 0 ] || { echo "failed runs: ${failed[*]}" >&2; exit 1; }

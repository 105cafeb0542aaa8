#!/usr/bin/env bash
# The 20 Newsgroups leaderboard of docs/results.md: centralized vs federated algorithms with the MiniLM
# backbone, the same budget of local steps for every run. Reruns skip finished runs.
#
#   run_scripts/results_20news.sh [ALGORITHM...]     (default: fedavg fedprox fedadam fedyogi)
#
# Budget (the 2-core CPU's): ROUNDS rounds x 10 clients of 100 x LOCAL_STEPS AdamW steps of batch 16,
# max length MAXLEN; centralized: the same number of steps. Override with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-8} LOCAL_STEPS=${LOCAL_STEPS:-4} MAXLEN=${MAXLEN:-64} EVAL_MAX=${EVAL_MAX:-2000} EVAL_EVERY=${EVAL_EVERY:-4}
OUT=${OUT:-results/20news} RANKS=${RANKS:-2} SHARED=${FEDNLP_SHARED_DATA:-../shared/data}
algorithms=("${@:-fedavg fedprox fedadam fedyogi}")
read -r -a algorithms <<< "${algorithms[*]}"
fednlp=.venv/bin/fednlp
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
data=$OUT/20news.h5 part=$OUT/20news_partition.h5
[ -f "$data" ] || "$fednlp" data prepare --dataset 20news --source "$SHARED/20newsgroups/20news-bydate.tar.gz" --out "$data"
for spec in "uniform" "niid_label --alpha 1.0" "niid_label --alpha 0.1"; do
  "$fednlp" partition --data "$data" --out "$part" --method $spec --clients 100 --seed 0
done
common=(--data "$data" --model minilm --max-seq-length "$MAXLEN" --batch-size 16 --optimizer adamw --lr 1e-4
        --eval-max-examples "$EVAL_MAX" --eval-batch-size 64 --seed 0)
declare -A extra=([fedavg]="" [fedprox]="--mu 0.01" [fedadam]="--server-lr 1e-3" [fedyogi]="--server-lr 1e-3")
root_flags=()
[ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)
run() {  # name, then flags of fednlp train
  local name=$1; shift
  [ -f "$OUT/runs/$name/result.json" ] && return 0
  mpirun -n "$RANKS" "${root_flags[@]}" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x HF_HUB_OFFLINE \
    -x TOKENIZERS_PARALLELISM "$fednlp" train "${common[@]}" --partition "$part" --rounds "$ROUNDS" \
    --clients-per-round 10 --local-steps "$LOCAL_STEPS" --eval-every "$EVAL_EVERY" --out "$OUT/runs/$name" "$@"
}
if [ ! -f "$OUT/runs/centralized/result.json" ]; then
  "$fednlp" centralized "${common[@]}" --steps $((ROUNDS * 10 * LOCAL_STEPS)) --out "$OUT/runs/centralized"
fi
run fedavg-uniform --method uniform_clients=100 --algorithm fedavg
for alpha in 1.0 0.1; do
  for algorithm in "${algorithms[@]}"; do
    # shellcheck disable=SC2086
    run "$algorithm-alpha$alpha" --method "niid_label_clients=100_alpha=$alpha" --algorithm "$algorithm" ${extra[$algorithm]}
  done
done
"$fednlp" leaderboard "$OUT/runs" --format markdown

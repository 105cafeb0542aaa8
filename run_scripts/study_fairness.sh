#!/usr/bin/env bash
# The fairness study of docs/fairness.md ("Intrinsic and extrinsic bias across training regimes"): SST-2 with
# MiniLM, 5 training regimes x 3 seeds, each run measured by the extrinsic metrics (counterfactual flips and
# probability change, the equal-opportunity gap between sentences that mention men and women, accumulated
# prediction sensitivity) and the intrinsic one (CEAT on WEAT 6-8), with counterfactual augmentation as one
# regime (the augmentation study: the same FedAvg run with and without it, 3 seeds).
#
#   nice -n 5 bash run_scripts/study_fairness.sh          # runs, metrics, then the docs table
#
# Budget (CPU): a seeded 10,000-sentence sample of SST-2's 67,349 training sentences (so the frozen-layer cache
# is affordable here), SST-2's 872 dev sentences as the test split, length 64; MiniLM with its embeddings and
# lower 5 of 6 blocks frozen and cached (--freeze-layers 5 --cache-frozen): the top block and the head train,
# so the last layer CEAT reads changes with training. 100 clients, 10 per round, 20 rounds of 1 local epoch
# (FedNLP's FedOPT recipe: AdamW clients at 3e-4, not tuned, under a plain server at 1): 20,000 examples seen;
# the centralized run sees the same (2 epochs). CEAT: all of SST-2's training sentences as its corpus, at most 20
# contexts per word, 10,000 draws.
# The order puts what the questions need first: every regime at seed 0, then the augmentation study's seeds
# (FedAvg with and without augmentation), then the other regimes' seeds; reruns skip what is recorded.
source "$(dirname "$0")/results_common.sh"
PLOTS=docs/results/study_fairness
OUT=${OUT:-results/study_fairness}
RECORDS=${RECORDS:-$PLOTS/runs}
SEEDS=${SEEDS:-0 1 2}
mkdir -p "$OUT" "$RECORDS"
SST2="$SHARED/sst2"

# SST-2 with a gender column (results_common.sh's sst2_gender_data); the whole training set is CEAT's corpus.
data=$OUT/sst2_gender.h5 part=$OUT/sst2_gender_partition.h5 corpus=$OUT/sst2_full.h5
sst2_gender_data "$data"
[ -f "$corpus" ] || "$FEDNLP" data prepare --dataset sst2 --source "$SST2" --out "$corpus"
make_partitions "$data" "$part" "--method uniform --clients 100" "--method niid_label --clients 100 --alpha 0.1"
uniform=uniform_clients=100 a01=niid_label_clients=100_alpha=0.1

common=(--data "$data" --model minilm --max-seq-length 64 --batch-size 32 --max-grad-norm 1.0 --eval-batch-size 256
        --freeze-layers 5 --cache-frozen true --final-eval full --optimizer adamw --lr 3e-4)
fed=(--partition "$part" --rounds 20 --clients-per-round 10 --local-epochs 1 --eval-every 5
     --algorithm fedopt --server-optimizer sgd --server-lr 1.0)

# The metrics of a finished run, each written into its result.json, then the run's record (no model).
measure() {
  local dir=$OUT/runs/$1
  [ -f "$dir/result.json" ] || return 0
  [ -f "$dir/fairness.json" ] || "$FEDNLP" fairness "$dir" --data "$data"
  [ -f "$dir/prediction_sensitivity.json" ] || "$FEDNLP" fairness "$dir" --data "$data" --metric prediction-sensitivity
  [ -f "$dir/ceat.json" ] || "$FEDNLP" fairness "$dir" --metric ceat --data "$corpus" --samples 10000 --contexts 20
  keep_record "$1" fairness.json fairness_predictions.csv prediction_sensitivity.json prediction_sensitivity.csv \
    ceat.json
}
measured() { [ -f "$RECORDS/$1/ceat.json" ]; }
study_run() {  # name, then the command (centralized or train) and its flags
  local name=$1 command=$2; shift 2
  measured "$name" && return 0
  if [ ! -f "$OUT/runs/$name/result.json" ]; then
    echo "== $(date +%T) $command $name" >&2
    "$FEDNLP" "$command" "$@" --out "$OUT/runs/$name" --overwrite true || { failed+=("$name"); return 0; }
  fi
  measure "$name"
}

regime() {  # regime seed
  local name=$1-s$2
  case $1 in
    fedavg-uniform) study_run "$name" train "${common[@]}" "${fed[@]}" --method "$uniform" --seed "$2" ;;
    fedavg-uniform-augment) study_run "$name" train "${common[@]}" "${fed[@]}" --method "$uniform" --seed "$2" \
                              --augment counterfactual ;;
    centralized) study_run "$name" centralized "${common[@]}" --epochs 2 --seed "$2" ;;
    # Where every regime starts: one step at lr 1e-9 leaves MiniLM as pretrained (and the head untrained).
    pretrained) study_run "$name" centralized "${common[@]}" --steps 1 --lr 1e-9 --seed "$2" ;;
    fedavg-a0.1) study_run "$name" train "${common[@]}" "${fed[@]}" --method "$a01" --seed "$2" ;;
    fedavg-uniform-dp) study_run "$name" train "${common[@]}" "${fed[@]}" --method "$uniform" --seed "$2" \
                         --dp client --sampler poisson --dp-clip 1.0 --dp-noise-multiplier 0.1 ;;
  esac
}
first=${SEEDS%% *} rest=${SEEDS#"$first"}
for r in fedavg-uniform fedavg-uniform-augment centralized fedavg-a0.1 fedavg-uniform-dp; do regime "$r" "$first"; done
for seed in $rest; do for r in fedavg-uniform fedavg-uniform-augment; do regime "$r" "$seed"; done; done
for seed in $rest; do for r in centralized fedavg-a0.1 fedavg-uniform-dp; do regime "$r" "$seed"; done; done
for seed in $SEEDS; do regime pretrained "$seed"; done  # the encoder as pretrained: the seed draws the head only
"$FEDNLP" leaderboard --update-docs docs/fairness.md  # the study's tables (fednlp/fairness/study_table.py)
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed runs: ${failed[*]}" >&2
  exit 1
fi

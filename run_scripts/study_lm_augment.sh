#!/usr/bin/env bash
# Counterfactual augmentation of a federated language model (issue 27, section 3's LM half), as
# docs/fairness-mitigation.md reports it: FedAvg trains tiny-gpt2 from scratch on BBC News with and without
# `--augment counterfactual` (each client adds gender-swapped copies of its own articles), 3 seeds, and
# `fednlp fairness RUN --metric disparity` measures each model's occupation disparity over gendered prompt
# pairs; perplexity on the test articles is the utility.
#
#   nice -n 5 bash run_scripts/study_lm_augment.sh
#
# Budget (CPU): BBC News (2,225 articles, seeded 20% test split, as run_scripts/demo.sh), 10 uniform clients,
# 40 rounds x 5 clients x 5 local AdamW steps of 8 at length 64 (lr 1e-3, not tuned), the same local steps with
# and without augmentation (the copies replace some originals in a step, they add no steps); perplexity on a
# seeded 200-article test subset. tiny-gpt2 is the only causal LM that builds offline: a small model from
# scratch, so this measures the mechanism at a small scale, not a pretrained LM's social bias.
source "$(dirname "$0")/results_common.sh"
PLOTS=docs/results/study_lm_augment
OUT=${OUT:-results/study_lm_augment}
RECORDS=${RECORDS:-$PLOTS/runs}
SEEDS=${SEEDS:-0 1 2}
mkdir -p "$OUT" "$RECORDS"
data=$OUT/bbc.h5 part=$OUT/bbc_partition.h5
bbc_data "$data"
make_partitions "$data" "$part" "--method uniform --clients 10"
common=(--data "$data" --partition "$part" --method uniform_clients=10 --task lm --model tiny-gpt2
        --max-seq-length 64 --batch-size 8 --optimizer adamw --lr 1e-3 --rounds 40 --clients-per-round 5
        --local-steps 5 --eval-every 10 --eval-max-examples 200)

for seed in $SEEDS; do
  for augment in none counterfactual; do
    name=fedavg-augment-$augment-s$seed
    [ -f "$RECORDS/$name/disparity.json" ] && continue
    if [ ! -f "$OUT/runs/$name/result.json" ]; then
      echo "== $(date +%T) train $name" >&2
      "$FEDNLP" train "${common[@]}" --augment "$augment" --seed "$seed" --out "$OUT/runs/$name" --overwrite true \
        || { failed+=("$name"); continue; }
    fi
    "$FEDNLP" fairness "$OUT/runs/$name" --metric disparity
    keep_record "$name" disparity.json disparity_pairs.csv
  done
done
"$FEDNLP" leaderboard --update-docs docs/fairness-mitigation.md  # the section's table and findings
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed runs: ${failed[*]}" >&2
  exit 1
fi

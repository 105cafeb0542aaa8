#!/usr/bin/env bash
# Counterfactual role-reversal distillation (issue 27, section 4), as docs/fairness-mitigation.md reports it:
# a teacher LM, students distilled from it with and without each of the paper's two modifications (teacher
# prediction perturbation `--perturb equalise`, counterfactual augmentation `--augment counterfactual`), 3 seeds
# each; each student's occupation disparity and perplexity (the utility cost); then each student fine-tuned on
# SST-2 sentiment and measured there (counterfactual flip rate and probability change, accumulated prediction
# sensitivity, the gender groups' accuracy): does a lower disparity carry over to a downstream task?
#
#   nice -n 5 bash run_scripts/study_distill.sh
#
# Budget (CPU): BBC News (2,225 articles, seeded 20% test split, as run_scripts/study_lm_augment.sh).
# Teacher: the largest LM fednlp builds offline, MiniLM (22.7M parameters, pretrained) turned into a causal
# decoder and trained centrally 300 steps x 16 articles at 64 tokens (AdamW, lr 1e-4, not tuned); one teacher
# for every student (the seeds vary the students). Students: tiny-gpt2 from scratch (4.3M parameters, MiniLM's
# vocabulary), 300 steps x 16 at 32 tokens, AdamW lr 1e-3, T 2, no hard loss; perplexity (student and teacher)
# on a seeded 200-article test subset at 32 tokens. Downstream: each student's weights as the backbone of a
# sentiment classifier on scripts/sst2_gender.py's sample (10,000 SST-2 training sentences, the 872 dev sentences
# as test), 900 steps x 32 at 64 tokens (2.9 epochs), AdamW lr 3e-4, the student's seed. The downstream recipe was
# chosen on seed 0's plain student (docs/fairness-mitigation.md says how): 300 steps at lr 1e-3 left it at chance.
source "$(dirname "$0")/results_common.sh"
PLOTS=docs/results/study_distill
OUT=${OUT:-results/study_distill}
RECORDS=${RECORDS:-$PLOTS/runs}
SEEDS=${SEEDS:-0 1 2}
mkdir -p "$OUT" "$RECORDS"
data=$OUT/bbc.h5 sst2=$OUT/sst2_gender.h5
bbc_data "$data"
sst2_gender_data "$sst2"

teacher=$OUT/runs/teacher
ensure_teacher() {  # trained when a student still needs it (a record keeps no model, so a rerun of a fully
                    # recorded study trains nothing)
  if [ ! -f "$teacher/result.json" ]; then
    echo "== $(date +%T) teacher" >&2
    "$FEDNLP" centralized --data "$data" --task lm --model minilm --max-seq-length 64 --batch-size 16 \
      --optimizer adamw --lr 1e-4 --steps 300 --eval-max-examples 200 --seed 0 --out "$teacher" --overwrite true
  fi
  [ -f "$teacher/disparity.json" ] || "$FEDNLP" fairness "$teacher" --metric disparity
  keep_record teacher disparity.json disparity_pairs.csv
}

student() {  # perturb augment seed: distil, measure the disparity, keep the record
  local name=students/student-$1-$2-s$3
  [ -f "$RECORDS/$name/disparity.json" ] && return 0
  if [ ! -f "$OUT/runs/$name/result.json" ]; then
    ensure_teacher
    echo "== $(date +%T) distill $name" >&2
    "$FEDNLP" distill --teacher "$teacher" --perturb "$1" --augment "$2" --steps 300 --max-seq-length 32 \
      --batch-size 16 --optimizer adamw --lr 1e-3 --temperature 2 --eval-max-examples 200 --seed "$3" \
      --out "$OUT/runs/$name" --overwrite true || { failed+=("$name"); return 0; }
  fi
  "$FEDNLP" fairness "$OUT/runs/$name" --metric disparity
  keep_record "$name" disparity.json disparity_pairs.csv
}

downstream() {  # perturb augment seed: fine-tune the student on SST-2, measure its fairness, keep the record
  local name=downstream/sst2-$1-$2-s$3 model=$OUT/runs/students/student-$1-$2-s$3/model
  [ -f "$RECORDS/$name/prediction_sensitivity.json" ] && return 0
  [ -d "$model" ] || { failed+=("$name (no student model)"); return 0; }
  if [ ! -f "$OUT/runs/$name/result.json" ]; then
    echo "== $(date +%T) fine-tune $name" >&2
    "$FEDNLP" centralized --data "$sst2" --model "$model" --max-seq-length 64 --batch-size 32 --optimizer adamw \
      --lr 3e-4 --steps 900 --final-eval full --seed "$3" --out "$OUT/runs/$name" --overwrite true \
      || { failed+=("$name"); return 0; }
  fi
  local dir=$OUT/runs/$name
  [ -f "$dir/fairness.json" ] || "$FEDNLP" fairness "$dir" --data "$sst2"
  [ -f "$dir/prediction_sensitivity.json" ] || "$FEDNLP" fairness "$dir" --data "$sst2" --metric prediction-sensitivity
  keep_record "$name" fairness.json fairness_predictions.csv prediction_sensitivity.json prediction_sensitivity.csv
}

for seed in $SEEDS; do
  for variant in "none none" "equalise none" "none counterfactual" "equalise counterfactual"; do
    # shellcheck disable=SC2086
    student $variant "$seed"
    # shellcheck disable=SC2086
    downstream $variant "$seed"
  done
done
"$FEDNLP" leaderboard --update-docs docs/fairness-mitigation.md  # the section's tables and findings
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed runs: ${failed[*]}" >&2
  exit 1
fi

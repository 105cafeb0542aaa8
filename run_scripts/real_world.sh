#!/usr/bin/env bash
# The study of docs/real-world.md: federated learning as it happens on devices (Dupuy et al., "Learnings from
# federated learning in the real world", ICASSP 2022) on 20 Newsgroups with its real authors as clients.
#
#   nice -n 15 bash run_scripts/real_world.sh                  # the CPU budget docs/real-world.md was measured on
#   DATASET=aeslc nice -n 15 bash run_scripts/real_world.sh    # AESLC: one client per Enron mailbox owner
#
# Clients: one per author (the normalised From: address), authors with fewer than K=10 training posts
# dropped (121 clients). Task: next-token language modelling (perplexity) with tiny-gpt2 (TASKS=lm, the
# default); TASKS="classification lm" adds 20-way classification with MiniLM cut to 2 blocks, which at this
# budget predicts one class (docs/real-world.md). Per task and seed, five runs over the same number of rounds:
#   static-uniform    every device holds all its data from round 1; uniform cohorts (the all-data baseline)
#   static-act0.5/1   the same with activity sampling, inclusion proportional to n_k^G (Horvitz-Thompson weights)
#   cont-unlim        continual: the stream (ordered by the `order` field) cut into PERIODS periods of
#                     ROUNDS_PER_PERIOD rounds; a device holds what has arrived so far
#   cont-b$B          the same, each device keeping only its newest B examples (STORAGE=5, then STORAGE2=20)
# Every run evaluates every client on its own test posts at the end (clients.csv) and, under --continual,
# the next period's test posts at each period's end (future_*). Then tables and a plot from the run files.
# Runs go in order of priority (seed 0 of every row, then seed 1); a rerun skips finished runs.
source "$(dirname "$0")/results_common.sh"
DATASET=${DATASET:-20news}
case "$DATASET" in
  20news) source_path=$SHARED/20newsgroups/20news-bydate.tar.gz suffix="" title="20 Newsgroups authors" ;;
  aeslc) source_path=$SHARED/aeslc/enron_subject_line.tar.gz suffix=-aeslc title="AESLC mailboxes" ;;
  *) echo "DATASET must be 20news or aeslc, got '$DATASET'" >&2; exit 2 ;;
esac
OUT=${OUT:-results/real-world$suffix}
DOCS=${DOCS:-docs/real-world${suffix:+/$DATASET}}
mkdir -p "$OUT" "$DOCS"
: "${K:=10}" "${PERIODS:=4}" "${ROUNDS_PER_PERIOD:=2}" "${CLIENTS_PER_ROUND:=5}" "${LOCAL_STEPS:=2}"
: "${BATCH:=8}" "${STORAGE:=5}" "${STORAGE2:=20}" "${SEEDS:=0 1}" "${TASKS:=lm}"
: "${CLS_MAXLEN:=32}" "${CLS_LR:=1e-3}" "${CLS_EVAL_MAX:=300}" "${CLS_MODEL:=$OUT/minilm-l2}" "${CLS_FREEZE:=1}" "${LM_MAXLEN:=32}" "${LM_LR:=5e-3}" "${LM_EVAL_MAX:=100}"
ROUNDS=$(( PERIODS * ROUNDS_PER_PERIOD ))
data=$OUT/$DATASET.h5 part=$OUT/${DATASET}_users.h5 stats=$OUT/${DATASET}_users_all.h5
[ -f "$data" ] || "$FEDNLP" data prepare --dataset "$DATASET" --source "$source_path" --out "$data"

# The client count the natural partition needs (--clients must equal it; the error message says it).
users_with() {  # K -> number of authors with at least K training posts
  "$PYTHON" - "$data" "$1" <<'PY'
import sys
from collections import Counter

from fednlp.data.datafile import read_data_file

data = read_data_file(sys.argv[1])
counts = Counter(data.fields["user"][i] for i in data.train_index_list)
print(sum(1 for n in counts.values() if n >= int(sys.argv[2])))
PY
}
N_CLIENTS=$(users_with "$K") N_ALL=$(users_with 1)
group="natural_clients=${N_CLIENTS}_field=user_min_examples=$K"
make_partitions "$data" "$part" "--method natural --field user --clients $N_CLIENTS --min-examples $K"
# The heavy tail, on a partition file of its own (the runs' partition checksum stays that of one group).
if [ ! -f "$OUT/partition_stats.txt" ]; then
  N5=$(users_with 5)
  make_partitions "$data" "$stats" "--method natural --field user --clients $N_ALL"
  make_partitions "$data" "$OUT/${DATASET}_users_min5.h5" "--method natural --field user --clients $N5 --min-examples 5"
  { "$FEDNLP" partition-stats --data "$data" --partition "$stats" --method "natural_clients=${N_ALL}_field=user" \
      --sizes-plot "$DOCS/client_sizes_all_authors.png"
    "$FEDNLP" partition-stats --data "$data" --partition "$OUT/${DATASET}_users_min5.h5" \
      --method "natural_clients=${N5}_field=user_min_examples=5"
    "$FEDNLP" partition-stats --data "$data" --partition "$part" --method "$group" \
      --sizes-plot "$DOCS/client_sizes_min$K.png"; } > "$OUT/partition_stats.txt.tmp"
  mv "$OUT/partition_stats.txt.tmp" "$OUT/partition_stats.txt"
fi
cat "$OUT/partition_stats.txt"

fed=(--data "$data" --partition "$part" --method "$group" --rounds "$ROUNDS" --clients-per-round "$CLIENTS_PER_ROUND"
     --local-steps "$LOCAL_STEPS" --batch-size "$BATCH" --eval-every "$ROUNDS_PER_PERIOD" --eval-batch-size 64
     --eval-clients all --max-grad-norm 1.0 --optimizer adamw --server-lr 1.0
     --save-model false --quiet true)
[ "$CLS_MODEL" != "$OUT/minilm-l2" ] || truncated_minilm "$OUT/minilm-l2" 2
task_flags() {
  case $1 in
    # Default: 2 pretrained blocks, the first frozen with the embeddings (the top block and the head train);
    # CLS_MODEL=minilm CLS_FREEZE=5: the whole MiniLM with its last block trained (docs/results.md's backbone).
    classification) echo "--model $CLS_MODEL --freeze-layers $CLS_FREEZE --max-seq-length $CLS_MAXLEN --lr $CLS_LR" \
                           "--eval-max-examples $CLS_EVAL_MAX" ;;
    lm) echo "--task lm --model tiny-gpt2 --max-seq-length $LM_MAXLEN --lr $LM_LR --eval-max-examples $LM_EVAL_MAX" ;;
  esac
}
continual=(--continual true --periods "$PERIODS" --rounds-per-period "$ROUNDS_PER_PERIOD")
one_seed() {  # task seed
  local t=$1 s=$2
  # shellcheck disable=SC2046
  {
    fed_run "$t-static-uniform-s$s" "${fed[@]}" $(task_flags "$t") --seed "$s"
    fed_run "$t-static-act1-s$s" "${fed[@]}" $(task_flags "$t") --seed "$s" --sampler activity --activity-power 1
    fed_run "$t-cont-unlim-s$s" "${fed[@]}" $(task_flags "$t") --seed "$s" "${continual[@]}"
    fed_run "$t-cont-b$STORAGE-s$s" "${fed[@]}" $(task_flags "$t") --seed "$s" "${continual[@]}" \
      --storage-limit "$STORAGE"
    fed_run "$t-static-act0.5-s$s" "${fed[@]}" $(task_flags "$t") --seed "$s" --sampler activity \
      --activity-power 0.5
    # The second storage limit (the issue's "two storage limits"), last: the least of the comparisons.
    [ -z "$STORAGE2" ] || fed_run "$t-cont-b$STORAGE2-s$s" "${fed[@]}" $(task_flags "$t") --seed "$s" \
      "${continual[@]}" --storage-limit "$STORAGE2"
  }
}
for s in $SEEDS; do
  for t in $TASKS; do one_seed "$t" "$s"; done
done

# Tables (final metric, per-period curves, heavy vs light users, wall time) and the curves' plot.
"$PYTHON" scripts/real_world_report.py "$OUT/runs" --plot "$DOCS/curves.png" --title "$title" > "$OUT/report.md"
cat "$OUT/report.md"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed runs: ${failed[*]}" >&2
  exit 1
fi

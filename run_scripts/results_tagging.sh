#!/usr/bin/env bash
# The sequence-tagging table: CoNLL-2003 English NER (span F1, seqeval), for docs/results.md:
# centralized vs FedNLP's three recipes (fedavg, fedprox, fedopt in FedNLP's sense) and FedAdam/FedYogi with a
# server-lr grid, over the partitions below.
#
#   nice -n 15 bash run_scripts/results_tagging.sh              # PROFILE=cpu: MiniLM with frozen blocks, short
#   PROFILE=gpu RANKS=4 bash run_scripts/results_tagging.sh     # FedNLP's scale (untested: no GPU was lent)
#
# Every budget variable can be overridden.
source "$(dirname "$0")/results_common.sh"
OUT=${OUT:-results/tagging}
PLOTS=${PLOTS:-docs/results/tagging}
if [ "$PROFILE" = gpu ]; then
  : "${MODEL:=minilm}" "${MAXLEN:=256}" "${FREEZE:=}" "${EVAL_MAX:=}" "${BATCH:=32}" "${CLIENTS_PER_ROUND:=10}" "${ROUNDS:=100}"
  : "${LOCAL_STEPS:=}" "${EVAL_EVERY:=10}" "${ADAMW_LR:=5e-5}"
else
  # As results_classification.sh: MiniLM's embeddings and first 2 blocks, the first frozen.
  : "${MODEL:=$OUT/minilm-l2}" "${MAXLEN:=64}" "${FREEZE:=1}" "${EVAL_MAX:=500}" "${BATCH:=16}" "${CLIENTS_PER_ROUND:=5}" "${ROUNDS:=10}"
  : "${LOCAL_STEPS:=4}" "${EVAL_EVERY:=5}" "${ADAMW_LR:=1e-3}"
fi
[ "$MODEL" != "$OUT/minilm-l2" ] || { mkdir -p "$OUT"; truncated_minilm "$OUT/minilm-l2" 2; }
SGD_LR=${SGD_LR:-0.1} MU=${MU:-0.5} GRID=${GRID:-1e-2 1e-1} N_CLIENTS=100
mkdir -p "$OUT"
data=$OUT/conll2003.h5 part=$OUT/conll2003_partition.h5
[ -f "$data" ] || "$FEDNLP" data prepare --dataset conll2003 --source "$SHARED/conll2003" --out "$data"
make_partitions "$data" "$part" "--method uniform --clients 100" "--method niid_label --clients 100 --alpha 1.0" "--method niid_label --clients 100 --alpha 0.1" "--method niid_quantity --clients 100 --beta 5.0"
partitions=(uniform_clients=100 niid_label_clients=100_alpha=1.0 niid_label_clients=100_alpha=0.1 niid_quantity_clients=100_beta=5.0)
common=(--data "$data" --model "$MODEL" --max-seq-length "$MAXLEN" --batch-size "$BATCH" --max-grad-norm 1.0
        --eval-batch-size 32 ${EVAL_MAX:+--eval-max-examples "$EVAL_MAX"})
table_frozen=(${FREEZE:+--freeze-layers "$FREEZE"})
extra=("${table_frozen[@]}")
set_budget

# In order of priority (a stopped script leaves the most useful table; a rerun skips finished runs).
run_central adamw 0
for p in "${partitions[@]}"; do run_recipe fedopt "$p" 0; done
for recipe in fedavg fedprox; do run_recipe "$recipe" niid_label_clients=100_alpha=1.0 0; done
for seed in 1 2; do
  run_central adamw "$seed"
  for p in niid_label_clients=100_alpha=0.1 uniform_clients=100 niid_label_clients=100_alpha=1.0; do
    run_recipe fedopt "$p" "$seed"
  done
done
# What freezing costs (FedNLP froze 0, 3 or 6 of DistilBERT's 6 blocks; this backbone has 2): nothing frozen,
# the embeddings and both blocks frozen (only the tagging head trains), beside the table's embeddings + block 1;
# centralized and fedopt on uniform clients, seed 0. Names carry -freeze<N>; leaderboard rows differ by freeze_layers.
for frozen in none 2; do
  tag="-freeze$frozen" extra=()
  [ "$frozen" = none ] || extra=(--freeze-layers "$frozen")
  run_central adamw 0
  run_recipe fedopt uniform_clients=100 0
done
tag="" extra=("${table_frozen[@]}")
for lr in $GRID; do
  for algorithm in fedadam fedyogi; do run_reddi "$algorithm" "$lr" niid_label_clients=100_alpha=1.0 0; done
done
for p in "${partitions[@]}"; do
  for recipe in fedavg fedprox; do run_recipe "$recipe" "$p" 0; done
done
for algorithm in fedadam fedyogi; do
  lr=$(pick_server_lr "$algorithm" a1.0)
  [ -z "$lr" ] || run_reddi "$algorithm" "$lr" uniform_clients=100 0
done
finish_table

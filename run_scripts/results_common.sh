#!/usr/bin/env bash
# What the results_<task>.sh scripts share (sourced, not run): the profile, the run helpers, the leaderboard.
#
# PROFILE=cpu (default) is the budget of the 2-core CPU the tables in docs/results.md were measured on;
# PROFILE=gpu is FedNLP's scale (full fine-tuning, max length 256, 1 local epoch, whole test set) for a
# machine with a GPU. Each results_<task>.sh sets its budget per profile; any variable can be overridden.
# OUT (default results/<task>) holds the data file, the partition file and runs/ (outside git: results/ is
# ignored). Reruns skip runs whose result.json exists, so an interrupted script continues where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROFILE=${PROFILE:-cpu}
case "$PROFILE" in cpu|gpu) ;; *) echo "PROFILE must be cpu or gpu, got '$PROFILE'" >&2; exit 2 ;; esac
SHARED=${FEDNLP_SHARED_DATA:-../shared/data}
RANKS=${RANKS:-1}
FEDNLP=${FEDNLP:-$( [ -x .venv/bin/fednlp ] && echo .venv/bin/fednlp || echo fednlp )}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
root_flags=()
[ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)

# fednlp train with RANKS MPI ranks (plain process when RANKS=1); $1 is the run name under $OUT/runs.
fed_run() {
  local name=$1; shift
  [ -f "$OUT/runs/$name/result.json" ] && return 0
  echo "== $(date +%T) train $name" >&2
  if [ "$RANKS" -gt 1 ]; then
    mpirun -n "$RANKS" "${root_flags[@]}" --oversubscribe --bind-to none -x OMP_NUM_THREADS -x HF_HUB_OFFLINE \
      -x TOKENIZERS_PARALLELISM "$FEDNLP" train "$@" --out "$OUT/runs/$name" --overwrite true || failed+=("$name")
  else
    "$FEDNLP" train "$@" --out "$OUT/runs/$name" --overwrite true || failed+=("$name")
  fi
}

central_run() {
  local name=$1; shift
  [ -f "$OUT/runs/$name/result.json" ] && return 0
  echo "== $(date +%T) centralized $name" >&2
  "$FEDNLP" centralized "$@" --out "$OUT/runs/$name" --overwrite true || failed+=("$name")
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

# The table (Markdown, printed and written to $OUT/leaderboard.md), the CSV and the plots under $PLOTS.
finish_table() {
  "$FEDNLP" leaderboard "$OUT/runs" --format markdown --out "$OUT/leaderboard.md" ${PLOTS:+--plots "$PLOTS"}
  "$FEDNLP" leaderboard "$OUT/runs" --format csv --out "$OUT/leaderboard.csv"
  cat "$OUT/leaderboard.md"
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed runs: ${failed[*]}" >&2
    return 1
  fi
}
failed=()

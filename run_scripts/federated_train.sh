#!/usr/bin/env bash
# Federated training over MPI for any task: what the per-task run scripts share.
#
#   run_scripts/federated_train.sh ALGORITHM PARTITION_METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags...]
#
# CONFIG names the YAML config (each run_<task>.sh sets its default); extra flags override it.
# OMP_NUM_THREADS (default: cores / ranks) sets torch's threads per rank.
set -euo pipefail
if [ "$#" -lt 6 ]; then
  sed -n '2,7p' "$0" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
algorithm=$1 method=$2 client_lr=$3 server_lr=$4 rounds=$5 ranks=$6
shift 6
config=${CONFIG:?set CONFIG to a YAML config, or use a run_<task>.sh script}
threads=${OMP_NUM_THREADS:-$(( $(nproc) / ranks > 0 ? $(nproc) / ranks : 1 ))}
fednlp=${FEDNLP:-$( [ -x .venv/bin/fednlp ] && echo .venv/bin/fednlp || echo fednlp )}
root_flags=()
[ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)
exec mpirun -n "$ranks" "${root_flags[@]}" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads" \
  -x PATH -x HF_HUB_OFFLINE=1 \
  "$fednlp" train --config "$config" --algorithm "$algorithm" --method "$method" --lr "$client_lr" \
  --server-lr "$server_lr" --rounds "$rounds" "$@"

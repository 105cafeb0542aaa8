#!/usr/bin/env bash
# Federated seq2seq (summarisation, subject lines, headlines) over MPI, in the spirit of FedNLP's run scripts.
#
#   run_scripts/run_seq2seq.sh ALGORITHM PARTITION_METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags...]
#   e.g. run_scripts/run_seq2seq.sh fedavg niid_cluster_clients=100_alpha=1.0 5e-5 1.0 50 2
#
# CONFIG (default configs/aeslc.yaml; or configs/scitldr.yaml, configs/gigaword.yaml) gives everything else; extra flags override it.
# OMP_NUM_THREADS (default: cores / ranks) sets torch's threads per rank.
set -euo pipefail
if [ "$#" -lt 6 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
algorithm=$1 method=$2 client_lr=$3 server_lr=$4 rounds=$5 ranks=$6
shift 6
config=${CONFIG:-configs/aeslc.yaml}
threads=${OMP_NUM_THREADS:-$(( $(nproc) / ranks > 0 ? $(nproc) / ranks : 1 ))}
fednlp=${FEDNLP:-$( [ -x .venv/bin/fednlp ] && echo .venv/bin/fednlp || echo fednlp )}
root_flags=()
[ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)
exec mpirun -n "$ranks" "${root_flags[@]}" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads" \
  -x PATH -x HF_HUB_OFFLINE=1 \
  "$fednlp" train --config "$config" --algorithm "$algorithm" --method "$method" --lr "$client_lr" \
  --server-lr "$server_lr" --rounds "$rounds" "$@"

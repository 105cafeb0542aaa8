#!/usr/bin/env bash
# Federated seq2seq over MPI, in the spirit of FedNLP's run scripts.
#
#   run_scripts/run_seq2seq.sh ALGORITHM PARTITION_METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags...]
#   e.g. run_scripts/run_seq2seq.sh fedavg niid_cluster_clients=100_alpha=1.0 5e-5 1.0 30 2
#
# CONFIG (default configs/aeslc.yaml) gives everything else; extra flags override it.
CONFIG=${CONFIG:-configs/aeslc.yaml} exec "$(dirname "$0")/federated_train.sh" "$@"

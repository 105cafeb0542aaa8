#!/usr/bin/env bash
# Federated text classification over MPI, in the spirit of FedNLP's run scripts.
#
#   run_scripts/run_text_classification.sh ALGORITHM PARTITION_METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags...]
#   e.g. run_scripts/run_text_classification.sh fedavg niid_label_clients=100_alpha=1.0 5e-5 1.0 50 2
#
# CONFIG (default configs/20news.yaml) gives everything else; extra flags override it.
CONFIG=${CONFIG:-configs/20news.yaml} exec "$(dirname "$0")/federated_train.sh" "$@"

#!/usr/bin/env bash
# Federated extractive QA over MPI, in the spirit of FedNLP's run scripts.
#
#   run_scripts/run_span_extraction.sh ALGORITHM PARTITION_METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags...]
#   e.g. run_scripts/run_span_extraction.sh fedavg natural_clients=48_field=source 5e-5 1.0 50 2
#
# CONFIG (default configs/squad.yaml) gives everything else; extra flags override it.
CONFIG=${CONFIG:-configs/squad.yaml} exec "$(dirname "$0")/federated_train.sh" "$@"

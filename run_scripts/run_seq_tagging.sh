#!/usr/bin/env bash
# Federated sequence tagging over MPI, in the spirit of FedNLP's run scripts.
#
#   run_scripts/run_seq_tagging.sh ALGORITHM PARTITION_METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags...]
#   e.g. run_scripts/run_seq_tagging.sh fedavg niid_label_clients=100_alpha=1.0 5e-5 1.0 50 2
#
# CONFIG (default configs/conll2003.yaml) gives everything else; extra flags override it.
CONFIG=${CONFIG:-configs/conll2003.yaml} exec "$(dirname "$0")/federated_train.sh" "$@"

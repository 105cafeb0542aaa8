#!/usr/bin/env bash
# Set everything up if needed, then run the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# mpirun refuses root unless told; the tests launch it as the user CI runs as (root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two workers (pytest-xdist): most of the suite's time is single-threaded interpreter start-up of the
# `fednlp train` subprocesses, which two workers overlap on two cores (PYTEST_WORKERS=0: one process).
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" "$@"

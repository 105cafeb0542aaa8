"""One tiny config run twice at one commit trains bit-identical weights, on 1 and on 2 ranks.

docs/results.md compares re-runs of its records with the earlier values; that comparison means something
only if a run is a pure function of its config, data and code on one machine. Each run here is a real
`fednlp train` process (under mpirun -n 2 for two ranks), compared by its saved weights and by the
weights_sha256 of its result.json (fednlp/results/provenance.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)
ROOT = Path(__file__).resolve().parents[1]


def train(bbc, out: Path, ranks: int) -> dict:
    data, part = bbc
    cmd = [sys.executable, "-c", "import sys; from fednlp.cli import main; sys.exit(main())", "train",
           "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
           "--rounds", "2", "--clients-per-round", "4", "--local-steps", "2", "--batch-size", "8", "--lr", "0.05",
           "--optimizer", "sgd", "--max-seq-length", "32", "--eval-max-examples", "32", "--seed", "5",
           "--quiet", "true", "--out", str(out)]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
               "-x", "PYTHONPATH", "-x", "HF_HUB_OFFLINE", "-x", "OMP_NUM_THREADS", *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_config_run_twice_trains_identical_weights(bbc, tmp_path, ranks):
    first, second = (train(bbc, tmp_path / f"run{i}", ranks) for i in (1, 2))
    a, b = (load_file(tmp_path / f"run{i}" / "model" / "model.safetensors") for i in (1, 2))
    assert a.keys() == b.keys()
    differing = [name for name in a if not torch.equal(a[name], b[name])]
    assert not differing, f"weights differ between two identical runs on {ranks} rank(s): {differing[:5]}"
    assert first["world_size"] == second["world_size"] == ranks
    assert first["provenance"]["weights_sha256"] == second["provenance"]["weights_sha256"]
    def curve(result: dict) -> list:  # each round's training loss and metrics, without its timings
        return [(h.get("train_loss"), h.get("accuracy"), h.get("macro_f1")) for h in result["history"]]

    assert first["value"] == second["value"] and curve(first) == curve(second)

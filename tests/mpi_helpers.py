"""Run a script of tests/mpi_scripts on one process or under mpirun -n R (shared by the task tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_script(script: str, args: list[str], ranks: int, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(HERE / "mpi_scripts" / script), *args]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
               "-x", "PYTHONPATH", "-x", "HF_HUB_OFFLINE"] + cmd
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def sharded_evaluation(config: dict, out_dir: Path, ranks: int) -> dict:
    """Metrics of the config's initial model evaluated on `ranks` ranks."""
    out = out_dir / f"metrics_{ranks}.json"
    run_script("evaluate_dump.py", [json.dumps(config), str(out)], ranks)
    return json.loads(out.read_text())

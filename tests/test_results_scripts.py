"""run_scripts/results_common.sh: the study's records in git, and reruns that continue from them."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def helpers(tmp_path: Path, script: str) -> str:
    """Run `script` in bash after sourcing results_common.sh with OUT and PLOTS under tmp_path; its stdout."""
    prelude = (f"source run_scripts/results_common.sh; OUT={tmp_path}/out PLOTS={tmp_path}/plots "
               f'RECORDS={tmp_path}/plots/runs GRID="1e-2 1e-1"\n')
    done = subprocess.run(["bash", "-c", prelude + script], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def finished_run(root: Path, name: str, value: float) -> Path:
    run = root / name
    (run / "model").mkdir(parents=True)
    (run / "model" / "weights.bin").write_bytes(b"\0" * 64)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.jsonl").write_text('{"round": 10}\n')
    (run / "result.json").write_text(json.dumps({"value": value}))
    return run


def test_keep_record_copies_the_small_files_not_the_model(tmp_path):
    finished_run(tmp_path / "out" / "runs", "fedopt-uniform-s0", 0.6)
    (tmp_path / "out" / "runs" / "unfinished").mkdir()
    helpers(tmp_path, "keep_record fedopt-uniform-s0; keep_record unfinished")
    record = tmp_path / "plots" / "runs" / "fedopt-uniform-s0"
    assert sorted(p.name for p in record.iterdir()) == ["config.yaml", "metrics.jsonl", "result.json"]
    assert not (tmp_path / "plots" / "runs" / "unfinished").exists()


def test_a_recorded_run_counts_as_finished_without_its_run_directory(tmp_path):
    # A fresh checkout has the records (git) but no results/: the run must not be trained again.
    finished_run(tmp_path / "plots" / "runs", "fedavg-a1.0-s0", 0.3)
    out = helpers(tmp_path, 'echo "[$(run_result fedavg-a1.0-s0)] [$(run_result fedavg-a1.0-s1)]"')
    assert out.strip() == f"[{tmp_path}/plots/runs/fedavg-a1.0-s0/result.json] []"


def test_grid_pick_reads_records_and_run_directories(tmp_path):
    # The best seed-0 run is only recorded (1e-2, "-" inside the lr); the other only in its run directory.
    finished_run(tmp_path / "plots" / "runs", "fedadam-lr1e-2-a1.0-s0", 0.6)
    finished_run(tmp_path / "out" / "runs", "fedadam-lr1e-1-a1.0-s0", 0.5)
    finished_run(tmp_path / "out" / "runs", "fedadam-lr1e-1-a1.0-s1", 0.9)  # not seed 0: not in the pick
    finished_run(tmp_path / "out" / "runs", "fedyogi-lr1e-1-a1.0-s0", 0.2)
    assert helpers(tmp_path, "pick_server_lr fedadam a1.0").strip() == "1e-2"
    assert helpers(tmp_path, "pick_server_lr fedyogi a1.0").strip() == "1e-1"
    assert helpers(tmp_path, "pick_server_lr fedavg a1.0").strip() == ""


def test_records_default_to_the_documented_table_only():
    # The table's own OUT records under docs/results/<task>/runs; a variant's OUT (another learning rate, say)
    # must record nothing there, or its runs would be skipped as done and mixed into the table.
    script = "source run_scripts/results_common.sh; PLOTS=docs/results/qa; OUT=results/qa; echo \"[$(records)]\"; "
    script += "OUT=results/qa-lr1e-4; echo \"[$(records)]\"; RECORDS=/tmp/r; echo \"[$(records)]\""
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[docs/results/qa/runs]", "[]", "[/tmp/r]"]

"""result.json's provenance block (fednlp/results/provenance.py): how and where a run was made."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

from fednlp.cli import main
from fednlp.results.provenance import RESULT_ENV, cpu_model, git_state, run_provenance, weights_sha256

METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)


def test_weights_checksum_tells_one_changed_weight_apart_and_ignores_nothing_else():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.bias[1] = torch.nextafter(b.bias[1], torch.tensor(10.0))  # the smallest possible change
    assert weights_sha256(a) != weights_sha256(b)
    # The same numbers in another dtype are other weights.
    assert weights_sha256(a) != weights_sha256(a.to(torch.float64))


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\n"
                    "model name\t: AMD EPYC 7B13\n")
    assert cpu_model(info) == "AMD EPYC 7B13"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_git_state_commit_dirty_flag_and_diff_hash(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "one")
    clean = git_state(repo)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    dirty = git_state(repo)
    assert dirty["commit"] == clean["commit"] and dirty["dirty"] is True
    assert dirty["diff_sha256"] != clean["diff_sha256"]
    (repo / "a.py").write_text("x = 3\n")
    assert git_state(repo)["diff_sha256"] != dirty["diff_sha256"]  # another edit, another hash


def test_git_state_is_null_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) is None
    inner = tmp_path / "repo" / "sub"
    inner.mkdir(parents=True)
    _git(tmp_path / "repo", "init", "-q")
    assert git_state(inner) is None  # inside someone else's repository: says nothing about this code


def test_environment_overrides_and_launcher_are_recorded(monkeypatch):
    monkeypatch.setenv("FEDNLP_SCRIPT", "run_scripts/results_tagging.sh")
    monkeypatch.setenv("FEDNLP_PROFILE", "gpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr("sys.argv", ["fednlp", "train", "--seed", "4"])
    block = run_provenance(torch.nn.Linear(2, 2), torch.device("cpu"))
    assert block["command"] == ["fednlp", "train", "--seed", "4"]
    assert (block["script"], block["profile"]) == ("run_scripts/results_tagging.sh", "gpu")
    assert set(block["env"]) == set(RESULT_ENV)
    assert block["env"]["OMP_NUM_THREADS"] == "3" and block["env"]["CUBLAS_WORKSPACE_CONFIG"] is None
    assert block["torch"]["num_threads"] == torch.get_num_threads()
    assert block["torch"]["deterministic_algorithms"] is False
    assert block["gpu"] is None


def _run_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def test_train_and_centralized_records_carry_provenance_and_the_saved_weights_checksum(bbc, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    data, part = bbc
    monkeypatch.setenv("FEDNLP_SCRIPT", "run_scripts/results_classification.sh")
    monkeypatch.setenv("FEDNLP_PROFILE", "cpu")
    common = ["--data", str(data), "--model", "tiny-bert", "--max-seq-length", "32", "--batch-size", "8",
              "--eval-max-examples", "32", "--seed", "1", "--quiet", "true"]
    commands = {
        "fed": ["train", *common, "--partition", str(part), "--method", METHOD, "--rounds", "1",
                "--clients-per-round", "2", "--local-steps", "1", "--out", str(tmp_path / "fed")],
        "central": ["centralized", *common, "--steps", "2", "--out", str(tmp_path / "central")],
    }
    for run, argv in commands.items():
        monkeypatch.setattr("sys.argv", ["fednlp", *argv])  # as the console script sees its command line
        assert main(argv) == 0
        block = _run_record(tmp_path / run)["provenance"]
        assert block["command"] == ["fednlp", *argv]
        assert block["script"] == "run_scripts/results_classification.sh" and block["profile"] == "cpu"
        assert block["cpu"]
        assert block["git"] is None or set(block["git"]) == {"commit", "dirty", "diff_sha256"}
        saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / run / "model")
        assert block["weights_sha256"] == weights_sha256(saved)  # the checksum is the saved model's


def test_results_scripts_export_their_name_and_profile(tmp_path):
    common = Path(__file__).resolve().parents[1] / "run_scripts" / "results_common.sh"
    script = tmp_path / "my_study.sh"
    script.write_text(f'source "{common}"\necho "$FEDNLP_SCRIPT $FEDNLP_PROFILE"\n')
    env = {"PATH": "/usr/bin:/bin", "PROFILE": "gpu"}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == [str(script), "gpu"]
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "FEDNLP_SCRIPT": "wrapper.sh"})
    assert done.stdout.split() == ["wrapper.sh", "cpu"]

"""A package installed beside fednlp adds an algorithm through the `fednlp.algorithms` entry-point group:
tests/plugin_example is pip-installed into this environment, listed, run, and uninstalled afterwards."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fednlp.config import TrainConfig
from fednlp.errors import UserError

PLUGIN = Path(__file__).resolve().parent / "plugin_example"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)


def _fednlp(*args: str) -> subprocess.CompletedProcess:
    """A fresh interpreter: entry points are read from the installed metadata as a user's shell would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "fednlp.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    source = tmp_path_factory.mktemp("plugin") / "plugin_example"
    shutil.copytree(PLUGIN, source)  # build there: no build/ or egg-info left in the repository
    pip = [sys.executable, "-m", "pip"]
    done = subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield
    subprocess.run([*pip, "uninstall", "-y", "-q", "fednlp-plugin-example"], capture_output=True, check=True)


def test_installed_plugin_is_listed_and_trains(installed, bbc, tmp_path: Path) -> None:
    listed = _fednlp("algorithms")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^fedavg_clip +FedAvg whose client updates are clipped", listed.stdout, re.M), listed.stdout
    assert re.search(r"^fedadam ", listed.stdout, re.M)

    data, part = bbc
    out = tmp_path / "run"
    done = _fednlp("train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
                   "--algorithm", "fedavg_clip", "--clip-norm", "0.5", "--noise-std", "0.001", "--rounds", "1",
                   "--clients-per-round", "2", "--local-steps", "1", "--batch-size", "8", "--max-seq-length", "32",
                   "--eval-max-examples", "16", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["algorithm"] == "fedavg_clip" and result["config"]["clip_norm"] == 0.5

    bad = _fednlp("train", "--data", str(data), "--partition", str(part), "--method", METHOD,
                  "--algorithm", "fedavg", "--clip-norm", "1", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("fednlp: error: --clip-norm is not an option of --algorithm fedavg "
                                  "(it takes no options of its own)")


def test_installed_plugin_under_mpirun_equals_one_process(installed, bbc, tmp_path: Path) -> None:
    """The worked example of docs/extending.md, noise included: 2 ranks train the same model as 1 process."""
    from transformers import AutoModelForSequenceClassification

    data, part = bbc
    flags = ["train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
             "--algorithm", "fedavg_clip", "--clip-norm", "0.05", "--noise-std", "0.001", "--rounds", "2",
             "--clients-per-round", "4", "--local-steps", "2", "--batch-size", "8", "--max-seq-length", "32",
             "--eval-max-examples", "16", "--optimizer", "sgd", "--lr", "0.05", "--quiet", "true"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for ranks in (1, 2):
        cmd = [sys.executable, "-m", "fednlp.cli", *flags, "--out", str(tmp_path / f"r{ranks}")]
        if ranks > 1:
            cmd = ["mpirun", "-n", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
                   "-x", "HF_HUB_OFFLINE", "-x", "TOKENIZERS_PARALLELISM", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (AutoModelForSequenceClassification.from_pretrained(tmp_path / f"r{r}" / "model") for r in (1, 2))
    for (name, a), (_, b) in zip(one.named_parameters(), two.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_plugin_clips_client_updates_and_adds_rank_identical_noise(monkeypatch) -> None:
    from fednlp.algorithms.interface import ClientUpdate
    from fednlp.federation.round_plan import make_context

    spec = importlib.util.spec_from_file_location("fednlp_plugin_example", PLUGIN / "fednlp_plugin_example.py")
    plugin = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, plugin)  # dataclasses look their module up there
    spec.loader.exec_module(plugin)
    config = TrainConfig(data="d", partition="p", method="m", algorithm_args={"clip_norm": 1.0, "noise_std": 0.1})
    algorithm = plugin.FedAvgClip(config)
    sums = torch.zeros(1, dtype=torch.float64)
    # A delta in two parts (dense weights + sparse embedding rows): norm 5 over both, clipped to 1.
    parts = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0]])]
    update = ClientUpdate(0, 1.0, 10, 1, 0.0, 0.0, 0.0, parts, sums, {"clipped": 0})
    algorithm.process_client_update(update, None)
    assert update.norm() == pytest.approx(1.0) and float(sums[0]) == 1.0
    torch.testing.assert_close(parts[1], torch.tensor([[0.0, 0.8]]))
    steps = []
    for rank in (0, 1):  # two ranks build the round's context independently: the same noise
        x = torch.zeros(3)
        ctx = make_context(seed=4, round_idx=2, cohort=[0, 1], n_clients=5, expected_cohort_size=2, world_size=2,
                           rank=rank).with_sums({"clipped": 1.0})
        algorithm.server_step(x, torch.zeros(3), ctx)
        steps.append(x)
    torch.testing.assert_close(steps[0], steps[1])
    assert 0 < float(steps[0].abs().max()) < 1 and algorithm.clipped_last_round == 1.0


def test_docs_show_the_plugin_code_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert (PLUGIN / "fednlp_plugin_example.py").read_text() in blocks

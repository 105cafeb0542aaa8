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
    assert re.search(r"^fedavg_clip +FedAvg whose aggregated update is clipped", listed.stdout, re.M), listed.stdout
    assert re.search(r"^fedadam ", listed.stdout, re.M)

    data, part = bbc
    out = tmp_path / "run"
    done = _fednlp("train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
                   "--algorithm", "fedavg_clip", "--algorithm-options", "clip_norm=0.5", "--rounds", "1",
                   "--clients-per-round", "2", "--local-steps", "1", "--batch-size", "8", "--max-seq-length", "32",
                   "--eval-max-examples", "16", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["algorithm"] == "fedavg_clip" and result["config"]["algorithm_options"] == "clip_norm=0.5"

    bad = _fednlp("train", "--data", str(data), "--partition", str(part), "--method", METHOD,
                  "--algorithm", "fedavg_clip", "--algorithm-options", "clip_norm=-1", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == "fednlp: error: --algorithm-options clip_norm must be positive, got -1.0"


def test_plugin_clips_the_aggregated_update(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("fednlp_plugin_example", PLUGIN / "fednlp_plugin_example.py")
    plugin = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, plugin)  # dataclasses look their module up there
    spec.loader.exec_module(plugin)
    config = TrainConfig(data="d", partition="p", method="m", server_lr=1.0, algorithm_options="clip_norm=1.0")
    algorithm = plugin.FedAvgClip(config)
    x = torch.zeros(2)
    algorithm.server_step(x, torch.tensor([3.0, 4.0]), 0)  # norm 5 -> 1
    torch.testing.assert_close(x, torch.tensor([0.6, 0.8]))
    algorithm.server_step(x, torch.tensor([0.3, 0.0]), 1)  # under the norm: plain FedAvg
    torch.testing.assert_close(x, torch.tensor([0.9, 0.8]))
    with pytest.raises(UserError, match="clip_norm must be positive"):
        plugin.FedAvgClip(TrainConfig(data="d", partition="p", method="m", algorithm_options="clip_norm=0"))


def test_docs_show_the_plugin_code_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert (PLUGIN / "fednlp_plugin_example.py").read_text() in blocks

"""--precision on the CPU (fednlp/run/device.py): bf16 is autocast there as on a GPU (it used to run fp32 while
the run recorded bf16), for every head's training; fp16 needs a GPU and is refused before the run
directory is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fednlp.cli import main
from synthetic_heads import TINY_HEADS, uniform_head_files

HEADS = TINY_HEADS  # head -> (model, extra flags)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return uniform_head_files(tmp_path_factory.mktemp("precision"), 24, 8, clients=2)


def _train(files: dict, head: str, out: Path, *extra: str) -> int:
    data, part = files[head]
    model, flags = HEADS[head]
    return main(["train", "--data", str(data), "--partition", str(part), "--method", "uniform_clients=2", "--task",
                 head, "--model", model, "--rounds", "1", "--clients-per-round", "2", "--local-steps", "2",
                 "--batch-size", "8", "--max-seq-length", "32", "--optimizer", "sgd", "--lr", "0.05",
                 "--eval-batch-size", "8", "--device", "cpu", "--quiet", "--out", str(out), *flags, *extra])


@pytest.mark.parametrize("head", sorted(HEADS))
def test_bf16_on_the_cpu_trains_under_autocast_for_every_head(files, head: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []  # whether autocast was on at each training loss
    from fednlp.tasks.registry import TASKS

    task_cls = TASKS[head]
    loss = task_cls.loss
    monkeypatch.setattr(task_cls, "loss", lambda self, *a, **k: seen.append(torch.is_autocast_enabled("cpu"))
                        or loss(self, *a, **k))
    assert _train(files, head, tmp_path / "fp32") == 0
    assert seen and not any(seen)
    seen.clear()
    assert _train(files, head, tmp_path / "bf16", "--precision", "bf16") == 0
    assert seen and all(seen)
    fp32, bf16 = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("fp32", "bf16"))
    largest = max(float((fp32[k] - bf16[k]).abs().max()) for k in fp32)
    assert 0 < largest < 1e-2  # bf16 matmuls: the same run, rounded differently
    result = json.loads((tmp_path / "bf16" / "result.json").read_text())
    assert result["config"]["precision"] == "bf16"


def test_fp16_on_the_cpu_is_one_line_exit_2_and_writes_nothing(files, tmp_path: Path, capsys) -> None:
    assert _train(files, "classification", tmp_path / "run", "--precision", "fp16") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--precision fp16 needs a GPU" in err and "bf16" in err
    assert not (tmp_path / "run").exists()

"""--precision on the CPU (fednlp/run/device.py): bf16 is autocast there as on a GPU (it used to run fp32 while
the run recorded bf16), for every head's training and evaluation; fp16 needs a GPU and is refused before the run
directory is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fednlp.cli import main
from synthetic_heads import head_data_file

HEADS = {  # head -> (model, extra flags)
    "classification": ("tiny-bert", []),
    "tagging": ("tiny-bert", []),
    "qa": ("tiny-bert", ["--doc-stride", "8"]),
    "seq2seq": ("tiny-bert", ["--max-target-length", "8", "--num-beams", "2"]),
    "lm": ("tiny-gpt2", []),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("precision")
    out = {}
    for head in HEADS:
        data = head_data_file(head, root / head / "data.h5", 24, 8, high=30, qa_high=60)
        part = root / head / "part.h5"
        assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "2",
                     "--seed", "0"]) == 0
        out[head] = data, part
    return out


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

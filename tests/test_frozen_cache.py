"""Cached frozen layers (`--cache-frozen`, fednlp/tasks/frozen_prefix.py): for every head, a run from the fp32
cache ends with the same weights as the same run computing the frozen blocks at every step in eval mode; the
cache is reused, shared by 2 ranks (1 process = 2 ranks), survives checkpoint/resume, works under client-level
and sample-level DP; bf16 halves the disk; models and options it cannot serve get one line, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fednlp.run.session as session_module
from fednlp.cli import main
from synthetic_heads import TINY_HEADS, uniform_head_files
from fednlp.errors import UserError
from fednlp.tasks.frozen_prefix import FrozenPrefix

HERE = Path(__file__).resolve().parent
FEDNLP = str(Path(sys.executable).with_name("fednlp"))
HEADS = TINY_HEADS  # head -> (model, extra flags)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return uniform_head_files(tmp_path_factory.mktemp("frozen"), 40, 12, clients=4)


def _args(head: str, files: dict, out: Path, *extra: str, k: int = 1, rounds: int = 2) -> list[str]:
    data, part = files[head]
    model, flags = HEADS[head]
    return ["--data", str(data), "--partition", str(part), "--method", "uniform_clients=4", "--task", head,
            "--model", model, "--rounds", str(rounds), "--clients-per-round", "2", "--local-steps", "3",
            "--batch-size", "8", "--max-seq-length", "32", "--optimizer", "sgd", "--lr", "0.05", "--freeze-layers", str(k),
            "--eval-batch-size", "8", "--quiet", "--out", str(out), *flags, *extra]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def _same_weights(a: Path, b: Path, atol: float = 1e-5) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture
def prefixes(monkeypatch: pytest.MonkeyPatch) -> list[FrozenPrefix]:
    """Every FrozenPrefix a run attaches (to count its fed and live forwards)."""
    seen: list[FrozenPrefix] = []
    real = session_module.cached_prefix_features

    def spy(*args, **kwargs):
        features = real(*args, **kwargs)
        seen.append(features.prefix)
        return features

    monkeypatch.setattr(session_module, "cached_prefix_features", spy)
    return seen


def _uncached_eval_mode_run(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> FrozenPrefix:
    """The same run without the cache: the frozen prefix computed at every step, in eval mode (no dropout)."""
    attached: list[FrozenPrefix] = []

    def live(model, task, features, config, comm, device):
        attached.append(FrozenPrefix(model, config.freeze_layers, config.model))
        return features

    with monkeypatch.context() as m:
        m.setattr(session_module, "cached_prefix_features", live)
        assert main(["train", *args]) == 0
    return attached[0]


@pytest.mark.parametrize("head", list(HEADS))
def test_the_fp32_cache_gives_the_weights_of_computing_the_frozen_blocks_every_step(
        head: str, files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefixes: list[FrozenPrefix]) -> None:
    cached = tmp_path / "cached"
    assert main(["train", *_args(head, files, cached, "--cache-frozen", "--frozen-cache-dtype", "fp32")]) == 0
    prefix = prefixes[0]
    assert prefix.fed_calls > 0 and prefix.live_calls == 0  # every training and evaluation forward was fed
    live = _uncached_eval_mode_run(monkeypatch, _args(head, files, tmp_path / "live", "--cache-frozen"))
    assert live.fed_calls == 0 and live.live_calls > 0
    assert _same_weights(cached, tmp_path / "live") <= 1e-5
    first = json.loads((cached / "result.json").read_text())
    second = json.loads((tmp_path / "live" / "result.json").read_text())
    assert first["value"] == pytest.approx(second["value"], rel=1e-6, abs=1e-6)


def test_the_cache_is_built_once_and_bf16_halves_its_size(files, tmp_path: Path, capsys) -> None:
    (tmp_path / "own").mkdir()  # a copy of the data: its own cache directory, whatever ran before
    files = {"classification": tuple(Path(shutil.copy(f, tmp_path / "own")) for f in files["classification"])}
    assert main(["train", *_args("classification", files, tmp_path / "a", "--cache-frozen", "--frozen-cache-dtype",
                                 "fp32")]) == 0
    assert main(["train", *_args("classification", files, tmp_path / "b", "--cache-frozen", "--frozen-cache-dtype",
                                 "fp32")]) == 0
    assert main(["train", *_args("classification", files, tmp_path / "c", "--cache-frozen")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("frozen layers:")]
    assert "built in" in lines[0] and "reused" in lines[1] and "bf16" in lines[2]
    caches = {p.name.split("-")[-2]: p for p in files["classification"][0].parent.glob(".fednlp_cache/*.frozen1-*.npy")}
    assert caches["bf16"].stat().st_size < 0.55 * caches["fp32"].stat().st_size
    # bf16 states: not the same weights, but close ones.
    assert 0 < _same_weights(tmp_path / "a", tmp_path / "c") < 1e-2
    assert _same_weights(tmp_path / "a", tmp_path / "b") == 0.0


def test_a_resumed_run_ends_where_the_uninterrupted_one_ends(files, tmp_path: Path) -> None:
    flags = ("--cache-frozen", "--frozen-cache-dtype", "fp32", "--checkpoint-every", "1")
    assert main(["train", *_args("classification", files, tmp_path / "whole", *flags, rounds=3)]) == 0
    assert main(["train", *_args("classification", files, tmp_path / "part", *flags, rounds=1)]) == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--rounds", "3", "--quiet"]) == 0
    assert _same_weights(tmp_path / "whole", tmp_path / "part") <= 1e-6


@pytest.mark.parametrize("dp", [
    ["--dp", "client", "--dp-clip", "0.5", "--dp-noise-multiplier", "0.3"],
    ["--dp", "sample", "--dp-clip", "1.0", "--dp-noise-multiplier", "0.5"],
])
def test_dp_runs_from_the_cache_as_they_do_computing_the_frozen_blocks(
        dp: list[str], files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clipping (per client, or per example by Opacus's hooks) and noise see the same trainable gradients: the
    frozen part has none. (SGD: AdamW turns the rounding noise of a key bias's zero gradient into whole steps.)"""
    flags = ["--cache-frozen", "--frozen-cache-dtype", "fp32", "--optimizer", "sgd", "--lr", "0.05", *dp]
    assert main(["train", *_args("classification", files, tmp_path / "cached", *flags)]) == 0
    _uncached_eval_mode_run(monkeypatch, _args("classification", files, tmp_path / "live", *flags))
    assert _same_weights(tmp_path / "cached", tmp_path / "live") <= 1e-5


def test_two_ranks_share_one_cache_and_end_with_the_weights_of_one(files, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    mpi = ["mpirun", "-n", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-x", "PYTHONPATH",
           "-x", "HF_HUB_OFFLINE", "-x", "OMP_NUM_THREADS"]
    # k=2 (of 2 blocks: only the head trains) with its own cache, which the 2 ranks build together.
    flags = ("--cache-frozen", "--frozen-cache-dtype", "fp32")
    two = subprocess.run([*mpi, FEDNLP, "train", *_args("classification", files, tmp_path / "two", *flags, k=2)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "built in" in two.stdout
    assert main(["train", *_args("classification", files, tmp_path / "one", *flags, k=2)]) == 0
    assert _same_weights(tmp_path / "one", tmp_path / "two") <= 1e-5


def test_what_the_cache_cannot_serve_is_one_line_exit_2(files, tmp_path: Path, capsys) -> None:
    args = _args("classification", files, tmp_path / "x")
    without_k = [a for i, a in enumerate(args) if a != "--freeze-layers" and args[i - 1] != "--freeze-layers"]
    assert main(["train", *without_k, "--cache-frozen"]) == 2
    assert "--cache-frozen needs --freeze-layers" in capsys.readouterr().err
    assert main(["train", *args, "--cache-frozen", "--frozen-cache-dtype", "int8"]) == 2
    assert "--frozen-cache-dtype must be bf16, fp16 or fp32" in capsys.readouterr().err
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    # T5's later blocks take the first block's relative position bias; BART's encoder has no such prefix module.
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2))
    with pytest.raises(UserError, match=r"^--cache-frozen: --model 't5-tiny' \(t5\) has no frozen prefix"):
        FrozenPrefix(t5, 1, "t5-tiny")
    bart = BartForConditionalGeneration(BartConfig(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=2,
                                                   encoder_attention_heads=2, decoder_attention_heads=2,
                                                   encoder_ffn_dim=32, decoder_ffn_dim=32))
    with pytest.raises(UserError, match=r"^--cache-frozen: --model 'bart-tiny' \(bart\) has no frozen prefix"):
        FrozenPrefix(bart, 1, "bart-tiny")

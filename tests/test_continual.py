"""Continual FL: what a device holds in each period (by hand), and --continual runs end to end: per-period
records with the future's metrics, 2 ranks = 1 process, and a resumed run = an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.cli import main
from fednlp.errors import UserError
from fednlp.federation.continual import ContinualSchedule, period_of_examples

ORDER = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 1.0])


def test_periods_cut_the_stream_into_consecutive_equal_stretches() -> None:
    # 12 examples, 3 periods: cuts at the values of ranks 4 and 8 (0.4 and 0.8); ties stay together.
    assert period_of_examples(ORDER, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert period_of_examples(ORDER, 1).tolist() == [0] * 12
    with pytest.raises(UserError, match="--periods 20 exceeds the 11 distinct values"):
        period_of_examples(ORDER, 20)


def test_what_a_device_holds_with_and_without_a_storage_limit() -> None:
    device = np.array([1, 3, 5, 8, 9, 11])  # its examples, orders 0.1 0.3 0.5 0.8 0.9 1.0 -> periods 0 0 1 2 2 2
    unlimited = ContinualSchedule.from_data(ORDER, 3, rounds_per_period=2, storage_limit=None)
    assert [unlimited.held(device, t).tolist() for t in range(3)] == [[1, 3], [1, 3, 5], [1, 3, 5, 8, 9, 11]]
    limited = ContinualSchedule.from_data(ORDER, 3, rounds_per_period=2, storage_limit=2)
    # The newest two: period 1 deletes example 1 (the oldest), period 2 keeps 9 and 11.
    assert [limited.held(device, t).tolist() for t in range(3)] == [[1, 3], [3, 5], [9, 11]]
    assert [limited.period_of_round(r) for r in range(6)] == [0, 0, 1, 1, 2, 2]
    assert unlimited.future_test(np.array([0, 4, 7, 10]), 0).tolist() == [4, 7]
    assert unlimited.future_test(np.array([0, 4, 7, 10]), 2).tolist() == []


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> tuple[Path, Path]:
    """120 short reviews by 6 users over time (a csv with user and time columns), one client per user."""
    root = tmp_path_factory.mktemp("continual")
    rng = np.random.default_rng(0)
    words = {"pos": ["good", "great", "fine", "lovely"], "neg": ["bad", "awful", "poor", "sad"]}
    lines = ["text,label,user,time"]
    for i in range(120):
        label = ["pos", "neg"][i % 2]
        lines.append(f"{' '.join(rng.choice(words[label], 4))} day {i},{label},u{i % 6},{i}")
    (root / "reviews.csv").write_text("\n".join(lines) + "\n")
    data, part = root / "reviews.h5", root / "reviews_p.h5"
    assert main(["data", "prepare", "--dataset", "csv", "--source", str(root / "reviews.csv"), "--text-column", "text",
                 "--label-column", "label", "--user-column", "user", "--time-column", "time", "--test-fraction", "0.25",
                 "--out", str(data)]) == 0
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "natural", "--field", "user",
                 "--clients", "6"]) == 0
    return data, part


def _flags(user_data, out: Path, *extra: str) -> list[str]:
    data, part = user_data
    return ["train", "--data", str(data), "--partition", str(part), "--method", "natural_clients=6_field=user",
            "--model", "tiny-bert", "--continual", "true", "--periods", "3", "--rounds-per-period", "2",
            "--clients-per-round", "3", "--local-steps", "2", "--batch-size", "4", "--max-seq-length", "16",
            "--optimizer", "sgd", "--lr", "0.1", "--out", str(out), "--quiet", "true", *extra]


def _weights(run: Path) -> list[torch.Tensor]:
    from transformers import AutoModelForSequenceClassification

    return [p.detach() for p in AutoModelForSequenceClassification.from_pretrained(run / "model").parameters()]


def test_continual_run_records_periods_and_the_future(user_data, tmp_path: Path) -> None:
    assert main(_flags(user_data, tmp_path / "run", "--checkpoint-every", "2")) == 0
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["period"] for r in records] == [1, 1, 2, 2, 3, 3]
    ends = [r for r in records if r["round"] % 2 == 0]
    assert all("accuracy" in r for r in ends) and "future_accuracy" in ends[0] and "future_accuracy" in ends[1]
    assert "future_accuracy" not in ends[2]  # no period after the last
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["rounds"] == 6 and result["config"]["continual"] is True

    # A crash after period 2 (the last checkpoint and the record gone; two checkpoints are kept), then
    # --resume from round 4: the same weights as the uninterrupted run.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run", resumed)
    for suffix in (".pt", ".sha256"):
        (resumed / "checkpoints" / f"round-000006{suffix}").unlink()
    (resumed / "result.json").unlink()
    shutil.rmtree(resumed / "model")
    assert main(["train", "--resume", str(resumed), "--quiet", "true"]) == 0
    for a, b in zip(_weights(tmp_path / "run"), _weights(resumed)):
        torch.testing.assert_close(a, b)


def test_continual_two_ranks_equal_one_process(user_data, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ["mpirun", "-n", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-x", "HF_HUB_OFFLINE",
           sys.executable, "-m", "fednlp.cli", *_flags(user_data, tmp_path / "two", "--storage-limit", "5")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(_flags(user_data, tmp_path / "one", "--storage-limit", "5")) == 0
    for a, b in zip(_weights(tmp_path / "one"), _weights(tmp_path / "two")):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (("--storage-limit", "0"), "--storage-limit must be positive, got 0"),
    (("--periods", "500"), "--periods 500 exceeds the"),
])
def test_bad_continual_options_are_one_line(user_data, tmp_path: Path, capsys, extra, message) -> None:
    flags = _flags(user_data, tmp_path / "bad")
    if extra[0] == "--periods":
        flags[flags.index("--periods") + 1] = extra[1]
        extra = ()
    assert main(flags + list(extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_continual_without_an_order_field_is_one_line(bbc, tmp_path: Path, capsys) -> None:
    data, part = bbc
    assert main(["train", "--data", str(data), "--partition", str(part), "--method", "niid_label_clients=12_alpha=1.0",
                 "--continual", "true", "--periods", "2", "--rounds-per-period", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--continual needs an order or time field" in capsys.readouterr().err

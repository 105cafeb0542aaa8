"""Issue 29's tracebacks and silent endings, each now one line and exit 2 (bad input, nothing written) or a
non-finite run, exit 3: a cut model.safetensors, `--activity-power 1000` and an empty client's inclusion
probability, q-FedAvg with a q whose F^q leaves a double's range (and `supervise` not retrying it), a figure
path without an image suffix, an audit reference trained on another task, and a `--on-nonfinite skip-client`
run whose every client was skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import prepare_small
from fednlp.algorithms.samplers import ActivitySampler, inclusion_probabilities
from fednlp.cli import main

FEDNLP = str(Path(sys.executable).with_name("fednlp"))
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    _, data, part = prepare_small(tmp_path_factory.mktemp("small"))
    return data, part


def _train(small: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    """One round of one step of two clients of the 20-example data file (later flags win)."""
    data, part = small
    return ["train", "--data", str(data), "--partition", str(part), "--method", "uniform_clients=4", "--model",
            "tiny-bert", "--rounds", "1", "--clients-per-round", "2", "--local-steps", "1", "--batch-size", "4",
            "--max-seq-length", "16", "--eval-max-examples", "4", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def runs(small: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished classifier run, a finished LM run on the same data file, and the classifier run with its
    model.safetensors cut to half its length."""
    root = tmp_path_factory.mktemp("runs")
    paths = {"classifier": root / "classifier", "lm": root / "lm", "cut": root / "cut"}
    assert main(_train(small, paths["classifier"])) == 0
    assert main(_train(small, paths["lm"], "--task", "lm", "--model", "tiny-gpt2")) == 0
    shutil.copytree(paths["classifier"], paths["cut"])
    weights = paths["cut"] / "model" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    return paths


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fednlp: error: "), err
    return err


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.parametrize("command", ["audit", "fairness", "train", "centralized"])
def test_a_cut_safetensors_file_is_one_line_naming_it(command: str, runs: dict[str, Path], small: tuple[Path, Path],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut, out = runs["cut"], tmp_path / "out"
    argv = {"audit": ["audit", str(cut)],
            "fairness": ["fairness", str(cut), "--data", str(small[0])],
            "train": _train(small, out, "--model", str(cut / "model")),
            "centralized": ["centralized", "--data", str(small[0]), "--model", str(cut / "model"), "--steps", "1",
                            "--batch-size", "4", "--max-seq-length", "16", "--out", str(out)]}[command]
    before = _listing(cut)
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert f"{cut / 'model' / 'model.safetensors'} is not a complete safetensors file" in err, err
    assert "expected the weights file save_pretrained writes, whole" in err
    assert _listing(cut) == before and not out.exists()


def test_activity_power_1000_trains(small: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_train(small, out, "--sampler", "activity", "--activity-power", "1000")) == 0
    assert (out / "result.json").is_file()


def test_too_few_clients_with_data_for_the_activity_sampler_is_refused_before_any_output(
        small: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    data, part = small
    emptied = tmp_path / "emptied.h5"
    shutil.copy(part, emptied)
    with h5py.File(emptied, "r+") as f:  # the last client's training rows go to the one before it: it is empty
        offsets = f["uniform_clients=4/train_offsets"]
        offsets[-2] = offsets[-1]
    out = tmp_path / "run"
    argv = _train((data, emptied), out, "--sampler", "activity", "--clients-per-round", "4")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs at least --clients-per-round 4 clients with training examples; 3" in err
    assert not out.exists()  # refused before the run directory (it was made, then refused in round 1)


def test_inclusion_probabilities_stay_finite_for_any_power_and_give_an_empty_client_zero() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow and 0/0 warnings were the symptom
        # two clients fill the cohort of 2; the empty one had 0 * 0 / 0 = NaN
        np.testing.assert_array_equal(inclusion_probabilities(np.array([5, 5, 0]), 2), [1.0, 1.0, 0.0])
        # 4 ** 1000 overflows a double: the largest two clients are certain, the others ~0
        pi = ActivitySampler(1000.0).inclusion_probabilities(np.array([4, 5, 6, 0, 7]), 2)
        np.testing.assert_allclose(pi, [0.0, 0.0, 1.0, 0.0, 1.0], atol=1e-100)
        # ties stay ties at any finite power: the two small clients share the slot left
        np.testing.assert_allclose(inclusion_probabilities(np.array([200, 10, 10]), 2, 1e308), [1.0, 0.5, 0.5])
        cohort = ActivitySampler(1000.0).sample(0, 0, np.array([4, 5, 6, 0, 7]), 2)
    np.testing.assert_array_equal(cohort, [2, 4])


@pytest.mark.parametrize("task, sum_h", [("classification", "0.0"), ("lm", "inf")])
def test_qfedavg_with_a_q_out_of_a_doubles_range_is_a_non_finite_run(task: str, sum_h: str, small: tuple[Path, Path],
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Losses below 1 underflow F^q to 0 (sum_k h_k = 0 divided by); an LM's loss above 1 overflows it."""
    model = "tiny-gpt2" if task == "lm" else "tiny-bert"
    out = tmp_path / "run"
    assert main(_train(small, out, "--task", task, "--model", model, "--algorithm", "qfedavg", "--q", "1e6")) == 3
    err = capsys.readouterr().err
    assert f"round 1: q-FedAvg's step normaliser sum_k h_k is {sum_h}" in err, err
    assert not (out / "result.json").exists()


def test_supervise_does_not_retry_a_qfedavg_run_that_left_a_doubles_range(small: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([FEDNLP, "supervise", "--max-restarts", "3", "--restart-delay", "0", "--", FEDNLP,
                           *_train(small, out, "--algorithm", "qfedavg", "--q", "1e6")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "the job ended with exit code 3 (non-finite loss or update): the run's own fault, not restarted" in done.stderr
    assert "restart 1" not in done.stderr and not (out / "restarts.jsonl").exists()


@pytest.mark.parametrize("flag, name", [("--plot", "heat.h5"), ("--sizes-plot", "sizes")])
def test_partition_stats_refuses_a_figure_path_without_an_image_suffix(flag: str, name: str, small: tuple[Path, Path],
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data, part = small
    figure = tmp_path / name
    assert main(["partition-stats", "--data", str(data), "--partition", str(part), flag, str(figure)]) == 2
    err = _one_error_line(capsys)
    assert f"{flag} {figure}: a figure's format comes from its file suffix; expected one of" in err
    assert ".png" in err and ".pdf" in err and ".svg" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("audited, reference", [("classifier", "lm"), ("lm", "classifier")])
def test_audit_refuses_a_reference_trained_on_another_task(audited: str, reference: str, runs: dict[str, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Both runs read the same classification data file: the data's task type agrees, the heads do not."""
    before = _listing(runs[audited])
    tasks = {"classifier": "classification", "lm": "lm"}
    assert main(["audit", str(runs[audited]), "--reference", str(runs[reference])]) == 2
    err = _one_error_line(capsys)
    assert (f"--reference {runs[reference]} trained --task {tasks[reference]}; the audited run {runs[audited]} "
            f"trained --task {tasks[audited]}: expected a --task {tasks[audited]} run") in err, err
    assert _listing(runs[audited]) == before


def test_a_round_that_skipped_every_client_is_a_non_finite_run(small: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = _train(small, out, "--lr", "1e30", "--optimizer", "sgd", "--local-steps", "4", "--on-nonfinite",
                  "skip-client")
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "round 1: every one of its 2 clients had a non-finite loss or update" in err, err
    assert "--on-nonfinite skip-client left nothing to aggregate" in err
    assert not (out / "result.json").exists()

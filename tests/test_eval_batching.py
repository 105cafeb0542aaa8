"""Evaluation results do not depend on how the test rows are batched: on a fixed tiny model and a real data
slice of every head, predictions and metrics are the same one row at a time, in length-bucketed batches of
any size, and whatever order the rows come in. Also: what --final-eval and --eval-num-beams record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.tasks.feature_cache import load_or_build_features
from fednlp.federation.communicator import LocalCommunicator
from fednlp.run.evaluation import evaluate, predict_rows
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.registry import resolve_task

N_TRAIN, N_TEST = 8, 12
#: head -> (reader, source under ../shared/data, options of the config)
HEADS = {
    "classification": ("sst2", "sst2", {}),
    "tagging": ("wnut17", "wnut17", {"max_seq_length": 32}),  # short: long sentences become several windows
    "qa": ("squad", "squad_v1.1/dev-v1.1.json", {"max_seq_length": 64, "doc_stride": 16}),
    "seq2seq": ("gigaword", "gigaword_sample", {"max_seq_length": 48, "max_target_length": 6, "num_beams": 2}),
}


def small_slice(full: DataFile, path: Path) -> Path:
    """The first training and test examples of a prepared file, renumbered."""
    chosen = list(full.train_index_list[:N_TRAIN]) + list(full.test_index_list[:N_TEST])
    fields = {name: [values[i] for i in chosen] for name, values in full.fields.items()}
    small = DataFile(full.task_type, fields, list(range(N_TRAIN)), list(range(N_TRAIN, len(chosen))),
                     dict(full.label_vocab), {"dataset": full.attributes.get("dataset")})
    write_data_file(small, path)
    return path


@pytest.fixture(scope="module")
def head_files(tmp_path_factory, shared_data: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("heads")
    files = {}
    for head, (reader, source, _) in HEADS.items():
        args = ["data", "prepare", "--dataset", reader, "--source", str(shared_data / source),
                "--out", str(root / f"{head}_full.h5")]
        if reader in ("squad", "gigaword"):
            args += ["--test-fraction", "0.2"]
        assert main(args) == 0
        files[head] = small_slice(read_data_file(root / f"{head}_full.h5"), root / f"{head}.h5")
    return files


def fixed_model(head: str, data_path: Path):
    """The head's task, features and a tiny model with seeded random weights (the same on every call)."""
    config = RunConfig(data=str(data_path), task=head, **HEADS[head][2])
    data = read_data_file(data_path)
    task = resolve_task(config.task, data.task_type, config.data)(data, load_tokenizer(config.model), config)
    features = load_or_build_features(task, config.data)
    torch.manual_seed(0)
    model = task.build_model(config.model)
    return task, features, model


def same_predictions(a: list, b: list) -> bool:
    """Equal predictions: ids, labels and texts exactly; raw scores (QA's candidate logits) to float32
    rounding, since a different padding width changes the order of a matrix product's sums."""
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-5, atol=1e-5))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_predictions(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return same_predictions(np.asarray(a).tolist(), np.asarray(b).tolist())
    return a == b


@pytest.mark.parametrize("head", list(HEADS))
def test_predictions_and_metrics_do_not_depend_on_batching(head: str, head_files: dict[str, Path]) -> None:
    task, features, model = fixed_model(head, head_files[head])
    test = np.asarray(task.data.test_index_list, dtype=np.int64)
    rows = features.rows_of(test)
    cpu = torch.device("cpu")
    one_at_a_time = predict_rows(model, task, features, rows, 1, cpu, "fp32")
    assert len(one_at_a_time) == len(rows)
    assert same_predictions(predict_rows(model, task, features, rows, 7, cpu, "fp32"), one_at_a_time)
    shuffled = np.random.default_rng(0).permutation(len(rows))
    assert same_predictions(predict_rows(model, task, features, rows[shuffled], 64, cpu, "fp32"),
                            [one_at_a_time[i] for i in shuffled])
    metrics = evaluate(model, task, features, test, LocalCommunicator(), 5, cpu, "fp32")
    assert metrics == task.compute_metrics(rows, one_at_a_time, features)
    if head in ("tagging", "qa"):
        assert len(rows) > len(test)  # windows: an example's rows were batched apart


def test_final_eval_full_uses_every_test_example_and_the_run_beams(head_files: dict[str, Path], tmp_path: Path
                                                                   ) -> None:
    """--eval-max-examples and --eval-num-beams shape the intermediate evaluations only; the final number is
    the one --num-beams on the whole test split gives, and each record says which setting produced it."""
    data = head_files["seq2seq"]
    part = tmp_path / "p.h5"
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "2"]) == 0
    common = ["train", "--data", str(data), "--partition", str(part), "--method", "uniform_clients=2",
              "--rounds", "2", "--clients-per-round", "1", "--local-steps", "1", "--max-seq-length", "48",
              "--max-target-length", "8", "--num-beams", "2", "--quiet", "true", "--save-model", "false"]
    assert main(common + ["--out", str(tmp_path / "cheap"), "--eval-max-examples", "5", "--eval-num-beams", "1",
                          "--final-eval", "full"]) == 0
    assert main(common + ["--out", str(tmp_path / "plain")]) == 0
    cheap = json.loads((tmp_path / "cheap" / "result.json").read_text())
    plain = json.loads((tmp_path / "plain" / "result.json").read_text())
    first, last = cheap["history"]
    assert first["eval"] == {"examples": 5, "test_examples": N_TEST, "final": False, "num_beams": 1}
    assert last["eval"] == cheap["eval"] == {"examples": N_TEST, "test_examples": N_TEST, "final": True,
                                             "num_beams": 2}
    assert plain["eval"] == {"examples": N_TEST, "test_examples": N_TEST, "final": True, "num_beams": 2}
    assert cheap["value"] == plain["value"] and cheap["metrics"] == plain["metrics"]  # same model, same final setting
    assert 0 < cheap["evaluation_share"] < 1 and cheap["evaluation_s"] > 0
    assert "eval" not in cheap["metrics"]


def test_the_bar_shows_on_rank_0_of_a_terminal_unless_quiet(monkeypatch) -> None:
    import sys
    from types import SimpleNamespace

    from fednlp.run.evaluation import show_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert show_progress(SimpleNamespace(rank=0), quiet=False)
    assert not show_progress(SimpleNamespace(rank=0), quiet=True)
    assert not show_progress(SimpleNamespace(rank=1), quiet=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a log file: no carriage returns in it
    assert not show_progress(SimpleNamespace(rank=0), quiet=False)

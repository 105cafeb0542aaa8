"""The run directory: result.json read into a typed RunResult (one-line refusals), a block added under the run's
lock with every other key written back as it was, and a directory (a saved model) written atomically."""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

import pytest

from fednlp.errors import UserError
from fednlp.files import atomic_output
from fednlp.locks import RUN_LOCK_NAME
from fednlp.results.run_files import RunDirectory, RunWriter
from fednlp.results.run_result import RunResult

RECORD = {"task": "classification", "task_type": "text_classification", "dataset": "sst2", "model": "tiny-bert",
          "algorithm": "fedavg", "metric": "accuracy", "value": 0.75, "partition_method": "uniform_clients=6",
          "seed": 3, "config": {"batch_size": 8}, "clients_trained": [0, 2], "holdout_clients": [5],
          "history": [{"round": 1}], "dp": {"epsilon": 2.0}}


def _run(tmp_path: Path, record: dict) -> RunDirectory:
    writer = RunWriter(tmp_path / "run")
    writer.write_result(record)
    return RunDirectory(writer.path)


def test_result_is_typed_and_keeps_every_key(tmp_path: Path) -> None:
    result = _run(tmp_path, RECORD).result
    assert (result.task, result.algorithm, result.value, result.seed) == ("classification", "fedavg", 0.75, 3)
    assert result.clients_trained == (0, 2) and result.holdout_clients == (5,) and not result.centralized
    assert result.greater_is_better and result.config == {"batch_size": 8}
    assert result.block("dp", "epsilon") == 2.0 and result.block("audit", "mia_auc") is None
    assert result.record == RECORD


def test_a_sparse_record_reads_with_nothing_known(tmp_path: Path) -> None:
    result = _run(tmp_path, {"algorithm": "centralized"}).result
    assert result.centralized and result.value is None and result.clients_trained is None
    assert result.holdout_clients == () and result.metrics == {}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("task", "", "'task' must be a non-empty string"),
    ("value", "high", "'value' must be a number"),
    ("greater_is_better", "no", "'greater_is_better' must be true or false"),
    ("partition_method", 3, "'partition_method' must be a string or null"),
    ("config", [1], "'config' must be a JSON object"),
    ("clients_trained", [0, "b"], "'clients_trained' must be a list of client ids"),
])
def test_a_key_of_the_wrong_type_is_one_line_naming_file_and_key(tmp_path: Path, key: str, value, expected: str
                                                                   ) -> None:
    run = _run(tmp_path, {**RECORD, key: value})
    with pytest.raises(UserError, match=re.escape(str(run.result_path)) + ".*" + re.escape(expected)):
        run.result


def test_missing_directory_result_and_model_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="RUN_DIR .*nope does not exist"):
        RunDirectory(tmp_path / "nope", "RUN_DIR").result
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no result.json: is it a finished run"):
        RunDirectory(tmp_path / "empty").result
    with pytest.raises(UserError, match="has no model/"):
        RunDirectory(tmp_path / "empty").check_model()
    (tmp_path / "empty" / "result.json").write_text("[1, 2")
    with pytest.raises(UserError, match=r"result.json is not valid JSON \(.* at line 1\)"):
        RunDirectory(tmp_path / "empty").result


def test_add_block_writes_back_every_other_key_and_the_files(tmp_path: Path) -> None:
    run = _run(tmp_path, RECORD)
    run.add_block("audit", {"mia_auc": 0.5}, files={run.path / "audit.json": b"{}\n"})
    written = json.loads(run.result_path.read_text())
    assert written == {**RECORD, "audit": {"mia_auc": 0.5}}
    assert (run.path / "audit.json").read_bytes() == b"{}\n"
    assert sorted(p.name for p in run.path.iterdir()) == ["audit.json", "result.json"]  # no lock, no temporary
    run.add_block("audit", {"mia_auc": 0.6})  # a second audit replaces the block
    assert json.loads(run.result_path.read_text())["audit"] == {"mia_auc": 0.6}


def test_add_block_refuses_a_held_run_or_a_bad_result_and_writes_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path, RECORD)
    before = run.result_path.read_text()
    fd = os.open(run.path / RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT)  # another command (a --resume) holds the run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="in use by another fednlp command"):
            run.add_block("audit", {}, files={run.path / "audit.json": b"{}"})
    finally:
        os.close(fd)
    assert not (run.path / "audit.json").exists() and run.result_path.read_text() == before
    run.result_path.write_text("{oops")
    with pytest.raises(UserError, match="result.json is not valid JSON .*; the fairness block was not written"):
        run.add_block("fairness", {}, files={run.path / "fairness.json": b"{}"})
    assert not (run.path / "fairness.json").exists() and run.result_path.read_text() == "{oops"
    run.result_path.unlink()
    run.add_block("fairness", {}, files={run.path / "fairness.json": b"{}"}, missing_ok=True)
    assert (run.path / "fairness.json").exists() and not run.result_path.exists()


def test_read_metrics_names_a_bad_line(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    assert writer.read_metrics() == []
    writer.append_metrics({"round": 1, "accuracy": 0.5})
    assert writer.read_metrics() == [{"round": 1, "accuracy": 0.5}]
    with open(writer.metrics_path, "a") as f:
        f.write("{oops\n")
    with pytest.raises(UserError, match=r"metrics.jsonl:2: not valid JSON"):
        writer.read_metrics()


def test_parse_is_what_the_writers_check_before_writing() -> None:
    with pytest.raises(UserError, match="the run's record: 'metric' must be a non-empty string"):
        RunResult.parse({**RECORD, "metric": None}, "the run's record")


def test_a_directory_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with atomic_output(target) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_text("new")
        assert sorted(p.name for p in target.iterdir()) == ["old.bin"]  # readers see the old one meanwhile
    assert sorted(p.name for p in target.iterdir()) == ["new.bin"]
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "half.bin").write_text("half")
            raise RuntimeError("the save failed")
    assert sorted(p.name for p in target.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left


def test_config_is_the_runs_own_class_with_its_algorithms_options(tmp_path: Path) -> None:
    from fednlp.config import CentralizedConfig, TrainConfig, config_dict

    fedprox = TrainConfig(data="d.h5", partition="p.h5", method="uniform_clients=2", algorithm="fedprox",
                          algorithm_args={"mu": 0.1})
    writer = RunWriter(tmp_path / "fed")
    writer.write_config(config_dict(fedprox))
    writer.write_result({"algorithm": "fedprox"})
    config = RunDirectory(writer.path).config
    assert isinstance(config, TrainConfig) and config.algorithm_args == {"mu": 0.1}
    central = RunWriter(tmp_path / "central")
    central.write_config(config_dict(CentralizedConfig(data="d.h5", steps=2)))
    central.write_result({"algorithm": "centralized"})
    assert isinstance(RunDirectory(central.path).config, CentralizedConfig)
    assert RunDirectory(central.path).evaluation_config().max_seq_length == CentralizedConfig().max_seq_length

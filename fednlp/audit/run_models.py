"""A finished run opened for auditing: its config, record, data, task head, features and models.

The models an audit compares:
- the run's final model, RUN_DIR/model (save_pretrained);
- its initial model, rebuilt exactly as the run built it (open_session: torch.manual_seed(seed), then the
  task's build_model from the configured model), the default reference of the calibrated attack;
- another run's final model (--reference RUN_DIR), e.g. one trained without the members.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp.config import CentralizedConfig, RunConfig, TrainConfig, read_yaml_config
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.files import file_sha256
from fednlp.tasks.feature_cache import load_or_build_features
from fednlp.errors import UserError
from fednlp.run.device import pick_device
from fednlp.tasks.base import Features, Task
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.registry import resolve_task


@dataclass
class RunRecord:
    """What a run directory says about itself, read and checked without loading data or models."""

    run_dir: Path
    config: RunConfig
    result: dict[str, Any]

    @property
    def federated(self) -> bool:
        return isinstance(self.config, TrainConfig)

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


@dataclass
class OpenedRun:
    record: RunRecord
    data: DataFile
    task: Task
    features: Features
    device: torch.device


def read_run_record(run_dir: str | Path, flag: str = "RUN_DIR") -> RunRecord:
    """RUN_DIR's config.yaml and result.json, and its model/ checked to exist; one-line errors otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{flag} {run_dir} does not exist or is not a directory")
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise UserError(f"{flag} {run_dir} has no result.json: is it a finished run?")
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{result_path} is not valid JSON") from None
    if not isinstance(result, dict):
        raise UserError(f"{result_path} must hold a JSON object")
    if not (run_dir / "model").is_dir():
        raise UserError(f"{flag} {run_dir} has no model/ (the final model a finished run saves); was it trained "
                        "with --save-model false or before models were saved?")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{flag} {run_dir} has no config.yaml (the resolved config a run writes)")
    config_cls = CentralizedConfig if result.get("algorithm") == "centralized" else TrainConfig
    try:
        config = config_cls(**read_yaml_config(config_path, config_cls))
        config.validate()
    except UserError as exc:
        raise UserError(f"{config_path}: {exc}") from None
    except TypeError as exc:
        raise UserError(f"{config_path} does not hold a run's config: {exc}") from None
    if config_cls is TrainConfig and "clients_trained" not in result:
        raise UserError(f"{result_path} has no clients_trained (the clients that trained in some round): was the "
                        "run made before fednlp recorded them? Re-run it to audit it")
    return RunRecord(run_dir, config, result)


def open_run(record: RunRecord) -> OpenedRun:
    """The run's data file (checked unchanged since training), task head and features (cached)."""
    config = record.config
    if not Path(config.data).is_file():
        raise UserError(f"{record.run_dir}: its data file {config.data} does not exist")
    trained_on = record.result.get("data_sha256")
    if trained_on and file_sha256(str(config.data)) != trained_on:
        raise UserError(f"data file {config.data} changed since run {record.run_dir} was trained (its sha256 "
                        "differs from result.json's data_sha256): the audit would score other examples")
    data = read_data_file(config.data)
    task_cls = resolve_task(config.task, data.task_type, config.data)
    task = task_cls(data, load_tokenizer(config.model), config)
    features = load_or_build_features(task, config.data)
    return OpenedRun(record, data, task, features, pick_device(0, config.device))


def saved_model(run: OpenedRun, record: RunRecord | None = None) -> torch.nn.Module:
    """`record`'s final model (default: the audited run's) with the audited run's task head, in eval mode."""
    record = record or run.record
    try:
        model = run.task.build_model(str(record.model_dir))
    except (OSError, ValueError, RuntimeError) as exc:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"{record.model_dir} is not a loadable {run.task.name} model for data file "
                        f"{run.record.config.data}: {first_line}") from None
    return model.to(run.device).eval()


def initial_model(run: OpenedRun) -> torch.nn.Module:
    """The model the run started from: the same seed and build call as open_session."""
    torch.manual_seed(run.record.config.seed)
    return run.task.build_model(run.record.config.model).to(run.device).eval()


def reference_record(reference_dir: str | Path, audited: RunRecord) -> RunRecord:
    """--reference RUN_DIR: a finished run with a model/, of the same task type as the audited run."""
    record = read_run_record(reference_dir, flag="--reference")
    if record.result.get("task_type") != audited.result.get("task_type"):
        raise UserError(f"--reference {reference_dir} is a {record.result.get('task_type')} run; the audited run is "
                        f"{audited.result.get('task_type')}: the reference must score the same kind of loss")
    return record


def train_examples_of_clients(record: RunRecord, n_examples: int) -> list[np.ndarray]:
    """Every client's training examples (data-file indices) in the run's partition group."""
    from fednlp.federation.clients import read_clients

    config = record.config
    return read_clients(config.partition, config.method, n_examples, config.data).train

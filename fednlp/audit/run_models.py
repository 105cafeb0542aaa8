"""A finished run opened for auditing: its config, record, data, task head, features and models.

The models an audit compares:
- the run's final model, RUN_DIR/model (save_pretrained);
- its initial model, rebuilt exactly as the run built it (open_session: torch.manual_seed(seed), then the
  task's build_model from the configured model), the default reference of the calibrated attack;
- another run's final model (--reference RUN_DIR), e.g. one trained without the members.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp.config import TrainConfig
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.errors import UserError
from fednlp.files import file_sha256
from fednlp.results.run_files import RunDirectory
from fednlp.run.device import pick_device
from fednlp.tasks.base import Features, Task
from fednlp.tasks.feature_cache import load_or_build_features
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.registry import resolve_task


@dataclass
class OpenedRun:
    directory: RunDirectory
    data: DataFile
    task: Task
    features: Features
    device: torch.device

    @property
    def config(self) -> Any:
        return self.directory.config

    @property
    def federated(self) -> bool:
        return not self.directory.result.centralized


def read_audited_run(run_dir: str | Path, what: str = "RUN_DIR") -> RunDirectory:
    """RUN_DIR's result.json, model/ and config.yaml, checked in that order without loading data or models."""
    run = RunDirectory(run_dir, what)
    result = run.result
    run.check_model()
    config = run.config  # read and checked before any data or model
    if isinstance(config, TrainConfig) and result.clients_trained is None:
        raise UserError(f"{run.result_path} has no clients_trained (the clients that trained in some round): was "
                        "the run made before fednlp recorded them? Re-run it to audit it")
    return run


def open_run(directory: RunDirectory) -> OpenedRun:
    """The run's data file (checked unchanged since training), task head and features (cached)."""
    config = directory.config
    if not Path(config.data).is_file():
        raise UserError(f"{directory}: its data file {config.data} does not exist")
    trained_on = directory.result.data_sha256
    if trained_on and file_sha256(str(config.data)) != trained_on:
        raise UserError(f"data file {config.data} changed since run {directory} was trained (its sha256 "
                        "differs from result.json's data_sha256): the audit would score other examples")
    data = read_data_file(config.data)
    task_cls = resolve_task(config.task, data.task_type, config.data)
    task = task_cls(data, load_tokenizer(config.model), config)
    features = load_or_build_features(task, config.data)
    return OpenedRun(directory, data, task, features, pick_device(0, config.device))


def saved_model(run: OpenedRun, directory: RunDirectory | None = None) -> torch.nn.Module:
    """`directory`'s final model (default: the audited run's) with the audited run's task head, in eval mode."""
    model_dir = (directory or run.directory).model_dir
    try:
        model = run.task.build_model(str(model_dir))
    except (OSError, ValueError, RuntimeError) as exc:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"{model_dir} is not a loadable {run.task.name} model for data file "
                        f"{run.config.data}: {first_line}") from None
    return model.to(run.device).eval()


def initial_model(run: OpenedRun) -> torch.nn.Module:
    """The model the run started from: the same seed and build call as open_session."""
    torch.manual_seed(run.config.seed)
    return run.task.build_model(run.config.model).to(run.device).eval()


def reference_run(reference_dir: str | Path, audited: RunDirectory) -> RunDirectory:
    """--reference RUN_DIR: a finished run with a model/, trained with the same task head as the audited run."""
    reference = read_audited_run(reference_dir, what="--reference")
    ours, theirs = run_task(audited), run_task(reference)
    if theirs != ours:  # the heads, not the data files: an LM and a classifier may read the same data file
        raise UserError(f"--reference {reference_dir} trained --task {theirs}; the audited run {audited} trained "
                        f"--task {ours}: expected a --task {ours} run, whose model scores the same kind of loss")
    return reference


def run_task(directory: RunDirectory) -> str:
    """The task head a run trained (--task): result.json's `task`, else config.yaml's, else the head its data
    file's task_type implies (how the run resolved a missing --task)."""
    if directory.result.task:
        return directory.result.task
    config = directory.config
    if config.task:
        return config.task
    return resolve_task(None, directory.result.task_type or read_data_file(config.data).task_type, config.data).name


def run_clients(directory: RunDirectory, n_examples: int) -> Any:
    """The clients of the run's partition group (ClientData: every client's training examples, data-file
    indices)."""
    from fednlp.federation.clients import read_clients

    config = directory.config
    return read_clients(config.partition, config.method, n_examples, config.data)

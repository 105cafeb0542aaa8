"""A run directory: the files a run writes and every later command reads, named and handled in one place.

    RUN_DIR/config.yaml    the resolved config (fednlp.config.config_sections)
    RUN_DIR/result.json    the finished run's record (fednlp.results.run_result.RunResult), and the blocks
                           other commands add to it (audit, fairness)
    RUN_DIR/metrics.jsonl  one line per round; evaluation rounds carry the metrics
    RUN_DIR/clients.csv    the per-client evaluations (--eval-clients)
    RUN_DIR/model/         the final model and its tokenizer (save_pretrained)
    RUN_DIR/tensorboard/   TensorBoard's event files (--report-to tensorboard)

`RunDirectory` reads them with one-line errors (the audit, the fairness report and the leaderboard);
`RunWriter`, held by rank 0 of a run only, writes them. Every file is written atomically (fednlp.files);
a command adding a block to a finished run's result.json holds the run directory's lock (fednlp.locks)
meanwhile, so it never overwrites a run still writing there (a --resume).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from fednlp.errors import UserError
from fednlp.files import atomic_write_bytes, atomic_write_text
from fednlp.results.run_result import RunResult

CONFIG, RESULT, METRICS, CLIENTS, MODEL = "config.yaml", "result.json", "metrics.jsonl", "clients.csv", "model"
TENSORBOARD = "tensorboard"


class RunDirectory:
    """One run directory, read. `what` names it in errors (e.g. "RUN_DIR", "--reference")."""

    def __init__(self, path: str | os.PathLike, what: str = "run directory"):
        self.path, self.what = Path(path), what
        self.config_path, self.result_path = self.path / CONFIG, self.path / RESULT
        self.metrics_path, self.clients_path, self.model_dir = self.path / METRICS, self.path / CLIENTS, self.path / MODEL
        self.tensorboard_dir = self.path / TENSORBOARD

    def __str__(self) -> str:
        return str(self.path)

    def check_exists(self) -> None:
        if not self.path.is_dir():
            raise UserError(f"{self.what} {self.path} does not exist or is not a directory")

    def check_model(self) -> Path:
        """model/, or the one line saying why a run has none."""
        self.check_exists()
        if not self.model_dir.is_dir():
            raise UserError(f"{self.what} {self.path} has no model/ (the final model a finished run saves); was it "
                            "trained with --save-model false or before models were saved?")
        from fednlp.tasks.models import check_saved_weights

        check_saved_weights(self.model_dir)  # audit and fairness: a cut weights file is refused before any work
        return self.model_dir

    @cached_property
    def result(self) -> RunResult:
        """result.json, checked (fednlp.results.run_result)."""
        self.check_exists()
        if not self.result_path.is_file():
            raise UserError(f"{self.what} {self.path} has no result.json: is it a finished run?")
        return RunResult.parse(read_json(self.result_path), self.result_path)

    @cached_property
    def config(self) -> Any:
        """config.yaml as the run's own config class (TrainConfig, or CentralizedConfig for the baseline),
        validated: every option the run was made with, its algorithm's own included (as --resume reads it)."""
        from fednlp.config import CentralizedConfig, TrainConfig, build_config, read_yaml_config

        config_cls = CentralizedConfig if self.result.centralized else TrainConfig
        self._check_config_file()
        extra = None
        if config_cls is TrainConfig:
            from fednlp.algorithms.registry import algorithm_option_fields

            extra = algorithm_option_fields()
        try:
            config = build_config(config_cls, read_yaml_config(self.config_path, config_cls, extra), extra)
            config.validate()
        except UserError as exc:
            raise UserError(f"{self.config_path}: {exc}") from None
        except TypeError as exc:
            raise UserError(f"{self.config_path} does not hold a run's config: {exc}") from None
        return config

    def evaluation_config(self) -> Any:
        """The options every run has (max length, batch size, device, precision...), as a RunConfig; those of
        federated runs only (rounds, algorithm...) are ignored, so any run's config.yaml will do."""
        from fednlp.config import RunConfig

        self._check_config_file()
        try:
            raw = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{self.config_path} is not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{self.config_path} must hold a mapping of option: value")
        # A section (`augment: {...}`) is a training option: evaluating never needs it.
        known = {f.name for f in dataclasses.fields(RunConfig) if "section" not in f.metadata}
        try:
            config = RunConfig(**{k: v for k, v in raw.items() if k in known and v is not None})
            config.validate()
        except UserError as exc:
            raise UserError(f"{self.config_path}: {exc}") from None
        return config

    def _check_config_file(self) -> None:
        if not self.config_path.is_file():
            raise UserError(f"{self.what} {self.path} has no config.yaml (the resolved config a run writes)")

    def read_metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's records, in order (none without the file)."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for lineno, line in enumerate(self.metrics_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{self.metrics_path}:{lineno}: not valid JSON ({e.msg})") from None
        return records

    def add_block(self, name: str, block: dict[str, Any], files: Mapping[Path, bytes] | None = None,
                  missing_ok: bool = False) -> None:
        """result.json gains (or replaces) the key `name`, every other key written back as it was; `files`
        (e.g. the report the block summarises) are written with it. Under the run directory's lock, and
        result.json is read before anything is written: a bad one leaves every file as it was. `missing_ok`:
        a directory without result.json gets the files only."""
        from fednlp.locks import RUN_LOCK_NAME, acquire

        lock = acquire(self.path / RUN_LOCK_NAME, f"run directory {self.path}")
        try:
            record = None
            if not (missing_ok and not self.result_path.is_file()):
                record = read_json(self.result_path, f"; the {name} block was not written")
                if not isinstance(record, dict):
                    raise UserError(f"{self.result_path} must hold a JSON object; the {name} block was not written")
            for path, data in (files or {}).items():
                atomic_write_bytes(path, data)
            if record is not None:
                record[name] = block
                atomic_write_text(self.result_path, result_text(record))
        finally:
            lock.release()


class RunWriter(RunDirectory):
    """Writes one run directory (created here); only rank 0 of a run holds one."""

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__(run_dir, "--out")
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=True))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One evaluation, one line; the file is closed (flushed) at once so a crash loses nothing before it."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """On resume: exactly the evaluations up to the checkpoint (later lines belong to lost rounds)."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def append_clients(self, round_idx: int, client_metrics: dict[int, dict[str, float]], metric: str) -> None:
        """clients.csv: one line per evaluated client and evaluation (client, round, examples, metric, loss)."""
        new = not self.clients_path.exists()
        with open(self.clients_path, "a", encoding="utf-8") as f:
            if new:
                f.write(f"client,round,examples,{metric},loss\n")
            for client, m in sorted(client_metrics.items()):
                loss = "" if m.get("loss") is None else repr(m["loss"])
                f.write(f"{client},{round_idx},{m['examples']},{m[metric]!r},{loss}\n")

    def truncate_clients(self, completed_rounds: int) -> None:
        """On resume: drop clients.csv lines of rounds after the checkpoint (they belong to lost rounds)."""
        if not self.clients_path.exists():
            return
        lines = self.clients_path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",")[1]) <= completed_rounds]
        atomic_write_text(self.clients_path, "".join(kept))

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_text(self.result_path, result_text(result))


def result_text(record: dict[str, Any]) -> str:
    """result.json's text: sorted keys, two-space indent, a final newline (diffs of records stay small)."""
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def read_json(path: Path, consequence: str = "") -> Any:
    """A JSON file's value; one line naming the file (and `consequence`) if it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}){consequence}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc.__class__.__name__})"
                        f"{consequence}") from None

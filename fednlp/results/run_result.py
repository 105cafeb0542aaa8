"""result.json, the record a finished run leaves, read into one typed `RunResult`.

Train and centralized write it (fednlp/run/session.py: `base_result` and `finish`, checked here before it is
written), and the leaderboard, the audit and the fairness report read it. A record may lack any key (a run
made by an older fednlp, or written by hand); a key that is there must have its type, or the record is
refused in one line naming the file and the key. Every key, known or not, is kept in `record`: a command
adding its block (`RunDirectory.add_block`) writes back exactly what it read, plus the block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fednlp.errors import UserError

#: Keys that are non-empty strings where present.
TEXT_KEYS = ("task", "task_type", "dataset", "model", "algorithm", "metric", "metric_scale", "data_sha256",
             "partition_sha256")
#: Keys that are numbers (or null) where present.
NUMBER_KEYS = ("value", "wall_time_s", "local_steps_total", "local_examples_total")


@dataclass(frozen=True)
class RunResult:
    """A run's result.json: the keys fednlp's readers use, typed (None where the record lacks them), and the
    whole record. `value` is the primary metric of the last evaluation (None: the run evaluated nothing)."""

    record: dict[str, Any]
    task: str | None = None  # the head (--task), e.g. classification
    task_type: str | None = None  # the data file's task_type
    dataset: str | None = None
    model: str | None = None
    algorithm: str | None = None  # "centralized" for the baseline
    metric: str | None = None  # the task's primary metric
    value: float | None = None
    greater_is_better: bool = True
    metric_scale: str | None = None  # "fraction" (None) or "percent", for records written by other tools
    partition_method: str | None = None  # the partition group; None for a centralized run
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, as config.yaml holds it
    data_sha256: str | None = None
    partition_sha256: str | None = None
    clients_trained: tuple[int, ...] | None = None  # clients that trained in some round (federated runs)
    holdout_clients: tuple[int, ...] = ()  # clients kept out of every cohort
    local_steps_total: float | None = None
    local_examples_total: float | None = None  # rows trained on (older records: none)
    metrics: dict[str, Any] = field(default_factory=dict)  # every metric of the last evaluation
    wall_time_s: float | None = None

    @property
    def centralized(self) -> bool:
        return self.algorithm == "centralized"

    @classmethod
    def parse(cls, record: Any, source: Any) -> RunResult:
        """The record checked and typed; `source` (the file) names it in errors."""
        if not isinstance(record, dict):
            raise UserError(f"{source}: expected a JSON object, found {type(record).__name__}")
        for key in TEXT_KEYS:
            if key in record and not (isinstance(record[key], str) and record[key]):
                raise UserError(f"{source}: '{key}' must be a non-empty string, found {record[key]!r}")
        if record.get("partition_method") is not None and not isinstance(record["partition_method"], str):
            raise UserError(f"{source}: 'partition_method' must be a string or null, found {record['partition_method']!r}")
        for key in NUMBER_KEYS:
            if record.get(key) is not None and not is_number(record[key]):
                raise UserError(f"{source}: '{key}' must be a number, found {record[key]!r}")
        if not isinstance(record.get("greater_is_better", True), bool):
            raise UserError(f"{source}: 'greater_is_better' must be true or false, found {record['greater_is_better']!r}")
        for key in ("config", "metrics"):
            if not isinstance(record.get(key) or {}, dict):
                raise UserError(f"{source}: '{key}' must be a JSON object, found {type(record[key]).__name__}")
        return cls(
            record=record,
            **{key: record.get(key) for key in (*TEXT_KEYS, *NUMBER_KEYS, "partition_method")},
            greater_is_better=record.get("greater_is_better", True),
            seed=record.get("seed"),
            config=dict(record.get("config") or {}),
            clients_trained=_clients(record, "clients_trained", source),
            holdout_clients=_clients(record, "holdout_clients", source) or (),
            metrics=dict(record.get("metrics") or {}),
        )

    def block(self, *keys: str) -> Any:
        """The value at a path of keys, e.g. block("dp", "epsilon"); None where any key is missing."""
        value: Any = self.record
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value


def _clients(record: dict[str, Any], key: str, source: Any) -> tuple[int, ...] | None:
    clients = record.get(key)
    if clients is None:
        return None
    if not isinstance(clients, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in clients):
        raise UserError(f"{source}: '{key}' must be a list of client ids, found {clients!r}")
    return tuple(clients)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)

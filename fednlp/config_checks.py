"""Every numeric option checked in one place: a number of the right type, finite, and in its range.

One walker over a dataclass's fields (the run configs of fednlp/config.py, PartitionParams, ReaderOptions),
so a new option is checked the day it is added: NaN and infinity are refused for every float, every
integer must fit 64 bits, and RANGES below says what else an option allows (an option not
listed there must be 0 or more: a new option is never left unchecked). Without this, `--lr nan` or `--seed -1` reached torch or numpy and
ended in a traceback.
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fednlp.errors import UserError
from fednlp.options import flat_name


@dataclass(frozen=True)
class Range:
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    text: str = "be finite"

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


POSITIVE = Range(0, low_open=True, text="be positive")
NON_NEGATIVE = Range(0, text="be 0 or more")
FRACTION = Range(0, 1, high_open=True, text="be in [0, 1)")
OPEN_FRACTION = Range(0, 1, low_open=True, high_open=True, text="lie strictly between 0 and 1")
ANY = Range()
SEED = Range(0, 2**32 - 1, text="be an integer in [0, 2**32 - 1]")  # sklearn and numpy's legacy seeding stop there
INT64 = 2**63 - 1

#: What each numeric option allows beyond being finite, by field name (the same name in every config).
RANGES: dict[str, Range] = {
    # runs (RunConfig, TrainConfig, CentralizedConfig)
    "max_seq_length": POSITIVE, "batch_size": POSITIVE, "eval_batch_size": POSITIVE,
    "eval_max_examples": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "max_grad_norm": POSITIVE,
    "seed": SEED, "eval_every": POSITIVE, "freeze_layers": NON_NEGATIVE, "doc_stride": POSITIVE,
    "max_answer_length": POSITIVE, "max_target_length": POSITIVE, "num_beams": POSITIVE,
    "rounds": POSITIVE, "clients_per_round": POSITIVE, "local_epochs": POSITIVE, "local_steps": POSITIVE,
    "server_lr": POSITIVE, "mu": NON_NEGATIVE, "q": NON_NEGATIVE, "server_momentum": FRACTION, "beta1": FRACTION, "beta2": FRACTION,
    "tau": POSITIVE, "checkpoint_every": POSITIVE, "eval_clients_every": POSITIVE, "activity_power": NON_NEGATIVE, "periods": POSITIVE,
    "rounds_per_period": POSITIVE, "storage_limit": POSITIVE, "holdout_clients": FRACTION, "epochs": POSITIVE, "steps": POSITIVE, "max_restarts": NON_NEGATIVE,
    # partitions (PartitionParams)
    "n_clients": Range(1, text="be at least 1"), "alpha": POSITIVE, "beta": POSITIVE,
    "clusters": Range(1, text="be at least 1"), "labels_per_client": Range(1, text="be at least 1"),
    # data prepare (ReaderOptions): columns are Python indices, so -1 is the last one
    "test_fraction": OPEN_FRACTION, "token_column": ANY, "tag_column": ANY,
}
#: An option not listed above: no count, rate, size or seed of fednlp is negative.
DEFAULT = NON_NEGATIVE


def check_numbers(options: Any) -> None:
    """Raise UserError for the first numeric field of dataclass `options` (a section's fields too: TrainConfig's
    dp) that is not a number in its range. Errors name the field's flag (fednlp/options.py: --clients for
    n_clients, --dp-epsilon for dp.epsilon)."""
    hints = typing.get_type_hints(type(options))
    for f in fields(options):
        value = getattr(options, f.name)
        if "section" in f.metadata:
            check_numbers(value)
            continue
        kind = _numeric_kind(hints[f.name])
        if kind is None or value is None:
            continue
        flag = f"--{flat_name(type(options), f).replace('_', '-')}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        if kind is int and not float(value).is_integer():
            raise UserError(f"{flag} must be an integer, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        if kind is int and abs(value) > INT64:  # numpy and torch take 64-bit integers
            raise UserError(f"{flag} {value} is out of range (at most {INT64} in magnitude)")
        allowed = RANGES.get(flat_name(type(options), f), RANGES.get(f.name, DEFAULT))
        if value not in allowed:
            raise UserError(f"{flag} must {allowed.text}, got {value}")


def check_output_path(path: str | os.PathLike | None, flag: str = "--out", file: str | None = None) -> None:
    """Refuse an output path that cannot be created, before any work: its nearest existing ancestor must
    be a writable directory (the write itself still reports what this cannot foresee). `file` says what
    file the path must name (e.g. "the data file to write (.h5)"); None: it names a directory."""
    if path is None:
        return
    if str(path).strip() == "":
        raise UserError(f"{flag} is empty; expected a path")
    path = Path(path)
    if file is not None and (path.is_dir() or path.name in ("", ".", "..")):
        raise UserError(f"{flag} {path} is a directory; expected the path of {file}")
    ancestor = next((p for p in [path.parent, *path.parent.parents] if p.exists() or p.is_symlink()), Path("."))
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path} cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path} cannot be created: directory {ancestor} is not writable")


def _numeric_kind(hint: Any) -> type | None:
    """int or float for `int`, `float`, `int | None`, ...; None for every other field."""
    args = typing.get_args(hint) or (hint,)
    kinds = [a for a in args if a is not type(None)]
    if len(kinds) == 1 and kinds[0] in (int, float):
        return kinds[0]
    return None


def check_run_config(config: Any) -> None:
    """What RunConfig.validate asks of every run config: its numbers, and an --out that can be created."""
    check_numbers(config)
    check_output_path(config.out)

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
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from fednlp.errors import UserError
from fednlp.options import flat_name, flat_options


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
    # DP (DPOptions, by flat name): 0 and -5 get the same words, as DPOptions.validate would say them
    "dp_epsilon": POSITIVE, "dp_noise_cohort_size": POSITIVE, "dp_clip_init": POSITIVE, "dp_clip_lr": POSITIVE,
    "dp_delta": OPEN_FRACTION, "dp_target_quantile": OPEN_FRACTION,
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


@dataclass(frozen=True)
class Context:
    """Where an option is read: only while option `by` (a flat name) has a value for which `holds` is true, as
    `text` says. `later`: `by` may be left to the data file (--task: None until the data is read), so an
    undecided `by` refuses nothing and the check runs again once the data has decided it."""

    by: str
    holds: Callable[[Any], bool]
    text: str
    later: bool = False


def _one_of(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value in values


_DP_ON = Context("dp", lambda mechanism: mechanism != "none", "--dp client or --dp sample")
_ADAPTIVE = Context("dp_clip", lambda clip: str(clip).strip().lower() == "adaptive", "--dp-clip adaptive")
_QA = Context("task", _one_of("qa"), "--task qa", later=True)
_SEQ2SEQ = Context("task", _one_of("seq2seq"), "--task seq2seq", later=True)
_CONTINUAL = Context("continual", bool, "--continual true")
_AUGMENT = Context("augment", lambda method: method != "none", "--augment counterfactual")

#: Options read only in the context of another option's value, by flat name: an option given away from its
#: context (a value other than its default) is refused ("--X needs --Y"), never silently ignored while
#: config.yaml records it.
#: Options are checked in this order, each one's contexts in order (--dp-clip-init: --dp first, then --dp-clip
#: adaptive). Refused elsewhere, with words of their own: an algorithm's options under another algorithm
#: (fednlp/algorithms/options.py), a partition method's parameters under another method
#: (fednlp/data_partition/params.py).
CONTEXTS: dict[str, tuple[Context, ...]] = {
    "cache_frozen": (Context("freeze_layers", lambda given: given is not None, "--freeze-layers K"),),
    "dp_release": (_DP_ON,),  # first: a release of nothing says more than the options it would have used
    "activity_power": (Context("sampler", _one_of("activity"), "--sampler activity"),),
    "frozen_cache_dtype": (Context("cache_frozen", bool, "--cache-frozen true"),),
    "cls_only_last_block": (Context("task", _one_of("classification"), "--task classification", later=True),),
    "eval_clients_every": (Context("eval_clients", lambda given: given is not None, "--eval-clients"),),
    "periods": (_CONTINUAL,), "rounds_per_period": (_CONTINUAL,), "storage_limit": (_CONTINUAL,),
    "augment_fraction": (_AUGMENT,), "augment_pairs": (_AUGMENT,),
    "dp_clip": (_DP_ON,), "dp_noise_multiplier": (_DP_ON,), "dp_epsilon": (_DP_ON,), "dp_delta": (_DP_ON,),
    "dp_accept_sampler_bound": (_DP_ON,),
    "dp_noise_cohort_size": (_DP_ON, Context("dp", _one_of("client"), "--dp client")),
    "dp_grad_sample": (_DP_ON, Context("dp", _one_of("sample"), "--dp sample")),
    "dp_clip_init": (_DP_ON, _ADAPTIVE), "dp_target_quantile": (_DP_ON, _ADAPTIVE), "dp_clip_lr": (_DP_ON, _ADAPTIVE),
    "doc_stride": (_QA,), "max_answer_length": (_QA,),
    "max_target_length": (_SEQ2SEQ,), "num_beams": (_SEQ2SEQ,), "eval_num_beams": (_SEQ2SEQ,),
}


def check_context(config: Any, decided: dict[str, Any] | None = None) -> None:
    """Raise UserError for the first option of `config` (a dataclass of fednlp/options.py fields, sections
    flat) given a value other than its default outside its context (CONTEXTS). `decided`: values the data has
    decided since (the task of a run whose --task was left to the data file)."""
    cls = type(config)
    values, defaults = {}, {}
    for o in flat_options(cls):
        value = config
        for name in o.path:
            value = getattr(value, name)
        values[o.name] = value
        defaults[o.name] = None if o.field.default is MISSING else o.field.default
    values.update(decided or {})
    for name, contexts in CONTEXTS.items():
        if name not in values or values[name] == defaults[name]:
            continue
        for context in contexts:
            by = values.get(context.by)
            if context.by not in values or (context.later and by is None) or context.holds(by):
                continue
            given = _flag(name) if values[name] is True else _shown(name, values[name])  # a bool flag alone: true
            raise UserError(f"{given} needs {context.text} (this run has {_shown(context.by, by)}); leave it out "
                            f"or change {_flag(context.by)}")


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _shown(name: str, value: Any) -> str:
    """An option as the user would type it: `--sampler uniform`, `--continual false`; `no --eval-clients`."""
    if value is None:
        return f"no {_flag(name)}"
    if isinstance(value, bool):
        return f"{_flag(name)} {'true' if value else 'false'}"
    return f"{_flag(name)} {value}"


def check_run_config(config: Any) -> None:
    """What RunConfig.validate asks of every run config: its numbers, every option in its context, and an
    --out that can be created."""
    check_numbers(config)
    check_context(config)
    check_output_path(config.out)

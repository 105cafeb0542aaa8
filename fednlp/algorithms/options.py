"""An algorithm's own options: a frozen dataclass whose fields become flags and YAML keys of `fednlp train`
(fednlp/algorithms/registry.py collects them; `parse_options` turns the run's values into the instance)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from fednlp.errors import UserError

P = TypeVar("P")


def algorithm_option(help: str, **kwargs: Any) -> Any:
    """A field of an algorithm's Options: its help text is the flag's."""
    return dataclasses.field(metadata={"help": help}, **kwargs)


def parse_options(given: dict[str, Any], options_cls: type[P] | None, algorithm: str) -> P | None:
    """The algorithm's options from the run's `algorithm_args` (flags and YAML keys of every registered
    algorithm's options): refuse one this algorithm does not take, require those without a default, and
    check every number (finite, in range) like the run's own options."""
    from fednlp.config_checks import check_numbers

    fields = {f.name: f for f in dataclasses.fields(options_cls)} if options_cls is not None else {}
    for key, value in given.items():
        if key not in fields and value is not None:
            takes = ", ".join(f"--{k.replace('_', '-')}" for k in sorted(fields)) or "no options of its own"
            raise UserError(f"--{key.replace('_', '-')} is not an option of --algorithm {algorithm} (it takes {takes})")
    if options_cls is None:
        return None
    values = {k: v for k, v in given.items() if k in fields and v is not None}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            raise UserError(f"--algorithm {algorithm} needs --{name.replace('_', '-')} ({f.metadata.get('help', name)})")
    options = options_cls(**values)
    check_numbers(options)
    return options

"""Algorithms and client samplers by name: `@register_algorithm(name)` / `@register_sampler(name)` here, or
the `fednlp.algorithms` / `fednlp.samplers` entry-point groups for packages installed beside fednlp.
No if/elif on names anywhere else."""

from __future__ import annotations

from collections.abc import Collection
from typing import Callable

from fednlp.algorithms.interface import Algorithm
from fednlp.errors import UserError
from fednlp.registry import Registry

ALGORITHMS: Registry[type[Algorithm]] = Registry(
    "algorithm", "--algorithm", group="fednlp.algorithms", base=Algorithm,
    builtins=("fednlp.algorithms.fedavg", "fednlp.algorithms.fedavgm", "fednlp.algorithms.fedprox",
              "fednlp.algorithms.fedopt", "fednlp.algorithms.qfedavg"),
)


def register_algorithm(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    return ALGORITHMS.register(name)


def load_algorithms() -> dict[str, type[Algorithm]]:
    return ALGORITHMS.load()


def get_algorithm(name: str) -> type[Algorithm]:
    return ALGORITHMS.get(name)


def algorithm_option_fields(reserved: Collection[str] = ()) -> dict[str, tuple[type, str]]:
    """name -> (type, help) of every registered algorithm's Options fields: the flags and YAML keys they add
    to `fednlp train`. A name several algorithms declare must have one type (their helps are joined).
    `reserved`: the command's own option names (underscored); an algorithm declaring one is refused, naming
    the algorithm and its module, since the clash would otherwise break every `fednlp train`."""
    import dataclasses
    import typing

    found: dict[str, tuple[type, str]] = {}
    for algorithm, cls in sorted(load_algorithms().items()):
        if cls.Options is None:
            continue
        hints = typing.get_type_hints(cls.Options)
        for f in dataclasses.fields(cls.Options):
            if f.name in reserved:
                flag = f"--{f.name.replace('_', '-')}"
                raise UserError(f"algorithm {algorithm} ({cls.__module__}) declares option {flag}, which fednlp train "
                                f"already has; rename that field of its Options ({cls.Options.__name__})")
            kind, text = hints[f.name], f.metadata.get("help", f"option of {algorithm}")
            if f.name in found:
                if found[f.name][0] is not kind:
                    raise UserError(f"algorithm {algorithm} declares option {f.name} as {kind.__name__}, another "
                                    f"algorithm as {found[f.name][0].__name__}")
                if text not in found[f.name][1]:
                    text = f"{found[f.name][1]}; {text}"
            found[f.name] = (kind, text)
    return found

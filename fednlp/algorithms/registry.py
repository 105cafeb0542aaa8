"""Algorithms by name: `@register_algorithm(name)` here, or the `fednlp.algorithms` entry-point group
for packages installed beside fednlp. No if/elif on names anywhere else."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

from fednlp.algorithms.base import Algorithm
from fednlp.errors import UserError

ALGORITHMS: dict[str, type[Algorithm]] = {}
ENTRY_POINT_GROUP = "fednlp.algorithms"


def register_algorithm(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    def decorate(cls: type[Algorithm]) -> type[Algorithm]:
        if name in ALGORITHMS and ALGORITHMS[name] is not cls:
            raise ValueError(f"algorithm {name!r} is already registered by {ALGORITHMS[name].__module__}")
        cls.name = name
        ALGORITHMS[name] = cls
        return cls

    return decorate


def load_algorithms() -> dict[str, type[Algorithm]]:
    """Built-ins plus every plugin of the entry-point group (importing a plugin registers it)."""
    import fednlp.algorithms.fedavg  # noqa: F401

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Algorithm) and entry.name not in ALGORITHMS:
            register_algorithm(entry.name)(loaded)
    return ALGORITHMS


def get_algorithm(name: str) -> type[Algorithm]:
    algorithms = load_algorithms()
    if name not in algorithms:
        raise UserError(f"--algorithm {name!r} is not a known algorithm; known: {', '.join(sorted(algorithms))}")
    return algorithms[name]

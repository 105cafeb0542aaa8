"""Algorithms and client samplers by name: `@register_algorithm(name)` / `@register_sampler(name)` here, or
the `fednlp.algorithms` / `fednlp.samplers` entry-point groups for packages installed beside fednlp.
No if/elif on names anywhere else."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from fednlp.algorithms.base import Algorithm
from fednlp.errors import UserError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Name -> class, filled by a decorator (built-ins, inline plugins) and by an entry-point group
    (installed plugins). Duplicates are refused, as Opacus' `register_accountant` does."""

    def __init__(self, kind: str, option: str, base: type, group: str, builtins: tuple[str, ...]):
        self.kind, self.option, self.base, self.group, self.builtins = kind, option, base, group, builtins
        self.entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(cls: T) -> T:
            if name in self.entries and self.entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self.entries[name].__module__}")
            cls.name = name
            self.entries[name] = cls
            return cls

        return decorate

    def load(self) -> dict[str, T]:
        """Built-ins plus every plugin of the entry-point group (importing a plugin may register it)."""
        for module in self.builtins:
            importlib.import_module(module)
        for entry in entry_points(group=self.group):
            loaded = entry.load()
            if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
                raise UserError(f"entry point {entry.name} = {entry.value} of group {self.group} is not a subclass "
                                f"of {self.base.__module__}.{self.base.__name__}")
            if self.entries.get(entry.name) is not loaded:
                try:
                    self.register(entry.name)(loaded)
                except ValueError as exc:
                    raise UserError(f"entry point {entry.name} = {entry.value} of group {self.group}: {exc}") from None
        return self.entries

    def get(self, name: str) -> T:
        known = self.load()
        if name not in known:
            raise UserError(f"{self.option} {name!r} is not a known {self.kind}; known: {', '.join(sorted(known))}")
        return known[name]


ALGORITHMS: Registry[type[Algorithm]] = Registry(
    "algorithm", "--algorithm", Algorithm, "fednlp.algorithms",
    ("fednlp.algorithms.fedavg", "fednlp.algorithms.fedavgm", "fednlp.algorithms.fedprox", "fednlp.algorithms.fedopt",
     "fednlp.algorithms.qfedavg"),
)


def register_algorithm(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    return ALGORITHMS.register(name)


def load_algorithms() -> dict[str, type[Algorithm]]:
    return ALGORITHMS.load()


def get_algorithm(name: str) -> type[Algorithm]:
    return ALGORITHMS.get(name)


def algorithm_option_fields() -> dict[str, tuple[type, str]]:
    """name -> (type, help) of every registered algorithm's Options fields: the flags and YAML keys they add
    to `fednlp train`. A name several algorithms declare must have one type (their helps are joined)."""
    import dataclasses
    import typing

    found: dict[str, tuple[type, str]] = {}
    for algorithm, cls in sorted(load_algorithms().items()):
        if cls.Options is None:
            continue
        hints = typing.get_type_hints(cls.Options)
        for f in dataclasses.fields(cls.Options):
            kind, text = hints[f.name], f.metadata.get("help", f"option of {algorithm}")
            if f.name in found:
                if found[f.name][0] is not kind:
                    raise UserError(f"algorithm {algorithm} declares option {f.name} as {kind.__name__}, another "
                                    f"algorithm as {found[f.name][0].__name__}")
                if text not in found[f.name][1]:
                    text = f"{found[f.name][1]}; {text}"
            found[f.name] = (kind, text)
    return found

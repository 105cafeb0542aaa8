"""One small registry for every kind of named plug-in: algorithms, client samplers, task heads, partition
methods and dataset readers. Name -> entry; a second entry under a taken name is refused (as Opacus'
`register_accountant` does); an unknown name is one line listing the known ones; an entry-point group, if
given, lets packages installed beside fednlp add entries with no change to fednlp.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from fednlp.errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, option: str, builtins: tuple[str, ...] = (), group: str | None = None,
                 base: type | None = None):
        """`builtins`: modules whose import registers the built-in entries (imported on first use); `group`:
        the entry-point group of installed plugins. With a `base`, an entry point names a subclass of it,
        registered under the entry point's name; without one (entries that are not classes: readers,
        partition methods), it names a module or function whose import registers the entry point's name
        with the registry's decorator."""
        self.kind, self.option, self.builtins, self.group, self.base = kind, option, builtins, group, base
        self.entries: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, entry: T) -> T:
        if name in self.entries and self.entries[name] is not entry:
            where = getattr(self.entries[name], "__module__", "another module")
            raise ValueError(f"{self.kind} {name!r} is already registered by {where}")
        self.entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator for classes: registers the class and sets its `name`."""

        def decorate(cls: Any) -> Any:
            self.add(name, cls)
            cls.name = name
            return cls

        return decorate

    def load(self) -> dict[str, T]:
        """Built-ins plus every plugin of the entry-point group (importing a plugin may register it)."""
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                importlib.import_module(module)
        for entry in entry_points(group=self.group) if self.group else ():
            self._add_plugin(entry)
        return self.entries

    def _add_plugin(self, entry: Any) -> None:
        where = f"entry point {entry.name} = {entry.value} of group {self.group}"
        try:
            loaded = entry.load()
        except ValueError as exc:  # importing it registered a name already taken
            raise UserError(f"{where}: {exc}") from None
        if self.base is None:
            if entry.name not in self.entries:
                raise UserError(f"{where} registers no {self.kind} named {entry.name!r} when imported")
            return
        if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
            raise UserError(f"{where} is not a subclass of {self.base.__module__}.{self.base.__name__}")
        if self.entries.get(entry.name) is not loaded:
            try:
                self.register(entry.name)(loaded)
            except ValueError as exc:
                raise UserError(f"{where}: {exc}") from None

    def get(self, name: str, hint: str = "") -> T:  # type: ignore[override]
        known = self.load()
        if name not in known:
            raise UserError(f"{self.option} {name!r} is not a known {self.kind}; known: {', '.join(sorted(known))}{hint}")
        return known[name]

    def __getitem__(self, name: str) -> T:
        return self.load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.load())

    def __len__(self) -> int:
        return len(self.load())


def registered_names(where: str) -> list[str]:
    """The names held at "module:ATTRIBUTE" (a Registry, loaded with its built-ins and plugins, or a tuple of
    names), imported only now: help texts list them when --help is printed, never from a hand-written list."""
    module, attribute = where.split(":")
    return sorted(getattr(importlib.import_module(module), attribute))


def help_listing(text: str, where: str) -> Callable[[], str]:
    """A help text whose `{names}` becomes the names registered at `where` (see registered_names) when --help is
    printed (fednlp/options.py's callable help), so building a parser imports no plug-in."""
    return lambda: text.format(names=", ".join(registered_names(where)))

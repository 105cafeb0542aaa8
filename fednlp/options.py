"""Options declared once, on the fields of a dataclass: each field's help, type, default and flag make its
command-line flag and its YAML key, so a feature keeps its options beside its code and no parser is written
by hand (the run configs of fednlp/config.py, ReaderOptions of `fednlp data prepare`, PartitionParams of
`fednlp partition`).

A field made with `option(help, ...)` may also say:
  name     its flat name (argparse dest, flag, YAML key) when it is not the field's: n_clients is --clients;
  flag     a preferred spelling listed first, the flat name staying an alias (--partition-group, --method);
  choices  the allowed values (a callable is asked when the parser is built: a registry's names);
  required the flag must be given (commands only: a config's flags default to None so YAML can fill them);
  cli      False: not an option (a config's algorithm_args).
  replaces the flat name of a conflicting option whose lower-layer value this one's value replaces (a run
           config's --local-steps over the YAML's local_epochs: fednlp/config.py, load_config).
`help` may be a callable too, asked when --help is printed (--dp lists the registered mechanisms).

A *section* (`section(DPOptions)`) is a config field holding a feature's own options dataclass: on the command
line its fields stay flat flags (`--dp-clip`: the section's FLAG_PREFIX "dp_" before the field name), in YAML
they form a mapping under the section's name (`dp: {clip: 1.0}`), and the flat keys (`dp_clip: 1.0`) are read
too, as older config files hold them.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Callable


def option(help: str | Callable[[], str] | None = None, *, default: Any = None,
           factory: Callable[[], Any] | None = None, **metadata: Any) -> Any:
    """A dataclass field that is an option (see the module's docstring for `metadata`)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def required_option(help: str | Callable[[], str] | None = None, **metadata: Any) -> Any:
    """A field without a default: the command's flag is required."""
    return field(metadata={"help": help, "required": True, **metadata})


def section(cls: type) -> Any:
    """A config field holding the options dataclass `cls` of one feature (see the module's docstring)."""
    return field(default_factory=cls, metadata={"section": cls})


def parse_bool(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off in any case: argparse's `type=bool` would take "false" as True."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def base_type(annotation: Any) -> type:
    """int for `int`, `int | None` and the string "int | None" (postponed annotations)."""
    hint = annotation if not isinstance(annotation, str) else eval(annotation, vars(typing))  # noqa: S307
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


@dataclass(frozen=True)
class Flat:
    """One option as the command line and a flat YAML key name it: `path` leads to its field (("dp", "clip"))."""

    name: str
    path: tuple[str, ...]
    kind: type
    field: dataclasses.Field

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def flags(self) -> list[str]:
        """The preferred spelling first (argparse shows it and names the option after it), then the flat name."""
        preferred = self.field.metadata.get("flag")
        return [f"--{preferred}", self.flag] if preferred else [self.flag]

    def help_arguments(self) -> dict[str, Any]:
        """add_argument's help keywords: a callable help is asked only when --help is printed (_HelpLater)."""
        text = self.field.metadata.get("help")
        return {"help": text, "action": _HelpLater} if callable(text) else {"help": text}

    def choices(self) -> Any:
        choices = self.field.metadata.get("choices")
        return choices() if callable(choices) else choices


class _HelpLater(argparse._StoreAction):
    """A flag whose help text is computed when --help is printed, not when the parser is built: --dp lists the
    registered mechanisms, whose modules import torch, which `fednlp leaderboard` must not wait for."""

    @property
    def help(self) -> str | None:  # type: ignore[override]
        return self._help() if callable(self._help) else self._help

    @help.setter
    def help(self, text: Any) -> None:
        self._help = text


def flat_name(cls: type, f: dataclasses.Field) -> str:
    """A field's flat name: its own `name`, else the class's FLAG_PREFIX (sections) before the field's name."""
    return f.metadata.get("name") or getattr(cls, "FLAG_PREFIX", "") + f.name


def flat_options(cls: type) -> list[Flat]:
    """Every option of dataclass `cls`, a section's fields in its place, in declaration order."""
    found = []
    for f in fields(cls):
        if "section" in f.metadata:
            inner = f.metadata["section"]
            found += [dataclasses.replace(o, path=(f.name, *o.path)) for o in flat_options(inner)]
        elif f.metadata.get("cli", True):
            found.append(Flat(flat_name(cls, f), (f.name,), base_type(f.type), f))
    return found


def sections(cls: type) -> dict[str, type]:
    """Section name -> its options class."""
    return {f.name: f.metadata["section"] for f in fields(cls) if "section" in f.metadata}


def value_arguments(kind: type) -> dict[str, Any]:
    """add_argument's keywords for a value of `kind`: a bool flag given alone means true (`--quiet`), and
    `--quiet false` still works."""
    if kind is bool:
        return {"type": parse_bool, "nargs": "?", "const": True}
    return {} if kind is str else {"type": kind}


def add_option_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                         defaults: bool = True, metavar: bool = False) -> None:
    """One flag per option of `cls`. `defaults`: the fields' defaults and required flags (a command); False:
    every default None, so that only what the user typed overrides a YAML file (the run configs).
    `metavar`: show the value's type (INT) rather than argparse's upper-cased name."""
    for o in flat_options(cls):
        keywords = value_arguments(o.kind)
        if defaults:
            missing = o.field.default is dataclasses.MISSING and o.field.default_factory is dataclasses.MISSING
            keywords["default"] = None if missing else o.field.default
            if missing or o.field.metadata.get("required"):
                keywords["required"] = True
        else:
            keywords["default"] = None
        if metavar:
            keywords["metavar"] = o.kind.__name__.upper()
        if o.choices() is not None:
            keywords["choices"] = o.choices()
        parser.add_argument(*o.flags, dest=o.name, **o.help_arguments(), **keywords)


def options_from_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `cls` from flat values (flat name -> value): a section's values become its
    options instance; flat names not given are left to the defaults."""
    kwargs: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for o in flat_options(cls):
        if o.name not in values:
            continue
        if len(o.path) == 1:
            kwargs[o.path[0]] = values[o.name]
        else:
            nested.setdefault(o.path[0], {})[o.path[1]] = values[o.name]
    for name, inner in sections(cls).items():
        kwargs[name] = inner(**nested.get(name, {}))
    return kwargs


def from_arguments(cls: type, args: argparse.Namespace) -> Any:
    """An instance of `cls` from the parsed flags that add_option_arguments(defaults=True) made."""
    return cls(**options_from_values(cls, {o.name: getattr(args, o.name) for o in flat_options(cls)}))


def flat_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A nested mapping as config.yaml and result.json hold it, with each section's mapping turned back into
    the flat names (dp: {clip: 1} -> dp_clip: 1), so a record written before sections reads the same."""
    flat = dict(values)
    for name, inner in sections(cls).items():
        if isinstance(flat.get(name), dict):
            held = flat.pop(name)
            names = {o.path[-1]: o.name for o in flat_options(inner)}
            flat.update({names.get(key, f"{name}.{key}"): value for key, value in held.items()})
    return flat

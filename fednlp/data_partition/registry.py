"""The registry of partition methods: name -> PartitionMethod. CLI choices come from its keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import numpy as np

    from fednlp.data_partition.params import PartitionParams
    from fednlp.data_partition.partitioners import PartitionJob, PartitionResult


@dataclass(frozen=True)
class PartitionMethod:
    """A partitioner and the parameters it takes.

    `parameters` are the PartitionParams fields it needs (a missing one is an error unless it has a
    default); `in_name` maps those shown in the group name to their key there (FedNLP's names).
    """

    name: str
    run: Callable[["PartitionJob", "PartitionParams", "np.random.Generator"], "PartitionResult"]
    parameters: tuple[str, ...] = ()
    in_name: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    help: str = ""

    def __call__(self, job: "PartitionJob", params: "PartitionParams", rng: "np.random.Generator") -> "PartitionResult":
        return self.run(job, params, rng)


METHODS: dict[str, PartitionMethod] = {}


def register_method(
    name: str,
    parameters: tuple[str, ...] = (),
    in_name: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: register a partitioner under `name`; duplicates are refused."""

    def decorate(run: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"partition method {name!r} is already registered")
        doc = (run.__doc__ or "").strip().splitlines()
        help_line = doc[0] if doc else ""
        METHODS[name] = PartitionMethod(name, run, parameters, dict(in_name or {}), dict(defaults or {}), help_line)
        return run

    return decorate

"""The registry of partition methods: name -> PartitionMethod. CLI choices come from its keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from fednlp.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from fednlp.data_partition.params import PartitionParams
    from fednlp.data_partition.partitioners import PartitionJob, PartitionResult


@dataclass(frozen=True)
class PartitionMethod:
    """A partitioner and the parameters it takes.

    `parameters` are the PartitionParams fields it needs (a missing one is an error unless it has a
    default); `in_name` maps those shown in the group name to their key there (FedNLP's names).
    `reads`: the data-file fields it reads, given the parameters (None: all of them): a partition by labels
    never reads the texts, which are most of a data file. `clients`: the number of clients the data fixes,
    given the job and the parameters (natural: one per value kept), so --clients may be left out; None:
    --clients is required.
    """

    name: str
    run: Callable[["PartitionJob", "PartitionParams", "np.random.Generator"], "PartitionResult"]
    parameters: tuple[str, ...] = ()
    in_name: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    help: str = ""
    reads: Callable[["PartitionParams"], tuple[str, ...]] | None = None
    clients: Callable[["PartitionJob", "PartitionParams"], int] | None = None

    def fields_read(self, params: "PartitionParams") -> tuple[str, ...] | None:
        return None if self.reads is None else tuple(self.reads(params))

    def __call__(self, job: "PartitionJob", params: "PartitionParams", rng: "np.random.Generator") -> "PartitionResult":
        return self.run(job, params, rng)


#: Installed packages add methods through the `fednlp.partition_methods` entry-point group (an entry point
#: names a module or function whose import registers the name with @register_method).
METHODS: Registry[PartitionMethod] = Registry("partition method", "--method", group="fednlp.partition_methods",
                                              builtins=("fednlp.data_partition.partitioners",))


def register_method(
    name: str,
    parameters: tuple[str, ...] = (),
    in_name: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    reads: tuple[str, ...] | Callable[["PartitionParams"], tuple[str, ...]] | None = None,
    clients: Callable[["PartitionJob", "PartitionParams"], int] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: register a partitioner under `name`; duplicates are refused. `reads`: the fields it reads
    (a tuple, or a function of the parameters); None reads every field. `clients`: see PartitionMethod."""
    if isinstance(reads, tuple):
        fields = reads
        reads = lambda params: fields  # noqa: E731

    def decorate(run: Callable) -> Callable:
        doc = (run.__doc__ or "").strip().splitlines()
        help_line = doc[0] if doc else ""
        METHODS.add(name, PartitionMethod(name, run, parameters, dict(in_name or {}), dict(defaults or {}), help_line,
                                          reads, clients))
        return run

    return decorate

"""PartitionParams: one partition request, validated against its method once, at construction; its fields
declare the flags of `fednlp partition`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fednlp.data_partition.registry import METHODS
from fednlp.errors import UserError
from fednlp.options import option, required_option

#: Every method parameter and its command-line flag (errors name the flag the user typed).
PARAMETER_FLAGS = {
    "alpha": "--alpha",
    "beta": "--beta",
    "clusters": "--clusters",
    "labels_per_client": "--labels-per-client",
    "field": "--field",
    "min_examples": "--min-examples",
}


def _methods_help() -> str:
    return f"one of {', '.join(METHODS)}"


@dataclass(frozen=True)
class PartitionParams:
    """Each field is a flag of `fednlp partition` (fednlp/options.py builds the parser from them)."""

    method: str = required_option(_methods_help)
    n_clients: int | None = option("number of clients (natural: one per value kept, found from the data when "
                                   "left out; checked when given)", name="clients")
    alpha: float | None = option("Dirichlet concentration (niid_label, niid_cluster)")
    beta: float | None = option("Dirichlet concentration of client sizes (niid_quantity)")
    clusters: int | None = option("number of k-means clusters (niid_cluster)")
    labels_per_client: int | None = option("labels per client (pathological)")
    field: str | None = option("per-example field whose values are the clients (natural); default source")
    min_examples: int | None = option("natural: drop the values (users) with fewer than K training examples "
                                      "(reported, and recorded in the group)")
    seed: int = option("seed of the partition's random draws", default=0)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"--method {self.method!r} is not a partition method; known: {', '.join(METHODS)}")
        method = METHODS[self.method]
        for name in ("alpha", "beta"):  # 1 and 1.0 must name the same group: alpha=1.0
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        for name, flag in PARAMETER_FLAGS.items():
            value = getattr(self, name)
            if name in method.parameters and value is None:
                if name not in method.defaults:
                    raise UserError(f"--method {self.method} needs {flag}")
                object.__setattr__(self, name, method.defaults[name])
            elif name not in method.parameters and value is not None:
                takes = ", ".join(PARAMETER_FLAGS[p] for p in method.parameters) or "no parameter"
                raise UserError(f"{flag} does not apply to --method {self.method} (it takes {takes})")
        if self.n_clients is None:
            _require(method.clients is not None, f"--method {self.method} needs --clients")
        else:
            _require(self.n_clients >= 1, f"--clients must be at least 1, got {self.n_clients}")
        _require(self.seed >= 0, f"--seed must be a non-negative integer, got {self.seed}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if value is not None:
                _require(math.isfinite(value) and value > 0, f"--{name} must be a positive finite number, got {value}")
        if self.clusters is not None:
            _require(self.clusters >= 1, f"--clusters must be at least 1, got {self.clusters}")
        if self.labels_per_client is not None:
            value = self.labels_per_client
            _require(value >= 1, f"--labels-per-client must be at least 1, got {value}")
        if self.min_examples is not None:
            _require(self.min_examples >= 1, f"--min-examples must be at least 1, got {self.min_examples}")
        if self.field is not None:
            valid = bool(self.field) and "/" not in self.field
            _require(valid, f"--field must be a data-file field name, got {self.field!r}")

    def group_name(self) -> str:
        """FedNLP's group name: `<method>_clients=<n>` then `_<key>=<value>` per named parameter."""
        method = METHODS[self.method]
        parts = [f"{self.method}_clients={self.n_clients}"]
        parts += [f"{key}={getattr(self, name)}" for name, key in method.in_name.items()
                  if getattr(self, name) is not None]  # an unset option (--min-examples) is not in the name
        return "_".join(parts)

    def stored_values(self) -> dict[str, object]:
        """The scalars stored in the group: the method's parameters and the seed."""
        values = {name: getattr(self, name) for name in METHODS[self.method].parameters} | {"seed": self.seed}
        return {name: value for name, value in values.items() if value is not None}  # unset options: absent


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)

"""The algorithm interface: a client side (hooks into local training) and a server side (mean update ->
next global model), both testable without MPI. The runtime calls nothing else.

Which clients train and how their updates are weighted is the sampler's job (fednlp/algorithms/samplers.py),
not the algorithm's: the runtime hands `server_step` the sampler's weighted aggregate.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from fednlp.config import TrainConfig
from fednlp.errors import UserError

if TYPE_CHECKING:
    from fednlp.federation.client_updates import ClientUpdate
    from fednlp.federation.round_plan import RoundContext

P = TypeVar("P")


class Algorithm:
    """FedAvg's behaviour by default; subclasses override the hooks their rule changes.

    `default_server_lr` is used when --server-lr is not given; None makes --server-lr required (adaptive
    server optimizers have no learning rate that suits every task). `Options`, a frozen dataclass, declares
    the algorithm's own options once: each field becomes a flag (`--field-name`) and a YAML key of
    `fednlp train`, with its type, default and help (`algorithm_option(...)`); a field without a default is
    required. Built-ins and plugins declare them the same way; `self.options` holds the parsed instance.

    The round, as the runtime calls it (fednlp/federation/runtime.py; docs/extending.md):
      begin_round(ctx)                                          every rank, before any client
      per client: make_client_optimizer(params) -> local steps (adjust_gradients after each backward)
                  -> process_client_update(update, ctx)         before the update is accumulated
      one Allreduce of the weighted updates and the `slots` sums
      server_step(global_flat, aggregate, ctx)                  every rank; ctx.sums holds the slots' sums
    """

    name: ClassVar[str]
    default_server_lr: ClassVar[float | None] = 1.0
    Options: ClassVar[type | None] = None
    # Names of per-round sums this algorithm adds (update.add(name, value)); they travel in the round's one
    # Allreduce, in the same buffer as the update, and reach the server step as ctx.sums[name].
    slots: ClassVar[tuple[str, ...]] = ()
    # True when process_client_update needs update.loss_global: the client's mean loss over its whole
    # training data at the global weights (one extra forward pass per client, before local training).
    needs_global_loss: ClassVar[bool] = False

    def __init__(self, config: TrainConfig):
        self.config = config
        label = getattr(self, "name", type(self).__name__)  # registered classes have a name
        server_lr = config.server_lr if config.server_lr is not None else self.default_server_lr
        if server_lr is None:
            raise UserError(f"--algorithm {label} needs --server-lr (the server learning rate; it has no default)")
        self.server_lr: float = server_lr
        self.options = parse_options(config.algorithm_args, self.Options, label)

    # -- client side -----------------------------------------------------------------------------
    def begin_round(self, ctx: RoundContext) -> None:
        """Before the round's first client, on every rank."""

    def make_client_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer | None:
        """The local optimizer over `params` (built once, its state cleared for each client); None = the
        one --optimizer/--lr/--weight-decay name. A hook for e.g. DP-SGD inside the client."""
        return None

    def adjust_gradients(self, params: list[torch.Tensor], global_params: list[torch.Tensor]) -> None:
        """Called after each local backward pass, before clipping and the optimizer step.

        `global_params` are views of the round's global weights, shaped like `params`: read them, never write.
        """

    def process_client_update(self, update: ClientUpdate, ctx: RoundContext) -> None:
        """Called once per client after local training, before its update is accumulated. `update` holds
        the client's delta (local - global, exact over every trainable weight, sparse rows included: see
        ClientUpdate.norm / scale_), its aggregation weight (settable), its losses, and `add(slot, value)`."""

    # -- server side -----------------------------------------------------------------------------
    def server_step(self, global_flat: torch.Tensor, aggregate: torch.Tensor, ctx: RoundContext) -> None:
        """Turn the aggregated client update (sum of weight * (local - global); with the samplers' weights, a
        weighted mean) into the next global model, in place. `aggregate` is the runtime's scratch buffer: a
        step may overwrite it. Randomness must come from ctx.generator (identical on every rank)."""
        global_flat.add_(aggregate, alpha=self.server_lr)

    def state_dict(self) -> dict[str, Any]:
        """Server state carried across rounds (checkpointed): tensors and numbers only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


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

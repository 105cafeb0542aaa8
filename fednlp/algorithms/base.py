"""The algorithm interface: a client side (hooks into local training) and a server side (mean update ->
next global model), both testable without MPI. The runtime calls nothing else.

Which clients train and how their updates are weighted is the sampler's job (fednlp/algorithms/samplers.py),
not the algorithm's: the runtime hands `server_step` the sampler's weighted aggregate.
"""

from __future__ import annotations

import dataclasses
import typing
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
    the options a plugin algorithm reads from --algorithm-options "key=value,...".

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
        self.options = parse_options(config.algorithm_options, self.Options, label)

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


def parse_options(text: str | None, options_cls: type[P] | None, algorithm: str) -> P | None:
    """'key=value,key=value' -> an instance of the frozen dataclass `options_cls` (fields typed int, float,
    str or bool; the ones not given keep their defaults)."""
    if options_cls is None:
        if text:
            raise UserError(f"--algorithm-options: algorithm {algorithm} takes no options, got {text!r}")
        return None
    hints = typing.get_type_hints(options_cls)
    fields = {f.name for f in dataclasses.fields(options_cls)}
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise UserError(f"--algorithm-options: expected key=value with key one of {', '.join(sorted(fields))} "
                            f"(algorithm {algorithm}), got {item!r}")
        kind, raw = hints[key], raw.strip()
        try:
            values[key] = _BOOLS[raw.lower()] if kind is bool else kind(raw)
        except (KeyError, ValueError):
            raise UserError(f"--algorithm-options: {key} must be {kind.__name__}, got {raw!r}") from None
    return options_cls(**values)


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}

"""The round's whole contract: what the runtime (fednlp/federation/runtime.py) calls on an algorithm, and the
two objects it hands the hooks (`RoundContext`, `ClientUpdate`). Every hook is declared here with a no-op
default (FedAvg's behaviour), so a reader and a type checker see the whole contract in one file; the runtime
never probes an algorithm for a capability. docs/extending.md documents each hook with a worked plugin.

Which clients train and how their updates are weighted is the sampler's job (fednlp/algorithms/samplers.py),
not the algorithm's: the runtime hands `server_step` the sampler's weighted aggregate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np
import torch

from fednlp.algorithms.options import algorithm_option, parse_options
from fednlp.errors import UserError

if TYPE_CHECKING:
    from fednlp.config import TrainConfig

__all__ = ["Algorithm", "ClientUpdate", "RoundContext", "algorithm_option", "parse_options"]


@dataclass(frozen=True)
class RoundContext:
    """What an algorithm may know about the round: the same on every rank (built by
    fednlp/federation/round_plan.py's `make_context`, a pure function of (seed, round)).

    `generator` is a CPU generator seeded from (seed, round): draw noise from it on the CPU (then move it
    to the device) and every rank adds the same noise with no broadcast. `sums` holds the algorithm's
    extra slots summed over all clients of all ranks; it is filled after the round's Allreduce, so only
    the server step sees it.
    """

    round_idx: int
    cohort: np.ndarray
    expected_cohort_size: float
    n_clients: int
    world_size: int
    rank: int
    seed: int
    generator: torch.Generator = field(compare=False)
    sums: Mapping[str, float] = field(default_factory=dict)

    def with_sums(self, sums: Mapping[str, float]) -> "RoundContext":
        return dataclasses.replace(self, sums=dict(sums))


class ClientUpdate:
    """One client's update between local training and accumulation, as `process_client_update` sees it.

    The delta (local - global) lies in `parts`: slices of the model's own flat buffer (overwritten by the
    next client anyway) plus, on the sparse embedding path, the touched rows' delta. Every trainable
    weight is in exactly one part, and an untouched embedding row's delta is exactly zero, so `norm()` is
    the exact L2 norm over all trainable weights. `weight` is the aggregation coefficient (the sampler's;
    a hook may set it); `add(slot, value)` adds to one of the algorithm's declared slots.
    """

    def __init__(self, client: int, weight: float, num_examples: int, steps: int, loss_start: float,
                 loss_mean: float, loss_end: float, parts: list[torch.Tensor], slot_values: torch.Tensor,
                 slot_index: dict[str, int], loss_global: float | None = None):
        self.client, self.weight, self.num_examples, self.steps = client, weight, num_examples, steps
        self.loss_start = loss_start  # the first local batch's loss, at the global weights
        self.loss_mean = loss_mean  # mean over the local steps' batches
        self.loss_end = loss_end  # the last local batch's loss
        self.loss_global = loss_global  # mean loss over all its training data at the global weights, if asked
        self.parts = parts
        self._slot_values, self._slot_index = slot_values, slot_index

    def norm(self) -> float:
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in self.parts])))

    def scale_(self, factor: float) -> None:
        torch._foreach_mul_(self.parts, factor)

    def is_finite(self) -> bool:
        # One sum per part: NaN or infinity anywhere makes it non-finite (no bool temporary the size of the model).
        return all(bool(torch.isfinite(p.sum())) for p in self.parts)

    def add(self, slot: str, value: float) -> None:
        if slot not in self._slot_index:
            raise KeyError(f"slot {slot!r} is not declared in the algorithm's `slots` ({', '.join(self._slot_index)})")
        self._slot_values[self._slot_index[slot]] += value


class Algorithm:
    """FedAvg's behaviour by default; subclasses override the hooks their rule changes.

    The run, as the runtime calls it (fednlp/federation/runtime.py; docs/extending.md):
      __init__(config)                                          once, before any data is read
      check_model(model)                                        once, before the run directory is written
      attach_model(model), then make_client_optimizer(params)   once, when the local trainer is built
      per round:
        begin_round(ctx)                                        every rank, before any client
        per client: client_batches(...) -> local steps, each: loss (per example when `per_example_loss`:
                    example_losses(task, model, batch), then backward(example_losses)), adjust_gradients,
                    optimizer step (a batch with no example: step_without_examples(optimizer)) -> process_client_update(update, ctx)
        one Allreduce of the weighted updates and the `slots` sums
        server_step(global_flat, aggregate, ctx)                every rank; ctx.sums holds the slots' sums
        round_record(ctx)                                       numbers for the round's metrics.jsonl line
      state_dict() / load_state_dict(state)                     checkpoints

    `Options`, a frozen dataclass, declares the algorithm's own options once: each field becomes a flag
    (`--field-name`) and a YAML key of `fednlp train`, with its type, default and help (`algorithm_option`);
    a field without a default is required. `self.options` holds the parsed instance.
    """

    # The --algorithm name; set by the registry (`@register_algorithm(name)` or the entry point's name).
    name: ClassVar[str] = ""
    # Used when --server-lr is not given; None makes --server-lr required (adaptive server optimizers have
    # no learning rate that suits every task).
    default_server_lr: ClassVar[float | None] = 1.0
    Options: ClassVar[type | None] = None
    # Names of per-round sums this algorithm adds (update.add(name, value)); they travel in the round's one
    # Allreduce, in the same buffer as the update, and reach the server step as ctx.sums[name].
    slots: ClassVar[tuple[str, ...]] = ()
    # True when process_client_update needs update.loss_global: the client's mean loss over its whole
    # training data at the global weights (one extra forward pass per client, before local training).
    needs_global_loss: ClassVar[bool] = False
    # True: the server step runs on every round, empty or not, and the aggregate is never renormalised when a
    # non-finite client is skipped (the weights are final whatever came: DP-FedAvg divides by the expected
    # cohort size, and its noise must be added even to an empty round). False: an empty round leaves the model
    # as it is, and a skipped client's weight is shared among the rest.
    fixed_denominator: ClassVar[bool] = False
    # True: the aggregate's scale is the algorithm's own, set over the clients that came (q-FedAvg divides by
    # sum_k h_k of the kept clients), so a skipped non-finite client's sampler weight is not shared among the
    # rest (that would rescale the algorithm's step). False: the runtime renormalises to the sampler's weights.
    normalises_itself: ClassVar[bool] = False
    # True declares that an overridden adjust_gradients leaves a zero gradient at zero (FedProx's mu (w - w_g)
    # is 0 where w never moved), which keeps the sparse word-embedding path on (fednlp/federation/
    # client_updates.py). Without an override of adjust_gradients it is not needed.
    keeps_untouched_rows: ClassVar[bool] = False
    # True: the local trainer computes each batch's per-example losses (Task.example_losses: each row's own loss,
    # a mean over its own tokens) and hands them to `backward` instead of backpropagating the batch loss (a
    # token mean over the whole batch) itself. DP-SGD needs it: per-example clipping is only a sensitivity
    # bound when a row's gradient does not depend on the other rows.
    per_example_loss: ClassVar[bool] = False
    # True declares that, under --dp client or --dp sample, the algorithm releases nothing but a post-processing
    # of the mechanism's output: its server step reads only the clipped, noised sum (and the mechanism's own
    # noised slots), and its client hooks feed nothing unnoised into the global model. False: it uses a per-client
    # value the mechanism does not clip and noise (q-FedAvg: each client's unclipped update norm and loss, summed
    # into its step size, which the released weights give back), so `--dp` refuses it (fednlp/privacy/plan.py).
    dp_compatible: ClassVar[bool] = True

    def __init__(self, config: TrainConfig):
        self.config = config
        label = self.name or type(self).__name__
        server_lr = config.server_lr if config.server_lr is not None else self.default_server_lr
        if server_lr is None:
            raise UserError(f"--algorithm {label} needs --server-lr (the server learning rate; it has no default)")
        self.server_lr: float = server_lr
        self.options = parse_options(config.algorithm_args, self.Options, label)

    # -- the model, once per run -------------------------------------------------------------------
    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse (UserError) a model this algorithm cannot train, before the run writes anything (e.g. a
        model with tied weights under DP-SGD's ghost clipping)."""

    def attach_model(self, model: torch.nn.Module) -> None:
        """The local trainer's one model, before `make_client_optimizer`: e.g. DP-SGD's per-example gradient
        hooks. The model stays the runtime's: wrap nothing in place of it."""

    def make_client_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer | None:
        """The local optimizer over `params` (built once, its state cleared for each client); None = the
        one --optimizer/--lr/--weight-decay name. A hook for e.g. DP-SGD inside the client."""
        return None

    # -- client side -------------------------------------------------------------------------------
    def begin_round(self, ctx: RoundContext) -> None:
        """Before the round's first client, on every rank."""

    def client_batches(self, client: int, round_idx: int, n_rows: int,
                       rng: np.random.Generator) -> list[np.ndarray] | None:
        """The client's local batches this round, as positions into its `n_rows` training rows, drawn from
        `rng` (the client's own stream: the same on whichever rank trains it). None = the runtime's plan:
        --local-steps or --local-epochs batches of --batch-size, reshuffled every epoch (e.g. DP-SGD draws
        Poisson batches instead, which may be empty)."""
        return None

    def example_losses(self, task: Any, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A batch's per-example losses (only when `per_example_loss`), handed to `backward` next: by default the
        task's. DP-SGD's torch.func mode computes its clipped per-example gradients in the same pass."""
        return task.example_losses(model, batch)

    def backward(self, example_losses: torch.Tensor) -> None:
        """Backpropagate a batch's per-example losses (only when `per_example_loss`): by default their mean,
        as the trainer does with the batch loss. DP-SGD's ghost clipping weighs each by its clip factor."""
        example_losses.mean().backward()

    def adjust_gradients(self, params: list[torch.Tensor], global_params: list[torch.Tensor]) -> None:
        """Called after each local backward pass, before clipping and the optimizer step.

        `global_params` are views of the round's global weights, shaped like `params`: read them, never write.
        """

    def step_without_examples(self, optimizer: torch.optim.Optimizer) -> None:
        """A local batch with no example (only `client_batches` can plan one: Poisson sampling): by default no
        step is taken. DP-SGD still takes its noisy step (its accounting counts every step)."""

    def process_client_update(self, update: ClientUpdate, ctx: RoundContext) -> None:
        """Called once per client after local training, before its update is accumulated. `update` holds
        the client's delta (local - global, exact over every trainable weight, sparse rows included: see
        ClientUpdate.norm / scale_), its aggregation weight (settable), its losses, and `add(slot, value)`."""

    # -- server side -------------------------------------------------------------------------------
    def server_step(self, global_flat: torch.Tensor, aggregate: torch.Tensor, ctx: RoundContext) -> None:
        """Turn the aggregated client update (sum of weight * (local - global); with the samplers' weights, a
        weighted mean) into the next global model, in place. `aggregate` is the runtime's scratch buffer: a
        step may overwrite it. Randomness must come from ctx.generator (identical on every rank)."""
        global_flat.add_(aggregate, alpha=self.server_lr)

    def round_record(self, ctx: RoundContext) -> dict[str, Any]:
        """Numbers for the round's line of metrics.jsonl, after the server step (e.g. DP's epsilon so far);
        ctx.sums holds the slots' sums. Every rank is asked; only rank 0's record is written, so a costly
        number may be computed there alone."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Server state carried across rounds (checkpointed): tensors and numbers only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The state `state_dict` returned, when a run resumes from a checkpoint."""
        return None

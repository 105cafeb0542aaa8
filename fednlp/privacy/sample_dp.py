"""Sample-level DP-SGD inside each client (Abadi et al. 2016, "Deep Learning with Differential Privacy"):
every local step draws a Poisson batch (each of the client's examples with rate q = B / n_k), clips each
example's gradient to C, sums, adds N(0, (Z C)^2) and divides by the expected batch size q n_k. Per-example
gradients and the clip/noise step are Opacus's (GradSampleModule hooks, DPOptimizer).

Composed over any server algorithm by `with_sample_dp`; the server side is unchanged (a client's update is
a post-processing of its DP-SGD steps).

Three ways to clip each example (--dp-grad-sample): `hooks` materialises every per-example gradient (Opacus's
GradSampleModule); `ghost` (Opacus's ghost clipping, Li et al. 2022 / Bu et al. 2023) computes only each
example's gradient norm from the layer's activations and output gradients, then backpropagates the
per-example losses weighted by their clip factors, so the clipped sum arrives in `.grad` without any
per-example gradient; `func` takes the per-example gradients of the trainable weights only by torch.func (vmap
of grad, fednlp/privacy/per_example.py), clips and sums them into `.grad`. Same clipped sum, same noise draws
(ghost and func share the optimizer that reads the clipped sum from `.grad`). Every mode clips the gradient of
the task's per-example loss (`Task.example_losses`: each row's own loss, a mean over ITS tokens for the
token-level heads), never the batch loss: a batch-wide token mean would weigh a row by its share of the batch's
tokens, so one row's clipped gradient would depend on the other rows' lengths and adding one example could move
the clipped sum by more than C (the sensitivity the accountant assumes).

Overriding the client optimizer switches the sparse embedding path off (fednlp/federation/client_updates.py),
as it must: noise touches every row.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

from fednlp.algorithms.interface import Algorithm
from fednlp.errors import UserError
from fednlp.privacy.per_example import PerExampleClipping
from fednlp.run.random_streams import Stream, round_generator
from fednlp.privacy.client_dp import finite_or_none
from fednlp.privacy.release import scrub_round
from fednlp.privacy.settings import SampleDPSettings

if TYPE_CHECKING:
    from fednlp.privacy.sample_accounting import SampleLedger


class PoissonDPOptimizer(DPOptimizer):
    """Opacus's DPOptimizer plus the step of an empty Poisson batch: no example, but the noise is still
    added and the step still taken (the accounting assumes every step releases a noisy gradient)."""

    def step_without_examples(self) -> None:
        for p in self.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self.step()


class PoissonGhostDPOptimizer(DPOptimizerFastGradientClipping):
    """The same for ghost clipping, whose optimizer reads the clipped sum from `.grad`."""

    def step_without_examples(self) -> None:
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.step()

class SampleDP(Algorithm):
    """Put before an Algorithm class by `with_sample_dp` (its MRO: SampleDP, the algorithm, Algorithm): the
    client's batches, model hooks, optimizer and backward pass are DP-SGD's; the server side is the algorithm's."""

    dp: ClassVar[SampleDPSettings]
    grad_sample: ClassVar[str] = "hooks"  # --dp-grad-sample: hooks, ghost or func (the module's docstring)
    ledger: SampleLedger  # set by privatize (fednlp/privacy/plan.py): every client's rate and steps

    def __init__(self, config: Any):
        super().__init__(config)  # type: ignore[call-arg]
        self._grad_sample_module: GradSampleModule | GradSampleModuleFastGradientClipping | None = None
        self.per_example: PerExampleClipping | None = None  # --dp-grad-sample func
        self.optimizer: PoissonDPOptimizer | PoissonGhostDPOptimizer | None = None
        self.noise_seed: int | None = None  # --dp-release: OS entropy (PrivacyPlan.start); else --seed

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse, before the run writes anything, a model this mode cannot clip per example."""
        if self.grad_sample == "ghost" and (len(list(model.named_parameters(remove_duplicate=False)))
                           > len(list(model.parameters()))):
            raise UserError("--dp-grad-sample ghost: this model ties weights (e.g. GPT-2's input and output "
                            "embeddings), which Opacus's ghost clipping does not support; use --dp-grad-sample hooks")

    def attach_model(self, model: torch.nn.Module) -> None:
        """Called by the local trainer before it asks for the optimizer: Opacus's forward/backward hooks on
        the model's trainable layers (it keeps being called directly; hooks are idle in eval and no_grad)."""
        self.check_model(model)
        if self.grad_sample == "func":  # no hooks: each step's per-example gradients come from torch.func
            self.per_example = PerExampleClipping(model, self.dp.clip)
            return
        if self.grad_sample == "ghost":
            self._grad_sample_module = GradSampleModuleFastGradientClipping(
                model, batch_first=True, loss_reduction="mean", max_grad_norm=self.dp.clip, use_ghost_clipping=True)
        else:
            self._grad_sample_module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        # Opacus's hook on the first layer fires without input gradients (token ids): expected, not a problem.
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
        for module in model.modules():  # every transformer inside (an encoder-decoder's encoder and decoder too)
            parameters = inspect.signature(module.forward).parameters
            if "position_ids" in parameters and "input_ids" in parameters:
                module.register_forward_pre_hook(_per_example_position_ids, with_kwargs=True)

    def make_client_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        inner = super().make_client_optimizer(params)  # type: ignore[misc]
        if inner is None:
            config = self.config  # type: ignore[attr-defined]
            kind = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.AdamW
            inner = kind(params, lr=config.lr, weight_decay=config.weight_decay)
        # ghost and func leave the clipped sum in .grad; hooks leave per-example gradients for DPOptimizer to clip
        kind = PoissonDPOptimizer if self.grad_sample == "hooks" else PoissonGhostDPOptimizer
        self.optimizer = kind(inner, noise_multiplier=self.dp.noise_multiplier, max_grad_norm=self.dp.clip,
                              expected_batch_size=self.dp.batch_size, loss_reduction="mean")
        return self.optimizer

    def step_without_examples(self, optimizer: torch.optim.Optimizer) -> None:
        """An empty Poisson batch still takes its noisy step (PoissonDPOptimizer below)."""
        self.optimizer.step_without_examples()

    def example_losses(self, task: Any, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """func: the per-example gradients, clipped and summed into `.grad`, with the losses in the same pass
        (then `backward` has nothing left to do); hooks and ghost: the task's losses, backpropagated next."""
        if self.per_example is not None:
            return self.per_example.clipped_sum(task, batch)
        return task.example_losses(model, batch)

    def backward(self, example_losses: torch.Tensor) -> None:
        """func: nothing (`example_losses` left the clipped sum in `.grad`). Hooks: the mean of the rows' own
        losses, whose per-example gradients (Opacus rescales a "mean" loss by the batch size) are each row's own.
        Ghost clipping: two backward passes, the per-example norms, then the losses weighted by their clip factors
        min(1, C / norm), which leaves the clipped sum in `.grad`."""
        if self.grad_sample == "func":
            return
        if self.grad_sample == "hooks":
            example_losses.mean().backward()
            return
        DPTensorFastGradientClipping(self._grad_sample_module, self.optimizer, example_losses, "mean").backward()

    def client_batches(self, client: int, round_idx: int, n_rows: int, rng: np.random.Generator) -> list[np.ndarray]:
        """The client's Poisson batches for this round; also sets its expected batch size and noise stream."""
        q, steps = client_rate(n_rows, self.dp), client_steps(n_rows, self.dp)
        if self.optimizer is not None:
            self.optimizer.expected_batch_size = q * n_rows
            seed = self.config.seed if self.noise_seed is None else self.noise_seed  # type: ignore[attr-defined]
            self.optimizer.generator = round_generator(seed, round_idx, Stream.CLIENT_NOISE, client)
        return [np.flatnonzero(rng.random(n_rows) < q) for _ in range(steps)]

    def round_record(self, ctx: Any) -> dict[str, Any]:
        """The round's DP number for metrics.jsonl (rank 0): the largest client epsilon so far, by RDP (one
        conversion per distinct client rate and step count; the final PLD values are in result.json)."""
        record = super().round_record(ctx)
        if ctx.rank != 0:
            return record
        epsilons = self.ledger.epsilons(ctx.round_idx + 1, "rdp")
        record = {**record, "dp_epsilon_rdp_max": finite_or_none(float(epsilons.max()) if len(epsilons) else 0.0)}
        return scrub_round(record) if self.config.dp.release else record  # type: ignore[attr-defined]


def _per_example_position_ids(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """HF models default to position ids of batch size 1, broadcast over the batch: Opacus would then see one
    'example' at the position embedding. Explicit (batch, length) ids give it one per example (same values)."""
    ids = kwargs.get("input_ids")
    if kwargs.get("position_ids") is None and ids is not None and torch.is_grad_enabled() and module.training:
        # contiguous: ghost clipping's embedding norms view the ids flat
        kwargs["position_ids"] = torch.arange(ids.shape[1], device=ids.device).repeat(ids.shape[0], 1)
    return args, kwargs


def client_rate(n_rows: int, dp: SampleDPSettings) -> float:
    return min(1.0, dp.batch_size / n_rows) if n_rows else 0.0

def client_steps(n_rows: int, dp: SampleDPSettings) -> int:
    """Local steps per round: --local-steps, or enough expected batches for --local-epochs passes."""
    if dp.local_steps is not None:
        return dp.local_steps
    epochs = 1.0 if dp.local_epochs is None else dp.local_epochs
    return max(1, math.ceil(epochs * n_rows / max(1, min(dp.batch_size, n_rows))))

def with_sample_dp(algorithm_cls: type, settings: SampleDPSettings) -> type:
    """`algorithm_cls` with DP-SGD in every client: the trainer hands `backward` each row's own loss (every
    mode), never the batch loss."""
    return type(f"{algorithm_cls.__name__}WithSampleDP", (SampleDP, algorithm_cls),
                {"dp": settings, "per_example_loss": True, "grad_sample": settings.grad_sample_mode})

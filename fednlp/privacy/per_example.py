"""Per-example gradients by torch.func (`--dp-grad-sample func`): vmap over the batch's examples of the gradient
of each example's own loss (Task.example_losses on a batch of one), through `functional_call` over the model's
TRAINABLE weights only. Each example's gradient is clipped to C (Opacus's factor min(1, C / (norm + 1e-6)), so
the clipped sum equals the hooks and ghost modes'), the clipped sum is left in `.grad`, and the DP optimizer adds
the noise and takes the step exactly as under ghost clipping (fednlp/privacy/sample_dp.py).

Why it can be cheaper than Opacus's hooks: the frozen weights are passed unbatched (vmap's in_dims None), so a
frozen prefix (--freeze-layers K, fed from the --cache-frozen states) has no per-example gradient and no
per-example work; the trainable blocks' per-example gradients come from one batched backward, not per-layer
hooks; and an untied embedding table's per-example gradient is never materialised (`EmbeddingTaps`: its norm
and clipped sum come from the gradients of its output rows, as in ghost clipping). A batch whose per-example
gradients exceed CHUNK_BYTES is taken a chunk of examples at a time. Why it is exact: each example's forward
sees only its own row (padded to the batch's width, as in the other modes), and dropout draws its own mask per
example (vmap randomness "different").

What vmap cannot run: data-dependent Python control flow (a tensor read as a bool or a number). Hugging Face's
attention masks read the mask to skip it when nothing is padded; the forward here switches the model to an
attention implementation that always builds the mask (`ATTENTION`), whose values are those of eager attention.
A head that reads a tensor's value itself (seq2seq trims its labels to the batch's longest target) falls back,
from its first batch on and with one warning, to the same gradients one example at a time (torch.func's grad
without vmap): still exact, no faster than the naive loop.
"""

from __future__ import annotations

import warnings
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.func import functional_call, grad_and_value, vmap

from fednlp.tasks.frozen_prefix import prefix_of

ATTENTION = "fednlp_per_example"  # registered with transformers below: eager attention, mask always built

# Opacus's clip factor min(1, C / (norm + 1e-6)) (DPOptimizer.clip_and_accumulate, ghost clipping's coefficients):
# the same constant keeps the three modes' clipped sums equal.
_EPS = 1e-6
# At most this many bytes of per-example gradients at once (a batch is split into chunks of examples beyond it):
# hooks mode holds the whole batch's, 3.3 GB for MiniLM at batch 16.
CHUNK_BYTES = 1 << 30


def _attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Eager scaled dot-product attention (transformers' eager_attention_forward, any head grouping): plain
    matmuls vmap batches, where SDPA's CPU kernel has no batching rule and would loop over the examples."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def _mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """Eager attention's additive mask, never skipped: the skip reads the mask's values (`mask.all()`)."""
    from transformers.masking_utils import eager_mask

    kwargs.update(allow_is_causal_skip=False, allow_is_bidirectional_skip=False)
    return eager_mask(*args, **kwargs)


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, _mask)


_register_attention()


class _ExampleLoss(torch.nn.Module):
    """The task's per-example loss as one module call, so functional_call can swap the model's weights."""

    def __init__(self, task: Any, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.example_losses(self.model, batch)


@contextmanager
def _vmappable_attention(model: torch.nn.Module) -> Iterator[None]:
    """The model's attention switched to `ATTENTION` for the duration (models without the switch run as they are)."""
    config = getattr(model, "config", None)
    switch = getattr(model, "set_attn_implementation", None)
    before = getattr(config, "_attn_implementation", None)
    if switch is None or before is None:
        yield
        return
    switch(ATTENTION)
    try:
        yield
    finally:
        switch(before)


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, C / (norm + 1e-6)) per example: Opacus's factor."""
    return (clip / (norms + _EPS)).clamp(max=1.0)


class _Untappable(Exception):
    """An embedding's output is not one row per token of the batch (or the module ran twice in one forward)."""


class EmbeddingTaps:
    """The trainable, untied nn.Embedding modules of a model, whose per-example gradients are taken from their
    outputs' gradients (Li et al. 2022's trick for embeddings, as Opacus's ghost clipping does): example i's
    gradient of the table is sum_t onehot(id_t) g_t^T (g_t: the gradient of token t's output row), whose norm and
    clipped sum need only g [rows, tokens, hidden] and the ids, never a [rows, vocabulary, hidden] tensor."""

    def __init__(self, model: torch.nn.Module):
        uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
        self.modules = {f"model.{name}": m for name, m in model.named_modules()
                        if type(m) is torch.nn.Embedding and m.weight.requires_grad and uses[id(m.weight)] == 1
                        and m.max_norm is None and not m.scale_grad_by_freq}
        self.deltas: dict[str, torch.Tensor] | None = None  # set during a per-example forward only
        self.seen: dict[str, torch.Tensor] = {}
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in self.modules.items()]

    def _hook(self, name: str) -> Any:
        def add_delta(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if self.deltas is None:
                return None
            delta = self.deltas[name]
            if name in self.seen or output.shape[-2:] != delta.shape:
                raise _Untappable(name)
            self.seen[name] = args[0].reshape(-1)
            return output + delta  # zero: it is there for its gradient, the output row's
        return add_delta

    def weights(self) -> set[str]:
        return {f"{name}.weight" for name in self.modules}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class PerExampleClipping:
    """The clipped sum of a batch's per-example gradients of `model`'s trainable weights, in their `.grad`."""

    def __init__(self, model: torch.nn.Module, clip: float):
        self.model = model
        self.clip = clip
        self.vectorised = True  # False once the forward proved not vmappable: one example at a time
        self.taps: EmbeddingTaps | None = EmbeddingTaps(model)  # None once an embedding proved untappable

    def clipped_sum(self, task: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Leave sum_i g_i min(1, C / |g_i|) in each trainable weight's `.grad` (g_i: example i's gradient of its
        own loss); return the examples' losses (detached, [rows])."""
        prefix = prefix_of(self.model)
        feed = prefix._feed if prefix is not None else None
        # The batch's cached prefix states (--cache-frozen), split over the examples like the batch itself.
        states = feed[1] if feed is not None and feed[0] is batch["input_ids"] else None
        rows = batch["input_ids"].shape[0]
        losses = []
        try:
            with _vmappable_attention(self.model):
                first = 0
                while first < rows:  # each example's clipping is its own: chunks change nothing
                    size = self._chunk_rows()
                    part = slice(first, first + size)
                    try:
                        losses.append(self._clip_chunk(task, {k: v[part] for k, v in batch.items()},
                                                       None if states is None else states[part], prefix))
                    except _Untappable:  # that chunk again, every embedding's gradient taken whole
                        self._untap()
                        self.taps.remove()
                        self.taps = None
                        continue
                    first += size
        finally:
            self._untap()
            if prefix is not None:
                prefix._feed = feed
        return torch.cat(losses)

    def _untap(self) -> None:
        if self.taps is not None:
            self.taps.deltas, self.taps.seen = None, {}

    def _chunk_rows(self) -> int:
        """How many examples' gradients are held at once: CHUNK_BYTES of them (at least one example)."""
        tapped = self.taps.weights() if self.taps is not None else set()
        per_example = sum(p.numel() * p.element_size() for n, p in self.model.named_parameters()
                          if p.requires_grad and f"model.{n}" not in tapped)
        return max(1, CHUNK_BYTES // max(1, per_example))

    def _clip_chunk(self, task: Any, batch: dict[str, torch.Tensor], states: torch.Tensor | None,
                    prefix: Any) -> torch.Tensor:
        model, taps = self.model, self.taps
        wrapper = _ExampleLoss(task, model)
        tapped = taps.weights() if taps is not None else set()
        named = {f"model.{n}": p for n, p in model.named_parameters()}
        trainable = {n: p.detach() for n, p in named.items() if p.requires_grad and n not in tapped}
        # Frozen (and tapped) weights and the buffers enter unbatched: no per-example copy, no per-example gradient.
        frozen = {n: p.detach() for n, p in named.items() if n not in trainable}
        frozen.update({f"model.{n}": b for n, b in model.named_buffers()})
        rows, width = batch["input_ids"].shape
        deltas = {name: torch.zeros(rows, width, m.embedding_dim, device=m.weight.device, dtype=m.weight.dtype)
                  for name, m in (taps.modules.items() if taps is not None else ())}

        def example_loss(weights: dict, example_deltas: dict, example: dict, example_states: torch.Tensor | None):
            one = {k: v.unsqueeze(0) for k, v in example.items()}
            if example_states is not None:  # this example's own cached states, fed to its own forward
                prefix.feed(one["input_ids"], example_states.unsqueeze(0))
            if taps is not None:
                taps.deltas, taps.seen = example_deltas, {}
            try:
                loss = functional_call(wrapper, (weights, frozen), (one,), strict=False)[0]
                return loss, dict(taps.seen) if taps is not None else {}
            finally:
                self._untap()

        one_example = grad_and_value(example_loss, argnums=(0, 1), has_aux=True)
        (grads, token_grads), (losses, ids) = self._gradients(one_example, trainable, deltas, batch, states)
        self._accumulate(grads, token_grads, ids, named, rows)
        return losses.detach()

    def _gradients(self, one_example: Any, trainable: dict, deltas: dict, batch: dict[str, torch.Tensor],
                   states: torch.Tensor | None) -> Any:
        """((every example's gradient [rows, *shape] per trainable weight, per tapped embedding's output), (its
        loss [rows], the ids [rows, tokens] each tapped embedding looked up))."""
        if self.vectorised:
            try:
                return vmap(one_example, in_dims=(None, 0, 0, None if states is None else 0),
                            randomness="different")(trainable, deltas, batch, states)
            except RuntimeError as error:
                if "vmap" not in str(error):
                    raise
                warnings.warn("--dp-grad-sample func: this head's loss reads a tensor's value, which vmap cannot "
                              "batch; its per-example gradients are taken one example at a time", stacklevel=5)
                self.vectorised = False
        # The fallback: the same gradients, one example at a time.
        results = [one_example(trainable, {k: v[i] for k, v in deltas.items()}, {k: v[i] for k, v in batch.items()},
                               None if states is None else states[i]) for i in range(batch["input_ids"].shape[0])]
        return ((_stack([r[0][0] for r in results]), _stack([r[0][1] for r in results])),
                (torch.stack([r[1][0] for r in results]), _stack([r[1][1] for r in results])))

    def _accumulate(self, grads: dict[str, torch.Tensor], token_grads: dict[str, torch.Tensor],
                    ids: dict[str, torch.Tensor], named: dict[str, torch.Tensor], rows: int) -> None:
        squared = torch.zeros(rows, device=next(iter(named.values())).device)
        for g in grads.values():
            squared += g.reshape(rows, -1).pow(2).sum(dim=1)
        for name, looked_up in ids.items():  # a tapped table: |sum_t onehot(id_t) g_t^T|^2 over same-id pairs
            g = self._token_gradients(name, token_grads[name], looked_up)
            same = (looked_up[:, :, None] == looked_up[:, None, :]).to(g.dtype)
            squared += (torch.bmm(g, g.transpose(1, 2)) * same).sum(dim=(1, 2))
        factors = clip_factors(squared.sqrt(), self.clip)
        for name, g in grads.items():
            self._add_grad(named[name], torch.tensordot(factors.to(g.dtype), g, dims=1))
        for name, looked_up in ids.items():
            g = self._token_gradients(name, token_grads[name], looked_up)
            g = (g * factors[:, None, None].to(g.dtype)).reshape(-1, g.shape[-1])
            weight = named[f"{name}.weight"]
            self._add_grad(weight, torch.zeros_like(weight).index_add_(0, looked_up.reshape(-1), g))

    def _token_gradients(self, name: str, g: torch.Tensor, looked_up: torch.Tensor) -> torch.Tensor:
        """[rows, tokens, hidden]; zero where the token is the table's padding_idx (whose row never learns)."""
        padding = self.taps.modules[name].padding_idx if self.taps is not None else None
        return g if padding is None else g * (looked_up != padding).unsqueeze(-1).to(g.dtype)

    @staticmethod
    def _add_grad(p: torch.Tensor, clipped: torch.Tensor) -> None:
        p.grad = clipped if p.grad is None else p.grad + clipped


def _stack(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One dict of [rows, ...] tensors from one dict per example."""
    return {k: torch.stack([part[k] for part in parts]) for k in (parts[0] if parts else {})}

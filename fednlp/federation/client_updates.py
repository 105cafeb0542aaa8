"""Loading the global weights into the model before a client, and adding its weighted update afterwards.

Dense: one copy in and two fused passes out over the flat buffer per client.

Sparse word embeddings: most of a small BERT's weights are its word-embedding table (3.9M of tiny-bert's
4.4M), and a client's few local steps touch only the rows of the tokens it saw. When local training
provably leaves every other row bit-identical, only the touched rows are copied back and accumulated,
so the per-client cost follows the dense weights plus the client's vocabulary, not the whole table.
It is provable when: the gradient of an untouched row is exactly zero (the embedding is not tied to an
output layer), the optimizer moves a zero-gradient parameter by exactly zero (SGD without momentum or
weight decay, or AdamW with fresh state per client and no weight decay), and the algorithm's gradient
hook keeps such rows at zero (FedAvg's does nothing; FedProx's adds mu (w - w_global) = 0 there).
"""

from __future__ import annotations

import numpy as np
import torch

from fednlp.federation.flat import FlatParameters


class ClientUpdate:
    """One client's update between local training and accumulation, as an algorithm's hook sees it.

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


class DenseClientUpdates:
    def __init__(self, flat: FlatParameters, global_flat: torch.Tensor):
        self.flat = flat
        self.global_flat = global_flat

    def begin_round(self) -> None:
        """The model holds the global weights, whoever changed them since (server step, resume, a test)."""
        self.flat.flat.copy_(self.global_flat)

    def load_global(self) -> None:
        self.flat.flat.copy_(self.global_flat)

    def delta(self, touched_rows: np.ndarray | None = None) -> list[torch.Tensor]:
        """Turn the model's weights into the client's delta, in place; returns its parts (see ClientUpdate)."""
        self.flat.flat.sub_(self.global_flat)  # the model's weights are overwritten by the next client anyway
        return [self.flat.flat]

    def accumulate(self, updates: torch.Tensor, weight: float, parts: list[torch.Tensor]) -> None:
        updates.add_(parts[0], alpha=weight)

    def end_round(self) -> None:
        """After the server step: the model holds the new global weights (for evaluation)."""
        self.flat.flat.copy_(self.global_flat)


class SparseEmbeddingClientUpdates(DenseClientUpdates):
    """Dense for every weight but the word-embedding table, whose touched rows alone move."""

    def __init__(self, flat: FlatParameters, global_flat: torch.Tensor, embedding: torch.nn.Parameter):
        super().__init__(flat, global_flat)
        start, width = flat.offset_of(embedding), embedding.shape[1]
        end = start + embedding.numel()
        self.dense = [slice(0, start), slice(end, flat.numel)]
        self.table = slice(start, end)
        self.width = width
        self.dirty: torch.Tensor | None = None  # rows of the model's table that differ from the global table

    def _rows(self, buffer: torch.Tensor) -> torch.Tensor:
        return buffer[self.table].view(-1, self.width)

    def load_global(self) -> None:
        for part in self.dense:
            self.flat.flat[part].copy_(self.global_flat[part])
        if self.dirty is not None:
            self._rows(self.flat.flat)[self.dirty] = self._rows(self.global_flat)[self.dirty]
            self.dirty = None

    def delta(self, touched_rows: np.ndarray | None = None) -> list[torch.Tensor]:
        parts = []
        for part in self.dense:
            local = self.flat.flat[part]
            local.sub_(self.global_flat[part])
            parts.append(local)
        rows = torch.from_numpy(touched_rows).to(self.global_flat.device)
        parts.append(self._rows(self.flat.flat)[rows] - self._rows(self.global_flat)[rows])
        self.dirty = rows
        return parts

    def accumulate(self, updates: torch.Tensor, weight: float, parts: list[torch.Tensor]) -> None:
        for part, local in zip(self.dense, parts):
            updates[part].add_(local, alpha=weight)
        self._rows(updates).index_add_(0, self.dirty, parts[-1], alpha=weight)

    def begin_round(self) -> None:
        super().begin_round()
        self.dirty = None

    def end_round(self) -> None:
        super().end_round()
        self.dirty = None


def touched_rows(input_ids: np.ndarray) -> np.ndarray:
    """Vocabulary rows a client's batches read (padding included: a superset is always safe)."""
    return np.unique(input_ids).astype(np.int64)


def sparse_embedding(model: torch.nn.Module, flat: FlatParameters, config, algorithm) -> torch.nn.Parameter | None:
    """The word-embedding parameter when the sparse path is provably exact (module docstring), else None."""
    from fednlp.algorithms.base import Algorithm

    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = output is not None and output.weight is embedding
    if getattr(model.config, "is_encoder_decoder", False):
        # A decoder that reads the same table (BART, T5) also touches the targets' tokens.
        tied = tied or model.get_decoder().get_input_embeddings().weight is embedding
    trainable = any(p is embedding for p in flat.params)
    optimizer_exact = (config.weight_decay == 0 and config.optimizer in ("sgd", "adamw")
                       and type(algorithm).make_client_optimizer is Algorithm.make_client_optimizer)
    hook_exact = (type(algorithm).adjust_gradients is Algorithm.adjust_gradients
                  or getattr(algorithm, "keeps_untouched_rows", False))
    if tied or not trainable or not optimizer_exact or not hook_exact:
        return None
    return embedding

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

from typing import ClassVar

import numpy as np
import torch

from fednlp.algorithms.interface import Algorithm
from fednlp.federation.flat import FlatParameters


class DenseClientUpdates:
    sparse: ClassVar[bool] = False

    def __init__(self, flat: FlatParameters, global_flat: torch.Tensor):
        self.flat = flat
        self.global_flat = global_flat

    def begin_round(self) -> None:
        """The model holds the global weights, whoever changed them since (server step, resume, a test)."""
        self.flat.flat.copy_(self.global_flat)

    def load_global(self) -> None:
        self.flat.flat.copy_(self.global_flat)

    def delta(self, touched_rows: np.ndarray | None = None) -> list[torch.Tensor]:
        """Turn the model's weights into the client's delta, in place; returns its parts (see
        fednlp/algorithms/interface.py's ClientUpdate)."""
        self.flat.flat.sub_(self.global_flat)  # the model's weights are overwritten by the next client anyway
        return [self.flat.flat]

    def accumulate(self, updates: torch.Tensor, weight: float, parts: list[torch.Tensor]) -> None:
        updates.add_(parts[0], alpha=weight)

    def end_round(self) -> None:
        """After the server step: the model holds the new global weights (for evaluation)."""
        self.flat.flat.copy_(self.global_flat)


class SparseEmbeddingClientUpdates(DenseClientUpdates):
    """Dense for every weight but the word-embedding table, whose touched rows alone move."""

    sparse: ClassVar[bool] = True

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


def sparse_embedding(model: torch.nn.Module, flat: FlatParameters, config, algorithm: Algorithm
                     ) -> torch.nn.Parameter | None:
    """The word-embedding parameter when the sparse path is provably exact (module docstring), else None."""
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
                  or algorithm.keeps_untouched_rows)
    if tied or not trainable or not optimizer_exact or not hook_exact:
        return None
    return embedding


def make_client_updates(model: torch.nn.Module, flat: FlatParameters, global_flat: torch.Tensor, config,
                        algorithm: Algorithm) -> DenseClientUpdates:
    """The sparse word-embedding path where it is provably exact (`sparse_embedding`), else the dense one."""
    embedding = sparse_embedding(model, flat, config, algorithm)
    if embedding is None:
        return DenseClientUpdates(flat, global_flat)
    return SparseEmbeddingClientUpdates(flat, global_flat, embedding)

"""The model's trainable parameters as views into ONE flat buffer.

Copying the global weights into the model, taking a client's update and accumulating it are then a
single vectorised pass each over contiguous memory, instead of a loop over hundreds of tensors
(the cost that dominates rounds where each client does little work).
"""

from __future__ import annotations

import torch


class FlatParameters:
    """Re-seats every trainable parameter of `model` as a slice of `self.flat` (shared storage)."""

    def __init__(self, model: torch.nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]  # frozen ones are not communicated
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        first = self.params[0]
        total = sum(p.numel() for p in self.params)
        self.flat = torch.empty(total, dtype=first.dtype, device=first.device)
        offset = 0
        for p in self.params:
            n = p.numel()
            self.flat[offset : offset + n].copy_(p.data.reshape(-1))
            p.data = self.flat[offset : offset + n].view_as(p)
            offset += n

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def offset_of(self, param: torch.Tensor) -> int:
        """Where `param` starts in the flat buffer."""
        offset = 0
        for p in self.params:
            if p is param:
                return offset
            offset += p.numel()
        raise ValueError("not a trainable parameter of this model")

    def views_of(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """`buffer` (same layout as `flat`) cut into tensors shaped like each parameter."""
        views, offset = [], 0
        for p in self.params:
            n = p.numel()
            views.append(buffer[offset : offset + n].view_as(p))
            offset += n
        return views

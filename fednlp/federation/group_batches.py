"""One local step of a group of clients as one stacked batch: each client's own batch (Features.batch, as the
sequential path cuts it) padded to the group's widest row and its largest row count, [G, rows, width].

Nothing added changes a client's loss or gradient: added positions are padding (attention mask 0, label
ignored), and added rows are copies of the client's first row whose targets are ignored (-100, or for
extractive QA a position equal to the width, which the QA loss clamps to and ignores), so every head's mean
loss still counts exactly the client's own examples and tokens. The attention mask goes in as the 4-D additive
mask transformers builds itself (bidirectional, or causal for a decoder): built here, outside torch.vmap,
because transformers' own mask helpers branch on the mask's values, which vmap cannot do.
"""

from __future__ import annotations

import torch

IGNORE = -100  # the label torch's cross-entropy and transformers' heads skip
#: Targets whose ignored value is the batch's width (transformers' QA heads clamp positions to it and ignore it).
POSITION_TARGETS = ("start_positions", "end_positions")
#: Pad of the positions added to a sequence array (default 0: a pad token, no attention, token type 0).
SEQUENCE_PAD = {"labels": IGNORE}


def stack_batches(batches: list[dict[str, torch.Tensor]], sequence_keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Stack the clients' batches (same keys) into [G, rows, ...] tensors, padded as the module says."""
    width = max(int(b["input_ids"].shape[1]) for b in batches)
    rows = max(int(b["input_ids"].shape[0]) for b in batches)
    stacked = {}
    for key in batches[0]:
        parts = []
        for batch in batches:
            part = batch[key]
            if key in sequence_keys and part.shape[1] < width:
                part = torch.nn.functional.pad(part, (0, width - part.shape[1]), value=SEQUENCE_PAD.get(key, 0))
            if part.shape[0] < rows:
                filler = part[:1].expand(rows - part.shape[0], *part.shape[1:]).clone()
                if key == "labels":
                    filler.fill_(IGNORE)
                elif key in POSITION_TARGETS:
                    filler.fill_(width)
                part = torch.cat([part, filler])
            parts.append(part)
        stacked[key] = torch.stack(parts)
    return stacked


def additive_mask(attention_mask: torch.Tensor, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """[G, rows, width] 0/1 mask -> [G, rows, 1, width, width] additive mask (0 kept, dtype's minimum masked),
    what transformers' eager attention adds to its scores."""
    width = attention_mask.shape[-1]
    keep = attention_mask.bool()[..., None, None, :].expand(*attention_mask.shape[:-1], 1, width, width)
    if causal:
        keep = keep & torch.ones(width, width, dtype=torch.bool, device=attention_mask.device).tril()
    mask = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill_(~keep, torch.finfo(dtype).min)

"""`--cls-only-last-block`: a BERT classifier's last block computes only the [CLS] row its pooler reads.

A BERT-family sequence classifier reads the last block's output at position 0 only (BertPooler). That row needs
the block's keys and values over every token, but its query, attention, output projection and feed-forward at
one position: at 256 tokens about a seventh of the block's work, forward and backward, and its attention dropout
draws a [heads, 1, tokens] mask instead of [heads, tokens, tokens] (on a CPU the random draws of attention dropout
are a large share of a step). With `--freeze-layers K --cache-frozen` the last block is most of what a step still
computes, so this is where a cached step's time goes (benchmarks/README.md, "Cached frozen layers").

Exact in eval mode (evaluation, and training without dropout): the logits and the gradients are those of the full
block (tests/test_cls_only.py, 1e-5). In training with dropout the run has the same distribution but not the same
random stream as without the option (fewer masks are drawn), so a seed gives other weights: the option is off by
default and config.yaml records it.

Like the frozen prefix (fednlp/tasks/frozen_prefix.py) the forward is patched on the instance: the state dict,
save_pretrained and the saved model are the unmodified architecture.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from fednlp.errors import UserError

ATTENTION = ("eager", "sdpa")  # the attention functions whose query may be shorter than the keys


def cls_only_last_block(model: torch.nn.Module, model_name: str) -> None:
    """Make `model`'s last encoder block compute only the first row, or raise a one-line UserError."""
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    kind = getattr(config, "model_type", type(model).__name__)
    classifier = type(model).__name__.endswith("SequenceClassification")
    if (kind != "bert" or getattr(config, "is_decoder", False) or getattr(base, "pooler", None) is None
            or not isinstance(layers, torch.nn.ModuleList) or not classifier):
        raise UserError(f"--cls-only-last-block: --model {model_name!r} ({kind}) is not a BERT-family sequence "
                        "classifier with a pooler (the option needs one); leave it off")
    if config._attn_implementation not in ATTENTION:
        raise UserError(f"--cls-only-last-block: attention implementation {config._attn_implementation!r}; "
                        f"expected one of {', '.join(ATTENTION)}")
    last = layers[-1]
    if not any(p.requires_grad for p in last.parameters()):
        raise UserError("--cls-only-last-block needs the last block trainable: --freeze-layers must be below the "
                        f"model's {len(layers)} blocks")
    last.forward = types.MethodType(_first_row_forward, last)


def _first_row_forward(layer: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       *args: Any, **kwargs: Any) -> torch.Tensor:
    """BertLayer's forward for the output's first row only: [batch, 1, hidden]."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    attention = layer.attention.self
    first = hidden_states[:, :1]
    heads = (*hidden_states.shape[:-2], -1, attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(first).view(*heads).transpose(-3, -2)
    key = attention.key(hidden_states).view(*heads).transpose(-3, -2)
    value = attention.value(hidden_states).view(*heads).transpose(-3, -2)
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]  # the query row's mask ([.., 1, tokens] stays as it is)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    context, _ = attend(attention, query, key, value, attention_mask,
                        dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling)
    context = context.reshape(*first.shape[:-1], -1)
    return layer.feed_forward_chunk(layer.attention.output(context, first))

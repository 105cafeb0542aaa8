"""Canary extraction from a text classifier by white-box model inversion, after ModIvA (Parikh, Dupuy and
Gupta, "Canary Extraction in Natural Language Understanding Models", ACL 2022).

The attacker knows the template, where the secret goes and how many tokens it has, and the canary's label.
Each secret slot becomes a distribution over tokens, a softmax of free logits (over the ten digit tokens when
the secrets are digit codes, else over the whole vocabulary); the slot's input embedding is the expected
embedding under it. Adam maximises the label's log-probability through `inputs_embeds`, of the relaxed
input and of its argmax tokens (a straight-through estimate); the argmax token of each slot is the guess. The best of a few random restarts (by the loss of its decoded tokens) is kept.
Reported: per-slot accuracy and full recovery, with the budget (steps, learning rate, restarts) beside them.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednlp.audit.secrets import fill


@dataclass(frozen=True)
class ExtractionBudget:
    steps: int = 300
    lr: float = 0.1
    restarts: int = 3

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "optimizer": "adam", "relaxation": "softmax over slot tokens, expected embedding"}


def secret_slots(tokenizer: Any, template: str, secret: str, max_length: int) -> tuple[list[int], list[int], int]:
    """(input ids of the filled template, positions of the secret's tokens, where the secret starts in them)."""
    text = fill(template, secret)
    encoded = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    start = template.index("{secret}")
    end = start + len(secret)
    slots = [i for i, (s, e) in enumerate(encoded["offset_mapping"]) if e > s and s >= start and e <= end]
    return list(encoded["input_ids"]), slots, start


def slot_vocabulary(tokenizer: Any, choices: tuple[str, ...] | None, true_tokens: list[int]) -> torch.Tensor | None:
    """Token ids a slot may hold: the choices' tokens when each is one token holding every true token; None:
    the whole vocabulary."""
    if choices is None:
        return None
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    if any(len(i) != 1 for i in ids) or not set(true_tokens) <= {i[0] for i in ids}:
        return None
    return torch.tensor([i[0] for i in ids], dtype=torch.long)


def invert(model: torch.nn.Module, input_ids: list[int], slots: list[int], label: int, allowed: torch.Tensor | None,
           budget: ExtractionBudget, seed: int, device: torch.device) -> tuple[list[int], float]:
    """The decoded slot tokens of the best restart and their (discrete) loss."""
    embeddings = model.get_input_embeddings().weight.detach()
    allowed = torch.arange(embeddings.shape[0]) if allowed is None else allowed
    choices = embeddings[allowed.to(embeddings.device)]
    ids = torch.tensor([input_ids], dtype=torch.long, device=device)
    base = embeddings[ids[0]].clone()
    mask = torch.ones_like(ids)
    target = torch.tensor([label], device=device)
    slot_index = torch.tensor(slots, device=device)
    generator = torch.Generator().manual_seed(seed)
    # The text's segment ids are all 0 (one sentence), as its features were; models without segments take none.
    token_types = ({"token_type_ids": torch.zeros_like(ids)}
                   if "token_type_ids" in inspect.signature(model.forward).parameters else {})

    def loss_of(slot_embeddings: torch.Tensor) -> torch.Tensor:
        embeds = base.index_copy(0, slot_index, slot_embeddings)[None]
        logits = model(inputs_embeds=embeds, attention_mask=mask, **token_types).logits
        return F.cross_entropy(logits.float(), target)

    best: tuple[list[int], float] | None = None
    for _ in range(budget.restarts):
        logits = (torch.randn(len(slots), len(allowed), generator=generator) * 0.1).to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=budget.lr)
        for _ in range(budget.steps):
            optimizer.zero_grad()
            probabilities = torch.softmax(logits, dim=-1)
            # Straight-through: the model also sees the argmax tokens (what it was trained on), with the
            # relaxation's gradient, so the optimum is not a mixture no real token sequence reaches.
            hard = F.one_hot(probabilities.argmax(dim=-1), len(allowed)).to(probabilities.dtype)
            straight_through = hard + probabilities - probabilities.detach()
            (loss_of(probabilities @ choices) + loss_of(straight_through @ choices)).backward()
            optimizer.step()
        decoded = allowed[logits.detach().argmax(dim=-1).cpu()]
        with torch.no_grad():
            discrete = float(loss_of(embeddings[decoded.to(embeddings.device)]))
        if best is None or discrete < best[1]:
            best = (decoded.tolist(), discrete)
    assert best is not None
    return best


def extract_canaries(model: torch.nn.Module, tokenizer: Any, template: str, canaries: list[dict[str, Any]],
                     label: int, slot_choices: tuple[str, ...] | None, max_length: int, budget: ExtractionBudget,
                     seed: int, device: torch.device) -> list[dict[str, Any]]:
    """Per canary: the guessed secret, per-slot accuracy and whether it was fully recovered."""
    model.eval()
    model.requires_grad_(False)  # only the slot logits are optimised
    out = []
    for canary in canaries:
        input_ids, slots, _ = secret_slots(tokenizer, template, canary["secret"], max_length)
        true_tokens = [input_ids[i] for i in slots]
        allowed = slot_vocabulary(tokenizer, slot_choices, true_tokens)
        with torch.enable_grad():
            guessed, loss = invert(model, input_ids, slots, label, allowed, budget, seed + int(canary["id"]), device)
        right = np.array(guessed) == np.array(true_tokens)
        out.append({"id": int(canary["id"]), "guess": tokenizer.decode(guessed), "slots": len(slots),
                    "slot_accuracy": float(right.mean()) if len(slots) else 0.0,
                    "recovered": bool(len(slots) and right.all()), "loss": loss,
                    "search_space": "slot choices" if allowed is not None else "vocabulary"})
    return out

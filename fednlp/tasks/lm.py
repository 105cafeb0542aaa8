"""Causal language modelling (`--task lm`): next-token prediction on the text of any text data file;
perplexity (primary, lower is better) and next-token accuracy.

The task of the federated deployments that trained on real users' data (Dupuy et al., "Learnings from
federated learning in the real world", ICASSP 2022) and of most federated privacy work (Secret Sharer's
canaries). The text is the data file's text field: X of text classification, the source X of seq2seq, the
joined tokens of sequence tagging. Each example is one row, truncated to --max-seq-length tokens and never
packed with another, so an example stays a unit that one client (one user) owns.

Models: AutoModelForCausalLM from a hub name or local directory (GPT-2, ...), `tiny-gpt2` built from a config,
or an encoder checkpoint (`minilm`, `tiny-bert`) turned into a causal decoder (is_decoder=True).

Metrics are token sums: each row's prediction is (summed negative log-likelihood of its predicted tokens,
their number, how many the argmax got right), and compute_metrics adds them over every gathered row, so a
sharded evaluation gives the single-process numbers. Perplexity is exp(total NLL / total tokens), over the
corpus as in language-modelling papers, not a mean of per-text perplexities.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednlp.errors import UserError
from fednlp.tasks.base import Features, Task
from fednlp.tasks.models import build_auto_model
from fednlp.tasks.registry import register_task

IGNORE = -100  # label of padding: no loss (transformers' convention)

#: data file task_type -> its text field
TEXT_FIELDS = {"text_classification": "X", "seq2seq": "X", "sequence_tagging": "X"}

#: Logits of at most this many floats at once when evaluating (rows x tokens x vocabulary: 64 rows of 128
#: tokens over a 30k vocabulary would be 1 GB).
_LOGIT_BUDGET = 2**25


@register_task
class CausalLM(Task):
    name = "lm"
    task_type = "language_modeling"  # no data file has it: --task lm is always asked for, never inferred
    data_task_types = tuple(TEXT_FIELDS)  # the data files it reads (registry.resolve_task)
    primary_metric = "perplexity"
    greater_is_better = False
    scores_canaries = True
    bytes_per_token = 9  # ids and labels int32, attention mask int8

    def texts(self) -> list[str]:
        task_type = self.data.task_type
        if task_type not in TEXT_FIELDS:
            raise UserError(f"--task lm reads the text of {', '.join(TEXT_FIELDS)} data, not {task_type}")
        return [" ".join(map(str, v)) if isinstance(v, list) else str(v) for v in self.data.fields[TEXT_FIELDS[task_type]]]

    def build_features(self) -> Features:
        texts = self.texts()
        ids = np.full((len(texts), self.max_length), self._pad_id(), dtype=np.int32)
        lengths = np.zeros(len(texts), dtype=np.int32)
        for start in range(0, len(texts), 500):  # the tokenizer's encodings of a chunk only (memory)
            encoded = self.tokenizer(texts[start : start + 500], truncation=True, max_length=self.max_length,
                                     return_attention_mask=False)["input_ids"]
            for row, tokens in enumerate(encoded, start):
                ids[row, : len(tokens)] = tokens
                lengths[row] = len(tokens)
        mask = (np.arange(self.max_length)[None, :] < lengths[:, None]).astype(np.int8)
        return Features(
            arrays={"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, IGNORE).astype(np.int32)},
            lengths=np.maximum(lengths, 1),  # an empty text still makes a batch of width one (all padding)
            example_of_row=np.arange(len(texts), dtype=np.int64),
            sequence_arrays=("input_ids", "attention_mask", "labels"),
        )

    def _pad_id(self) -> int:
        """GPT-2's tokenizer has no padding token; padded positions are masked and never predicted, so any id does."""
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def build_model(self, model_name: str) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        # is_decoder: a BERT checkpoint becomes BertLMHeadModel with a causal mask; GPT-2 ignores it.
        return build_auto_model(AutoModelForCausalLM, model_name, is_decoder=True)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of every real next token of the batch (the model shifts the labels)."""
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss

    def example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each row's mean next-token cross-entropy, [rows] (membership inference and canary exposure score
        examples by it: Secret Sharer's setting)."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:].long()
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        return nll.sum(dim=1) / (targets != IGNORE).sum(dim=1).clamp(min=1)

    def scored_tokens(self, features: Features, rows: np.ndarray) -> np.ndarray:
        """Each row's predicted tokens: every real token but the first (example_losses' denominator)."""
        return np.maximum((features.arrays["labels"][rows, 1:] != IGNORE).sum(axis=1), 1)

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Any]:
        """Per row: (summed NLL of its next tokens, their number, argmax hits), a few rows at a time."""
        width = batch["input_ids"].shape[1]
        step = max(1, _LOGIT_BUDGET // (width * model.get_input_embeddings().num_embeddings))
        out: list[Any] = []
        for start in range(0, len(rows), step):
            part = slice(start, start + step)
            logits = model(input_ids=batch["input_ids"][part], attention_mask=batch["attention_mask"][part]).logits
            out += token_statistics(logits[:, :-1].float(), batch["labels"][part, 1:])
        return out

    def compute_metrics(self, rows: np.ndarray, predictions: list[Any], features: Features) -> dict[str, float]:
        return lm_metrics(predictions)


def token_statistics(logits: torch.Tensor, targets: torch.Tensor) -> list[tuple[float, int, int]]:
    """(summed NLL, token count, argmax hits) per row of [rows, tokens, vocabulary] logits and their targets."""
    real = targets != IGNORE
    nll = F.cross_entropy(logits.transpose(1, 2), targets.long(), ignore_index=IGNORE, reduction="none")
    hits = (logits.argmax(dim=-1) == targets) & real
    sums = nll.double().sum(dim=1).tolist()
    return [(s, int(n), int(h)) for s, n, h in zip(sums, real.sum(dim=1).tolist(), hits.sum(dim=1).tolist())]


def lm_metrics(predictions: list[Any]) -> dict[str, float]:
    """Perplexity exp(NLL / tokens), next-token accuracy and the mean token cross-entropy (nats)."""
    tokens = sum(n for _, n, _ in predictions)
    if tokens == 0:
        return {"perplexity": float("nan"), "next_token_accuracy": float("nan"), "cross_entropy": float("nan")}
    cross_entropy = math.fsum(s for s, _, _ in predictions) / tokens
    return {
        "perplexity": math.exp(cross_entropy),
        "next_token_accuracy": sum(h for _, _, h in predictions) / tokens,
        "cross_entropy": cross_entropy,
    }

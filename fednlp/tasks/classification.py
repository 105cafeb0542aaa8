"""Text classification: one label per text; accuracy (primary) and macro-F1 (scikit-learn's convention)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score

from fednlp.tasks.base import TOKEN_DTYPES, Features, Task, tokenize_in_chunks
from fednlp.tasks.models import build_auto_model, label_head
from fednlp.tasks.registry import register_task


@register_task
class TextClassification(Task):
    name = "classification"
    task_type = "text_classification"
    primary_metric = "accuracy"
    scores_canaries = True
    extracts_canaries = True

    def build_features(self) -> Features:
        texts = self.data.fields["X"]
        arrays = tokenize_in_chunks(
            lambda chunk: self.tokenizer(chunk, truncation=True, max_length=self.max_length),
            texts, pad_values={"input_ids": self.tokenizer.pad_token_id or 0}, dtypes=TOKEN_DTYPES,
        )
        vocab = self.data.label_vocab
        labels = np.array([vocab[y] for y in self.data.fields["Y"]], dtype=np.int64)
        arrays["labels"] = labels
        return Features(
            arrays=arrays,
            lengths=arrays["attention_mask"].sum(axis=1).astype(np.int32),
            example_of_row=np.arange(len(texts), dtype=np.int64),
        )

    def build_model(self, model_name: str) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        return build_auto_model(AutoModelForSequenceClassification, model_name, **label_head(self.data.label_vocab))

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Any]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits.argmax(dim=-1).tolist()

    def example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of each text's label."""
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        return torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")

    def compute_metrics(self, rows: np.ndarray, predictions: list[Any], features: Features) -> dict[str, float]:
        labels = features.arrays["labels"][rows]
        predicted = np.asarray(predictions)
        return {
            "accuracy": float((predicted == labels).mean()),
            "macro_f1": macro_f1(labels, predicted),
        }


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's f1_score(average="macro"): the mean F1 over the labels present in the references or
    the predictions. A class of the vocabulary that neither holds is left out, not counted as F1 = 0 (which
    would make the score depend on the size of the evaluated subset)."""
    return float(f1_score(labels, predicted, average="macro", zero_division=0))

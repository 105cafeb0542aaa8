"""Sequence tagging (NER): a tag per word; span-level F1 (primary), precision and recall from seqeval.

Words are split into sub-tokens; only a word's first sub-token carries its label (the others, the special
tokens and the padding get -100, ignored by the loss), and the prediction at that sub-token is the word's
prediction. A sentence longer than the model input is cut into several rows ("windows") of whole
consecutive words, so every word is predicted exactly once and the metric is computed on every gold tag.
The metric is seqeval's CoNLL definition (Tjong Kim Sang & De Meulder, 2003): an entity counts only if its
type and both boundaries match.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fednlp.tasks.base import Features, Task
from fednlp.tasks.models import build_auto_model, label_head
from fednlp.tasks.registry import register_task

IGNORE = -100  # the label id torch's cross-entropy skips
WINDOWING = "whole-words-v1"  # bump when the windowing or labelling below changes the features


@register_task
class SequenceTagging(Task):
    name = "tagging"
    task_type = "sequence_tagging"
    primary_metric = "f1"
    bytes_per_token = 8  # and an int16 label per token

    def build_features(self) -> Features:
        sentences, counts = self._tokenizable(self.data.fields["X"])
        capacity = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        windows = [(example, first, last)
                   for example, sentence_counts in enumerate(counts)
                   for first, last in word_windows(sentence_counts, capacity)]
        encoded = self.tokenizer(
            [sentences[example][first:last] for example, first, last in windows], is_split_into_words=True,
            truncation=True, max_length=self.max_length, padding="longest",  # the data's longest, not the max
        )
        vocab = self.data.label_vocab
        labels = np.full((len(windows), len(encoded["input_ids"][0]) if windows else 0), IGNORE, dtype=np.int16)
        for row, (example, first, last) in enumerate(windows):
            positions, words = first_subtokens(encoded.word_ids(row))
            # Each window holds whole words that fit, so each of its words keeps its first sub-token.
            assert np.array_equal(words, np.arange(last - first)), f"example {example}: words lost in windowing"
            tags = self.data.fields["Y"][example]
            labels[row, positions] = [vocab[tags[first + w]] for w in words]
        arrays = {"input_ids": np.asarray(encoded["input_ids"], dtype=np.int32),
                  "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int8)}
        if "token_type_ids" in encoded:
            arrays["token_type_ids"] = np.asarray(encoded["token_type_ids"], dtype=np.int8)
        arrays["labels"] = labels
        arrays["first_word"] = np.array([first for _, first, _ in windows], dtype=np.int32)
        return Features(
            arrays=arrays,
            lengths=arrays["attention_mask"].sum(axis=1).astype(np.int32),
            example_of_row=np.array([example for example, _, _ in windows], dtype=np.int64),
            sequence_arrays=("input_ids", "attention_mask", "token_type_ids", "labels"),
            host_arrays=("first_word",),
        )

    def _tokenizable(self, sentences: list[list[str]]) -> tuple[list[list[str]], list[np.ndarray]]:
        """The sentences with every word the tokenizer turns into nothing (e.g. a lone emoji variation
        selector) replaced by its unknown token, so that it too gets a sub-token and a prediction; and the
        sub-token count of each word."""
        sentences = [list(words) for words in sentences]
        counts = self._subtoken_counts(sentences)
        silent = [i for i, n in enumerate(counts) if not n.all()]
        unknown = self.tokenizer.unk_token or "?"
        for i in silent:
            sentences[i] = [word if n else unknown for word, n in zip(sentences[i], counts[i])]
        for i, n in zip(silent, self._subtoken_counts([sentences[i] for i in silent])):
            assert n.all(), f"example {i}: a word still has no sub-token after replacing it by {unknown!r}"
            counts[i] = n
        return sentences, counts

    def _subtoken_counts(self, sentences: list[list[str]]) -> list[np.ndarray]:
        if not sentences:
            return []
        encoded = self.tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
        counts = []
        for i, words in enumerate(sentences):
            word_ids = np.array([w for w in encoded.word_ids(i) if w is not None], dtype=np.int64)
            counts.append(np.bincount(word_ids, minlength=len(words)))
        return counts

    def build_model(self, model_name: str) -> torch.nn.Module:
        from transformers import AutoModelForTokenClassification

        return build_auto_model(AutoModelForTokenClassification, model_name, **label_head(self.data.label_vocab))

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Any]:
        """Per row, the predicted label ids of its labelled positions: one per word of the window, in order."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        predicted = model(**inputs).logits.argmax(dim=-1).cpu().numpy()
        labelled = (batch["labels"] != IGNORE).cpu().numpy()
        return [p[mask].tolist() for p, mask in zip(predicted, labelled)]

    def example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over each row's labelled tokens (each word's first sub-token)."""
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        labels = batch["labels"].long()
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE,
                                                      reduction="none")
        labelled = (labels != IGNORE).sum(dim=1).clamp(min=1)
        return per_token.sum(dim=1) / labelled

    def compute_metrics(self, rows: np.ndarray, predictions: list[Any], features: Features) -> dict[str, float]:
        from seqeval.metrics import accuracy_score
        from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

        tag_of = {i: label for label, i in self.data.label_vocab.items()}
        gold_tags = self.data.fields["Y"]  # once: a lazily read column is a mapping lookup away
        by_example: dict[int, list[str | None]] = {}
        rows = np.asarray(rows, dtype=np.int64)
        row_examples, row_firsts = features.example_of_row[rows].tolist(), features.arrays["first_word"][rows].tolist()
        for example, first, predicted in zip(row_examples, row_firsts, predictions):
            words = by_example.setdefault(example, [None] * len(gold_tags[example]))
            for offset, label_id in enumerate(predicted):
                assert words[first + offset] is None, f"example {example}: word {first + offset} predicted twice"
                words[first + offset] = tag_of[label_id]
        examples = sorted(by_example)
        y_true = [list(gold_tags[e]) for e in examples]
        y_pred = [by_example[e] for e in examples]
        for e, tags in zip(examples, y_pred):
            assert None not in tags, f"example {e}: word {tags.index(None)} has no prediction"
        # One pass over the entities for all three (seqeval's f1/precision/recall_score each redo it: the
        # three passes cost 60% of a tiny model's forward over the same sentences).
        precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
        return {
            "f1": float(f1),
            "precision": float(precision),
            "recall": float(recall),
            "accuracy": float(accuracy_score(y_true, y_pred)),
        }

    def cache_key(self) -> str:
        return f"{self.name}-{WINDOWING}-{sorted(self.data.label_vocab.items())}"


def word_windows(subtoken_counts: np.ndarray, capacity: int) -> list[tuple[int, int]]:
    """[first, last) word ranges of consecutive whole words whose sub-tokens fit `capacity`, covering
    every word once; a word longer than `capacity` alone gets a window (the tokenizer cuts its tail, its
    first sub-token, which carries its label, stays)."""
    if len(subtoken_counts) == 0:
        return []  # an empty sentence has nothing to predict, so it gets no row
    windows: list[tuple[int, int]] = []
    first, used = 0, 0
    for word, n in enumerate(subtoken_counts.tolist()):
        if word > first and used + n > capacity:
            windows.append((first, word))
            first, used = word, 0
        used += n
    windows.append((first, len(subtoken_counts)))
    return windows


def first_subtokens(word_ids: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each word's first sub-token and the words they start."""
    words = np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)
    starts = np.flatnonzero((words >= 0) & (words != np.concatenate(([-1], words[:-1]))))
    return starts, words[starts]

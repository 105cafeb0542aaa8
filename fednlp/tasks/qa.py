"""Extractive question answering (SQuAD, MRQA, SubjQA): a start and an end logit per token; EM and F1.

Features follow the standard SQuAD pipeline (BERT's run_squad, HF's run_qa): each question is paired with
its context, and a context longer than the window is cut into overlapping windows of `max_seq_length`
tokens that share `doc_stride` context tokens (the overlap, HF's `stride`). One feature row per window,
rows in question order. A window is trained towards the answer's first and last token when the answer
lies wholly inside it, else towards the CLS token. Questions longer than 64 tokens (or half the window,
if smaller) are cut to that many, as BERT's max_query_length does, so every window keeps context room.

Prediction keeps the 20 best start and end tokens of every window; the metric turns them into one answer
per question over all its windows: the best-scoring span (start + end logit) whose tokens lie in the
context, end >= start, at most `max_answer_length` tokens long, read from the context by the tokens'
character offsets.

Unanswerable questions (SubjQA's, SQuAD v2.0's: no reference answer) are kept, SQuAD v2.0 style: every
window of them trains towards CLS, and when the data file holds any such question the answer is empty
whenever the null score (the smallest CLS start + end logit over the question's windows) beats the best
span (HF run_qa's rule with threshold 0). Data without unanswerables (SQuAD v1.1, MRQA) always gets the
best span, as SQuAD v1.1 scoring expects.

Metric: exact match and F1 of the official SQuAD v1.1 evaluation script (Rajpurkar et al. 2016): answers
normalised (lower case, no punctuation, no articles a/an/the, single spaces), the best over every
reference answer, averaged over questions (not windows, not answer rows) and reported as fractions in
[0, 1] like every other fednlp metric (SQuAD's papers print them times 100). An unanswerable question
scores 1 only for an empty answer (the SQuAD v2.0 convention).

A question is a question id where the data file has one: FedNLP's files hold one row per reference
answer (`question_ids/<i>`, the same question and context in each), so its rows are grouped, the
question answered once (by its first row's prediction: every row has the same input) and scored
against the references of all its rows, as the official script scores a question with several answers.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any

import numpy as np
import torch

from fednlp.errors import UserError
from fednlp.tasks.base import Features, Task
from fednlp.tasks.models import build_auto_model
from fednlp.tasks.registry import register_task

TOP_K = 20  # candidate start and end tokens kept per window (HF's n_best_size)
MAX_QUESTION_TOKENS = 64  # BERT's max_query_length
LABELS = ("start_positions", "end_positions")

# A window's candidates: start token indices, their logits, end token indices, their logits, null score.
Candidates = tuple[list[int], list[float], list[int], list[float], float]


# ---------------------------------------------------------------- the official SQuAD v1.1 EM and F1


_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def f1_score(prediction: str, reference: str) -> float:
    """Bag-of-tokens F1 between the normalised answers (0 when they share no token)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    same = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def question_scores(prediction: str, references: list[str]) -> tuple[float, float]:
    """(EM, F1) of one question, each the best over its references; no reference: right iff empty."""
    if not references:
        empty = float(normalize_answer(prediction) == "")
        return empty, empty
    return (max(exact_match_score(prediction, r) for r in references),
            max(f1_score(prediction, r) for r in references))


# ---------------------------------------------------------------- windows <-> character spans


def answer_token_positions(offsets: np.ndarray, spans: np.ndarray, cls_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end token of each row's answer, or the CLS index when the answer is not wholly inside.

    offsets: [rows, length, 2] character offsets, -1 for every non-context token.
    spans: [rows, 2] the answer's [start, end) characters, [-1, -1] when unanswerable.
    """
    in_context = offsets[:, :, 0] >= 0
    first = np.where(in_context, offsets[:, :, 0], np.iinfo(np.int32).max).min(axis=1)
    last = np.where(in_context, offsets[:, :, 1], -1).max(axis=1)
    start_char, end_char = spans[:, 0], spans[:, 1]
    inside = (start_char >= 0) & (first <= start_char) & (last >= end_char)
    # The last context token starting at or before the answer, the first one ending at or after it.
    starts_before = in_context & (offsets[:, :, 0] <= start_char[:, None])
    start_token = offsets.shape[1] - 1 - np.argmax(starts_before[:, ::-1], axis=1)
    end_token = np.argmax(in_context & (offsets[:, :, 1] >= end_char[:, None]), axis=1)
    return np.where(inside, start_token, cls_index), np.where(inside, end_token, cls_index)


def best_span(windows: list[tuple[np.ndarray, Candidates]], max_answer_length: int,
              null_answers: bool) -> tuple[int, int] | None:
    """The [start, end) characters of the best valid span over a question's windows (None: no answer).

    windows: (offsets of the window, its candidates), in window order; ties go to the earlier window,
    then the higher-ranked start, then end.
    """
    best_score, best, null_score = -np.inf, None, np.inf
    for offsets, (start_index, start_logit, end_index, end_logit, null) in windows:
        null_score = min(null_score, null)
        starts, ends = np.asarray(start_index), np.asarray(end_index)
        length = ends[None, :] - starts[:, None] + 1
        valid = ((offsets[starts, 0] >= 0)[:, None] & (offsets[ends, 0] >= 0)[None, :]
                 & (length >= 1) & (length <= max_answer_length))
        if not valid.any():
            continue
        scores = np.where(valid, np.add.outer(np.asarray(start_logit), np.asarray(end_logit)), -np.inf)
        i, j = np.unravel_index(np.argmax(scores), scores.shape)
        if scores[i, j] > best_score:
            best_score, best = float(scores[i, j]), (int(offsets[starts[i], 0]), int(offsets[ends[j], 1]))
    if best is None or (null_answers and null_score > best_score):
        return None
    return best


# ---------------------------------------------------------------- the task


@register_task
class ExtractiveQA(Task):
    name = "qa"
    task_type = "span_extraction"
    primary_metric = "f1"
    text_pairs = True
    loss_ignores_padding = False  # the start/end softmax runs over every position of the batch, padding included

    def __init__(self, data, tokenizer, config):
        super().__init__(data, tokenizer, config)
        if not getattr(tokenizer, "is_fast", False):
            raise UserError(f"--task qa needs a fast tokenizer (it maps tokens to characters); "
                            f"--model {config.model!r} has only a slow one")
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        self.max_question_tokens = max(1, min(MAX_QUESTION_TOKENS, (self.max_length - specials) // 2))
        self.question_of = question_of_example(data.fields)
        self.references = _references(data.fields, self.question_of)
        self.null_answers = any(not refs for refs in self.references)

    def estimated_feature_bytes(self) -> int:
        """Every context cut into windows that each bring (max length - question - stride) new context
        tokens, counted in UTF-8 bytes (no token is shorter); offsets add 8 bytes per token."""
        room = max(1, self.max_length - self.tokenizer.num_special_tokens_to_add(pair=True)
                   - self.max_question_tokens - self.config.doc_stride)
        rows = sum(1 + len(context.encode()) // room for context in self.data.fields["context_X"])
        return rows * self.max_length * (self.bytes_per_token + 8)

    def cache_key(self) -> str:
        return f"{self.name}-stride{self.config.doc_stride}-question{self.max_question_tokens}"

    def build_features(self) -> Features:
        fields = self.data.fields
        questions = self._capped_questions(fields["question_X"])
        encoded = self.tokenizer(
            questions, fields["context_X"], truncation="only_second", max_length=self.max_length,
            stride=self.config.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
            padding="longest", return_tensors="np",  # the longest window the data has, not the max length
        )
        example_of_row = encoded["overflow_to_sample_mapping"].astype(np.int64)
        input_ids = encoded["input_ids"].astype(np.int32)
        offsets = encoded["offset_mapping"].astype(np.int32)
        in_context = np.array([e.sequence_ids for e in encoded.encodings], dtype=object) == 1
        offsets[~in_context] = -1  # question, special and padding tokens are never part of an answer
        spans = np.asarray([y if len(y) == 2 else (-1, -1) for y in fields["Y"]], dtype=np.int64).reshape(-1, 2)
        starts, ends = answer_token_positions(offsets, spans[example_of_row], self._cls_index(input_ids))
        arrays = {"input_ids": input_ids, "attention_mask": encoded["attention_mask"].astype(np.int8)}
        if "token_type_ids" in encoded:
            arrays["token_type_ids"] = encoded["token_type_ids"].astype(np.int8)
        arrays.update(start_positions=starts.astype(np.int32), end_positions=ends.astype(np.int32), offsets=offsets)
        return Features(
            arrays=arrays,
            lengths=arrays["attention_mask"].sum(axis=1).astype(np.int32),
            example_of_row=example_of_row,
            host_arrays=("offsets",),
        )

    def _capped_questions(self, questions: list[str]) -> list[str]:
        """Questions cut to max_question_tokens tokens; checks that doc_stride leaves new context per window."""
        cap = self.max_question_tokens
        offsets = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        capped = [q if len(o) <= cap else q[: o[cap - 1][1]] for q, o in zip(questions, offsets)]
        longest = max((len(ids) for ids in self.tokenizer(capped, add_special_tokens=False)["input_ids"]), default=0)
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=True) - longest
        if self.config.doc_stride >= room:
            raise UserError(
                f"--doc-stride {self.config.doc_stride} must be less than the {room} context tokens a window holds "
                f"(--max-seq-length {self.max_length} minus special tokens and the longest question, {longest} "
                "tokens): it is the overlap between windows; e.g. --max-seq-length 384 --doc-stride 128"
            )
        return capped

    def _cls_index(self, input_ids: np.ndarray) -> np.ndarray | int:
        cls = self.tokenizer.cls_token_id
        return 0 if cls is None else np.argmax(input_ids == cls, axis=1)

    def build_model(self, model_name: str) -> torch.nn.Module:
        from transformers import AutoModelForQuestionAnswering

        return build_auto_model(AutoModelForQuestionAnswering, model_name)

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Candidates]:
        """The TOP_K start and end tokens of each window with their logits, and its null (CLS) score.

        Tokens are mapped to characters in compute_metrics, which sees the offsets (predict gets no Features).
        """
        out = model(**{k: v for k, v in batch.items() if k not in LABELS})
        padding = batch["attention_mask"] == 0
        start = out.start_logits.float().masked_fill(padding, -torch.inf)
        end = out.end_logits.float().masked_fill(padding, -torch.inf)
        cls = self.tokenizer.cls_token_id
        arange = torch.arange(start.shape[0], device=start.device)
        cls_index = (batch["input_ids"] == cls).int().argmax(dim=1) if cls is not None else torch.zeros_like(arange)
        null = (start[arange, cls_index] + end[arange, cls_index]).tolist()
        k = min(TOP_K, start.shape[1])
        start_logit, start_index = start.topk(k, dim=1)
        end_logit, end_index = end.topk(k, dim=1)
        return list(zip(start_index.tolist(), start_logit.tolist(), end_index.tolist(), end_logit.tolist(), null))

    def example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Span loss of each window: (cross-entropy of the start token + of the end token) / 2, as in training."""
        out = model(**{k: v for k, v in batch.items() if k not in LABELS})
        padding = batch["attention_mask"] == 0
        start = out.start_logits.float().masked_fill(padding, -torch.inf)
        end = out.end_logits.float().masked_fill(padding, -torch.inf)
        ce = torch.nn.functional.cross_entropy
        return (ce(start, batch["start_positions"], reduction="none")
                + ce(end, batch["end_positions"], reduction="none")) / 2

    def reduce_row_losses(self, losses: np.ndarray, features: Features, rows: np.ndarray) -> np.ndarray:
        """A question's loss is that of the window holding its answer (the lowest if several do); a question
        whose answer no window holds (unanswerable, or cut off) takes its lowest window loss."""
        from fednlp.tasks.base import example_starts

        rows = np.asarray(rows)
        answered = features.arrays["start_positions"][rows] != self._cls_index(features.arrays["input_ids"][rows])
        first = example_starts(features.example_of_row[rows])
        best_answered = np.minimum.reduceat(np.where(answered, losses, np.inf), first)
        return np.where(np.isfinite(best_answered), best_answered, np.minimum.reduceat(losses, first))

    def answers(self, rows: np.ndarray, predictions: list[Candidates], features: Features) -> dict[int, str]:
        """The answer text per question (data-file index) of the given rows."""
        offsets = features.arrays["offsets"]
        windows: dict[int, list[tuple[np.ndarray, Candidates]]] = {}
        for row, prediction in sorted(zip(rows.tolist(), predictions), key=lambda pair: pair[0]):
            windows.setdefault(int(features.example_of_row[row]), []).append((offsets[row], prediction))
        contexts = self.data.fields["context_X"]
        answers = {}
        for example, its_windows in windows.items():
            span = best_span(its_windows, self.config.max_answer_length, self.null_answers)
            answers[example] = "" if span is None else contexts[example][span[0] : span[1]]
        return answers

    def compute_metrics(self, rows: np.ndarray, predictions: list[Any], features: Features) -> dict[str, float]:
        return self.score(self.answers(np.asarray(rows), predictions, features))

    def score(self, answers: dict[int, str]) -> dict[str, float]:
        """Mean EM and F1 over the questions of the answered examples, each question once, as fractions.

        Rows of one question (FedNLP's one row per reference answer) count once: the answer of its
        lowest-indexed row, against every reference of the question.
        """
        first_row: dict[int, int] = {}
        for example in sorted(answers):
            first_row.setdefault(int(self.question_of[example]), example)
        scores = [question_scores(answers[example], self.references[example]) for example in first_row.values()]
        exact, f1 = np.mean(scores, axis=0) if scores else (0.0, 0.0)
        return {"f1": float(f1), "exact_match": float(exact)}


def question_of_example(fields: dict[str, list[Any]]) -> np.ndarray:
    """The question of each example, as the index of the question's first example.

    FedNLP's QA files repeat a question once per reference answer: rows with one `question_ids` value (and
    the same question and context) are one question. fednlp's readers write one example per question,
    with every reference in `answers`, so there each example is its own question.
    """
    n = len(fields["context_X"])
    if "answers" in fields or "question_ids" not in fields:
        return np.arange(n, dtype=np.int64)
    first: dict[tuple[Any, str, str], int] = {}
    keys = zip(fields["question_ids"], fields["question_X"], fields["context_X"])
    return np.array([first.setdefault(key, i) for i, key in enumerate(keys)], dtype=np.int64)


def _references(fields: dict[str, list[Any]], question_of: np.ndarray) -> list[list[str]]:
    """Every reference answer of each example's question.

    fednlp's files list them in `answers`; FedNLP's hold one per row (the text `Y_answer` in later
    versions, else the context at the span Y), so a question's references are those of all its rows.
    """
    if "answers" in fields:
        own = [list(answers) for answers in fields["answers"]]
    elif "Y_answer" in fields:
        own = [[answer] if y[0] >= 0 else [] for answer, y in zip(fields["Y_answer"], fields["Y"])]
    else:
        own = [[context[y[0] : y[1]]] if len(y) == 2 and y[0] >= 0 else []
               for context, y in zip(fields["context_X"], fields["Y"])]
    pooled: dict[int, list[str]] = {}
    for example, question in enumerate(question_of.tolist()):
        pooled.setdefault(question, []).extend(own[example])
    return [pooled[question] for question in question_of.tolist()]

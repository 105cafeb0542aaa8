"""The task interface every head implements: data-file records -> features, model, loss, predictions, metric.

The runtime never asks which task runs. It sees:
- `Features`: padded token arrays (some kept on the host for the task's own use), one row per model input; `example_of_row` maps rows to data-file
  examples (a QA question can have several context windows, so rows and examples differ);
- `Task.build_model`, `Task.loss` (one batch -> scalar), `Task.predict` (one batch -> a prediction per
  row, plain Python objects so they can be gathered across ranks), `Task.compute_metrics` (every
  prediction of the test set -> metric values). Metrics are computed once on the gathered predictions,
  so a sharded evaluation gives exactly the single-process metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile
from fednlp.tasks.models import check_position_limit


@dataclass
class Features:
    """Tokenized model inputs for a whole data file, built once and cached.

    arrays: name -> array with one row per model input ([rows, width] for token arrays, where width is the
        longest row the data really has, at most the max length: memory follows the data, not the option).
    lengths: real (unpadded) length of each row; batches are cut to their longest row.
    example_of_row: data-file index of the example each row comes from.
    sequence_arrays: arrays laid out along the input tokens, cut with the batch (dynamic padding).
    host_arrays: arrays the task reads itself (e.g. QA offsets); never part of a model batch.
    """

    arrays: dict[str, np.ndarray]
    lengths: np.ndarray
    example_of_row: np.ndarray
    sequence_arrays: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    host_arrays: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.lengths)

    def rows_of(self, example_indices: np.ndarray) -> np.ndarray:
        """Rows of the given examples, in the examples' order (rows are stored sorted by example)."""
        examples = np.asarray(example_indices, dtype=np.int64)
        starts = np.searchsorted(self.example_of_row, examples, side="left")
        ends = np.searchsorted(self.example_of_row, examples, side="right")
        if np.array_equal(ends - starts, np.ones_like(starts)):
            return starts  # one row per example (classification, tagging, seq2seq)
        return np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(examples) else starts

    def batch(self, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Tensors for `rows`, cut to the longest real length among them (dynamic padding)."""
        width = int(self.lengths[rows].max())
        batch = {}
        for name, array in self.arrays.items():
            if name in self.host_arrays:
                continue
            part = array[rows, :width] if name in self.sequence_arrays else array[rows]
            if part.dtype.kind in "iu":  # stored narrow to save memory; embeddings want int64
                part = part.astype(np.int64)
            batch[name] = torch.from_numpy(np.ascontiguousarray(part)).to(device, non_blocking=True)
        return batch


#: Narrow storage of the token arrays (embeddings want int64; Features.batch widens them per batch).
TOKEN_DTYPES = {"input_ids": np.int32, "attention_mask": np.int8, "token_type_ids": np.int8}


def tokenize_in_chunks(tokenize: Callable[[list], Any], items: list, pad_values: dict[str, int] | None = None,
                       dtypes: dict[str, Any] | None = None, chunk_size: int = 500) -> dict[str, np.ndarray]:
    """The outputs of `tokenize` (unpadded token lists) over chunks of `items`, as arrays right-padded to
    the longest row of all items: a max length far above the data's costs nothing.

    A fast tokenizer's BatchEncoding keeps the Rust encodings of its whole input alive (on 20 Newsgroups,
    gigabytes); only each chunk's rows are kept, in their narrow `dtypes` (default int32), so peak memory
    stays near twice the final arrays. `pad_values`: the pad of each output (default 0); `dtypes`: default
    TOKEN_DTYPES, int32 for other outputs.
    """
    pad_values, dtypes = pad_values or {}, TOKEN_DTYPES if dtypes is None else dtypes
    rows: dict[str, list] = {}
    for i in range(0, len(items), chunk_size):
        for key, value in tokenize(items[i : i + chunk_size]).items():
            dtype = dtypes.get(key, np.int32)
            rows.setdefault(key, []).extend(np.asarray(row, dtype=dtype) for row in value)
    return {key: pad_rows(values, pad_values.get(key, 0), dtypes.get(key, np.int32)) for key, values in rows.items()}


def pad_rows(rows: list[np.ndarray], pad_value: int, dtype: Any) -> np.ndarray:
    """[len(rows), longest row] array of `rows`, right-padded with `pad_value`."""
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), pad_value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def example_starts(examples_of_rows: np.ndarray) -> np.ndarray:
    """Positions where a new example's rows begin, in a sequence of rows holding each example's rows together."""
    examples_of_rows = np.asarray(examples_of_rows)
    if len(examples_of_rows) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], examples_of_rows[1:] != examples_of_rows[:-1])))


class Task(ABC):
    """One task head. Subclasses are small: they own features, model, loss, predictions and metric."""

    name: ClassVar[str]  # --task value
    task_type: ClassVar[str]  # data file task_type
    primary_metric: ClassVar[str]
    greater_is_better: ClassVar[bool] = True  # of the primary metric (HF's name); perplexity: False

    #: Bytes a token costs in the feature cache (ids int32, attention mask and token types int8), for the
    #: estimate made before tokenizing; heads that store more per token say so.
    bytes_per_token: ClassVar[int] = 6

    # What the rest of fednlp asks of a head, declared here (a head says it once) rather than inferred
    # from its name or its task_type anywhere else.
    #: Data-file task types the head reads; () is its own task_type (lm reads any text data file).
    data_task_types: ClassVar[tuple[str, ...]] = ()
    #: Its inputs are text pairs (QA: question, context): the tokenizer adds a pair's special tokens.
    text_pairs: ClassVar[bool] = False
    #: It evaluates by generating text: --num-beams applies, and each evaluation records its beams.
    generates: ClassVar[bool] = False
    #: Its features come from the X and Y texts alone and it has a per-example loss, so the audit can score
    #: any filled canary template through it (fednlp/audit/: canary exposure).
    scores_canaries: ClassVar[bool] = False
    #: The data-file text fields the head reads, as input or as target (seq2seq: source X and target Y; lm: X
    #: alone): a canary's secret must lie in one of them to be seen in training (fednlp/audit/canaries.py).
    reads_fields: ClassVar[tuple[str, ...]] = ("X",)
    #: A classifier whose input can be optimised towards a label: the audit extracts canaries from it by
    #: model inversion (fednlp/audit/extraction.py).
    extracts_canaries: ClassVar[bool] = False
    #: Its batch loss ignores padded positions, so the same rows padded wider give the same loss; --parallel-clients
    #: pads a group's batches to one width (fednlp/federation/group_batches.py) and trains one at a time otherwise.
    loss_ignores_padding: ClassVar[bool] = True

    def __init__(self, data: DataFile, tokenizer: Any, config: RunConfig):
        self.data = data
        self.tokenizer = tokenizer
        self.config = config  # task options live in the one config (max lengths, doc stride, beams, ...)
        self.max_length = config.max_seq_length
        check_position_limit(config.model, tokenizer, self.limited_lengths())

    def limited_lengths(self) -> dict[str, int]:
        """Lengths, by option, that the model's position embeddings must hold."""
        return {"--max-seq-length": self.max_length}

    def estimated_feature_bytes(self) -> int:
        """An upper bound of the feature cache's size, from the raw text alone (before tokenizing): one row
        per example, as wide as the longest text's UTF-8 bytes plus special tokens (no WordPiece or byte-level
        BPE token is shorter than a byte) or the max length, whichever is smaller."""
        texts = self.data.fields["X"]
        longest = max((len((" ".join(t) if isinstance(t, (list, tuple)) else str(t)).encode()) for t in texts),
                      default=0)
        width = min(self.max_length, longest + self.tokenizer.num_special_tokens_to_add(pair=False))
        return len(texts) * width * self.bytes_per_token

    @abstractmethod
    def build_features(self) -> Features:
        """Tokenize every example of the data file (called once; the result is cached on disk)."""

    @abstractmethod
    def build_model(self, model_name: str) -> torch.nn.Module:
        """The model with this task's head, from a hub name, a local directory or a built-in alias."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of each row of the batch, [rows] (membership inference and canary exposure score
        examples by it: fednlp/audit/). Heads that can be audited override it."""
        raise NotImplementedError(f"task {self.name!r} has no per-example loss")

    def scored_tokens(self, features: Features, rows: np.ndarray) -> np.ndarray:
        """How many tokens each row's `example_losses` averages over (a label's loss: one). Canary exposure
        multiplies them back: it ranks candidates by a sequence's summed loss (log-perplexity, Carlini et al.
        2019), which the mean equals only when every candidate has as many tokens."""
        return np.ones(len(rows), dtype=np.int64)

    def reduce_row_losses(self, losses: np.ndarray, features: Features, rows: np.ndarray) -> np.ndarray:
        """One loss per example from its rows' losses (`rows` as Features.rows_of gives them: each example's
        rows together, `losses` aligned with them): the mean of its rows (the windows of a long tagged
        sentence); QA picks its answer's window."""
        first = example_starts(features.example_of_row[rows])
        return np.add.reduceat(losses, first) / np.diff(np.append(first, len(rows)))

    @abstractmethod
    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Any]:
        """One prediction per row of the batch (`rows` are the feature rows), as plain Python values."""

    @abstractmethod
    def compute_metrics(self, rows: np.ndarray, predictions: list[Any], features: Features) -> dict[str, float]:
        """Metric values over the predictions of `rows` (every test row, gathered from all ranks)."""

    def cache_key(self) -> str:
        """What, besides the data file, tokenizer and max length, changes the features (e.g. doc stride)."""
        return self.name

"""Counterfactual data augmentation (`--augment counterfactual`): each training example that holds a protected
term gets a copy with the terms swapped (he -> she, her -> his/him, ...; fednlp/fairness/pairs.py and
pronouns.py), and a client trains on its own examples and their copies only.

Counterfactual data augmentation: Lu et al., "Gender Bias in Neural Natural Language Processing", 2018; Zhao
et al., "Gender Bias in Coreference Resolution", NAACL 2018; in distillation, Gupta et al., ACL Findings 2022.

How the copies are made and held:
- By re-tokenizing the swapped text, not by swapping token ids: a swap changes the number of subword tokens
  ("he" is one WordPiece, "she" one, but "fiance" -> "fiancee" or a GPT-2 "Ġhimself" -> "Ġherself" need not
  split alike), and the head's own build_features then gives the copy exactly what an original gets
  (truncation, special tokens, the kept label).
- Once, in the feature cache: the copies are rows of the run's Features (cached under a key of their own,
  beside the plain features), placed right after their example's own rows with the same `example_of_row`,
  and marked in the host array `counterfactual_copy`. So `Features.rows_of(a client's examples)` returns
  the client's rows and the copies of exactly those rows: a copy is made from a client's own text and never
  reaches another client. Only training examples get copies, so an evaluation (test examples) never sees one.
- Texts with no protected term get no copy (the copy would be the same text: a duplicate, which would only
  reweight the data). `--augment-fraction F` keeps a seeded F of each client's copies (the centralized run:
  of all), chosen anew per continual period.

Heads: classification (the label is kept: the swap must not change the class, which is what the augmentation
teaches) and the language model (the swapped text is the next-token target). QA spans, token tags and seq2seq
targets are tied to the text and are refused in one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from fednlp.data.datafile import DataFile, REQUIRED_FIELDS
from fednlp.errors import UserError
from fednlp.fairness.augment_options import AugmentOptions
from fednlp.fairness.counterfactual import Rewriter
from fednlp.fairness.pairs import Substitution, load_substitution
from fednlp.tasks.base import Features, Task
from fednlp.tasks.feature_cache import load_or_build_features

#: The host array marking copies (1) among a Features' rows.
COPY = "counterfactual_copy"
#: The heads a swap keeps exact (the others' targets follow the swapped words: spans, tags, target texts).
SUPPORTED_TASKS = ("classification", "lm")
#: The seed stream of the copies kept under --augment-fraction (beside fednlp/run/random_streams.py's
#: Stream numbers, far above them so that a new Stream never collides with it).
AUGMENT_STREAM = 1000


def training_features(task: Task, config: Any) -> Features:
    """The run's features: the plain cached ones, or with --augment counterfactual those with every swappable
    training example's copy (cached too, under their own key)."""
    options: AugmentOptions = config.augment
    if not options.enabled:
        return load_or_build_features(task, config.data)
    if task.name not in SUPPORTED_TASKS:
        raise UserError(f"--augment counterfactual does not support --task {task.name}: its targets (answer spans, "
                        f"token tags, target texts) are tied to the words swapped; supported: "
                        f"{', '.join(SUPPORTED_TASKS)}")
    return load_or_build_features(with_copies(task, load_substitution(options.pairs)), config.data)


def with_copies(task: Task, substitution: Substitution) -> Task:
    """The same head on the same data, whose build_features adds the copies and whose cache key says so."""
    base = type(task)
    digest = substitution_digest(substitution)

    class WithCounterfactualCopies(base):  # type: ignore[misc, valid-type]
        def cache_key(self) -> str:
            return f"{super().cache_key()}+counterfactual-{digest}"

        def estimated_feature_bytes(self) -> int:
            return 2 * super().estimated_feature_bytes()  # at most one copy per example

        def build_features(self) -> Features:
            # Both heads read the text in X (the lm: of any data type).
            view, sources = counterfactual_view(self.data, "X", Rewriter(substitution))
            if len(sources) == 0:
                raise UserError(f"--augment counterfactual: no training text of {self.config.data} holds a word of "
                                f"the pair list ({substitution.source}); there is nothing to swap")
            plain = base(view, self.tokenizer, self.config).build_features()
            return interleave_copies(plain, self.data.n_examples, sources)

    WithCounterfactualCopies.__name__ = f"{base.__name__}WithCounterfactualCopies"
    return WithCounterfactualCopies(task.data, task.tokenizer, task.config)


def substitution_digest(substitution: Substitution) -> str:
    """What the copies depend on, as a short hash for the cache key: every term's counterpart."""
    content = {"counterparts": substitution.counterparts,
               "by_context": {t: [r.determiner, r.pronoun] for t, r in substitution.by_context.items()}}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def swap_text(rewriter: Rewriter, value: Any) -> tuple[str, int]:
    """A text field's value swapped (a token list, as tagging data holds it, is joined first, as the lm reads it)."""
    text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return rewriter.rewrite(text)


def counterfactual_view(data: DataFile, field: str, rewriter: Rewriter) -> tuple[DataFile, np.ndarray]:
    """The data with the swapped copies appended as examples n, n+1, ... (their other fields, e.g. the label,
    those of their source), and each copy's source example; only training examples with a swap get one."""
    texts = data.fields[field]
    sources, swapped = [], []
    for example in sorted(int(i) for i in data.train_index_list):
        text, count = swap_text(rewriter, texts[example])
        if count:
            sources.append(example)
            swapped.append(text)
    fields = {}
    for name in REQUIRED_FIELDS[data.task_type]:
        column = list(data.fields[name])
        fields[name] = column + (swapped if name == field else [column[e] for e in sources])
    view = DataFile(data.task_type, fields, list(data.train_index_list), list(data.test_index_list),
                    dict(data.label_vocab), dict(data.attributes))
    return view, np.asarray(sources, dtype=np.int64)


def interleave_copies(features: Features, n_examples: int, sources: np.ndarray) -> Features:
    """Features of the view (examples 0..n-1, then the copies) with each copy's rows moved right after its
    source's rows and given its source's example index: rows stay sorted by example, as rows_of needs."""
    view_example = features.example_of_row
    is_copy = view_example >= n_examples
    example = np.where(is_copy, sources[np.clip(view_example - n_examples, 0, None)], view_example)
    order = np.lexsort((np.arange(len(example)), is_copy, example))
    arrays = {name: array[order] for name, array in features.arrays.items()}
    arrays[COPY] = is_copy[order].astype(np.int8)
    return Features(arrays, features.lengths[order], example[order].astype(np.int64), features.sequence_arrays,
                    (*features.host_arrays, COPY))


@dataclass(frozen=True)
class CopySelection:
    """--augment-fraction: which of a holder's copies it trains on, seeded by (seed, holder key)."""

    fraction: float
    seed: int

    @classmethod
    def of(cls, config: Any) -> CopySelection:
        return cls(config.augment.fraction, config.seed)

    def rows(self, features: Features, rows: np.ndarray, *key: int) -> np.ndarray:
        """`rows` (a holder's originals and their copies) with round(F x copies) of the copies kept."""
        if COPY not in features.arrays or self.fraction >= 1:
            return rows
        is_copy = features.arrays[COPY][rows].astype(bool)
        copies = np.flatnonzero(is_copy)
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, *key])
        kept = rng.choice(copies, size=int(round(self.fraction * len(copies))), replace=False)
        mask = ~is_copy
        mask[kept] = True
        return rows[mask]


def copy_count(features: Features, rows: np.ndarray) -> int:
    """How many of `rows` are counterfactual copies (0 without --augment)."""
    return int(features.arrays[COPY][rows].sum()) if COPY in features.arrays else 0

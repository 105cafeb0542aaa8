"""What "label" means to a partitioner, per task.

    text_classification   the class id (the data file's label_vocab order)
    sequence_tagging      the sentence's most frequent entity type, counted over tokens, ties to
                          the alphabetically first type; sentences with no entity form group "O"
    span_extraction,      no labels of their own: k-means cluster ids of sentence embeddings
    seq2seq               (see embeddings.py), as FedNLP did for QA and seq2seq
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fednlp.data.datafile import DataFile
from fednlp.errors import UserError

LABELLED_TASKS = ("text_classification", "sequence_tagging")
LABEL_FIELDS = ("Y",)  # what task_labels reads: class names, or tag sequences
NO_ENTITY = "O"
_TAG_PREFIX = re.compile(r"^[BIESLU]-(.+)$")


@dataclass(frozen=True)
class PartitionLabels:
    """One label id per example of the data file (indexed by data-file index) and the label names."""

    ids: np.ndarray
    names: list[str]
    meaning: str

    @property
    def n_labels(self) -> int:
        return len(self.names)


def has_labels(data: DataFile) -> bool:
    return data.task_type in LABELLED_TASKS


def task_labels(data: DataFile, data_path: str | Path, method: str) -> PartitionLabels:
    """The task's own labels; QA and seq2seq have none and are pointed to niid_cluster."""
    if data.task_type == "text_classification":
        return class_labels(data, data_path)
    if data.task_type == "sequence_tagging":
        return entity_type_labels(data)
    raise UserError(
        f"--method {method} needs labels, and {data.task_type} data ({data_path}) has none; "
        "use --method niid_cluster (label skew over k-means clusters of sentence embeddings)"
    )


def class_labels(data: DataFile, data_path: str | Path) -> PartitionLabels:
    vocab = dict(data.label_vocab) or {name: i for i, name in enumerate(sorted({str(y) for y in data.fields["Y"]}))}
    ids = np.empty(data.n_examples, dtype=np.int64)
    for i, y in enumerate(data.fields["Y"]):
        if y in vocab:
            ids[i] = vocab[y]
        elif isinstance(y, (int, np.integer)) and 0 <= y < len(vocab):  # FedNLP files may store ids
            ids[i] = y
        elif str(y) in vocab:
            ids[i] = vocab[str(y)]
        else:
            raise UserError(f"data file {data_path}: example {i} has label {y!r}, not in its label_vocab")
    names = [name for name, _ in sorted(vocab.items(), key=lambda item: item[1])]
    return PartitionLabels(ids, names, "class")


def entity_type(tag: str) -> str | None:
    """'B-PER' -> 'PER', 'I-creative-work' -> 'creative-work', 'O' -> None; prefix-less tags are types."""
    if tag == NO_ENTITY:
        return None
    match = _TAG_PREFIX.match(tag)
    return match.group(1) if match else tag


def dominant_entity_type(tags: list[str]) -> str:
    counts = Counter(t for t in map(entity_type, tags) if t is not None)
    if not counts:
        return NO_ENTITY
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


def entity_type_labels(data: DataFile) -> PartitionLabels:
    dominant = [dominant_entity_type(tags) for tags in data.fields["Y"]]
    types = {t for t in map(entity_type, data.label_vocab) if t is not None} | set(dominant)
    names = [NO_ENTITY] + sorted(types - {NO_ENTITY})
    index = {name: i for i, name in enumerate(names)}
    return PartitionLabels(np.array([index[t] for t in dominant], dtype=np.int64), names, "dominant entity type")


def cluster_labels(assignment: np.ndarray, n_clusters: int) -> PartitionLabels:
    return PartitionLabels(
        np.asarray(assignment, dtype=np.int64), [f"cluster {k}" for k in range(n_clusters)], "k-means cluster"
    )


def field_values(data: DataFile, field: str, data_path: str | Path) -> np.ndarray:
    """A per-example field as strings (natural partitions group by it)."""
    if field not in data.fields:
        known = ", ".join(sorted(data.fields))
        raise UserError(f"data file {data_path} has no field {field!r} (its fields: {known}); choose one with --field")
    return np.array([v if isinstance(v, str) else str(v) for v in data.fields[field]], dtype=object)

"""The data file: one HDF5 file per prepared dataset.

Layout written by fednlp (one HDF5 dataset per field, never one per example):

    attributes        JSON string: task_type, num_labels, label_vocab, index_list,
                      train_index_list, test_index_list, dataset, plus task-specific keys
    <field>           one dataset of length n_examples per field

Field names follow FedNLP so its code and ours read the same names:

    text_classification   X: text (str)             Y: label name (str)
    sequence_tagging      X: tokens (list of str)   Y: tags (list of str)
    span_extraction       context_X (str), question_X (str), Y: [start, end) character span of the
                          first answer or [-1, -1] when unanswerable, answers (list of str, every
                          reference answer), question_id (str)
    seq2seq               X: source text (str)      Y: target text (str), references (list of str,
                          every reference target, Y first)
    any task              source (str): the example's natural group (domain, article) where known;
                          user (str), order (float), group (str): author, time, protected group
                          (readers/users.py)

String fields are variable-length UTF-8 strings; list fields are variable-length strings each holding
a JSON array, so one field stays one dataset whatever the element type.

The reader also opens FedNLP's published layout (groups `X/<i>`, `Y/<i>`, `context_X/<i>`, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fednlp.errors import UserError

TASK_TYPES = ("text_classification", "sequence_tagging", "span_extraction", "seq2seq")

#: Fields whose values are lists (stored as JSON arrays).
LIST_FIELDS = {
    "text_classification": set(),
    "sequence_tagging": {"X", "Y"},
    "span_extraction": {"Y", "answers"},
    "seq2seq": {"references"},
}

#: Fields every example of a task must have.
REQUIRED_FIELDS = {
    "text_classification": ("X", "Y"),
    "sequence_tagging": ("X", "Y"),
    "span_extraction": ("context_X", "question_X", "Y"),
    "seq2seq": ("X", "Y"),
}


@dataclass
class DataFile:
    """A prepared dataset in memory: per-field columns plus the attributes record."""

    task_type: str
    fields: dict[str, list[Any]]
    train_index_list: list[int]
    test_index_list: list[int]
    label_vocab: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # extra task/dataset keys

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise UserError(f"task_type {self.task_type!r} is not one of {', '.join(TASK_TYPES)}")
        missing = [f for f in REQUIRED_FIELDS[self.task_type] if f not in self.fields]
        if missing:
            raise UserError(f"{self.task_type} data lacks field(s) {', '.join(missing)}")
        lengths = {name: len(values) for name, values in self.fields.items()}
        if len(set(lengths.values())) > 1:
            raise UserError(f"data fields have different lengths: {lengths}")

    @property
    def n_examples(self) -> int:
        return len(next(iter(self.fields.values())))

    @property
    def num_labels(self) -> int:
        return len(self.label_vocab)

    def full_attributes(self) -> dict[str, Any]:
        return {
            **self.attributes,
            "task_type": self.task_type,
            "num_labels": self.num_labels,
            "label_vocab": self.label_vocab,
            "index_list": list(range(self.n_examples)),
            "train_index_list": [int(i) for i in self.train_index_list],
            "test_index_list": [int(i) for i in self.test_index_list],
        }


def label_vocab_of(labels: list[str] | list[list[str]]) -> dict[str, int]:
    """Sorted label vocabulary (never set-ordered) over labels or label sequences."""
    flat = set()
    for value in labels:
        if isinstance(value, (list, tuple)):
            flat.update(value)
        else:
            flat.add(value)
    return {label: i for i, label in enumerate(sorted(flat))}


def write_data_file(data: DataFile, path: str | os.PathLike) -> None:
    """Write atomically: a temporary file beside the target, renamed when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    list_fields = LIST_FIELDS[data.task_type]
    str_dtype = h5py.string_dtype("utf-8")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("attributes", data=json.dumps(data.full_attributes()), dtype=str_dtype)
            for name, values in data.fields.items():
                if name in list_fields or (values and isinstance(values[0], (list, tuple))):
                    encoded = [json.dumps(v, ensure_ascii=False) for v in values]
                    f.create_dataset(name, data=np.array(encoded, dtype=object), dtype=str_dtype)
                    f[name].attrs["encoding"] = "json"
                elif values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    f.create_dataset(name, data=np.asarray(values, dtype=np.float64))  # numbers, e.g. order
                else:
                    f.create_dataset(name, data=np.array(values, dtype=object), dtype=str_dtype)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def open_h5(path: str | os.PathLike, what: str = "data file") -> h5py.File:
    """Open an HDF5 file for reading, with a one-line error for every way it can be wrong."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, expected an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{what} {path} is not a readable HDF5 file ({exc.__class__.__name__})") from None


def read_attributes(path: str | os.PathLike) -> dict[str, Any]:
    """Only the attributes record (cheap: no field is read)."""
    with open_h5(path) as f:
        return _attributes(f, path)


def read_data_file(path: str | os.PathLike) -> DataFile:
    """Read a data file in fednlp's layout or FedNLP's per-example layout."""
    with open_h5(path) as f:
        attrs = _attributes(f, path)
        task_type = attrs.get("task_type")
        if task_type not in TASK_TYPES:
            raise UserError(f"data file {path}: task_type {task_type!r} is not one of {', '.join(TASK_TYPES)}")
        fields: dict[str, list[Any]] = {}
        for name, node in f.items():
            if name == "attributes":
                continue
            if isinstance(node, h5py.Group):
                fields[name] = _read_fednlp_group(node, attrs)
            else:
                fields[name] = _read_column(node, json_encoded=node.attrs.get("encoding") == "json")
    known = {"task_type", "num_labels", "label_vocab", "index_list", "train_index_list", "test_index_list"}
    label_vocab = attrs.get("label_vocab") or {}
    if isinstance(label_vocab, list):  # some FedNLP files store the vocabulary as a list
        label_vocab = {label: i for i, label in enumerate(label_vocab)}
    try:
        return DataFile(
            task_type=task_type,
            fields=fields,
            train_index_list=list(attrs["train_index_list"]),
            test_index_list=list(attrs["test_index_list"]),
            label_vocab=dict(label_vocab),
            attributes={k: v for k, v in attrs.items() if k not in known},
        )
    except KeyError as exc:
        raise UserError(f"data file {path}: attributes lack {exc.args[0]!r}") from None


def _attributes(f: h5py.File, path: str | os.PathLike) -> dict[str, Any]:
    if "attributes" not in f:
        raise UserError(f"data file {path} has no 'attributes' record; is it a fednlp or FedNLP data file?")
    raw = f["attributes"][()]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise UserError(f"data file {path}: 'attributes' is not valid JSON") from None


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _read_column(node: h5py.Dataset, json_encoded: bool) -> list[Any]:
    values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in node[()].tolist()]
    if json_encoded:
        return [json.loads(v) for v in values]
    return values


def _read_fednlp_group(group: h5py.Group, attrs: dict[str, Any]) -> list[Any]:
    """FedNLP stored field values one dataset per example, keyed by the example index."""
    n = len(attrs.get("index_list") or group.keys())
    values: list[Any] = [None] * n
    for key, node in group.items():
        values[int(key)] = _decode(node[()])
    return values

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

The reader also opens FedNLP's published layout (groups `X/<i>`, `Y/<i>`, `context_X/<i>`, ...) as
FedNLP's own loaders write it (see `read_data_file`).
"""

from __future__ import annotations

import json
import os
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping, Sequence

import h5py
import numpy as np

from fednlp.errors import UserError
from fednlp.files import atomic_output

TASK_TYPES = ("text_classification", "sequence_tagging", "span_extraction", "seq2seq")

#: FedNLP's names for our task types: its tagging loaders write "seq_tagging".
TASK_TYPE_ALIASES = {"seq_tagging": "sequence_tagging"}

#: FedNLP's partition scripts take the first 90% of `index_list` as train when a file has no split.
FEDNLP_TRAIN_SHARE = 0.9

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
    fields: Mapping[str, Sequence[Any]]  # a dict, or LazyFields (read_data_file(lazy=True))
    train_index_list: Sequence[int]  # a list, or array("q") when read lazily (8 bytes an index, not 36)
    test_index_list: Sequence[int]
    label_vocab: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # extra task/dataset keys

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise UserError(f"task_type {self.task_type!r} is not one of {', '.join(TASK_TYPES)}")
        missing = [f for f in REQUIRED_FIELDS[self.task_type] if f not in self.fields]
        if missing:
            raise UserError(f"{self.task_type} data lacks field(s) {', '.join(missing)}")
        lengths = field_lengths(self.fields)
        if len(set(lengths.values())) > 1:
            raise UserError(f"data fields have different lengths: {lengths}")

    @property
    def n_examples(self) -> int:
        return next(iter(field_lengths(self.fields).values()))

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


class NotRead(Sequence):
    """A field `read_data_file(only=...)` left unread: its length is known, its values refuse to be read."""

    def __init__(self, name: str, length: int):
        self.name, self.length = name, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError(f"field {self.name!r} of the data file was not read (read_data_file(only=...))")


class LazyFields(Mapping):
    """A data file's fields, each column read from the file the first time it is asked for, then kept.

    A run needs few of a file's columns once its features are cached (classification: none; tagging: the
    gold tags), and reading them all costs more memory than everything else the run holds (WU-M: 2.1M
    texts, 630 MB per rank; benchmarks/README.md). A column read after the file changed is refused: the
    run's features and checksum describe the file as it was opened.
    """

    def __init__(self, path: str | os.PathLike, lengths: dict[str, int], json_fields: set[str]):
        self._path, self._lengths, self._json_fields = path, lengths, json_fields
        self._stamp = _file_stamp(path)
        self._read: dict[str, list[Any]] = {}

    def __getitem__(self, name: str) -> list[Any]:
        if name not in self._read:
            if name not in self._lengths:
                raise KeyError(name)
            if _file_stamp(self._path) != self._stamp:
                raise UserError(f"data file {self._path} changed while in use (field {name!r} read after the "
                                "run opened it); rerun on an unchanged file")
            with open_h5(self._path) as f:
                self._read[name] = _read_column(f[name], json_encoded=name in self._json_fields)
        return self._read[name]

    def __contains__(self, name: object) -> bool:  # Mapping's default would read the column
        return name in self._lengths

    def __iter__(self) -> Iterator[str]:
        return iter(self._lengths)

    def __len__(self) -> int:
        return len(self._lengths)

    def lengths(self) -> dict[str, int]:
        return dict(self._lengths)

    def read_names(self) -> list[str]:
        """The columns read so far."""
        return list(self._read)


def field_lengths(fields: Mapping[str, Sequence[Any]]) -> dict[str, int]:
    """Each field's number of values, without reading a lazy field."""
    if isinstance(fields, LazyFields):
        return fields.lengths()
    return {name: len(values) for name, values in fields.items()}


def _file_stamp(path: str | os.PathLike) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


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
    list_fields = LIST_FIELDS[data.task_type]
    str_dtype = h5py.string_dtype("utf-8")
    with atomic_output(path) as tmp:
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


def read_data_file(path: str | os.PathLike, only: Collection[str] | None = None, lazy: bool = False) -> DataFile:
    """Read a data file in fednlp's layout or FedNLP's per-example layout.

    What FedNLP's loaders write and how it is read (checked on files written by FedNLP's own code):
    - task_type "seq_tagging" is sequence_tagging;
    - no task_type (its seq2seq loaders): the task is inferred from the fields where only one task fits,
      said on stderr and recorded as `task_type_inferred`;
    - no train/test lists (its seq2seq loaders): FedNLP's partition scripts' rule, the first 90% of
      `index_list` train and the rest test, recorded as `split_inferred`;
    - `label_vocab` as a list, `num_labels: -1`: the vocabulary as given, its size the label count.

    `only`: read just these fields (a partition by labels needs no text); the others are `NotRead`
    placeholders of the right length. A file without a task_type is read whole (inferring it needs X and Y).
    `lazy`: each field is read when first asked for (`LazyFields`), for fednlp's layout with a task_type,
    and the train/test lists are compact `array("q")`s; FedNLP's per-example layout is read whole.
    """
    with open_h5(path) as f:
        attrs = _attributes(f, path)
        nodes = [(name, node) for name, node in f.items() if name != "attributes"]
        fields: Mapping[str, Sequence[Any]]
        if lazy and "task_type" in attrs and all(isinstance(node, h5py.Dataset) for _, node in nodes):
            fields = LazyFields(path, {name: len(node) for name, node in nodes},
                                {name for name, node in nodes if node.attrs.get("encoding") == "json"})
        else:
            fields = _read_fields(path, attrs, nodes, only)
    known = {"task_type", "num_labels", "label_vocab", "index_list", "train_index_list", "test_index_list"}
    label_vocab = attrs.get("label_vocab") or {}
    if isinstance(label_vocab, list):  # some FedNLP files store the vocabulary as a list
        label_vocab = {label: i for i, label in enumerate(label_vocab)}
    extra = {k: v for k, v in attrs.items() if k not in known}
    task_type = _task_type(attrs, fields, path, extra)
    train, test = _split(attrs, path, extra)
    if isinstance(fields, LazyFields):  # a run: 2.1M indices as Python ints are 75 MB per rank (WU-M)
        train, test = array("q", train), array("q", test)
    return DataFile(
        task_type=task_type,
        fields=fields,
        train_index_list=train,
        test_index_list=test,
        label_vocab=dict(label_vocab),
        attributes=extra,
    )


def _read_fields(path: str | os.PathLike, attrs: dict[str, Any], nodes: list[tuple[str, Any]],
                 only: Collection[str] | None) -> dict[str, Sequence[Any]]:
    fields: dict[str, Sequence[Any]] = {}
    for name, node in nodes:
        if only is not None and name not in only and "task_type" in attrs:
            fields[name] = NotRead(name, len(node) if isinstance(node, h5py.Dataset) else len(node.keys()))
        elif isinstance(node, h5py.Group):
            fields[name] = _read_fednlp_group_once(node, attrs, path)
        else:
            fields[name] = _read_column(node, json_encoded=node.attrs.get("encoding") == "json")
    return fields


def _task_type(attrs: dict[str, Any], fields: Mapping[str, Sequence[Any]], path: str | os.PathLike,
               extra: dict[str, Any]) -> str:
    """The file's task type; FedNLP's alias mapped, a missing one inferred where only one task fits."""
    given = attrs.get("task_type")
    if given in TASK_TYPES:
        return given
    if given in TASK_TYPE_ALIASES:
        extra["task_type_in_file"] = given
        return TASK_TYPE_ALIASES[given]
    known = f"one of {', '.join(TASK_TYPES)} (or FedNLP's {', '.join(TASK_TYPE_ALIASES)})"
    if given is not None:
        raise UserError(f"data file {path}: task_type {given!r} is not {known}")
    inferred, why = _infer_task_type(fields, attrs)
    if inferred is None:
        raise UserError(f"data file {path} has no task_type and its fields ({', '.join(sorted(fields)) or 'none'}) "
                        f"{why}; expected a task_type in its attributes, {known}")
    extra["task_type_inferred"] = f"{inferred}: {why}"
    _note(f"data file {path} has no task_type; read as {inferred} ({why})")
    return inferred


def _infer_task_type(fields: Mapping[str, Sequence[Any]], attrs: dict[str, Any]) -> tuple[str | None, str]:
    """(task type, why) when the fields fit one task only, else (None, why not)."""
    if {"context_X", "question_X", "Y"} <= set(fields):
        return "span_extraction", "fields context_X, question_X and Y are extractive QA's"
    if not {"X", "Y"} <= set(fields):
        return None, "are not those of any task (X and Y, or context_X, question_X and Y)"
    x, y = fields["X"], fields["Y"]
    if x and all(isinstance(v, list) for v in x) and all(isinstance(v, list) and len(v) == len(t) for v, t in zip(y, x)):
        return "sequence_tagging", "X and Y hold token and tag sequences of equal lengths"
    if all(isinstance(v, str) for v in x) and all(isinstance(v, str) for v in y):
        if "label_vocab" in attrs or "num_labels" in attrs:
            return None, "hold text X and Y, which with a label vocabulary could be text_classification or seq2seq"
        return "seq2seq", "X and Y hold text and there is no label vocabulary, as FedNLP's seq2seq loaders write"
    return None, "X and Y hold values of no known task"


def _split(attrs: dict[str, Any], path: str | os.PathLike, extra: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The train and test lists; where the file has none, FedNLP's rule over `index_list`."""
    if "train_index_list" in attrs and "test_index_list" in attrs:
        return list(attrs["train_index_list"]), list(attrs["test_index_list"])
    for key in ("train_index_list", "test_index_list", "index_list"):
        if key not in attrs and (key == "index_list" or "train_index_list" in attrs or "test_index_list" in attrs):
            raise UserError(f"data file {path}: attributes lack {key!r}")
    index_list = list(attrs["index_list"])
    n_train = int(len(index_list) * FEDNLP_TRAIN_SHARE)
    rule = f"the first {n_train} of the {len(index_list)} entries of index_list (90%) train, the rest test"
    extra["split_inferred"] = f"FedNLP's rule (the file has no train/test lists): {rule}"
    _note(f"data file {path} has no train/test lists; split by FedNLP's rule: {rule}")
    return index_list[:n_train], index_list[n_train:]


def _note(message: str) -> None:
    """What the reader decided for the user: one line on stderr (the data file records it too)."""
    print(f"fednlp: note: {message}", file=sys.stderr, flush=True)


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


#: FedNLP-layout fields already decoded in this process, per unchanged file (path, size, mtime, inode) and
#: group: reading the same file again (partition, then stats, then a run; the CLI called in-process) is free.
_DECODED: dict[tuple[Any, ...], dict[str, tuple[Any, ...]]] = {}
_DECODED_FILES = 4  # bounded: 20 Newsgroups' fields take about 50 MB, FedNLP's SQuAD file 20 MB


def _read_fednlp_group_once(group: h5py.Group, attrs: dict[str, Any], path: str | os.PathLike) -> list[Any]:
    """_read_fednlp_group, remembered per unchanged file; callers get fresh lists (only immutable values
    are shared)."""
    stat = os.stat(path)
    file_key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if file_key not in _DECODED:
        while len(_DECODED) >= _DECODED_FILES:
            del _DECODED[next(iter(_DECODED))]
        _DECODED[file_key] = {}
    groups = _DECODED[file_key]
    if group.name not in groups:
        groups[group.name] = tuple(_read_fednlp_group(group, attrs, path))
    return [list(v) if isinstance(v, list) else v for v in groups[group.name]]


def _read_fednlp_group(group: h5py.Group, attrs: dict[str, Any], path: str | os.PathLike) -> list[Any]:
    """FedNLP stored field values one dataset per example, keyed by the example index.

    Read through h5py's low-level calls: one dataset open per value is the layout's cost (seconds for 20
    Newsgroups), and the high-level accessors triple it.
    """
    n = len(attrs.get("index_list") or group.keys())
    values: list[Any] = [None] * n
    seen = np.zeros(n, dtype=bool)
    for key in group.keys():
        if not key.isdigit() or int(key) >= n:
            raise UserError(f"data file {path}: {group.name}/{key} is not an example index 0..{n - 1}")
        dataset = h5py.h5d.open(group.id, key.encode())
        value = np.empty(dataset.shape, dtype=dataset.dtype)
        if value.size:
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, value)
        values[int(key)], seen[int(key)] = _decode(value[()] if value.ndim == 0 else value), True
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise UserError(f"data file {path}: {group.name} lacks {len(missing)} of the {n} examples of index_list "
                        f"(first: {missing[0]}); expected one dataset per example")
    return values

"""How raw dataset files lie on disk: split names from file names, text files that may be gzipped, and the
assembly of named splits (train / dev / test) into one DataFile.

A dev split is kept aside: its examples are in neither `train_index_list` nor `test_index_list`, so a seeded
`--test-fraction` split never draws from it and a run never trains on it. They are listed in
`attributes["valid_index_list"]` and every example carries a `split` field naming its original split.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from fednlp.data.datafile import DataFile
from fednlp.errors import UserError

SPLITS = ("train", "dev", "test")

#: File-name prefixes of each split, as the common dataset releases spell them ("valid" covers "validation").
_SPLIT_PREFIXES = (("train", "train"), ("dev", "dev"), ("valid", "dev"), ("test", "test"))

_GZIP_MAGIC = b"\x1f\x8b"

Example = dict[str, Any]


def split_of_name(name: str) -> str | None:
    """The split a file name announces (`train_first1000.article.txt` -> train), or None."""
    lowered = name.lower()
    for prefix, split in _SPLIT_PREFIXES:
        if lowered.startswith(prefix):
            return split
    return None


def read_text(path: Path) -> str:
    """A UTF-8 text file, gunzipped when its bytes say gzip (releases name such files inconsistently).

    Newlines are kept as they are: CSV answer offsets count a CR LF as two characters.
    """
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: broken gzip data ({exc}); expected a complete .gz file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: byte {exc.start} is not UTF-8; expected UTF-8 text") from None


def read_lines(path: Path) -> list[str]:
    """The file's lines without their line ends; only LF and CR LF end a line (JSON text may hold U+2028)."""
    lines = [line.removesuffix("\r") for line in read_text(path).split("\n")]
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_json_line(path: Path, line_number: int, line: str) -> dict[str, Any]:
    """One JSONL record, which must be a JSON object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {line_number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise UserError(f"{path} line {line_number}: found a JSON {type(record).__name__}, expected a JSON object")
    return record


def data_file_from_splits(
    task_type: str, splits: dict[str, list[Example]], origin: Path, attributes: dict[str, Any] | None = None
) -> DataFile:
    """One DataFile from per-split example records (dicts of field -> value), in the order train, dev, test.

    `splits` names only the splits the dataset has; passing a "dev" key (even an empty one) adds the `split`
    field and `valid_index_list`.
    """
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split name(s) {sorted(unknown)}; expected {SPLITS}")
    examples = [example for split in SPLITS for example in splits.get(split, [])]
    if not examples:
        raise UserError(f"--source {origin} holds no examples")
    names = list(examples[0])
    fields: dict[str, list[Any]] = {name: [example[name] for example in examples] for name in names}
    indices: dict[str, list[int]] = {}
    split_field: list[str] = []
    for split in SPLITS:
        start = len(split_field)
        split_field.extend([split] * len(splits.get(split, [])))
        indices[split] = list(range(start, len(split_field)))
    attributes = dict(attributes or {})
    if "dev" in splits:
        fields["split"] = split_field
        attributes["valid_index_list"] = indices["dev"]
    return DataFile(
        task_type=task_type,
        fields=fields,
        train_index_list=indices["train"],
        test_index_list=indices["test"],
        attributes=attributes,
    )

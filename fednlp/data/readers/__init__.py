"""Readers: raw dataset files -> DataFile. One module per task family, registered by dataset name.

A reader is `read(source: Path, options: ReaderOptions) -> DataFile`. It returns the dataset's own
train/test split; a dataset with no test split returns an empty `test_index_list` and
`fednlp.data.prepare` makes a seeded split from `--test-fraction`. A reader sends every malformed record to
`layout.BadRecords(options.bad_records, source)` and passes it to `data_file_from_splits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fednlp.data.datafile import DataFile
from fednlp.registry import Registry


@dataclass(frozen=True)
class ReaderOptions:
    """Column choices for the generic readers; dataset-specific readers ignore what they don't need."""

    text_column: str | None = None
    label_column: str | None = None
    token_column: int = 0
    tag_column: int = -1
    source_column: str | None = None  # seq2seq source text / per-example group for others
    target_column: str | None = None
    task: str | None = None  # task_type for readers that cannot tell (hf:)
    test_fraction: float | None = None
    seed: int = 0
    bad_records: str = "error"  # a malformed raw record: "error" refuses the file, "skip" drops it (layout.py)
    user_column: str | None = None  # who wrote the example -> field `user` (users.py)
    time_column: str | None = None  # when, as a number -> field `order`
    group_column: str | None = None  # protected group for group fairness -> field `group`


Reader = Callable[[Path, ReaderOptions], DataFile]


@dataclass(frozen=True)
class ReaderEntry:
    name: str
    task_type: str
    read: Reader
    help: str


READERS: Registry[ReaderEntry] = Registry("dataset", "--dataset")


def register_reader(name: str, task_type: str, help: str = "") -> Callable[[Reader], Reader]:
    def decorate(read: Reader) -> Reader:
        READERS.add(name, ReaderEntry(name, task_type, read, help or (read.__doc__ or "").strip().split("\n")[0]))
        return read

    return decorate


def get_reader(name: str) -> ReaderEntry:
    _load_builtin_readers()
    return READERS.get(name, hint=", hf:NAME[:CONFIG]")


def _load_builtin_readers() -> None:
    # Imported for their registrations; late so that a broken optional reader cannot break the CLI's --help.
    from fednlp.data.readers import classification, qa, seq2seq, tagging, textdir  # noqa: F401

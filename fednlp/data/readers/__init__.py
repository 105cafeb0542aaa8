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
from fednlp.options import option
from fednlp.registry import Registry


@dataclass(frozen=True)
class ReaderOptions:
    """Column choices for the generic readers; dataset-specific readers ignore what they don't need. Each field
    is a flag of `fednlp data prepare` (fednlp/options.py builds the parser from them)."""

    text_column: str | None = option("text column (csv/tsv/jsonl/hf)")
    label_column: str | None = option("label column (csv/tsv/jsonl/hf)")
    token_column: int = option("token column index (conll), default 0", default=0)
    tag_column: int = option("tag column index (conll), default -1 (last)", default=-1)
    source_column: str | None = option("seq2seq source column (jsonl/hf), or per-example group column")
    target_column: str | None = option("seq2seq target column (jsonl/hf)")
    user_column: str | None = option("who wrote each example, stored as field user (csv/tsv/jsonl/hf)")  # users.py
    time_column: str | None = option("when, as a number, stored as field order (csv/tsv/jsonl/hf)")
    group_column: str | None = option("protected group for group fairness, stored as field group (csv/tsv/jsonl/hf)")
    task: str | None = option("task type for hf: datasets: text_classification, sequence_tagging, span_extraction or "
                              "seq2seq")  # for readers that cannot tell
    test_fraction: float | None = option("make a seeded test split of this fraction")
    seed: int = option("seed of the test split", default=0)
    bad_records: str = option(  # layout.py
        "a malformed raw record (a row, line, sentence or question): error (default) refuses the whole file naming "
        "FILE:LINE; skip drops it with a warning naming FILE:LINE and lists it in the data file's attributes "
        "(skipped_records, skipped_locations)", default="error", choices=("error", "skip"))


Reader = Callable[[Path, ReaderOptions], DataFile]


@dataclass(frozen=True)
class ReaderEntry:
    name: str
    task_type: str
    read: Reader
    help: str


#: Built-in readers are imported on first use (a broken optional reader cannot break the CLI's --help);
#: installed packages add theirs through the `fednlp.readers` entry-point group (an entry point names a
#: module or function whose import registers the name with @register_reader).
READERS: Registry[ReaderEntry] = Registry(
    "dataset", "--dataset", group="fednlp.readers",
    builtins=tuple(f"fednlp.data.readers.{m}" for m in ("classification", "qa", "seq2seq", "tagging", "textdir")),
)


def register_reader(name: str, task_type: str, help: str = "") -> Callable[[Reader], Reader]:
    def decorate(read: Reader) -> Reader:
        READERS.add(name, ReaderEntry(name, task_type, read, help or (read.__doc__ or "").strip().split("\n")[0]))
        return read

    return decorate


def get_reader(name: str) -> ReaderEntry:
    return READERS.get(name, hint=", hf:NAME[:CONFIG]")


def _load_builtin_readers() -> dict[str, ReaderEntry]:
    return READERS.load()

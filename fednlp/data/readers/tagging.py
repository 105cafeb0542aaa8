"""Sequence tagging readers: CoNLL-2003, WNUT-17 and generic CoNLL-style column files.

Column files hold one token per line with its tags in columns, and a blank (or whitespace-only) line
between sentences; `-DOCSTART-` lines (document boundaries in the original CoNLL releases) are skipped.
Every example holds X (the sentence's tokens) and Y (their tags, kept as strings: IOB2 in both datasets);
the label vocabulary is the sorted tag set. A dev split is kept aside as layout.py describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fednlp.data.datafile import DataFile
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.classification import file_names, labelled_data_file, split_files
from fednlp.data.readers.layout import Example, read_lines
from fednlp.errors import UserError

TASK = "sequence_tagging"
DOCSTART = "-DOCSTART-"

_BLANKS = re.compile(r"[ \t]+")  # not str.split(), which also splits at no-break and other Unicode spaces


@dataclass(frozen=True)
class ColumnFormat:
    """Where a line's token and tag are; `separator` None splits on runs of spaces and tabs."""

    token_column: int
    tag_column: int
    min_columns: int
    separator: str | None = None

    def split(self, line: str) -> list[str]:
        return line.split(self.separator) if self.separator else _BLANKS.split(line.strip(" \t"))


def read_column_file(path: Path, fmt: ColumnFormat) -> list[Example]:
    """One example per sentence of a column file."""
    sentences: list[Example] = []
    tokens: list[str] = []
    tags: list[str] = []
    for line_number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            if tokens:
                sentences.append({"X": tokens, "Y": tags})
                tokens, tags = [], []
            continue
        columns = fmt.split(line)
        if columns[0] == DOCSTART:
            continue
        if len(columns) < fmt.min_columns:
            raise UserError(f"{path}:{line_number}: expected at least {fmt.min_columns} columns, found {len(columns)}")
        token, tag = columns[fmt.token_column], columns[fmt.tag_column]
        if not token or not tag:
            raise UserError(f"{path}:{line_number}: empty {'tag' if token else 'token'}; expected a token and a tag")
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append({"X": tokens, "Y": tags})
    return sentences


def _read_splits(source: Path, files: dict[str, Path], fmt: ColumnFormat) -> DataFile:
    splits = {split: read_column_file(path, fmt) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files))


@register_reader("conll2003", TASK)
def read_conll2003(source: Path, options: ReaderOptions) -> DataFile:
    """CoNLL-2003 English NER: train.txt, valid.txt (kept aside as dev) and test.txt; the NER column."""
    files = split_files(source, {"train": ("train.txt",), "dev": ("valid.txt",), "test": ("test.txt",)})
    return _read_splits(source, files, ColumnFormat(token_column=0, tag_column=3, min_columns=4))


@register_reader("wnut17", TASK)
def read_wnut17(source: Path, options: ReaderOptions) -> DataFile:
    """WNUT-17: wnut17train.conll, emerging.dev.conll (kept aside as dev), emerging.test.annotated."""
    files = split_files(source, {"train": ("wnut17train.conll",), "dev": ("emerging.dev.conll",),
                                 "test": ("emerging.test.annotated",)})
    return _read_splits(source, files, ColumnFormat(token_column=0, tag_column=1, min_columns=2, separator="\t"))


@register_reader("conll", TASK)
def read_conll(source: Path, options: ReaderOptions) -> DataFile:
    """CoNLL-style columns (--token-column, --tag-column): one file, or a folder of train/dev/test files."""
    files = split_files(source, {"train": ("train", "train.*"), "dev": ("dev", "dev.*", "valid", "valid.*"),
                                 "test": ("test", "test.*")})
    return _read_splits(source, files, _generic_format(options))


def _generic_format(options: ReaderOptions) -> ColumnFormat:
    """A token and its tag are two columns, so a line needs both; negative indices count from the end."""
    token, tag = options.token_column, options.tag_column
    if token == tag:
        raise UserError(f"--token-column and --tag-column are both {token}; expected two different columns")
    needed = max(2, *(index + 1 if index >= 0 else -index for index in (token, tag)))
    return ColumnFormat(token_column=token, tag_column=tag, min_columns=needed)

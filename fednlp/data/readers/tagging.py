"""Sequence tagging readers: CoNLL-2003, WNUT-17 and generic CoNLL-style column files.

Column files hold one token per line with its tags in columns, and a blank (or whitespace-only) line
between sentences; `-DOCSTART-` lines (document boundaries in the original CoNLL releases) are skipped.
Every example holds X (the sentence's tokens) and Y (their tags, kept as strings: IOB2 in both datasets);
the label vocabulary is the sorted tag set. A dev split is kept aside as layout.py describes.

A malformed line spoils its sentence: `--bad-records skip` drops the whole sentence (a sentence without one
of its tokens would teach wrong tags), reported at the first bad line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fednlp.data.datafile import DataFile
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.classification import file_names, labelled_data_file, split_files
from fednlp.data.readers.layout import BadRecord, BadRecords, Example, read_lines, text_problem
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

    def token_and_tag(self, columns: list[str]) -> tuple[str, str]:
        """The line's token and tag, or a BadRecord saying what the line lacks."""
        if len(columns) < self.min_columns:
            raise BadRecord(f"expected at least {self.min_columns} columns, found {len(columns)}")
        token, tag = columns[self.token_column], columns[self.tag_column]
        if not token or not tag:
            raise BadRecord(f"empty {'tag' if token else 'token'}; expected a token and a tag")
        return token, tag


def read_column_file(path: Path, fmt: ColumnFormat, bad: BadRecords) -> list[Example]:
    """One example per sentence of a column file; a sentence with a bad line goes to `bad` whole."""
    sentences: list[Example] = []
    tokens: list[str] = []
    tags: list[str] = []
    spoiled = False  # the current sentence has a bad line (already reported)
    for line_number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            if tokens and not spoiled:
                sentences.append({"X": tokens, "Y": tags})
            tokens, tags, spoiled = [], [], False
            continue
        columns = fmt.split(line)
        if columns[0] == DOCSTART or spoiled:
            continue
        try:
            if problem := text_problem(line):
                raise BadRecord(f"the line {problem}")
            token, tag = fmt.token_and_tag(columns)
        except BadRecord as exc:
            bad.report(path, line_number, str(exc), "sentence")
            spoiled = True
            continue
        tokens.append(token)
        tags.append(tag)
    if tokens and not spoiled:
        sentences.append({"X": tokens, "Y": tags})
    return sentences


def _read_splits(source: Path, files: dict[str, Path], fmt: ColumnFormat, options: ReaderOptions) -> DataFile:
    bad = BadRecords(options.bad_records, source)
    splits = {split: read_column_file(path, fmt, bad) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files), bad)


@register_reader("conll2003", TASK)
def read_conll2003(source: Path, options: ReaderOptions) -> DataFile:
    """CoNLL-2003 English NER: train.txt, valid.txt (kept aside as dev) and test.txt; the NER column."""
    files = split_files(source, {"train": ("train.txt",), "dev": ("valid.txt",), "test": ("test.txt",)})
    return _read_splits(source, files, ColumnFormat(token_column=0, tag_column=3, min_columns=4), options)


@register_reader("wnut17", TASK)
def read_wnut17(source: Path, options: ReaderOptions) -> DataFile:
    """WNUT-17: wnut17train.conll, emerging.dev.conll (kept aside as dev), emerging.test.annotated."""
    files = split_files(source, {"train": ("wnut17train.conll",), "dev": ("emerging.dev.conll",),
                                 "test": ("emerging.test.annotated",)})
    return _read_splits(source, files, ColumnFormat(token_column=0, tag_column=1, min_columns=2, separator="\t"),
                        options)


@register_reader("conll", TASK)
def read_conll(source: Path, options: ReaderOptions) -> DataFile:
    """CoNLL-style columns (--token-column, --tag-column): one file, or a folder of train/dev/test files."""
    files = split_files(source, {"train": ("train", "train.*"), "dev": ("dev", "dev.*", "valid", "valid.*"),
                                 "test": ("test", "test.*")})
    return _read_splits(source, files, _generic_format(options), options)


def _generic_format(options: ReaderOptions) -> ColumnFormat:
    """A token and its tag are two columns, so a line needs both; negative indices count from the end."""
    token, tag = options.token_column, options.tag_column
    if token == tag:
        raise UserError(f"--token-column and --tag-column are both {token}; expected two different columns")
    needed = max(2, *(index + 1 if index >= 0 else -index for index in (token, tag)))
    return ColumnFormat(token_column=token, tag_column=tag, min_columns=needed)

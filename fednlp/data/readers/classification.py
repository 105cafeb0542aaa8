"""Text classification readers: 20 Newsgroups, SST-2, AG News, and generic CSV / TSV / JSONL files.

Every example holds X (the text) and Y (the label name); the generic readers add `source` (the natural
client group) when --source-column names it. Label vocabularies are sorted label names.

Every reader returns the dataset's own splits (layout.py keeps a dev split aside). A single file, or a
folder holding one split only, is a train pool with an empty test split: `fednlp data prepare
--test-fraction` splits it.
"""

from __future__ import annotations

import csv
import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from fednlp.data.datafile import DataFile, label_vocab_of
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.layout import Example, data_file_from_splits, parse_json_line, read_lines, read_text
from fednlp.errors import UserError

TASK = "text_classification"

Row = tuple[int, dict[str, Any]]  # (line number, column -> value)
Table = tuple[list[str], list[Row]]  # (header, rows)


# ----------------------------------------------------------------------------------------------- splits


def split_files(source: Path, patterns: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    """Map split names (train, dev, test) to files: a file is the train pool; a folder is globbed.

    A folder without a test file uses its dev file as the test split; a folder with one split only
    (AG News ships test.csv alone) makes that file the train pool, so --test-fraction can split it.
    """
    if source.is_file():
        return {"train": source}
    found = {split: path for split, globs in patterns.items() if (path := _one_match(source, split, globs))}
    if not found:
        wanted = ", ".join(pattern for globs in patterns.values() for pattern in globs)
        raise UserError(f"--source {source} holds none of the expected files ({wanted})")
    if "test" not in found and "dev" in found:
        found["test"] = found.pop("dev")
    if "train" not in found:
        found["train"] = found.pop("test")
    return found


def _one_match(folder: Path, split: str, globs: tuple[str, ...]) -> Path | None:
    matches = sorted({path for pattern in globs for path in folder.glob(pattern) if path.is_file()})
    if len(matches) > 1:
        names = ", ".join(path.name for path in matches)
        raise UserError(f"--source {folder} holds several {split} files ({names}); keep one or pass the file")
    return matches[0] if matches else None


def labelled_data_file(
    task_type: str, splits: dict[str, list[Example]], source: Path, files: dict[str, str]
) -> DataFile:
    """The splits as one DataFile with its sorted label vocabulary and the files each split came from."""
    data = data_file_from_splits(task_type, splits, source, {"source_files": files})
    return replace(data, label_vocab=label_vocab_of(data.fields["Y"]))


def file_names(files: dict[str, Path]) -> dict[str, str]:
    """Which file fed which split, for the attributes record (names only: no local paths leak into it)."""
    return {split: path.name for split, path in files.items()}


# ------------------------------------------------------------------------------------- generic tables

#: field -> (what its value is, the option naming its column)
_ROLES = {"X": ("text", "--text-column"), "Y": ("label", "--label-column"), "source": ("source", "--source-column")}


def csv_rows(path: Path, **dialect: Any) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line each ends on; a malformed file becomes a UserError at its line."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), **dialect)
    try:
        for row in reader:
            if row:
                yield reader.line_num, row
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: unreadable row ({exc})") from None


def read_delimited(path: Path, **dialect: Any) -> Table:
    """A delimited file whose first row is the header."""
    rows = csv_rows(path, **dialect)
    header = next(rows, (0, []))[1]
    # A short row lacks the last columns (reported as missing values); extra cells belong to no column.
    return header, [(line, dict(zip(header, row, strict=False))) for line, row in rows]


def read_jsonl(path: Path) -> Table:
    """JSON Lines, one object per line; the first object's keys act as the header."""
    rows = [(n, parse_json_line(path, n, line)) for n, line in enumerate(read_lines(path), 1) if line.strip()]
    return (list(rows[0][1]) if rows else []), rows


def table_examples(path: Path, table: Table, columns: dict[str, str]) -> list[Example]:
    """One example per row: each field's value from its column, which every row must fill."""
    header, rows = table
    for name, column in columns.items():
        if column not in header:
            found = ", ".join(header) or "none"
            raise UserError(f"{path}: no column {column!r} ({_ROLES[name][1]}); found columns: {found}")
    return [
        {name: _cell(path, line, row.get(column), name, column) for name, column in columns.items()}
        for line, row in rows
    ]


def _cell(path: Path, line: int, value: Any, name: str, column: str) -> str:
    if isinstance(value, (list, dict)):
        raise UserError(f"{path}:{line}: column {column!r} holds a JSON {type(value).__name__}, expected a string")
    if value is None or not str(value).strip():
        raise UserError(f"{path}:{line}: row has no {_ROLES[name][0]} in column {column!r}")
    return str(value)


def _generic_columns(options: ReaderOptions, dataset: str) -> dict[str, str]:
    given = {"--text-column": options.text_column, "--label-column": options.label_column}
    missing = [option for option, column in given.items() if not column]
    if missing:
        raise UserError(f"--dataset {dataset} needs {' and '.join(missing)}: the header names of the text and label")
    columns = {"X": options.text_column, "Y": options.label_column}
    return {**columns, "source": options.source_column} if options.source_column else columns


def _read_generic(source: Path, options: ReaderOptions, dataset: str, read_table: Callable[[Path], Table]) -> DataFile:
    columns = _generic_columns(options, dataset)
    ext = f".{dataset}"
    files = split_files(source, {"train": (f"train{ext}",), "dev": (f"dev{ext}", f"valid{ext}", f"validation{ext}"),
                                 "test": (f"test{ext}",)})
    splits = {split: table_examples(path, read_table(path), columns) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files))


@register_reader("csv", TASK)
def read_csv(source: Path, options: ReaderOptions) -> DataFile:
    """CSV with a header (--text-column, --label-column): one file, or a folder of train/dev/test.csv."""
    return _read_generic(source, options, "csv", read_delimited)


@register_reader("tsv", TASK)
def read_tsv(source: Path, options: ReaderOptions) -> DataFile:
    """TSV with a header, unquoted as in GLUE (--text-column, --label-column): a file or a train/dev/test folder."""
    return _read_generic(source, options, "tsv", _read_unquoted_tsv)


@register_reader("jsonl", TASK)
def read_jsonl_dataset(source: Path, options: ReaderOptions) -> DataFile:
    """JSON Lines (--text-column, --label-column): one file, or a folder of train/dev/test.jsonl."""
    return _read_generic(source, options, "jsonl", read_jsonl)


def _read_unquoted_tsv(path: Path) -> Table:
    """NLP TSV files (GLUE) never quote, and their text holds stray quote marks: a quote is text."""
    return read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE)


# ------------------------------------------------------------------------------------------------ SST-2


@register_reader("sst2", TASK)
def read_sst2(source: Path, options: ReaderOptions) -> DataFile:
    """SST-2 (GLUE TSV folder): train.tsv, and dev.tsv as the test split (GLUE's test.tsv has no labels).

    Labels stay GLUE's strings "0" (negative) and "1" (positive); sentences are kept verbatim.
    """
    files = split_files(source, {"train": ("train.tsv",), "test": ("dev.tsv",)})
    columns = {"X": "sentence", "Y": "label"}
    splits = {split: table_examples(path, _read_unquoted_tsv(path), columns) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files))


# ---------------------------------------------------------------------------------------------- AG News


@register_reader("agnews", TASK)
def read_agnews(source: Path, options: ReaderOptions) -> DataFile:
    """AG News CSV ("class","title","description"; no header): a train.csv/test.csv folder or one file.

    X is title + " " + description, as HF `ag_news` and torchtext build it, so results compare with
    theirs. Text is kept verbatim: the README's "\\n" escape appears in the files as a lone backslash
    (and "\\$" for "$"), which no rule can undo without breaking words such as "social\\network".
    Label names come from classes.txt beside the CSV, else they are the class numbers.
    """
    files = split_files(source, {"train": ("train.csv",), "test": ("test.csv",)})
    names = _agnews_class_names(files["train"].parent / "classes.txt")
    splits = {split: _agnews_examples(path, names) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files))


def _agnews_class_names(path: Path) -> dict[str, str]:
    """Class number ("1") -> name ("World"), from classes.txt (one name per line), if present."""
    if not path.is_file():
        return {}
    names = [line.strip() for line in read_lines(path) if line.strip()]
    return {str(number): name for number, name in enumerate(names, 1)}


def _agnews_examples(path: Path, names: dict[str, str]) -> list[Example]:
    examples = []
    for line, row in csv_rows(path):
        if len(row) != 3:
            raise UserError(f"{path}:{line}: expected 3 columns (class, title, description), found {len(row)}")
        if names and row[0] not in names:
            raise UserError(f"{path}:{line}: class {row[0]!r} is not one of {', '.join(names)} (classes.txt)")
        examples.append({"X": f"{row[1]} {row[2]}", "Y": names.get(row[0], row[0])})
    return examples


# ------------------------------------------------------------------------------------- 20 Newsgroups

_NEWS_FOLDERS = {"20news-bydate-train": "train", "20news-bydate-test": "test"}
_NEWS_ARCHIVE = "20news-bydate.tar.gz"

Post = tuple[str, str, str, str]  # (split, newsgroup, file name, text)


@register_reader("20news", TASK)
def read_20news(source: Path, options: ReaderOptions) -> DataFile:
    """20 Newsgroups bydate: the .tar.gz (read in place), its extracted folder, or the folder holding it.

    Y is the newsgroup; X is the raw post, headers included, decoded as Latin-1 as sklearn does.
    Examples are sorted by split, newsgroup and file name.
    """
    if source.is_file():
        posts, origin = _posts_in_archive(source), f"{source.name}:"
    elif all((source / folder).is_dir() for folder in _NEWS_FOLDERS):
        posts, origin = _posts_in_folder(source), ""
    elif (source / _NEWS_ARCHIVE).is_file():
        posts, origin = _posts_in_archive(source / _NEWS_ARCHIVE), f"{_NEWS_ARCHIVE}:"
    else:
        raise UserError(f"--source {source}: expected {_NEWS_ARCHIVE}, or a folder holding it or "
                        f"{' and '.join(_NEWS_FOLDERS)}/")
    splits: dict[str, list[Example]] = {split: [] for split in _NEWS_FOLDERS.values()}
    for split, group, _, text in sorted(posts):  # by split, newsgroup, file name
        splits[split].append({"X": text, "Y": group})
    empty = [folder for folder, split in _NEWS_FOLDERS.items() if not splits[split]]
    if empty:
        raise UserError(f"--source {source}: no posts under {' or '.join(empty)}/<newsgroup>/")
    files = {split: f"{origin}{folder}" for folder, split in _NEWS_FOLDERS.items()}
    return labelled_data_file(TASK, splits, source, files)


def _post_path(name: str) -> tuple[str, str, str] | None:
    """(split, newsgroup, file name) of a path split-folder/newsgroup/file, else None."""
    parts = PurePosixPath(name).parts
    if len(parts) != 3 or parts[0] not in _NEWS_FOLDERS:
        return None
    return _NEWS_FOLDERS[parts[0]], parts[1], parts[2]


def _posts_in_archive(path: Path) -> list[Post]:
    try:
        with tarfile.open(path, "r:*") as tar:
            return [
                (*where, tar.extractfile(member).read().decode("latin-1"))
                for member in tar
                if member.isfile() and (where := _post_path(member.name))
            ]
    except (tarfile.TarError, EOFError, OSError) as exc:
        reason = type(exc).__name__
        raise UserError(f"{path}: not a readable tar archive ({reason}); expected {_NEWS_ARCHIVE}") from None


def _posts_in_folder(folder: Path) -> list[Post]:
    return [
        (*where, path.read_text(encoding="latin-1"))
        for path in folder.glob("*/*/*")
        if path.is_file() and (where := _post_path(path.relative_to(folder).as_posix()))
    ]

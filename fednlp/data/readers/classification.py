"""Text classification readers: 20 Newsgroups, SST-2, AG News, and generic CSV / TSV / JSONL files.

Every example holds X (the text) and Y (the label name); the generic readers add `source` (the natural
client group) when --source-column names it, and `user`, `order`, `group` from --user-column, --time-column,
--group-column (users.py). 20 Newsgroups adds `user` (the From: address) and `order` (the article number's
rank within its newsgroup, scaled to [0, 1]: the archive has no Date header). Label vocabularies are sorted
label names.

Every reader returns the dataset's own splits (layout.py keeps a dev split aside). A single file, or a
folder holding one split only, is a train pool with an empty test split: `fednlp data prepare
--test-fraction` splits it.
"""

from __future__ import annotations

import csv
import io
import lzma
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath
from typing import Any

from fednlp.data.datafile import DataFile, label_vocab_of
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.layout import (
    BadRecord,
    BadRecords,
    Example,
    data_file_from_splits,
    parse_json_object,
    read_bytes,
    read_lines,
    read_text,
)
from fednlp.data.readers.users import (
    USER_FIELDS,
    normalised_address,
    number_sort_key,
    scaled_ranks,
    user_columns,
    user_fields_of,
)
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
    task_type: str, splits: dict[str, list[Example]], source: Path, files: dict[str, str], bad: BadRecords
) -> DataFile:
    """The splits as one DataFile with its sorted label vocabulary and the files each split came from."""
    data = data_file_from_splits(task_type, splits, source, {"source_files": files}, bad)
    return replace(data, label_vocab=label_vocab_of(data.fields["Y"]))


def file_names(files: dict[str, Path]) -> dict[str, str]:
    """Which file fed which split, for the attributes record (names only: no local paths leak into it)."""
    return {split: path.name for split, path in files.items()}


# ------------------------------------------------------------------------------------- generic tables

#: field -> (what its value is, the option naming its column)
_ROLES = {"X": ("text", "--text-column"), "Y": ("label", "--label-column"), "source": ("source", "--source-column"),
          **USER_FIELDS}


def csv_rows(path: Path, **dialect: Any) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line each ends on; a malformed file becomes a UserError at its line."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), **dialect)
    try:
        for row in reader:
            if row:
                yield reader.line_num, row
    except csv.Error as exc:
        # The csv module cannot resynchronize after such an error (an over-long field, a broken quote), so
        # it is the file's, not one row's.
        raise UserError(f"{path}:{reader.line_num}: unreadable row ({exc}); expected delimited text") from None


def read_delimited(path: Path, **dialect: Any) -> Table:
    """A delimited file whose first row is the header."""
    rows = csv_rows(path, **dialect)
    header = next(rows, (0, []))[1]
    # A short row lacks the last columns (reported as missing values); extra cells belong to no column.
    return header, [(line, dict(zip(header, row, strict=False))) for line, row in rows]


def read_jsonl(path: Path, bad: BadRecords) -> Table:
    """JSON Lines, one object per line; the header is every key any object has, in order of appearance."""
    rows = []
    for number, line in enumerate(read_lines(path), 1):
        if line.strip():
            try:
                rows.append((number, parse_json_object(line)))
            except BadRecord as exc:
                bad.report(path, number, str(exc), "line")
    return list({key: None for _, row in rows for key in row}), rows


def table_examples(path: Path, table: Table, columns: dict[str, str], bad: BadRecords) -> list[Example]:
    """One example per row: each field's value from its column, which every row must fill."""
    header, rows = table
    for name, column in columns.items():
        if column not in header:
            found = ", ".join(map(str, header)) or "none"
            raise UserError(f"{path}: no column {column!r} ({_ROLES[name][1]}); found columns: {found}")
    texts = {name: column for name, column in columns.items() if name not in USER_FIELDS}
    users = {name: column for name, column in columns.items() if name in USER_FIELDS}
    return bad.examples(path, rows, lambda row: {**{name: _cell(row.get(column), name, column)
                                                    for name, column in texts.items()},
                                                 **user_fields_of(row, users)}, "row")


def _cell(value: Any, name: str, column: str) -> str:
    what = _ROLES[name][0]
    if isinstance(value, (list, dict)):
        kind = "object" if isinstance(value, dict) else "list"
        raise BadRecord(f"column {column!r} holds a JSON {kind}, expected a string {what}")
    if value is None or not str(value).strip():
        raise BadRecord(f"row has no {what} in column {column!r}; expected a non-empty {what}")
    return str(value)


def _generic_columns(options: ReaderOptions, dataset: str) -> dict[str, str]:
    given = {"--text-column": options.text_column, "--label-column": options.label_column}
    missing = [option for option, column in given.items() if not column]
    if missing:
        raise UserError(f"--dataset {dataset} needs {' and '.join(missing)}: the header names of the text and label")
    columns = {"X": options.text_column, "Y": options.label_column, "source": options.source_column,
               **user_columns(options)}
    return {name: column for name, column in columns.items() if column}


def _read_generic(source: Path, options: ReaderOptions, dataset: str,
                  read_table: Callable[[Path, BadRecords], Table]) -> DataFile:
    """`read_table` gets the collector for records it cannot even parse (a JSON line); rows go to it later."""
    columns = _generic_columns(options, dataset)
    ext = f".{dataset}"
    files = split_files(source, {"train": (f"train{ext}",), "dev": (f"dev{ext}", f"valid{ext}", f"validation{ext}"),
                                 "test": (f"test{ext}",)})
    bad = BadRecords(options.bad_records, source)
    splits = {split: table_examples(path, read_table(path, bad), columns, bad) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files), bad)


@register_reader("csv", TASK)
def read_csv(source: Path, options: ReaderOptions) -> DataFile:
    """CSV with a header (--text-column, --label-column): one file, or a folder of train/dev/test.csv."""
    return _read_generic(source, options, "csv", lambda path, bad: read_delimited(path))


@register_reader("tsv", TASK)
def read_tsv(source: Path, options: ReaderOptions) -> DataFile:
    """TSV with a header, unquoted as in GLUE (--text-column, --label-column): a file or a train/dev/test folder."""
    return _read_generic(source, options, "tsv", lambda path, bad: _read_unquoted_tsv(path))


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
    bad = BadRecords(options.bad_records, source)
    splits = {split: table_examples(path, _read_unquoted_tsv(path), columns, bad) for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files), bad)


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
    bad = BadRecords(options.bad_records, source)
    splits = {split: bad.examples(path, csv_rows(path), lambda row: _agnews_example(row, names), "row")
              for split, path in files.items()}
    return labelled_data_file(TASK, splits, source, file_names(files), bad)


def _agnews_class_names(path: Path) -> dict[str, str]:
    """Class number ("1") -> name ("World"), from classes.txt (one name per line), if present."""
    if not path.is_file():
        return {}
    names = [line.strip() for line in read_lines(path) if line.strip()]
    return {str(number): name for number, name in enumerate(names, 1)}


def _agnews_example(row: list[str], names: dict[str, str]) -> Example:
    if len(row) != 3:
        raise BadRecord(f"found {len(row)} columns; expected 3 (class, title, description)")
    if names and row[0] not in names:
        raise BadRecord(f"class {row[0]!r} is not one of {', '.join(names)}; expected a class numbering a line "
                        "of classes.txt")
    if not row[0].strip():
        raise BadRecord("row has no class; expected a class number")
    return {"X": f"{row[1]} {row[2]}", "Y": names.get(row[0], row[0])}


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
        posts, origin, root = _posts_in_archive(source), f"{source.name}:", source
    elif all((source / folder).is_dir() for folder in _NEWS_FOLDERS):
        posts, origin, root = _posts_in_folder(source), "", source
    elif (source / _NEWS_ARCHIVE).is_file():
        posts, origin, root = _posts_in_archive(source / _NEWS_ARCHIVE), f"{_NEWS_ARCHIVE}:", source / _NEWS_ARCHIVE
    else:
        raise UserError(f"--source {source}: expected {_NEWS_ARCHIVE}, or a folder holding it or "
                        f"{' and '.join(_NEWS_FOLDERS)}/")
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {split: [] for split in _NEWS_FOLDERS.values()}
    folders = {split: folder for folder, split in _NEWS_FOLDERS.items()}
    posts = sorted(posts)  # by split, newsgroup, file name
    # Article numbers count up within a newsgroup (over both splits: bydate's test posts are the later ones).
    orders = scaled_ranks([group for _, group, _, _ in posts], [number_sort_key(name) for _, _, name, _ in posts])
    for (split, group, name, text), order in zip(posts, orders):
        post = root / folders[split] / group / name  # inside the archive, when it is one
        example = bad.take(post, None, lambda: {"X": text, "Y": group, "user": _news_author(text), "order": order},
                           "post")
        if example is not None:
            splits[split].append(example)
    empty = [folder for folder, split in _NEWS_FOLDERS.items() if not splits[split]]
    if empty:
        raise UserError(f"--source {source}: no posts under {' or '.join(empty)}/<newsgroup>/")
    files = {split: f"{origin}{folder}" for folder, split in _NEWS_FOLDERS.items()}
    return labelled_data_file(TASK, splits, source, files, bad)


def _news_author(post: str) -> str:
    """The normalised address of the post's From: header; '' for a post without one (none in the archive).

    Its first line only: the bydate archive dropped some headers' names but kept their continuation lines
    (`<message-id> <message-id>` of a References header), which a header parser folds into the From above.
    """
    sender = HeaderParser().parsestr(post, headersonly=True)["From"]
    lines = [line for line in str(sender or "").splitlines() if line.strip()]
    return normalised_address(lines[0]) if lines else ""


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
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        reason = type(exc).__name__
        raise UserError(f"{path}: not a readable tar archive ({reason}); expected {_NEWS_ARCHIVE}") from None


def _posts_in_folder(folder: Path) -> list[Post]:
    return [
        (*where, read_bytes(path).decode("latin-1"))
        for path in folder.glob("*/*/*")
        if path.is_file() and (where := _post_path(path.relative_to(folder).as_posix()))
    ]

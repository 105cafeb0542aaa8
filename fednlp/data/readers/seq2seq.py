"""Readers for seq2seq (task_type seq2seq): AESLC, SciTLDR, Gigaword, and generic JSONL.

Every example holds X (the source text), Y (the target to train on) and references (every reference target,
Y first: ROUGE takes the best over them); AESLC adds source and user, its natural client group (the mailbox
owner), and order (the message number within its folder, ranked within the mailbox and scaled to [0, 1]);
seq2seq-jsonl adds user, order and group from --user-column, --time-column and --group-column (users.py).
A folder's files name their split (train*, dev* / valid*, test*); a lone file is a pool that prepare's
--test-fraction splits.
"""

from __future__ import annotations

import lzma
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from fednlp.data.datafile import DataFile
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.layout import (
    SPLITS,
    BadRecord,
    BadRecords,
    Example,
    data_file_from_splits,
    parse_json_object,
    read_bytes,
    read_lines,
    split_of_name,
)
from fednlp.data.readers.users import number_sort_key, scaled_ranks, user_columns, user_fields_of
from fednlp.errors import UserError

TASK = "seq2seq"


def _split_of_file(path: Path) -> str:
    split = split_of_name(path.name)
    if split is None:
        raise UserError(f"{path}: the file name does not say its split; expected a name starting with "
                        "train, dev, valid or test (or give the file alone as --source)")
    return split


# ---------------------------------------------------------------- AESLC

#: The lines that open the subject and the annotators' subjects (@ann0, @ann1, @ann2 in dev and test).
_AESLC_MARKER = re.compile(r"^@(subject|ann\d+)[ \t\r]*$", re.MULTILINE)


@register_reader("aeslc", TASK, "AESLC email -> subject: enron_subject_line.tar.gz or its extracted folder")
def read_aeslc(source: Path, options: ReaderOptions) -> DataFile:
    """One example per <user>_<folder>_<n>.subject file (a file is a record); dev is kept aside as validation."""
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {split: [] for split in SPLITS}
    files = _aeslc_files(source)
    stems = [PurePosixPath(name).name.removesuffix(".subject") for name, _ in files]
    users = [stem.split("_")[0] for stem in stems]
    # The message number within its folder, ranked within the mailbox (over every split): the corpus has no dates.
    orders = scaled_ranks(users, [number_sort_key(stem.rsplit("_", 1)[-1]) for stem in stems])
    for (name, raw), user, order in zip(files, users, orders):
        split = PurePosixPath(name).parent.name
        if split not in splits:
            raise UserError(f"{source}: {name} lies in {split!r}; expected it in a train, dev or test folder")
        example = bad.take(source / name, None, lambda: {**_aeslc_example(raw, user), "user": user, "order": order},
                           "file")
        if example is not None:
            splits[split].append(example)
    return data_file_from_splits(TASK, splits, source, bad=bad)


def _aeslc_files(source: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of every .subject file, sorted by name, from the archive or the folder."""
    if source.is_dir():
        return sorted((path.relative_to(source).as_posix(), read_bytes(path))
                      for path in source.rglob("*.subject") if path.is_file())
    return sorted(_tar_members(source, ".subject"))


def _tar_members(archive: Path, suffix: str) -> Iterator[tuple[str, bytes]]:
    """Members in archive order: a sorted walk would seek backwards through the gzip stream."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(suffix):
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        # The class name only: tarfile's messages run over several lines.
        raise UserError(f"{archive}: not a readable tar archive ({exc.__class__.__name__}); "
                        "expected a .tar.gz or a folder") from None


def _aeslc_example(raw: bytes, user: str) -> Example:
    """The body lies before the line "@subject"; the subject, then each "@annN" subject, after it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(f"byte {exc.start} (0x{raw[exc.start]:02x}) is not UTF-8; expected UTF-8 text") from None
    body, *tagged = _AESLC_MARKER.split(text)
    sections = dict(zip(tagged[0::2], (section.strip() for section in tagged[1::2])))
    if "subject" not in sections:
        raise BadRecord("no '@subject' line; expected the email body, a line '@subject', then the subject")
    annotations = sorted((int(tag[3:]), section) for tag, section in sections.items() if tag != "subject")
    subject = sections["subject"]
    return {"X": body.strip(), "Y": subject, "references": [subject] + [a for _, a in annotations], "source": user}


# ---------------------------------------------------------------- JSONL: SciTLDR and generic


@register_reader("scitldr", TASK, "SciTLDR abstract -> TLDR: a folder of {train,dev,test}.jsonl, or one file")
def read_scitldr(source: Path, options: ReaderOptions) -> DataFile:
    """X is the abstract's sentences joined by spaces; references are every TLDR (author's, then reviewers')."""
    return _read_jsonl(source, "source", "target", options)


@register_reader("seq2seq-jsonl", TASK, "JSONL with --source-column/--target-column keys (default source/target)")
def read_seq2seq_jsonl(source: Path, options: ReaderOptions) -> DataFile:
    """A source that is a list of strings is joined by spaces; a target that is a list gives the references."""
    return _read_jsonl(source, options.source_column or "source", options.target_column or "target", options)


def _read_jsonl(source: Path, source_key: str, target_key: str, options: ReaderOptions) -> DataFile:
    if source.is_file():
        files = [("train", source)]
    else:
        files = [(_split_of_file(path), path) for path in sorted(source.glob("*.jsonl*")) if path.is_file()]
    if not files:
        raise UserError(f"--source {source} holds no *.jsonl files")
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {}
    for split, path in files:
        lines = ((number, line) for number, line in enumerate(read_lines(path), start=1) if line.strip())
        splits.setdefault(split, []).extend(
            bad.examples(path, lines, lambda line: _jsonl_example(parse_json_object(line), source_key, target_key,
                                                                  user_columns(options)), "line"))
    return data_file_from_splits(TASK, splits, source, bad=bad)


def _jsonl_example(record: dict[str, Any], source_key: str, target_key: str, users: dict[str, str]) -> Example:
    for key in (source_key, target_key):
        if key not in record:
            found = ", ".join(sorted(record))[:200] or "no key"
            raise BadRecord(f"no key {key!r} (found {found}); expected the keys named by "
                            "--source-column/--target-column")
    text = _strings(source_key, record[source_key])
    references = _strings(target_key, record[target_key])
    return {"X": " ".join(text), "Y": references[0], "references": references, **user_fields_of(record, users)}


def _strings(key: str, value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise BadRecord(f"{key!r} is {str(value)[:80]!r}; expected a string or a non-empty list of strings")
    return values


# ---------------------------------------------------------------- Gigaword


@register_reader("gigaword", TASK, "line-aligned *.article*.txt / *.title*.txt pairs (Gigaword, Rush et al.)")
def read_gigaword(source: Path, options: ReaderOptions) -> DataFile:
    """Line i of X.article.txt is the source of the headline on line i of X.title.txt."""
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {}
    for split, article, title in _gigaword_pairs(source):
        splits.setdefault(split, []).extend(_aligned_pairs(article, title, bad))
    return data_file_from_splits(TASK, splits, source, bad=bad)


def _gigaword_pairs(source: Path) -> list[tuple[str, Path, Path]]:
    articles = [source] if source.is_file() else sorted(source.glob("*.article*.txt"))
    if not articles:
        raise UserError(f"--source {source} holds no *.article*.txt files; expected line-aligned "
                        "*.article*.txt / *.title*.txt pairs")
    pairs = []
    for article in articles:
        title = article.with_name(article.name.replace(".article", ".title", 1))
        if title == article or not title.is_file():
            raise UserError(f"{article} has no headline file beside it; expected a file named like it with "
                            "'.title' for '.article'")
        pairs.append(("train" if source.is_file() else _split_of_file(article), article, title))
    return pairs


def _aligned_pairs(article: Path, title: Path, bad: BadRecords) -> list[Example]:
    """Line i of each file; a bad pair is reported at the article file's line."""
    sources, targets = read_lines(article), read_lines(title)
    if len(sources) != len(targets):
        raise UserError(f"{article} has {len(sources)} lines but {title} has {len(targets)}; "
                        "expected line-aligned files, one pair per line")
    pairs = enumerate(zip(sources, targets), start=1)
    return bad.examples(article, pairs, lambda pair: {"X": pair[0], "Y": pair[1], "references": [pair[1]]}, "line pair")

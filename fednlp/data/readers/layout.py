"""How raw dataset files lie on disk: split names from file names, text files that may be gzipped, the
assembly of named splits (train / dev / test) into one DataFile, and where a malformed raw record goes.

A dev split is kept aside: its examples are in neither `train_index_list` nor `test_index_list`, so a seeded
`--test-fraction` split never draws from it and a run never trains on it. They are listed in
`attributes["valid_index_list"]` and every example carries a `split` field naming its original split.

Every reader sends each malformed record (a row, a line, a sentence, a question) to one `BadRecords`
collector, whose mode is `--bad-records`: `error` refuses the whole file with `FILE:LINE: what is wrong;
expected what`; `skip` drops the record with a one-line warning naming FILE:LINE and lists it in the data
file's attributes. A record is never dropped silently.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from fednlp.data.datafile import DataFile
from fednlp.errors import UserError

SPLITS = ("train", "dev", "test")

#: File-name prefixes of each split, as the common dataset releases spell them ("valid" covers "validation").
_SPLIT_PREFIXES = (("train", "train"), ("dev", "dev"), ("valid", "dev"), ("test", "test"))

_GZIP_MAGIC = b"\x1f\x8b"

#: Characters no data file can store: NUL (HDF5 strings end at it) and lone surrogates (not UTF-8; a JSON
#: escape such as "\ud800" makes one).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

BAD_RECORD_MODES = ("error", "skip")

#: Every character str.splitlines() breaks at: a message quoting raw text must stay one line.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

Example = dict[str, Any]
Item = TypeVar("Item")


# ----------------------------------------------------------------------------------------- bad records


class BadRecord(Exception):
    """One raw record is malformed. The message says what is wrong and what was expected; the caller, who
    knows the file and line, hands it to `BadRecords.report`."""


def one_line(message: str) -> str:
    """The message with every line break it quotes from raw data escaped (\\n, \\x85, \\u2028)."""
    return _LINE_BREAKS.sub(lambda found: repr(found[0])[1:-1], message)


def location(path: Path | str, line: int | None) -> str:
    """`FILE:LINE`, or `FILE` alone for a record that is a whole file (a post, an e-mail)."""
    return f"{path}" if line is None else f"{path}:{line}"


def _warn_on_stderr(message: str) -> None:
    print(f"fednlp: warning: {message}", file=sys.stderr, flush=True)


class BadRecords:
    """Where every malformed raw record of one `data prepare` goes, in the mode `--bad-records` chose.

    error: the first one ends the read with a UserError `FILE:LINE: what is wrong; expected what`.
    skip:  each one is dropped with a one-line warning naming FILE:LINE, counted, and listed (relative to
           --source, so no local path leaks) in the data file's attributes.
    """

    def __init__(self, mode: str, source: Path, warn: Callable[[str], None] = _warn_on_stderr):
        if mode not in BAD_RECORD_MODES:
            raise UserError(f"--bad-records {mode!r}: expected one of {', '.join(BAD_RECORD_MODES)}")
        self.mode, self.source, self.warn = mode, source, warn
        self.locations: list[str] = []

    def report(self, path: Path | str, line: int | None, message: str, record: str = "record") -> None:
        where = location(path, line)
        if self.mode == "error":
            raise UserError(one_line(f"{where}: {message}"))
        self.locations.append(location(self._relative(path), line))
        self.warn(one_line(f"{where}: {message}; skipped this {record}"))

    def take(self, path: Path | str, line: int | None, make: Callable[[], Example],
             record: str = "record") -> Example | None:
        """The example `make` builds, checked to be storable; None once a bad one has been reported."""
        try:
            return storable(make())
        except BadRecord as exc:
            self.report(path, line, str(exc), record)
            return None

    def examples(self, path: Path | str, items: Iterable[tuple[int, Item]], make: Callable[[Item], Example],
                 record: str = "record") -> list[Example]:
        """One example per (line, item), the bad ones reported."""
        taken = (self.take(path, line, lambda item=item: make(item), record) for line, item in items)
        return [example for example in taken if example is not None]

    def attributes(self) -> dict[str, Any]:
        """What the data file records of the skipped records (nothing in error mode: none were skipped)."""
        if self.mode == "error":
            return {}
        return {"bad_records": self.mode, "skipped_records": len(self.locations), "skipped_locations": self.locations}

    def _relative(self, path: Path | str) -> str:
        if not isinstance(path, Path):
            return path
        if path == self.source:
            return path.name
        try:
            return path.relative_to(self.source).as_posix()
        except ValueError:
            return str(path)


def text_problem(text: str) -> str | None:
    """Why a text cannot go into a data file, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    what = "a NUL character" if found[0] == "\x00" else f"a lone surrogate (\\u{ord(found[0]):04x})"
    return f"holds {what} at character {found.start()}; expected text without NUL or lone surrogates"


def storable(example: Example) -> Example:
    """The example, if every string in it can be written to a data file; else a BadRecord."""
    for name, value in example.items():
        for text in (value if isinstance(value, list) else [value]):
            if isinstance(text, str) and (problem := text_problem(text)):
                raise BadRecord(f"field {name} {problem}")
    return example


# ------------------------------------------------------------------------------------------ text files


def split_of_name(name: str) -> str | None:
    """The split a file name announces (`train_first1000.article.txt` -> train), or None."""
    lowered = name.lower()
    for prefix, split in _SPLIT_PREFIXES:
        if lowered.startswith(prefix):
            return split
    return None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc.__class__.__name__}); "
                        "expected a readable file") from None


def read_text(path: Path) -> str:
    """A UTF-8 text file, gunzipped when its bytes say gzip (releases name such files inconsistently).

    Newlines are kept as they are: CSV answer offsets count a CR LF as two characters.
    """
    raw = read_bytes(path)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: broken gzip data ({exc}); expected a complete .gz file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: byte {exc.start} (0x{raw[exc.start]:02x}) is not UTF-8; "
                        "expected UTF-8 text") from None


def read_lines(path: Path) -> list[str]:
    """The file's lines without their line ends; only LF and CR LF end a line (JSON text may hold U+2028)."""
    lines = [line.removesuffix("\r") for line in read_text(path).split("\n")]
    if lines[-1] == "":
        lines.pop()
    return lines


# ------------------------------------------------------------------------------------------------ JSON


def parse_json(text: str) -> Any:
    """json.loads with every way it fails as a BadRecord (numbers past Python's digit limit, deep nesting)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord(f"not valid JSON ({exc.msg} at column {exc.colno}); expected one JSON value") from None
    except (ValueError, RecursionError) as exc:
        raise BadRecord(f"not readable JSON ({str(exc).split(':')[0]}); expected plain JSON") from None


def parse_json_object(line: str) -> dict[str, Any]:
    """One JSON Lines record, which must be a JSON object."""
    record = parse_json(line)
    if not isinstance(record, dict):
        raise BadRecord(f"found a JSON {_json_type(record)}; expected a JSON object")
    return record


def parse_json_document(path: Path, text: str) -> Any:
    """A whole JSON file's text (SQuAD); being unreadable is the file's fault, not one record's."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                        "expected a JSON document") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not readable JSON ({str(exc).split(':')[0]}); expected plain JSON") from None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


class JsonLines:
    """The line each JSON object of a document starts on, found by re-parsing only when a bad record needs
    one (SQuAD files are often a single line, and the fast C parser keeps no positions)."""

    def __init__(self, text: str):
        self.text = text
        self._document: Any = None
        self._starts: dict[int, int] = {}

    def line_of(self, *keys: str | int) -> int:
        """The line where document[keys[0]][keys[1]]... starts (for a number or string: its container's)."""
        if self._document is None:
            self._document = self._parse_with_positions()
        nodes = [self._document]
        for key in keys:
            nodes.append(nodes[-1][key])
        start = next((self._starts[id(node)] for node in reversed(nodes) if id(node) in self._starts), 0)
        return self.text.count("\n", 0, start) + 1

    def _parse_with_positions(self) -> Any:
        decoder = json.JSONDecoder()

        def remember(parse: Callable[..., tuple[Any, int]]) -> Callable[..., tuple[Any, int]]:
            def parse_at(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
                value, end = parse(s_and_end, *args)
                self._starts[id(value)] = s_and_end[1] - 1  # the opening bracket
                return value, end
            return parse_at

        decoder.parse_object = remember(json.decoder.JSONObject)
        decoder.parse_array = remember(json.decoder.JSONArray)
        decoder.scan_once = json.scanner.py_make_scanner(decoder)
        return decoder.decode(self.text)


# ------------------------------------------------------------------------------------------- splits


def data_file_from_splits(
    task_type: str, splits: dict[str, list[Example]], origin: Path, attributes: dict[str, Any] | None = None,
    bad: BadRecords | None = None,
) -> DataFile:
    """One DataFile from per-split example records (dicts of field -> value), in the order train, dev, test.

    `splits` names only the splits the dataset has; passing a "dev" key (even an empty one) adds the `split`
    field and `valid_index_list`. `bad` adds what was skipped to the attributes.
    """
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split name(s) {sorted(unknown)}; expected {SPLITS}")
    examples = [example for split in SPLITS for example in splits.get(split, [])]
    if not examples:
        skipped = f" (all {len(bad.locations)} records were bad and skipped)" if bad and bad.locations else ""
        raise UserError(f"--source {origin} holds no examples{skipped}")
    names = list(examples[0])
    fields: dict[str, list[Any]] = {name: [example[name] for example in examples] for name in names}
    indices: dict[str, list[int]] = {}
    split_field: list[str] = []
    for split in SPLITS:
        start = len(split_field)
        split_field.extend([split] * len(splits.get(split, [])))
        indices[split] = list(range(start, len(split_field)))
    attributes = {**(attributes or {}), **(bad.attributes() if bad else {})}
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

"""`--dataset hf:NAME[:CONFIG]`: any dataset the Hugging Face `datasets` library loads.

NAME csv, json or parquet reads the local file(s) at --source with that `datasets` builder: a file is one
train pool; a folder's files go to splits by their names (train / validation, dev, valid / test), by the
library's own rule. Any other NAME is a hub dataset, `load_dataset(NAME, CONFIG)`, cached under --source.

--task picks which columns become which fields (datafile.py names the fields):

    text_classification   --text-column (text) -> X, --label-column (label) -> Y
    sequence_tagging      --text-column (tokens) -> X, --label-column (ner_tags) -> Y
    span_extraction       SQuAD columns: context, question, answers {text, answer_start}, id, title
    seq2seq               --source-column (source) -> X, --target-column (target) -> Y and references

--user-column, --time-column and --group-column add the fields user, order (a number) and group to any
task (users.py). ClassLabel values become their names. Split train is the train split; test is the test split, or the
validation split where the dataset has no labelled test split (GLUE's test labels are all -1), and a
validation split beside a test split is kept aside as dev (layout.py).
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets

from fednlp.data.datafile import TASK_TYPES, DataFile, label_vocab_of
from fednlp.data.readers import ReaderOptions
from fednlp.data.readers.layout import BadRecord, BadRecords, Example, data_file_from_splits, read_lines
from fednlp.data.readers.users import USER_FIELDS, user_columns, user_fields_of
from fednlp.errors import UserError

LOCAL_BUILDERS = ("csv", "json", "parquet")

#: Tasks whose Y holds label names, so the data file has a label vocabulary (and a --source-column group).
LABELLED_TASKS = ("text_classification", "sequence_tagging")

#: task -> field -> (ReaderOptions attribute that names its column, default column); SQuAD's are fixed.
_COLUMNS: dict[str, dict[str, tuple[str | None, str]]] = {
    "text_classification": {"X": ("text_column", "text"), "Y": ("label_column", "label")},
    "sequence_tagging": {"X": ("text_column", "tokens"), "Y": ("label_column", "ner_tags")},
    "span_extraction": {"context_X": (None, "context"), "question_X": (None, "question"), "answers": (None, "answers")},
    "seq2seq": {"X": ("source_column", "source"), "Y": ("target_column", "target")},
}

#: Columns used where the dataset has them.
_OPTIONAL_COLUMNS = {"span_extraction": {"question_id": "id", "source": "title"}}

#: The field whose absence in a whole split marks the split unlabelled.
_LABEL_FIELD = {"text_classification": "Y", "sequence_tagging": "Y", "span_extraction": "answers", "seq2seq": "Y"}


def read_hf(spec: str, source: Path, options: ReaderOptions) -> DataFile:
    """Load NAME[:CONFIG] with `datasets` and map its columns to the fields of --task."""
    what = f"hf:{spec}"
    if options.task not in TASK_TYPES:
        raise UserError(f"--dataset {what} needs --task: one of {', '.join(TASK_TYPES)}")
    name, _, config = spec.partition(":")
    if not name:
        raise UserError(f"--dataset {what}: expected hf:NAME[:CONFIG]")
    return data_file_from_dataset(_load(name, config or None, source, what), options, what, source)


def _load(name: str, config: str | None, source: Path, what: str) -> datasets.DatasetDict:
    if name not in LOCAL_BUILDERS:
        if not source.is_dir():
            raise UserError(f"--source {source}: expected the folder to cache hub dataset {name} in")
        return _call_datasets(what, lambda: datasets.load_dataset(name, config, cache_dir=str(source)), progress=True)
    if config:
        raise UserError(f"--dataset {what}: the local {name} builder takes no CONFIG; expected hf:{name}")
    if name == "json":
        _refuse_null_lines(source)
    files = {"data_files": {"train": str(source)}} if source.is_file() else {"data_dir": str(source)}
    # In memory, with a throw-away cache: the data file is the only copy worth keeping.
    with tempfile.TemporaryDirectory() as cache:
        return _call_datasets(
            what, lambda: datasets.load_dataset(name, cache_dir=cache, keep_in_memory=True, **files)
        )


def _refuse_null_lines(source: Path) -> None:
    """pyarrow's JSON reader (26.0) dies of a segmentation fault, past any except clause, on a block that
    starts with the token null, so a line that starts with it never reaches the library."""
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*.json*") if p.is_file())
    for path in files:
        for number, line in enumerate(read_lines(path), 1):
            if line.lstrip().startswith("null"):
                raise UserError(f"{path}:{number}: a line that starts with null; expected a JSON object per line")


def _call_datasets(what: str, load: Callable[[], datasets.DatasetDict], progress: bool = False) -> datasets.DatasetDict:
    """The library's result, its failure as one UserError line: its own error logs and, for local files, its
    progress bars are silenced, since they would put more lines on stderr than the error itself."""
    verbosity, bars = datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    if not progress:
        datasets.disable_progress_bars()
    try:
        return load()
    # pyarrow's errors are ValueErrors and TypeErrors; a cut .gz ends in EOFError or zlib.error, an empty JSON
    # file in the builder's own StopIteration.
    except (OSError, ValueError, TypeError, EOFError, StopIteration, zlib.error,
            datasets.exceptions.DatasetsError) as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        message = (f"{exc}{cause}".strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"--dataset {what}: cannot load it ({message})") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def data_file_from_dataset(
    dataset: datasets.DatasetDict, options: ReaderOptions, what: str, source: Path
) -> DataFile:
    """The DataFile of a loaded DatasetDict: its labelled train, test and dev splits (see the module doc).

    A bad row is a bad record located as `hf:NAME split 'train' row I` (the library hides file lines)."""
    bad = BadRecords(options.bad_records, source)
    mapped = {name: split_examples(dataset[name], options, f"{what} split {name!r}", bad)
              for name in ("train", "validation", "test") if name in dataset}
    labelled = [name for name in ("test", "validation") if mapped.get(name) is not None]
    roles = {"train": "train"} if mapped.get("train") is not None else {}
    roles.update(zip(("test", "dev"), labelled, strict=False))
    if "train" not in roles and "test" in roles:  # only an evaluation split: it is the pool to split
        roles["train"] = roles.pop("test")
    if not roles:
        found = ", ".join(dataset) or "none"
        raise UserError(f"--dataset {what}: no labelled train, validation or test split; found {found}")
    data = data_file_from_splits(options.task, {role: mapped[name] for role, name in roles.items()}, source,
                                 {"hf_splits": roles}, bad)
    if options.task in LABELLED_TASKS:
        data = replace(data, label_vocab=label_vocab_of(data.fields["Y"]))
    return data


def split_examples(split: datasets.Dataset, options: ReaderOptions, where: str,
                   bad: BadRecords) -> list[Example] | None:
    """The split's examples, or None when no row has a label (an unlabelled or empty split)."""
    columns = _columns(split, options, where)
    values = {name: _decode(split.features[column], list(split[column])) for name, column in columns.items()}
    if all(value is None for value in values[_LABEL_FIELD[options.task]]):
        return None
    make = _EXAMPLE_MAKERS[options.task]

    users = {name: column for name, column in columns.items() if name in USER_FIELDS}

    def example(i: int) -> Example:
        for name, column in columns.items():
            if values[name][i] is None or values[name][i] in ("", []):
                raise BadRecord(f"no value in column {column!r}; expected one in every row")
        row = {name: column_values[i] for name, column_values in values.items() if name not in users}
        return {**make(row), **user_fields_of({column: values[name][i] for name, column in users.items()},
                                              {name: column for name, column in users.items()})}

    taken = (bad.take(f"{where} row {i}", None, lambda i=i: example(i), "row") for i in range(split.num_rows))
    return [row for row in taken if row is not None]


def _columns(split: datasets.Dataset, options: ReaderOptions, where: str) -> dict[str, str]:
    """field -> column for --task; every chosen column must exist."""
    columns = {}
    for name, (option, default) in _COLUMNS[options.task].items():
        column = (getattr(options, option) if option else None) or default
        if column not in split.column_names:
            hint = f" (--{option.replace('_', '-')})" if option else ""
            raise UserError(f"{where}: no column {column!r}{hint}; found columns: {', '.join(split.column_names)}")
        columns[name] = column
    optional = dict(_OPTIONAL_COLUMNS.get(options.task, {}))
    if options.task in LABELLED_TASKS and options.source_column:
        if options.source_column not in split.column_names:
            raise UserError(f"{where}: no column {options.source_column!r} (--source-column); "
                            f"found columns: {', '.join(split.column_names)}")
        optional["source"] = options.source_column
    for name, column in user_columns(options).items():
        if column not in split.column_names:
            raise UserError(f"{where}: no column {column!r} ({USER_FIELDS[name][1]}); "
                            f"found columns: {', '.join(split.column_names)}")
        columns[name] = column
    return {**columns, **{name: column for name, column in optional.items() if column in split.column_names}}


def _decode(feature: Any, values: list[Any]) -> list[Any]:
    """ClassLabel ids (also inside sequences) -> names; -1 (no label) -> None."""
    if isinstance(feature, datasets.ClassLabel):
        return [_label_name(feature, value) for value in values]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return [None if tags is None else [_label_name(inner, tag) for tag in tags] for tags in values]
    return values


def _label_name(feature: datasets.ClassLabel, value: int | None) -> str | None:
    return None if value is None or value < 0 else feature.int2str(value)


# ------------------------------------------------------------------------------------ one row per task


def _classification_example(row: dict[str, Any]) -> Example:
    return {name: str(value) for name, value in row.items()}


def _tagging_example(row: dict[str, Any]) -> Example:
    tokens, tags = row["X"], row["Y"]
    if not isinstance(tokens, list) or not isinstance(tags, list):
        found = f"{type(tokens).__name__} and {type(tags).__name__}"
        raise BadRecord(f"expected lists of tokens and tags, found {found}")
    if len(tokens) != len(tags):
        raise BadRecord(f"{len(tokens)} tokens but {len(tags)} tags; expected one tag per token")
    if None in tags:
        raise BadRecord(f"tag {tags.index(None)} is -1 (no label); expected a tag per token")
    extra = {"source": str(row["source"])} if "source" in row else {}
    return {"X": [str(token) for token in tokens], "Y": [str(tag) for tag in tags], **extra}


def _span_example(row: dict[str, Any]) -> Example:
    answers = row["answers"]
    texts, starts = (answers.get("text"), answers.get("answer_start")) if isinstance(answers, dict) else (None, None)
    if (not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts)
            or not all(isinstance(t, str) for t in texts) or not all(isinstance(s, int) for s in starts)):
        raise BadRecord(f"answers is {str(answers)[:80]}; expected {{'text': [str, ...], 'answer_start': [int, ...]}} "
                        "of equal lengths")
    if not isinstance(row["context_X"], str) or not isinstance(row["question_X"], str):
        raise BadRecord("context or question is not text; expected strings")
    span = [starts[0], starts[0] + len(texts[0])] if texts else [-1, -1]
    if texts and row["context_X"][span[0]:span[1]] != texts[0]:
        raise BadRecord(f"answer {str(texts[0])[:80]!r} does not match the context at {starts[0]}; "
                        "expected answer_start where the context holds the answer text")
    extra = {name: str(row[name]) for name in ("question_id", "source") if name in row}
    return {"context_X": row["context_X"], "question_X": row["question_X"], "Y": span, "answers": texts, **extra}


def _seq2seq_example(row: dict[str, Any]) -> Example:
    """A list source (SciTLDR's sentences) is joined; a list target gives every reference, Y the first."""
    source, target = row["X"], row["Y"]
    references = [str(t) for t in target] if isinstance(target, list) else [str(target)]
    text = " ".join(map(str, source)) if isinstance(source, list) else str(source)
    return {"X": text, "Y": references[0], "references": references}


_EXAMPLE_MAKERS: dict[str, Callable[[dict[str, Any]], Example]] = {
    "text_classification": _classification_example,
    "sequence_tagging": _tagging_example,
    "span_extraction": _span_example,
    "seq2seq": _seq2seq_example,
}

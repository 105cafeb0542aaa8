"""Readers for extractive QA (task_type span_extraction): SQuAD JSON, MRQA JSONL, SubjQA CSV.

Every example holds context_X, question_X, Y (the [start, end) character span of the answer to train on,
[-1, -1] when unanswerable), answers (every reference answer text, for the best-over-references SQuAD EM/F1),
question_id, and source: the natural client group (SQuAD article title, MRQA dataset, SubjQA domain).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path
from typing import Any

from fednlp.data.datafile import DataFile
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.layout import (
    SPLITS,
    BadRecord,
    BadRecords,
    Example,
    JsonLines,
    data_file_from_splits,
    parse_json_object,
    parse_json_document,
    read_lines,
    read_text,
    storable,
)
from fednlp.errors import UserError

TASK = "span_extraction"
UNANSWERABLE = (-1, -1)


def _example(context: str, question: str, span: tuple[int, int], answers: list[str], question_id: str,
             source: str) -> Example:
    return {
        "context_X": context,
        "question_X": question,
        "Y": list(span),
        "answers": answers,
        "question_id": question_id,
        "source": source,
    }


def _dev_as_test(splits: dict[str, list[Example]]) -> dict[str, list[Example]]:
    """SQuAD and MRQA publish no test set, so their dev set is the test set when a train set comes with it;
    either set alone is a pool that prepare's --test-fraction splits."""
    if splits["train"] and splits["dev"]:
        return {"train": splits["train"], "test": splits["dev"]}
    return {"train": splits["train"] + splits["dev"]}


# ---------------------------------------------------------------- SQuAD


@register_reader("squad", TASK, "SQuAD v1.1/v2.0 JSON: a file (a pool), or a folder of train-*.json + dev-*.json")
def read_squad(source: Path, options: ReaderOptions) -> DataFile:
    """One example per question; Y is the first answer's span, checked against the context.

    A malformed question is a bad record (located at the line its object starts on); a document whose
    articles or paragraphs are not SQuAD's shape is refused whole.
    """
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {"train": [], "dev": []}
    for split, path in _squad_files(source):
        splits[split].extend(_read_squad_file(path, bad))
    return data_file_from_splits(TASK, _dev_as_test(splits), source, bad=bad)


def _squad_files(source: Path) -> list[tuple[str, Path]]:
    if source.is_file():
        return [("train", source)]
    files = []
    for split in ("train", "dev"):
        matches = sorted(path for path in source.glob(f"{split}-*.json") if path.is_file())
        if len(matches) > 1:
            names = ", ".join(path.name for path in matches)
            raise UserError(f"--source {source} holds several {split} files ({names}); expected one")
        files += [(split, path) for path in matches]
    if not files:
        raise UserError(f"--source {source} holds no train-*.json or dev-*.json; expected SQuAD JSON files")
    return files


_SQUAD_SHAPE = "{'data': [{'title', 'paragraphs': [{'context', 'qas': [{'id', 'question', 'answers'}]}]}]}"


def _read_squad_file(path: Path, bad: BadRecords) -> list[Example]:
    text = read_text(path)
    document, lines = parse_json_document(path, text), JsonLines(text)
    examples = []
    for a, article in enumerate(_squad_field(path, lines, document, (), "data", list)):
        title = _squad_field(path, lines, article, ("data", a), "title", str)
        for p, paragraph in enumerate(_squad_field(path, lines, article, ("data", a), "paragraphs", list)):
            where = ("data", a, "paragraphs", p)
            context = _squad_field(path, lines, paragraph, where, "context", str)
            for q, qa in enumerate(_squad_field(path, lines, paragraph, where, "qas", list)):
                try:
                    examples.append(storable(_squad_example(context, qa, title)))
                except BadRecord as exc:
                    bad.report(path, lines.line_of(*where, "qas", q), str(exc), "question")
    return examples


def _squad_field(path: Path, lines: JsonLines, node: Any, where: tuple[str | int, ...], key: str, kind: type) -> Any:
    """node[key], which must be a `kind`; else the whole file is refused at the node's line."""
    if isinstance(node, dict) and isinstance(node.get(key), kind):
        return node[key]
    if not isinstance(node, dict):
        found = f"a JSON {type(node).__name__} where an object with {key!r} belongs"
    else:
        found = f"{key!r} holding a {type(node[key]).__name__}" if key in node else f"an object without {key!r}"
    raise UserError(f"{path}:{lines.line_of(*where)}: not SQuAD JSON: found {found}; expected {_SQUAD_SHAPE}")


def _squad_example(context: str, qa: Any, title: str) -> Example:
    if not isinstance(qa, dict):
        raise BadRecord(f"a question is a JSON {type(qa).__name__}; expected an object with id, question, answers")
    question_id, question = qa.get("id"), qa.get("question")
    if not isinstance(question_id, (str, int)) or isinstance(question_id, bool) or not isinstance(question, str):
        raise BadRecord(f"question {str(question_id)[:40]!r} lacks a string 'id' or 'question'; expected both")
    question_id = str(question_id)
    if qa.get("is_impossible", False) is True:  # SQuAD v2.0
        return _example(context, question, UNANSWERABLE, [], question_id, title)
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers:
        raise BadRecord(f"question {question_id} has no answers and is not marked is_impossible; "
                        "expected a non-empty 'answers' list")
    if not all(isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers):
        raise BadRecord(f"question {question_id}: an answer lacks a string 'text'; "
                        "expected answers [{'text': str, 'answer_start': int}]")
    start, text = answers[0].get("answer_start"), answers[0]["text"]
    if not _is_index(start):
        raise BadRecord(f"question {question_id}: answer_start {str(start)[:40]} is not a character offset; "
                        "expected a non-negative integer")
    found = context[start:start + len(text)]
    if found != text:
        raise BadRecord(f"question {question_id}: answer {text[:80]!r} does not match the context at {start} "
                        f"(found {found[:80]!r}); expected answer_start where the context holds the answer text")
    return _example(context, question, (start, start + len(text)), [a["text"] for a in answers],
                    question_id, title)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---------------------------------------------------------------- MRQA


@register_reader("mrqa", TASK, "MRQA 2019 JSONL(.gz): a file (a pool), or a folder of them (train + dev -> train/test)")
def read_mrqa(source: Path, options: ReaderOptions) -> DataFile:
    """One example per question. Y is the first detected answer's first span, made end-exclusive.

    MRQA found that span by a normalized match, so context_X[Y] can differ from answers[0] by case, a
    leading article or a numeral ("two" for "2"); the metric compares against `answers`, as MRQA's does.
    A malformed line or question is a bad record; a file without the MRQA header line is refused.
    """
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*.jsonl*") if p.is_file())
    if not files:
        raise UserError(f"--source {source} holds no *.jsonl or *.jsonl.gz files; expected MRQA files")
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {"train": [], "dev": []}
    for path in files:
        split, examples = _read_mrqa_file(path, bad)
        splits[split].extend(examples)
    return data_file_from_splits(TASK, _dev_as_test(splits), source, bad=bad)


_MRQA_HEADER = '{"header": {"dataset": NAME, "split": "train" or "dev"}}'
_MRQA_RECORD = ("{'context': str, 'qas': [{'qid', 'question', 'answers', "
                "'detected_answers': [{'char_spans': [[start, end]]}]}]}")


def _read_mrqa_file(path: Path, bad: BadRecords) -> tuple[str, list[Example]]:
    """The file's split (from its header) and its examples."""
    lines = read_lines(path)
    try:
        header = parse_json_object(lines[0]).get("header") if lines else None
    except BadRecord:
        header = None
    if (not isinstance(header, dict) or header.get("split") not in ("train", "dev")
            or not isinstance(header.get("dataset"), str)):
        raise UserError(f"{path}:1: not an MRQA header; expected {_MRQA_HEADER}")
    examples = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = parse_json_object(line)
            context, qas = record.get("context"), record.get("qas")
            if not isinstance(context, str) or not isinstance(qas, list):
                raise BadRecord(f"no string 'context' and list 'qas'; expected {_MRQA_RECORD}")
        except BadRecord as exc:
            bad.report(path, line_number, str(exc), "line")
            continue
        examples += bad.examples(path, ((line_number, qa) for qa in qas),
                                 lambda qa: _mrqa_example(context, qa, header["dataset"]), "question")
    return header["split"], examples


def _mrqa_example(context: str, qa: Any, dataset: str) -> Example:
    try:
        qid, question, answers = qa["qid"], qa["question"], qa["answers"]
        start, last = qa["detected_answers"][0]["char_spans"][0]  # MRQA spans are inclusive
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise BadRecord(f"a question is not MRQA's ({exc.__class__.__name__}: {str(exc)[:60]}); "
                        f"expected in 'qas' {{'qid', 'question', 'answers', 'detected_answers': "
                        "[{'char_spans': [[start, end]]}]}") from None
    if not isinstance(question, str) or not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise BadRecord(f"question {str(qid)[:40]}: 'question' or 'answers' is not text; "
                        "expected a string question and a list of string answers")
    if not (_is_index(start) and _is_index(last) and start <= last < len(context)):
        raise BadRecord(f"question {str(qid)[:40]}: answer span [{start!r}, {last!r}] lies outside the context of "
                        f"{len(context)} characters; expected inclusive character offsets within it")
    return _example(context, question, (start, last + 1), list(answers), str(qid), dataset)


# ---------------------------------------------------------------- SubjQA

NOT_FOUND = "ANSWERNOTFOUND"
_SUBJQA_COLUMNS = ("q_review_id", "question", "review", "human_ans_spans", "human_ans_indices")
_INDICES = re.compile(r"\(\s*(\d{1,15})\s*,\s*(\d{1,15})\s*\)")  # longer numbers are no offsets


@register_reader("subjqa", TASK, "SubjQA: the folder of <domain>/splits/{train,dev,test}.csv, or one domain's folder")
def read_subjqa(source: Path, options: ReaderOptions) -> DataFile:
    """One example per q_review_id; source is the domain; dev is kept aside as validation.

    The CSVs repeat a question-review pair on several rows, one per annotation; those rows are merged:
    - context_X is the review without the " ANSWERNOTFOUND" token SubjQA appends (a span head would otherwise
      learn to extract that token); every answer lies before it, so its offsets stand.
    - an answer is the review text at `human_ans_indices` (the annotator's selection, stripped of surrounding
      spaces); `human_ans_spans` is a re-tokenized copy, sometimes of a non-contiguous selection, so it is
      not always a substring of the review.
    - answers are the distinct answer spans in row order, Y the first; a question is unanswerable (Y [-1, -1],
      no answers) only when no row selected an answer. A selection that includes the ANSWERNOTFOUND token
      counts as "no answer".
    Upstream, most dev questions also appear in train, so dev is validation of a model that saw them.
    """
    csv.field_size_limit(sys.maxsize)  # reviews can exceed csv's 128 KiB default field limit
    bad = BadRecords(options.bad_records, source)
    splits: dict[str, list[Example]] = {split: [] for split in SPLITS}
    for domain, folder in _subjqa_domains(source):
        for split in SPLITS:
            path = folder / f"{split}.csv"
            if path.is_file():
                splits[split].extend(_read_subjqa_csv(path, domain, bad))
    return data_file_from_splits(TASK, splits, source, bad=bad)


def _subjqa_domains(source: Path) -> list[tuple[str, Path]]:
    if (source / "splits").is_dir():
        return [(source.name, source / "splits")]
    domains = []
    if source.is_dir():
        domains = sorted((path.name, path / "splits") for path in source.iterdir() if (path / "splits").is_dir())
    if not domains:
        raise UserError(f"--source {source}: expected a SubjQA folder holding <domain>/splits/*.csv, "
                        "or one domain's folder holding splits/*.csv")
    return domains


Row = tuple[int, dict[str, str]]  # (the line the CSV row ends on, column -> cell)


def _read_subjqa_csv(path: Path, domain: str, bad: BadRecords) -> list[Example]:
    """One example per q_review_id; a malformed row is a bad record, and its question keeps its other rows."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    try:
        missing = [column for column in _SUBJQA_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}:1: no column(s) {', '.join(missing)}; expected the SubjQA columns "
                            f"{', '.join(_SUBJQA_COLUMNS)}")
        rows_by_question: dict[str, list[Row]] = {}
        for row in reader:
            if any(not isinstance(row.get(column), str) for column in _SUBJQA_COLUMNS):
                filled = sum(isinstance(row.get(column), str) for column in reader.fieldnames)
                bad.report(path, reader.line_num, f"row has {filled} of the {len(reader.fieldnames)} columns; "
                           "expected a cell in each SubjQA column", "row")
                continue
            rows_by_question.setdefault(row["q_review_id"], []).append((reader.line_num, row))
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: unreadable row ({exc}); expected CSV text") from None
    examples = (_subjqa_example(path, domain, rows, bad) for rows in rows_by_question.values())
    return [example for example in examples if example is not None]


def _subjqa_example(path: Path, domain: str, rows: list[Row], bad: BadRecords) -> Example | None:
    """The question of these rows, without its bad rows; None when no row is left."""
    first_line, first = rows[0]
    context = first["review"].removesuffix(f" {NOT_FOUND}")
    spans: list[tuple[int, int]] = []
    good = 0
    for line, row in rows:
        try:
            if row["review"] != first["review"]:
                raise BadRecord(f"question {row['q_review_id'][:40]} has another review than on line {first_line}; "
                                "expected one review per q_review_id")
            span = _subjqa_span(row, context)
        except BadRecord as exc:
            bad.report(path, line, str(exc), "row")
            continue
        good += 1
        if span is not None and span not in spans:
            spans.append(span)
    if not good:
        return None
    answers = [context[start:end] for start, end in spans]
    return bad.take(path, first_line, lambda: _example(context, first["question"], spans[0] if spans else UNANSWERABLE,
                                                       answers, first["q_review_id"], domain), "question")


def _subjqa_span(row: dict[str, str], context: str) -> tuple[int, int] | None:
    """The row's answer span in the context, or None for a "no answer" row."""
    if row["human_ans_spans"] == NOT_FOUND:
        return None
    match = _INDICES.fullmatch(row["human_ans_indices"].strip())
    if match is None or int(match[1]) >= int(match[2]):
        raise BadRecord(f"human_ans_indices {row['human_ans_indices'][:40]!r}; "
                        "expected '(start, end)' with start < end")
    start, end = int(match[1]), int(match[2])
    if end > len(row["review"]):
        raise BadRecord(f"human_ans_indices {row['human_ans_indices']!r} end past the review "
                        f"of {len(row['review'])} characters; expected offsets within the review")
    if end > len(context):  # the selection reaches into the ANSWERNOTFOUND token
        return None
    text = context[start:end]
    start, end = start + len(text) - len(text.lstrip()), end - len(text) + len(text.rstrip())
    return (start, end) if start < end else None

"""Readers for extractive QA (task_type span_extraction): SQuAD JSON, MRQA JSONL, SubjQA CSV.

Every example holds context_X, question_X, Y (the [start, end) character span of the answer to train on,
[-1, -1] when unanswerable), answers (every reference answer text, for the best-over-references SQuAD EM/F1),
question_id, and source: the natural client group (SQuAD article title, MRQA dataset, SubjQA domain).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

from fednlp.data.datafile import DataFile
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.layout import SPLITS, Example, data_file_from_splits, parse_json_line, read_lines, read_text
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
    """One example per question; Y is the first answer's span, checked against the context."""
    splits: dict[str, list[Example]] = {"train": [], "dev": []}
    for split, path in _squad_files(source):
        splits[split].extend(_read_squad_file(path))
    return data_file_from_splits(TASK, _dev_as_test(splits), source)


def _squad_files(source: Path) -> list[tuple[str, Path]]:
    if source.is_file():
        return [("train", source)]
    files = []
    for split in ("train", "dev"):
        matches = sorted(source.glob(f"{split}-*.json"))
        if len(matches) > 1:
            names = ", ".join(path.name for path in matches)
            raise UserError(f"--source {source} holds several {split} files ({names}); expected one")
        files += [(split, path) for path in matches]
    if not files:
        raise UserError(f"--source {source} holds no train-*.json or dev-*.json; expected SQuAD JSON files")
    return files


def _read_squad_file(path: Path) -> list[Example]:
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    try:
        return [
            _squad_example(path, article["title"], paragraph["context"], qa)
            for article in document["data"]
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (KeyError, TypeError) as exc:
        raise UserError(
            f"{path}: not SQuAD JSON ({exc.__class__.__name__}: {exc}); "
            "expected {'data': [{'title', 'paragraphs': [{'context', 'qas': [{'id', 'question', 'answers'}]}]}]}"
        ) from None


def _squad_example(path: Path, title: str, context: str, qa: dict[str, Any]) -> Example:
    question_id = qa["id"]
    if qa.get("is_impossible", False):  # SQuAD v2.0
        return _example(context, qa["question"], UNANSWERABLE, [], question_id, title)
    answers = qa["answers"]
    if not answers:
        raise UserError(f"{path}: question {question_id} has no answers and is not marked is_impossible")
    start, text = answers[0]["answer_start"], answers[0]["text"]
    if not isinstance(start, int) or start < 0 or context[start:start + len(text)] != text:
        raise UserError(f"{path}: question {question_id}: answer {text!r} does not match the context at {start}")
    return _example(context, qa["question"], (start, start + len(text)), [a["text"] for a in answers],
                    question_id, title)


# ---------------------------------------------------------------- MRQA


@register_reader("mrqa", TASK, "MRQA 2019 JSONL(.gz): a file (a pool), or a folder of them (train + dev -> train/test)")
def read_mrqa(source: Path, options: ReaderOptions) -> DataFile:
    """One example per question. Y is the first detected answer's first span, made end-exclusive.

    MRQA found that span by a normalized match, so context_X[Y] can differ from answers[0] by case, a
    leading article or a numeral ("two" for "2"); the metric compares against `answers`, as MRQA's does.
    """
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*.jsonl*") if p.is_file())
    if not files:
        raise UserError(f"--source {source} holds no *.jsonl or *.jsonl.gz files; expected MRQA files")
    splits: dict[str, list[Example]] = {"train": [], "dev": []}
    for path in files:
        split, examples = _read_mrqa_file(path)
        splits[split].extend(examples)
    return data_file_from_splits(TASK, _dev_as_test(splits), source)


def _read_mrqa_file(path: Path) -> tuple[str, list[Example]]:
    """The file's split (from its header) and its examples."""
    lines = read_lines(path)
    header = parse_json_line(path, 1, lines[0]).get("header") if lines else None
    if not isinstance(header, dict) or header.get("split") not in ("train", "dev") or "dataset" not in header:
        raise UserError(f"{path}: line 1 is not an MRQA header; "
                        "expected {\"header\": {\"dataset\": NAME, \"split\": \"train\" or \"dev\"}}")
    examples = []
    for line_number, line in enumerate(lines[1:], start=2):
        if line.strip():
            examples += _mrqa_examples(path, line_number, parse_json_line(path, line_number, line), header["dataset"])
    return header["split"], examples


def _mrqa_examples(path: Path, line_number: int, record: dict[str, Any], dataset: str) -> list[Example]:
    try:
        context = record["context"]
        return [_mrqa_example(path, line_number, context, qa, dataset) for qa in record["qas"]]
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise UserError(
            f"{path} line {line_number}: not an MRQA record ({exc.__class__.__name__}: {exc}); expected "
            "{'context', 'qas': [{'qid', 'question', 'answers', 'detected_answers': [{'char_spans': [[s, e]]}]}]}"
        ) from None


def _mrqa_example(path: Path, line_number: int, context: str, qa: dict[str, Any], dataset: str) -> Example:
    start, last = qa["detected_answers"][0]["char_spans"][0]  # MRQA spans are inclusive
    if not 0 <= start <= last < len(context):
        raise UserError(f"{path} line {line_number}: question {qa['qid']}: answer span [{start}, {last}] lies "
                        f"outside the context of {len(context)} characters")
    return _example(context, qa["question"], (start, last + 1), list(qa["answers"]), qa["qid"], dataset)


# ---------------------------------------------------------------- SubjQA

NOT_FOUND = "ANSWERNOTFOUND"
_SUBJQA_COLUMNS = ("q_review_id", "question", "review", "human_ans_spans", "human_ans_indices")
_INDICES = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


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
    splits: dict[str, list[Example]] = {split: [] for split in SPLITS}
    for domain, folder in _subjqa_domains(source):
        for split in SPLITS:
            path = folder / f"{split}.csv"
            if path.is_file():
                splits[split].extend(_read_subjqa_csv(path, domain))
    return data_file_from_splits(TASK, splits, source)


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


def _read_subjqa_csv(path: Path, domain: str) -> list[Example]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [column for column in _SUBJQA_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: no column(s) {', '.join(missing)}; expected the SubjQA columns "
                        f"{', '.join(_SUBJQA_COLUMNS)}")
    rows_by_question: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for row in reader:
        rows_by_question.setdefault(row["q_review_id"], []).append((reader.line_num, row))
    return [_subjqa_example(path, domain, rows) for rows in rows_by_question.values()]


def _subjqa_example(path: Path, domain: str, rows: list[tuple[int, dict[str, str]]]) -> Example:
    first = rows[0][1]
    context = first["review"].removesuffix(f" {NOT_FOUND}")
    spans: list[tuple[int, int]] = []
    for line, row in rows:
        if row["review"] != first["review"]:
            raise UserError(f"{path} line {line}: question {row['q_review_id']} has another review than on line "
                            f"{rows[0][0]}; expected one review per q_review_id")
        span = _subjqa_span(path, line, row, context)
        if span is not None and span not in spans:
            spans.append(span)
    answers = [context[start:end] for start, end in spans]
    return _example(context, first["question"], spans[0] if spans else UNANSWERABLE, answers,
                    first["q_review_id"], domain)


def _subjqa_span(path: Path, line: int, row: dict[str, str], context: str) -> tuple[int, int] | None:
    """The row's answer span in the context, or None for a "no answer" row."""
    if row["human_ans_spans"] == NOT_FOUND:
        return None
    match = _INDICES.fullmatch(row["human_ans_indices"].strip())
    if match is None or int(match[1]) >= int(match[2]):
        raise UserError(f"{path} line {line}: human_ans_indices {row['human_ans_indices']!r}; "
                        "expected '(start, end)' with start < end")
    start, end = int(match[1]), int(match[2])
    if end > len(row["review"]):
        raise UserError(f"{path} line {line}: human_ans_indices {row['human_ans_indices']!r} end past the review "
                        f"of {len(row['review'])} characters")
    if end > len(context):  # the selection reaches into the ANSWERNOTFOUND token
        return None
    text = context[start:end]
    start, end = start + len(text) - len(text.lstrip()), end - len(text) + len(text.rstrip())
    return (start, end) if start < end else None

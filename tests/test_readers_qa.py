"""The extractive-QA readers (squad, mrqa, subjqa) on the real benchmark files of ../shared/data."""

from __future__ import annotations

import collections
import csv
import json
import re
import string
from pathlib import Path

import pytest

from fednlp.cli import main
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.data.prepare import prepare
from fednlp.data.readers import ReaderOptions, get_reader

SUBJQA_COUNTS = {  # unique q_review_id per domain and split, as published (and in ../shared/data/README.md)
    ("electronics", "train"): 1295, ("electronics", "dev"): 255, ("electronics", "test"): 358,
    ("grocery", "train"): 1124, ("grocery", "dev"): 218, ("grocery", "test"): 591,
    ("restaurants", "train"): 1400, ("restaurants", "dev"): 267, ("restaurants", "test"): 266,
    ("tripadvisor", "train"): 1165, ("tripadvisor", "dev"): 230, ("tripadvisor", "test"): 512,
    ("books", "dev"): 256, ("books", "test"): 345,
    ("movies", "dev"): 261, ("movies", "test"): 291,
}
SUBJQA_HEADER = ("item_id,domain,nn_mod,nn_asp,query_mod,query_asp,q_review_id,q_reviews_id,question,"
                 "question_subj_level,ques_subj_score,is_ques_subjective,review_id,review,human_ans_spans,"
                 "human_ans_indices,answer_subj_level,ans_subj_score,is_ans_subjective").split(",")


def read(name: str, source: Path) -> DataFile:
    return get_reader(name).read(source, ReaderOptions())


def squad_normalize(text: str) -> str:
    """The official SQuAD answer normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def assert_round_trip(dataset: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{dataset}.h5"
    prepared = prepare(dataset, source, out, ReaderOptions(test_fraction=0.2))
    back = read_data_file(out)
    assert back.fields == prepared.fields
    assert back.train_index_list == prepared.train_index_list
    assert back.test_index_list == prepared.test_index_list
    assert back.attributes == json.loads(json.dumps(prepared.attributes))
    kept_aside = set(prepared.attributes.get("valid_index_list", []))
    pool = set(range(prepared.n_examples)) - kept_aside
    assert set(back.train_index_list) | set(back.test_index_list) == pool
    assert abs(len(back.test_index_list) - 0.2 * len(pool)) <= 1


def assert_cli_error(argv: list[str], out: Path, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv + ["--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
    assert not out.exists() and list(out.parent.glob(f".{out.name}*")) == []


# ---------------------------------------------------------------- SQuAD


@pytest.fixture(scope="module")
def squad(shared_data: Path) -> DataFile:
    return read("squad", shared_data / "squad_v1.1" / "dev-v1.1.json")


def test_squad_counts_match_the_published_dev_set(squad: DataFile) -> None:
    fields = squad.fields
    assert squad.n_examples == 10570
    assert len(set(fields["question_id"])) == 10570
    assert len(set(fields["source"])) == 48  # articles: the natural clients
    assert len(set(fields["context_X"])) == 2067  # paragraphs
    answer_counts = collections.Counter(len(answers) for answers in fields["answers"])
    assert (answer_counts[1], answer_counts[2]) == (3, 136)
    assert sum(answer_counts.values()) == 10570
    # a lone file is a pool: prepare's --test-fraction splits it
    assert squad.train_index_list == list(range(10570)) and squad.test_index_list == []


def test_squad_first_question(squad: DataFile) -> None:
    first = {name: values[0] for name, values in squad.fields.items()}
    assert first["question_id"] == "56be4db0acb8001400a502ec"
    assert first["question_X"] == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first["Y"] == [177, 191]
    assert first["answers"] == ["Denver Broncos"] * 3
    assert first["source"] == "Super_Bowl_50"


def test_squad_spans_are_the_first_answers_text(squad: DataFile) -> None:
    fields = squad.fields
    for context, (start, end), answers in zip(fields["context_X"], fields["Y"], fields["answers"]):
        assert context[start:end] == answers[0]


def test_squad_folder_with_train_and_dev_gives_train_and_test(shared_data: Path, tmp_path: Path) -> None:
    dev = json.loads((shared_data / "squad_v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    (tmp_path / "train-v1.1.json").write_text(json.dumps({"version": "1.1", "data": dev["data"][:1]}))
    (tmp_path / "dev-v1.1.json").symlink_to(shared_data / "squad_v1.1" / "dev-v1.1.json")
    data = read("squad", tmp_path)
    n_train = sum(len(p["qas"]) for p in dev["data"][0]["paragraphs"])
    assert data.train_index_list == list(range(n_train))
    assert data.test_index_list == list(range(n_train, n_train + 10570))


def test_squad_v2_unanswerable_questions(tmp_path: Path) -> None:
    qas = [
        {"id": "a", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}], "is_impossible": False},
        {"id": "b", "question": "Why?", "answers": [], "plausible_answers": [{"text": "x", "answer_start": 0}],
         "is_impossible": True},
    ]
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "Ada wrote it.", "qas": qas}]}]}))
    data = read("squad", path)
    assert data.fields["Y"] == [[0, 3], [-1, -1]]
    assert data.fields["answers"] == [["Ada"], []]


def test_squad_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("squad", shared_data / "squad_v1.1" / "dev-v1.1.json", tmp_path)


def test_squad_answer_not_in_context_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.json"
    source.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Ada wrote it.", "qas": [
        {"id": "q1", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 3}]}]}]}]}))
    argv = ["data", "prepare", "--dataset", "squad", "--source", str(source), "--test-fraction", "0.2"]
    expected = f"{source}:1: question q1: answer 'Ada' does not match the context at 3"
    assert_cli_error(argv, tmp_path / "out.h5", expected, capsys)


# ---------------------------------------------------------------- MRQA


@pytest.fixture(scope="module")
def mrqa(shared_data: Path) -> DataFile:
    return read("mrqa", shared_data / "mrqa" / "dev" / "SQuAD.jsonl.gz")


def test_mrqa_counts_match_the_published_file(mrqa: DataFile) -> None:
    assert mrqa.n_examples == 10507
    assert len(set(mrqa.fields["question_id"])) == 10507
    assert len(set(mrqa.fields["context_X"])) == 2067
    assert set(mrqa.fields["source"]) == {"SQuAD"}  # the header's dataset
    assert mrqa.train_index_list == list(range(10507)) and mrqa.test_index_list == []


def test_mrqa_inclusive_spans_become_end_exclusive(mrqa: DataFile) -> None:
    first = {name: values[0] for name, values in mrqa.fields.items()}
    assert first["question_id"] == "b0626b3af0764c80b1e6f22c114982c1"
    assert first["Y"] == [177, 191]  # char_spans [[177, 190]]
    assert first["context_X"][177:191] == "Denver Broncos"


def test_mrqa_spans_match_an_answer_as_squad_normalizes_it(mrqa: DataFile) -> None:
    """MRQA detected its spans by a normalized match, so the text can differ from answers[0] by case,
    an article or a numeral; it always equals one reference answer after SQuAD normalization."""
    fields = mrqa.fields
    exact = 0
    for context, (start, end), answers in zip(fields["context_X"], fields["Y"], fields["answers"]):
        assert squad_normalize(context[start:end]) in {squad_normalize(a) for a in answers}
        exact += context[start:end] == answers[0]
    assert exact == 10507 - 120


def test_mrqa_folder_reads_its_files(shared_data: Path) -> None:
    assert read("mrqa", shared_data / "mrqa").n_examples == 10507


def test_mrqa_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("mrqa", shared_data / "mrqa" / "dev" / "SQuAD.jsonl.gz", tmp_path)


def test_mrqa_without_header_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "x.jsonl"
    source.write_text(json.dumps({"id": "", "context": "c", "qas": []}) + "\n")
    argv = ["data", "prepare", "--dataset", "mrqa", "--source", str(source), "--test-fraction", "0.2"]
    assert_cli_error(argv, tmp_path / "out.h5", f"{source}:1: not an MRQA header", capsys)


# ---------------------------------------------------------------- SubjQA


@pytest.fixture(scope="module")
def subjqa(shared_data: Path) -> DataFile:
    return read("subjqa", shared_data / "subjqa")


def test_subjqa_unique_questions_match_the_published_counts(subjqa: DataFile) -> None:
    counts = collections.Counter(zip(subjqa.fields["source"], subjqa.fields["split"]))
    assert counts == SUBJQA_COUNTS
    assert len(set(zip(subjqa.fields["question_id"], subjqa.fields["split"]))) == subjqa.n_examples


def test_subjqa_dev_is_kept_aside_as_validation(subjqa: DataFile) -> None:
    splits = subjqa.fields["split"]
    assert subjqa.train_index_list == [i for i, s in enumerate(splits) if s == "train"]
    assert subjqa.test_index_list == [i for i, s in enumerate(splits) if s == "test"]
    assert subjqa.attributes["valid_index_list"] == [i for i, s in enumerate(splits) if s == "dev"]
    assert len(subjqa.attributes["valid_index_list"]) == 1487


def test_subjqa_spans_are_exact_and_unanswerables_are_empty(subjqa: DataFile) -> None:
    fields = subjqa.fields
    unanswerable = 0
    for context, (start, end), answers in zip(fields["context_X"], fields["Y"], fields["answers"]):
        assert not context.endswith("ANSWERNOTFOUND")
        if (start, end) == (-1, -1):
            unanswerable += 1
            assert answers == []
            continue
        assert context[start:end] == answers[0]
        assert len(set(answers)) == len(answers)
        assert all(answer in context and answer == answer.strip() for answer in answers)
    assert unanswerable == 3614  # no annotator selected an answer


def test_subjqa_one_domain_folder(shared_data: Path) -> None:
    data = read("subjqa", shared_data / "subjqa" / "electronics")
    assert collections.Counter(data.fields["split"]) == {"train": 1295, "dev": 255, "test": 358}
    assert set(data.fields["source"]) == {"electronics"}


def test_subjqa_rows_of_one_question_merge(tmp_path: Path) -> None:
    review = "Great sound, heavy band. ANSWERNOTFOUND"
    rows = [  # q_review_id, human_ans_spans, human_ans_indices
        ("q1", "ANSWERNOTFOUND", "(25, 39)"),
        ("q1", "Great sound", "(0, 11)"),
        ("q1", "heavy band", "(12, 23)"),  # starts on a space: stripped to (13, 23)
        ("q1", "heavy band", "(13, 23)"),  # the same span again: one answer
        ("q1", "Great sound , heavy", "(0, 18)"),  # re-tokenized text; the answer is the review's
        ("q2", "ANSWERNOTFOUND", "(25, 39)"),
        ("q2", "band ANSWERNOTFOUND", "(19, 39)"),  # a selection with the token is a "no answer"
    ]
    folder = tmp_path / "phones" / "splits"
    folder.mkdir(parents=True)
    with (folder / "test.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, SUBJQA_HEADER, restval="x")
        writer.writeheader()
        for qid, text, indices in rows:
            writer.writerow({"q_review_id": qid, "question": "How is it?", "review": review,
                             "human_ans_spans": text, "human_ans_indices": indices})
    data = read("subjqa", tmp_path / "phones")
    assert data.fields["context_X"] == ["Great sound, heavy band."] * 2
    assert data.fields["Y"] == [[0, 11], [-1, -1]]
    assert data.fields["answers"] == [["Great sound", "heavy band", "Great sound, heavy"], []]
    assert data.fields["source"] == ["phones", "phones"]


def test_subjqa_round_trip_keeps_dev_aside(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("subjqa", shared_data / "subjqa", tmp_path)

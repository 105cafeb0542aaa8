"""The `hf:NAME[:CONFIG]` reader: local csv / json files through `datasets`, and the column mapping of
every task on in-memory datasets (the hub is out of reach offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest

from fednlp.cli import main
from fednlp.data.datafile import read_data_file
from fednlp.data.prepare import prepare
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.data.readers.hf import data_file_from_dataset, read_hf
from fednlp.errors import UserError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(record) + "\n" for record in records))


def test_hf_csv_file_reads_like_the_csv_reader(tmp_path: Path) -> None:
    source = write(tmp_path / "data.csv", 'text,label,domain\n"Hello, world",pos,a\nbye,neg,b\n')
    options = ReaderOptions(task="text_classification", source_column="domain")
    data = read_hf("csv", source, options)
    generic = ReaderOptions(text_column="text", label_column="label", source_column="domain")
    same = get_reader("csv").read(source, generic)
    assert data.fields == same.fields == {"X": ["Hello, world", "bye"], "Y": ["pos", "neg"], "source": ["a", "b"]}
    assert (data.train_index_list, data.test_index_list) == ([0, 1], [])
    assert data.label_vocab == {"neg": 0, "pos": 1}
    assert data.attributes["hf_splits"] == {"train": "train"}


def test_hf_csv_folder_splits_by_file_name_and_keeps_validation_aside(tmp_path: Path) -> None:
    for split, text in [("train", "a"), ("validation", "b"), ("test", "c")]:
        write(tmp_path / "data" / f"{split}.csv", f"sentence,y\n{text},{text.upper()}\n")
    options = ReaderOptions(task="text_classification", text_column="sentence", label_column="y")
    data = read_hf("csv", tmp_path / "data", options)
    assert data.fields["X"] == ["a", "b", "c"] and data.fields["Y"] == ["A", "B", "C"]
    assert (data.train_index_list, data.test_index_list) == ([0], [2])
    assert data.attributes["valid_index_list"] == [1]
    assert data.attributes["hf_splits"] == {"train": "train", "test": "test", "dev": "validation"}


def test_hf_csv_round_trip_with_test_fraction(tmp_path: Path) -> None:
    source = write(tmp_path / "data.csv", "text,label\n" + "".join(f"t{i},{i % 3}\n" for i in range(12)))
    out = tmp_path / "out.h5"
    prepared = prepare("hf:csv", source, out, ReaderOptions(task="text_classification", test_fraction=0.25))
    back = read_data_file(out)
    assert back.fields == prepared.fields and back.fields["Y"][:4] == ["0", "1", "2", "0"]
    assert (back.train_index_list, back.test_index_list) == (prepared.train_index_list, prepared.test_index_list)
    assert len(back.test_index_list) == 3
    assert back.label_vocab == {"0": 0, "1": 1, "2": 2}
    assert back.attributes["dataset"] == "hf:csv"


def test_hf_json_sequence_tagging_with_named_columns(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "train.jsonl", [{"words": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
                                                    {"words": ["Paris"], "tags": ["B-LOC"]}])
    data = read_hf("json", source, ReaderOptions(task="sequence_tagging", text_column="words", label_column="tags"))
    assert data.fields == {"X": [["EU", "rejects"], ["Paris"]], "Y": [["B-ORG", "O"], ["B-LOC"]]}
    assert data.label_vocab == {"B-LOC": 0, "B-ORG": 1, "O": 2}


def test_hf_json_span_extraction_squad_columns(tmp_path: Path) -> None:
    context = "Paris is the capital of France."
    records = [
        {"id": "q1", "title": "France", "context": context, "question": "Capital?",
         "answers": {"text": ["Paris", "Paris"], "answer_start": [0, 0]}},
        {"id": "q2", "title": "France", "context": context, "question": "Moon?",
         "answers": {"text": [], "answer_start": []}},
    ]
    data = read_hf("json", write_jsonl(tmp_path / "train.jsonl", records), ReaderOptions(task="span_extraction"))
    assert data.fields["Y"] == [[0, 5], [-1, -1]]
    assert data.fields["answers"] == [["Paris", "Paris"], []]
    assert data.fields["question_id"] == ["q1", "q2"] and data.fields["source"] == ["France", "France"]
    assert data.label_vocab == {}


def test_hf_json_seq2seq_list_targets_are_references(tmp_path: Path) -> None:
    records = [{"doc": ["First sentence.", "Second."], "tldr": ["short", "other"]}, {"doc": "plain", "tldr": "t"}]
    source = write_jsonl(tmp_path / "train.jsonl", records)
    data = read_hf("json", source, ReaderOptions(task="seq2seq", source_column="doc", target_column="tldr"))
    assert data.fields == {"X": ["First sentence. Second.", "plain"], "Y": ["short", "t"],
                           "references": [["short", "other"], ["t"]]}


def test_class_labels_become_names_and_an_unlabelled_test_split_gives_way_to_validation() -> None:
    tags = datasets.ClassLabel(names=["O", "B-X"])
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(tags)})
    tagged = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [[1, 0]]}, features=features)})
    data = data_file_from_dataset(tagged, ReaderOptions(task="sequence_tagging"), "hf:x", Path("."))
    assert data.fields == {"X": [["a", "b"]], "Y": [["B-X", "O"]]}

    label = datasets.ClassLabel(names=["negative", "positive"])
    features = datasets.Features({"sentence": datasets.Value("string"), "label": label})
    glue_like = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"sentence": [f"{split} {i}" for i in range(2)], "label": labels},
                                          features=features)
        for split, labels in [("train", [0, 1]), ("validation", [1, 1]), ("test", [-1, -1])]
    })
    data = data_file_from_dataset(glue_like, ReaderOptions(task="text_classification", text_column="sentence"),
                                  "hf:glue:sst2", Path("."))
    assert data.fields["Y"] == ["negative", "positive", "positive", "positive"]
    assert data.fields["X"][2:] == ["validation 0", "validation 1"]
    assert (data.train_index_list, data.test_index_list) == ([0, 1], [2, 3])
    assert data.attributes["hf_splits"] == {"train": "train", "test": "validation"}


def test_hf_needs_task_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "data.csv", "text,label\na,1\n")
    out = tmp_path / "out.h5"
    assert main(["data", "prepare", "--dataset", "hf:csv", "--source", str(source), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("fednlp: error: --dataset hf:csv needs --task: one of text_classification, "
                            "sequence_tagging, span_extraction, seq2seq\n")
    assert not out.exists()


@pytest.mark.parametrize(
    "spec, content, options, expected",
    [
        ("csv", "text,y\na,1\n", {},
         "hf:csv split 'train': no column 'label' (--label-column); found columns: text, y"),
        ("csv", "text,label\na,1\nb,\n", {}, "hf:csv split 'train' row 1: no value in column 'label'"),
        ("csv:plain", "text,label\na,1\n", {}, "the local csv builder takes no CONFIG"),
        ("csv", 'text,label\n"a,1\n', {}, "hf:csv: cannot load it"),
        ("csv", "tokens,ner_tags\na,O\n", {"task": "sequence_tagging"}, "expected lists of tokens and tags"),
    ],
)
def test_hf_bad_input_names_what_is_wrong(spec: str, content: str, options: dict, expected: str,
                                         tmp_path: Path) -> None:
    source = write(tmp_path / "data.csv", content)
    with pytest.raises(UserError, match=re.escape(expected)):
        read_hf(spec, source, ReaderOptions(**{"task": "text_classification", **options}))

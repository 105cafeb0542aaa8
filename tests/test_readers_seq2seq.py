"""The seq2seq readers (aeslc, scitldr, gigaword, seq2seq-jsonl) on the real benchmark files of ../shared/data."""

from __future__ import annotations

import collections
import json
import tarfile
from pathlib import Path

import pytest

from fednlp.cli import main
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.data.prepare import prepare
from fednlp.data.readers import ReaderOptions, get_reader


def read(name: str, source: Path, options: ReaderOptions = ReaderOptions()) -> DataFile:
    return get_reader(name).read(source, options)


def assert_round_trip(dataset: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{dataset}.h5"
    prepared = prepare(dataset, source, out, ReaderOptions(test_fraction=0.2))
    back = read_data_file(out)
    assert back.fields == prepared.fields
    assert back.train_index_list == prepared.train_index_list
    assert back.test_index_list == prepared.test_index_list
    assert back.attributes == json.loads(json.dumps(prepared.attributes))
    pool = set(range(prepared.n_examples)) - set(prepared.attributes.get("valid_index_list", []))
    assert set(back.train_index_list) | set(back.test_index_list) == pool
    assert abs(len(back.test_index_list) - 0.2 * len(pool)) <= 1


def assert_cli_error(argv: list[str], out: Path, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv + ["--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
    assert not out.exists() and list(out.parent.glob(f".{out.name}*")) == []


def assert_splits_in_order(data: DataFile) -> None:
    splits = data.fields["split"]
    assert data.train_index_list == [i for i, s in enumerate(splits) if s == "train"]
    assert data.attributes["valid_index_list"] == [i for i, s in enumerate(splits) if s == "dev"]
    assert data.test_index_list == [i for i, s in enumerate(splits) if s == "test"]


# ---------------------------------------------------------------- AESLC


@pytest.fixture(scope="module")
def aeslc(shared_data: Path) -> DataFile:
    return read("aeslc", shared_data / "aeslc" / "enron_subject_line.tar.gz")


def test_aeslc_file_counts_match_the_published_splits(aeslc: DataFile) -> None:
    assert collections.Counter(aeslc.fields["split"]) == {"train": 14436, "dev": 1960, "test": 1906}
    assert_splits_in_order(aeslc)
    assert len(set(aeslc.fields["source"])) == 145  # mailbox owners: the natural clients


def test_aeslc_subjects_and_annotations(aeslc: DataFile) -> None:
    fields = aeslc.fields
    for split, body, subject, references in zip(fields["split"], fields["X"], fields["Y"], fields["references"]):
        assert body and subject and "@subject" not in body
        assert references[0] == subject
        assert len(references) == (1 if split == "train" else 4)  # dev/test add @ann0..@ann2
    first_dev = aeslc.attributes["valid_index_list"][0]
    assert fields["source"][first_dev] == "allen-p"
    assert fields["references"][first_dev] == [
        "Confirmation: Risk Management Simulation Meeting 10/30/01",
        "meeting confimation - tues, 8/10",
        "meeting confirmation",
        "meeting confirmed",
    ]


def test_aeslc_extracted_folder_reads_like_the_archive(aeslc: DataFile, shared_data: Path, tmp_path: Path) -> None:
    with tarfile.open(shared_data / "aeslc" / "enron_subject_line.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    folder = read("aeslc", tmp_path / "enron_subject_line")
    assert folder.fields == aeslc.fields
    assert folder.attributes == aeslc.attributes


def test_aeslc_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("aeslc", shared_data / "aeslc" / "enron_subject_line.tar.gz", tmp_path)


def test_aeslc_file_without_subject_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a_inbox_1.subject").write_text("Hello\n\n@ann0\nhi\n")
    argv = ["data", "prepare", "--dataset", "aeslc", "--source", str(tmp_path), "--test-fraction", "0.5"]
    assert_cli_error(argv, tmp_path / "out.h5", "train/a_inbox_1.subject: no '@subject' line", capsys)


# ---------------------------------------------------------------- SciTLDR


@pytest.fixture(scope="module")
def scitldr(shared_data: Path) -> DataFile:
    return read("scitldr", shared_data / "scitldr")


def test_scitldr_papers_and_tldrs_match_the_published_counts(scitldr: DataFile) -> None:
    assert_splits_in_order(scitldr)
    papers = collections.Counter(scitldr.fields["split"])
    tldrs = collections.Counter()
    for split, references in zip(scitldr.fields["split"], scitldr.fields["references"]):
        tldrs[split] += len(references)
    assert papers == {"train": 1992, "dev": 619, "test": 618}
    assert tldrs == {"train": 1992, "dev": 1453, "test": 1967}


def test_scitldr_source_is_the_joined_abstract(scitldr: DataFile, shared_data: Path) -> None:
    first = json.loads((shared_data / "scitldr" / "train.jsonl").read_text(encoding="utf-8").split("\n")[0])
    assert scitldr.fields["X"][0] == " ".join(first["source"])
    assert scitldr.fields["Y"][0] == first["target"][0]
    assert all(refs[0] == target for refs, target in zip(scitldr.fields["references"], scitldr.fields["Y"]))


def test_scitldr_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("scitldr", shared_data / "scitldr", tmp_path)


# ---------------------------------------------------------------- Gigaword


def test_gigaword_sample(shared_data: Path) -> None:
    data = read("gigaword", shared_data / "gigaword_sample")
    assert data.n_examples == 1000
    assert data.train_index_list == list(range(1000)) and data.test_index_list == []  # a pool
    assert data.fields["X"][0].startswith("australia 's current account deficit shrunk by a record #.## billion")
    assert data.fields["Y"][0] == "australian current account deficit narrows sharply"
    assert data.fields["references"][0] == [data.fields["Y"][0]]


def test_gigaword_lone_article_file_is_a_pool(shared_data: Path) -> None:
    data = read("gigaword", shared_data / "gigaword_sample" / "train_first1000.article.txt")
    assert data.n_examples == 1000 and data.test_index_list == []


def test_gigaword_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("gigaword", shared_data / "gigaword_sample", tmp_path)


def test_gigaword_misaligned_files_are_one_line_exit_2(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = shared_data / "gigaword_sample"
    article = tmp_path / "train.article.txt"
    title = tmp_path / "train.title.txt"
    article.write_bytes((sample / "train_first1000.article.txt").read_bytes())
    title.write_text("\n".join((sample / "train_first1000.title.txt").read_text().split("\n")[:999]) + "\n")
    argv = ["data", "prepare", "--dataset", "gigaword", "--source", str(tmp_path), "--test-fraction", "0.2"]
    assert_cli_error(argv, tmp_path / "out.h5", f"{article} has 1000 lines but {title} has 999", capsys)


# ---------------------------------------------------------------- generic JSONL


def test_seq2seq_jsonl_named_keys_and_list_targets(tmp_path: Path) -> None:
    source = tmp_path / "pairs.jsonl"
    records = [{"doc": "a long text", "summary": "short"}, {"doc": ["two", "sentences"], "summary": ["s1", "s2"]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = read("seq2seq-jsonl", source, ReaderOptions(source_column="doc", target_column="summary"))
    assert data.fields == {
        "X": ["a long text", "two sentences"],
        "Y": ["short", "s1"],
        "references": [["short"], ["s1", "s2"]],
    }


def test_seq2seq_jsonl_reads_scitldr_with_its_default_keys(scitldr: DataFile, shared_data: Path) -> None:
    data = read("seq2seq-jsonl", shared_data / "scitldr")
    assert data.fields == scitldr.fields


def test_seq2seq_jsonl_missing_key_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"text": "a", "target": "b"}) + "\n")
    argv = ["data", "prepare", "--dataset", "seq2seq-jsonl", "--source", str(source), "--test-fraction", "0.5"]
    assert_cli_error(argv, tmp_path / "out.h5", f"{source}:1: no key 'source' (found target, text)", capsys)

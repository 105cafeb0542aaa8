"""The text classification readers (20news, sst2, agnews, csv, tsv, jsonl) on the real files of ../shared/data
and on small files written here."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from fednlp.cli import main
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.data.prepare import prepare
from fednlp.data.readers import ReaderOptions, get_reader

NEWS_TRAIN_COUNTS = {  # published per-class train counts (sklearn fetch_20newsgroups, ../shared/data/README.md)
    "alt.atheism": 480, "comp.graphics": 584, "comp.os.ms-windows.misc": 591, "comp.sys.ibm.pc.hardware": 590,
    "comp.sys.mac.hardware": 578, "comp.windows.x": 593, "misc.forsale": 585, "rec.autos": 594,
    "rec.motorcycles": 598, "rec.sport.baseball": 597, "rec.sport.hockey": 600, "sci.crypt": 595,
    "sci.electronics": 591, "sci.med": 594, "sci.space": 593, "soc.religion.christian": 599,
    "talk.politics.guns": 546, "talk.politics.mideast": 564, "talk.politics.misc": 465, "talk.religion.misc": 377,
}
AGNEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]


def read(name: str, source: Path, **options: object) -> DataFile:
    return get_reader(name).read(source, ReaderOptions(**options))


def labels_of(data: DataFile, indices: list[int]) -> collections.Counter[str]:
    return collections.Counter(data.fields["Y"][i] for i in indices)


def assert_round_trip(dataset: str, source: Path, tmp_path: Path, **options: object) -> DataFile:
    out = tmp_path / f"{dataset}.h5"
    prepared = prepare(dataset, source, out, ReaderOptions(**options))
    back = read_data_file(out)
    assert back.fields == prepared.fields
    assert (back.train_index_list, back.test_index_list) == (prepared.train_index_list, prepared.test_index_list)
    assert back.label_vocab == prepared.label_vocab
    assert back.attributes == json.loads(json.dumps(prepared.attributes))
    return back


def assert_cli_error(argv: list[str], out: Path, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", *argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
    assert not out.exists() and list(out.parent.glob(f".{out.name}*")) == []


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- 20 Newsgroups


@pytest.fixture(scope="module")
def news(shared_data: Path) -> DataFile:
    return read("20news", shared_data / "20newsgroups")  # the folder holding the tar.gz


def test_20news_counts_match_the_published_ones(news: DataFile) -> None:
    assert (len(news.train_index_list), len(news.test_index_list)) == (11314, 7532)
    assert news.n_examples == 18846
    assert labels_of(news, news.train_index_list) == NEWS_TRAIN_COUNTS
    assert list(news.label_vocab) == sorted(NEWS_TRAIN_COUNTS)
    assert set(labels_of(news, news.test_index_list)) == set(NEWS_TRAIN_COUNTS)


def test_20news_is_sorted_by_split_group_and_file(news: DataFile) -> None:
    assert news.train_index_list == list(range(11314))
    train_labels = [news.fields["Y"][i] for i in news.train_index_list]
    assert train_labels == sorted(train_labels)
    assert news.fields["X"][0].startswith("From: ")  # the raw post, headers included
    assert news.attributes["source_files"] == {"train": "20news-bydate.tar.gz:20news-bydate-train",
                                               "test": "20news-bydate.tar.gz:20news-bydate-test"}


def test_20news_round_trip_from_the_archive_itself(news: DataFile, shared_data: Path, tmp_path: Path) -> None:
    back = assert_round_trip("20news", shared_data / "20newsgroups" / "20news-bydate.tar.gz", tmp_path)
    assert back.fields == news.fields
    assert back.attributes["test_split"] == "original"


def test_20news_extracted_folder(tmp_path: Path) -> None:
    for name, body in [("train/b.misc/2", b"b"), ("train/a.misc/9", b"nine"), ("train/a.misc/10", b"caf\xe9"),
                       ("test/a.misc/1", b"one")]:
        split, rest = name.split("/", 1)
        path = tmp_path / f"20news-bydate-{split}" / rest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    data = read("20news", tmp_path)
    assert data.fields["X"] == ["café", "nine", "b", "one"]  # Latin-1; file names sort as strings
    assert data.fields["Y"] == ["a.misc", "a.misc", "b.misc", "a.misc"]
    assert (data.train_index_list, data.test_index_list) == ([0, 1, 2], [3])


def test_20news_wrong_source_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "news.tar.gz", "not a tar")
    assert_cli_error(["--dataset", "20news", "--source", str(source)], tmp_path / "out.h5",
                     f"{source}: not a readable tar archive", capsys)


# ---------------------------------------------------------------- SST-2


@pytest.fixture(scope="module")
def sst2(shared_data: Path) -> DataFile:
    return read("sst2", shared_data / "sst2")


def test_sst2_counts_match_glue(sst2: DataFile) -> None:
    assert labels_of(sst2, sst2.train_index_list) == {"0": 29780, "1": 37569}
    assert labels_of(sst2, sst2.test_index_list) == {"0": 428, "1": 444}  # dev.tsv: GLUE's test has no labels
    assert sst2.label_vocab == {"0": 0, "1": 1}
    assert sst2.attributes["source_files"] == {"train": "train.tsv", "test": "dev.tsv"}


def test_sst2_sentences_are_verbatim(sst2: DataFile) -> None:
    assert sst2.fields["X"][0] == "hide new secretions from the parental units "


def test_sst2_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("sst2", shared_data / "sst2", tmp_path)


# ---------------------------------------------------------------- AG News


def test_agnews_test_csv_alone_is_a_pool_of_7600(shared_data: Path) -> None:
    for source in (shared_data / "ag_news", shared_data / "ag_news" / "test.csv"):
        data = read("agnews", source)
        assert (len(data.train_index_list), data.test_index_list) == (7600, [])
        assert labels_of(data, data.train_index_list) == dict.fromkeys(AGNEWS_CLASSES, 1900)
        assert list(data.label_vocab) == sorted(AGNEWS_CLASSES)
        assert data.attributes["source_files"] == {"train": "test.csv"}
        assert data.fields["X"][0] == ("Fears for T N pension after talks Unions representing workers at Turner   "
                                       "Newall say they are 'disappointed' after talks with stricken parent firm "
                                       "Federal Mogul.")
        assert data.fields["Y"][0] == "Business"


def test_agnews_needs_test_fraction(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_cli_error(["--dataset", "agnews", "--source", str(shared_data / "ag_news")], tmp_path / "out.h5",
                     "give --test-fraction", capsys)


def test_agnews_round_trip_with_a_seeded_test_split(shared_data: Path, tmp_path: Path) -> None:
    back = assert_round_trip("agnews", shared_data / "ag_news", tmp_path, test_fraction=0.25, seed=3)
    assert (len(back.train_index_list), len(back.test_index_list)) == (5700, 1900)
    assert back.attributes["source_files"] == {"train": "test.csv"}


def test_agnews_train_and_test_without_classes_txt(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", '"1","Title","Body, with ""quotes"""\n"2","T2","B2"\n')
    write(tmp_path / "test.csv", '"2","T3","B3"\n')
    data = read("agnews", tmp_path)
    assert data.fields["X"] == ['Title Body, with "quotes"', "T2 B2", "T3 B3"]
    assert data.fields["Y"] == ["1", "2", "2"]
    assert (data.train_index_list, data.test_index_list) == ([0, 1], [2])


def test_agnews_unknown_class_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "classes.txt", "\n".join(AGNEWS_CLASSES) + "\n")
    source = write(tmp_path / "test.csv", '"1","a","b"\n"5","c","d"\n')
    assert_cli_error(["--dataset", "agnews", "--source", str(source), "--test-fraction", "0.5"],
                     tmp_path / "out.h5", f"{source}:2: class '5' is not one of 1, 2, 3, 4", capsys)


# ---------------------------------------------------------------- generic csv / tsv / jsonl


def test_csv_file_is_a_pool_with_quoted_fields_and_groups(tmp_path: Path) -> None:
    content = 'id,text,label,domain\n1,"Hello, world",pos,a\n2,"two\nlines",neg,b\n\n3,x,neg,a\n'
    source = write(tmp_path / "data.csv", content)
    data = read("csv", source, text_column="text", label_column="label", source_column="domain")
    assert data.fields == {"X": ["Hello, world", "two\nlines", "x"], "Y": ["pos", "neg", "neg"],
                           "source": ["a", "b", "a"]}
    assert (data.train_index_list, data.test_index_list) == ([0, 1, 2], [])
    assert data.label_vocab == {"neg": 0, "pos": 1}
    assert data.attributes["source_files"] == {"train": "data.csv"}


def test_csv_folder_keeps_dev_aside_when_test_exists(tmp_path: Path) -> None:
    for split, rows in {"train": "a,1\nb,0\n", "dev": "c,1\n", "test": "d,0\n"}.items():
        write(tmp_path / f"{split}.csv", "t,l\n" + rows)
    data = read("csv", tmp_path, text_column="t", label_column="l")
    assert data.fields["X"] == ["a", "b", "c", "d"]
    assert (data.train_index_list, data.test_index_list) == ([0, 1], [3])
    assert data.attributes["valid_index_list"] == [2]
    assert data.fields["split"] == ["train", "train", "dev", "test"]


def test_tsv_folder_without_test_uses_dev_and_keeps_quotes(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", 'sentence\tlabel\nhe said "hi\tpos\n')
    write(tmp_path / "dev.tsv", "sentence\tlabel\nbye\tneg\n")
    data = read("tsv", tmp_path, text_column="sentence", label_column="label")
    assert data.fields == {"X": ['he said "hi', "bye"], "Y": ["pos", "neg"]}
    assert (data.train_index_list, data.test_index_list) == ([0], [1])
    assert data.attributes["source_files"] == {"train": "train.tsv", "test": "dev.tsv"}


def test_jsonl_labels_become_strings(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", '{"text": "a", "y": 1}\n\n{"text": "b", "y": 0}\n')
    write(tmp_path / "test.jsonl", '{"text": "c", "y": 1}\n')
    data = read("jsonl", tmp_path, text_column="text", label_column="y")
    assert data.fields == {"X": ["a", "b", "c"], "Y": ["1", "0", "1"]}
    assert data.label_vocab == {"0": 0, "1": 1}
    assert (data.train_index_list, data.test_index_list) == ([0, 1], [2])


def test_generic_round_trip_with_test_fraction(tmp_path: Path) -> None:
    rows = "".join(f'{{"text": "example {i}", "label": "{"ab"[i % 2]}", "g": "c{i % 3}"}}\n' for i in range(20))
    source = write(tmp_path / "data.jsonl", rows)
    back = assert_round_trip("jsonl", source, tmp_path, text_column="text", label_column="label",
                             source_column="g", test_fraction=0.25)
    assert (len(back.train_index_list), len(back.test_index_list)) == (15, 5)
    assert back.fields["source"][:3] == ["c0", "c1", "c2"]


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--text-column", "text"], "--dataset csv needs --label-column"),
        ([], "--dataset csv needs --text-column and --label-column"),
        (["--text-column", "text", "--label-column", "y"],
         "data.csv: no column 'y' (--label-column); found columns: text, label"),
        (["--text-column", "text", "--label-column", "label", "--source-column", "g"],
         "data.csv: no column 'g' (--source-column)"),
    ],
)
def test_csv_column_options_are_checked(options: list[str], expected: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "data.csv", "text,label\na,1\n")
    assert_cli_error(["--dataset", "csv", "--source", str(source), "--test-fraction", "0.5", *options],
                     tmp_path / "out.h5", expected, capsys)


@pytest.mark.parametrize(
    "dataset, name, content, expected",
    [
        ("csv", "data.csv", "text,label\na,1\nb,1\nc,\n", "data.csv:4: row has no label in column 'label'"),
        ("csv", "data.csv", "text,label\na,1\n  ,0\n", "data.csv:3: row has no text in column 'text'"),
        ("csv", "data.csv", "text,label\na,1\nb\n", "data.csv:3: row has no label in column 'label'"),
        ("tsv", "data.tsv", "text\tlabel\na\t1\nb\t\n", "data.tsv:3: row has no label in column 'label'"),
        ("jsonl", "data.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', "data.jsonl:2: row has no label"),
        ("jsonl", "data.jsonl", '{"text": "a", "label": 1}\n{"text": ["b"], "label": 1}\n',
         "data.jsonl:2: column 'text' holds a JSON list, expected a string"),
        ("jsonl", "data.jsonl", '{"text": "a", "label": 1}\n{"text": \n', "data.jsonl:2: not valid JSON"),
    ],
)
def test_bad_row_is_one_line_exit_2_naming_file_and_line(dataset: str, name: str, content: str, expected: str,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / name, content)
    argv = ["--dataset", dataset, "--source", str(source), "--text-column", "text", "--label-column", "label",
            "--test-fraction", "0.5"]
    assert_cli_error(argv, tmp_path / "out.h5", expected, capsys)


def test_folder_without_expected_files_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "data" / "notes.txt", "nothing here")
    argv = ["--dataset", "csv", "--source", str(tmp_path / "data"), "--text-column", "t", "--label-column", "l"]
    assert_cli_error(argv, tmp_path / "out.h5", "holds none of the expected files (train.csv, dev.csv", capsys)

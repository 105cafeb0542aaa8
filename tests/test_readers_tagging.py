"""The sequence tagging readers (conll2003, wnut17, conll) on the real files of ../shared/data and on small
column files written here."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from fednlp.cli import main
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.data.prepare import prepare
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.errors import UserError

CONLL_COUNTS = {  # split: (sentences, tokens, entities per type), published CoNLL-2003 statistics
    "train": (14041, 203621, {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438}),
    "dev": (3250, 51362, {"PER": 1842, "LOC": 1837, "ORG": 1341, "MISC": 922}),
    "test": (3453, 46435, {"PER": 1617, "LOC": 1668, "ORG": 1661, "MISC": 702}),
}
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
WNUT_COUNTS = {"train": (3394, 62730, 1975), "dev": (1009, 15733, 836), "test": (1287, 23394, 1079)}
WNUT_TRAIN_ENTITIES = {"person": 660, "location": 548, "group": 264, "corporation": 221, "product": 142,
                       "creative-work": 140}


def read(name: str, source: Path, **options: object) -> DataFile:
    return get_reader(name).read(source, ReaderOptions(**options))


def split_indices(data: DataFile) -> dict[str, list[int]]:
    return {"train": data.train_index_list, "dev": data.attributes.get("valid_index_list", []),
            "test": data.test_index_list}


def entity_counts(data: DataFile, indices: list[int]) -> collections.Counter[str]:
    return collections.Counter(kind for kind, _, _ in get_entities([data.fields["Y"][i] for i in indices]))


def assert_round_trip(dataset: str, source: Path, tmp_path: Path, **options: object) -> DataFile:
    out = tmp_path / f"{dataset}.h5"
    prepared = prepare(dataset, source, out, ReaderOptions(**options))
    back = read_data_file(out)
    assert back.fields == prepared.fields
    assert (back.train_index_list, back.test_index_list) == (prepared.train_index_list, prepared.test_index_list)
    assert back.label_vocab == prepared.label_vocab
    assert back.attributes == json.loads(json.dumps(prepared.attributes))
    return back


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


# ---------------------------------------------------------------- CoNLL-2003


@pytest.fixture(scope="module")
def conll(shared_data: Path) -> DataFile:
    return read("conll2003", shared_data / "conll2003")


@pytest.mark.parametrize("split", CONLL_COUNTS)
def test_conll2003_counts_match_the_published_ones(conll: DataFile, split: str) -> None:
    sentences, tokens, entities = CONLL_COUNTS[split]
    indices = split_indices(conll)[split]
    assert len(indices) == sentences
    assert sum(len(conll.fields["X"][i]) for i in indices) == tokens
    assert entity_counts(conll, indices) == entities


def test_conll2003_fields_and_valid_split(conll: DataFile) -> None:
    assert list(conll.label_vocab) == sorted(CONLL_TAGS)
    assert conll.fields["X"][0] == ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    assert conll.fields["Y"][0] == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    assert all(len(tokens) == len(tags) for tokens, tags in zip(conll.fields["X"], conll.fields["Y"], strict=True))
    assert conll.attributes["valid_index_list"] == list(range(14041, 14041 + 3250))
    assert collections.Counter(conll.fields["split"]) == {"train": 14041, "dev": 3250, "test": 3453}
    assert conll.attributes["source_files"] == {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}


def test_conll2003_round_trip(shared_data: Path, tmp_path: Path) -> None:
    back = assert_round_trip("conll2003", shared_data / "conll2003", tmp_path)
    assert back.attributes["valid_index_list"] == list(range(14041, 14041 + 3250))


def test_generic_conll_on_the_real_train_file_equals_conll2003(conll: DataFile, shared_data: Path) -> None:
    data = read("conll", shared_data / "conll2003" / "train.txt", tag_column=3)
    assert data.fields["X"] == conll.fields["X"][:14041]
    assert data.fields["Y"] == conll.fields["Y"][:14041]
    assert (len(data.train_index_list), data.test_index_list) == (14041, [])


# ---------------------------------------------------------------- WNUT-17


@pytest.fixture(scope="module")
def wnut(shared_data: Path) -> DataFile:
    return read("wnut17", shared_data / "wnut17")


@pytest.mark.parametrize("split", WNUT_COUNTS)
def test_wnut17_counts_match_the_published_ones(wnut: DataFile, split: str) -> None:
    sentences, tokens, entities = WNUT_COUNTS[split]
    indices = split_indices(wnut)[split]
    assert len(indices) == sentences
    assert sum(len(wnut.fields["X"][i]) for i in indices) == tokens
    assert sum(entity_counts(wnut, indices).values()) == entities


def test_wnut17_train_entities_and_tags(wnut: DataFile) -> None:
    assert entity_counts(wnut, wnut.train_index_list) == WNUT_TRAIN_ENTITIES
    assert len(wnut.label_vocab) == 13 and list(wnut.label_vocab) == sorted(wnut.label_vocab)
    assert wnut.fields["X"][0][:3] == ["@paulwalk", "It", "'s"]


def test_wnut17_round_trip(shared_data: Path, tmp_path: Path) -> None:
    assert_round_trip("wnut17", shared_data / "wnut17", tmp_path)


# ---------------------------------------------------------------- generic conll


def test_conll_folder_skips_docstart_and_reads_chosen_columns(tmp_path: Path) -> None:
    write(tmp_path / "train.conll", "-DOCSTART- -X- O O\n\nJohn NNP B-PER x\r\nruns\tVBZ O x\n \nParis NNP B-LOC x")
    write(tmp_path / "test.conll", "Bob NNP B-PER x\n\n\n")
    data = read("conll", tmp_path, token_column=0, tag_column=2)
    assert data.fields == {"X": [["John", "runs"], ["Paris"], ["Bob"]], "Y": [["B-PER", "O"], ["B-LOC"], ["B-PER"]]}
    assert (data.train_index_list, data.test_index_list) == ([0, 1], [2])
    assert data.label_vocab == {"B-LOC": 0, "B-PER": 1, "O": 2}


def test_conll_round_trip_with_test_fraction(tmp_path: Path) -> None:
    source = write(tmp_path / "data.txt", "".join(f"w{i} O\nx{i} B-X\n\n" for i in range(10)))
    back = assert_round_trip("conll", source, tmp_path, test_fraction=0.3)
    assert (len(back.train_index_list), len(back.test_index_list)) == (7, 3)


def test_conll_folder_with_two_train_files_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "train.txt", "a O\n")
    write(tmp_path / "train.conll", "a O\n")
    with pytest.raises(UserError, match=r"several train files \(train.conll, train.txt\)"):
        read("conll", tmp_path)


@pytest.mark.parametrize(
    "options, content, expected",
    [
        ([], "a O\nb\n", "data.txt:2: expected at least 2 columns, found 1"),
        (["--tag-column", "3"], "a B C O\n\nb B O\n", "data.txt:3: expected at least 4 columns, found 3"),
        (["--token-column", "1", "--tag-column", "1"], "a O\n", "--token-column and --tag-column are both 1"),
    ],
)
def test_conll_bad_line_is_one_line_exit_2(options: list[str], content: str, expected: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "data.txt", content)
    out = tmp_path / "out.h5"
    assert main(["data", "prepare", "--dataset", "conll", "--source", str(source), "--out", str(out),
                 "--test-fraction", "0.5", *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
    assert not out.exists() and list(tmp_path.glob(".out.h5*")) == []


def test_conll2003_line_missing_columns_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "train.txt", "EU NNP B-NP B-ORG\nrejects VBZ O\n")
    write(tmp_path / "test.txt", "EU NNP B-NP B-ORG\n")
    out = tmp_path / "out.h5"
    assert main(["data", "prepare", "--dataset", "conll2003", "--source", str(tmp_path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert f"{tmp_path / 'train.txt'}:2: expected at least 4 columns, found 3" in captured.err
    assert not out.exists()

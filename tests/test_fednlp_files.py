"""FedNLP's own files, read for real: every file in ../shared/data/fednlp-files (written by FedNLP's loaders
and partition scripts, commit a8ad7b9, gzip-compressed), gunzipped once per session into a temporary folder.

Every expected number is read from the file itself with plain h5py (what FedNLP wrote), never from fednlp's
reader: examples, labels, train/test lists (or FedNLP's 90% rule where a file has none), and per partition
group the client count and the sizes of every client's train and test arrays (FedNLP's float64 (0,) empty
clients included). Then `fednlp partition-stats`, one round of `fednlp train` and one step of
`fednlp centralized` run on each data file with tiny-bert.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from fednlp.cli import main
from fednlp.data.datafile import read_data_file
from fednlp.errors import UserError
from fednlp.federation.clients import read_clients

QA_WINDOWS = ("--max-seq-length", "256", "--doc-stride", "64")  # about one window per SQuAD row


@dataclass(frozen=True)
class DataCase:
    """One FedNLP data file: its task, its partition files, and the group its one-round run uses, asked for
    in the other spelling of its name (`requested`), which must find the group FedNLP wrote (`in_file`)."""

    task_type: str
    partition_files: tuple[str, ...]
    train_partition: str
    requested: str
    in_file: str
    flags: tuple[str, ...] = ()


DATA = {
    "20news_data.h5": DataCase("text_classification", ("20news_partition.h5", "20news_kmeans_partition.h5"),
                               "20news_kmeans_partition.h5", "kmeans_clusters=2000", "kmeans_clusters=2000"),
    "w_nut_data.h5": DataCase("sequence_tagging", ("w_nut_partition.h5", "w_nut_kmeans_partition.h5"),
                              "w_nut_partition.h5", "niid_quantity_clients=10_beta=1", "niid_quantity_clients=10_beta=1.0"),
    "squad_data.h5": DataCase("span_extraction", ("squad_partition.h5",), "squad_partition.h5",
                              "niid_cluster_clients=10_alpha=1.0", "niid_cluster_clients=10_alpha=1", QA_WINDOWS),
    # FedNLP published no partition of its seq2seq files: the fixture makes one with `fednlp partition`.
    "cnndm_gigasample_data.h5": DataCase("seq2seq", (), "cnndm_partition.h5", "uniform", "uniform_clients=5",
                                         ("--max-target-length", "8", "--num-beams", "1")),
}
PARTITIONS = {p: data for data, case in DATA.items() for p in case.partition_files}


@pytest.fixture(scope="session")
def fednlp_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every file of ../shared/data/fednlp-files, gunzipped (read-only, as FedNLP left them)."""
    folder = tmp_path_factory.mktemp("fednlp_files")
    for packed in sorted((shared_data / "fednlp-files").glob("*.h5.gz")):
        with gzip.open(packed) as source, open(folder / packed.name.removesuffix(".gz"), "wb") as target:
            shutil.copyfileobj(source, target)
    for path in folder.glob("*.h5"):
        path.chmod(0o444)
    assert main(["partition", "--data", str(folder / "cnndm_gigasample_data.h5"), "--out",
                 str(folder / "cnndm_partition.h5"), "--method", "uniform", "--clients", "5",
                 "--layout", "fednlp"]) == 0  # FedNLP published no seq2seq partition: one in its layout
    return folder


# ------------------------------------------------------------------------------ what the files hold


def file_attributes(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f["attributes"][()])


def file_groups(path: Path) -> dict[str, dict]:
    """Per partition group, as h5py reads it: n_clients and every client's train and test sizes."""
    groups = {}
    with h5py.File(path, "r") as f:
        for name, group in f.items():
            if "partition_data" not in group:
                continue
            clients = group["partition_data"]
            sizes = {split: [clients[str(k)][split].shape[0] for k in range(len(clients))] for split in ("train", "test")}
            groups[name] = {"n_clients": int(group["n_clients"][()]), "n_datasets": len(clients), **sizes,
                            "empty_float64": sum(clients[k][s].dtype == np.float64 and clients[k][s].shape == (0,)
                                                 for k in clients for s in clients[k])}
    return groups


def expected_split(attributes: dict) -> tuple[int, int]:
    """The file's train/test list lengths; where it has none, FedNLP's partition scripts' 90% rule."""
    if "train_index_list" in attributes:
        return len(attributes["train_index_list"]), len(attributes["test_index_list"])
    n_train = int(len(attributes["index_list"]) * 0.9)
    return n_train, len(attributes["index_list"]) - n_train


def test_every_file_in_the_folder_has_its_test(shared_data: Path) -> None:
    shipped = {path.name.removesuffix(".gz") for path in (shared_data / "fednlp-files").glob("*.h5.gz")}
    assert shipped == set(DATA) | set(PARTITIONS)


@pytest.mark.parametrize("name", list(DATA))
def test_data_file_reads_as_fednlp_wrote_it(name: str, fednlp_files: Path, capsys: pytest.CaptureFixture) -> None:
    path, case = fednlp_files / name, DATA[name]
    attributes = file_attributes(path)
    with h5py.File(path, "r") as f:
        per_field = {field: len(f[field]) for field in f if field != "attributes"}
    capsys.readouterr()
    data = read_data_file(path)
    notes = capsys.readouterr().err
    assert data.task_type == case.task_type
    assert data.n_examples == len(attributes["index_list"]) and set(per_field.values()) == {data.n_examples}
    assert set(data.fields) == set(per_field)
    assert (len(data.train_index_list), len(data.test_index_list)) == expected_split(attributes)
    assert sorted(data.train_index_list + data.test_index_list) == sorted(attributes["index_list"])
    assert data.num_labels == len(attributes.get("label_vocab") or {})
    if case.task_type == "sequence_tagging":  # FedNLP's name for the task
        assert attributes["task_type"] == "seq_tagging" and data.attributes["task_type_in_file"] == "seq_tagging"
        assert data.num_labels == 13
        assert all(len(x) == len(y) and all(isinstance(t, str) for t in x) for x, y in zip(data.fields["X"],
                                                                                          data.fields["Y"]))
    if case.task_type == "seq2seq":  # no task_type, no split in the file: both inferred, said and recorded
        assert "task_type" not in attributes and "train_index_list" not in attributes
        assert data.attributes["task_type_inferred"].startswith("seq2seq: ")
        assert "the first 45 of the 50 entries of index_list (90%) train" in data.attributes["split_inferred"]
        assert data.train_index_list == list(range(45)) and data.test_index_list == list(range(45, 50))
        assert notes.count("fednlp: note: ") == 2 and "read as seq2seq" in notes and "FedNLP's rule" in notes
    else:
        assert notes == ""


@pytest.mark.parametrize("name", list(PARTITIONS))
def test_partition_stats_and_clients_match_the_file(name: str, fednlp_files: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """partition-stats on every group (empty float64 clients included), and the clients a run reads."""
    data, partition = fednlp_files / PARTITIONS[name], fednlp_files / name
    groups = file_groups(partition)
    capsys.readouterr()
    assert main(["partition-stats", "--data", str(data), "--partition", str(partition)]) == 0
    report = capsys.readouterr().out
    shown = dict(re.findall(r"^(\S+)\n  clients +(\d+ \(\d+ train and \d+ test examples\))", report, re.M))
    assert set(shown) == set(groups)
    for group, held in groups.items():
        assert held["n_datasets"] == held["n_clients"]
        assert shown[group] == f"{held['n_clients']} ({sum(held['train'])} train and {sum(held['test'])} test examples)"
        clients = read_clients(str(partition), group, len(file_attributes(data)["index_list"]), str(data))
        assert clients.sizes.tolist() == held["train"]
    assert "n/a" not in report  # every group has labels: classes, entity types, or FedNLP's k-means clusters
    if name.endswith("kmeans_partition.h5"):
        assert sum(held["empty_float64"] for held in groups.values()) > 0  # the case that crashed partition-stats


@pytest.mark.parametrize("name", list(DATA))
def test_one_round_and_one_centralized_step_on_each_data_file(name: str, fednlp_files: Path, tmp_path: Path) -> None:
    case = DATA[name]
    data, partition = fednlp_files / name, fednlp_files / case.train_partition
    common = ["--data", str(data), "--model", "tiny-bert", "--max-seq-length", "32", "--batch-size", "4",
              "--eval-max-examples", "8", *case.flags]
    assert main(["train", *common, "--partition", str(partition), "--method", case.requested, "--rounds", "1",
                 "--clients-per-round", "2", "--local-steps", "1", "--out", str(tmp_path / "fed")]) == 0
    assert main(["centralized", *common, "--steps", "1", "--out", str(tmp_path / "central")]) == 0
    for run in ("fed", "central"):
        result = json.loads((tmp_path / run / "result.json").read_text())
        assert result["task_type"] == case.task_type
        assert all(0.0 <= result["metrics"][key] <= 1.0 for key in result["metrics"] if key != "train_loss")
    fed = json.loads((tmp_path / "fed" / "result.json").read_text())
    assert fed["n_clients"] == file_groups(partition)[case.in_file]["n_clients"]


# ------------------------------------------------------------------------------ QA: one score per question


def test_qa_oracle_scores_full_marks_per_question_on_fednlps_squad(fednlp_files: Path) -> None:
    """FedNLP writes one row per reference answer: answering each question with its first gold answer must
    score 1.0/1.0 over the test questions (scored per row against one reference it was EM 0.631, F1 0.805)."""
    from fednlp.config import RunConfig
    from fednlp.tasks.models import load_tokenizer
    from fednlp.tasks.qa import ExtractiveQA

    path = fednlp_files / "squad_data.h5"
    attributes = file_attributes(path)
    with h5py.File(path, "r") as f:
        ids = {i: f["question_ids"][str(i)][()].decode() for i in attributes["test_index_list"]}
        spans = {i: f["Y"][str(i)][()] for i in attributes["test_index_list"]}
        contexts = {i: f["context_X"][str(i)][()].decode() for i in attributes["test_index_list"]}
    first_row = {}
    for i in sorted(ids):
        first_row.setdefault(ids[i], i)
    assert len(ids) == 1770 and len(first_row) == 378  # rows, questions
    gold = {i: contexts[first_row[ids[i]]][slice(*spans[first_row[ids[i]]])] for i in ids}

    task = ExtractiveQA(read_data_file(path), load_tokenizer("tiny-bert"), RunConfig(data=str(path), task="qa"))
    assert task.score(gold) == {"f1": 1.0, "exact_match": 1.0}
    wrong = dict(gold)
    for i in ids:
        if ids[i] == ids[min(ids)]:
            wrong[i] = "no such answer"  # one question wrong, whichever of its rows is scored
    assert task.score(wrong) == pytest.approx({"f1": 377 / 378, "exact_match": 377 / 378})


# ------------------------------------------------------------------------------ group names and k-means groups


@pytest.mark.parametrize("requested, in_file", [
    ("niid_label_clients=100_alpha=1.0", "niid_label_clients=100_alpha=1"),  # FedNLP's current %g name
    ("niid_label_clients=100_alpha=0.50", "niid_label_clients=100_alpha=0.5"),
    ("niid_quantity_clients=10_beta=1", "niid_quantity_clients=10_beta=1.0"),  # FedNLP's older %.1f name
])
def test_either_spelling_of_a_group_finds_it(requested: str, in_file: str, fednlp_files: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    args = ["partition-stats", "--data", str(fednlp_files / "20news_data.h5"), "--partition",
            str(fednlp_files / "20news_partition.h5"), "--method"]
    capsys.readouterr()
    assert main([*args, requested]) == 0
    assert capsys.readouterr().out.startswith(f"{in_file}\n")
    assert main([*args, "niid_label_clients=100_alpha=2"]) == 2  # no such alpha: the error lists the groups
    err = capsys.readouterr().err
    assert "has no partition 'niid_label_clients=100_alpha=2' (it has: niid_label_clients=100_alpha=0.5, " in err


def test_fednlp_groups_survive_fednlp_partition_into_the_same_file(fednlp_files: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    partition = tmp_path / "squad_partition.h5"
    shutil.copyfile(fednlp_files / "squad_partition.h5", partition)
    data = str(fednlp_files / "squad_data.h5")
    before, original = partition.read_bytes(), _contents(partition)
    capsys.readouterr()
    # FedNLP's kmeans_clusters=5 holds its clustering and its partition: never replaced without --overwrite
    # (refused before any encoding), nor FedNLP's niid_quantity group of the same name as ours.
    for args in (["--method", "niid_cluster", "--clients", "10", "--alpha", "1", "--clusters", "5"],
                 ["--method", "niid_quantity", "--clients", "10", "--beta", "1"]):
        assert main(["partition", "--data", data, "--out", str(partition), *args]) == 2
        err = capsys.readouterr().err
        assert "made not by fednlp (it records no seed; FedNLP's scripts write none); pass --overwrite" in err
        assert partition.read_bytes() == before
    assert main(["partition", "--data", data, "--out", str(partition), "--method", "uniform", "--clients", "4"]) == 0
    after = _contents(partition)
    assert {name: after[name] for name in original} == original  # FedNLP's groups, bit for bit
    assert set(after) - set(original) == {"uniform_clients=4"}
    assert main(["partition", "--data", data, "--out", str(partition), "--method", "niid_quantity", "--clients",
                 "10", "--beta", "1", "--overwrite"]) == 0
    with h5py.File(partition, "r") as f:
        assert f["niid_quantity_clients=10_beta=1.0"]["seed"][()] == 0  # replaced: now fednlp's, seed recorded
    assert _contents(partition)["kmeans_clusters=5"] == original["kmeans_clusters=5"]


def _contents(path: Path) -> dict[str, dict[str, tuple]]:
    """Every dataset of every top-level group: dtype, shape and raw bytes."""
    out: dict[str, dict[str, tuple]] = {}
    with h5py.File(path, "r") as f:
        for name in f:
            datasets: dict[str, tuple] = {}

            def keep(key: str, node: h5py.HLObject, datasets: dict = datasets) -> None:
                if isinstance(node, h5py.Dataset):
                    datasets[key] = (str(node.dtype), node.shape, np.asarray(node[()]).tobytes())

            f[name].visititems(keep)
            out[name] = datasets
    return out


def test_fednlps_plain_uniform_group_is_found_by_fednlps_full_name(tmp_path: Path) -> None:
    """FedNLP's published files name their uniform group plain `uniform` (none of the shared files has one)."""
    from fednlp.data_partition.partition_file import find_group, partition_content, write_groups

    path = tmp_path / "p.h5"
    clients = [np.arange(3), np.arange(3, 6)]
    write_groups(path, {"uniform": partition_content(clients, clients, {}),
                        "niid_label_clients=2_alpha=1": partition_content(clients, clients, {"alpha": 1.0})})
    assert find_group(path, "uniform_clients=2") == "uniform"
    assert find_group(path, "niid_label_clients=2_alpha=1.0") == "niid_label_clients=2_alpha=1"
    with pytest.raises(UserError, match=r"has no partition 'uniform_clients=3' \(it has: niid_label_clients=2_al"):
        find_group(path, "uniform_clients=3")

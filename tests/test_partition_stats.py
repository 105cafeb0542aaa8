"""`fednlp partition-stats`: figures per partition and the client x label heat map."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fednlp.cli import main
from fednlp.data.datafile import DataFile, label_vocab_of, write_data_file
from fednlp.data_partition.partition_file import write_groups
from fednlp.data_partition.stats import client_label_counts, mean_tv_distance

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ag_news(shared_data, tmp_path_factory) -> Path:
    """400 AG News test rows (4 classes), every fifth held out as test."""
    names = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
    with open(shared_data / "ag_news" / "test.csv", newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(400), csv.reader(f))]
    labels = [names[r[0]] for r in rows]
    train = [i for i in range(400) if i % 5]
    test = [i for i in range(400) if i % 5 == 0]
    path = tmp_path_factory.mktemp("ag") / "ag_news.h5"
    fields = {"X": [r[2] for r in rows], "Y": labels}
    data = DataFile("text_classification", fields, train, test, label_vocab_of(labels))
    write_data_file(data, path)
    return path


@pytest.fixture(scope="module")
def partitions(ag_news, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("p") / "partition.h5"
    for args in (
        ["--method", "uniform", "--clients", "8"],
        ["--method", "niid_label", "--clients", "8", "--alpha", "0.01"],
        ["--method", "niid_label", "--clients", "8", "--alpha", "100"],
        ["--method", "niid_quantity", "--clients", "8", "--beta", "0.5"],
    ):
        assert main(["partition", "--data", str(ag_news), "--out", str(out), *args]) == 0
    return out


def stats(data: Path, partition: Path, *args: str) -> int:
    return main(["partition-stats", "--data", str(data), "--partition", str(partition), *args])


def test_label_distance_on_hand_computed_counts():
    counts = np.array([[2, 0], [0, 2]])  # global mix (1/2, 1/2); each client is 1/2 away in TV
    assert mean_tv_distance(counts) == pytest.approx(0.5)
    assert mean_tv_distance(np.array([[1, 1], [3, 3], [0, 0]])) == pytest.approx(0.0)  # empty clients skipped
    clients = [np.array([0, 2]), np.array([1])]
    assert client_label_counts(clients, np.array([1, 0, 1]), 2).tolist() == [[0, 2], [1, 0]]


def test_report_prints_figures_per_partition(ag_news, partitions, capsys):
    assert stats(ag_news, partitions, "--method", "niid_label_clients=8_alpha=0.01") == 0
    out = capsys.readouterr().out
    assert out.startswith("niid_label_clients=8_alpha=0.01\n")
    assert "clients          8 (320 train and 80 test examples)" in out
    assert "train size       min 40  median 40  max 40" in out
    assert "test size        min 10  median 10  max 10" in out
    assert "label distance" in out and "over 4 labels" in out


def test_skew_shows_in_the_label_distance(ag_news, partitions, capsys):
    assert stats(ag_news, partitions, "--method", "niid_label") == 0  # a method name: each of its groups
    out = capsys.readouterr().out
    distances = _distances(out)
    assert set(distances) == {"niid_label_clients=8_alpha=0.01", "niid_label_clients=8_alpha=100.0"}
    assert distances["niid_label_clients=8_alpha=0.01"] > 0.5 > distances["niid_label_clients=8_alpha=100.0"]


def _distances(report: str) -> dict[str, float]:
    result, name = {}, None
    for line in report.splitlines():
        if not line.startswith(" "):
            name = line
        elif line.strip().startswith("label distance"):
            result[name] = float(line.split()[2])
    return result


def test_every_group_and_the_heat_map(ag_news, partitions, tmp_path, capsys):
    plot = tmp_path / "plots" / "heat.png"
    assert stats(ag_news, partitions, "--plot", str(plot)) == 0
    out = capsys.readouterr().out
    assert len(_distances(out)) == 4
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in plot.parent.iterdir()] == ["heat.png"]


def test_unknown_partition_is_one_line_exit_2(ag_news, partitions, capsys):
    assert stats(ag_news, partitions, "--method", "natural") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no partition 'natural'" in err and "uniform_clients=8" in err


def test_qa_partitions_use_a_stored_clustering_or_say_na(shared_data, tmp_path, capsys):
    n = 50
    data = tmp_path / "qa.h5"
    fields = {
        "context_X": [f"context {i}" for i in range(n)],
        "question_X": [f"question {i}" for i in range(n)],
        "Y": [[0, 7]] * n,
    }
    write_data_file(DataFile("span_extraction", fields, list(range(40)), list(range(40, 50))), data)
    out = tmp_path / "p.h5"
    assert main(["partition", "--data", str(data), "--out", str(out), "--method", "uniform", "--clients", "4"]) == 0
    capsys.readouterr()
    assert stats(data, out) == 0
    assert "label distance   n/a" in capsys.readouterr().out
    assert stats(data, out, "--plot", str(tmp_path / "x.png")) == 2
    assert "no labels to draw" in capsys.readouterr().err

    write_groups(out, {"kmeans_clusters=3": {"cluster_assignment": np.arange(n, dtype=np.int64) % 3}})
    assert stats(data, out, "--plot", str(tmp_path / "x.png")) == 0
    assert "k-means cluster mixes from the global mix over 3 labels" in capsys.readouterr().out
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_SIGNATURE

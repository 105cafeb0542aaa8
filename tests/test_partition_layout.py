"""The partition file's two layouts: the compact one (indices + offsets per split, the default) and FedNLP's
group per client (--layout fednlp) hold the same clients; one client reads alone; groups of both layouts
live in one file; bad offsets are one line; a label partition never reads the data file's texts."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import fednlp.data.datafile as datafile
from fednlp.cli import main
from fednlp.data_partition.partition_file import (csr, group_names, partition_content, read_client, read_partition,
                                                  write_groups)
from fednlp.errors import UserError

METHODS = [
    ["--method", "niid_label", "--clients", "7", "--alpha", "0.5"],
    ["--method", "niid_quantity", "--clients", "9", "--beta", "1"],
    ["--method", "natural", "--clients", "5", "--field", "user"],
    ["--method", "pathological", "--clients", "4", "--labels-per-client", "2"],
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layout")
    csv = root / "d.csv"
    rng = np.random.default_rng(0)
    rows = [f"text {i} {'word ' * int(rng.integers(1, 9))},{'abc'[int(rng.integers(3))]},u{i % 5}" for i in range(300)]
    csv.write_text("text,label,user\n" + "\n".join(rows) + "\n")
    assert main(["data", "prepare", "--dataset", "csv", "--source", str(csv), "--text-column", "text",
                 "--label-column", "label", "--user-column", "user", "--test-fraction", "0.2",
                 "--out", str(root / "d.h5")]) == 0
    return root / "d.h5"


@pytest.mark.parametrize("args", METHODS, ids=lambda a: a[1])
def test_both_layouts_hold_the_same_clients(data: Path, tmp_path: Path, args: list[str]) -> None:
    compact, fednlp = tmp_path / "csr.h5", tmp_path / "fednlp.h5"
    assert main(["partition", "--data", str(data), "--out", str(compact), *args]) == 0
    assert main(["partition", "--data", str(data), "--out", str(fednlp), *args, "--layout", "fednlp"]) == 0
    (name,) = group_names(compact)
    a, b = read_partition(compact, name), read_partition(fednlp, name)
    assert (a.layout, b.layout) == ("csr", "fednlp") and a.n_clients == b.n_clients
    assert all(np.array_equal(x, y) and x.dtype == y.dtype == np.int64 for x, y in zip(a.train + a.test, b.train + b.test))
    assert a.values.keys() == b.values.keys()
    for key in a.values:
        assert np.array_equal(a.values[key], b.values[key]) if isinstance(a.values[key], np.ndarray) \
            else a.values[key] == b.values[key]
    for client in range(a.n_clients):
        for split, clients in (("train", a.train), ("test", a.test)):
            assert np.array_equal(read_client(compact, name, client, split), clients[client])
            assert np.array_equal(read_client(fednlp, name, client, split), clients[client])
    with h5py.File(compact, "r") as f:
        assert "partition_data" not in f[name] and sum(isinstance(n, h5py.Group) for n in f[name].values()) == 0
    with h5py.File(fednlp, "r") as f:
        assert len(f[name]["partition_data"]) == a.n_clients


def test_both_layouts_in_one_file_and_a_run_reads_either(data: Path, tmp_path: Path) -> None:
    part = tmp_path / "p.h5"
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "3",
                 "--layout", "fednlp"]) == 0
    assert main(["partition", "--data", str(data), "--out", str(part), *METHODS[0]]) == 0
    assert group_names(part) == ["niid_label_clients=7_alpha=0.5", "uniform_clients=3"]
    assert read_partition(part, "uniform_clients=3").layout == "fednlp"  # the FedNLP-layout group kept as it was
    from fednlp.federation.clients import read_clients

    clients = read_clients(str(part), "niid_label_clients=7_alpha=0.5", 300, str(data))
    assert clients.n_clients == 7 and clients.sizes.sum() == 240


def test_csr_offsets_and_empty_clients() -> None:
    indices, offsets = csr([np.array([4, 2]), np.zeros(0), np.array([7])])
    assert indices.tolist() == [4, 2, 7] and offsets.tolist() == [0, 2, 2, 3]
    assert indices.dtype == offsets.dtype == np.int64


@pytest.mark.parametrize("offsets", [[0, 2, 1, 3], [0, 2, 3], [1, 2, 2, 3], [0, 2, 2, 4]])
def test_bad_offsets_are_one_line(tmp_path: Path, offsets: list[int]) -> None:
    path = tmp_path / "p.h5"
    clients = [np.array([4, 2]), np.zeros(0, np.int64), np.array([7])]
    write_groups(path, {"uniform_clients=3": partition_content(clients, clients, {"seed": 0})})
    with h5py.File(path, "a") as f:
        del f["uniform_clients=3/train_offsets"]
        f["uniform_clients=3/train_offsets"] = np.array(offsets, dtype=np.int64)
    with pytest.raises(UserError, match=r"train_offsets has \d values; expected n_clients \+ 1 = 4 non-decreasing"):
        read_partition(path, "uniform_clients=3")


def test_bad_layout_is_refused() -> None:
    with pytest.raises(UserError, match="--layout must be one of csr, fednlp, got 'rows'"):
        partition_content([np.arange(2)], [np.arange(1)], {}, "rows")


@pytest.mark.parametrize("args,reads_text", [(METHODS[0], False), (["--method", "uniform", "--clients", "3"], False),
                                             (METHODS[2], False), (METHODS[3], False)])
def test_partitions_by_label_size_or_user_never_read_the_texts(data: Path, tmp_path: Path, monkeypatch,
                                                                args: list[str], reads_text: bool) -> None:
    read: list[str] = []
    original = datafile._read_column
    monkeypatch.setattr(datafile, "_read_column", lambda node, json_encoded: read.append(node.name) or
                        original(node, json_encoded))
    assert main(["partition", "--data", str(data), "--out", str(tmp_path / "p.h5"), *args]) == 0
    assert ("/X" in read) == reads_text
    assert set(read) <= {"/Y", "/user"}


def test_the_runtime_reads_compact_clients_as_views_of_one_array(tmp_path: Path) -> None:
    """A million clients must not cost a million array objects: the runtime's ClientData holds the compact
    layout's indices and offsets, hands out views, and computes the sizes once from the offsets."""
    from fednlp.federation.clients import read_clients

    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 5, 1000)
    order = rng.permutation(int(sizes.sum()))
    train = np.split(order, np.cumsum(sizes)[:-1])
    path = tmp_path / "p.h5"
    write_groups(path, {"g": partition_content(train, [t[:1] for t in train], {})})
    data = tmp_path / "d.h5"
    datafile.write_data_file(datafile.DataFile("text_classification", {"X": ["a"] * len(order), "Y": ["0"] * len(order)},
                                               list(range(len(order))), [], {"0": 0}), data)
    clients = read_clients(str(path), "g", len(order), str(data))
    assert clients.n_clients == 1000 and np.array_equal(clients.sizes, sizes)
    assert all(np.array_equal(clients.train[k], train[k]) for k in range(1000))
    assert clients.train[0].base is clients.train[999].base is not None  # views of one array, no copies
    assert np.array_equal(clients.test[-1], train[-1][:1]) and clients.train[2:4][1].tolist() == train[3].tolist()


def test_reading_200k_compact_clients_costs_their_indices_not_an_object_each(tmp_path: Path) -> None:
    import tracemalloc

    from fednlp.federation.clients import read_clients

    n = 200_000
    path = tmp_path / "p.h5"
    write_groups(path, {"g": {"n_clients": n, "train_indices": np.arange(n, dtype=np.int64),
                              "train_offsets": np.arange(n + 1, dtype=np.int64)}})
    data = tmp_path / "d.h5"
    datafile.write_data_file(datafile.DataFile("text_classification", {"X": ["a"] * n, "Y": ["0"] * n},
                                               list(range(n)), [], {"0": 0}), data)
    tracemalloc.start()
    clients = read_clients(str(path), "g", n, str(data))
    assert clients.sizes.sum() == n and len(clients.test[n - 1]) == 0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the indices and offsets are 3.2 MB; an array object per client (train and test) would be over 40 MB
    assert peak < 16 * 2**20, peak

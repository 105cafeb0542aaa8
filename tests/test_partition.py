"""Partitioners: properties of the pure functions (hypothesis), then `fednlp partition` end to end on
real data slices (AG News, CoNLL-2003, SQuAD, Gigaword) written as data files by the test."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fednlp.cli import main
from fednlp.data.datafile import DataFile, label_vocab_of, write_data_file
from fednlp.data_partition import METHODS, PartitionParams, methods
from fednlp.data_partition.labels import dominant_entity_type, entity_type
from fednlp.data_partition.stats import mean_tv_distance
from fednlp.errors import UserError

PROPERTY = settings(max_examples=60, deadline=None)

# ---------------------------------------------------------------------------------------------
# strategies and helpers


@st.composite
def labelled(draw, max_n: int = 400, max_labels: int = 12):
    """Random labels with a skewed (sometimes missing-label) distribution, and a client count <= n."""
    n = draw(st.integers(1, max_n))
    n_labels = draw(st.integers(1, max_labels))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.choice(n_labels, size=n, p=rng.dirichlet(np.full(n_labels, 0.5)))
    n_clients = draw(st.integers(1, n))
    return labels.astype(np.int64), n_labels, n_clients


def assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    """Every position 0..n-1 in exactly one client."""
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    assert len(flat) == n
    assert np.array_equal(np.sort(flat), np.arange(n))


def same_parts(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


concentrations = st.floats(1e-4, 1e4)

# ---------------------------------------------------------------------------------------------
# the pure functions


@PROPERTY
@given(st.lists(st.floats(0, 100), min_size=1, max_size=30), st.integers(0, 10_000))
def test_largest_remainder_sums_exactly_and_never_feeds_zero_weights(weights, total):
    weights = np.array(weights)
    if weights.sum() <= 0:
        weights[0] = 1.0
    counts = methods.largest_remainder(weights, total)
    assert counts.sum() == total and (counts >= 0).all()
    assert (counts[weights == 0] == 0).all()
    assert (np.abs(counts - weights / weights.sum() * total) < 1 + 1e-9).all()


@PROPERTY
@given(st.integers(1, 2000), st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_uniform_covers_with_equal_sizes_and_is_deterministic(n, k, seed):
    k = min(k, n)
    parts = methods.uniform_split(n, k, np.random.default_rng(seed))
    assert_exact_cover(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert same_parts(parts, methods.uniform_split(n, k, np.random.default_rng(seed)))


@PROPERTY
@given(st.integers(1, 3000), st.integers(1, 300), concentrations, st.integers(0, 2**32 - 1))
def test_quantity_covers_gives_everyone_an_example_and_finishes_for_any_beta(n, k, beta, seed):
    k = min(k, n)

    def run():
        rng = np.random.default_rng(seed)
        sizes = methods.quantity_sizes(n, methods.quantity_proportions(k, beta, rng))
        return sizes, methods.split_by_sizes(n, sizes, rng)

    sizes, parts = run()
    assert_exact_cover(parts, n)
    assert sizes.min() >= 1 and [len(p) for p in parts] == sizes.tolist()
    assert same_parts(parts, run()[1])


@PROPERTY
@given(labelled(), concentrations, st.integers(0, 2**32 - 1))
def test_niid_label_covers_with_equal_sizes_and_finishes_for_any_alpha(case, alpha, seed):
    labels, n_labels, k = case
    parts, quotas = methods.dirichlet_label_split(labels, k, alpha, np.random.default_rng(seed), n_labels)
    assert_exact_cover(parts, len(labels))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for client, part in enumerate(parts):  # the quota matrix is what each client really holds
        assert np.array_equal(np.bincount(labels[part], minlength=n_labels), quotas[client])
    again, _ = methods.dirichlet_label_split(labels, k, alpha, np.random.default_rng(seed), n_labels)
    assert same_parts(parts, again)


@pytest.mark.parametrize("concentration", [5e-324, 1e-300, 1e300, 1.7e308])
def test_extreme_concentrations_still_finish_and_cover(concentration):
    labels = np.random.default_rng(0).choice(5, size=1000)
    parts, _ = methods.dirichlet_label_split(labels, 10, concentration, np.random.default_rng(0))
    assert_exact_cover(parts, 1000)
    rng = np.random.default_rng(0)
    sizes = methods.quantity_sizes(1000, methods.quantity_proportions(10, concentration, rng))
    assert_exact_cover(methods.split_by_sizes(1000, sizes, rng), 1000)


@PROPERTY
@given(labelled(), st.integers(0, 2**32 - 1))
def test_label_quotas_meet_row_and_column_sums_for_any_mixes(case, seed):
    labels, n_labels, k = case
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=n_labels)
    sizes = methods.largest_remainder(rng.random(k) + 1e-3, len(labels))
    mixes = rng.random((k, n_labels)) * (rng.random((k, n_labels)) < 0.3)  # sparse, some rows all zero
    quotas = methods.label_quotas(sizes, mixes, counts, rng)
    assert np.array_equal(quotas.sum(axis=1), sizes)
    assert np.array_equal(quotas.sum(axis=0), counts)


def test_niid_label_follows_the_drawn_mixes_when_supply_allows():
    """Large alpha gives near-global mixes, tiny alpha near-one-label clients (FedNLP's skew)."""
    rng = np.random.default_rng(0)
    labels = rng.choice(10, size=20_000, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    _, iid = methods.dirichlet_label_split(labels, 100, 1e4, np.random.default_rng(1))
    _, skewed = methods.dirichlet_label_split(labels, 100, 1e-3, np.random.default_rng(1))
    assert mean_tv_distance(iid) < 0.05 and (iid > 0).sum(axis=1).mean() > 9.9
    assert mean_tv_distance(skewed) > 0.8 and (skewed > 0).sum(axis=1).mean() < 1.5


@PROPERTY
@given(labelled(max_labels=10), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_pathological_covers_and_holds_at_most_l_labels(case, per, seed):
    labels, _, k = case
    present, labels = np.unique(labels, return_inverse=True)
    per = min(per, len(present))
    k = max(k, -(-len(present) // per))  # enough clients to hold every label
    if k > len(labels):
        return
    parts, label_sets = methods.pathological_split(labels, k, per, np.random.default_rng(seed))
    assert_exact_cover(parts, len(labels))
    assert all(len(set(row)) == per for row in label_sets.tolist())
    for part, held in zip(parts, label_sets):
        assert set(np.unique(labels[part])) <= set(held.tolist())
    again, _ = methods.pathological_split(labels, k, per, np.random.default_rng(seed))
    assert same_parts(parts, again)


@PROPERTY
@given(st.lists(st.sampled_from(["books", "grocery", "movies", "tripadvisor"]), min_size=1, max_size=200))
def test_natural_gives_one_client_per_value(values):
    values = np.array(values, dtype=object)
    groups = np.array(sorted(set(values)), dtype=object)
    parts = methods.natural_split(values, groups)
    assert_exact_cover(parts, len(values))
    for group, part in zip(groups, parts):
        assert set(values[part]) == {group}


def test_entity_types_and_dominant_type():
    assert entity_type("B-PER") == "PER" and entity_type("I-creative-work") == "creative-work"
    assert entity_type("O") is None and entity_type("LOC") == "LOC"
    assert dominant_entity_type(["B-ORG", "I-ORG", "O", "B-PER"]) == "ORG"
    assert dominant_entity_type(["B-PER", "B-LOC"]) == "LOC"  # ties: alphabetically first
    assert dominant_entity_type(["O", "O"]) == "O"


# ---------------------------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "kmeans"}, "not a partition method; known: uniform"),
        ({"method": "niid_label"}, "needs --alpha"),
        ({"method": "niid_label", "alpha": 0.0}, "--alpha must be a positive"),
        ({"method": "niid_label", "alpha": float("nan")}, "--alpha must be a positive"),
        ({"method": "niid_quantity", "beta": -1.0}, "--beta must be a positive"),
        ({"method": "uniform", "alpha": 1.0}, "--alpha does not apply to --method uniform"),
        ({"method": "niid_cluster", "alpha": 1.0}, "needs --clusters"),
        ({"method": "pathological", "labels_per_client": 0}, "--labels-per-client must be at least 1"),
        ({"method": "uniform", "n_clients": 0}, "--clients must be at least 1"),
    ],
)
def test_params_refuse_bad_requests(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        PartitionParams(**{"n_clients": 4, **kwargs})


def test_group_names_are_fednlps():
    names = {
        PartitionParams("uniform", 100).group_name(),
        PartitionParams("niid_label", 100, alpha=1).group_name(),
        PartitionParams("niid_quantity", 100, beta=5.0).group_name(),
        PartitionParams("niid_cluster", 100, alpha=1.0, clusters=10).group_name(),
        PartitionParams("natural", 6).group_name(),
        PartitionParams("pathological", 100, labels_per_client=2).group_name(),
    }
    assert names == {
        "uniform_clients=100",
        "niid_label_clients=100_alpha=1.0",
        "niid_quantity_clients=100_beta=5.0",
        "niid_cluster_clients=100_alpha=1.0",
        "natural_clients=6_field=source",
        "pathological_clients=100_labels=2",
    }
    assert set(METHODS) == {"uniform", "niid_label", "niid_quantity", "niid_cluster", "natural", "pathological"}


# ---------------------------------------------------------------------------------------------
# data files from real slices


def split_every_fifth(n: int) -> tuple[list[int], list[int]]:
    return [i for i in range(n) if i % 5], [i for i in range(n) if i % 5 == 0]


def write_ag_news(shared_data: Path, path: Path, n: int = 400) -> Path:
    names = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
    with open(shared_data / "ag_news" / "test.csv", newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(n), csv.reader(f))]
    labels = [names[r[0]] for r in rows]
    train, test = split_every_fifth(n)
    write_data_file(
        DataFile("text_classification", {"X": [f"{r[1]} {r[2]}" for r in rows], "Y": labels}, train, test,
                 label_vocab_of(labels)),
        path,
    )
    return path


def write_conll(shared_data: Path, path: Path, n: int = 300) -> Path:
    sentences, tokens, tags = [], [], []
    for line in (shared_data / "conll2003" / "train.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-"):
            continue
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            if len(sentences) == n:
                break
            continue
        columns = line.split()
        tokens.append(columns[0])
        tags.append(columns[-1])
    train, test = split_every_fifth(len(sentences))
    ys = [s[1] for s in sentences]
    write_data_file(
        DataFile("sequence_tagging", {"X": [s[0] for s in sentences], "Y": ys}, train, test, label_vocab_of(ys)), path
    )
    return path


def write_squad(shared_data: Path, path: Path, n: int = 250) -> Path:
    articles = json.loads((shared_data / "squad_v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    names = ("context_X", "question_X", "Y", "answers", "question_id", "source")
    fields: dict[str, list] = {name: [] for name in names}
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if len(fields["Y"]) == n:
                    break
                answer = qa["answers"][0]
                fields["context_X"].append(paragraph["context"])
                fields["question_X"].append(qa["question"])
                fields["Y"].append([answer["answer_start"], answer["answer_start"] + len(answer["text"])])
                fields["answers"].append([a["text"] for a in qa["answers"]])
                fields["question_id"].append(qa["id"])
                fields["source"].append(article["title"])
    train, test = split_every_fifth(n)
    write_data_file(DataFile("span_extraction", fields, train, test), path)
    return path


def write_gigaword(shared_data: Path, path: Path, n: int = 200) -> Path:
    folder = shared_data / "gigaword_sample"
    sources = folder.joinpath("train_first1000.article.txt").read_text(encoding="utf-8").splitlines()[:n]
    targets = folder.joinpath("train_first1000.title.txt").read_text(encoding="utf-8").splitlines()[:n]
    train, test = split_every_fifth(n)
    fields = {"X": sources, "Y": targets, "references": [[t] for t in targets]}
    write_data_file(DataFile("seq2seq", fields, train, test), path)
    return path


@pytest.fixture(scope="module")
def ag_news(shared_data, tmp_path_factory) -> Path:
    return write_ag_news(shared_data, tmp_path_factory.mktemp("ag") / "ag_news.h5")


@pytest.fixture(scope="module")
def conll(shared_data, tmp_path_factory) -> Path:
    return write_conll(shared_data, tmp_path_factory.mktemp("conll") / "conll.h5")


@pytest.fixture(scope="module")
def squad(shared_data, tmp_path_factory) -> Path:
    return write_squad(shared_data, tmp_path_factory.mktemp("squad") / "squad.h5")


def partition(data: Path, out: Path, *args: str) -> int:
    return main(["partition", "--data", str(data), "--out", str(out), *args])


def read_group(path: Path, name: str) -> tuple[list[np.ndarray], list[np.ndarray], h5py.Group]:
    f = h5py.File(path, "r")
    group = f[name]
    n = int(group["n_clients"][()])
    if "train_offsets" in group:  # the compact layout (the default): client k's indices are a slice
        train, test = ([group[f"{s}_indices"][a:b] for a, b in zip(group[f"{s}_offsets"][:-1], group[f"{s}_offsets"][1:])]
                       for s in ("train", "test"))
        return train, test, group
    train = [group["partition_data"][str(k)]["train"][()] for k in range(n)]
    test = [group["partition_data"][str(k)]["test"][()] for k in range(n)]
    return train, test, group


def data_indices(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        attrs = json.loads(f["attributes"][()])
    return np.array(attrs["train_index_list"]), np.array(attrs["test_index_list"])


# ---------------------------------------------------------------------------------------------
# `fednlp partition` end to end

LABEL_METHODS = [
    (["--method", "uniform", "--clients", "10"], "uniform_clients=10", {}),
    (["--method", "niid_label", "--clients", "10", "--alpha", "0.5"], "niid_label_clients=10_alpha=0.5",
     {"alpha": 0.5}),
    (["--method", "niid_quantity", "--clients", "10", "--beta", "5"], "niid_quantity_clients=10_beta=5.0",
     {"beta": 5.0}),
    (["--method", "pathological", "--clients", "10", "--labels-per-client", "2"], "pathological_clients=10_labels=2",
     {"labels_per_client": 2}),
]


@pytest.mark.parametrize("dataset", ["ag_news", "conll"])
def test_partition_writes_fednlp_layout(dataset, request, tmp_path, capsys):
    data = request.getfixturevalue(dataset)
    out = tmp_path / "partition.h5"
    for args, name, params in LABEL_METHODS:
        assert partition(data, out, *args, "--seed", "3", "--layout", "fednlp") == 0
        assert f"wrote group {name}" in capsys.readouterr().out
    train_index, test_index = data_indices(data)
    with h5py.File(out, "r") as f:
        assert sorted(f) == sorted(name for _, name, _ in LABEL_METHODS)
        assert all("partition_data" in f[name] for _, name, _ in LABEL_METHODS)
    for _, name, params in LABEL_METHODS:
        train, test, group = read_group(out, name)
        assert group["n_clients"][()] == 10 and group["seed"][()] == 3
        for key, value in params.items():
            assert group[key][()] == value
        assert all(c.dtype == np.int64 for c in train + test)
        assert np.array_equal(np.sort(np.concatenate(train)), train_index)  # each train index exactly once
        flat_test = np.concatenate(test)
        assert len(set(flat_test.tolist())) == len(flat_test) and set(flat_test.tolist()) <= set(test_index.tolist())
        group.file.close()


def test_niid_label_test_split_follows_each_clients_train_mix(ag_news, tmp_path):
    out = tmp_path / "p.h5"
    assert partition(ag_news, out, "--method", "niid_label", "--clients", "8", "--alpha", "0.1") == 0
    train, test, group = read_group(out, "niid_label_clients=8_alpha=0.1")
    group.file.close()
    with h5py.File(ag_news, "r") as f:
        y = np.array([v.decode() for v in f["Y"][()]])
    assert len(np.concatenate(test)) == len(data_indices(ag_news)[1])  # every test index placed
    agree = [np.mean(np.isin(y[te], y[tr])) for tr, te in zip(train, test) if len(te)]
    assert np.mean(agree) > 0.9  # a client's test labels are (almost all) labels it trains on


def test_pathological_clients_hold_only_their_labels(conll, tmp_path):
    out = tmp_path / "p.h5"
    assert partition(conll, out, "--method", "pathological", "--clients", "6", "--labels-per-client", "1") == 0
    from fednlp.data.datafile import read_data_file
    from fednlp.data_partition.labels import entity_type_labels

    labels = entity_type_labels(read_data_file(conll))
    train, _, group = read_group(out, "pathological_clients=6_labels=1")
    held = group["client_labels"][()]
    group.file.close()
    for part, row in zip(train, held):
        assert set(np.unique(labels.ids[part]).tolist()) <= set(row.tolist())


def test_same_seed_gives_identical_bytes_and_another_seed_differs(ag_news, tmp_path):
    files = []
    for name, seed in (("a.h5", "7"), ("b.h5", "7"), ("c.h5", "8")):
        for args, _, _ in LABEL_METHODS:
            assert partition(ag_news, tmp_path / name, *args, "--seed", seed) == 0
        files.append((tmp_path / name).read_bytes())
    assert files[0] == files[1]
    assert files[0] != files[2]


def test_a_group_is_replaced_only_by_the_same_settings_or_with_overwrite(ag_news, tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert partition(ag_news, out, "--method", "uniform", "--clients", "5", "--seed", "1") == 0
    first = out.read_bytes()
    assert partition(ag_news, out, "--method", "uniform", "--clients", "5", "--seed", "1") == 0  # idempotent
    assert out.read_bytes() == first
    capsys.readouterr()
    assert partition(ag_news, out, "--method", "uniform", "--clients", "5", "--seed", "2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds group 'uniform_clients=5', made with other settings: seed 1, not 2" in err
    assert "pass --overwrite to replace it" in err
    assert out.read_bytes() == first  # FedNLP's names carry no seed: seed 2 never silently replaces seed 1
    assert partition(ag_news, out, "--method", "uniform", "--clients", "5", "--seed", "2", "--overwrite") == 0
    with h5py.File(out, "r") as f:
        assert f["uniform_clients=5"]["seed"][()] == 2 and len(f["uniform_clients=5"]["data_sha256"][()]) == 64
    assert partition(ag_news, out, "--method", "uniform", "--clients", "5", "--seed", "1", "--overwrite") == 0
    assert out.read_bytes() == first


def test_natural_gives_one_client_per_article(squad, tmp_path):
    out = tmp_path / "p.h5"
    source = np.array(_field(squad, "source"), dtype=object)
    titles = sorted(set(source[data_indices(squad)[0]]))
    assert partition(squad, out, "--method", "natural", "--clients", str(len(titles))) == 0
    train, test, group = read_group(out, f"natural_clients={len(titles)}_field=source")
    names = [n.decode() for n in group["client_names"][()]]
    group.file.close()
    assert names == titles
    for name, tr, te in zip(names, train, test):
        assert set(source[np.concatenate([tr, te])]) == {name}


def _field(path: Path, name: str) -> list[str]:
    with h5py.File(path, "r") as f:
        return [v.decode() for v in f[name][()]]


BAD_REQUESTS = [
    (["--method", "kmeans", "--clients", "4"], "not a partition method"),
    (["--method", "niid_label", "--clients", "4", "--alpha", "0"], "--alpha must be a positive"),
    (["--method", "niid_label", "--clients", "4", "--alpha", "-1"], "--alpha must be a positive"),
    (["--method", "uniform", "--clients", "321"], "--clients 321 is more than the 320 training examples"),
    (["--method", "natural", "--clients", "4"], "has no field 'source'"),
    (["--method", "pathological", "--clients", "4", "--labels-per-client", "5"], "more than the 4 labels"),
    (["--method", "pathological", "--clients", "3", "--labels-per-client", "1"], "cannot cover the 4 labels"),
    (["--method", "niid_quantity", "--clients", "4", "--alpha", "1"], "--alpha does not apply"),
]


@pytest.mark.parametrize("args, message", BAD_REQUESTS)
def test_bad_requests_exit_2_with_one_line_and_leave_the_file_intact(args, message, ag_news, tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert partition(ag_news, out, "--method", "uniform", "--clients", "3") == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert partition(ag_news, out, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fednlp: error: ") and message in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]  # no temporary left behind


def test_label_methods_on_qa_point_to_niid_cluster(squad, tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert partition(squad, out, "--method", "niid_label", "--clients", "4", "--alpha", "1") == 2
    assert "use --method niid_cluster" in capsys.readouterr().err
    assert not out.exists()


def test_an_unreadable_partition_file_is_refused_and_kept(ag_news, tmp_path, capsys):
    out = tmp_path / "p.h5"
    out.write_text("not hdf5")
    assert partition(ag_news, out, "--method", "uniform", "--clients", "3") == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err
    assert out.read_text() == "not hdf5"


# ---------------------------------------------------------------------------------------------
# niid_cluster with the real MiniLM (slow on CPU: 200 short Gigaword sentences)


def test_niid_cluster_with_minilm_caches_embeddings_and_reuses_the_clustering(shared_data, tmp_path, monkeypatch):
    from fednlp.data_partition import embeddings

    data = write_gigaword(shared_data, tmp_path / "giga.h5")
    out = tmp_path / "p.h5"
    assert partition(data, out, "--method", "niid_cluster", "--clients", "8", "--alpha", "0.5", "--clusters", "5") == 0
    train_index, _ = data_indices(data)
    train, _, group = read_group(out, "niid_cluster_clients=8_alpha=0.5")
    assert group["clusters"][()] == 5 and group["alpha"][()] == 0.5
    assignment = group.file["kmeans_clusters=5"]["client_assignment"][()]  # FedNLP's kmeans.py name
    assert group.file["kmeans_clusters=5"]["seed"][()] == 0
    group.file.close()
    assert len(assignment) == 200 and set(assignment.tolist()) == set(range(5))
    assert np.array_equal(np.sort(np.concatenate(train)), train_index)
    caches = list(tmp_path.glob("giga.minilm-*.npy"))
    assert len(caches) == 1
    vectors = np.load(caches[0])
    assert vectors.shape == (200, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the embeddings should come from the cache")

    monkeypatch.setattr(embeddings, "encode", no_encoder)
    assert partition(data, out, "--method", "niid_cluster", "--clients", "8", "--alpha", "5", "--clusters", "3") == 0

    def no_kmeans(*args, **kwargs):
        raise AssertionError("the clustering of K=5 should be reused from the partition file")

    monkeypatch.setattr(embeddings, "kmeans_assignment", no_kmeans)
    assert partition(data, out, "--method", "niid_cluster", "--clients", "4", "--alpha", "1", "--clusters", "5") == 0
    with h5py.File(out, "r") as f:
        assert {"kmeans_clusters=3", "kmeans_clusters=5", "niid_cluster_clients=8_alpha=5.0"} <= set(f)
        assert np.array_equal(f["kmeans_clusters=5"]["client_assignment"][()], assignment)

    # Another seed never takes seed 0's clusters, nor silently replaces them: refused before any encoding...
    before = out.read_bytes()
    args = ("--method", "niid_cluster", "--clients", "4", "--alpha", "1", "--clusters", "5", "--seed", "1")
    assert partition(data, out, *args) == 2
    assert out.read_bytes() == before
    # ...and with --overwrite it clusters with its own seed (the embeddings still come from the cache).
    monkeypatch.undo()
    monkeypatch.setattr(embeddings, "encode", no_encoder)
    assert partition(data, out, *args, "--overwrite") == 0
    with h5py.File(out, "r") as f:
        clustering = f["kmeans_clusters=5"]
        assert clustering["seed"][()] == 1 and f["niid_cluster_clients=4_alpha=1.0"]["seed"][()] == 1
        assert len(clustering["client_assignment"][()]) == 200 and clustering["data_sha256"][()].decode() == (
            embeddings.file_sha256(data))

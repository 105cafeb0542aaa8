"""The registered partition methods: each turns a data file's train and test indices into clients.

Each method partitions the train indices, then partitions the test indices the same way with the
same per-client draws (sizes, label mixes, label sets, groups), so every client's local test data
looks like its training data. Every train index lands in exactly one client; a test index is left
out only when no client can own it (a natural group or a pathological label absent from training).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.data.datafile import DataFile
from fednlp.data_partition import methods
from fednlp.data_partition.labels import LABEL_FIELDS, PartitionLabels, cluster_labels, field_values, task_labels
from fednlp.data_partition.params import PartitionParams
from fednlp.data_partition.partition_file import (
    check_replaceable,
    check_same,
    kmeans_group_name,
    read_cluster_assignment,
)
from fednlp.data_partition.registry import register_method
from fednlp.errors import UserError


@dataclass(frozen=True)
class PartitionJob:
    """What a partitioner reads: the data file and its train and test data-file indices."""

    data: DataFile
    data_path: Path
    partition_path: Path
    train: np.ndarray
    test: np.ndarray
    overwrite: bool = False  # --overwrite: a stored group made with other settings may be replaced


@dataclass
class PartitionResult:
    """Positions into job.train / job.test per client, plus extra datasets and top-level groups."""

    train: list[np.ndarray]
    test: list[np.ndarray]
    extras: dict[str, Any] = field(default_factory=dict)
    side_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped_train: np.ndarray | None = None  # positions left out on purpose (natural's --min-examples)


@register_method("uniform", reads=())
def uniform(job: PartitionJob, params: PartitionParams, rng: np.random.Generator) -> PartitionResult:
    """IID: random equal-sized clients."""
    return PartitionResult(
        methods.uniform_split(len(job.train), params.n_clients, rng),
        methods.uniform_split(len(job.test), params.n_clients, rng),
    )


@register_method("niid_quantity", ("beta",), {"beta": "beta"}, reads=())
def niid_quantity(job: PartitionJob, params: PartitionParams, rng: np.random.Generator) -> PartitionResult:
    """Quantity skew: client sizes ~ Dir(beta), at least one example each; labels not skewed."""
    proportions = methods.quantity_proportions(params.n_clients, params.beta, rng)
    sizes = methods.quantity_sizes(len(job.train), proportions)
    test_sizes = methods.largest_remainder(sizes, len(job.test))
    return PartitionResult(
        methods.split_by_sizes(len(job.train), sizes, rng),
        methods.split_by_sizes(len(job.test), test_sizes, rng),
    )


@register_method("niid_label", ("alpha",), {"alpha": "alpha"}, reads=LABEL_FIELDS)
def niid_label(job: PartitionJob, params: PartitionParams, rng: np.random.Generator) -> PartitionResult:
    """Label skew: equal client sizes, client label mixes ~ Dir(alpha * p)."""
    labels = task_labels(job.data, job.data_path, params.method)
    return _dirichlet_skew(job, labels, params, rng)


@register_method("niid_cluster", ("alpha", "clusters"), {"alpha": "alpha"})
def niid_cluster(job: PartitionJob, params: PartitionParams, rng: np.random.Generator) -> PartitionResult:
    """Label skew over k-means clusters of MiniLM sentence embeddings (FedNLP's skew for QA, seq2seq)."""
    if params.clusters > len(job.train):
        raise UserError(
            f"--clusters {params.clusters} is more than the {len(job.train)} training examples of {job.data_path}"
        )
    assignment, side_groups = _clusters(job, params)
    result = _dirichlet_skew(job, cluster_labels(assignment, params.clusters), params, rng)
    result.side_groups.update(side_groups)
    return result


def _natural_groups(job: PartitionJob, params: PartitionParams) -> tuple[np.ndarray, np.ndarray, collections.Counter]:
    """Every example's value of --field, the values that become clients (sorted: those with at least
    --min-examples training examples) and each value's count of training examples; refuses a --min-examples
    that keeps none."""
    values = field_values(job.data, params.field, job.data_path)
    counts = collections.Counter(values[job.train].tolist())
    least = params.min_examples or 1
    groups = np.array(sorted(value for value, count in counts.items() if count >= least), dtype=object)
    if len(groups) == 0:
        most = max(counts.values(), default=0)
        raise UserError(f"--min-examples {least} keeps no value of field {params.field!r} of {job.data_path}: the "
                        f"most training examples of one value is {most}; choose --min-examples {most} or less")
    return values, groups, counts


def _natural_clients(job: PartitionJob, params: PartitionParams) -> int:
    return len(_natural_groups(job, params)[1])


@register_method("natural", ("field", "min_examples"), {"field": "field", "min_examples": "min_examples"},
                 defaults={"field": "source", "min_examples": None}, reads=lambda params: (params.field,),
                 clients=_natural_clients)
def natural(job: PartitionJob, params: PartitionParams, rng: np.random.Generator) -> PartitionResult:
    """One client per value of a per-example field (SubjQA domain, SQuAD article title, a user).

    --min-examples K drops the values with fewer than K training examples, their train and test examples
    with them; the group records how many (dropped_clients, dropped_train_examples, dropped_test_examples).
    --clients may be left out (it is the number of values kept); given, it must be that number.
    """
    values, groups, counts = _natural_groups(job, params)
    train_values, test_values = values[job.train], values[job.test]
    dropped = len(counts) - len(groups)
    least = params.min_examples or 1
    kept = f" with at least {least} training examples ({dropped} dropped by --min-examples)" if dropped else ""
    if len(groups) != params.n_clients:
        raise UserError(
            f"field {params.field!r} of {job.data_path} has {len(groups)} distinct values over the training "
            f"examples{kept}, one client each: give --clients {len(groups)}, not {params.n_clients}, or leave "
            f"--clients out"
        )
    kept_values = set(groups.tolist())
    dropped_train = np.array([i for i, v in enumerate(train_values.tolist()) if v not in kept_values], dtype=np.int64)
    extras: dict[str, Any] = {"client_names": groups}
    if params.min_examples is not None:
        extras |= {"dropped_clients": dropped, "dropped_train_examples": len(dropped_train),
                   "dropped_test_examples": sum(v in counts and v not in kept_values for v in test_values.tolist())}
    return PartitionResult(
        methods.natural_split(train_values, groups),
        methods.natural_split(test_values, groups),
        extras=extras,
        dropped_train=dropped_train,
    )


@register_method("pathological", ("labels_per_client",), {"labels_per_client": "labels"}, reads=LABEL_FIELDS)
def pathological(job: PartitionJob, params: PartitionParams, rng: np.random.Generator) -> PartitionResult:
    """Each client holds examples of only L labels (McMahan et al. 2017's shards, label-exact)."""
    labels = task_labels(job.data, job.data_path, params.method)
    present = np.unique(labels.ids[job.train])
    n_present, per = len(present), params.labels_per_client
    if per > n_present:
        raise UserError(
            f"--labels-per-client {per} is more than the {n_present} labels in the training data of {job.data_path}"
        )
    if params.n_clients * per < n_present:
        raise UserError(
            f"{params.n_clients} clients x {per} labels each cannot cover the {n_present} labels of {job.data_path}; "
            f"give at least {-(-n_present // per)} clients or more --labels-per-client"
        )
    compact = np.full(labels.n_labels, n_present, dtype=np.int64)  # absent labels: held by no client
    compact[present] = np.arange(n_present)
    label_sets = methods.pathological_label_sets(n_present, params.n_clients, per, rng)
    return PartitionResult(
        methods.holders_split(compact[labels.ids[job.train]], label_sets, rng),
        methods.holders_split(compact[labels.ids[job.test]], label_sets, rng),
        extras={"client_labels": present[label_sets]},
    )


def _dirichlet_skew(
    job: PartitionJob, labels: PartitionLabels, params: PartitionParams, rng: np.random.Generator
) -> PartitionResult:
    train_labels, test_labels = labels.ids[job.train], labels.ids[job.test]
    train, quotas = methods.dirichlet_label_split(train_labels, params.n_clients, params.alpha, rng, labels.n_labels)
    test_sizes = methods.equal_sizes(len(job.test), params.n_clients)
    test, _ = methods.mix_label_split(test_labels, test_sizes, methods.realized_mixes(quotas), rng)
    return PartitionResult(train, test)


def _clusters(job: PartitionJob, params: PartitionParams) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """The k-means assignment for K clusters, keyed by its settings (data file, K, seed, embedding): reused
    from the partition file when its kmeans_clusters=<K> group records the same ones (so every niid_cluster
    group with this K and seed shares one clustering), else computed and stored under FedNLP's name.

    A kmeans_clusters=<K> group with other settings (another seed, data file or encoder, or FedNLP's own,
    which records none) is never replaced without --overwrite: refused here, before the costly encoding.
    """
    from fednlp.data_partition.embeddings import EMBEDDING, kmeans_assignment, sentence_embeddings
    from fednlp.files import file_sha256

    name = kmeans_group_name(params.clusters)
    settings = {"n_clusters": params.clusters, "seed": params.seed, "data_sha256": file_sha256(job.data_path),
                "embedding": EMBEDDING}
    stored = read_cluster_assignment(job.partition_path, params.clusters)
    if stored is not None:
        assignment, values = stored
        same = all(key in values and check_same(values[key], value) for key, value in settings.items())
        if same and len(assignment) == job.data.n_examples:
            return assignment, {}
    check_replaceable(job.partition_path, name, settings, job.overwrite)
    embeddings = sentence_embeddings(job.data, job.data_path, settings["data_sha256"])
    assignment = kmeans_assignment(embeddings, job.train, params.clusters, params.seed)
    return assignment, {name: {"client_assignment": assignment, **settings}}

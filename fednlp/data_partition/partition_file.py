"""The partition file (HDF5), in FedNLP's layout, written atomically.

    <group>/                       one group per partition, named like FedNLP's
        n_clients                  scalar int64
        <parameter>                scalar per parameter (alpha, beta, clusters, labels_per_client,
                                   field), plus seed
        partition_data/<client>/train   int64 data-file indices of client <client> (0 .. n_clients-1)
        partition_data/<client>/test    the same for its local test data
        ...                        method extras (client_names, client_labels)
    kmeans_clusters=<K>/cluster_assignment   int64 cluster id per data-file index (niid_cluster)

Adding a group rewrites the whole file into a temporary file beside it, then renames it over the
original: a failure at any point leaves the old file as it was. A group of the same name is replaced
(re-running a command is idempotent; a new seed gives the new partition under FedNLP's seedless name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from fednlp.data.datafile import open_h5
from fednlp.errors import UserError

Content = Mapping[str, Any]  # nested: str -> scalar | str | array | Content


@dataclass(frozen=True)
class StoredPartition:
    """A partition group read back: per-client train and test index arrays plus its scalars."""

    name: str
    n_clients: int
    train: list[np.ndarray]
    test: list[np.ndarray]
    values: dict[str, Any]


def write_groups(path: str | os.PathLike, groups: Mapping[str, Content]) -> None:
    """Add or replace top-level groups; keep every other group of an existing file unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as out:
            if path.exists():
                with open_h5(path, "partition file") as old:
                    for name in old:
                        if name not in groups:
                            old.copy(old[name], out, name=name)
            for name, content in groups.items():
                _write_content(out.create_group(name), content)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def partition_content(train: list[np.ndarray], test: list[np.ndarray], values: Mapping[str, Any]) -> dict[str, Any]:
    """A partition group's content in FedNLP's layout."""
    clients = {
        str(k): {"train": np.asarray(tr, dtype=np.int64), "test": np.asarray(te, dtype=np.int64)}
        for k, (tr, te) in enumerate(zip(train, test))
    }
    return {"n_clients": len(train), **values, "partition_data": clients}


def group_names(path: str | os.PathLike) -> list[str]:
    """The partition groups of a file (groups holding partition_data), in file order."""
    with open_h5(path, "partition file") as f:
        return [name for name, node in f.items() if isinstance(node, h5py.Group) and "partition_data" in node]


def read_partition(path: str | os.PathLike, name: str) -> StoredPartition:
    with open_h5(path, "partition file") as f:
        if name not in f or "partition_data" not in f[name]:
            known = ", ".join(n for n, node in f.items() if isinstance(node, h5py.Group) and "partition_data" in node)
            raise UserError(f"partition file {path} has no partition {name!r} (it has: {known or 'none'})")
        group = f[name]
        n_clients = int(group["n_clients"][()])
        data = group["partition_data"]
        train = [data[str(k)]["train"][()] for k in range(n_clients)]
        test = [data[str(k)]["test"][()] if "test" in data[str(k)] else np.zeros(0, np.int64) for k in range(n_clients)]
        values = {key: _read_value(node) for key, node in group.items() if isinstance(node, h5py.Dataset)}
    return StoredPartition(name, n_clients, train, test, values)


def check_fits_data(stored: StoredPartition, n_examples: int, partition_path: str | os.PathLike,
                    data_path: str | os.PathLike) -> None:
    """Refuse a partition whose indices fall outside the data file (made from another, bigger one)."""
    for client, indices in enumerate([*stored.train, *stored.test]):
        if len(indices) and (int(np.min(indices)) < 0 or int(np.max(indices)) >= n_examples):
            client %= stored.n_clients
            raise UserError(f"partition file {partition_path}: client {client} of {stored.name!r} holds indices "
                            f"outside 0..{n_examples - 1} of data file {data_path}; was it made from another data file?")


def read_cluster_assignment(path: str | os.PathLike, n_clusters: int) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The stored k-means assignment for K clusters and its attributes, or None."""
    if not Path(path).exists():
        return None
    with open_h5(path, "partition file") as f:
        name = kmeans_group_name(n_clusters)
        if name not in f or "cluster_assignment" not in f[name]:
            return None
        group = f[name]
        values = {k: _read_value(v) for k, v in group.items() if k != "cluster_assignment"}
        return group["cluster_assignment"][()], values


def kmeans_group_name(n_clusters: int) -> str:
    return f"kmeans_clusters={n_clusters}"


def _write_content(group: h5py.Group, content: Content) -> None:
    for key, value in content.items():
        if isinstance(value, Mapping):
            _write_content(group.create_group(key), value)
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype("utf-8"))
        elif isinstance(value, np.ndarray) and value.dtype == object:
            group.create_dataset(key, data=value, dtype=h5py.string_dtype("utf-8"))
        else:
            group.create_dataset(key, data=value)


def _read_value(node: h5py.Dataset) -> Any:
    value = node[()]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value

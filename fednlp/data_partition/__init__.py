"""Partitioners: split a data file's examples over simulated clients, written as a partition file.

    add_partition(data_path, partition_path, PartitionParams(...)) -> group name
    METHODS            name -> PartitionMethod (uniform, niid_label, niid_quantity, niid_cluster,
                       natural, pathological)

The math lives in methods.py (pure numpy), the per-task meaning of "label" in labels.py, the file
layout in partition_file.py, statistics and the heat map in stats.py.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fednlp.data.datafile import open_h5, read_data_file
from fednlp.data_partition import partitioners as _partitioners  # noqa: F401  (registers the methods)
from fednlp.data_partition.params import PartitionParams
from fednlp.files import file_sha256
from fednlp.data_partition.partition_file import check_replaceable, partition_content, write_groups
from fednlp.data_partition.partitioners import PartitionJob
from fednlp.data_partition.registry import METHODS, PartitionMethod, register_method
from fednlp.errors import UserError

__all__ = ["METHODS", "PartitionMethod", "PartitionParams", "add_partition", "register_method"]


def add_partition(data_path: str | os.PathLike, partition_path: str | os.PathLike, params: PartitionParams,
                  overwrite: bool = False, layout: str = "csr") -> str:
    """Partition the data file and add the group to the partition file; return its name.

    A group of that name made with other settings (seed, parameters, data file; or not by fednlp) is
    replaced only with `overwrite`. Every check runs before the partition file is touched, and the file
    is rewritten atomically, so a refused request leaves an existing partition file byte for byte as it was.
    `layout`: the compact "csr" (default) or FedNLP's group per client, "fednlp" (partition_file.py).
    """
    data_path, partition_path = Path(data_path), Path(partition_path)
    data = read_data_file(data_path, only=METHODS[params.method].fields_read(params))  # labels: no texts
    if partition_path.exists():
        open_h5(partition_path, "partition file").close()  # refuse a bad --out before any work
    train = np.asarray(data.train_index_list, dtype=np.int64)
    test = np.asarray(data.test_index_list, dtype=np.int64)
    job = PartitionJob(data, data_path, partition_path, train, test, overwrite)
    method = METHODS[params.method]
    if params.n_clients is None:  # a method whose data fixes the clients (natural: one per value kept)
        params = dataclasses.replace(params, n_clients=method.clients(job, params))
    if params.n_clients > len(train):
        raise UserError(f"--clients {params.n_clients} is more than the {len(train)} training examples of {data_path}")
    name = params.group_name()
    settings = {**params.stored_values(), "data_sha256": file_sha256(data_path)}
    check_replaceable(partition_path, name, {"n_clients": params.n_clients, **settings}, overwrite)
    result = method(job, params, np.random.default_rng(params.seed))
    train_clients = [train[p] for p in result.train]
    test_clients = [test[p] for p in result.test]
    kept = train if result.dropped_train is None else np.delete(train, result.dropped_train)
    _check_exact_cover(train_clients, kept, params.method)
    content = partition_content(train_clients, test_clients, {**settings, **result.extras}, layout)
    write_groups(partition_path, {name: content, **result.side_groups}, overwrite)
    return name


def _check_exact_cover(clients: list[np.ndarray], train: np.ndarray, method: str) -> None:
    """The one invariant every method owes: each train index in exactly one client."""
    assigned = np.sort(np.concatenate(clients)) if clients else np.zeros(0, np.int64)
    if not np.array_equal(assigned, np.sort(train)):
        raise RuntimeError(f"partition method {method} did not place every train index exactly once")

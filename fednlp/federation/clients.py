"""The clients of one partition method, read once from the partition file and checked against the data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fednlp.data.datafile import DataFile
from fednlp.data_partition.partition_file import read_partition
from fednlp.errors import UserError


@dataclass(frozen=True)
class ClientData:
    """Train example indices (global, into the data file) of every client, in client-id order."""

    train: list[np.ndarray]

    @property
    def n_clients(self) -> int:
        return len(self.train)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(t) for t in self.train], dtype=np.int64)


def read_clients(partition_path: str, method: str, data: DataFile, data_path: str) -> ClientData:
    stored = read_partition(partition_path, method)
    train = [np.asarray(indices, dtype=np.int64) for indices in stored.train]
    n_examples = data.n_examples
    for client, indices in enumerate(train):
        if len(indices) and (indices.min() < 0 or indices.max() >= n_examples):
            raise UserError(f"partition file {partition_path}: client {client} of {method!r} holds indices outside "
                            f"0..{n_examples - 1} of data file {data_path}; was it made from another data file?")
    return ClientData(train=train)

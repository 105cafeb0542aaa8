"""The clients of one partition method, read once from the partition file and checked against the data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fednlp.data_partition.partition_file import check_fits_data, read_partition


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


def read_clients(partition_path: str, method: str, n_examples: int, data_path: str) -> ClientData:
    """Checked against the data file's size only (cheap), so a bad partition fails before any heavy work."""
    stored = read_partition(partition_path, method)
    check_fits_data(stored, n_examples, partition_path, data_path)
    return ClientData(train=[np.asarray(indices, dtype=np.int64) for indices in stored.train])

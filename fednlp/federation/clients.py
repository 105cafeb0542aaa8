"""The clients of one partition method, read once from the partition file and checked against the data."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fednlp.data_partition.partition_file import ClientIndices, check_fits_data, read_partition


@dataclass(frozen=True)
class ClientData:
    """Train and test example indices (global, into the data file) of every client, in client-id order."""

    train: Sequence[np.ndarray]
    test: Sequence[np.ndarray] = field(default_factory=list)

    @property
    def n_clients(self) -> int:
        return len(self.train)

    @functools.cached_property
    def sizes(self) -> np.ndarray:
        """Each client's number of training examples (read every round by the sampler: computed once)."""
        if isinstance(self.train, ClientIndices):
            return self.train.sizes().astype(np.int64)
        return np.array([len(t) for t in self.train], dtype=np.int64)


def read_clients(partition_path: str, method: str, n_examples: int, data_path: str) -> ClientData:
    """Checked against the data file's size only (cheap), so a bad partition fails before any heavy work."""
    stored = read_partition(partition_path, method)
    check_fits_data(stored, n_examples, partition_path, data_path)
    return ClientData(train=_as_int64(stored.train), test=_as_int64(stored.test))


def _as_int64(split: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    """The compact layout's views are int64 already; FedNLP's per-client arrays are converted."""
    return split if isinstance(split, ClientIndices) else [np.asarray(t, dtype=np.int64) for t in split]


def clients_to_evaluate(spec: str | None, clients: ClientData, seed: int) -> dict[int, np.ndarray]:
    """--eval-clients: 'all' (every client with test examples), N (a seeded sample of N of them, the same at
    every evaluation) or 'ids:3,17' -> client -> its test example indices."""
    from fednlp.errors import UserError
    from fednlp.run.random_streams import Stream, run_rng

    if not spec:
        return {}
    with_tests = [c for c, t in enumerate(clients.test) if len(t)]
    if spec.startswith("ids:"):
        try:
            wanted = sorted({int(x) for x in spec[4:].split(",") if x.strip()})
        except ValueError:
            raise UserError(f"--eval-clients {spec!r}: expected ids:ID,ID,... with integer client ids") from None
        for client in wanted:
            if not 0 <= client < clients.n_clients:
                raise UserError(f"--eval-clients: client {client} does not exist (the partition has "
                                f"{clients.n_clients} clients, 0..{clients.n_clients - 1})")
            if len(clients.test[client]) == 0:
                raise UserError(f"--eval-clients: client {client} has no test data in the partition")
    elif spec == "all":
        wanted = with_tests
    else:
        count = int(spec)
        if count > len(with_tests):
            raise UserError(f"--eval-clients {count} exceeds the {len(with_tests)} clients with test data")
        wanted = sorted(run_rng(seed, Stream.EVAL_CLIENTS).choice(with_tests, size=count, replace=False).tolist())
    if not wanted:
        raise UserError("--eval-clients: no client of the partition has test data (partition_data/<id>/test)")
    return {c: clients.test[c] for c in wanted}

"""The partition file (HDF5), FedNLP-compatible, written atomically.

    <group>/                       one group per partition, named like FedNLP's
        n_clients                  scalar int64
        <parameter>                scalar per parameter (alpha, beta, clusters, labels_per_client,
                                   field), plus seed and data_sha256 (the data file it was made from)
        train_indices, train_offsets    the compact layout (fednlp's default, "csr"): every client's int64
        test_indices, test_offsets      data-file indices end to end, client k's at indices[offsets[k] :
                                   offsets[k + 1]] (offsets: n_clients + 1 int64, from 0)
      or
        partition_data/<client>/train   FedNLP's layout ("fednlp", written with --layout fednlp): int64
        partition_data/<client>/test    data-file indices of client <client> (0 .. n_clients-1), train and
                                   local test
        ...                        method extras (client_names, client_labels)
    kmeans_clusters=<K>/client_assignment   cluster id per data-file index (niid_cluster), FedNLP's
                                   kmeans.py name; with n_clusters, seed, data_sha256 and embedding

FedNLP's layout costs two HDF5 datasets per client (a million clients: two million datasets, minutes to
write and read); the compact one costs four datasets whatever the clients, and reads one client with two
small slices (`read_client`). Both are read everywhere; a file may hold groups of both.

What FedNLP's scripts write is read as it is: an empty client stored as a float64 array of shape (0,)
(any numeric dtype holding whole numbers is read as int64 indices: `index_array`), k-means assignments
named `client_assignment` (ours were once `cluster_assignment`: both are read), and group names whose
numbers are spelled `%g` (`alpha=1`) or `%.1f` (`alpha=1.0`), or `uniform` for `uniform_clients=<N>`
(`find_group`).

Adding a group rewrites the whole file into a temporary file beside it, then renames it over the
original: a failure at any point leaves the old file as it was. A group of the same name is replaced
only when it records the same settings (re-running a command is idempotent) or with --overwrite: one
made with another seed, parameters or data file, or by another program (FedNLP's scripts record no
seed), is kept and the request refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from fednlp.data.datafile import open_h5
from fednlp.errors import UserError
from fednlp.files import atomic_output

Content = Mapping[str, Any]  # nested: str -> scalar | str | array | Content


class ClientIndices(Sequence):
    """Every client's index array of one split as views into one array (the compact layout's indices and
    offsets): a client's array is made when asked for, so a million clients cost two arrays, not a million
    array objects (about 110 bytes each)."""

    def __init__(self, indices: np.ndarray, offsets: np.ndarray):
        self.indices, self.offsets = indices, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, client: Any) -> Any:
        if isinstance(client, slice):
            return [self[k] for k in range(*client.indices(len(self)))]
        k = int(client)
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"client {client} of {len(self)}")
        return self.indices[self.offsets[k] : self.offsets[k + 1]]

    def __add__(self, other: Any) -> list[np.ndarray]:  # list-like: train + test
        return [*self, *other]

    def __radd__(self, other: Any) -> list[np.ndarray]:
        return [*other, *self]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class StoredPartition:
    """A partition group read back: per-client train and test index arrays plus its scalars."""

    name: str
    n_clients: int
    train: Sequence[np.ndarray]
    test: Sequence[np.ndarray]
    values: dict[str, Any]
    layout: str = "fednlp"


#: Partition layouts: the compact default, and FedNLP's group per client (for FedNLP's own code).
LAYOUTS = ("csr", "fednlp")
#: The compact layout's datasets: per split, the indices end to end and where each client's begin.
CSR_KEYS = ("train_indices", "train_offsets", "test_indices", "test_offsets")


#: What a refusal to replace a group advises `fednlp partition` (a command without --overwrite says its own).
OVERWRITE_REMEDY = "pass --overwrite to replace it, or write to another --out"


def write_groups(path: str | os.PathLike, groups: Mapping[str, Content], overwrite: bool = False,
                 remedy: str = OVERWRITE_REMEDY) -> None:
    """Add or replace top-level groups; keep every other group of an existing file unchanged.

    A group the file already holds is replaced only if it was made with the same settings, or with
    `overwrite` (see `check_replaceable`; `remedy` is what its refusal advises: the command's own options).
    """
    path = Path(path)
    for name, content in groups.items():
        check_replaceable(path, name, scalar_settings(content), overwrite, remedy)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as out:
        if path.exists():
            with open_h5(path, "partition file") as old:
                for name in old:
                    if name not in groups:
                        old.copy(old[name], out, name=name)
        for name, content in groups.items():
            _write_content(out.create_group(name), content)


def scalar_settings(content: Content) -> dict[str, Any]:
    """The scalars of a group's content (its parameters, seed, checksums): what makes it what it is."""
    return {key: value for key, value in content.items()
            if not isinstance(value, Mapping) and np.ndim(value) == 0}


def check_replaceable(path: str | os.PathLike, name: str, settings: Mapping[str, Any], overwrite: bool,
                      remedy: str = OVERWRITE_REMEDY) -> None:
    """Refuse to replace group `name` of an existing partition file unless it records the same settings.

    Same settings: the old group records a seed (fednlp wrote it; FedNLP's scripts record none) and every
    setting both record is equal. Anything else is another partition under the same (seedless) FedNLP name,
    so replacing it would lose data: only `overwrite` does that.
    """
    path = Path(path)
    if overwrite or not path.exists():
        return
    with open_h5(path, "partition file") as f:
        if name not in f:
            return
        old = {key: _read_value(node) for key, node in f[name].items()
               if isinstance(node, h5py.Dataset) and node.shape == ()}
    if "seed" not in old:
        why = "not by fednlp (it records no seed; FedNLP's scripts write none)"
    else:
        differ = [f"{key} {old[key]!r}, not {settings[key]!r}" for key in sorted(set(old) & set(settings))
                  if not check_same(old[key], settings[key])]
        if not differ:
            return
        why = "with other settings: " + ", ".join(differ)
    raise UserError(f"partition file {path} already holds group {name!r}, made {why}; {remedy}")


def check_same(a: Any, b: Any) -> bool:
    """Two recorded settings are equal (numbers by value: an int64 1 and a float 1.0 alike)."""
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return float(a) == float(b)
    return str(a) == str(b)


def partition_content(train: list[np.ndarray], test: list[np.ndarray], values: Mapping[str, Any],
                      layout: str = "csr") -> dict[str, Any]:
    """A partition group's content in the compact layout (default) or FedNLP's ("fednlp")."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "csr":
        (train_indices, train_offsets), (test_indices, test_offsets) = csr(train), csr(test)
        return {"n_clients": len(train), **values, "train_indices": train_indices, "train_offsets": train_offsets,
                "test_indices": test_indices, "test_offsets": test_offsets}
    clients = {
        str(k): {"train": np.asarray(tr, dtype=np.int64), "test": np.asarray(te, dtype=np.int64)}
        for k, (tr, te) in enumerate(zip(train, test))
    }
    return {"n_clients": len(train), **values, "partition_data": clients}


def csr(clients: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(indices end to end, offsets): client k holds indices[offsets[k] : offsets[k + 1]]."""
    sizes = np.fromiter((len(c) for c in clients), dtype=np.int64, count=len(clients))
    offsets = np.zeros(len(clients) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    indices = np.concatenate([np.asarray(c, dtype=np.int64) for c in clients]) if clients else np.zeros(0, np.int64)
    return indices.astype(np.int64, copy=False), offsets


def group_names(path: str | os.PathLike) -> list[str]:
    """The partition groups of a file (groups holding partition_data), in file order."""
    with open_h5(path, "partition file") as f:
        return _partition_groups(f)


def _partition_groups(f: h5py.File) -> list[str]:
    return [name for name, node in f.items()
            if isinstance(node, h5py.Group) and ("partition_data" in node or "train_offsets" in node)]


def find_group(path: str | os.PathLike, requested: str) -> str:
    """The group `requested` names: itself, or the one group that spells it otherwise.

    FedNLP's niid_label.py writes numbers with `%g` (`alpha=1`), older files and fednlp with one decimal
    (`alpha=1.0`), and FedNLP's published uniform group is plain `uniform`; each spelling finds the other.
    A name without `clients=` finds the group of any client count when only one matches.
    """
    with open_h5(path, "partition file") as f:
        names = _partition_groups(f)
        if requested in names:
            return requested
        spelled = {name: _spelling(name, int(_read_value(f[name]["n_clients"])) if "n_clients" in f[name] else None)
                   for name in names}
    wanted = _spelling(requested, None)
    if "clients=" in requested:
        matches = [name for name, spelling in spelled.items() if spelling == wanted]
    else:
        matches = [name for name, spelling in spelled.items() if _CLIENTS.sub("", spelling) == wanted]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(matches if matches else names) or "none"
    what = "several partitions match; give one" if matches else "it has"
    raise UserError(f"partition file {path} has no partition {requested!r} ({what}: {listed})")


_NUMBER = re.compile(r"=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?=_|$)")
_CLIENTS = re.compile(r"_clients=[^_]+")
_FIRST_KEY = re.compile(r"_[A-Za-z]+=")


def _spelling(name: str, n_clients: int | None) -> str:
    """One spelling of a group name: numbers as floats (1 and 1.0 alike), `_clients=<N>` present when known."""
    if "clients=" not in name and n_clients is not None:
        found = _FIRST_KEY.search(name)
        at = found.start() if found else len(name)
        name = f"{name[:at]}_clients={n_clients}{name[at:]}"
    return _NUMBER.sub(lambda m: f"={float(m[1])!r}", name)


def read_partition(path: str | os.PathLike, name: str) -> StoredPartition:
    """A partition group; `name` may use another spelling of its numbers (see `find_group`)."""
    name = find_group(path, name)
    with open_h5(path, "partition file") as f:
        group = f[name]
        n_clients = int(_read_value(group["n_clients"]))
        if "train_offsets" in group:
            train, test = (_read_csr(group, split, n_clients, path) for split in ("train", "test"))
            values = {key: _read_value(node) for key, node in group.items()
                      if isinstance(node, h5py.Dataset) and key not in CSR_KEYS}
            return StoredPartition(name, n_clients, train, test, values, "csr")
        data = group["partition_data"]
        train, test = [], []
        for k in range(n_clients):
            if str(k) not in data or "train" not in data[str(k)]:
                raise UserError(f"partition file {path}: group {name!r} has n_clients {n_clients} but no "
                                f"partition_data/{k}/train; expected clients 0..{n_clients - 1}")
            train.append(index_array(data, f"{k}/train", path))
            test.append(index_array(data, f"{k}/test", path) if "test" in data[str(k)] else np.zeros(0, np.int64))
        values = {key: _read_value(node) for key, node in group.items() if isinstance(node, h5py.Dataset)}
    return StoredPartition(name, n_clients, train, test, values)


def read_client(path: str | os.PathLike, name: str, client: int, split: str = "train") -> np.ndarray:
    """One client's data-file indices (`split` train or test) without reading the others': in the compact
    layout two small hyperslab reads (through h5py's low-level calls, several times cheaper than the
    high-level slicing at this size), in FedNLP's the client's own dataset."""
    with open_h5(path, "partition file") as f:
        if name not in f:  # another spelling of the name (rare: find_group reads every group's name)
            name = find_group(path, name)
        group = f[name]
        if "train_offsets" in group:
            n_clients = group["train_offsets"].shape[0] - 1
            _check_client(path, name, client, n_clients)
            if f"{split}_offsets" not in group:
                return np.zeros(0, np.int64)
            start, end = _hyperslab(group, f"{split}_offsets", client, client + 2)
            return _hyperslab(group, f"{split}_indices", int(start), int(end))
        _check_client(path, name, client, int(_read_value(group["n_clients"])))
        data = group["partition_data"]
        if str(client) not in data or split not in data[str(client)]:
            return np.zeros(0, np.int64)
        return index_array(data, f"{client}/{split}", path)


def _check_client(path: str | os.PathLike, name: str, client: int, n_clients: int) -> None:
    if not 0 <= client < n_clients:
        raise UserError(f"partition file {path}: group {name!r} has clients 0..{n_clients - 1}, not {client}")


def _hyperslab(group: h5py.Group, key: str, start: int, stop: int) -> np.ndarray:
    """group/key[start:stop] as int64, read with h5py's low-level calls."""
    dataset = h5py.h5d.open(group.id, key.encode())
    out = np.empty(max(stop - start, 0), dtype=np.int64)
    if len(out):
        space = dataset.get_space()
        space.select_hyperslab((start,), (len(out),))
        dataset.read(h5py.h5s.create_simple((len(out),)), space, out)
    return out


def _read_csr(group: h5py.Group, split: str, n_clients: int, path: str | os.PathLike) -> ClientIndices:
    """The clients of one split in the compact layout, as views of one array; offsets checked first."""
    if f"{split}_offsets" not in group:  # only test can be missing: train_offsets marks the layout
        return ClientIndices(np.zeros(0, np.int64), np.zeros(n_clients + 1, np.int64))
    if f"{split}_indices" not in group:
        raise UserError(f"partition file {path}: {group.name} has {split}_offsets but no {split}_indices")
    indices = index_array(group, f"{split}_indices", path)
    offsets = index_array(group, f"{split}_offsets", path)
    if (len(offsets) != n_clients + 1 or (len(offsets) and (offsets[0] != 0 or offsets[-1] != len(indices)))
            or np.any(np.diff(offsets) < 0)):
        raise UserError(f"partition file {path}: {group.name}/{split}_offsets has {len(offsets)} values; expected "
                        f"n_clients + 1 = {n_clients + 1} non-decreasing offsets from 0 to the {len(indices)} "
                        f"indices of {split}_indices")
    return ClientIndices(indices, offsets)


def index_array(group: h5py.Group, key: str, path: str | os.PathLike) -> np.ndarray:
    """Data-file indices stored at group/key as int64: the one place index arrays are read.

    FedNLP's scripts write an empty client as a float64 array of shape (0,) and assignments as int32, so
    any numeric dtype is read as long as its values are whole numbers; an empty array is an empty client.
    Read through h5py's low-level calls (a k-means partition has thousands of clients).
    """
    dataset = h5py.h5d.open(group.id, key.encode())
    values = np.empty(dataset.shape, dtype=dataset.dtype)
    if values.size:
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
    where = f"partition file {path}: {group.name}/{key}"
    if values.ndim != 1:
        raise UserError(f"{where} has shape {values.shape}; expected a 1-D array of data-file indices")
    if values.size == 0:
        return np.zeros(0, np.int64)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        return values.astype(np.int64)
    raise UserError(f"{where} holds {values.dtype} values that are not whole numbers; expected data-file indices")


def check_fits_data(stored: StoredPartition, n_examples: int, partition_path: str | os.PathLike,
                    data_path: str | os.PathLike) -> None:
    """Refuse a partition whose indices fall outside the data file (made from another, bigger one)."""
    for split in (stored.train, stored.test):
        if isinstance(split, ClientIndices):  # one pass over the indices, no per-client array
            outside = np.flatnonzero((split.indices < 0) | (split.indices >= n_examples))
            client = int(np.searchsorted(split.offsets, outside[0], side="right")) - 1 if len(outside) else None
        else:
            client = next((c for c, indices in enumerate(split) if len(indices)
                           and (int(np.min(indices)) < 0 or int(np.max(indices)) >= n_examples)), None)
        if client is not None:
            raise UserError(f"partition file {partition_path}: client {client} of {stored.name!r} holds indices "
                            f"outside 0..{n_examples - 1} of data file {data_path}; was it made from another data file?")


#: The k-means assignment inside kmeans_clusters=<K>: FedNLP's kmeans.py name (written), then fednlp's old one.
ASSIGNMENT_NAMES = ("client_assignment", "cluster_assignment")


def read_cluster_assignment(path: str | os.PathLike, n_clusters: int) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The stored k-means assignment for K clusters (FedNLP's or ours) and the group's scalars, or None."""
    if not Path(path).exists():
        return None
    with open_h5(path, "partition file") as f:
        name = kmeans_group_name(n_clusters)
        if name not in f:
            return None
        group = f[name]
        key = next((key for key in ASSIGNMENT_NAMES if key in group), None)
        if key is None:
            return None
        values = {k: _read_value(v) for k, v in group.items() if isinstance(v, h5py.Dataset) and v.shape == ()}
        return index_array(group, key, path), values


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

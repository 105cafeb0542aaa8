"""Partition statistics and the client x label heat map (FedNLP, Lin et al. 2022, figure 2).

Per partition group: the client count, min / median / max client size (train and test), and the mean
total-variation distance of the clients' train label mixes from the global train mix (0: every client
looks like the whole data set, 1: clients share no label with it). Labels are the partitioners'
labels (labels.py); QA and seq2seq use a k-means clustering stored in the partition file, if any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.data.datafile import DataFile, read_data_file
from fednlp.data_partition.client_sizes import (dropped_line, plot_client_sizes, save_figure, size_decades,
                                               top_decile_share)
from fednlp.data_partition.labels import PartitionLabels, cluster_labels, has_labels, task_labels
from fednlp.data_partition.partition_file import (
    check_fits_data,
    StoredPartition,
    find_group,
    group_names,
    read_cluster_assignment,
    read_partition,
)
from fednlp.errors import UserError

@dataclass(frozen=True)
class PartitionStats:
    name: str
    n_clients: int
    train_sizes: np.ndarray
    test_sizes: np.ndarray
    label_counts: np.ndarray | None  # clients x labels, train examples
    labels: PartitionLabels | None
    values: dict[str, Any] = field(default_factory=dict)  # the group's stored scalars (parameters, drops)

    @property
    def label_distance(self) -> float | None:
        """Mean total-variation distance of non-empty clients' label mixes from the global mix."""
        if self.label_counts is None:
            return None
        return mean_tv_distance(self.label_counts)


def mean_tv_distance(label_counts: np.ndarray) -> float:
    totals = label_counts.sum(axis=1)
    nonempty = label_counts[totals > 0]
    mixes = nonempty / nonempty.sum(axis=1, keepdims=True)
    global_mix = label_counts.sum(axis=0) / label_counts.sum()
    return float(0.5 * np.abs(mixes - global_mix).sum(axis=1).mean())


def client_label_counts(clients: list[np.ndarray], label_ids: np.ndarray, n_labels: int) -> np.ndarray:
    owner = np.repeat(np.arange(len(clients)), [len(c) for c in clients])
    flat = label_ids[np.concatenate(clients)] if clients else np.zeros(0, np.int64)
    counts = np.zeros((len(clients), n_labels), dtype=np.int64)
    np.add.at(counts, (owner, flat), 1)
    return counts


def partition_stats(
    data: DataFile, partition_path: str | os.PathLike, data_path: str | os.PathLike, name: str
) -> PartitionStats:
    stored = read_partition(partition_path, name)
    check_fits_data(stored, data.n_examples, partition_path, data_path)
    labels = _labels_for(data, data_path, partition_path, stored)
    counts = client_label_counts(stored.train, labels.ids, labels.n_labels) if labels else None
    sizes = np.array([len(c) for c in stored.train])
    test_sizes = np.array([len(c) for c in stored.test])
    return PartitionStats(name, stored.n_clients, sizes, test_sizes, counts, labels, stored.values)


def partition_stats_report(
    data_path: str | os.PathLike,
    partition_path: str | os.PathLike,
    method: str | None = None,
    plot_path: str | os.PathLike | None = None,
    sizes_plot_path: str | os.PathLike | None = None,
) -> str:
    """The text report of one partition group (or every group, or every group of a method)."""
    for flag, path in (("--plot", plot_path), ("--sizes-plot", sizes_plot_path)):
        check_figure_suffix(path, flag)
    data = read_data_file(data_path)
    names = _select_groups(partition_path, method)
    stats = [partition_stats(data, partition_path, data_path, name) for name in names]
    if sizes_plot_path is not None:
        plot_client_sizes([(s.name, s.train_sizes) for s in stats], sizes_plot_path)
    if plot_path is not None:
        plot_heat_maps(stats, plot_path, data_path)
    return "\n".join(format_stats(s) for s in stats)


def check_figure_suffix(path: str | os.PathLike | None, flag: str) -> None:
    """matplotlib picks a figure's format by its suffix: refuse, before any work, one it cannot write (x.h5, or
    none), which would fail only after the statistics were computed."""
    if path is None:
        return
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if Path(path).suffix.lower().lstrip(".") not in formats:
        raise UserError(f"{flag} {path}: a figure's format comes from its file suffix; expected one of "
                        f"{', '.join('.' + f for f in formats)} (e.g. {Path(path).stem or 'figure'}.png)")


def format_stats(s: PartitionStats) -> str:
    lines = [
        s.name,
        f"  clients          {s.n_clients} ({s.train_sizes.sum()} train and {s.test_sizes.sum()} test examples)",
        f"  train size       {_spread(s.train_sizes)}",
        f"  test size        {_spread(s.test_sizes)}",
        f"  train sizes      {size_decades(s.train_sizes)} (clients per size range); the largest 10% of clients "
        f"hold {top_decile_share(s.train_sizes):.1%} of the train examples",
    ]
    if dropped := dropped_line(s.values):
        lines.append(f"  min examples     {dropped}")
    if s.labels is None:
        lines.append("  label distance   n/a (no labels: run a niid_cluster partition to store k-means clusters)")
    else:
        lines.append(
            f"  label distance   {s.label_distance:.3f} (mean total-variation distance of client {s.labels.meaning} "
            f"mixes from the global mix over {s.labels.n_labels} labels; 0 = iid, 1 = disjoint)"
        )
    return "\n".join(lines)


def plot_heat_maps(stats: list[PartitionStats], plot_path: str | os.PathLike, data_path: str | os.PathLike) -> None:
    """One panel per partition: rows are clients, columns labels, colour the share of the client's data."""
    drawable = [s for s in stats if s.label_counts is not None]
    if not drawable:
        raise UserError(
            f"--plot: the partitions of {data_path} have no labels to draw; run a niid_cluster partition "
            "first to store k-means clusters"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(
        1, len(drawable), figsize=(1.5 + 3.5 * len(drawable), 6), squeeze=False, layout="constrained"
    )
    for ax, s in zip(axes[0], drawable):
        totals = s.label_counts.sum(axis=1, keepdims=True)
        shares = np.divide(s.label_counts, totals, out=np.zeros(s.label_counts.shape), where=totals > 0)
        image = ax.imshow(shares, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{s.name}\nlabel distance {s.label_distance:.3f}", fontsize=8)
        ax.set_xlabel(s.labels.meaning)
        ax.set_ylabel("client")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if s.labels.n_labels <= 30:
            ax.set_xticks(range(s.labels.n_labels), s.labels.names, rotation=90, fontsize=6)
    fig.colorbar(image, ax=axes[0].tolist(), label="share of the client's train examples")
    save_figure(fig, plot_path)


def _spread(sizes: np.ndarray) -> str:
    if len(sizes) == 0:
        return "no clients"
    return f"min {sizes.min()}  median {np.median(sizes):g}  max {sizes.max()}"


def _select_groups(partition_path: str | os.PathLike, method: str | None) -> list[str]:
    """None: every group; an exact group name; or a method name: every group of that method."""
    names = group_names(partition_path)
    if method is None:
        selected = names
    elif method in names:
        selected = [method]
    else:  # a method's groups, or the group of another spelling (alpha=1 for alpha=1.0, uniform...)
        selected = [n for n in names if n.startswith(f"{method}_clients=")] or [find_group(partition_path, method)]
    if not selected:
        raise UserError(
            f"partition file {partition_path} has no partition {method!r} (it has: {', '.join(names) or 'none'})"
        )
    return selected


def _labels_for(
    data: DataFile, data_path: str | os.PathLike, partition_path: str | os.PathLike, stored: StoredPartition
) -> PartitionLabels | None:
    """The task's labels; for QA/seq2seq the group's own clustering, else the file's smallest one."""
    if has_labels(data) and "clusters" not in stored.values:
        return task_labels(data, data_path, "partition-stats")
    if "clusters" in stored.values:
        candidates = [int(stored.values["clusters"])]
    else:
        candidates = _stored_cluster_counts(partition_path)
    for k in candidates:
        found = read_cluster_assignment(partition_path, k)
        if found is None or len(found[0]) != data.n_examples:
            continue
        made_with, group_seed = found[1].get("seed"), stored.values.get("seed")
        if "clusters" in stored.values and None not in (made_with, group_seed) and made_with != group_seed:
            continue  # replaced (--overwrite) by another seed's clustering: not the one this group used
        return cluster_labels(found[0], k)
    return None


def _stored_cluster_counts(partition_path: str | os.PathLike) -> list[int]:
    import h5py

    with h5py.File(partition_path, "r") as f:
        prefix = "kmeans_clusters="
        return sorted(int(n[len(prefix) :]) for n in f if n.startswith(prefix) and n[len(prefix) :].isdigit())

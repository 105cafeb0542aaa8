"""Partitioner speed: niid_label and niid_quantity over 1,000,000 examples, 20 labels, 10,000 clients.

    .venv/bin/python -m benchmarks.partition_speed [--repeats 3] [--update-readme]

Times the pure partition functions (labels in, per-client position arrays out) for alpha and beta in
{0.001, 1, 100}: the time must not depend on the concentration, since nothing resamples. Also times
writing one such partition as a partition-file group in each layout (compact and FedNLP's). --update-readme rewrites the
"## Partitioners" section of benchmarks/README.md with the table and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from fednlp.data_partition import methods
from fednlp.data_partition.partition_file import partition_content, write_groups

N_EXAMPLES, N_LABELS, N_CLIENTS = 1_000_000, 20, 10_000
CONCENTRATIONS = (0.001, 1.0, 100.0)
README = Path(__file__).with_name("README.md")
SECTION = "## Partitioners"


def synthetic_labels(seed: int = 0) -> np.ndarray:
    """20 labels with a skewed global distribution (Dir(2) shares), like a real label set."""
    rng = np.random.default_rng(seed)
    return rng.choice(N_LABELS, size=N_EXAMPLES, p=rng.dirichlet(np.full(N_LABELS, 2.0)))


def niid_label(labels: np.ndarray, alpha: float, seed: int) -> list[np.ndarray]:
    parts, _ = methods.dirichlet_label_split(labels, N_CLIENTS, alpha, np.random.default_rng(seed), N_LABELS)
    return parts


def niid_quantity(labels: np.ndarray, beta: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = methods.quantity_sizes(len(labels), methods.quantity_proportions(N_CLIENTS, beta, rng))
    return methods.split_by_sizes(len(labels), sizes, rng)


def best_of(repeats: int, run: Callable[[int], list[np.ndarray]]) -> tuple[float, list[np.ndarray]]:
    times, parts = [], []
    for seed in range(repeats):
        start = time.perf_counter()
        parts = run(seed)
        times.append(time.perf_counter() - start)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(N_EXAMPLES))
    return min(times), parts


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return (
        f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}, "
        f"h5py {h5py.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update-readme", action="store_true", help=f"rewrite the {SECTION!r} section of {README}")
    args = parser.parse_args()

    labels = synthetic_labels()
    rows, parts = [], []
    for name, run, key in (("niid_label", niid_label, "alpha"), ("niid_quantity", niid_quantity, "beta")):
        for value in CONCENTRATIONS:
            seconds, parts = best_of(args.repeats, lambda seed: run(labels, value, seed))
            sizes = np.array([len(p) for p in parts])
            spread = f"{sizes.min()} / {int(np.median(sizes))} / {sizes.max()}"
            rows.append((name, f"{key}={value:g}", seconds, spread))
    for layout, label in (("csr", "compact layout (default)"), ("fednlp", "FedNLP's layout (--layout fednlp)")):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            content = partition_content(parts, [p[:0] for p in parts], {"beta": 100.0}, layout=layout)
            write_groups(Path(folder) / "p.h5", {"g": content})
            rows.append((f"write the group, {label}", f"{N_CLIENTS:,} clients", time.perf_counter() - start, ""))

    header = "| partition | parameter | seconds (best of {}) | client size min / median / max |".format(args.repeats)
    table = [header, "|---|---|---:|---|"] + [f"| {a} | {b} | {s:.3f} | {c} |" for a, b, s, c in rows]
    text = "\n".join(table)
    print(f"{N_EXAMPLES:,} examples, {N_LABELS} labels, {N_CLIENTS:,} clients on {machine()}\n")
    print(text)
    if args.update_readme:
        update_readme(text)


def update_readme(table: str) -> None:
    section = "\n".join(
        [
            SECTION,
            "",
            "`.venv/bin/python -m benchmarks.partition_speed --update-readme`: the pure partition functions of",
            "`fednlp.data_partition.methods` (labels in, per-client index arrays out, exact cover checked) over",
            f"{N_EXAMPLES:,} synthetic examples, {N_LABELS} labels with a skewed global distribution,",
            f"{N_CLIENTS:,} clients; plus writing one such partition to a partition file in the compact layout",
            "(the default: a few datasets per group) and in FedNLP's (two datasets per client).",
            "",
            f"Machine: {machine()}.",
            "",
            table,
            "",
        ]
    )
    text = README.read_text(encoding="utf-8") if README.exists() else "# Benchmarks\n"
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

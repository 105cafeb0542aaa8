"""A validation data file carved from a data file's training split (`fednlp data validation-split`).

Learning rates and other settings are tuned on it, never on the test split: its train list is the source's
train minus a seeded fraction, its test list is that fraction, and the source's test examples are in neither
list, so no run on it reads them (partitions are made of the train list, evaluation reads the test list). The
examples themselves are kept, in the source's order, so the tokenized features are identical and the cached
frozen layers (--cache-frozen) of the source are reused, not rebuilt. It is an ordinary data file: partition it
and train on it as on any other; its attributes say where it came from (`validation_of`: the source's checksum,
the fraction, the seed).
"""

from __future__ import annotations

import os

import numpy as np

from fednlp.data.datafile import DataFile, read_data_file
from fednlp.errors import UserError
from fednlp.files import file_sha256


def carve_validation(data: DataFile, fraction: float, seed: int, source_checksum: str = "") -> DataFile:
    """`data` with a seeded `fraction` of its training list as the test (validation) list, the rest as the
    training list, and its test examples in neither."""
    if not 0 < fraction < 1:
        raise UserError(f"--fraction must be in (0, 1), got {fraction}")
    train = np.asarray(data.train_index_list, dtype=np.int64)
    n_val = int(round(fraction * len(train)))
    if n_val < 1 or n_val >= len(train):
        raise UserError(f"--fraction {fraction} of {len(train)} training examples leaves "
                        f"{n_val} for validation and {len(train) - n_val} for training; expected at least 1 of each")
    order = np.random.default_rng(seed).permutation(len(train))
    validation = np.sort(train[order[:n_val]])
    held_out = set(validation.tolist())
    return DataFile(
        task_type=data.task_type,
        fields=data.fields,
        train_index_list=[int(i) for i in train if i not in held_out],
        test_index_list=validation.tolist(),
        label_vocab=dict(data.label_vocab),
        attributes={**data.attributes,
                    "validation_of": {"data_sha256": source_checksum, "fraction": fraction, "seed": seed,
                                      "unlisted": "the source's test examples, in neither list"}},
    )


def validation_file(source: str | os.PathLike, fraction: float, seed: int) -> DataFile:
    """`carve_validation` of the data file at `source`, recording its checksum."""
    data = read_data_file(source)
    return carve_validation(data, fraction, seed, file_sha256(str(source)))

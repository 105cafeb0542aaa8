"""`fednlp data prepare`: read a raw dataset, split off a test set where it has none, write the data file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from fednlp.data.datafile import DataFile, write_data_file
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.data.readers.layout import one_line
from fednlp.errors import UserError


def prepare(dataset: str, source: str | Path, out: str | Path, options: ReaderOptions = ReaderOptions(),
            name: str | None = None) -> DataFile:
    """Read, split and write; every malformed raw record goes where `options.bad_records` says (layout.py).

    `name` is the dataset's name in run records and leaderboards (default: the reader's name)."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise UserError(f"--source {source} does not exist")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; expected the path of the data file to write (.h5)")
    if options.test_fraction is not None and not 0.0 < options.test_fraction < 1.0:
        raise UserError(f"--test-fraction must lie strictly between 0 and 1, got {options.test_fraction}")
    try:
        data = _read(dataset, source, options)
    except UserError as exc:  # messages quote raw text, which may hold line breaks: the error stays one line
        raise UserError(one_line(str(exc))) from None
    if name:
        data.attributes["dataset"] = name
    data.attributes.setdefault("dataset", dataset)
    data = split_test(data, options)
    try:
        write_data_file(data, out)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write it ({exc.strerror or exc.__class__.__name__}); "
                        "expected a writable path") from None
    return data


def _read(dataset: str, source: Path, options: ReaderOptions) -> DataFile:
    if dataset.startswith("hf:"):
        from fednlp.data.readers.hf import read_hf

        return read_hf(dataset[3:], source, options)
    return get_reader(dataset).read(source, options)


def split_test(data: DataFile, options: ReaderOptions) -> DataFile:
    """Use the dataset's own test split; make a seeded one only where it has none or the user asks."""
    if options.test_fraction is None:
        if not data.test_index_list:
            raise UserError(
                f"dataset {data.attributes.get('dataset')!r} has no test split here; "
                "give --test-fraction F to split one off (seeded by --seed)"
            )
        data.attributes.setdefault("test_split", "original")
        return data
    pool = np.array(sorted(set(data.train_index_list) | set(data.test_index_list)), dtype=np.int64)
    rng = np.random.default_rng(options.seed)
    shuffled = rng.permutation(pool)
    n_test = int(round(len(pool) * options.test_fraction))
    if n_test == 0 or n_test == len(pool):
        raise UserError(f"--test-fraction {options.test_fraction} leaves an empty split of {len(pool)} examples")
    attributes = {
        **data.attributes,
        "test_split": f"seeded random split: fraction {options.test_fraction}, seed {options.seed}",
        "test_fraction": options.test_fraction,
        "split_seed": options.seed,
    }
    return replace(
        data,
        train_index_list=sorted(shuffled[n_test:].tolist()),
        test_index_list=sorted(shuffled[:n_test].tolist()),
        attributes=attributes,
    )

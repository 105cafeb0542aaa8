"""Tokenized features, cached per (data file contents, task, tokenizer, max length).

Training never re-tokenizes: the first run writes `<data dir>/.fednlp_cache/<data stem>-<key>.npz`
(atomically), every later run and every rank reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from fednlp.data.capacity import check_fits
from fednlp.files import atomic_output, file_sha256
from fednlp.tasks.base import Features, Task


def cache_path(task: Task, data_path: str | os.PathLike) -> Path:
    data_path = Path(data_path)
    tok = task.tokenizer
    key_source = json.dumps(
        {
            "data": file_sha256(str(data_path)),
            "task": task.cache_key(),
            "tokenizer": [type(tok).__name__, getattr(tok, "name_or_path", ""), len(tok)],
            "max_length": task.max_length,
            "format": 4,  # 3: token arrays as wide as the data's longest row; 4: integer arrays narrowed
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    return data_path.parent / ".fednlp_cache" / f"{data_path.stem}-{task.name}-{key}.npz"


def load_or_build_features(task: Task, data_path: str | os.PathLike) -> Features:
    path = cache_path(task, data_path)
    if path.exists():
        return _load(path)
    check_fits(task.estimated_feature_bytes(), path.parent, f"the tokenized features of {data_path}",
               "lower --max-seq-length, or free memory or disk")
    features = narrowed(task.build_features())
    _save(features, path)
    return features


#: Integer types a model-input array may be stored in, narrowest first (Features.batch widens to int64).
NARROW_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32)


def narrowed(features: Features) -> Features:
    """The features with each model-input integer array in the narrowest type that holds its values: token
    ids under 65,536 in uint16, class labels in uint8, ... (WU-M: 160 -> 104 MB per rank). Host arrays, which
    the task computes with, and the row bookkeeping keep their types."""
    arrays = {}
    for name, array in features.arrays.items():
        if name not in features.host_arrays and array.dtype.kind in "iu" and array.size:
            low, high = int(array.min()), int(array.max())
            fits = next((t for t in NARROW_TYPES if np.iinfo(t).min <= low and high <= np.iinfo(t).max), None)
            if fits is not None and np.dtype(fits).itemsize < array.dtype.itemsize:
                array = array.astype(fits)
        arrays[name] = array
    return Features(arrays, features.lengths, features.example_of_row, features.sequence_arrays,
                    features.host_arrays)


def _save(features: Features, path: Path) -> None:
    arrays = {f"array__{name}": value for name, value in features.arrays.items()}
    with atomic_output(path, suffix=".npz") as tmp:  # numpy appends .npz to a name without it
        np.savez(
            tmp,
            lengths=features.lengths,
            example_of_row=features.example_of_row,
            sequence_arrays=np.array(features.sequence_arrays, dtype=str),
            host_arrays=np.array(features.host_arrays, dtype=str),
            **arrays,
        )


def _load(path: Path) -> Features:
    with np.load(path) as z:
        return Features(
            arrays={name[len("array__"):]: z[name] for name in z.files if name.startswith("array__")},
            lengths=z["lengths"],
            example_of_row=z["example_of_row"],
            sequence_arrays=tuple(str(s) for s in z["sequence_arrays"]),
            host_arrays=tuple(str(s) for s in z["host_arrays"]),
        )

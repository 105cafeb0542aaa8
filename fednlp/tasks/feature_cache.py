"""Tokenized features, cached per (data file contents, task, tokenizer, max length).

Training never re-tokenizes: the first run writes `<data dir>/.fednlp_cache/<data stem>-<key>.npz`
(atomically), every later run and every rank reads it.

The archive is uncompressed, so each array is read as a read-only memory map of its bytes inside it: a rank's
resident memory is the rows it touches, and ranks on one machine share the page cache instead of holding a
copy each (a million-client unit's 2M rows: benchmarks/README.md, WU-M).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
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
            "format": 3,  # 3: token arrays as wide as the data's longest row, not the max length
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
    features = task.build_features()
    _save(features, path)
    return features


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
    with zipfile.ZipFile(path) as archive:
        z = {info.filename.removesuffix(".npy"): _mapped(path, info) for info in archive.infolist()}
    return Features(
        arrays={name[len("array__"):]: array for name, array in z.items() if name.startswith("array__")},
        lengths=z["lengths"],
        example_of_row=z["example_of_row"],
        sequence_arrays=tuple(str(s) for s in z["sequence_arrays"]),
        host_arrays=tuple(str(s) for s in z["host_arrays"]),
    )


def _mapped(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy member of the uncompressed archive as a read-only memory map (read whole if compressed)."""
    with open(path, "rb") as f:
        if info.compress_type != zipfile.ZIP_STORED:
            with zipfile.ZipFile(f) as archive, archive.open(info) as member:
                return np.lib.format.read_array(member)
        f.seek(info.header_offset)
        local_header = f.read(30)  # the zip local file header: its name and extra lengths end at byte 30
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        f.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(f)
        offset = f.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran_order else "C")

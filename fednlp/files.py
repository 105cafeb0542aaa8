"""Writing a file so that no reader ever sees half of it, and a file's checksum: one way each, for the
whole platform (data files, partition files, run files, checkpoints, caches, plots).

`atomic_output` yields a temporary path beside the target (same directory, so the rename is atomic on
POSIX); the target appears, whole, only when the block ends without an exception, and the temporary file
is removed whatever happens. A crash or an error leaves either the old file or none, never a partial one.
A directory (a saved model) is written the same way: the block makes the temporary path a directory.

`check_output` is the one rule every command's outputs pass before any work: an output is never one of the
command's inputs nor an existing file of another kind (`file_kind`), so no typo destroys a data file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from fednlp.errors import UserError


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` (ending in `suffix`, for writers that insist on an extension, e.g.
    matplotlib or numpy), renamed onto `path` when the block succeeds. A directory replaces the old one,
    which is removed just before the rename (no rename lands on a non-empty directory): a crash at that
    instant leaves no directory, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    _remove(tmp)  # left by a crashed process that had this pid
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    """`durable`: fsync before the rename (checkpoints must survive a power cut, not just a crash)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, memoised on (path, size, modification time): a rewritten file is hashed anew."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: What an output of each kind may replace or add to when it already exists; anything else is refused.
#: data: a data file is replaced (atomically); partition: a partition file gains a group (a group of the same
#: name made otherwise needs --overwrite); report (JSON, CSV, Markdown, PNG): any file that is not HDF5 is
#: replaced; directory (leaderboard --plots): an existing directory gains the figures.
_REPLACEABLE = {"data": ("data",), "partition": ("partition",), "report": ("other",), "directory": ("directory",)}
_NAMES = {"data": "an existing data file", "partition": "an existing partition file", "hdf5": "an existing HDF5 "
          "file that is neither a data nor a partition file", "other": "an existing file that is not a readable HDF5 "
          "file", "directory": "an existing directory"}


def file_kind(path: str | os.PathLike) -> str | None:
    """What lies at `path`: "data" (HDF5 with an `attributes` record, fednlp's or FedNLP's data file),
    "partition" (HDF5 whose groups hold partitions or k-means assignments, or an empty HDF5 file), "hdf5"
    (another HDF5 file), "other" (any other file), "directory", or None (nothing). Read from the file's
    signature and top-level names only: cheap whatever its size."""
    path = Path(path)
    if path.is_dir():
        return "directory"
    if not path.exists():
        return None
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return "other"
        with h5py.File(path, "r") as h5:
            if "attributes" in h5:
                return "data"
            names = list(h5)
            if all(isinstance(h5[name], h5py.Group) for name in names):
                return "partition"
            return "hdf5"
    except OSError:
        return "other"


def check_output(out: str | os.PathLike | None, inputs: dict[str, Any], kind: str, flag: str = "--out") -> None:
    """Refuse, before any work, an output that would destroy what the user did not ask to lose: `out` is one of
    `inputs` (flag -> path, list of paths or None; the same file after resolving links), or an existing file of another kind than
    `kind` ("data", "partition", "report" or "directory"): a data file where a partition or a report is
    written, a raw CSV where a data file is. No --overwrite licenses either (partition's replaces a group, not
    a file). An existing output of the same kind is replaced or added to as _REPLACEABLE says."""
    if out is None:
        return
    for input_flag, paths in inputs.items():
        for path in paths if isinstance(paths, (list, tuple)) else [paths]:
            if path is not None and _same_file(out, path):
                raise UserError(f"{flag} {out} is the same file as {input_flag} {path}; expected a new path (an "
                                "input is never written)")
    found = file_kind(out)
    if found is None or found in _REPLACEABLE[kind]:
        return
    expected = {"data": "a data file to replace", "partition": "a partition file to add a group to",
                "report": "a file that is not HDF5 (a report replaces it)", "directory": "a directory"}[kind]
    found_name = "an existing file" if kind == "directory" else _NAMES[found]
    raise UserError(f"{flag} {out} is {found_name}; expected a new path or {expected}")


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """The same file after resolving links: os.path.samefile when both exist, else the resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()

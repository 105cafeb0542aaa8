"""Writing a file so that no reader ever sees half of it, and a file's checksum: one way each, for the
whole platform (data files, partition files, run files, checkpoints, caches, plots).

`atomic_output` yields a temporary path beside the target (same directory, so the rename is atomic on
POSIX); the target appears, whole, only when the block ends without an exception, and the temporary file
is removed whatever happens. A crash or an error leaves either the old file or none, never a partial one.
A directory (a saved model) is written the same way: the block makes the temporary path a directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator


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

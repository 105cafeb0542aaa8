"""Exclusive locks on what a command writes: a run directory, a data file, a partition file.

Two commands writing the same output would interleave (metrics.jsonl lines of two runs) or lose work (two
`partition` commands each adding their group to the old file). The second one is refused with one line
naming the holder's pid and host, exit code 2.

The lock is `fcntl.flock` on a small lock file: the kernel drops it when its holder dies, even by kill -9,
so a crashed run never blocks `--resume`; the pid and host written inside are only for the message.
Under mpirun only rank 0 takes a run directory's lock (it alone writes run files); a refused rank 0
ends the whole job like any other error.
"""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fednlp.errors import UserError

RUN_LOCK_NAME = ".fednlp.lock"

# Locks this process holds, by lock-file path: a run keeps its directory's lock until `release` or exit.
_held: dict[str, "Lock"] = {}


class Lock:
    def __init__(self, path: Path, fd: int, created_dirs: list[Path]):
        self.path, self.fd, self.created_dirs = path, fd, created_dirs

    def release(self, remove_created_dirs: bool = False) -> None:
        """Unlink the lock file, then drop the lock (in that order: see `acquire`'s inode check)."""
        _held.pop(str(self.path), None)
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
        if remove_created_dirs:
            for directory in self.created_dirs:  # deepest first; only the ones this lock made, only if empty
                try:
                    directory.rmdir()
                except OSError:
                    break


def acquire(lock_path: Path, what: str) -> Lock:
    """Take the exclusive lock at `lock_path` (its directory is created); UserError if another process holds it.

    `what` names the locked thing in messages, e.g. "--out runs/a".
    """
    lock_path = Path(lock_path)
    previous = _held.pop(str(lock_path), None)
    if previous is not None:  # an earlier command of this same process ended without releasing (an exception)
        previous.release()
    created = _make_dirs(lock_path.parent, what)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{what}: cannot create its lock file {lock_path} ({exc.strerror}); "
                            "expected a writable directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            _remove_dirs(created)
            raise UserError(f"{what} is in use by another fednlp command ({holder}); wait for it to end, or "
                            "choose another output") from None
        # The holder unlinks the file before dropping the lock: if ours was unlinked meanwhile, retry on a new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
    lock = Lock(lock_path, fd, created)
    _held[str(lock_path)] = lock
    return lock


@contextmanager
def locked_output(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock of output file `path` (lock file `.<name>.lock` beside it) while the body writes it.

    On any error the lock file and the directories made for it are removed: no partial output."""
    path = Path(path)
    lock = acquire(path.with_name(f".{path.name}.lock"), what)
    try:
        yield
    except BaseException:
        lock.release(remove_created_dirs=True)
        raise
    lock.release()


def lock_run_dir(run_dir: str | os.PathLike) -> Lock:
    """Lock a run directory (created here) for the rest of the run; `release_run_dir` ends it."""
    return acquire(Path(run_dir) / RUN_LOCK_NAME, f"--out {run_dir}")


def release_run_dir(run_dir: str | os.PathLike) -> None:
    lock = _held.get(str(Path(run_dir) / RUN_LOCK_NAME))
    if lock is not None:
        lock.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid and host not yet written"


def _make_dirs(directory: Path, what: str) -> list[Path]:
    """mkdir -p, returning the directories it made, deepest first (so they can be removed on failure)."""
    missing = []
    for candidate in [directory, *directory.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_dirs([d for d in missing if d.is_dir()])
        raise UserError(f"{what}: cannot create directory {directory} ({exc.strerror or exc.__class__.__name__}); "
                        "expected a path where directories can be made") from None
    return missing


def _remove_dirs(directories: list[Path]) -> None:
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            break

"""Will it fit? Free memory and disk, asked before a big allocation so that the answer is one clear line
rather than the kernel's OOM killer (exit 137, no message).

Memory is the smaller of the kernel's MemAvailable and the room left under this process's cgroup (v2)
limit: in a container or a batch job the cgroup, not the machine, is what runs out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fednlp.errors import UserError


def available_memory_bytes() -> int | None:
    """Bytes this process can still allocate, or None where the system does not say (not Linux)."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        cgroup = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]  # v2: "0::/path"
        directory = Path("/sys/fs/cgroup") / cgroup.lstrip("/")
        ceiling = (directory / "memory.max").read_text().strip()
        if ceiling != "max":
            limits.append(int(ceiling) - int((directory / "memory.current").read_text()))
    except (OSError, IndexError, ValueError):
        pass
    return min(limits) if limits else None


def available_disk_bytes(directory: Path) -> int | None:
    """Free bytes for this user on the file system that holds `directory` (or its nearest existing parent)."""
    for candidate in [directory, *directory.parents]:
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def check_fits(estimate: int, cache_dir: Path, what: str, hint: str) -> None:
    """Refuse `what` (needing `estimate` bytes in memory, twice while being built, and once on disk in
    `cache_dir`) when it cannot fit."""
    memory, disk = available_memory_bytes(), available_disk_bytes(cache_dir)
    if memory is not None and 2 * estimate > memory:
        raise UserError(f"{what} would need up to {_gib(2 * estimate)} of memory while being built, and "
                        f"{_gib(memory)} is available; {hint}")
    if disk is not None and estimate > disk:
        raise UserError(f"{what} would need up to {_gib(estimate)} on disk in {cache_dir}, and {_gib(disk)} is "
                        f"free; {hint}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"

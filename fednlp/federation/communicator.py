"""How ranks talk: one process alone, or MPI ranks through mpi4py. Algorithms never see MPI.

The runtime needs three collectives: an in-place sum of one flat float32 buffer per round, a gather of
small Python objects (evaluation predictions) and a barrier (feature cache building).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

_MPI_ENV = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class LocalCommunicator:
    """World of one: every collective is the identity."""

    rank = 0
    world_size = 1
    local_rank = 0

    def allreduce_sum_(self, buffer: np.ndarray) -> None:
        return None

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast(self, obj: Any) -> Any:
        return obj

    def barrier(self) -> None:
        return None

    def abort(self, code: int) -> None:
        sys.exit(code)


class MPICommunicator:
    """MPI.COMM_WORLD through mpi4py; buffers travel as numpy arrays (no pickling on the hot path)."""

    def __init__(self) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.world_size = self._comm.Get_size()
        self.local_rank = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("MPI_LOCALRANKID", self.rank)))

    def allreduce_sum_(self, buffer: np.ndarray) -> None:
        self._comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)

    def allgather(self, obj: Any) -> list[Any]:
        return self._comm.allgather(obj)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank (ranks need not share a file system)."""
        return self._comm.bcast(obj, root=0)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int) -> None:
        # Ends every rank: no rank may wait forever in a collective for one that failed.
        self._comm.Abort(code)


def launched_by_mpi() -> bool:
    return any(name in os.environ for name in _MPI_ENV)


def make_communicator() -> LocalCommunicator | MPICommunicator:
    if launched_by_mpi():
        comm = MPICommunicator()
        if comm.world_size > 1:
            return comm
    return LocalCommunicator()

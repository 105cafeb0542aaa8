"""Stopping a run cleanly on SIGINT/SIGTERM: the handler only sets a flag; the round loop reads it once per
round as a vote in that round's Allreduce (fednlp/federation/runtime.py), so every rank sees the same sum and
all stop after the same round, checkpoint it, and end with RunInterrupted."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class StopFlag:
    """Set by a signal handler; read once per round (a vote in that round's Allreduce)."""

    def __init__(self) -> None:
        self.signum = 0

    def requested(self) -> bool:
        return self.signum != 0


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM finish the current round, checkpoint it and end the run cleanly (RunInterrupted).
    Outside the main thread (where Python allows no handler) the flag is never set."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

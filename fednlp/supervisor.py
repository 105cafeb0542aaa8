"""`fednlp supervise`: run a training command and resume it from its newest valid checkpoint when the job
dies for a reason outside the run's control (a killed rank, a node lost, SIGTERM from a scheduler), at most
N times, each restart logged on stderr and in RUN_DIR/restarts.jsonl.

    fednlp supervise --max-restarts 3 -- mpirun -n 4 fednlp train --config c.yaml --out runs/a --checkpoint-every 1

The exit code says whose fault an ending is (docs/errors.md):
    0    the run finished;
    2    bad input (the run's own fault: the same command would fail again): not restarted;
    3    a non-finite loss or update (the run's own fault: it would diverge again): not restarted;
    130  SIGINT, the user's Ctrl-C: not restarted;
    else a crash outside the run's control (a rank killed: 137 or mpirun's code; SIGTERM: 143): restarted.
A signal sent to the supervisor itself is passed on to the job, which checkpoints and stops; no restart.

A restart appends `--resume RUN_DIR` to the command (the run's saved config, the same flags), or runs the
command again unchanged when no checkpoint was complete yet. Resuming ends where an uninterrupted run
ends (the round loop's guarantee), so a supervised run's result does not depend on how often it died.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fednlp.errors import UserError

NOT_RESTARTED = {0: "finished", 2: "bad input", 3: "non-finite loss or update", 128 + signal.SIGINT: "interrupted (SIGINT)"}


def run_dir_of(command: list[str]) -> Path:
    """The --out of the `fednlp train` in `command` (a supervised run must name its directory to be resumed)."""
    if "train" not in command:
        raise UserError("the supervised command must run `fednlp train` (e.g. -- mpirun -n 2 fednlp train ...)")
    args = command[command.index("train") + 1 :]
    for i, arg in enumerate(args):
        if arg == "--out" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1])
    raise UserError("give the supervised train command an --out RUN_DIR, the run directory to resume from")


def newest_checkpoint_round(run_dir: Path) -> int | None:
    from fednlp.federation.checkpoint import load_latest_checkpoint

    checkpoint = load_latest_checkpoint(run_dir)
    return None if checkpoint is None else checkpoint.round


def supervise(command: list[str], max_restarts: int, restart_delay_s: float = 2.0) -> int:
    """Run `command` until it ends for a reason a restart cannot fix, at most `max_restarts` restarts."""
    if not command:
        raise UserError("fednlp supervise: no command given; expected e.g. -- mpirun -n 2 fednlp train ... --out RUN_DIR")
    run_dir = run_dir_of(command)
    forwarded: list[int] = []
    attempt_command, restarts = list(command), 0
    with _forward_signals(forwarded) as set_child:
        while True:
            try:
                proc = subprocess.Popen(attempt_command)
            except OSError as exc:
                raise UserError(f"supervise: cannot run {attempt_command[0]!r} ({exc.strerror}); "
                                "expected a command on PATH") from None
            set_child(proc)
            code = proc.wait()
            set_child(None)
            if forwarded or code in NOT_RESTARTED:  # asked for, finished, or the run's own fault
                if code in (2, 3):
                    _say(f"the job ended with exit code {code} ({NOT_RESTARTED[code]}): the run's own fault, "
                         "not restarted")
                return code
            if restarts >= max_restarts:
                _say(f"the job ended with exit code {code}{_signal_name(code)}; no restart left "
                     f"(--max-restarts {max_restarts})")
                return code
            restarts += 1
            resumed = newest_checkpoint_round(run_dir)
            attempt_command = list(command) + (["--resume", str(run_dir)] if resumed is not None else [])
            where = f"from the checkpoint of round {resumed}" if resumed is not None else "from the start (no checkpoint yet)"
            _say(f"the job ended with exit code {code}{_signal_name(code)}; restart {restarts} of {max_restarts} {where}")
            _log(run_dir, {"restart": restarts, "exit_code": code, "resumed_round": resumed, "time": time.time()})
            time.sleep(restart_delay_s)


def _say(message: str) -> None:
    print(f"fednlp supervise: {message}", file=sys.stderr, flush=True)


def _signal_name(code: int) -> str:
    for number in (code - 128, -code):
        if 0 < number < signal.NSIG:
            try:
                return f" ({signal.Signals(number).name})"
            except ValueError:
                pass
    return ""


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "restarts.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


class _forward_signals:
    """While supervising, SIGINT/SIGTERM to the supervisor go to the job (which checkpoints and stops) and
    mark the ending as asked for, so it is not restarted."""

    def __init__(self, forwarded: list[int]):
        self.forwarded, self.child, self.previous = forwarded, None, {}

    def __enter__(self):
        def handler(signum: int, frame: Any) -> None:
            self.forwarded.append(signum)
            if self.child is not None and self.child.poll() is None:
                self.child.send_signal(signum)

        self.previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

        def set_child(child: Any) -> None:
            self.child = child

        return set_child

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)

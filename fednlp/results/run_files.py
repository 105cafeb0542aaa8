"""The writer side of a run directory: config.yaml, metrics.jsonl, result.json.

The leaderboard (fednlp.results.leaderboard) reads what this writes. Only rank 0 should hold a RunWriter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from fednlp.files import atomic_write_text


class RunWriter:
    """Writes one run directory `runs/<name>/`."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=True))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One evaluation, one line; the file is closed (flushed) at once so a crash loses nothing before it."""
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """On resume: exactly the evaluations up to the checkpoint (later lines belong to lost rounds)."""
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def append_clients(self, round_idx: int, client_metrics: dict[int, dict[str, float]], metric: str) -> None:
        """clients.csv: one line per evaluated client and evaluation (client, round, examples, metric, loss)."""
        path = self.run_dir / "clients.csv"
        new = not path.exists()
        with open(path, "a", encoding="utf-8") as f:
            if new:
                f.write(f"client,round,examples,{metric},loss\n")
            for client, m in sorted(client_metrics.items()):
                loss = "" if m.get("loss") is None else repr(m["loss"])
                f.write(f"{client},{round_idx},{m['examples']},{m[metric]!r},{loss}\n")

    def truncate_clients(self, completed_rounds: int) -> None:
        """On resume: drop clients.csv lines of rounds after the checkpoint (they belong to lost rounds)."""
        path = self.run_dir / "clients.csv"
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",")[1]) <= completed_rounds]
        atomic_write_text(path, "".join(kept))

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2, sort_keys=True) + "\n")

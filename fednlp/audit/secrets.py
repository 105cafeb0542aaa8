"""The space of secrets a canary draws from: `digits:N` (every N-digit code) or a file of candidates.

A digit code is written with a space between its digits ("1 2 3 4"): every WordPiece or BPE tokenizer then
gives one token per digit, so the secret fills N known slots of one token each, the setting of ModIvA's
extraction attack, and its candidates are the ten digit tokens per slot.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.errors import UserError

MAX_DIGITS = 18  # 10^18 candidates still index in int64
DIGITS = tuple("0123456789")


@dataclass(frozen=True)
class SecretSpace:
    """`digits` > 0: every code of that many digits; else the listed candidates, in file order."""

    digits: int = 0
    listed: tuple[str, ...] = ()
    source: str = ""

    @property
    def size(self) -> int:
        return 10**self.digits if self.digits else len(self.listed)

    def candidate(self, index: int) -> str:
        if self.digits:
            return " ".join(str(int(index)).zfill(self.digits))
        return self.listed[int(index)]

    def candidates(self, indices: np.ndarray) -> list[str]:
        return [self.candidate(i) for i in np.asarray(indices).tolist()]

    def index_of(self, secret: str) -> int:
        if self.digits:
            return int(secret.replace(" ", ""))
        return self.listed.index(secret)

    @property
    def slot_choices(self) -> tuple[str, ...] | None:
        """What each slot of a secret can hold, when that is known per slot (the digits); None otherwise."""
        return DIGITS if self.digits else None

    def to_json(self) -> dict[str, Any]:
        return {"digits": self.digits} if self.digits else {"file": self.source, "candidates": list(self.listed)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "SecretSpace":
        if value.get("digits"):
            return cls(digits=int(value["digits"]), source=f"digits:{int(value['digits'])}")
        return cls(listed=tuple(str(c) for c in value["candidates"]), source=str(value.get("file", "")))


def parse_secret_space(spec: str) -> SecretSpace:
    """`digits:N` or the path of a file with one candidate secret per line (blank lines ignored)."""
    if spec.startswith("digits:"):
        count = spec.removeprefix("digits:")
        if not count.isdigit() or not 1 <= int(count) <= MAX_DIGITS:
            raise UserError(f"--secret {spec!r}: expected digits:N with N from 1 to {MAX_DIGITS}")
        return SecretSpace(digits=int(count), source=spec)
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--secret {spec!r} is neither digits:N nor an existing file of candidate secrets")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--secret {spec}: not UTF-8 text; expected one candidate secret per line") from None
    candidates = [line.strip() for line in lines if line.strip()]
    if len(candidates) < 2:
        raise UserError(f"--secret {spec}: {len(candidates)} candidate(s); expected at least 2, one per line")
    duplicated = sorted(c for c, n in collections.Counter(candidates).items() if n > 1)
    if duplicated:
        raise UserError(f"--secret {spec}: candidate {duplicated[0]!r} is listed more than once; expected distinct "
                        "candidates (a secret's rank among them must be well defined)")
    return SecretSpace(listed=tuple(candidates), source=str(spec))


def fill(template: str, secret: str) -> str:
    return template.replace("{secret}", secret)


def check_template(template: str) -> None:
    if template.count("{secret}") != 1:
        raise UserError(f"--template {template!r} must hold {{secret}} exactly once (where the secret goes), "
                        f"found {template.count('{secret}')}")

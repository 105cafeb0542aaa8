"""Continual federated learning (Dupuy et al., "Learnings from federated learning in the real world",
ICASSP 2022): data arrives over time, and a device trains on what it holds now.

The stream is every example of the data file ordered by its `order` field (the time it was written).
`--periods P` cuts the stream into P consecutive periods at the order values of ranks n/P, 2n/P, ...
(ties stay in one period), so each period brings about n/P new examples. In period t a device holds its
own training examples of periods 0..t, at most `--storage-limit B` of them: it deletes its oldest first.
All of this is a pure function of the data, so every rank (and a resumed run) agrees without a message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fednlp.errors import UserError
from fednlp.options import option


@dataclass(frozen=True)
class ContinualOptions:
    """--continual and its options, checked together (TrainConfig.validate calls `validate`): TrainConfig's
    `continual` section (fednlp/options.py), so flat flags --continual, --periods, ... on the command line and a
    `continual:` mapping in YAML (the flat keys of older files still load)."""

    enabled: bool = option("continual FL: data arrives over time by the data's order field, cut into --periods; "
                           "a device trains on what it holds now (fednlp/federation/continual.py)", default=False,
                           name="continual")
    periods: int | None = option("--continual: consecutive periods of the stream")
    rounds_per_period: int | None = option("--continual: rounds per period (--rounds becomes periods x this)")
    storage_limit: int | None = option("--continual: a device keeps at most B examples, deleting its oldest first "
                                       "(default: unlimited)")

    def validate(self) -> None:
        """The numbers themselves (positive, finite) and --periods, ... without --continual are checked with
        every option (fednlp/config_checks.py CONTEXTS)."""
        if self.enabled and (self.periods is None or self.rounds_per_period is None):
            raise UserError("--continual needs --periods P and --rounds-per-period R")

    def check_data(self, fields: dict, data_path: str) -> None:
        """With --continual: the data has an order field that can be cut into --periods (the schedule the run
        will build, built once before the run directory is made, so a refusal leaves nothing behind)."""
        if self.enabled:
            period_of_examples(order_field(fields, data_path), self.periods)  # type: ignore[arg-type]

    @property
    def rounds(self) -> int | None:
        """The run's rounds under --continual (periods x rounds per period; --rounds is replaced), else None."""
        return self.periods * self.rounds_per_period if self.enabled else None  # type: ignore[operator]


def period_of_examples(order: np.ndarray, periods: int) -> np.ndarray:
    """The period (0..P-1) of every example: P consecutive, roughly equal-count stretches of the stream."""
    order = np.asarray(order, dtype=np.float64)
    distinct = np.unique(order)
    if periods > len(distinct):
        raise UserError(f"--periods {periods} exceeds the {len(distinct)} distinct values of the data's order field")
    ranked = np.sort(order)
    cuts = ranked[(np.arange(1, periods) * len(order)) // periods]
    if len(np.unique(cuts)) < periods - 1 or (periods > 1 and cuts[0] == ranked[0]):
        raise UserError(f"--periods {periods}: the order field has too many ties to cut the stream into {periods} "
                        f"periods (choose fewer)")
    return np.searchsorted(cuts, order, side="right")


@dataclass(frozen=True)
class ContinualSchedule:
    """What each device holds in each period; rounds r of period r // rounds_per_period."""

    order: np.ndarray  # per data-file example
    period: np.ndarray  # per data-file example, 0..periods-1
    periods: int
    rounds_per_period: int
    storage_limit: int | None

    @classmethod
    def from_data(cls, order: np.ndarray, periods: int, rounds_per_period: int,
                  storage_limit: int | None) -> "ContinualSchedule":
        order = np.asarray(order, dtype=np.float64)
        return cls(order, period_of_examples(order, periods), periods, rounds_per_period, storage_limit)

    def period_of_round(self, round_idx: int) -> int:
        return min(round_idx // self.rounds_per_period, self.periods - 1)

    def held(self, examples: np.ndarray, period: int) -> np.ndarray:
        """A device's examples in `period`: those of periods 0..period, the newest `storage_limit` of them
        (by order, then index), in data-file order."""
        examples = np.asarray(examples, dtype=np.int64)
        arrived = examples[self.period[examples] <= period]
        if self.storage_limit is not None and len(arrived) > self.storage_limit:
            newest_first = np.lexsort((-arrived, -self.order[arrived]))
            arrived = np.sort(arrived[newest_first[: self.storage_limit]])
        return arrived

    def sizes(self, clients_train: list[np.ndarray], period: int) -> np.ndarray:
        return np.array([len(self.held(t, period)) for t in clients_train], dtype=np.int64)

    def future_test(self, test_examples: np.ndarray, period: int) -> np.ndarray:
        """The test examples of the next period (what the model meets after this one); empty after the last."""
        test_examples = np.asarray(test_examples, dtype=np.int64)
        return test_examples[self.period[test_examples] == period + 1]


def order_field(fields: dict, data_path: str) -> np.ndarray:
    """The data file's `order` (or `time`) field as numbers; one line naming what is missing otherwise."""
    for name in ("order", "time"):
        if name in fields:
            try:
                return np.asarray(fields[name], dtype=np.float64)
            except (TypeError, ValueError):
                raise UserError(f"{data_path}: field {name!r} must hold numbers for --continual") from None
    raise UserError(f"--continual needs an order or time field in {data_path} (20 Newsgroups and AESLC have one; "
                    f"csv/jsonl data: fednlp data prepare --time-column)")

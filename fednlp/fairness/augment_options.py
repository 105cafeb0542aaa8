"""The options of counterfactual data augmentation (fednlp/fairness/augment.py), apart from it so that the run
configs (fednlp/config.py) declare them without importing the tasks and torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fednlp.errors import UserError
from fednlp.options import option

NONE, COUNTERFACTUAL = "none", "counterfactual"


@dataclass
class AugmentOptions:
    """The --augment options of a run (RunConfig.augment): `--augment`, `--augment-fraction`, `--augment-pairs`
    on the command line, an `augment:` section in YAML."""

    FLAG_PREFIX: ClassVar[str] = "augment_"

    method: str = option("training-data augmentation: none, or counterfactual (each client adds gender-swapped "
                         "copies of its own training texts; classification and lm)", default=NONE, name="augment")
    fraction: float = option("--augment counterfactual: the seeded fraction of each client's swappable examples "
                             "that get a copy, in (0, 1]", default=1.0)
    pairs: str | None = option("--augment counterfactual: a two-column file of word pairs to swap (default: the "
                               "built-in binary gender list)")

    @property
    def enabled(self) -> bool:
        return self.method != NONE

    def validate(self) -> None:
        if self.method not in (NONE, COUNTERFACTUAL):
            raise UserError(f"--augment must be none or counterfactual, got {self.method!r}")
        if not 0 < self.fraction <= 1:
            raise UserError(f"--augment-fraction must be in (0, 1], got {self.fraction}")

    def check_privacy(self, dp_mechanism: str) -> None:
        """A federated run's --dp (TrainConfig.dp.mechanism) beside the augmentation."""
        if self.enabled and dp_mechanism == "sample":
            # An example and its copy are two rows: DP-SGD's per-row guarantee would cover half an example.
            raise UserError("--augment counterfactual with --dp sample: an example and its swapped copy are two "
                            "rows, so the per-example guarantee would not hold; use --dp client")

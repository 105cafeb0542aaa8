"""The `--dp` mechanisms by name: `@register_dp_mechanism(name)` on a DPMechanism subclass in fednlp, or the
`fednlp.dp_mechanisms` entry-point group for a package installed beside fednlp (docs/privacy.md, "Adding a
mechanism"). `--dp none` is no mechanism; the names are `--dp`'s choices, and privatize() in
fednlp/privacy/plan.py asks the registry instead of testing names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from fednlp.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from fednlp.privacy.options import DPOptions
    from fednlp.privacy.plan import PrivacyPlan

NONE = "none"


class DPMechanism:
    """One level of differential privacy, composed over the run's algorithm before any training.

    `help` is the mechanism's line in `--dp`'s help. `adaptive_clip`: whether it takes `--dp-clip adaptive`."""

    name = ""  # set by the registry
    help = ""
    adaptive_clip = False

    def check(self, options: DPOptions, config: Any) -> None:
        """Refuse (UserError) what this mechanism cannot run, from the config alone; DPOptions.validate has
        already checked what every mechanism shares (a clip norm, a noise multiplier or a budget, ...)."""

    def privatize(self, algorithm: Any, config: Any, sampler: Any, sizes: np.ndarray, pool: np.ndarray,
                  active_of: Callable[[int], Any]) -> tuple[Any, PrivacyPlan]:
        """The algorithm with this mechanism over it, and the plan that records it in result.json["dp"].

        `sizes`: every client's number of training examples; `pool`: those of the clients that may be sampled
        (the held-out ones left out); `active_of(round)`: the clients that may train in that round."""
        raise NotImplementedError


DP_MECHANISMS: Registry[type[DPMechanism]] = Registry(
    "DP mechanism", "--dp", group="fednlp.dp_mechanisms", base=DPMechanism,
    builtins=("fednlp.privacy.client_level", "fednlp.privacy.sample_level"),
)


def register_dp_mechanism(name: str) -> Callable[[type[DPMechanism]], type[DPMechanism]]:
    return DP_MECHANISMS.register(name)


def dp_choices() -> tuple[str, ...]:
    """`--dp`'s values: none, then every registered mechanism."""
    return (NONE, *DP_MECHANISMS)


def dp_help() -> str:
    """`--dp`'s help, one clause per mechanism."""
    described = [f"{name} ({cls.help})" if cls.help else name for name, cls in DP_MECHANISMS.items()]
    listed = ", ".join([NONE, *described[:-1]]) + f" or {described[-1]}" if described else NONE
    return f"differential privacy: {listed}"

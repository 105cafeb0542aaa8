"""Privacy accounting with Google's dp-accounting: epsilon at delta after `steps` compositions of one
sampled Gaussian mechanism, by RDP (Mironov 2017; Mironov et al. 2019) and by privacy loss distributions
(PLD; Koskela et al. 2020, Doroshenko et al. 2022).

Two samplings have exact accountings:
- Poisson: each unit (client, or example) independently with rate q; add-or-remove-one neighbours,
  sensitivity C: the textbook DP-FedAvg / DP-SGD accounting (RDP and PLD).
- fixed size, without replacement (k of n): replace-one neighbours (Wang, Balle, Kasiviswanathan 2019),
  whose l2-sensitivity of the clipped sum is 2C, so the accountant is given Z / 2. RDP only (dp-accounting's
  PLD has no such event): `epsilon_pld` is None and the headline epsilon is RDP's.

Accounting is a pure function of the number of steps, so a resumed run recomputes it, never loads it.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING

from fednlp.errors import UserError

if TYPE_CHECKING:
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant

# Orders of the RDP accountant: dp-accounting's own default grid (fractional orders from 1.1: at a large
# epsilon the best order is close to 1, and a grid without them reported up to 34% more than dp-accounting's
# RDP) joined with a few more; an order that fails to converge for some (q, Z) only logs a warning and is not
# the minimum, so a denser grid can only lower the reported epsilon.


@functools.cache
def rdp_orders() -> tuple[float, ...]:
    from dp_accounting.rdp import rdp_privacy_accountant

    return tuple(sorted(set(rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
                        | {1.75, 2.25, 2.5, 3.5, 4.5, *range(2, 65), 80, 96, 128, 256, 512}))
# PLD discretisation: pessimistic, so a coarser grid only raises epsilon (by ~1e-5 relative at 1e-3) and
# makes one composition 10x cheaper than the default 1e-4 (per-round epsilons stay cheap).
PLD_INTERVAL = 1e-3
MAX_NOISE_MULTIPLIER = 1e4
MIN_NOISE_MULTIPLIER = 1e-2  # calibration's lower end for the fixed-size RDP (0 divides by zero there)
# Below this noise multiplier a PLD's support grows as 1/Z^2 (minutes, then out of memory, at Z = 0.004: the
# released model of a --dp-noise-cohort-size run); epsilon is then in the hundreds and RDP's is reported.
PLD_MIN_NOISE_MULTIPLIER = 0.05

# dp-accounting (and the scipy it imports) is imported where it is used: a run without --dp never pays for it
# (about 1.5 s of every `fednlp train` start).
logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's per-order convergence warnings


def accountant_version() -> str:
    return f"dp-accounting {version('dp-accounting')}"


@dataclass(frozen=True)
class Sampling:
    """How the units of one step are drawn: 'poisson' at rate q, or 'fixed_size' (sample_size of population)."""

    kind: str
    q: float
    population: int = 0
    sample_size: int = 0

    def describe(self) -> str:
        if self.kind == "poisson":
            return f"Poisson sampling at rate q={self.q:.6g}"
        return f"fixed-size sampling without replacement ({self.sample_size} of {self.population})"


def step_event(noise_multiplier: float, sampling: Sampling) -> dp_event.DpEvent:
    from dp_accounting import dp_event

    if sampling.kind == "poisson":
        return dp_event.PoissonSampledDpEvent(sampling.q, dp_event.GaussianDpEvent(noise_multiplier))
    return dp_event.SampledWithoutReplacementDpEvent(sampling.population, sampling.sample_size,
                                                     dp_event.GaussianDpEvent(noise_multiplier / 2))


def rdp_accountant(sampling: Sampling) -> rdp_privacy_accountant.RdpAccountant:
    from dp_accounting.rdp import rdp_privacy_accountant
    from dp_accounting.rdp.rdp_privacy_accountant import NeighborRel

    relation = NeighborRel.ADD_OR_REMOVE_ONE if sampling.kind == "poisson" else NeighborRel.REPLACE_ONE
    return rdp_privacy_accountant.RdpAccountant(list(rdp_orders()), relation)


class Accountant:
    """epsilon(steps, delta) of one mechanism repeated: the single step's RDP curve and PLD are built once.

    `incremental` (a run's per-round epsilons): the PLD of t steps is always built as ((p o p) o p) ... one
    composition at a time from the first step, so round t costs one composition (~10x cheaper than a
    self-composition) and its value is the same bits however it was reached (a resumed run replays the
    compositions of the rounds it skipped). Otherwise each query self-composes (best for large jumps).
    """

    def __init__(self, noise_multiplier: float, sampling: Sampling, incremental: bool = False):
        self.noise_multiplier = noise_multiplier
        self.sampling = sampling
        self.has_pld = sampling.kind == "poisson" and (noise_multiplier == 0
                                                      or noise_multiplier >= PLD_MIN_NOISE_MULTIPLIER)
        self.incremental = incremental
        self._composed, self._count = None, 0

    @functools.cached_property
    def _rdp_step(self):
        accountant = rdp_accountant(self.sampling)
        accountant.compose(step_event(self.noise_multiplier, self.sampling))
        return accountant.rdp

    @functools.cached_property
    def _pld_step(self):
        from dp_accounting.pld import privacy_loss_distribution

        return privacy_loss_distribution.from_gaussian_mechanism(
            self.noise_multiplier, sampling_prob=self.sampling.q, value_discretization_interval=PLD_INTERVAL,
            pessimistic_estimate=True, use_connect_dots=True)

    def _trivial(self, steps: int) -> float | None:
        if steps <= 0 or self.sampling.q == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        return None

    def epsilon_rdp(self, steps: int, delta: float) -> float:
        from dp_accounting.rdp import rdp_privacy_accountant

        trivial = self._trivial(steps)
        if trivial is not None:
            return trivial
        return float(rdp_privacy_accountant.compute_epsilon(list(rdp_orders()), steps * self._rdp_step, delta)[0])

    def epsilon_pld(self, steps: int, delta: float) -> float | None:
        if not self.has_pld:
            return None
        trivial = self._trivial(steps)
        if trivial is not None:
            return trivial
        return float(self._pld_of(steps).get_epsilon_for_delta(delta))

    def _pld_of(self, steps: int):
        if not self.incremental:
            return self._pld_step.self_compose(steps)
        if steps < self._count or self._composed is None:
            self._composed, self._count = self._pld_step, 1
        while self._count < steps:
            self._composed, self._count = self._composed.compose(self._pld_step), self._count + 1
        return self._composed

    def epsilon(self, steps: int, delta: float) -> float:
        """The headline: PLD (tighter) where it exists, else RDP."""
        pld = self.epsilon_pld(steps, delta)
        return pld if pld is not None else self.epsilon_rdp(steps, delta)


def calibrate_noise(epsilon: float, delta: float, steps: int, sampling: Sampling,
                    max_noise: float = MAX_NOISE_MULTIPLIER, what: str = "") -> float:
    """The smallest noise multiplier whose `steps` compositions meet (epsilon, delta), found by
    dp-accounting's own calibration (bisection on a fresh accountant per guess)."""
    import dp_accounting
    from dp_accounting import dp_event, mechanism_calibration

    def fresh():
        if sampling.kind == "poisson":
            return dp_accounting.pld.PLDAccountant(value_discretization_interval=PLD_INTERVAL)
        return rdp_accountant(sampling)

    def event(z: float) -> dp_event.DpEvent:
        return dp_event.SelfComposedDpEvent(step_event(z, sampling), steps)

    # PLD settles Z = 0 at once (no privacy); a tiny positive Z would build a huge PLD. The fixed-size RDP
    # divides by Z, so it starts just above 0.
    low = 0.0 if sampling.kind == "poisson" else MIN_NOISE_MULTIPLIER
    reachable = fresh().compose(event(max_noise)).get_epsilon(delta)
    if reachable > epsilon:
        raise UserError(f"--dp-epsilon {epsilon} cannot be met at delta {delta:g} over {steps} steps{what} with "
                        f"{sampling.describe()}: even noise multiplier {max_noise:g} gives epsilon {reachable:.4g}")
    z = float(mechanism_calibration.calibrate_dp_mechanism(
        fresh, event, epsilon, delta, mechanism_calibration.ExplicitBracketInterval(low, max_noise),
        tol=1e-4))
    # The run reports epsilon with Accountant (its own PLD construction): never let that exceed the budget.
    # Steps that double: below PLD_MIN_NOISE_MULTIPLIER the run reports RDP's (larger) epsilon, far from PLD's.
    step = 1e-4
    while Accountant(z, sampling).epsilon(steps, delta) > epsilon and z < max_noise:
        z, step = z * (1 + step), step * 2
    return z

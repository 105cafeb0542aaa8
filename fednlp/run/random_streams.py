"""The independent random streams of a run, named once, and the generators made from them: pure functions
of (seed, round, stream, ...), so every rank computes the same numbers with no message.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class Stream(IntEnum):
    """The independent random streams of a run, named once: a stream's number is part of its seed, so
    changing one would change every run's results (the values are those the platform has always used)."""

    COHORT = 0  # which clients train in a round
    CLIENT = 1  # a client's batch order and dropout in a round
    CENTRALIZED = 2  # the centralized baseline's batch order
    EVAL_SUBSET = 3  # the --eval-max-examples subset
    SERVER_NOISE = 4  # noise an algorithm adds in its server step (the round context's generator)
    EVAL_CLIENTS = 5  # the clients of --eval-clients N
    CLIENT_NOISE = 6  # noise inside a client (e.g. DP-SGD), keyed by round and client
    HOLDOUT = 7  # clients kept out of every cohort


class AuditStream(IntEnum):
    """The random streams of the privacy audit (fednlp/audit/), named once like the run's. They are seeded from
    the audited run's seed, or the canary ones from `fednlp canaries insert --seed`, so their own numbers keep
    the audit's choices independent of the run's (the values are those the audit has always used)."""

    CANARY_SECRETS = 0  # the secret each inserted canary gets (seeded from --seed of canaries insert)
    CANARY_CLIENTS = 1  # the clients holding each canary's copies (idem)
    MEMBER_SAMPLE = 100  # the members and non-members scored at the example level
    CLIENT_SAMPLE = 101  # the examples each client is scored by at the user level
    EXTRAPOLATION = 102  # the candidates sampled for the skew-normal estimate of a canary's exposure


def round_rng(seed: int, round_idx: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, round, stream...): no global state, no reuse across rounds."""
    return np.random.default_rng([seed, round_idx, *stream])


def run_rng(seed: int, stream: Stream | AuditStream) -> np.random.Generator:
    """A generator for a choice made once per run (not per round), or once per audit."""
    return np.random.default_rng([seed, stream])


def round_generator(seed: int, round_idx: int, *stream: int) -> torch.Generator:
    """A CPU torch.Generator seeded from (seed, round, stream...): the same on every rank and device, so noise
    drawn from it (then moved to the device) keeps the ranks identical without a broadcast."""
    import torch  # here: the numpy streams serve commands that never load a model (canaries insert)

    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(round_rng(seed, round_idx, *stream).integers(2**62)))
    return generator

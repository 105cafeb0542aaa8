"""The independent random streams of a run, named once, and the generators made from them: pure functions
of (seed, round, stream, ...), so every rank computes the same numbers with no message.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
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


def round_rng(seed: int, round_idx: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, round, stream...): no global state, no reuse across rounds."""
    return np.random.default_rng([seed, round_idx, *stream])


def run_rng(seed: int, stream: Stream) -> np.random.Generator:
    """A generator for a choice made once per run (not per round)."""
    return np.random.default_rng([seed, stream])


def round_generator(seed: int, round_idx: int, *stream: int) -> torch.Generator:
    """A CPU torch.Generator seeded from (seed, round, stream...): the same on every rank and device, so noise
    drawn from it (then moved to the device) keeps the ranks identical without a broadcast."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(round_rng(seed, round_idx, *stream).integers(2**62)))
    return generator

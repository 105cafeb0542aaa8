"""Per-round randomness and the spread of a round's cohort over the ranks: pure functions of (seed, round).

Every rank calls these with the same arguments and gets the same answer, so no message is needed.
Which clients form the cohort is the sampler's choice (fednlp/algorithms/samplers.py).
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


def assign_to_ranks(cohort: np.ndarray, client_sizes: np.ndarray, world_size: int) -> list[list[int]]:
    """Balance ranks by work: largest client first to the least-loaded rank (LPT), ties to the lower rank.

    Deterministic: a stable sort by size (descending) then client id, so every rank agrees.
    """
    order = sorted(cohort.tolist(), key=lambda c: (-int(client_sizes[c]), c))
    loads = [0] * world_size
    assignment: list[list[int]] = [[] for _ in range(world_size)]
    for client in order:
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        assignment[rank].append(client)
        loads[rank] += int(client_sizes[client])
    return [sorted(clients) for clients in assignment]

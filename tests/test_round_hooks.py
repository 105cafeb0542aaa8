"""The round's extension points: unchanged results for the built-in algorithms, the client hook's delta and
norm, extra Allreduce slots, the round context's generator, the saved model, and non-finite runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.cli import main
from fednlp.config import TrainConfig
from fednlp.federation.communicator import LocalCommunicator
from fednlp.federation.runtime import train_federated

REFERENCE = json.loads((Path(__file__).parent / "reference" / "reference_weights.json").read_text())
METHOD = "niid_label_clients=12_alpha=1.0"


def _reference_config(bbc, out: Path, overrides: dict) -> TrainConfig:
    from dataclasses import fields

    data, part = bbc
    own = {f.name for f in fields(TrainConfig)}
    run = {k: v for k, v in overrides.items() if k in own}
    algorithm_args = {k: v for k, v in overrides.items() if k not in own}  # mu, server_momentum, ...: the algorithm's
    config = TrainConfig(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=2,
                         clients_per_round=4, local_steps=2, batch_size=8, max_seq_length=32, eval_max_examples=32,
                         out=str(out), seed=5, quiet=True, algorithm_args=algorithm_args, **run)
    config.validate()
    return config


def _fingerprint(model_dir: Path) -> dict[str, list[float]]:
    import sys

    from transformers import AutoModelForSequenceClassification

    sys.path.insert(0, str(Path(__file__).parent / "reference"))
    from weights_fingerprint import fingerprint

    return fingerprint(AutoModelForSequenceClassification.from_pretrained(model_dir))


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_builtin_algorithms_give_the_weights_they_gave_before_the_hooks(bbc, tmp_path: Path, case: str) -> None:
    """tests/reference/reference_weights.json was written by the code of commit 5afc5b7 (before the round's
    extension points) with the same settings; the saved final model must carry the same weights."""
    reference = REFERENCE[case]
    result = train_federated(_reference_config(bbc, tmp_path / case, reference["overrides"]), LocalCommunicator())
    got = _fingerprint(Path(result["model_dir"]))
    assert got.keys() == reference["fingerprint"].keys()
    for name, (norm, dot) in reference["fingerprint"].items():
        assert got[name][0] == pytest.approx(norm, rel=1e-6, abs=1e-6), name
        assert got[name][1] == pytest.approx(dot, rel=1e-5, abs=1e-5 * (1 + norm)), name

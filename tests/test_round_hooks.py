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


def _small(bbc, out: Path, **overrides) -> TrainConfig:
    data, part = bbc
    values = dict(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=2, clients_per_round=3,
                  local_steps=2, batch_size=8, max_seq_length=32, eval_max_examples=48, out=str(out), seed=2,
                  quiet=True)
    values.update(overrides)
    config = TrainConfig(**values)
    config.validate()
    return config


def test_saved_model_reloads_with_the_runs_final_metric_and_trains_on(bbc, tmp_path: Path) -> None:
    """RUN_DIR/model loads with from_pretrained and evaluates to the run's final metric; it is a --model for
    another run (here a centralized fine-tuning), whose own saved model differs from it."""
    from fednlp.centralized import train_centralized
    from fednlp.config import CentralizedConfig
    from fednlp.run.session import open_session

    result = train_federated(_small(bbc, tmp_path / "fed", optimizer="sgd", lr=0.1), LocalCommunicator())
    model_dir = Path(result["model_dir"])
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    reloaded = _small(bbc, tmp_path / "eval", model=str(model_dir))
    session = open_session(reloaded, LocalCommunicator(), "eval")
    assert session.evaluate()[result["metric"]] == pytest.approx(result["value"])
    data, _ = bbc
    central = CentralizedConfig(data=str(data), model=str(model_dir), steps=2, batch_size=8, max_seq_length=32,
                                eval_max_examples=48, out=str(tmp_path / "central"), seed=2, quiet=True)
    central.validate()
    tuned = train_centralized(central)
    assert np.isfinite(tuned["history"][-1]["train_loss"])
    assert _fingerprint(Path(tuned["model_dir"])) != _fingerprint(model_dir)


def test_save_model_false_writes_no_model(bbc, tmp_path: Path) -> None:
    result = train_federated(_small(bbc, tmp_path / "run", rounds=1, save_model=False), LocalCommunicator())
    assert "model_dir" not in result and not (tmp_path / "run" / "model").exists()


def test_a_diverging_run_stops_with_exit_3_naming_round_client_and_rank(bbc, tmp_path: Path, capsys) -> None:
    data, part = bbc
    flags = ["train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
             "--rounds", "2", "--clients-per-round", "3", "--local-steps", "3", "--batch-size", "8",
             "--max-seq-length", "32", "--eval-max-examples", "16", "--optimizer", "sgd", "--lr", "1e12",
             "--quiet", "true"]
    assert main([*flags, "--out", str(tmp_path / "stop"), "--checkpoint-every", "1"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "round 1: client" in err[0] and "(trained on rank 0)" in err[0]
    assert "non-finite loss or update" in err[0]
    assert not (tmp_path / "stop" / "result.json").exists()

    # skip-client leaves a diverged client out; a round that left out every one trained nothing: diverged too
    assert main([*flags, "--out", str(tmp_path / "skip"), "--on-nonfinite", "skip-client"]) == 3
    assert "round 1: every one of its 3 clients had a non-finite loss or update" in capsys.readouterr().err
    assert not (tmp_path / "skip" / "result.json").exists()


def test_training_loss_in_every_record_and_tensorboard(bbc, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train_federated(_small(bbc, tmp_path / "run", report_to="tensorboard", eval_every=2),
                             LocalCommunicator())
    assert [sorted(k for k in h if k in ("train_loss", "accuracy")) for h in result["history"]] == [
        ["train_loss"], ["accuracy", "train_loss"]]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train_loss", "accuracy"} <= set(events.Tags()["scalars"])
    losses = [e.value for e in events.Scalars("train_loss")]
    assert losses == pytest.approx([h["train_loss"] for h in result["history"]])


def test_round_plan_is_pure_and_the_same_on_every_rank() -> None:
    """plan_round (used by the runtime, tests and benchmarks): the same plan for the same (seed, round) on every
    rank, each active client on exactly one rank, held-out clients never drawn, and a rank-identical generator."""
    from fednlp.algorithms.samplers import UniformSampler
    from fednlp.federation.round_plan import holdout_clients, plan_round

    sizes = np.array([5, 0, 7, 3, 9, 4, 6, 2, 8, 1])
    held = holdout_clients(3, len(sizes), 0.2)
    eligible = np.setdiff1d(np.arange(len(sizes)), held)
    plans = [plan_round(UniformSampler(), 3, 4, sizes, 4, world_size=3, rank=r, eligible=eligible) for r in range(3)]
    first = plans[0]
    for plan in plans[1:]:
        assert np.array_equal(plan.cohort, first.cohort) and np.array_equal(plan.weights, first.weights)
        assert plan.shares == first.shares and plan.active == first.active
    assert sorted(c for share in first.shares for c in share) == sorted(first.cohort.tolist())
    assert not set(first.cohort.tolist()) & set(held.tolist()) and len(held) == 2
    assert first.active == {c for c in first.cohort.tolist() if sizes[c] > 0}
    assert first.context.expected_cohort_size == 4 and first.context.n_clients == len(eligible)
    draws = [torch.randn(5, generator=plan.context.generator) for plan in plans]
    assert all(torch.equal(d, draws[0]) for d in draws)
    other = plan_round(UniformSampler(), 3, 5, sizes, 4, eligible=eligible)
    assert not torch.equal(torch.randn(5, generator=other.context.generator), draws[0])

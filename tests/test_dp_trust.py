"""What a DP run's numbers may be trusted for (issue 26, items 2-6): algorithms that use unnoised per-client
values are refused, a resumed DP run cannot change what its accounting rests on, --dp-noise-cohort-size
reports the released model's epsilon apart from the imagined deployment's, delta stays below 1/N of the
population accounted, the RDP order grid is never looser than dp-accounting's own, and a sampler bound is
named a heuristic."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from dp_accounting import dp_event, pld, rdp

from fednlp.algorithms.fedavg import FedAvg
from fednlp.algorithms.registry import ALGORITHMS
from fednlp.algorithms.samplers import PoissonSampler
from fednlp.cli import main
from fednlp.config import TrainConfig
from fednlp.privacy.accounting import Accountant, Sampling
from fednlp.privacy.options import DPOptions
from fednlp.privacy.plan import privatize
from fednlp.results.leaderboard import leaderboard_rows, load_runs, render

from test_leaderboard import make_run

METHOD = "niid_label_clients=12_alpha=1.0"  # the `bbc` fixture's partition: 12 clients (conftest.py)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "privacy.md"


def _train(bbc, out: Path, capsys, **flags) -> tuple[int, str]:
    data, part = bbc
    values = {"data": data, "partition": part, "method": METHOD, "model": "tiny-bert", "rounds": 3,
              "clients-per-round": 4, "local-steps": 1, "batch-size": 8, "max-seq-length": 32, "lr": 0.05,
              "optimizer": "sgd", "eval-max-examples": 16, "eval-every": 3, "checkpoint-every": 1, "seed": 2,
              "out": out, "overwrite": "true", "quiet": "true", **flags}
    code = main(["train", *[x for k, v in values.items() if v is not None for x in (f"--{k}", str(v))]])
    return code, capsys.readouterr().err.strip()


def _resume(out: Path, capsys, **flags) -> tuple[int, str]:
    code = main(["train", "--resume", str(out), *[x for k, v in flags.items() for x in (f"--{k}", str(v))]])
    return code, capsys.readouterr().err.strip()


def _config(**dp) -> TrainConfig:
    cfg = TrainConfig(data="d", partition="p", method="m", rounds=3, clients_per_round=4, sampler="poisson",
                      dp=DPOptions(**{"mechanism": "client", "clip": "1", "noise_multiplier": 1.0, **dp}))
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------------ 2. compatible algorithms


@pytest.mark.parametrize("level", ["client", "sample"])
def test_qfedavg_with_dp_is_refused_naming_both_options(bbc, tmp_path: Path, capsys, level: str) -> None:
    """q-FedAvg divides the noised update by a sum of unclipped, unnoised client norms and losses."""
    code, err = _train(bbc, tmp_path / "run", capsys, algorithm="qfedavg", q=1, dp=level,
                       **{"dp-clip": 1, "dp-noise-multiplier": 1})
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--algorithm qfedavg" in err and f"--dp {level}" in err
    assert not (tmp_path / "run").exists()


def test_docs_list_exactly_the_dp_compatible_algorithms() -> None:
    line = next(l for l in DOCS.read_text().splitlines() if l.startswith("DP-compatible algorithms"))
    listed = set(re.findall(r"`([a-z0-9_]+)`", line.split(";")[0]))
    assert listed == {name for name, cls in ALGORITHMS.items() if cls.dp_compatible}
    assert not ALGORITHMS.get("qfedavg").dp_compatible


# ------------------------------------------------------------------------------ 3. resume


def test_a_calibrated_run_cannot_resume_with_more_rounds_or_other_dp_options(bbc, tmp_path: Path, capsys) -> None:
    """The issue's case: calibrated to --dp-epsilon 2 for 3 rounds, resumed with --rounds 6, was re-calibrated
    and reported epsilon 2.0000 where 2.5007 was spent. Refused, before the run directory changes."""
    out = tmp_path / "calibrated"
    code, err = _train(bbc, out, capsys, dp="client", sampler="poisson", **{"dp-clip": 1, "dp-epsilon": 2})
    assert code == 0, err
    config = (out / "config.yaml").read_text()
    for flags, named in (({"rounds": 6}, "--rounds"), ({"dp-noise-multiplier": 0.7}, "--dp-noise-multiplier"),
                         ({"clients-per-round": 6}, "--clients-per-round"), ({"sampler": "uniform"}, "--sampler"),
                         ({"dp-delta": 1e-3}, "--dp-delta")):
        code, err = _resume(out, capsys, **flags)
        assert code == 2 and len(err.splitlines()) == 1 and f"cannot change {named}" in err, (flags, err)
        assert (out / "config.yaml").read_text() == config
    code, err = _resume(out, capsys)  # the run's own options: accepted
    assert code == 0, err


def test_a_run_with_a_given_noise_multiplier_may_add_rounds(bbc, tmp_path: Path, capsys) -> None:
    """Accounting is a pure function of the rounds at a fixed Z: more rounds are accounted exactly."""
    out = tmp_path / "fixed"
    code, err = _train(bbc, out, capsys, rounds=2, dp="client", sampler="poisson",
                       **{"dp-clip": 1, "dp-noise-multiplier": 1.2})
    assert code == 0, err
    code, err = _resume(out, capsys, rounds=3)
    assert code == 0, err
    dp = json.loads((out / "result.json").read_text())["dp"]
    expected = pld.PLDAccountant().compose(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(4 / 12, dp_event.GaussianDpEvent(1.2)), 3)).get_epsilon(dp["delta"])
    assert dp["rounds"] == 3 and dp["epsilon"] == pytest.approx(expected, rel=2e-3)


# ------------------------------------------------------------------------------ 4. --dp-noise-cohort-size


def test_noise_cohort_size_reports_the_released_models_epsilon_and_the_deployments_apart(bbc, tmp_path: Path,
                                                                                          capsys) -> None:
    out = tmp_path / "cohort"
    code, err = _train(bbc, out, capsys, dp="client", sampler="poisson",
                       **{"dp-clip": 1, "dp-noise-multiplier": 1.0, "dp-noise-cohort-size": 1000})
    assert code == 0, err
    dp = json.loads((out / "result.json").read_text())["dp"]
    # The released model: noise Z C M / M' on a sum of sensitivity C, q = 4/12, 12 clients, delta 12^-1.1.
    released = 1.0 * 4 / 1000
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(4 / 12, dp_event.GaussianDpEvent(released)), 3))
    assert dp["delta"] == pytest.approx(12 ** -1.1)
    assert dp["released_noise_multiplier"] == pytest.approx(released)
    assert dp["epsilon"] == pytest.approx(accountant.get_epsilon(dp["delta"]), rel=1e-6) and dp["epsilon"] > 1e4
    # The deployment: 3000 clients at the same rate, Z itself, delta 3000^-1.1.
    assert dp["deployment_clients"] == 3000 and dp["deployment_delta"] == pytest.approx(3000 ** -1.1)
    deployment = pld.PLDAccountant().compose(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(4 / 12, dp_event.GaussianDpEvent(1.0)), 3)).get_epsilon(dp["deployment_delta"])
    assert dp["deployment_epsilon"] == pytest.approx(deployment, rel=2e-3) and dp["deployment_epsilon"] < 10
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["dp_epsilon"] == dp["epsilon"] and lines[-1]["dp_deployment_epsilon"] == dp["deployment_epsilon"]
    (row,) = csv.DictReader(io.StringIO(render(leaderboard_rows(load_runs(tmp_path)), "csv")))
    assert float(row["dp_epsilon_spent"]) == pytest.approx(dp["epsilon"])


# ------------------------------------------------------------------------------ 5. delta, RDP orders, heuristics


@pytest.mark.parametrize("level, delta", [("client", "0.5"), ("client", str(1 / 12)), ("sample", "0.01")])
def test_a_delta_at_or_above_one_over_n_is_refused(bbc, tmp_path: Path, capsys, level: str, delta: str) -> None:
    code, err = _train(bbc, tmp_path / "run", capsys, dp=level, **{"dp-clip": 1, "dp-noise-multiplier": 1,
                                                                  "dp-delta": delta})
    assert code == 2 and len(err.splitlines()) == 1 and "--dp-delta" in err and "must be below 1/N" in err, err
    assert not (tmp_path / "run").exists()


def test_delta_defaults_to_one_over_n_to_the_1_1_of_the_population_accounted() -> None:
    cfg = _config()
    _, plan = privatize(FedAvg(cfg), cfg, PoissonSampler(), np.full(12, 10), None, None)
    assert plan.settings.delta == pytest.approx(12 ** -1.1)
    cfg = _config(noise_cohort_size=400)  # 12 clients, 4 per round -> a deployment of 1200
    _, plan = privatize(FedAvg(cfg), cfg, PoissonSampler(), np.full(12, 10), None, None)
    assert plan.settings.deployment_delta == pytest.approx(1200 ** -1.1)
    cfg = _config(noise_cohort_size=400, delta=1e-3)  # below 1/12 but not below 1/1200
    with pytest.raises(Exception, match=r"--dp-delta 0.001 must be below 1/N = 0.0008333 \(N = 1200 clients"):
        privatize(FedAvg(cfg), cfg, PoissonSampler(), np.full(12, 10), None, None)
    cfg = _config(mechanism="sample")
    cfg.local_steps = 1
    _, plan = privatize(FedAvg(cfg), cfg, PoissonSampler(), np.full(12, 10), None, lambda r: set())
    assert plan.settings.delta == pytest.approx(120 ** -1.1)


@pytest.mark.parametrize("q, z, steps, delta", [(0.1, 0.3, 3, 1e-3), (0.5, 0.5, 10, 1e-5), (0.01, 1.0, 1000, 1e-5),
                                                (0.2, 0.6, 50, 1e-4)])
def test_rdp_epsilon_is_never_looser_than_dp_accountings_default_orders(q, z, steps, delta) -> None:
    reference = rdp.RdpAccountant()  # dp-accounting's own default order grid
    reference.compose(dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)),
                                                   steps))
    assert Accountant(z, Sampling("poisson", q)).epsilon_rdp(steps, delta) <= reference.get_epsilon(delta) * (1 + 1e-12)


def test_a_sampler_bound_is_named_a_heuristic_in_the_record_and_the_leaderboard(tmp_path: Path) -> None:
    cfg = _config(accept_sampler_bound=True)
    cfg.sampler = "activity"
    sampler = SimpleNamespace(privacy_sampling=None, inclusion_probabilities=lambda pool, k: np.full(len(pool), 0.4),
                              expected_cohort_size=lambda pool, k: 4.0)
    private, plan = privatize(FedAvg(cfg), cfg, sampler, np.full(12, 10), None, None)
    record = plan.record(private, 3, cfg)
    assert record["accounting"] == "heuristic"
    assert record["epsilon"] is None and record["epsilon_rdp"] is None and record["epsilon_pld"] is None
    heuristic = Accountant(1.0, Sampling("poisson", 0.4)).epsilon(3, 12 ** -1.1)
    assert record["epsilon_heuristic"] == pytest.approx(heuristic)
    line = private.round_record(SimpleNamespace(rank=0, round_idx=2))
    assert "dp_epsilon" not in line and line["dp_epsilon_heuristic"] == pytest.approx(record["epsilon_heuristic"])
    exact = _config()
    exact_private, exact_plan = privatize(FedAvg(exact), exact, PoissonSampler(), np.full(12, 10), None, None)
    assert exact_plan.record(exact_private, 3, exact)["accounting"] == "exact"
    make_run(tmp_path, "bound", 0.6, dp=record)
    (row,) = csv.DictReader(io.StringIO(render(leaderboard_rows(load_runs(tmp_path)), "csv")))
    assert float(row["dp_epsilon_heuristic"]) == pytest.approx(record["epsilon_heuristic"])
    assert "dp_epsilon_spent" not in row or row["dp_epsilon_spent"] == ""


# ------------------------------------------------------------------------------ 6. what a DP run publishes


def _weights(out: Path):
    from safetensors.torch import load_file

    return load_file(next((out / "model").glob("*.safetensors")))


def test_a_dp_release_holds_only_protected_outputs_and_noise_from_os_entropy(bbc, tmp_path: Path, capsys) -> None:
    flags = {"dp": "client", "sampler": "poisson", "rounds": 2, "checkpoint-every": None, "dp-clip": 1,
             "dp-noise-multiplier": 1.0, "on-nonfinite": "skip-client"}
    plain = tmp_path / "plain"
    code, err = _train(bbc, plain, capsys, **flags)
    assert code == 0, err
    dp = json.loads((plain / "result.json").read_text())["dp"]
    assert dp["release"] is False and any("train_loss" in o for o in dp["unprotected_outputs"])
    assert any("--seed" in o for o in dp["unprotected_outputs"])
    runs = []
    for name in ("release1", "release2"):
        out = tmp_path / name
        code, err = _train(bbc, out, capsys, **flags, **{"dp-release": "true"})
        assert code == 0, err
        result = json.loads((out / "result.json").read_text())
        assert result["dp"]["release"] is True and result["dp"]["noise_seed"] == "OS entropy, not recorded"
        assert "clients_trained" not in result and "clients" not in result
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert all(line["train_loss"] is None for line in lines) and all(h["train_loss"] is None
                                                                         for h in result["history"])
        assert not (out / "checkpoints").exists() and not (out / "clients.csv").exists()
        runs.append(_weights(out))
    # The same config and seed, different noise: nothing saved reproduces it.
    name = next(k for k in runs[0] if "word_embeddings" in k)
    assert not np.allclose(runs[0][name].numpy(), runs[1][name].numpy())


@pytest.mark.parametrize("flags, named", [({"eval-clients": "all"}, "--eval-clients"),
                                          ({"checkpoint-every": 1}, "--checkpoint-every"),
                                          ({"on-nonfinite": "stop"}, "--on-nonfinite stop"),
                                          ({"dp": "none"}, "--dp-release needs --dp client or --dp sample")])
def test_dp_release_refuses_what_would_publish_unprotected_outputs(bbc, tmp_path: Path, capsys, flags,
                                                                   named) -> None:
    base = {"dp": "client", "dp-clip": 1, "dp-noise-multiplier": 1.0, "on-nonfinite": "skip-client",
            "checkpoint-every": None, "dp-release": "true"}
    code, err = _train(bbc, tmp_path / "run", capsys, **{**base, **flags})
    assert code == 2 and len(err.splitlines()) == 1 and named in err, err
    assert not (tmp_path / "run").exists()

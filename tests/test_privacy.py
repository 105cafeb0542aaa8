"""Differential privacy (fednlp/privacy/): the accountant against dp-accounting itself, the mechanisms'
noise and clipping, adaptive clipping's convergence, rank equality, resume, and the refusals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dp_accounting import dp_event, pld, rdp
from dp_accounting.rdp.rdp_privacy_accountant import NeighborRel

from fednlp.algorithms.fedavg import FedAvg
from fednlp.algorithms.samplers import PoissonSampler, get_sampler
from fednlp.cli import main
from fednlp.config import TrainConfig
from fednlp.data.datafile import read_attributes
from fednlp.errors import UserError
from fednlp.algorithms.interface import ClientUpdate
from fednlp.federation.clients import read_clients
from fednlp.federation.communicator import LocalCommunicator
from fednlp.federation.round_plan import make_context
from fednlp.federation.runtime import Federation
from fednlp.run.session import open_session
from fednlp.privacy.accounting import Accountant, Sampling, calibrate_noise
from fednlp.privacy.client_dp import CONTRIBUTED, UNCLIPPED, with_client_dp
from fednlp.federation.continual import ContinualOptions
from fednlp.privacy.options import DPOptions
from fednlp.privacy.plan import privatize
from fednlp.privacy.settings import ClientDPSettings

FEDNLP = str(Path(sys.executable).with_name("fednlp"))
HERE = Path(__file__).resolve().parent
METHOD = "niid_label_clients=12_alpha=1.0"  # the `bbc` fixture's partition (conftest.py)


# ------------------------------------------------------------------------------ accounting


@pytest.mark.parametrize("q, z, steps", [(0.1, 1.0, 1), (0.1, 1.0, 100), (0.01, 0.8, 1000), (1.0, 2.0, 10)])
def test_poisson_epsilons_match_dp_accounting(q, z, steps) -> None:
    delta = 1e-5
    event = dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), steps)
    direct_rdp = rdp.RdpAccountant().compose(event).get_epsilon(delta)
    direct_pld = pld.PLDAccountant().compose(event).get_epsilon(delta)
    ours = Accountant(z, Sampling("poisson", q))
    # Our RDP grid drops the orders below 1.5 (which rarely win); PLD runs on a 10x coarser pessimistic grid.
    assert ours.epsilon_rdp(steps, delta) == pytest.approx(direct_rdp, rel=0.02)
    assert ours.epsilon_rdp(steps, delta) >= direct_rdp * (1 - 1e-9)
    assert ours.epsilon_pld(steps, delta) == pytest.approx(direct_pld, rel=2e-3)
    assert ours.epsilon_pld(steps, delta) >= direct_pld * (1 - 1e-4)
    assert ours.epsilon(steps, delta) == ours.epsilon_pld(steps, delta)


def test_the_per_round_series_is_the_same_bits_however_it_is_reached() -> None:
    """A run's per-round PLD is composed one round at a time; a resumed run replays the rounds it skipped."""
    delta, sampling = 1e-5, Sampling("poisson", 0.1)
    straight = Accountant(1.0, sampling, incremental=True)
    values = [straight.epsilon_pld(t, delta) for t in range(1, 31)]
    resumed = Accountant(1.0, sampling, incremental=True)
    assert [resumed.epsilon_pld(t, delta) for t in (12, 30, 5)] == [values[11], values[29], values[4]]
    event = dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(1.0)), 30)
    assert values[29] == pytest.approx(pld.PLDAccountant().compose(event).get_epsilon(delta), rel=2e-3)
    assert values == sorted(values)


def test_fixed_size_sampling_is_rdp_with_replace_one_at_half_the_noise() -> None:
    """k of n without replacement: replace-one neighbours move the clipped sum by 2C, so Z/2 per unit."""
    delta, z = 1e-4, 1.2
    event = dp_event.SelfComposedDpEvent(
        dp_event.SampledWithoutReplacementDpEvent(100, 10, dp_event.GaussianDpEvent(z / 2)), 50)
    direct = rdp.RdpAccountant(neighboring_relation=NeighborRel.REPLACE_ONE).compose(event).get_epsilon(delta)
    ours = Accountant(z, Sampling("fixed_size", 0.1, 100, 10))
    assert ours.epsilon_pld(50, delta) is None
    assert ours.epsilon(50, delta) == pytest.approx(direct, rel=0.02)
    assert ours.epsilon(50, delta) > Accountant(z, Sampling("poisson", 0.1)).epsilon(50, delta)


def test_edge_cases_of_the_accountant() -> None:
    assert Accountant(0.0, Sampling("poisson", 0.1)).epsilon(3, 1e-5) == math.inf
    assert Accountant(1.0, Sampling("poisson", 0.1)).epsilon(0, 1e-5) == 0.0
    first, later = (Accountant(1.0, Sampling("poisson", 0.1)).epsilon(t, 1e-5) for t in (5, 6))
    assert later > first


def test_calibrated_noise_meets_the_budget_tightly() -> None:
    sampling, delta = Sampling("poisson", 0.05), 1e-5
    z = calibrate_noise(2.0, delta, 200, sampling)
    assert Accountant(z, sampling).epsilon(200, delta) <= 2.0
    assert Accountant(z * 0.99, sampling).epsilon(200, delta) > 2.0


# ------------------------------------------------------------------------------ the client-level mechanism


def _settings(**overrides) -> ClientDPSettings:
    values = dict(clip=1.0, clip_init=1.0, noise_multiplier=1.0, update_noise_multiplier=1.0, count_stddev=0.0,
                  target_quantile=0.5, clip_lr=0.2, expected_cohort_size=5.0, noise_cohort_size=5.0,
                  sampling=Sampling("poisson", 0.5), delta=1e-5)
    values.update(overrides)
    return ClientDPSettings(**values)


def _mechanism(settings: ClientDPSettings):
    return with_client_dp(FedAvg, settings)(TrainConfig(data="d", partition="p", method="m"))


def _update(mechanism, vector: torch.Tensor, slots: torch.Tensor) -> ClientUpdate:
    index = {name: i for i, name in enumerate(mechanism.slots)}
    return ClientUpdate(0, 0.3, 10, 1, 1.0, 1.0, 1.0, [vector], slots, index)


def test_noise_std_is_z_c_over_the_expected_cohort() -> None:
    z, c, m = 1.5, 0.7, 8.0
    mechanism = _mechanism(_settings(noise_multiplier=z, update_noise_multiplier=z, clip=c, expected_cohort_size=m,
                                     noise_cohort_size=m))
    global_flat = torch.zeros(200_000)
    ctx = make_context(seed=1, round_idx=3, cohort=np.arange(4), n_clients=20, expected_cohort_size=m)
    mechanism.server_step(global_flat, torch.zeros(200_000), ctx)
    # 200k draws: the sample std is within 1% of the truth with overwhelming probability (sd ~ 0.16%).
    assert float(global_flat.std()) == pytest.approx(z * c / m, rel=0.01)
    assert abs(float(global_flat.mean())) < 5 * z * c / m / math.sqrt(200_000)
    # The same round's context gives the same noise (every rank adds the same).
    again = torch.zeros(200_000)
    ctx2 = make_context(seed=1, round_idx=3, cohort=np.arange(4), n_clients=20, expected_cohort_size=m)
    mechanism.server_step(again, torch.zeros(200_000), ctx2)
    assert torch.equal(again, global_flat)


def test_noise_cohort_size_scales_the_noise_as_if_that_many_clients_took_part() -> None:
    mechanism = _mechanism(_settings(expected_cohort_size=5.0, noise_cohort_size=500.0))
    global_flat = torch.zeros(200_000)
    mechanism.server_step(global_flat, torch.zeros(200_000), make_context(0, 0, np.arange(5), 10, 5.0))
    assert float(global_flat.std()) == pytest.approx(1.0 * 1.0 / 500, rel=0.01)


def test_updates_are_clipped_to_c_and_weighted_by_one_over_the_expected_cohort() -> None:
    mechanism = _mechanism(_settings(clip=2.0, expected_cohort_size=4.0))
    ctx = make_context(0, 0, np.arange(3), 10, 4.0)
    big, small = torch.full((16,), 3.0), torch.full((16,), 0.1)  # norms 12 and 0.4
    for vector, norm in ((big, 2.0), (small, 0.4)):
        update = _update(mechanism, vector, torch.zeros(0, dtype=torch.float64))
        mechanism.process_client_update(update, ctx)
        assert update.norm() == pytest.approx(norm, rel=1e-6)
        assert update.weight == 0.25


def test_adaptive_clipping_converges_to_the_target_quantile_without_noise() -> None:
    """Known norm distribution (log-normal), no noise: C converges to its gamma-quantile, from above and below,
    and moves the way the paper says (shrinks while more than gamma of the clients are unclipped)."""
    rng = np.random.default_rng(0)
    for gamma, start in ((0.3, 10.0), (0.8, 0.01)):
        mechanism = _mechanism(_settings(clip=None, clip_init=start, noise_multiplier=0.0, update_noise_multiplier=0.0,
                                         target_quantile=gamma, clip_lr=0.2, expected_cohort_size=50.0,
                                         noise_cohort_size=50.0))
        global_flat = torch.zeros(4)
        history = []
        for round_idx in range(400):
            ctx = make_context(0, round_idx, np.arange(50), 1000, 50.0)
            slots = torch.zeros(len(mechanism.slots), dtype=torch.float64)
            for norm in rng.lognormal(0.0, 1.0, size=50):
                vector = torch.tensor([norm, 0.0, 0.0, 0.0])
                mechanism.process_client_update(_update(mechanism, vector, slots), ctx)
            sums = dict(zip(mechanism.slots, slots.tolist()))
            mechanism.server_step(global_flat, torch.zeros(4), ctx.with_sums(sums))
            history.append(mechanism.clip)
        if start > 1:
            assert history[0] < start  # all unclipped (b = 1 > gamma): C shrinks
        else:
            assert history[0] > start  # all clipped (b = 0 < gamma): C grows
        target = float(np.exp(0.0 + 1.0 * __import__("scipy").stats.norm.ppf(gamma)))  # log-normal quantile
        assert float(np.mean(history[-100:])) == pytest.approx(target, rel=0.1)
        assert set(mechanism.slots) >= {UNCLIPPED, CONTRIBUTED}


def test_no_noise_and_no_clipping_equals_fedavg_with_equal_client_weights(bbc, tmp_path: Path) -> None:
    def config(**dp):
        data, part = bbc
        values = dict(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=1,
                      clients_per_round=5, local_steps=2, batch_size=8, lr=0.05, optimizer="sgd", max_seq_length=32,
                      eval_max_examples=16, out=str(tmp_path / "run"), overwrite=True, seed=4, **dp)
        c = TrainConfig(**values)
        c.validate()
        return c

    class EqualWeights(FedAvg):
        def process_client_update(self, update, ctx):
            update.weight = 1.0 / ctx.expected_cohort_size

    weights = []
    for cfg, make in ((config(), EqualWeights),
                      (config(dp=DPOptions("client", clip="inf", noise_multiplier=0.0)), None)):
        session = open_session(cfg, LocalCommunicator(), "x")
        clients = read_clients(cfg.partition, cfg.method, session.data.n_examples, cfg.data)
        sampler = get_sampler(cfg.sampler)()
        algorithm = make(cfg) if make else privatize(FedAvg(cfg), cfg, sampler, clients.sizes, None, None)[0]
        federation = Federation(session, algorithm, clients, sampler)
        federation.run_round(0)
        weights.append(federation.global_flat.clone())
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=1e-7)


def test_an_empty_poisson_round_still_adds_the_noise(bbc, tmp_path: Path) -> None:
    data, part = bbc
    cfg = TrainConfig(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=1,
                      clients_per_round=1, local_steps=1, batch_size=8, max_seq_length=32, sampler="poisson",
                      out=str(tmp_path / "run"), seed=0, dp=DPOptions("client", clip="1.0", noise_multiplier=1.0))
    cfg.validate()
    sampler = PoissonSampler()
    empty = next(r for r in range(200) if len(sampler.sample(cfg.seed, r, np.ones(12), 1)) == 0)
    session = open_session(cfg, LocalCommunicator(), "x")
    clients = read_clients(cfg.partition, cfg.method, session.data.n_examples, cfg.data)
    algorithm, _ = privatize(FedAvg(cfg), cfg, sampler, clients.sizes, None, None)
    federation = Federation(session, algorithm, clients, sampler)
    before = federation.global_flat.clone()
    federation.run_round(empty)
    moved = federation.global_flat - before
    assert float(moved.std()) == pytest.approx(1.0 * 1.0 / 1, rel=0.01)  # Z C / E|S| with E|S| = 1


def test_poisson_sampler_cohorts_vary_around_k_and_may_be_empty() -> None:
    sampler, sizes = PoissonSampler(), np.ones(100)
    counts = [len(sampler.sample(7, r, sizes, 10)) for r in range(400)]
    assert abs(np.mean(counts) - 10) < 0.5 and min(counts) < 10 < max(counts)
    assert sampler.expected_cohort_size(sizes, 10) == 10.0
    assert np.array_equal(sampler.sample(7, 3, sizes, 10), sampler.sample(7, 3, sizes, 10))
    assert any(len(sampler.sample(0, r, np.ones(12), 1)) == 0 for r in range(50))


# ------------------------------------------------------------------------------ sample level


def test_sample_level_per_client_epsilons_match_dp_accounting(bbc, tmp_path: Path) -> None:
    """A real DP-SGD run: each client's epsilon from its own rate, steps and rounds; the run's is the max."""
    out = tmp_path / "sample"
    done = _run(_args(bbc, out, rounds=2, **{"dp": "sample", "dp-clip": "1.0", "dp-noise-multiplier": "1.1",
                                            "clients-per-round": 3}))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    dp = result["dp"]
    rows = (out / "dp_clients.csv").read_text().splitlines()[1:]
    assert len(rows) == dp["clients_trained"] > 0
    epsilons = []
    for row in rows:
        client, examples, rate, steps, rounds, eps_pld, eps_rdp = row.split(",")
        assert float(rate) == pytest.approx(min(1.0, 8 / int(examples)))
        assert int(steps) == 2 * int(rounds)
        event = dp_event.SelfComposedDpEvent(
            dp_event.PoissonSampledDpEvent(float(rate), dp_event.GaussianDpEvent(1.1)), int(steps))
        assert float(eps_pld) == pytest.approx(pld.PLDAccountant().compose(event).get_epsilon(dp["delta"]), rel=2e-3)
        epsilons.append(float(eps_pld))
    assert dp["epsilon"] == max(epsilons) and dp["epsilon_median"] == pytest.approx(float(np.median(epsilons)))
    n_examples = len(read_attributes(bbc[0])["index_list"])
    assert dp["delta"] == pytest.approx(sum(read_clients(bbc[1], METHOD, n_examples, bbc[0]).sizes) ** -1.1)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["dp_epsilon_rdp_max"] == pytest.approx(dp["epsilon_rdp"])


def test_ghost_clipping_gives_the_weights_of_per_example_gradients(bbc, tmp_path: Path) -> None:
    """--dp-grad-sample ghost computes each example's norm without its gradient, then backpropagates the
    clip-weighted losses: the same clipped sums and the same noise draws as the hooks mode, so the same run."""
    weights = {}
    for mode in ("hooks", "ghost"):
        out = tmp_path / mode
        done = _run(_args(bbc, out, rounds=2, **{"dp": "sample", "dp-clip": "0.5", "dp-noise-multiplier": "0.7",
                                                "clients-per-round": 3, "dp-grad-sample": mode}))
        assert done.returncode == 0, done.stderr[-2000:]
        result, _, weights[mode] = _final(out)
        assert result["dp"]["per_example_clipping"] == mode
    torch.testing.assert_close(weights["ghost"], weights["hooks"], rtol=0, atol=1e-5)


def test_ghost_clipping_refuses_tied_weights_with_one_line() -> None:
    from transformers import AutoModelForCausalLM

    from fednlp.privacy.sample_dp import with_sample_dp
    from fednlp.privacy.settings import SampleDPSettings
    from fednlp.tasks.models import build_auto_model

    model = build_auto_model(AutoModelForCausalLM, "tiny-gpt2", is_decoder=True)  # wte tied to lm_head
    config = TrainConfig(data="d", partition="p", method="m", optimizer="sgd")
    for mode, refused in (("ghost", True), ("hooks", False)):
        algorithm = with_sample_dp(FedAvg, SampleDPSettings(1.0, 1.0, 8, 1, None, 1e-5, grad_sample_mode=mode))(config)
        if refused:
            with pytest.raises(UserError, match="ties weights.*--dp-grad-sample hooks"):
                algorithm.attach_model(model)
        else:
            algorithm.attach_model(model)


# ------------------------------------------------------------------------------ runs: ranks, resume, refusals


def _args(bbc, out: Path, **flags) -> list[str]:
    data, part = bbc
    values = {"data": data, "partition": part, "method": METHOD, "model": "tiny-bert", "rounds": 3,
              "clients-per-round": 4, "local-steps": 2, "batch-size": 8, "max-seq-length": 32, "lr": 0.05,
              "optimizer": "sgd", "eval-max-examples": 32, "eval-every": 3, "checkpoint-every": 1, "seed": 2,
              "out": out, "overwrite": "true", "quiet": "true", **flags}
    return [x for k, v in values.items() for x in (f"--{k}", str(v))]


DP_FLAGS = {"dp": "client", "dp-clip": "adaptive", "dp-clip-init": "0.5", "dp-noise-multiplier": "0.1",
            "sampler": "poisson", "algorithm": "fedavgm"}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _mpi(ranks: int) -> list[str]:
    return [] if ranks == 1 else ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", "--bind-to",
                                  "none", "-x", "PYTHONPATH", "-x", "HF_HUB_OFFLINE", "-x", "OMP_NUM_THREADS"]


def _run(args: list[str], ranks: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(_mpi(ranks) + [FEDNLP, "train", *args], capture_output=True, text=True, timeout=600,
                          env=_env())


def _final(out: Path) -> tuple[dict, list[dict], torch.Tensor]:
    result = json.loads((out / "result.json").read_text())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = sorted((out / "checkpoints").glob("round-*.pt"))[-1]
    return result, lines, torch.load(last, weights_only=False)["global_weights"]


@pytest.fixture(scope="module")
def straight(bbc, tmp_path_factory) -> tuple[dict, list[dict], torch.Tensor]:
    """Adaptive client-level DP over FedAvgM with Poisson sampling, one process, uninterrupted."""
    out = tmp_path_factory.mktemp("dp") / "straight"
    done = _run(_args(bbc, out, **DP_FLAGS))
    assert done.returncode == 0, done.stderr[-2000:]
    return _final(out)


def test_one_two_and_three_ranks_add_the_same_noise(bbc, tmp_path: Path, straight) -> None:
    result, lines, weights = straight
    assert [line["round"] for line in lines] == [1, 2, 3] and all("dp_epsilon" in line for line in lines)
    assert result["dp"]["adaptive_clipping"]["final_clip"] != 0.5
    for ranks in (2, 3):
        out = tmp_path / f"r{ranks}"
        done = _run(_args(bbc, out, **DP_FLAGS), ranks)
        assert done.returncode == 0, done.stderr[-2000:]
        other, other_lines, other_weights = _final(out)
        torch.testing.assert_close(other_weights, weights, rtol=0, atol=1e-5)
        assert other["dp"]["adaptive_clipping"]["final_clip"] == pytest.approx(
            result["dp"]["adaptive_clipping"]["final_clip"], rel=1e-6)


def test_a_killed_run_resumes_with_the_same_accounting_and_weights(bbc, tmp_path: Path, straight) -> None:
    result, lines, weights = straight
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([FEDNLP, "train", *_args(bbc, out, **DP_FLAGS)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    marker = out / "checkpoints" / "round-000001.sha256"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists() and not (out / "result.json").exists()
    done = _run(["--resume", str(out)])
    assert done.returncode == 0, done.stderr[-2000:]
    resumed, resumed_lines, resumed_weights = _final(out)
    torch.testing.assert_close(resumed_weights, weights, rtol=0, atol=1e-6)
    for key in ("epsilon", "epsilon_rdp", "epsilon_pld", "rounds"):
        assert resumed["dp"][key] == result["dp"][key], key
    assert [l["dp_epsilon"] for l in resumed_lines] == [l["dp_epsilon"] for l in lines]
    assert resumed["dp"]["adaptive_clipping"]["final_clip"] == pytest.approx(
        result["dp"]["adaptive_clipping"]["final_clip"], rel=1e-6)


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"dp-clip": "1", "dp-noise-multiplier": "-1"}, "--dp-noise-multiplier must be 0 or more"),
        ({"dp-clip": "0", "dp-noise-multiplier": "1"}, "--dp-clip must be a positive number or 'adaptive'"),
        ({"dp-clip": "-2", "dp-noise-multiplier": "1"}, "--dp-clip must be a positive number or 'adaptive'"),
        ({"dp-clip": "1", "dp-noise-multiplier": "1", "dp-delta": "1"}, "--dp-delta must lie strictly between 0 and 1"),
        ({"dp-clip": "1"}, "needs --dp-noise-multiplier Z or a budget --dp-epsilon E"),
        ({"dp-clip": "adaptive", "dp-epsilon": "0.01", "clients-per-round": "2"}, "must stay below 2 sigma_b"),
        ({"dp-clip": "1", "dp-noise-multiplier": "1", "sampler": "activity"}, "has no exact privacy accounting"),
        ({"dp-clip": "1", "dp-noise-multiplier": "1", "dp-epsilon": "2", "rounds": "50", "sampler": "poisson"},
         "the largest feasible --rounds is "),
        ({"dp-clip": "inf", "dp-noise-multiplier": "1"}, "--dp-clip inf (no clipping) is only allowed with"),
        ({"dp": "sample", "dp-clip": "1", "dp-noise-multiplier": "1", "dp-grad-sample": "fast"},
         "--dp-grad-sample must be one of"),  # its own context (under --dp client it is out of context)
        ({"dp": "sample", "dp-clip": "1", "dp-noise-multiplier": "1", "dp-grad-sample": "ghost", "task": "lm",
          "model": "tiny-gpt2"}, "ties weights"),
    ],
)
def test_bad_dp_input_is_one_line_exit_2_before_training(bbc, tmp_path: Path, capsys, flags, message) -> None:
    data, part = bbc
    args = {"data": str(data), "partition": str(part), "method": METHOD, "model": "tiny-bert", "rounds": "1",
            "clients-per-round": "4", "local-steps": "1", "out": str(tmp_path / "run"), "dp": "client", **flags}
    code = main(["train", *[x for k, v in args.items() for x in (f"--{k}", v)]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_the_largest_feasible_rounds_named_is_feasible(bbc) -> None:
    data, part = bbc
    cfg = TrainConfig(data=str(data), partition=str(part), method=METHOD, rounds=50, clients_per_round=4,
                      sampler="poisson", dp=DPOptions("client", clip="1", noise_multiplier=1.0, epsilon=2.0))
    cfg.validate()
    sampler, sizes = PoissonSampler(), np.ones(12)
    with pytest.raises(UserError) as refused:
        privatize(FedAvg(cfg), cfg, sampler, sizes, None, None)
    feasible = int(str(refused.value).rsplit(" ", 1)[1])
    assert 1 <= feasible < 50
    cfg.rounds = feasible
    privatize(FedAvg(cfg), cfg, sampler, sizes, None, None)  # accepted
    cfg.rounds = feasible + 1
    with pytest.raises(UserError):
        privatize(FedAvg(cfg), cfg, sampler, sizes, None, None)


def test_dp_sgd_under_continual_is_refused_and_client_dp_is_not(bbc) -> None:
    """A continual client's holding (so DP-SGD's rate B / n_k) changes every period, which the per-client ledger
    does not account; client-level sampling does not depend on holdings."""
    data, part = bbc
    cfg = TrainConfig(data=str(data), partition=str(part), method=METHOD, rounds=4, clients_per_round=4,
                      sampler="poisson", dp=DPOptions("sample", clip="1", noise_multiplier=1.0), local_steps=1,
                      continual=ContinualOptions(enabled=True, periods=2, rounds_per_period=2))
    cfg.validate()
    sizes = np.full(12, 20)
    with pytest.raises(UserError, match="--dp sample with --continual true"):
        privatize(FedAvg(cfg), cfg, PoissonSampler(), sizes, None, lambda r: set())
    cfg.dp.mechanism = "client"
    privatize(FedAvg(cfg), cfg, PoissonSampler(), sizes, None, lambda r: set())  # accepted


def test_sparse_embedding_updates_stay_on_for_client_dp_and_go_off_for_dp_sgd() -> None:
    """Client-level clipping is exact on the sparse path (ClientUpdate.norm covers the touched rows); DP-SGD
    noises every row, so its client optimizer must switch the sparse path off."""
    from transformers import AutoModelForSequenceClassification

    from fednlp.federation.client_updates import sparse_embedding
    from fednlp.federation.flat import FlatParameters
    from fednlp.privacy.sample_dp import with_sample_dp
    from fednlp.privacy.settings import SampleDPSettings
    from fednlp.tasks.models import build_auto_model

    model = build_auto_model(AutoModelForSequenceClassification, "tiny-bert", num_labels=2)
    flat = FlatParameters(model)
    config = TrainConfig(data="d", partition="p", method="m", optimizer="sgd")
    client = _mechanism(_settings())
    sample = with_sample_dp(FedAvg, SampleDPSettings(1.0, 1.0, 8, 1, None, 1e-5))(config)
    assert sparse_embedding(model, flat, config, client) is not None
    assert sparse_embedding(model, flat, config, sample) is None


def test_a_dp_mechanism_is_a_plugin_found_by_name() -> None:
    """A new --dp level is one DPMechanism subclass registered by name (in fednlp, or through the
    `fednlp.dp_mechanisms` entry-point group): --dp's values and help, the config's checks and privatize() find
    it with no other change (docs/privacy.md, "Adding a mechanism")."""
    from types import SimpleNamespace

    from fednlp.privacy.mechanisms import DP_MECHANISMS, DPMechanism, dp_choices, dp_help
    from fednlp.privacy.plan import PrivacyPlan

    calls = []

    class Recorded(DPMechanism):
        help = "the algorithm as it is, its calls recorded"

        def check(self, options, config):
            calls.append(("check", options.clip))

        def privatize(self, algorithm, config, sampler, sizes, pool, active_of):
            calls.append(("privatize", len(pool)))
            return algorithm, PrivacyPlan(self.name, SimpleNamespace(noise_multiplier=0.0, delta=0.0), [])

    DP_MECHANISMS.register("recorded")(Recorded)
    try:
        assert dp_choices() == ("none", "client", "sample", "recorded")
        assert dp_help().endswith("sample (DP-SGD inside each client) or recorded (the algorithm as it is, its "
                                  "calls recorded)")
        cfg = TrainConfig(data="d", partition="p", method="m", dp=DPOptions("recorded", clip="2",
                                                                            noise_multiplier=1.0))
        cfg.validate()
        algorithm = FedAvg(cfg)
        same, plan = privatize(algorithm, cfg, PoissonSampler(), np.ones(12), np.arange(10), None)
        assert same is algorithm and plan.level == "recorded"
        assert calls == [("check", "2"), ("privatize", 10)]
    finally:
        del DP_MECHANISMS.entries["recorded"]
    with pytest.raises(UserError, match="--dp must be one of none, client, sample, got 'recorded'"):
        cfg.validate()

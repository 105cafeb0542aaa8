"""Server steps against hand computations over three rounds (state carried), FedProx's gradient term,
the registry, and short end-to-end runs of `fednlp train` with the new algorithms and samplers."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.algorithms.interface import Algorithm, parse_options
from fednlp.algorithms.fedavg import FedAvg
from fednlp.algorithms.fedprox import FedProx
from fednlp.algorithms.registry import Registry, get_algorithm, load_algorithms, register_algorithm
from fednlp.cli import main
from fednlp.config import TrainConfig
from fednlp.errors import UserError

METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)
DELTAS = [1.0, 4.0, -2.0]  # the aggregated update of rounds 0, 1, 2 in the hand computations


def _config(**options) -> TrainConfig:
    """Run options as TrainConfig fields, the algorithm's own options (mu, beta1, ...) into algorithm_args,
    as the command line puts them."""
    from dataclasses import fields

    own = {f.name for f in fields(TrainConfig)}
    args = {k: options.pop(k) for k in list(options) if k not in own}
    return TrainConfig(data="d.h5", partition="p.h5", method="m", algorithm_args=args, **options)


def _run(algorithm: Algorithm, deltas=DELTAS, x0: float = 0.0) -> list[float]:
    """Global weight after each round, one coordinate."""
    x = torch.tensor([x0])
    path = []
    for round_idx, delta in enumerate(deltas):
        algorithm.server_step(x, torch.tensor([delta]), round_idx)
        path.append(float(x))
    return path


# Worked by hand with eta = 1, beta1 = beta2 = 0.5, tau = 1 (so v_{-1} = tau^2 = 1, m_{-1} = 0) and
# Delta = 1, 4, -2; m_t = (m_{t-1} + Delta_t) / 2 = 0.5, 2.25, 0.125 for the three FedOpt rules.
HAND = {
    # Adam: v = (v + Delta^2) / 2 = 1, 8.5, 6.25
    "fedadam": [0.5 / 2, 0.25 + 2.25 / (math.sqrt(8.5) + 1), 0.25 + 2.25 / (math.sqrt(8.5) + 1) + 0.125 / 3.5],
    # Yogi: v = v - 0.5 Delta^2 sign(v - Delta^2) = 1 (sign 0), 1 + 8 = 9, 9 - 2 = 7
    "fedyogi": [0.25, 0.25 + 2.25 / 4, 0.8125 + 0.125 / (math.sqrt(7) + 1)],
    # Adagrad: v = v + Delta^2 = 2, 18, 22
    "fedadagrad": [0.5 / (math.sqrt(2) + 1),
                   0.5 / (math.sqrt(2) + 1) + 2.25 / (math.sqrt(18) + 1),
                   0.5 / (math.sqrt(2) + 1) + 2.25 / (math.sqrt(18) + 1) + 0.125 / (math.sqrt(22) + 1)],
    # FedAvgM, momentum 0.5: v = 0.5 v + Delta = 1, 4.5, 0.25
    "fedavgm": [1.0, 5.5, 5.75],
    # torch Adam on g = -Delta (bias-corrected: m_hat = -1, -3, -1/7; v_hat = 1, 11, 7; eps = tau = 1)
    "fedopt-adam": [0.5, 0.5 + 3 / (math.sqrt(11) + 1), 0.5 + 3 / (math.sqrt(11) + 1) + (1 / 7) / (math.sqrt(7) + 1)],
    # torch SGD, momentum 0.5 = FedAvgM
    "fedopt-sgd": [1.0, 5.5, 5.75],
    # FedAvg with server_lr 0.5
    "fedavg": [0.5, 2.5, 1.5],
}
OPTIONS = {
    "fedadam": dict(algorithm="fedadam", server_lr=1.0, beta1=0.5, beta2=0.5, tau=1.0),
    "fedyogi": dict(algorithm="fedyogi", server_lr=1.0, beta1=0.5, beta2=0.5, tau=1.0),
    "fedadagrad": dict(algorithm="fedadagrad", server_lr=1.0, beta1=0.5, beta2=0.5, tau=1.0),
    "fedavgm": dict(algorithm="fedavgm", server_momentum=0.5),
    "fedopt-adam": dict(algorithm="fedopt", server_optimizer="adam", server_lr=1.0, beta1=0.5, beta2=0.5, tau=1.0),
    "fedopt-sgd": dict(algorithm="fedopt", server_optimizer="sgd", server_lr=1.0, server_momentum=0.5),
    "fedavg": dict(algorithm="fedavg", server_lr=0.5),
}


def _make(case: str) -> Algorithm:
    config = _config(**OPTIONS[case])
    return get_algorithm(config.algorithm)(config)


@pytest.mark.parametrize("case", sorted(HAND))
def test_server_step_matches_the_hand_computation_over_three_rounds(case: str) -> None:
    assert _run(_make(case)) == pytest.approx(HAND[case], rel=1e-6)


def _reference(rule: str, x0: np.ndarray, deltas: list[np.ndarray], eta: float, b1: float, b2: float, tau: float):
    """Reddi et al., Algorithm 2, in float64, line by line."""
    x, m, v = x0.copy(), np.zeros_like(x0), np.full_like(x0, tau**2)
    for d in deltas:
        m = b1 * m + (1 - b1) * d
        if rule == "fedadagrad":
            v = v + d**2
        elif rule == "fedyogi":
            v = v - (1 - b2) * d**2 * np.sign(v - d**2)
        else:
            v = b2 * v + (1 - b2) * d**2
        x = x + eta * m / (np.sqrt(v) + tau)
    return x


@pytest.mark.parametrize("rule", ["fedadam", "fedyogi", "fedadagrad"])
def test_adaptive_rules_match_the_paper_on_vectors(rule: str) -> None:
    """Paper defaults (beta 0.9/0.99, tau 1e-3) on updates of mixed scale and sign, where Yogi's sign flips."""
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=50)
    deltas = [rng.normal(scale=s, size=50) for s in (1e-3, 1e-1, 1e-2)]
    config = _config(algorithm=rule, server_lr=0.03)
    algorithm = get_algorithm(rule)(config)
    x = torch.tensor(x0, dtype=torch.float64)
    for r, d in enumerate(deltas):
        algorithm.server_step(x, torch.tensor(d), r)
    expected = _reference(rule, x0, deltas, 0.03, 0.9, 0.99, 1e-3)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_fedopt_sgd_without_momentum_is_fedavg_and_adam_takes_no_momentum_argument() -> None:
    assert _run(get_algorithm("fedopt")(_config(algorithm="fedopt", server_lr=0.5))) == pytest.approx(HAND["fedavg"])
    algorithm = _make("fedopt-adam")
    _run(algorithm)
    group = algorithm.optimizer.param_groups[0]
    assert type(algorithm.optimizer) is torch.optim.Adam and "momentum" not in group and group["betas"] == (0.5, 0.5)


@pytest.mark.parametrize("case", sorted(HAND))
def test_server_state_survives_a_checkpoint(case: str) -> None:
    """Two rounds, the state saved as a checkpoint would and loaded into a fresh instance, a third round:
    the same as uninterrupted."""
    first = _make(case)
    x = torch.tensor([0.0])
    for r, d in enumerate(DELTAS[:2]):
        first.server_step(x, torch.tensor([d]), r)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = _make(case)
    second.load_state_dict(torch.load(buffer))
    second.server_step(x, torch.tensor([DELTAS[2]]), 2)
    assert float(x) == pytest.approx(HAND[case][2], rel=1e-6)
    assert second.state_dict().keys() == first.state_dict().keys()


def test_fedprox_adds_mu_times_the_distance_to_the_global_model() -> None:
    params = [torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True), torch.tensor([0.5, -1.0], requires_grad=True),
              torch.tensor([7.0], requires_grad=True)]
    global_params = [torch.tensor([[0.0, 2.5], [3.0, 1.0]]), torch.tensor([0.5, 1.0]), torch.tensor([0.0])]
    params[0].grad = torch.tensor([[0.1, 0.1], [0.1, 0.1]])
    params[1].grad = torch.tensor([-1.0, 0.0])  # params[2] took no part in the loss: no gradient
    FedProx(_config(algorithm="fedprox", mu=0.5)).adjust_gradients(params, global_params)
    # grad + 0.5 * (w - w_global), by hand:
    torch.testing.assert_close(params[0].grad, torch.tensor([[0.6, -0.15], [0.1, 1.6]]))
    torch.testing.assert_close(params[1].grad, torch.tensor([-1.0, -1.0]))
    assert params[2].grad is None
    assert not params[0].grad.requires_grad and params[0].data_ptr() != params[0].grad.data_ptr()


def test_fedprox_with_mu_zero_leaves_gradients_bit_identical_and_needs_mu() -> None:
    p = torch.randn(5, requires_grad=True)
    p.grad = torch.randn(5)
    before = p.grad.clone()
    FedProx(_config(algorithm="fedprox", mu=0.0)).adjust_gradients([p], [torch.randn(5)])
    assert torch.equal(p.grad, before)
    with pytest.raises(UserError, match="needs --mu"):
        FedProx(_config(algorithm="fedprox"))


def test_fedprox_mu_zero_round_equals_fedavg_exactly(bbc, tmp_path: Path) -> None:
    from fednlp.federation.clients import read_clients
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.federation.runtime import Federation
    from fednlp.run.session import open_session

    data, part = bbc
    config = TrainConfig(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=1,
                         clients_per_round=3, local_steps=3, batch_size=8, lr=0.05, optimizer="sgd",
                         max_seq_length=32, eval_max_examples=16, out=str(tmp_path / "run"), seed=1, algorithm_args={"mu": 0.0})
    session = open_session(config, LocalCommunicator(), "x")
    clients = read_clients(config.partition, config.method, session.data.n_examples, config.data)
    fedavg_config = _with(config, algorithm_args={})  # mu is fedprox's option: fedavg refuses it
    federation = Federation(session, FedAvg(fedavg_config), clients)
    start = federation.global_flat.clone()
    results = {}
    for name, algorithm in [("fedavg", FedAvg(fedavg_config)), ("fedprox0", FedProx(config)),
                            ("fedprox", FedProx(_with(config, algorithm_args={"mu": 5.0})))]:
        federation.global_flat.copy_(start)
        federation.algorithm = federation.trainer.algorithm = algorithm
        federation.run_round(0)
        results[name] = federation.global_flat.clone()
    assert torch.equal(results["fedprox0"], results["fedavg"])
    assert not torch.equal(results["fedprox"], results["fedavg"])
    # The proximal term pulls each client back toward the round's global model: a shorter step.
    assert (results["fedprox"] - start).norm() < (results["fedavg"] - start).norm()


def _with(config: TrainConfig, **changes) -> TrainConfig:
    from dataclasses import replace

    return replace(config, **changes)


def test_registry_refuses_duplicates_and_names_the_known_algorithms() -> None:
    known = load_algorithms()
    assert {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedopt"} <= set(known)
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("fedavg")(type("Other", (Algorithm,), {}))
    with pytest.raises(UserError, match="--algorithm 'nope' is not a known algorithm; known: fedadagrad, fedadam"):
        get_algorithm("nope")
    registry = Registry("thing", "--thing", group="fednlp.no_such_group", base=Algorithm)
    thing = registry.register("a")(type("Thing", (Algorithm,), {}))
    assert registry.get("a") is thing and thing.name == "a"
    with pytest.raises(UserError, match="--thing 'b' is not a known thing; known: a"):
        registry.get("b")


def test_algorithm_options_and_server_lr_rules() -> None:
    from dataclasses import dataclass

    from fednlp.algorithms.interface import algorithm_option

    @dataclass(frozen=True)
    class Opts:
        needed: float = algorithm_option("something required")
        clip: float = algorithm_option("a clip", default=1.0)
        steps: int = algorithm_option("steps", default=2)

    assert parse_options({"clip": 0.5, "needed": 1.0}, Opts, "x") == Opts(needed=1.0, clip=0.5, steps=2)
    with pytest.raises(UserError, match=r"^--algorithm x needs --needed \(something required\)$"):
        parse_options({}, Opts, "x")
    with pytest.raises(UserError, match=r"^--size is not an option of --algorithm x \(it takes --clip, --needed, --steps\)$"):
        parse_options({"size": 3, "needed": 1.0}, Opts, "x")
    with pytest.raises(UserError, match="--clip must be a finite number, got nan"):
        parse_options({"clip": float("nan"), "needed": 1.0}, Opts, "x")
    with pytest.raises(UserError, match=r"^--mu is not an option of --algorithm fedavg \(it takes no options of its own\)$"):
        FedAvg(_config(mu=0.1))
    with pytest.raises(UserError, match="--algorithm fedprox needs --mu"):
        FedProx(_config(algorithm="fedprox"))
    with pytest.raises(UserError, match=r"--mu must be 0 or more, got -1"):
        FedProx(_config(algorithm="fedprox", mu=-1.0))
    with pytest.raises(UserError, match=r"--beta2 must be in \[0, 1\), got 1.0"):
        get_algorithm("fedadam")(_config(algorithm="fedadam", server_lr=1.0, beta2=1.0))
    for name in ("fedadam", "fedyogi", "fedadagrad", "fedopt"):
        with pytest.raises(UserError, match=f"--algorithm {name} needs --server-lr"):
            get_algorithm(name)(_config(algorithm=name))
    assert FedAvg(_config()).server_lr == 1.0


def test_algorithm_options_are_flags_and_yaml_keys_declared_once(bbc, tmp_path: Path) -> None:
    """--mu and --beta1 come from the algorithms' Options (not from TrainConfig), work as flags and as YAML
    keys, and config.yaml keeps them beside the run's other options."""
    from fednlp.algorithms.registry import algorithm_option_fields
    from fednlp.config import config_dict

    declared = algorithm_option_fields()
    assert {"mu", "beta1", "beta2", "tau", "server_momentum", "server_optimizer"} <= declared.keys()
    assert declared["mu"][0] is float and "proximal" in declared["mu"][1]
    data, part = bbc
    yaml_config = tmp_path / "c.yaml"
    yaml_config.write_text("algorithm: fedprox\nmu: 0.25\nrounds: 1\n")
    code = main(["train", "--config", str(yaml_config), "--data", str(data), "--partition", str(part), "--method",
                 METHOD, "--clients-per-round", "2", "--local-steps", "1", "--batch-size", "8", "--max-seq-length",
                 "16", "--eval-max-examples", "16", "--out", str(tmp_path / "run"), "--save-model", "false"])
    assert code == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["config"]["mu"] == 0.25 and "algorithm_args" not in result["config"]
    assert "mu: 0.25" in (tmp_path / "run" / "config.yaml").read_text()
    assert config_dict(_config(algorithm="fedprox", mu=0.5))["mu"] == 0.5


def _train(bbc, out: Path, *flags: str) -> dict:
    data, part = bbc
    code = main(["train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
                 "--rounds", "2", "--clients-per-round", "3", "--local-steps", "2", "--batch-size", "8",
                 "--max-seq-length", "32", "--eval-every", "2", "--eval-max-examples", "32", "--out", str(out), *flags])
    assert code == 0
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("flags", [
    ("--algorithm", "fedadam", "--server-lr", "0.01", "--sampler", "activity"),
    ("--algorithm", "fedprox", "--mu", "0.01", "--sampler", "uniform_ht"),
])
def test_fednlp_train_runs_the_new_algorithms_and_samplers(bbc, tmp_path: Path, flags) -> None:
    result = _train(bbc, tmp_path / "run", *flags)
    assert result["algorithm"] == flags[1] and result["sampler"] == flags[-1]
    assert result["rounds"] == 2 and 0 <= result["value"] <= 1
    assert result["config"]["algorithm"] == flags[1]


def test_qfedavg_skipping_a_nonfinite_client_follows_algorithm_2_over_the_kept_clients(bbc, tmp_path: Path) -> None:
    """--on-nonfinite skip-client under q-FedAvg: the step is Li et al.'s Algorithm 2 over the clients kept,
    w + sum_k F_k^q L (w_k - w) / sum_k h_k, not rescaled by the sampler's weights of the skipped client."""
    from fednlp.algorithms.qfedavg import QFedAvg
    from fednlp.federation.clients import read_clients
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.federation.runtime import Federation
    from fednlp.run.session import open_session

    data, part = bbc
    config = TrainConfig(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=1,
                         clients_per_round=3, local_steps=2, batch_size=8, lr=0.05, optimizer="sgd",
                         max_seq_length=32, eval_max_examples=16, out=str(tmp_path / "run"), seed=1,
                         algorithm="qfedavg", on_nonfinite="skip-client", algorithm_args={"q": 1.0})
    session = open_session(config, LocalCommunicator(), "x")
    clients = read_clients(config.partition, config.method, session.data.n_examples, config.data)
    kept: list[tuple[torch.Tensor, float]] = []  # (delta, F_k) of each client that reached the algorithm

    class Recording(QFedAvg):
        def process_client_update(self, update, ctx) -> None:
            delta = torch.zeros_like(federation.global_flat)  # the update in the flat layout (sparse rows too)
            federation.client_updates.accumulate(delta, 1.0, update.parts)
            kept.append((delta.double(), float(update.loss_global)))
            super().process_client_update(update, ctx)

    federation = Federation(session, Recording(config), clients)
    plan = federation.plan(0)
    diverging = min(plan.active)
    assert plan.weight_of(diverging) > 0 and len(plan.active) == 3
    train_client = federation.train_client

    def nonfinite_first(client, round_plan):
        update = train_client(client, round_plan)
        if client == diverging:
            update.parts[-1].view(-1)[0] = float("nan")
        return update

    federation.train_client = nonfinite_first  # type: ignore[method-assign]
    start = federation.global_flat.clone().double()
    _, record = federation.run_round(0)
    assert record["clients_skipped_nonfinite"] == 1 and len(kept) == 2
    q, lipschitz = 1.0, 1.0 / config.lr
    numerator = sum(f**q * lipschitz * d for d, f in kept)  # -sum_k F_k^q Delta w_k, Delta w_k = L (w - w_k)
    h = sum(q * f ** (q - 1) * float((lipschitz * d).norm()) ** 2 + lipschitz * f**q for d, f in kept)
    expected = numerator / h
    step = federation.global_flat.double() - start
    # The step's scale along the paper's step is 1 (it was the sampler's 1 / (1 - w_skipped) before), and every
    # weight agrees up to the float32 rounding of the global weights.
    assert float(step @ expected / (expected @ expected)) == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(step, expected, rtol=1e-4, atol=1e-7)

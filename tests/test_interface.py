"""The round's contract (fednlp/algorithms/interface.py): every hook the runtime calls is declared with a default
and a docstring; docs/extending.md's toy DP-FedAvg runs as it stands there (its clipping and its noise
checked); an algorithm option named like one of `fednlp train`'s own is one line naming the algorithm."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from fednlp.algorithms.interface import Algorithm, algorithm_option
from fednlp.algorithms.registry import ALGORITHMS, get_algorithm
from fednlp.cli import main
from fednlp.config import TrainConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)
HOOKS = ("check_model", "attach_model", "make_client_optimizer", "begin_round", "client_batches", "backward",
         "adjust_gradients", "step_without_examples", "process_client_update", "server_step", "round_record",
         "state_dict", "load_state_dict")
ATTRIBUTES = {"default_server_lr": 1.0, "Options": None, "slots": (), "needs_global_loss": False,
              "fixed_denominator": False, "normalises_itself": False, "keeps_untouched_rows": False, "per_example_loss": False,
              "dp_compatible": True}


def test_every_hook_is_declared_with_a_default_and_a_docstring() -> None:
    for hook in HOOKS:
        assert hook in vars(Algorithm) and callable(vars(Algorithm)[hook]), hook
        assert (vars(Algorithm)[hook].__doc__ or "").strip(), hook
    for name, default in ATTRIBUTES.items():
        assert vars(Algorithm)[name] == default, name
    # A hook of the table in docs/extending.md for each one.
    table = DOCS.read_text()
    for name in (*HOOKS, *ATTRIBUTES):
        assert f"`{name}" in table, name


def test_the_defaults_are_fedavg_and_do_nothing_else() -> None:
    algorithm = Algorithm(TrainConfig(data="d", partition="p", method="m", server_lr=0.5))
    model = torch.nn.Linear(2, 1)
    algorithm.check_model(model)
    algorithm.attach_model(model)
    assert algorithm.make_client_optimizer(list(model.parameters())) is None
    assert algorithm.client_batches(0, 0, 10, None) is None  # the runtime's own batch plan
    losses = model(torch.ones(3, 2)).squeeze(1)
    algorithm.backward(losses)
    assert model.bias.grad is not None and float(model.bias.grad) == pytest.approx(1.0)  # the mean's gradient
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    algorithm.step_without_examples(optimizer)  # no example, no step
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    x = torch.zeros(3)
    algorithm.server_step(x, torch.ones(3), None)
    assert x.tolist() == [0.5, 0.5, 0.5] and algorithm.round_record(None) == {} and algorithm.state_dict() == {}


@pytest.fixture
def toy_dp(monkeypatch):
    """The code block of docs/extending.md's worked plugin, executed as a module of its own (as a user's file
    would be, without this file's __future__ imports) and registered as `toy_dp` for this test only."""
    section = DOCS.read_text().split("## A worked plugin: a toy DP-FedAvg", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("toy_dp_from_docs")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up there
    exec(compile(code, str(DOCS), "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    cls = module.ToyDPFedAvg
    ALGORITHMS.load()  # the built-ins first, then the plugin beside them
    monkeypatch.setitem(ALGORITHMS.entries, "toy_dp", cls)
    monkeypatch.setattr(cls, "name", "toy_dp", raising=False)
    return code, cls


def _flags(bbc, out: Path, *extra: str) -> list[str]:
    data, part = bbc
    return ["train", "--data", str(data), "--partition", str(part), "--partition-group", METHOD, "--model",
            "tiny-bert", "--rounds", "2", "--clients-per-round", "4", "--local-steps", "2", "--batch-size", "8",
            "--max-seq-length", "32", "--eval-max-examples", "16", "--optimizer", "sgd", "--lr", "0.05", "--quiet",
            "true", "--save-model", "false", "--out", str(out), *extra]


def test_the_docs_toy_dp_plugin_clips_every_update_and_adds_the_round_generators_noise(toy_dp, bbc,
                                                                                          tmp_path: Path) -> None:
    from fednlp.algorithms.samplers import get_sampler
    from fednlp.federation.clients import read_clients
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.federation.runtime import Federation
    from fednlp.run.random_streams import Stream, round_generator
    from fednlp.run.session import open_session

    code, cls = toy_dp
    assert len(code.splitlines()) <= 40  # the page promises a plugin of at most 40 lines

    # Through `fednlp train`, its options as flags: every client of every round is clipped.
    assert main(_flags(bbc, tmp_path / "cli", "--algorithm", "toy_dp", "--toy-clip", "0.001", "--toy-noise", "0.5")) == 0
    result = json.loads((tmp_path / "cli" / "result.json").read_text())
    assert result["algorithm"] == "toy_dp" and result["config"]["toy_clip"] == 0.001
    assert [h["toy_dp_clipped"] for h in result["history"]] == [4.0, 4.0]

    # One round from the same global weights without noise, then with: the step without noise is the mean of
    # updates clipped to C (norm <= C); the difference is exactly z C / M times the round generator's draws.
    clip, z, m = 0.001, 0.5, 4
    config = TrainConfig(data=str(bbc[0]), partition=str(bbc[1]), method=METHOD, model="tiny-bert", rounds=1,
                         clients_per_round=m, local_steps=2, batch_size=8, max_seq_length=32, optimizer="sgd",
                         lr=0.05, out=str(tmp_path / "round"), seed=3, algorithm="toy_dp",
                         algorithm_args={"toy_clip": clip, "toy_noise": 0.0})
    config.validate()
    session = open_session(config, LocalCommunicator(), "toy")
    clients = read_clients(config.partition, config.method, session.data.n_examples, config.data)
    federation = Federation(session, get_algorithm("toy_dp")(config), clients, get_sampler(config.sampler)())
    start = federation.global_flat.clone()
    _, record = federation.run_round(0)
    clean = federation.global_flat - start
    assert record["toy_dp_clipped"] == m and 0 < float(clean.norm()) <= clip * (1 + 1e-4)
    noisy_config = dataclasses.replace(config, algorithm_args={"toy_clip": clip, "toy_noise": z})
    federation.algorithm = federation.trainer.algorithm = cls(noisy_config)
    federation.global_flat.copy_(start)
    federation.run_round(0)
    noise = federation.global_flat - start - clean
    expected = torch.randn(noise.shape, generator=round_generator(config.seed, 0, Stream.SERVER_NOISE)) * z * clip / m
    torch.testing.assert_close(noise, expected, rtol=0, atol=1e-6)


class Clashing(Algorithm):
    """An algorithm whose one option is named like one of fednlp train's (set per test)."""


@pytest.mark.parametrize("option", ["seed", "resume", "partition_group"])
def test_an_option_named_like_a_core_flag_is_one_line_naming_the_plugin(monkeypatch, capsys, option) -> None:
    options = dataclasses.make_dataclass("ClashingOptions", [(option, int, algorithm_option("clash", default=1))],
                                         frozen=True)
    monkeypatch.setattr(Clashing, "Options", options)
    ALGORITHMS.load()
    monkeypatch.setitem(ALGORITHMS.entries, "clashing", Clashing)
    assert main(["train", "--algorithm", "fedavg", "--data", "d.h5"]) == 2
    err = capsys.readouterr().err
    flag = "--" + option.replace("_", "-")
    assert err == (f"fednlp: error: algorithm clashing ({__name__}) declares option {flag}, which fednlp train "
                   f"already has; rename that field of its Options (ClashingOptions)\n")

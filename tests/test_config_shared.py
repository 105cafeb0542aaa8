"""One config file serves `fednlp train` and `fednlp centralized`, and a flag replaces the config's value of the
same option or of the option it conflicts with (README: "flags win")."""

from __future__ import annotations

from pathlib import Path

import pytest

from fednlp.algorithms.registry import algorithm_option_fields
from fednlp.cli import build_parser
from fednlp.config import CentralizedConfig, TrainConfig, load_config
from fednlp.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SHARED = (TrainConfig, algorithm_option_fields())


def parsed(*argv: str):
    return build_parser(list(argv)).parse_args(list(argv))


def centralized(*argv: str) -> CentralizedConfig:
    """As cmd_centralized loads its config."""
    return load_config(CentralizedConfig, parsed("centralized", *argv), shared_with=SHARED)


def train(*argv: str) -> TrainConfig:
    return load_config(TrainConfig, parsed("train", *argv), None, algorithm_option_fields())


def test_centralized_reads_a_config_shared_with_train():
    config = centralized("--config", str(REPO / "configs/20news.yaml"), "--epochs", "3")
    assert (config.data, config.model, config.lr, config.epochs) == ("data/20news.h5", "minilm", 5e-5, 3.0)


def test_centralized_drops_federation_sections_and_algorithm_options_but_refuses_unknown_keys(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("data: d.h5\nalgorithm: fedprox\nmu: 0.1\nrounds: 3\ndp: {mechanism: client, clip: 1.0}\n"
                    "continual: {periods: 2}\nbatch_size: 4\n")
    assert centralized("--config", str(path)).batch_size == 4
    path.write_text("data: d.h5\nrounds: 3\nbatchsize: 4\n")  # a key neither command knows
    with pytest.raises(UserError, match="unknown option 'batchsize'"):
        centralized("--config", str(path))


def test_a_flag_replaces_the_configs_conflicting_option_and_both_as_flags_are_refused():
    config = train("--config", str(REPO / "configs/20news.yaml"), "--local-steps", "1")
    assert (config.local_steps, config.local_epochs) == (1, None)
    with pytest.raises(UserError, match="not both"):  # one layer saying both is still a contradiction
        train("--config", str(REPO / "configs/20news.yaml"), "--local-epochs", "1", "--local-steps", "2")


def test_centralized_steps_flag_replaces_the_configs_epochs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: d.h5\nepochs: 2\n")
    config = centralized("--config", str(path), "--steps", "5")
    assert (config.steps, config.epochs) == (5, None)


def test_a_resumed_runs_epochs_give_way_to_the_configs_steps(tmp_path):
    path = tmp_path / "more.yaml"
    path.write_text("local_steps: 3\n")
    base = {"data": "d.h5", "partition": "p.h5", "method": "uniform", "local_epochs": 1.0, "local_steps": None}
    config = load_config(TrainConfig, parsed("train", "--config", str(path)), base, algorithm_option_fields())
    assert (config.local_steps, config.local_epochs) == (3, None)


def train_help() -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser(["train", "--help"]).parse_args(["train", "--help"])
    return " ".join(out.getvalue().split())  # argparse's line wrapping undone


def test_train_help_lists_what_the_registries_hold(monkeypatch):
    from fednlp.algorithms.samplers import SAMPLERS, Sampler
    from fednlp.tasks.models import ALIASES
    from fednlp.tasks.registry import TASKS

    monkeypatch.setattr(SAMPLERS, "entries", dict(SAMPLERS.load()))
    SAMPLERS.add("only_in_this_test", type("OnlyInThisTest", (Sampler,), {}))  # as a plugin would
    text = train_help()
    assert "client sampler: " + ", ".join(sorted(SAMPLERS)) in text
    assert "poisson" in sorted(SAMPLERS) and "only_in_this_test" in text
    assert "task head: " + ", ".join(sorted(TASKS)) in text and "lm" in TASKS
    assert "a built-in: " + ", ".join(sorted(ALIASES)) in text and "tiny-gpt2" in ALIASES

"""Every YAML config shipped in configs/ (at any depth) loads and validates, so shipped configs never rot."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from fednlp.algorithms.registry import algorithm_option_fields, get_algorithm
from fednlp.config import CentralizedConfig, TrainConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def load(path: Path, cls: type):
    """As `fednlp train --config PATH` / `fednlp centralized --config PATH` load it, validation included."""
    args = argparse.Namespace(config=str(path))
    extra = algorithm_option_fields() if cls is TrainConfig else {}
    return load_config(cls, args, None, extra) if extra else load_config(cls, args)


def option(config, name: str):
    """An option wherever the config keeps it: a field, or the algorithm's options."""
    return getattr(config, name) if hasattr(config, name) else getattr(config, "algorithm_args", {}).get(name)


def config_class(path: Path) -> type:
    """A federated config names a partition; a centralized one does not."""
    keys = {str(k).replace("-", "_") for k in yaml.safe_load(path.read_text())}
    return TrainConfig if keys & {"partition", "method", "algorithm", "rounds"} else CentralizedConfig


def test_configs_are_found():
    names = {p.relative_to(p.parents[1]).as_posix() for p in CONFIGS if p.parent.name == "fednlp"}
    tasks = ("text_classification", "seq_tagging", "span_extraction", "seq2seq")
    assert names == {f"fednlp/{t}-{a}.yaml" for t in tasks for a in ("fedavg", "fedprox", "fedopt")}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_config_loads_and_validates(path):
    cls = config_class(path)
    config = load(path, cls)
    if cls is TrainConfig:
        get_algorithm(config.algorithm)(config)  # the algorithm accepts its options (e.g. fedprox needs mu)


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.parent.name == "fednlp"], ids=lambda p: p.name)
def test_fednlp_recipes_hold_fednlps_values(path):
    config = load(path, TrainConfig)
    assert (config.batch_size, config.max_seq_length, config.local_epochs) == (32, 256, 1)
    assert (config.clients_per_round, config.max_grad_norm, config.eval_max_examples) == (10, 1.0, None)
    assert config.method.endswith("clients=100") or "clients=100_" in config.method
    recipe = path.stem.split("-")[1]
    if recipe == "fedopt":  # FedNLP's FedOPT: AdamW clients, plain SGD server with lr 1.0
        assert (config.optimizer, config.lr, option(config, "server_optimizer"), config.server_lr) == (
            "adamw", 5e-5, "sgd", 1.0)
    else:
        assert (config.optimizer, config.lr, config.server_lr) == ("sgd", 0.1, 1.0)
    if recipe == "fedprox":
        assert option(config, "mu") == (1.0 if path.stem.startswith("text_classification") else 0.5)


def test_partition_group_is_the_flag_and_method_its_alias(tmp_path) -> None:
    """`fednlp train --partition-group` names a group of the partition file (`fednlp partition --method` names a
    method); --method and the YAML key `method` keep working."""
    import argparse

    from fednlp.config import TrainConfig, add_config_arguments, load_config, read_yaml_config

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    for flag in ("--partition-group", "--method"):
        args = parser.parse_args(["--data", "d.h5", "--partition", "p.h5", flag, "uniform_clients=10"])
        assert load_config(TrainConfig, args).method == "uniform_clients=10"
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("partition_group: niid_label_clients=10_alpha=1.0\n")
    assert read_yaml_config(yaml_file, TrainConfig) == {"method": "niid_label_clients=10_alpha=1.0"}


def _parser() -> argparse.ArgumentParser:
    from fednlp.config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig, algorithm_option_fields())
    return parser


def test_defaults_then_yaml_then_flags(tmp_path) -> None:
    """config.py's precedence: defaults < --config YAML < flags; an algorithm's option from either place lands
    in algorithm_args; bools parse true/false words both ways."""
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data: d.h5\npartition: p.h5\nmethod: g\nrounds: 7\nlr: 0.5\nalgorithm: fedprox\n"
                         "mu: 0.1\nquiet: 'yes'\n")
    args = _parser().parse_args(["--config", str(yaml_file), "--lr", "0.25", "--mu", "0.3", "--overwrite", "false"])
    config = load_config(TrainConfig, args, None, algorithm_option_fields())
    assert (config.rounds, config.lr, config.batch_size) == (7, 0.25, 16)  # YAML, flag over YAML, default
    assert config.algorithm_args == {"mu": 0.3} and config.quiet is True and config.overwrite is False


@pytest.mark.parametrize("text, message", [
    ("bogus: 1\n", "unknown option 'bogus'"),
    ("rounds: many\n", "rounds must be int, got 'many'"),
    ("quiet: perhaps\n", "quiet must be bool, got 'perhaps'"),
    ("- a list\n", "must hold a mapping of option: value"),
])
def test_bad_yaml_is_one_line(tmp_path, text: str, message: str) -> None:
    from fednlp.config import read_yaml_config
    from fednlp.errors import UserError

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(text)
    with pytest.raises(UserError, match=message):
        read_yaml_config(yaml_file, TrainConfig, algorithm_option_fields())


def test_a_bool_flag_alone_means_true_and_still_takes_a_value() -> None:
    """`--quiet` alone is true, as argparse's and HF's flags are; `--save-model false` and `--overwrite true` still
    parse; the flags after a bare one are not swallowed. `fednlp partition --overwrite` likewise."""
    from fednlp.cli import build_parser

    required = ["--data", "d.h5", "--partition", "p.h5", "--method", "g"]
    args = build_parser(["train"]).parse_args(["train", "--quiet", "--save-model", "false", "--overwrite", "true",
                                               "--continual", "--periods", "2", "--rounds-per-period", "3", *required])
    config = load_config(TrainConfig, args)
    assert (config.quiet, config.save_model, config.overwrite, config.continual.enabled) == (True, False, True, True)
    assert config.rounds == 6
    dp = ["--dp", "client", "--dp-clip", "1", "--dp-noise-multiplier", "1"]  # the flag applies only with --dp
    args = build_parser(["train"]).parse_args(["train", *required, *dp, "--dp-accept-sampler-bound"])
    assert load_config(TrainConfig, args).dp.accept_sampler_bound is True
    args = build_parser(["centralized"]).parse_args(["centralized", "--data", "d.h5", "--quiet", "no"])
    assert load_config(CentralizedConfig, args).quiet is False
    partition = ["partition", "--data", "d.h5", "--out", "p.h5", "--method", "uniform", "--clients", "3"]
    assert build_parser(["partition"]).parse_args([*partition, "--overwrite"]).overwrite is True
    assert build_parser(["partition"]).parse_args([*partition, "--overwrite", "false"]).overwrite is False
    assert build_parser(["partition"]).parse_args(partition).overwrite is False


def test_a_bool_flag_refuses_other_words_in_one_line(capsys) -> None:
    from fednlp.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", "d.h5", "--quiet", "perhaps"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "expected true or false, got 'perhaps'" in err


DP_FLAT = "data: d.h5\npartition: p.h5\nmethod: g\ndp: client\ndp_clip: 1.0\ndp-noise-multiplier: 1.1\n"
DP_SECTION = "data: d.h5\npartition: p.h5\nmethod: g\ndp:\n  mechanism: client\n  clip: 1.0\n  noise_multiplier: 1.1\n"


@pytest.mark.parametrize("text", [DP_FLAT, DP_SECTION], ids=["flat keys", "dp section"])
def test_dp_options_load_from_a_section_from_flat_keys_and_from_flags_alike(tmp_path, text: str) -> None:
    """DPOptions is TrainConfig's `dp` section: YAML `dp: {clip: ...}` or the older flat `dp_clip: ...` (configs,
    committed run records, a resumed run's config.yaml), and the flat flags `--dp-clip ...`, give one config."""
    from fednlp.privacy.options import DPOptions

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(text)
    from_yaml = load_config(TrainConfig, _parser().parse_args(["--config", str(yaml_file)]))
    flags = ["--data", "d.h5", "--partition", "p.h5", "--method", "g", "--dp", "client", "--dp-clip", "1.0",
             "--dp-noise-multiplier", "1.1"]
    from_flags = load_config(TrainConfig, _parser().parse_args(flags))
    assert from_yaml == from_flags
    assert from_yaml.dp == DPOptions(mechanism="client", clip="1.0", noise_multiplier=1.1)
    over = load_config(TrainConfig, _parser().parse_args(["--config", str(yaml_file), "--dp-clip", "2"]))
    assert (over.dp.clip, over.dp.noise_multiplier) == ("2", 1.1)  # a flag overrides its key in the section


def test_config_yaml_has_the_dp_section_and_round_trips(tmp_path) -> None:
    """config.yaml (what --resume reads) holds `dp:` as a mapping and reads back to the same config; result.json's
    config keeps one key per flag (dp, dp_clip, ...), as the records written before sections do."""
    from fednlp.config import build_config, config_dict, config_sections, read_yaml_config

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(DP_SECTION + "mu: 0.5\nalgorithm: fedprox\n")
    config = load_config(TrainConfig, _parser().parse_args(["--config", str(yaml_file)]), None,
                         algorithm_option_fields())
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(config_sections(config)))
    written = yaml.safe_load(saved.read_text())
    assert written["dp"]["mechanism"] == "client" and written["dp"]["clip"] == "1.0" and written["mu"] == 0.5
    assert "dp_clip" not in written
    back = build_config(TrainConfig, read_yaml_config(saved, TrainConfig, algorithm_option_fields()),
                        algorithm_option_fields())
    back.validate()
    assert back == config
    flat = config_dict(config)
    assert (flat["dp"], flat["dp_clip"], flat["dp_noise_multiplier"], flat["mu"]) == ("client", "1.0", 1.1, 0.5)


@pytest.mark.parametrize("text, message", [
    ("dp:\n  clipp: 1\n", "unknown option dp.clipp; known in dp: "),
    ("dp:\n  epsilon: lots\n", "dp_epsilon must be float, got 'lots'"),
    ("dp: bogus\ndata: d.h5\npartition: p.h5\nmethod: g\n", "--dp must be one of none, client, sample, got 'bogus'"),
])
def test_a_bad_dp_section_is_one_line(tmp_path, text: str, message: str) -> None:
    from fednlp.errors import UserError

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(text)
    with pytest.raises(UserError, match=message) as refused:
        load_config(TrainConfig, _parser().parse_args(["--config", str(yaml_file)]))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("text", ["continual: true\nperiods: 2\nrounds-per-period: 3\n",
                                  "continual:\n  enabled: true\n  periods: 2\n  rounds_per_period: 3\n"],
                         ids=["flat keys", "continual section"])
def test_continual_options_load_from_a_section_and_from_flat_keys_alike(tmp_path, text: str) -> None:
    from fednlp.config import config_dict, config_sections
    from fednlp.federation.continual import ContinualOptions

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data: d.h5\npartition: p.h5\nmethod: g\n" + text)
    config = load_config(TrainConfig, _parser().parse_args(["--config", str(yaml_file)]))
    assert config.continual == ContinualOptions(enabled=True, periods=2, rounds_per_period=3) and config.rounds == 6
    assert config_sections(config)["continual"]["enabled"] is True and config_dict(config)["continual"] is True

"""Issue 29, round three of reliability: options out of their context are refused (never ignored yet recorded),
a refused run leaves no run directory, TensorBoard shows every step once (centralized runs too, and a resumed
run), and the messages of canaries, --dp-noise-cohort-size and natural partitions say what is true."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from conftest import prepare_small
from fednlp.cli import main
from fednlp.config import TrainConfig
from fednlp.errors import UserError
from fednlp.fairness.augment_options import AugmentOptions
from fednlp.federation.continual import ContinualOptions
from fednlp.privacy.options import DPOptions

SMALL_GROUP = "uniform_clients=4"
TINY = ("--model", "tiny-bert", "--max-seq-length", "16", "--batch-size", "4", "--quiet", "true",
        "--save-model", "false")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    _, data, part = prepare_small(tmp_path_factory.mktemp("small"))
    return data, part


@pytest.fixture(scope="module")
def users(tmp_path_factory) -> Path:
    """24 examples by 4 users over time (an order field): u0..u2 write 5 each in the first 15, u9 the rest."""
    root = tmp_path_factory.mktemp("users")
    rows = [f"text {i},{'pos' if i % 2 else 'neg'},u{i % 3 if i < 15 else 9},{i}" for i in range(24)]
    (root / "u.csv").write_text("text,label,user,time\n" + "\n".join(rows) + "\n")
    assert main(["data", "prepare", "--dataset", "csv", "--source", str(root / "u.csv"), "--text-column", "text",
                 "--label-column", "label", "--user-column", "user", "--time-column", "time", "--test-fraction",
                 "0.25", "--seed", "0", "--out", str(root / "u.h5")]) == 0
    return root / "u.h5"


def _train(data: Path, part: Path, group: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--partition", str(part), "--method", group, *TINY, "--rounds", "1",
            "--clients-per-round", "2", "--local-steps", "1", "--out", str(out), *extra]


def _one_line(capsys: pytest.CaptureFixture[str], code: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("fednlp: error: "), err
    for word in words:
        assert word in err, (word, err)
    return err


# ------------------------------------------------------------------------- 1. options out of their context

def _config(**values) -> TrainConfig:
    return TrainConfig(data="d.h5", partition="p.h5", method="g", **values)


DP = dict(mechanism="client", clip="1", noise_multiplier=1.0)
ADAPTIVE = dict(mechanism="client", clip="adaptive", noise_multiplier=1.0)
SAMPLE = {**DP, "mechanism": "sample"}
#: (option given out of its context, the same option in its context, the refusal's words)
CONTEXTS = [
    ({"dp": DPOptions(epsilon=1.0)}, {"dp": DPOptions(mechanism="client", clip="1", epsilon=1.0)},
     "--dp-epsilon 1.0 needs --dp client or --dp sample (this run has --dp none)"),
    ({"dp": DPOptions(noise_cohort_size=100)}, {"dp": DPOptions(**DP, noise_cohort_size=100)},
     "--dp-noise-cohort-size 100 needs --dp client or --dp sample"),
    ({"dp": DPOptions(noise_multiplier=1.0)}, {"dp": DPOptions(**DP)},
     "--dp-noise-multiplier 1.0 needs --dp client or --dp sample"),
    ({"dp": DPOptions(clip="1")}, {"dp": DPOptions(**DP)}, "--dp-clip 1 needs --dp"),
    ({"dp": DPOptions(delta=1e-6)}, {"dp": DPOptions(**DP, delta=1e-6)}, "--dp-delta 1e-06 needs --dp"),
    ({"dp": DPOptions(accept_sampler_bound=True)}, {"dp": DPOptions(**DP, accept_sampler_bound=True)},
     "--dp-accept-sampler-bound needs --dp"),
    ({"dp": DPOptions(**SAMPLE, noise_cohort_size=100)}, {"dp": DPOptions(**DP, noise_cohort_size=100)},
     "--dp-noise-cohort-size 100 needs --dp client (this run has --dp sample)"),
    ({"dp": DPOptions(**DP, grad_sample="ghost")}, {"dp": DPOptions(**SAMPLE, grad_sample="ghost")},
     "--dp-grad-sample ghost needs --dp sample"),
    ({"dp": DPOptions(**DP, clip_init=0.5)}, {"dp": DPOptions(**ADAPTIVE, clip_init=0.5)},
     "--dp-clip-init 0.5 needs --dp-clip adaptive (this run has --dp-clip 1)"),
    ({"dp": DPOptions(**DP, target_quantile=0.9)}, {"dp": DPOptions(**ADAPTIVE, target_quantile=0.9)},
     "--dp-target-quantile 0.9 needs --dp-clip adaptive"),
    ({"dp": DPOptions(**DP, clip_lr=0.5)}, {"dp": DPOptions(**ADAPTIVE, clip_lr=0.5)},
     "--dp-clip-lr 0.5 needs --dp-clip adaptive"),
    ({"activity_power": 0.5}, {"sampler": "activity", "activity_power": 0.5},
     "--activity-power 0.5 needs --sampler activity (this run has --sampler uniform); leave it out or "
     "change --sampler"),
    ({"eval_clients_every": 2}, {"eval_clients": "all", "eval_clients_every": 2},
     "--eval-clients-every 2 needs --eval-clients (this run has no --eval-clients)"),
    ({"frozen_cache_dtype": "fp32"}, {"freeze_layers": 1, "cache_frozen": True, "frozen_cache_dtype": "fp32"},
     "--frozen-cache-dtype fp32 needs --cache-frozen true"),
    ({"continual": ContinualOptions(periods=3, rounds_per_period=1)},
     {"continual": ContinualOptions(enabled=True, periods=3, rounds_per_period=1)},
     "--periods 3 needs --continual true"),
    ({"continual": ContinualOptions(storage_limit=5)},
     {"continual": ContinualOptions(enabled=True, periods=3, rounds_per_period=1, storage_limit=5)},
     "--storage-limit 5 needs --continual true"),
    ({"augment": AugmentOptions(fraction=0.5)}, {"augment": AugmentOptions(method="counterfactual", fraction=0.5)},
     "--augment-fraction 0.5 needs --augment counterfactual (this run has --augment none)"),
    # the data file decides a task left out: checked again once it is read (the command-line test below)
    ({"task": "classification", "num_beams": 2}, {"task": None, "num_beams": 2},
     "--num-beams 2 needs --task seq2seq"),
    ({"task": "classification", "eval_num_beams": 1}, {"task": "seq2seq", "eval_num_beams": 1},
     "--eval-num-beams 1 needs --task seq2seq"),
    ({"task": "lm", "max_target_length": 8}, {"task": "seq2seq", "max_target_length": 8},
     "--max-target-length 8 needs --task seq2seq"),
    ({"task": "seq2seq", "doc_stride": 64}, {"task": "qa", "doc_stride": 64},
     "--doc-stride 64 needs --task qa"),
    ({"task": "tagging", "max_answer_length": 10}, {"task": "qa", "max_answer_length": 10},
     "--max-answer-length 10 needs --task qa"),
]


@pytest.mark.parametrize("bad, good, message", CONTEXTS, ids=[m.split()[0] for _, _, m in CONTEXTS])
def test_an_option_out_of_its_context_is_refused_and_in_it_accepted(bad, good, message) -> None:
    with pytest.raises(UserError) as refused:
        _config(**bad).validate()
    assert message in str(refused.value)
    _config(**good).validate()


@pytest.mark.parametrize("extra, message", [
    (("--dp-epsilon", "2"), "--dp-epsilon 2.0 needs --dp client or --dp sample"),
    (("--dp-noise-cohort-size", "100"), "--dp-noise-cohort-size 100 needs --dp client or --dp sample"),
    (("--activity-power", "0.5"), "--activity-power 0.5 needs --sampler activity"),
    # the task that the data file decided
    (("--num-beams", "2"), "--num-beams 2 needs --task seq2seq (this run has --task classification)"),
])
def test_out_of_context_on_the_command_line_is_one_line_and_writes_nothing(small, tmp_path, capsys, extra,
                                                                             message) -> None:
    data, part = small
    _one_line(capsys, main(_train(data, part, SMALL_GROUP, tmp_path / "run", *extra)), message)
    assert list(tmp_path.iterdir()) == []


def test_dp_noise_cohort_size_zero_and_negative_get_the_same_true_words() -> None:
    for value in (0, -5):
        with pytest.raises(UserError, match=f"^--dp-noise-cohort-size must be positive, got {value}$"):
            _config(dp=DPOptions(**DP, noise_cohort_size=value)).validate()


# ------------------------------------------------------------------------- 2. no run directory after exit 2

def _refusals(small, users, tmp_path) -> dict[str, list[str]]:
    data, part = small
    continual = ("--continual", "true", "--rounds-per-period", "1")
    user_part = tmp_path / "users_p.h5"
    assert main(["partition", "--data", str(users), "--out", str(user_part), "--method", "natural", "--field",
                 "user"]) == 0
    return {
        "no order field": _train(data, part, SMALL_GROUP, tmp_path / "run", *continual, "--periods", "2"),
        "periods 1000": _train(users, user_part, "natural_clients=4_field=user", tmp_path / "run", *continual,
                               "--periods", "1000"),
        "tensorboard missing": _train(data, part, SMALL_GROUP, tmp_path / "run", "--report-to", "tensorboard"),
    }


@pytest.mark.parametrize("case, message", [
    ("no order field", "--continual needs an order or time field"),
    ("periods 1000", "--periods 1000 exceeds the"),
    ("tensorboard missing", "--report-to tensorboard needs the `tensorboard` package"),
])
@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing-dir"])
def test_a_run_refused_once_the_data_is_read_leaves_its_run_directory_as_it_was(
        small, users, tmp_path, capsys, monkeypatch, case, message, existing) -> None:
    argv = _refusals(small, users, tmp_path)[case]
    run = tmp_path / "run"
    if existing:  # an unfinished run's directory: nothing in it may change either
        run.mkdir()
        (run / "notes.txt").write_text("mine\n")
    if case == "tensorboard missing":
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    capsys.readouterr()
    _one_line(capsys, main(argv), message)
    if existing:
        assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    else:
        assert not run.exists()


# ------------------------------------------------------------------------- 3. TensorBoard: every step once

def _steps(log_dir: Path, tag: str = "train_loss") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_centralized_report_to_tensorboard_writes_each_epoch_once(small, tmp_path) -> None:
    data, _ = small
    out = tmp_path / "central"
    argv = ["centralized", "--data", str(data), *TINY, "--epochs", "2", "--report-to", "tensorboard", "--out", str(out)]
    assert main(argv) == 0
    assert _steps(out / "tensorboard") == [1, 2]
    assert _steps(out / "tensorboard", "accuracy") == [1, 2]
    assert main([*argv, "--overwrite", "true"]) == 0  # a fresh run in the same directory starts a fresh log
    assert _steps(out / "tensorboard") == [1, 2]


def test_a_resumed_run_shows_each_round_once_in_tensorboard(small, tmp_path) -> None:
    data, part = small
    run = tmp_path / "run"
    argv = _train(data, part, SMALL_GROUP, run, "--report-to", "tensorboard", "--checkpoint-every", "2")
    argv[argv.index("--rounds") + 1] = "3"
    assert main(argv) == 0
    assert _steps(run / "tensorboard") == [1, 2, 3]
    # Killed after round 3 was logged but before its checkpoint: the newest checkpoint is round 2's.
    for suffix in (".pt", ".sha256"):
        (run / "checkpoints" / f"round-000003{suffix}").unlink()
    (run / "result.json").unlink()
    assert main(["train", "--resume", str(run), "--quiet", "true"]) == 0
    assert _steps(run / "tensorboard") == [1, 2, 3]
    assert _steps(run / "tensorboard", "accuracy") == [1, 2, 3]


# ------------------------------------------------------------------------- 4. messages that say what is true

def _insert(data: Path, part: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["canaries", "insert", "--data", str(data), "--partition", str(part), "--method", SMALL_GROUP,
            "--out-data", str(tmp_path / "c.h5"), "--template", "my pin is {secret}", "--secret", "digits:4",
            "--repeats", "1", *extra]


def test_canaries_insert_without_label_says_so(small, tmp_path, capsys) -> None:
    data, part = small
    err = _one_line(capsys, main(_insert(data, part, tmp_path, "--out-partition", str(tmp_path / "c_p.h5"))),
                    "no --label given", "needs --label, one of the data file's labels (neg, pos)")
    assert "None" not in err
    assert list(tmp_path.iterdir()) == []


def test_canaries_insert_never_advises_an_option_it_does_not_have(small, tmp_path, capsys) -> None:
    data, part = small
    held = tmp_path / "held_p.h5"
    shutil.copy(part, held)  # holds the group, made from the original data file: another partition
    before = held.read_bytes()
    err = _one_line(capsys, main(_insert(data, part, tmp_path, "--out-partition", str(held), "--label", "pos")),
                    "already holds group 'uniform_clients=4'", "choose another --out-partition")
    assert "--overwrite" not in err
    assert held.read_bytes() == before and not (tmp_path / "c.h5").exists()


def test_natural_partition_finds_its_clients_and_checks_them_only_when_given(users, tmp_path, capsys) -> None:
    out = tmp_path / "p.h5"
    base = ["partition", "--data", str(users), "--out", str(out), "--method", "natural", "--field", "user"]
    assert main(base) == 0
    assert "wrote group natural_clients=4_field=user" in capsys.readouterr().out
    assert main([*base, "--min-examples", "4"]) == 0  # keeps 2 of the 4 users, --clients found the same way
    assert "natural_clients=" in capsys.readouterr().out
    _one_line(capsys, main([*base, "--clients", "3"]), "give --clients 4, not 3, or leave --clients out")


def test_min_examples_that_keeps_no_user_advises_a_value_it_accepts(users, tmp_path, capsys) -> None:
    out = tmp_path / "p.h5"
    err = _one_line(capsys, main(["partition", "--data", str(users), "--out", str(out), "--method", "natural",
                                  "--field", "user", "--min-examples", "1000"]),
                    "--min-examples 1000 keeps no value of field 'user'", "choose --min-examples 7 or less")
    assert "--clients 0" not in err and not out.exists()
    assert main(["partition", "--data", str(users), "--out", str(out), "--method", "natural", "--field", "user",
                 "--min-examples", "7"]) == 0  # the value it advised is accepted


def test_a_method_that_cannot_find_its_clients_still_needs_clients(small, tmp_path, capsys) -> None:
    data, _ = small
    _one_line(capsys, main(["partition", "--data", str(data), "--out", str(tmp_path / "p.h5"), "--method",
                            "uniform"]), "--method uniform needs --clients")
    assert list(tmp_path.iterdir()) == []

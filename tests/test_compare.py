"""`fednlp compare A B`: means, seed spreads, Welch's interval and the docs' verdict, on hand-made records."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from fednlp.cli import main
from fednlp.errors import UserError
from fednlp.results.compare import (FINDING, ONE_SEED, WITHIN_SPREAD, compare, compare_groups, load_group,
                                    welch_interval)
from fednlp.results.run_files import RunWriter


def record(root, name, value, seed, task="classification", metric="accuracy", **extra):
    RunWriter(root / name).write_result({"task": task, "metric": metric, "value": value, "seed": seed,
                                         "greater_is_better": True, **extra})
    return root / name


def group(root, values, name="g", **kw):
    for seed, value in enumerate(values):
        record(root / name, f"run-s{seed}", value, seed, **kw)
    return str(root / name)


def test_welch_interval_matches_the_hand_computed_formula():
    a, b = (0.40, 0.42, 0.41), (0.30, 0.35, 0.31, 0.33)
    (lo, hi), df = welch_interval(a, b, 0.95)
    va, vb = 0.0001 / 3, 0.000491666666 / 4  # sample variances / n
    se = math.sqrt(va + vb)
    expected_df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert df == pytest.approx(expected_df, rel=1e-6)
    d = sum(b) / 4 - sum(a) / 3
    half = stats.t.ppf(0.975, expected_df) * se
    assert (lo, hi) == pytest.approx((d - half, d + half), rel=1e-6)


def test_a_difference_beyond_both_spreads_with_an_interval_off_zero_is_a_finding(tmp_path):
    a = load_group(group(tmp_path, [0.41, 0.42, 0.40], "a"))
    b = load_group(group(tmp_path, [0.33, 0.34, 0.32], "b"))
    c = compare_groups(a, b)
    assert (a.n, b.n) == (3, 3) and a.mean == pytest.approx(0.41) and a.std == pytest.approx(0.01)
    assert c.difference == pytest.approx(-0.08)
    assert c.interval[1] < 0 and c.verdict == FINDING


def test_a_difference_inside_the_spread_is_not_a_finding(tmp_path):
    # Tagging at alpha 0.1 in docs/results.md: fedopt's seeds 0.130, 0.594, 0.463 against FedAvg's 0.211, ...
    a = load_group(group(tmp_path, [0.130, 0.594, 0.463], "a"))
    b = load_group(group(tmp_path, [0.211, 0.230, 0.190], "b"))
    c = compare_groups(a, b)
    assert c.verdict == WITHIN_SPREAD and c.interval[0] < 0 < c.interval[1]


def test_an_interval_off_zero_but_a_difference_below_a_spread_is_not_a_finding(tmp_path):
    # Many seeds make the interval narrow; the difference (0.01) is still below B's spread (about 0.02).
    a = load_group(group(tmp_path, [0.500] * 2 + [0.501] * 2, "a"))
    b = load_group(group(tmp_path, [0.49, 0.51, 0.53, 0.47, 0.51, 0.53, 0.49, 0.51, 0.53, 0.49, 0.51, 0.53,
                                    0.52, 0.52, 0.52, 0.52, 0.52, 0.52, 0.52, 0.52], "b"))
    c = compare_groups(a, b)
    assert c.interval[0] > 0 and abs(c.difference) < b.std
    assert c.verdict == WITHIN_SPREAD and "spread" in c.why


def test_one_seed_on_either_side_makes_no_claim(tmp_path):
    a = load_group(group(tmp_path, [0.40, 0.41, 0.42], "a"))
    b = load_group(group(tmp_path, [0.10], "b"))
    c = compare_groups(a, b)
    assert c.verdict == ONE_SEED and c.interval is None and b.std is None
    assert c.difference == pytest.approx(-0.31)


def test_groups_as_glob_patterns_and_percent_records(tmp_path):
    record(tmp_path / "runs", "fedavg-s0", 40.0, 0, metric_scale="percent")
    record(tmp_path / "runs", "fedavg-s1", 42.0, 1, metric_scale="percent")
    record(tmp_path / "runs", "fedopt-s0", 0.2, 0)
    a = load_group(str(tmp_path / "runs" / "fedavg-s*"))
    assert a.values == pytest.approx((0.40, 0.42)) and a.seeds == (0, 1)


def test_groups_mixing_tasks_or_metrics_are_refused(tmp_path):
    record(tmp_path / "mixed", "x", 0.5, 0)
    record(tmp_path / "mixed", "y", 0.5, 1, task="tagging", metric="f1")
    with pytest.raises(UserError, match="mixes tasks or metrics"):
        load_group(str(tmp_path / "mixed"))
    a = group(tmp_path, [0.1, 0.2], "a")
    b = group(tmp_path, [0.1, 0.2], "b", task="tagging", metric="f1")
    with pytest.raises(UserError, match="compare runs of one task and metric"):
        compare(a, b)


def test_a_group_with_two_runs_of_one_seed_is_refused(tmp_path):
    record(tmp_path / "g", "lr0.1-s0", 0.5, 0)
    record(tmp_path / "g", "lr0.01-s0", 0.4, 0)
    with pytest.raises(UserError, match="two runs with seed 0"):
        load_group(str(tmp_path / "g"))


def test_cli_markdown_json_and_one_line_errors(tmp_path, capsys):
    a = group(tmp_path, [0.41, 0.42, 0.40], "a")
    b = group(tmp_path, [0.33, 0.34, 0.32], "b")
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "| A |" in out and "difference B - A: -0.0800" in out and "verdict: finding" in out
    assert main(["compare", a, b, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == FINDING and report["a"]["seeds"] == [0, 1, 2]
    assert report["interval_method"] == "welch_t" and len(report["interval"]) == 2
    assert main(["compare", a, str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no result.json" in err
    c = group(tmp_path, [0.1, 0.2], "c", task="tagging", metric="f1")
    assert main(["compare", a, c]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_group_mixing_settings_is_refused(tmp_path):
    record(tmp_path / "g", "a1.0-s0", 0.5, 0, partition_method="niid_label_clients=100_alpha=1.0")
    record(tmp_path / "g", "uniform-s1", 0.4, 1, partition_method="uniform_clients=100")
    with pytest.raises(UserError, match="mixes settings: partition_method"):
        load_group(str(tmp_path / "g"))
    record(tmp_path / "h", "lr-s0", 0.5, 0, config={"lr": 0.1, "seed": 0, "out": "runs/a"})
    record(tmp_path / "h", "lr-s1", 0.4, 1, config={"lr": 0.01, "seed": 1, "out": "runs/b"})
    with pytest.raises(UserError, match="mixes settings: lr is 0.1"):
        load_group(str(tmp_path / "h"))
    record(tmp_path / "k", "s0", 0.5, 0, config={"lr": 0.1, "seed": 0, "out": "runs/a"})
    record(tmp_path / "k", "s1", 0.4, 1, config={"lr": 0.1, "seed": 1, "out": "runs/b"})
    assert load_group(str(tmp_path / "k")).seeds == (0, 1)  # seeds and output paths are not settings


def test_settings_named_in_vary_may_differ_within_a_group(tmp_path, capsys):
    # seed s fine-tunes the model seed s of another study trained: the model path changes with the seed
    for seed in range(2):
        record(tmp_path / "ft", f"s{seed}", 0.5 + 0.01 * seed, seed, model=f"students/s{seed}/model",
               config={"model": f"students/s{seed}/model", "lr": 0.1, "seed": seed})
    spec = str(tmp_path / "ft")
    with pytest.raises(UserError, match="mixes settings: model"):
        load_group(spec)
    assert load_group(spec, vary=("model",)).values == (0.5, 0.51)
    record(tmp_path / "ft", "s2", 0.52, 2, model="students/s2/model",
           config={"model": "students/s2/model", "lr": 0.2, "seed": 2})
    with pytest.raises(UserError, match="mixes settings: lr"):  # only the named setting may vary
        load_group(spec, vary=("model",))
    assert main(["compare", spec, spec, "--vary", "model", "--vary", "lr"]) == 0
    assert "verdict: not a finding" in capsys.readouterr().out
    assert main(["compare", spec, spec, "--vary", "modle"]) == 2  # a misspelt setting is refused, not ignored
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--vary modle is not a setting of the runs" in err and "model" in err

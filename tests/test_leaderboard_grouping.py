"""What makes a leaderboard row (issue 29): settings that cannot change a result never split a row or lose a
baseline, a repeated seed is counted once, and the DP budget asked and the one spent are two named columns."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest

from fednlp.config import CentralizedConfig, TrainConfig
from fednlp.results.leaderboard import (PRESENTATION_ONLY, leaderboard_rows, load_runs, render, setting_columns)
from test_leaderboard import make_run


def rows_of(root):
    return leaderboard_rows(load_runs(root))


def test_presentation_settings_are_real_config_options():
    """A typo in PRESENTATION_ONLY would silently keep splitting rows: every name is an option of a run."""
    options = {f.name for cls in (TrainConfig, CentralizedConfig) for f in dataclasses.fields(cls)}
    assert {"quiet", "report_to", "eval_batch_size"} <= PRESENTATION_ONLY <= options


def test_seeds_that_differ_only_in_logging_and_eval_batching_are_one_row(tmp_path):
    make_run(tmp_path, "s0", 0.70, seed=0, config={"quiet": True, "report_to": "none", "eval_batch_size": 64})
    make_run(tmp_path, "s1", 0.72, seed=1, config={"quiet": False, "report_to": "tensorboard", "eval_batch_size": 8})
    make_run(tmp_path, "s2", 0.74, seed=2, config={"quiet": False, "report_to": "none", "eval_batch_size": 256,
                                                  "save_model": False})
    (row,) = rows_of(tmp_path)
    assert row.n_runs == 3 and row.value == pytest.approx(0.72) and row.std == pytest.approx(0.02)
    assert setting_columns([row]) == []
    assert "report_to" not in render([row], "csv").splitlines()[0]


def test_a_federated_run_logged_to_tensorboard_keeps_its_centralized_baseline(tmp_path):
    make_run(tmp_path, "central", 0.80, algorithm="centralized", config={"report_to": "none", "quiet": False})
    make_run(tmp_path, "fed", 0.70, config={"report_to": "tensorboard", "quiet": True, "eval_batch_size": 8})
    central, fed = rows_of(tmp_path)
    assert fed.baseline is not None and fed.baseline.number == central.number
    assert fed.gap == pytest.approx(-0.10)


def test_a_repeated_seed_is_counted_once_and_named_under_the_table(tmp_path):
    for name in ("a_first", "b_again", "c_again"):  # the same seed three times: one measurement, not three
        make_run(tmp_path / "runs", name, 0.70, seed=0)
    (row,) = rows_of(tmp_path / "runs")
    assert row.n_runs == 1 and row.std is None
    assert [r.run_dir.name for r in row.runs] == ["a_first"]
    assert [r.run_dir.name for r in row.repeats] == ["b_again", "c_again"]
    text = render([row], "markdown")
    assert "| 0.7000 |  | 1 |" in text  # value, no std, runs 1 (was: runs 3, std 0.0000)
    assert "row 1: b_again repeats seed 0 of a_first; row 1: c_again repeats seed 0 of a_first." in text
    make_run(tmp_path / "runs", "d_seed1", 0.74, seed=1)
    (row,) = rows_of(tmp_path / "runs")
    assert row.n_runs == 2 and row.value == pytest.approx(0.72) and row.std == pytest.approx(0.0282842712)
    # A record without a seed cannot repeat one: it counts as its own run.
    for name in ("x", "y"):
        make_run(tmp_path / "seedless", name, 0.6, seed=None, config={"seed": None})
    (row,) = rows_of(tmp_path / "seedless")
    assert row.n_runs == 2 and row.repeats == ()
    assert "Repeated seeds" not in render([row], "markdown")


def test_the_dp_budget_asked_and_the_epsilon_spent_are_columns_of_their_own(tmp_path):
    for budget, spent in ((1.0, 0.98), (8.0, 7.9)):
        make_run(tmp_path, f"eps{budget:g}", 0.6, algorithm="dp_fedavg",
                 config={"dp": "client", "dp_epsilon": budget, "dp_delta": 10 ** -budget},
                 dp={"epsilon": spent, "delta": 10 ** -budget})
    text = render(rows_of(tmp_path), "csv")
    header = text.splitlines()[0].split(",")
    assert len(header) == len(set(header)), header
    assert {"dp_epsilon_budget", "dp_delta_budget", "dp_epsilon_spent", "dp_delta_spent"} <= set(header)
    assert "dp_epsilon" not in header and "dp_delta" not in header
    records = sorted(csv.DictReader(io.StringIO(text)), key=lambda r: float(r["dp_epsilon_budget"]))
    assert [(r["dp_epsilon_budget"], float(r["dp_epsilon_spent"])) for r in records] == [("1", 0.98), ("8", 7.9)]
    markdown_header = render(rows_of(tmp_path), "markdown").splitlines()[0].split(" | ")
    assert len(markdown_header) == len(set(markdown_header))


def test_a_setting_named_like_a_result_column_is_renamed_not_duplicated(tmp_path):
    make_run(tmp_path, "a", 0.6, config={"metric": "x"})
    make_run(tmp_path, "b", 0.7, config={"metric": "y"})
    header = render(rows_of(tmp_path), "csv").splitlines()[0].split(",")
    assert header.count("metric") == 1 and "metric_setting" in header


def test_the_markdown_note_says_which_metric_is_a_fraction_when_perplexity_is_there(tmp_path):
    make_run(tmp_path, "clf", 0.7)
    make_run(tmp_path, "lm", 30.0, model="tiny-gpt2", metric="perplexity", greater_is_better=False)
    text = render(rows_of(tmp_path), "markdown")
    assert "Values are fractions" not in text  # not said of a perplexity of 30
    assert "accuracy: values are fractions in [0, 1]" in text
    assert "perplexity: values in the metric's own units, lower is better" in text

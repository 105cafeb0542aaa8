"""The fairness study's tables (fednlp/fairness/study_table.py): built from records, checked by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fednlp.errors import UserError
from fednlp.fairness.study_table import equal_opportunity_gap, read_runs, study_tables
from fednlp.results.docs_tables import update_docs
from test_leaderboard import make_run


def predictions(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """fairness_predictions.csv with (group, label, predicted) rows."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["example", "label", "group", "affected", "predicted"])
        writer.writerows((i, label, group, 1, predicted) for i, (group, label, predicted) in enumerate(rows))


def study_run(runs: Path, name: str, seed: int, accuracy: float, flip: float, ceat: float) -> None:
    blocks = {"fairness": {"flip_rate": flip, "mean_abs_prob_change": flip / 2},
              "prediction_sensitivity": {"all": {"mean": flip / 10}},
              "ceat": {"tests": {t: {"combined_effect_size": ceat + i} for i, t in enumerate(("weat6", "weat7", "weat8"))}}}
    make_run(runs, name, accuracy, seed=seed, **blocks)
    # male: label 1 right 2 of 2, label 0 right 1 of 2; female: label 1 right 1 of 2, label 0 right 1 of 1
    predictions(runs / name / "fairness_predictions.csv",
                [("male", "1", "1"), ("male", "1", "1"), ("male", "0", "0"), ("male", "0", "1"),
                 ("female", "1", "1"), ("female", "1", "0"), ("female", "0", "0"), ("other", "0", "1")])


@pytest.fixture
def records(tmp_path: Path) -> Path:
    runs = tmp_path / "study" / "runs"
    for seed, (flip_a, flip_b) in enumerate([(0.10, 0.02), (0.12, 0.03), (0.11, 0.01)]):
        study_run(runs, f"fedavg-uniform-s{seed}", seed, 0.80, flip_a, 0.5 + seed / 10)
        study_run(runs, f"fedavg-uniform-augment-s{seed}", seed, 0.80 + seed / 100, flip_b, 0.1 + seed / 10)
    return runs


def test_the_equal_opportunity_gap_compares_male_and_female_per_label(records):
    # label 1: |2/2 - 1/2| = 0.5; label 0: |1/2 - 1/1| = 0.5; the "other" row is left out
    assert equal_opportunity_gap(records / "fedavg-uniform-s0" / "fairness_predictions.csv") == pytest.approx(0.5)


def test_the_tables_hold_means_spreads_correlations_and_the_verdicts(records):
    runs = read_runs(records)
    assert len(runs) == 6 and {r.regime for r in runs} == {"fedavg-uniform", "fedavg-uniform-augment"}
    text = study_tables(records)
    regime_row = next(line for line in text.splitlines() if line.startswith("| fedavg-uniform | 0,1,2 |"))
    assert "| 0.110 ± 0.010 |" in regime_row  # flip rate over the 3 seeds
    assert "| 11.000 ± 1.000 |" in regime_row  # prediction sensitivity (flip / 10), shown x1000
    assert "| sensitivity ×1000 |" in text
    # flip rate and prediction sensitivity are proportional here: rank correlation exactly 1
    flip_row = next(line for line in text.splitlines() if line.startswith("| flip_rate |"))
    assert "+1.00" in flip_row.split(" | ")[4]
    verdicts = {line.split(" | ")[0].strip("| "): line.split(" | ")[-1].strip("| ")
                for line in text.split("rule:")[1].splitlines()[4:]}
    assert verdicts["flip_rate"] == "finding" and verdicts["accuracy"] == "not a finding: within the spread"
    question = next(line for line in text.splitlines() if line.startswith("| fedavg-uniform-augment − fedavg-uniform |"))
    assert question.split(" | ")[2] == "-0.090 finding"  # flip rate: mean 0.02 - mean 0.11
    assert "| fedavg-uniform − centralized | not run |" in text  # a regime without records


def test_the_page_rebuilds_and_check_fails_on_a_hand_edit(records):
    page = records.parent.parent / "fairness.md"
    page.write_text("# Fairness\n\n<!-- fairness study: study/runs -->\n<!-- end fairness study -->\n")
    assert update_docs(page) == ["study/runs"]
    assert "| fedavg-uniform-augment | 0,1,2 |" in page.read_text() and update_docs(page, check=True) == []
    page.write_text(page.read_text().replace("| finding |", "| not a finding: within the spread |", 1))
    with pytest.raises(UserError, match="study/runs"):
        update_docs(page, check=True)


def test_a_run_without_the_fairness_blocks_is_one_line(tmp_path):
    make_run(tmp_path / "runs", "fedavg-uniform-s0", 0.8)
    with pytest.raises(UserError, match="has no flip_rate.*run `fednlp fairness`"):
        read_runs(tmp_path / "runs")

"""Learning curves on the budget axes (fednlp/results/curves.py): examples trained on and sequential steps."""

from __future__ import annotations

import pytest

from fednlp.results.curves import budget_curves, row_curve
from fednlp.results.leaderboard import marked_rows
from test_leaderboard import make_run


def test_rounds_and_epochs_land_on_their_share_of_the_runs_examples_and_steps(tmp_path):
    runs = tmp_path / "runs"
    # federated: 3 rounds of 10 clients, 300 local steps and 2,400 examples in all -> per round 800 examples and
    # 300 / 3 / 10 = 10 sequential steps; two seeds whose curves differ by 0.2 everywhere
    for seed, shift in ((0, 0.0), (1, 0.2)):
        make_run(runs, f"fed-s{seed}", 0.5 + shift, seed=seed, local_examples_total=2400)
    # centralized over 2 epochs with 100 steps and 3,000 examples: epoch 1 at 1,500 examples and 50 steps
    central = make_run(runs, "central", 0.9, algorithm="centralized", curve=False, local_examples_total=3000,
                       local_steps_total=100, config={"epochs": 2, "steps": None})
    (central / "metrics.jsonl").write_text('{"round": 1, "accuracy": 0.6}\n{"round": 2, "accuracy": 0.9}\n')
    rows = {row.algorithm: row for row in marked_rows(runs, None)}
    fed = row_curve(rows["fedavg"])
    assert [(x, s) for x, s, _, _ in fed] == [(800.0, 10.0), (1600.0, 20.0), (2400.0, 30.0)]
    assert fed[2][2] == pytest.approx(0.6) and fed[2][3] == pytest.approx(0.1414, abs=1e-4)  # mean, std of 0.5, 0.7
    assert row_curve(rows["centralized"]) == [(1500.0, 50.0, 0.6, 0.0), (3000.0, 100.0, 0.9, 0.0)]
    png = budget_curves(list(rows.values()), "t")
    assert png is not None and png.startswith(b"\x89PNG")


def test_older_records_count_examples_as_steps_times_batch(tmp_path):
    make_run(tmp_path / "runs", "fed-s0", 0.5)  # no local_examples_total: 300 steps x batch 16
    (row,) = marked_rows(tmp_path / "runs", None)
    assert row_curve(row)[-1][0] == 300 * 16


def test_a_gaps_error_bar_combines_the_rows_and_its_baselines_spread(tmp_path):
    from fednlp.results.plots import gap_error, short_partition

    runs = tmp_path / "runs"
    for seed, (central, fed) in enumerate([(0.80, 0.70), (0.86, 0.70)]):  # baseline std 0.0424, row std 0
        make_run(runs, f"central-s{seed}", central, algorithm="centralized", seed=seed)
        make_run(runs, f"fed-s{seed}", fed, seed=seed)
    fed_row = next(row for row in marked_rows(runs, None) if row.algorithm == "fedavg")
    assert fed_row.std == 0 and gap_error(fed_row) == pytest.approx(0.0424264, abs=1e-6)
    assert [short_partition(m) for m in ("niid_label_clients=100_alpha=0.1", "niid_quantity_clients=100_beta=1.0",
                                         "uniform_clients=100", "natural_clients=121_field=user", None)] == \
        ["alpha 0.1", "quantity beta 1.0", "uniform", "natural", ""]

"""The leaderboard: loading run directories, the centralized-vs-federated gap, the three renderings."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import yaml

from fednlp.errors import UserError
from fednlp.results.leaderboard import COLUMNS, leaderboard_rows, load_runs, render, setting_columns, write_leaderboard
from fednlp.results.plots import write_study_plots
from fednlp.results.run_files import RunWriter

PARTITION = "niid_label_clients=100_alpha=1.0"


def make_run(root, name, value, algorithm="fedavg", partition=PARTITION, seed=0, curve=True, config=None, **extra):
    centralized = algorithm == "centralized"
    resolved = {"data": "data/20news.h5", "model": extra.get("model", "minilm"), "max_seq_length": 64,
                "batch_size": 16, "lr": 1e-4, "optimizer": "adamw", "seed": seed, "out": f"runs/{name}",
                "overwrite": False}
    if centralized:
        resolved.update(steps=300)
    else:
        resolved.update(partition="data/20news_p.h5", method=partition, algorithm=algorithm, rounds=3,
                        clients_per_round=10, local_steps=10, mu=None)
    resolved.update(config or {})
    result = {
        "task": "text_classification", "dataset": "20news", "model": "minilm",
        "partition_method": None if centralized else partition,
        "algorithm": algorithm, "rounds": 3, "clients_per_round": None if centralized else 10,
        "world_size": 1, "metric": "accuracy", "value": value, "best_value": value,
        "metrics": {"accuracy": value, "macro_f1": value - 0.02}, "wall_time_s": 100.0, "seed": seed,
        "versions": {"fednlp": "0.1.0"}, "config": resolved, "data_sha256": "d" * 64, "local_steps_total": 300,
        **({} if centralized else {"partition_sha256": "p" * 64}), **extra,
    }
    writer = RunWriter(root / name)
    writer.write_result(result)
    if curve:
        for rnd in (1, 2, 3):
            writer.append_metrics({"round": rnd, "elapsed_s": 10.0 * rnd, "accuracy": value * rnd / 3})
    return root / name


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "central", 0.80, algorithm="centralized")
    make_run(root, "sweep/fedavg_s0", 0.70, seed=0)  # nested one level deeper: found all the same
    make_run(root, "fedavg_s1", 0.74, seed=1)
    make_run(root, "fedprox_s0", 0.76, algorithm="fedprox")
    make_run(root, "other_model", 0.50, model="tiny-bert")  # no centralized run for this model
    return root


def test_load_runs_finds_every_result_sorted_by_path(runs_dir):
    runs = load_runs(runs_dir)
    assert [r.run_dir.relative_to(runs_dir).as_posix() for r in runs] == [
        "central", "fedavg_s1", "fedprox_s0", "other_model", "sweep/fedavg_s0"]
    assert runs[0].is_centralized and runs[0].partition_method is None
    assert runs[1].metrics["macro_f1"] == pytest.approx(0.72)


def test_rows_average_seeds_and_report_the_gap_to_centralized(runs_dir):
    rows = leaderboard_rows(load_runs(runs_dir))
    assert [(r.model, r.algorithm, r.n_runs) for r in rows] == [
        ("minilm", "centralized", 1), ("minilm", "fedavg", 2), ("minilm", "fedprox", 1), ("tiny-bert", "fedavg", 1)]
    central, fedavg, fedprox, other = rows
    assert central.value == pytest.approx(0.80)
    assert central.gap is None and central.gap_pct is None and central.std is None
    assert fedavg.value == pytest.approx(0.72)
    assert fedavg.std == pytest.approx(0.0282842712)
    assert fedavg.gap == pytest.approx(-0.08)
    assert fedavg.gap_pct == pytest.approx(-10.0)
    assert fedprox.gap == pytest.approx(-0.04)
    assert fedprox.gap_pct == pytest.approx(-5.0)
    assert other.gap is None and other.gap_pct is None


def test_partition_methods_sort_after_centralized(tmp_path):
    make_run(tmp_path, "b", 0.6, partition="uniform_clients=10")
    make_run(tmp_path, "a", 0.7, partition="niid_label_clients=10_alpha=0.1")
    make_run(tmp_path, "c", 0.9, algorithm="centralized")
    rows = leaderboard_rows(load_runs(tmp_path))
    assert [r.partition_method for r in rows] == [None, "niid_label_clients=10_alpha=0.1", "uniform_clients=10"]


def test_markdown_table(runs_dir):
    text = render(leaderboard_rows(load_runs(runs_dir)), "markdown")
    lines = text.splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert len(lines) == 2 + 4 + 2  # header, rows, a blank line and the note on scale and gap
    assert lines[2] == ("| 1 | text_classification | 20news | minilm |  | centralized | accuracy | 0.8000 |  | 1 | 4800 "
                        "|  |  |  |  |  |  | 100.0 |")
    assert lines[3] == (f"| 2 | text_classification | 20news | minilm | {PARTITION} | fedavg | accuracy | 0.7200 | 0.0283"
                        " | 2 | 4800 | 1 | 0.8000 |  | -0.0800 | -10.00% |  | 100.0 |")
    assert lines[4].endswith("| -0.0400 | -5.00% | yes | 100.0 |")  # fedprox: the best federated row
    assert "fractions in [0, 1]" in lines[-1]


def test_csv_parses_with_the_right_columns(runs_dir):
    text = render(leaderboard_rows(load_runs(runs_dir)), "csv")
    records = list(csv.DictReader(io.StringIO(text)))
    assert tuple(records[0].keys()) == COLUMNS
    fedavg = records[1]
    assert fedavg["algorithm"] == "fedavg" and fedavg["runs"] == "2"
    assert float(fedavg["value"]) == pytest.approx(0.72)
    assert float(fedavg["gap"]) == pytest.approx(-0.08)
    assert float(fedavg["gap_pct"]) == pytest.approx(-10.0)
    assert records[0]["gap"] == "" and records[0]["partition_method"] == ""


def test_html_is_one_page_with_table_and_embedded_curves(runs_dir):
    text = render(leaderboard_rows(load_runs(runs_dir)), "html")
    assert "<table>" in text and "<td>fedavg</td>" in text and "<td>-10.00%</td>" in text
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 2  # one figure per (task, dataset, model)
    assert all(img.startswith("iVBORw0KGgo") for img in images)  # the PNG signature


def test_html_without_metrics_files_still_renders(tmp_path):
    make_run(tmp_path, "a", 0.7, curve=False)
    text = render(leaderboard_rows(load_runs(tmp_path)), "html")
    assert "<td>fedavg</td>" in text and "<img" not in text


def test_write_leaderboard_writes_atomically_and_returns_text(runs_dir, tmp_path):
    out = tmp_path / "out" / "board.md"
    text = write_leaderboard(runs_dir, "markdown", out)
    assert out.read_text() == text
    assert [p.name for p in out.parent.iterdir()] == ["board.md"]
    assert write_leaderboard(runs_dir, "csv").startswith(",".join(COLUMNS))


def test_unknown_format(runs_dir, tmp_path):
    with pytest.raises(UserError, match="--format"):
        write_leaderboard(runs_dir, "latex", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_malformed_result_json_names_the_file(tmp_path):
    bad = tmp_path / "run" / "result.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(UserError, match=re.escape(str(bad)) + ".*not valid JSON"):
        load_runs(tmp_path)


def test_missing_key_names_the_file_and_key(tmp_path):
    path = make_run(tmp_path, "run", 0.7) / "result.json"
    data = json.loads(path.read_text())
    del data["metric"]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*'metric'"):
        load_runs(tmp_path)


def test_non_numeric_value(tmp_path):
    path = make_run(tmp_path, "run", 0.7) / "result.json"
    path.write_text(path.read_text().replace('"value": 0.7', '"value": "high"'))
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*'value' must be a number"):
        load_runs(tmp_path)


def test_empty_and_missing_runs_directory(tmp_path):
    (tmp_path / "runs" / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match="no result.json found under .*runs"):
        load_runs(tmp_path / "runs")
    with pytest.raises(UserError, match="does not exist"):
        load_runs(tmp_path / "nope")


def test_malformed_metrics_line_names_file_and_line(tmp_path):
    run = make_run(tmp_path, "run", 0.7)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{oops\n")
    with pytest.raises(UserError, match=re.escape(str(run / "metrics.jsonl")) + ":4:"):
        render(leaderboard_rows(load_runs(tmp_path)), "html")


def test_run_writer_round_trip(tmp_path):
    writer = RunWriter(tmp_path / "runs" / "r1")
    config = {"seed": 0, "algorithm": {"name": "fedavg", "rounds": 5}, "model": "minilm"}
    writer.write_config(config)
    writer.append_metrics({"round": 1, "elapsed_s": 1.5, "accuracy": 0.4})
    writer.append_metrics({"round": 2, "elapsed_s": 3.0, "accuracy": 0.5})
    writer.write_result({"value": 0.5})
    run_dir = tmp_path / "runs" / "r1"
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == config
    assert list(yaml.safe_load((run_dir / "config.yaml").read_text())) == ["algorithm", "model", "seed"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"round": 1, "elapsed_s": 1.5, "accuracy": 0.4}, {"round": 2, "elapsed_s": 3.0, "accuracy": 0.5}]
    assert json.loads((run_dir / "result.json").read_text()) == {"value": 0.5}
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "metrics.jsonl", "result.json"]


# ---------------------------------------------------------------- integrity: what makes a row


def test_runs_that_differ_in_a_setting_are_two_rows_not_two_seeds(tmp_path):
    # The audited defect: FedProx with mu 0.01 and with mu 1.0, both seed 0, became one row with runs=2.
    make_run(tmp_path, "c", 0.80, algorithm="centralized")
    make_run(tmp_path, "mu_small", 0.70, algorithm="fedprox", config={"mu": 0.01})
    make_run(tmp_path, "mu_large", 0.40, algorithm="fedprox", config={"mu": 1.0})
    rows = leaderboard_rows(load_runs(tmp_path))
    fedprox = [r for r in rows if r.algorithm == "fedprox"]
    assert sorted((r.settings["mu"], r.n_runs, r.std) for r in fedprox) == [(0.01, 1, None), (1.0, 1, None)]
    assert setting_columns(rows) == ["mu"]
    header, _, *body = render(rows, "markdown").splitlines()[:5]
    assert header.startswith("| row | task | dataset | model | partition_method | algorithm | mu | metric |")
    assert [line.split(" | ")[6] for line in body] == ["", "0.01", "1"]


def test_nested_options_are_flattened_into_the_fingerprint(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path, f"a{seed}", 0.6 + seed / 100, algorithm="fedadam", seed=seed,
                 config={"algorithm_options": {"server": {"beta1": 0.9}, "tau": 1e-3}})
    make_run(tmp_path, "b", 0.5, algorithm="fedadam", config={"algorithm_options": {"server": {"beta1": 0.5}, "tau": 1e-3}})
    rows = leaderboard_rows(load_runs(tmp_path))
    assert [(r.settings["algorithm_options.server.beta1"], r.n_runs) for r in rows] == [(0.5, 1), (0.9, 2)]
    assert setting_columns(rows) == ["algorithm_options.server.beta1"]


def test_seed_and_output_paths_do_not_split_a_row_but_checksums_do(tmp_path):
    make_run(tmp_path, "s0", 0.70, seed=0, config={"out": "x/s0", "checkpoint_every": 5})
    make_run(tmp_path, "s1", 0.72, seed=1, config={"out": "elsewhere/s1", "data": "/other/copy/of/20news.h5"})
    make_run(tmp_path, "new_partition", 0.30, partition_sha256="e" * 64)
    rows = leaderboard_rows(load_runs(tmp_path))
    assert sorted(r.n_runs for r in rows) == [1, 2]
    assert setting_columns(rows) == ["partition_sha256"]
    assert "| eeeeeeeeee |" in render(rows, "markdown")


def test_baseline_is_the_centralized_row_with_the_same_data_model_and_budget(tmp_path):
    for seed, value in ((0, 0.80), (1, 0.84)):
        make_run(tmp_path, f"c_s{seed}", value, algorithm="centralized", seed=seed)
    make_run(tmp_path, "c_sgd", 0.60, algorithm="centralized", config={"optimizer": "sgd", "lr": 0.1})
    make_run(tmp_path, "c_long", 0.95, algorithm="centralized", config={"steps": 3000}, local_steps_total=3000)
    make_run(tmp_path, "c_len", 0.99, algorithm="centralized", config={"max_seq_length": 512})  # another model setting
    make_run(tmp_path, "c_data", 0.99, algorithm="centralized", data_sha256="f" * 64)  # other data
    make_run(tmp_path, "fed", 0.70)
    make_run(tmp_path, "fed_len", 0.90, config={"max_seq_length": 512})
    rows = leaderboard_rows(load_runs(tmp_path))
    by_run = {row.runs[0].run_dir.name: row for row in rows}
    fed, fed_len = by_run["fed"], by_run["fed_len"]
    # Among matching baselines (adamw, 2 seeds; sgd), the strongest: the gap is never flattered.
    assert fed.baseline.number == by_run["c_s0"].number and fed.baseline.n_runs == 2
    assert fed.baseline.value == pytest.approx(0.82) and fed.baseline.std == pytest.approx(0.0282842712)
    assert fed.gap == pytest.approx(-0.12)
    assert fed_len.baseline.number == by_run["c_len"].number and fed_len.gap == pytest.approx(-0.09)
    line = next(li for li in render(rows, "markdown").splitlines() if li.startswith(f"| {fed.number} |"))
    assert f"| {fed.baseline.number} | 0.8200 | 0.0283 | -0.1200 |" in line


def test_no_baseline_without_a_matching_budget(tmp_path):
    make_run(tmp_path, "c", 0.80, algorithm="centralized", config={"steps": 1000}, local_steps_total=1000)
    make_run(tmp_path, "fed", 0.70)
    fed = next(r for r in leaderboard_rows(load_runs(tmp_path)) if not r.is_centralized)
    assert fed.baseline is None and fed.gap is None


# ---------------------------------------------------------------- one scale, metric direction


def test_percent_records_are_shown_as_fractions(tmp_path):
    make_run(tmp_path, "c", 80.0, algorithm="centralized", metric_scale="percent")
    make_run(tmp_path, "fed", 0.7)
    central, fed = leaderboard_rows(load_runs(tmp_path))
    assert central.value == pytest.approx(0.8) and fed.gap == pytest.approx(-0.1)


def test_a_score_outside_zero_one_without_a_scale_is_refused(tmp_path):
    path = make_run(tmp_path, "qa", 83.2) / "result.json"
    with pytest.raises(UserError, match=re.escape(str(path)) + r".*accuracy = 83.2 is not a fraction in \[0, 1\]"):
        load_runs(tmp_path)


def test_lower_is_better_flips_the_gap_and_the_best_row(tmp_path):
    lm = {"metric": "perplexity", "greater_is_better": False}
    make_run(tmp_path, "c", 20.0, algorithm="centralized", **lm)
    make_run(tmp_path, "fedavg", 30.0, **lm)
    make_run(tmp_path, "fedprox", 25.0, algorithm="fedprox", **lm)
    rows = leaderboard_rows(load_runs(tmp_path))
    by_algorithm = {r.algorithm: r for r in rows}
    assert by_algorithm["fedavg"].gap == pytest.approx(-10.0)  # 10 more perplexity: worse, so negative
    assert by_algorithm["fedavg"].gap_pct == pytest.approx(-50.0)
    assert by_algorithm["fedprox"].is_best and not by_algorithm["fedavg"].is_best


def test_greater_is_better_must_be_a_bool(tmp_path):
    path = make_run(tmp_path, "r", 0.5, greater_is_better="no") / "result.json"
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*'greater_is_better' must be true or false"):
        load_runs(tmp_path)


# ---------------------------------------------------------------- columns other commands fill


def test_fairness_privacy_and_audit_columns_when_runs_have_them(tmp_path):
    make_run(tmp_path, "plain", 0.7)
    make_run(tmp_path, "dp", 0.6, algorithm="dp_fedavg",
             clients={"mean": 0.6, "weighted_mean": 0.61, "std": 0.12, "min": 0.1, "p10": 0.3, "p50": 0.6,
                      "p90": 0.8, "worst10_mean": 0.25, "best10_mean": 0.9},
             dp={"epsilon": 3.2, "delta": 1e-5},
             audit={"mia_auc": 0.52, "mia_tpr_at_1pct_fpr": 0.011, "canary_max_exposure": 4.5,
                    "canary_extraction_rate": 0.0},
             fairness={"flip_rate": 0.031}, prediction_sensitivity={"all": {"mean": 0.004, "std": 0.01}},
             ceat={"tests": {"weat7": {"combined_effect_size": 0.42}}})
    records = list(csv.DictReader(io.StringIO(render(leaderboard_rows(load_runs(tmp_path)), "csv"))))
    dp, plain = sorted(records, key=lambda r: r["algorithm"])
    assert float(dp["clients_worst10_mean"]) == 0.25 and float(dp["clients_std"]) == 0.12
    assert float(dp["dp_epsilon_spent"]) == 3.2 and float(dp["dp_delta_spent"]) == 1e-5
    assert float(dp["mia_auc"]) == 0.52 and float(dp["mia_tpr_at_1pct_fpr"]) == 0.011
    assert float(dp["canary_max_exposure"]) == 4.5 and float(dp["canary_extraction_rate"]) == 0.0
    assert float(dp["flip_rate"]) == 0.031
    assert float(dp["prediction_sensitivity"]) == 0.004 and float(dp["ceat_weat7"]) == 0.42
    assert "ceat_weat6" not in dp  # a column no run has is left out
    assert all(plain[c] == "" for c in ("clients_worst10_mean", "dp_epsilon_spent", "mia_auc", "flip_rate",
                                        "prediction_sensitivity"))


def test_audit_and_dp_blocks_as_fednlp_writes_them(tmp_path):
    """result.json's audit block as `fednlp audit` writes it (a string, nested details, a null extraction rate
    for a model that cannot be inverted) and a client-level dp block: the numbers become columns, the rest is
    ignored, and a null is no number (here no run has one, so no column)."""
    audit = {"mia_attack": "calibrated loss (the model's loss minus the reference's)", "mia_auc": 0.61,
             "mia_tpr_at_1pct_fpr": 0.04, "mia_tpr_at_0.1pct_fpr": 0.0, "mia_balanced_accuracy": 0.58,
             "canary_max_exposure": 9.97, "canary_extraction_rate": None,
             "details": {"reference": "the run's initial model (seed 0)", "canaries": {"candidates": 1000}}}
    dp = {"level": "client", "noise_multiplier": 0.5, "delta": 0.25, "epsilon": 41.5, "epsilon_rdp": 44.0,
          "notes": [], "calibrated_to_epsilon": None}
    make_run(tmp_path, "audited", 0.6, algorithm="dp", dp=dp, audit=audit)
    (record,) = csv.DictReader(io.StringIO(render(leaderboard_rows(load_runs(tmp_path)), "csv")))
    assert float(record["dp_epsilon_spent"]) == 41.5 and float(record["mia_auc"]) == 0.61
    assert float(record["mia_tpr_at_1pct_fpr"]) == 0.04 and float(record["canary_max_exposure"]) == 9.97
    assert "canary_extraction_rate" not in record


def test_optional_columns_are_absent_when_no_run_has_them(runs_dir):
    header = render(leaderboard_rows(load_runs(runs_dir)), "csv").splitlines()[0]
    assert header == ",".join(COLUMNS)


def test_a_non_numeric_optional_stat_names_the_file(tmp_path):
    path = make_run(tmp_path, "r", 0.5, dp={"epsilon": "small"}) / "result.json"
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*'dp.epsilon' must be a number"):
        load_runs(tmp_path)


# ---------------------------------------------------------------- plots


def test_study_plots_are_png_files(tmp_path):
    make_run(tmp_path / "runs", "c", 0.8, algorithm="centralized")
    for alpha, value in (("0.1", 0.3), ("1.0", 0.6)):
        make_run(tmp_path / "runs", f"a{alpha}", value, partition=f"niid_label_clients=100_alpha={alpha}")
    make_run(tmp_path / "runs", "u", 0.7, partition="uniform_clients=100")
    written = write_study_plots(leaderboard_rows(load_runs(tmp_path / "runs")), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["curves_by_budget.png", "gap.png", "learning_curves.png", "metric_vs_alpha.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in written)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_cli_writes_the_table_and_the_plots(runs_dir, tmp_path):
    from fednlp.cli import main

    assert main(["leaderboard", str(runs_dir), "--out", str(tmp_path / "board.md"), "--plots", str(tmp_path / "png")]) == 0
    assert (tmp_path / "board.md").read_text().startswith("| row |")
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["curves_by_budget.png", "gap.png", "learning_curves.png", "metric_vs_alpha.png"]


# ---------------------------------------------------------------- readable at 1280 px (issue 29)


def sections_of(page: str) -> list[str]:
    return re.findall(r"<section>(.*?)</section>", page, re.S)


def test_html_shows_a_compact_table_and_the_full_one_a_click_away(tmp_path):
    make_run(tmp_path, "c", 0.8, algorithm="centralized", curve=False)
    for i in range(20):  # twenty settings that differ: the full table is 20 columns wider
        make_run(tmp_path, f"r{i}", 0.5 + i / 100, curve=False, config={f"option_{j}": i + j for j in range(20)})
    rows = leaderboard_rows(load_runs(tmp_path))
    page = render(rows, "html")
    (section,) = sections_of(page)
    compact, full = re.findall(r"<table>.*?</table>", section, re.S)
    compact_header = re.findall(r"<th>(.*?)</th>", compact)
    assert len(compact_header) <= 15 and "settings" in compact_header
    assert len(re.findall(r"<th>(.*?)</th>", full)) == len(COLUMNS) + 20
    assert re.search(r"<details><summary>All 38 columns</summary>\s*<div class=\"scroll\">\s*<table>", section)
    assert "option_0=19 option_1=20" in compact  # every setting of the row, in its one wrapped cell


def test_html_footers_belong_to_their_metric(tmp_path):
    make_run(tmp_path, "clf", 0.7)
    make_run(tmp_path, "lm_central", 20.0, algorithm="centralized", model="tiny-gpt2", metric="perplexity",
             greater_is_better=False)
    make_run(tmp_path, "lm", 30.0, model="tiny-gpt2", metric="perplexity", greater_is_better=False)
    accuracy, perplexity = sections_of(render(leaderboard_rows(load_runs(tmp_path)), "html"))
    assert "accuracy (higher is better)" in accuracy and "fractions in [0, 1]" in accuracy
    assert "perplexity (lower is better)" in perplexity and "fractions in [0, 1]" not in perplexity
    assert "perplexity: values in the metric&#x27;s own units, lower is better" in perplexity
    assert "<td>tiny-gpt2</td>" in perplexity and "<td>tiny-gpt2</td>" not in accuracy


def test_learning_curve_legends_are_readable_and_inside_the_figure(tmp_path):
    from fednlp.results.plots import TEXT_POINTS, learning_curves, learning_curves_figure

    for i in range(12):  # more rows than matplotlib has colours, labels longer than the figure is wide
        make_run(tmp_path, f"r{i}", 0.3 + i / 100, config={"lr": 10.0 ** -(1 + i / 10),
                                                            **{f"a_long_option_name_{j}": i for j in range(8)}})
    rows = leaderboard_rows(load_runs(tmp_path))
    fig = learning_curves_figure(rows, "many rows")
    fig.canvas.draw()
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 12  # one entry per row, not per run
    assert all(t.get_fontsize() >= TEXT_POINTS >= 10 for t in legend.get_texts())
    box, figure_box = legend.get_window_extent(), fig.bbox
    assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and figure_box.y0 <= box.y0
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # below the plots, not over them
    png = learning_curves(rows, "many rows")
    width = int.from_bytes(png[16:20], "big")  # the IHDR chunk's width
    assert width <= 1200  # shown unscaled in a 1280 px window, so the legend text keeps its size


def test_write_leaderboard_refuses_a_directory_for_out_and_a_file_for_plots_before_any_work(runs_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match=r"--out .*taken is an existing directory; expected a new path or a file"):
        write_leaderboard(runs_dir, "markdown", tmp_path / "taken")
    with pytest.raises(UserError, match=r"--plots .*notes.txt is an existing file; expected a new path or a directory"):
        write_leaderboard(runs_dir, "markdown", tmp_path / "board.md", plots=tmp_path / "notes.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "runs", "taken"]  # board.md not written
    assert (tmp_path / "notes.txt").read_text() == "mine\n" and not any((tmp_path / "taken").iterdir())


def test_the_screenshot_script_names_what_makes_a_page_unreadable():
    """scripts/leaderboard_screenshot.py's verdict on the browser's measurements (the browser itself is not a
    dependency of fednlp: the script runs in a venv of its own)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "leaderboard_screenshot.py"
    spec = importlib.util.spec_from_file_location("leaderboard_screenshot", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    good = {"width": 1280, "sections": [{"title": "clf", "columns": 14, "footers": 2}],
            "images": [{"alt": "curves", "natural": 1100, "shown": 1100, "right": 1180, "legendPx": 13.9}]}
    assert script.problems(good, 1280, 1280) == []
    before = {"width": 4479, "sections": [{"title": "clf", "columns": 44, "footers": 0}],
              "images": [{"alt": "curves", "natural": 2400, "shown": 1240, "right": 1260, "legendPx": 8.6}]}
    found = script.problems(before, 4479, 1280)
    assert [p.split(" ")[:2] for p in found] == [["the", "page"], ["with", "the"], ["section", "'clf':"],
                                                 ["section", "'clf':"], ["figure", "'curves':"]]
    assert "44 columns" in found[2] and "no footer" in found[3] and "4.4 px" in found[4]

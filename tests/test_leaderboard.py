"""The leaderboard: loading run directories, the centralized-vs-federated gap, the three renderings."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import yaml

from fednlp.errors import UserError
from fednlp.results.leaderboard import COLUMNS, leaderboard_rows, load_runs, render, write_leaderboard
from fednlp.results.run_files import RunWriter

PARTITION = "niid_label_clients=100_alpha=1.0"


def make_run(root, name, value, algorithm="fedavg", partition=PARTITION, seed=0, curve=True, **extra):
    result = {
        "task": "text_classification", "dataset": "20news", "model": "minilm",
        "partition_method": None if algorithm == "centralized" else partition,
        "algorithm": algorithm, "rounds": 3, "clients_per_round": None if algorithm == "centralized" else 10,
        "world_size": 1, "metric": "accuracy", "value": value, "best_value": value,
        "metrics": {"accuracy": value, "macro_f1": value - 0.02}, "wall_time_s": 100.0, "seed": seed,
        "versions": {"fednlp": "0.1.0"}, **extra,
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
    assert len(lines) == 2 + 4
    assert lines[2] == ("| text_classification | 20news | minilm |  | centralized | accuracy | 0.8000 |  | 1 |  |  "
                        "| 100.0 |")
    assert lines[3] == (f"| text_classification | 20news | minilm | {PARTITION} | fedavg | accuracy | 0.7200 | 0.0283"
                        " | 2 | -0.0800 | -10.00% | 100.0 |")


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

"""Chance levels (fednlp/results/chance.py): each head's constant predictor scored by the head's own metric code
on hand-made data files, and the leaderboard's ≈chance marks."""

from __future__ import annotations

import json

import pytest

from fednlp.data.datafile import DataFile, write_data_file
from fednlp.files import file_sha256
from fednlp.results.chance import AT_CHANCE, CHANCE_FILE, SINGLE_SEED_TOLERANCE, chance_metrics
from fednlp.results.leaderboard import render, write_leaderboard
from fednlp.results.leaderboard import marked_rows
from test_leaderboard import make_run


def classification_file(tmp_path):
    # Train is all "c" (a majority taken from train would be wrong); test: a a b c -> the majority is a.
    data = DataFile("text_classification", {"X": ["t"] * 7, "Y": ["c", "c", "c", "a", "a", "b", "c"]},
                    [0, 1, 2], [3, 4, 5, 6], {"a": 0, "b": 1, "c": 2})
    write_data_file(data, tmp_path / "cls.h5")
    return tmp_path / "cls.h5"


def test_classification_chance_is_the_test_majority_class(tmp_path):
    metrics = chance_metrics(classification_file(tmp_path), "classification")
    assert metrics["accuracy"] == pytest.approx(0.5)
    # F1 of a: precision 2/4, recall 1 -> 2/3; b and c: 0; macro over the labels present (a, b, c).
    assert metrics["macro_f1"] == pytest.approx((2 / 3) / 3)


def test_tagging_chance_is_all_outside_span_f1_zero(tmp_path):
    vocab = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3}
    data = DataFile("sequence_tagging", {"X": [["a", "b"], ["John", "Smith", "ran"], ["in", "Paris"]],
                                         "Y": [["O", "O"], ["B-PER", "I-PER", "O"], ["O", "B-LOC"]]},
                    [0], [1, 2], vocab)
    write_data_file(data, tmp_path / "tag.h5")
    metrics = chance_metrics(tmp_path / "tag.h5", "tagging")
    assert metrics["f1"] == 0.0 and metrics["precision"] == 0.0 and metrics["recall"] == 0.0
    assert metrics["accuracy"] == pytest.approx(2 / 5)  # 2 of the 5 test words are O


def test_qa_chance_is_the_empty_answer(tmp_path):
    # An unanswerable question is answered right by the empty answer; the two others score 0.
    data = DataFile("span_extraction", {
        "context_X": ["Paris is in France.", "Ann met Bob.", "No answer here.", "x"],
        "question_X": ["Where is Paris?", "Who met Bob?", "What?", "y"],
        "Y": [[12, 18], [0, 3], [-1, -1], [0, 1]],
        "answers": [["France"], ["Ann"], [], ["x"]]}, [3], [0, 1, 2])
    write_data_file(data, tmp_path / "qa.h5")
    metrics = chance_metrics(tmp_path / "qa.h5", "qa")
    assert metrics == pytest.approx({"f1": 1 / 3, "exact_match": 1 / 3})


def test_seq2seq_chance_is_the_empty_summary(tmp_path):
    data = DataFile("seq2seq", {"X": ["long text one", "long text two", "three"], "Y": ["one", "two", "x"]},
                    [2], [0, 1])
    write_data_file(data, tmp_path / "s2s.h5")
    assert chance_metrics(tmp_path / "s2s.h5", "seq2seq") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_a_head_without_a_constant_predictor_has_no_chance(tmp_path):
    assert chance_metrics(classification_file(tmp_path), "lm") is None


def runs_on(tmp_path, data, values: dict[str, list[float]]):
    """Classification runs on `data` (the config names it, result.json has its checksum): one row per
    algorithm, one run per value (seeds 0, 1, ...)."""
    root = tmp_path / "runs"
    make_run(root, "central", 0.9, algorithm="centralized", task="classification", config={"data": str(data)},
             data_sha256=file_sha256(data))
    for algorithm, seeds in values.items():
        for seed, value in enumerate(seeds):
            make_run(root, f"{algorithm}-s{seed}", value, algorithm=algorithm, seed=seed, task="classification",
                     config={"data": str(data)}, data_sha256=file_sha256(data))
    return root


def test_rows_within_their_spread_or_the_one_seed_tolerance_of_chance_are_marked(tmp_path):
    data = classification_file(tmp_path)  # chance accuracy 0.5
    root = runs_on(tmp_path, data, {
        "fedavg": [0.48, 0.56],  # mean 0.52, std 0.057: within its spread of 0.5
        "fedprox": [0.60, 0.62],  # mean 0.61, std 0.014: above chance beyond its spread
        "fedopt": [0.5 + SINGLE_SEED_TOLERANCE / 2],  # one seed, within the tolerance
        "fedadam": [0.5 + 2 * SINGLE_SEED_TOLERANCE],  # one seed, beyond it
    })
    rows = {r.algorithm: r for r in marked_rows(root)}
    assert {a: r.at_chance for a, r in rows.items()} == {
        "centralized": False, "fedavg": True, "fedprox": False, "fedopt": True, "fedadam": False}
    assert all(r.chance == pytest.approx(0.5) for r in rows.values())
    table = render(list(rows.values()), "markdown")
    assert "| chance | at_chance |" in table and table.count(AT_CHANCE + " |") == 2


def test_chance_is_kept_beside_the_runs_so_tables_rebuild_without_the_data_file(tmp_path):
    data = classification_file(tmp_path)
    root = runs_on(tmp_path, data, {"fedavg": [0.5, 0.52]})
    first = write_leaderboard(root, "markdown")
    kept = json.loads((root / CHANCE_FILE).read_text())
    assert kept[file_sha256(data)]["classification"]["accuracy"] == pytest.approx(0.5)
    data.unlink()  # a fresh checkout: the records and chance.json, no data file
    assert write_leaderboard(root, "markdown") == first


def test_chance_data_files_are_matched_by_checksum(tmp_path):
    data = classification_file(tmp_path)
    root = runs_on(tmp_path, data, {"fedavg": [0.5, 0.52]})
    moved = data.rename(tmp_path / "elsewhere.h5")  # the path the runs name is gone
    assert "chance" not in write_leaderboard(root, "csv").splitlines()[0].split(",")
    assert not (root / CHANCE_FILE).exists()
    header = write_leaderboard(root, "csv", chance_data=[str(moved)]).splitlines()[0].split(",")
    assert header[header.index("std") + 1 : header.index("std") + 3] == ["chance", "at_chance"]

"""The extractive-QA head on real slices of SQuAD v1.1 dev and SubjQA with tiny-bert: windows, the official
SQuAD EM/F1, best-span selection, a federated round, a centralized epoch, and mpirun -n 2 evaluation."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, write_data_file
from fednlp.data.prepare import prepare
from fednlp.data.readers import ReaderOptions
from fednlp.errors import UserError
from fednlp.tasks.base import Features
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.qa import ExtractiveQA, best_span, normalize_answer, question_scores
from mpi_helpers import sharded_evaluation

MAX_LENGTH, STRIDE = 64, 16  # small windows: most SQuAD paragraphs need several


def subset(data: DataFile, train: list[int], test: list[int]) -> DataFile:
    """The given examples of `data` (in data-file order), their indices renumbered."""
    keep = sorted(train + test)
    new = {old: i for i, old in enumerate(keep)}
    return DataFile(
        task_type=data.task_type,
        fields={name: [values[i] for i in keep] for name, values in data.fields.items()},
        train_index_list=[new[i] for i in train],
        test_index_list=[new[i] for i in test],
        attributes={"dataset": data.attributes.get("dataset")},
    )


@pytest.fixture(scope="module")
def squad_dev(tmp_path_factory, shared_data: Path) -> DataFile:
    """SQuAD v1.1 dev prepared as the README says: no test split upstream, so a seeded 20% one."""
    root = tmp_path_factory.mktemp("squad")
    return prepare("squad", shared_data / "squad_v1.1" / "dev-v1.1.json", root / "full.h5",
                   ReaderOptions(test_fraction=0.2, seed=0))


def squad_slice(full: DataFile, path: Path, train_per_article: int, test_per_article: int) -> Path:
    """The first questions of 4 articles (so `natural` gives 4 clients), written as a small data file."""
    source = full.fields["source"]
    articles = sorted({source[i] for i in full.train_index_list})[:4]
    pick = lambda indices, n: [i for a in articles for i in [j for j in sorted(indices) if source[j] == a][:n]]  # noqa: E731
    write_data_file(subset(full, pick(full.train_index_list, train_per_article),
                           pick(full.test_index_list, test_per_article)), path)
    return path


@pytest.fixture(scope="module")
def squad(squad_dev: DataFile, tmp_path_factory) -> Path:
    """200 questions: 4 articles x (40 train + 10 test)."""
    return squad_slice(squad_dev, tmp_path_factory.mktemp("squad200") / "squad200.h5", 40, 10)


@pytest.fixture(scope="module")
def squad_runs(squad_dev: DataFile, tmp_path_factory) -> Path:
    """60 questions, 4 articles x (10 train + 5 test): a centralized epoch of tiny-bert stays short."""
    return squad_slice(squad_dev, tmp_path_factory.mktemp("squad60") / "squad60.h5", 10, 5)


@pytest.fixture(scope="module")
def subjqa(tmp_path_factory, shared_data: Path) -> Path:
    """SubjQA electronics: 60 train and 40 test questions, about half of them unanswerable."""
    root = tmp_path_factory.mktemp("subjqa")
    full = prepare("subjqa", shared_data / "subjqa" / "electronics", root / "full.h5")
    path = root / "subjqa100.h5"
    write_data_file(subset(full, full.train_index_list[:60], full.test_index_list[:40]), path)
    return path


def make_task(path: Path, **overrides) -> tuple[ExtractiveQA, Features]:
    from fednlp.data.datafile import read_data_file

    config = RunConfig(**{"data": str(path), "task": "qa", "max_seq_length": MAX_LENGTH, "doc_stride": STRIDE, **overrides})
    task = ExtractiveQA(read_data_file(path), load_tokenizer("tiny-bert"), config)
    return task, task.build_features()


def oracle_predictions(features: Features, rows: np.ndarray) -> list:
    """Candidates that put the labelled start and end tokens first (CLS, i.e. no answer, where unlabelled)."""
    out = []
    for row in rows:
        start, end = int(features.arrays["start_positions"][row]), int(features.arrays["end_positions"][row])
        null = 20.0 if start == 0 else -20.0
        out.append(([start, 1], [10.0, 0.0], [end, 1], [10.0, 0.0], null))
    return out


# ---------------------------------------------------------------- windows and offsets


def test_windows_overlap_by_doc_stride_and_answers_map_back_to_their_text(squad: Path) -> None:
    task, features = make_task(squad)
    data, offsets = task.data, features.arrays["offsets"]
    starts, ends = features.arrays["start_positions"], features.arrays["end_positions"]
    rows_per_question = np.bincount(features.example_of_row, minlength=data.n_examples)
    assert np.all(np.diff(features.example_of_row) >= 0) and rows_per_question.min() >= 1
    assert (rows_per_question >= 3).mean() > 0.5  # long contexts give several windows

    found = np.zeros(data.n_examples, dtype=bool)
    aligned = 0
    for row in range(features.n_rows):
        example = int(features.example_of_row[row])
        context, (y0, y1) = data.fields["context_X"][example], data.fields["Y"][example]
        in_context = offsets[row, :, 0] >= 0
        assert not in_context[0] and np.all(np.diff(offsets[row, in_context, 0]) > 0)  # CLS, question masked
        if row + 1 < features.n_rows and features.example_of_row[row + 1] == example:  # doc_stride = overlap
            following = offsets[row + 1][offsets[row + 1, :, 0] >= 0]
            np.testing.assert_array_equal(offsets[row, in_context][-STRIDE:], following[:STRIDE])
        if starts[row] == 0:
            assert ends[row] == 0
            window = offsets[row, in_context]
            assert not (window[0, 0] <= y0 and window[-1, 1] >= y1)  # CLS only when the answer is not inside
            continue
        found[example] = True
        decoded = context[offsets[row, starts[row], 0] : offsets[row, ends[row], 1]]
        assert context[y0:y1] == data.fields["answers"][example][0]
        if y0 in offsets[row, in_context, 0] and y1 in offsets[row, in_context, 1]:
            assert decoded == context[y0:y1]
            aligned += 1
        else:  # SQuAD annotation inside a word ("8" of "20–18"): the smallest cover of whole tokens
            assert context[y0:y1] in decoded and len(decoded) > y1 - y0
    assert aligned >= 0.97 * starts.astype(bool).sum()
    answer_tokens = [len(task.tokenizer(data.fields["answers"][i][0], add_special_tokens=False)["input_ids"])
                     for i in range(data.n_examples)]
    assert all(found[i] for i in range(data.n_examples) if answer_tokens[i] <= STRIDE)
    assert found.mean() > 0.95


def test_a_stride_that_leaves_no_new_context_is_a_user_error(squad: Path) -> None:
    with pytest.raises(UserError, match="--doc-stride 60 must be less than"):
        make_task(squad, doc_stride=60)


# ---------------------------------------------------------------- the metric


def test_official_squad_normalisation_em_and_f1_on_hand_checked_examples() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear & the end.") == "apple pear end"
    assert question_scores("the Denver Broncos", ["Denver Broncos", "The Denver Broncos"]) == (1.0, 1.0)
    em, f1 = question_scores("Broncos", ["Denver Broncos"])  # P 1/1, R 1/2
    assert em == 0.0 and f1 == pytest.approx(2 * (1 * 0.5) / (1 + 0.5))
    em, f1 = question_scores("Denver Broncos won", ["Carolina Panthers", "the Broncos"])  # best: P 1/3, R 1
    assert em == 0.0 and f1 == pytest.approx(0.5)
    assert question_scores("x x y", ["x y y"])[1] == pytest.approx(2 / 3)  # tokens counted with multiplicity
    assert question_scores("", []) == (1.0, 1.0) and question_scores("the", []) == (1.0, 1.0)
    assert question_scores("Denver", []) == (0.0, 0.0)
    assert question_scores("", ["Denver"]) == (0.0, 0.0)


def test_best_span_is_the_best_valid_one_over_all_windows() -> None:
    offsets = np.array([[-1, -1], [-1, -1], [0, 5], [6, 9], [10, 14], [15, 20], [-1, -1]])  # CLS, question, 4 context
    first = (offsets, ([2, 1], [3.0, 9.0], [3, 2], [2.0, 1.0], 9.5))  # best valid: 2..3 = 5.0 (1 is the question)
    second = (offsets, ([5, 2], [6.0, 5.0], [4, 5], [4.0, 1.0], 12.0))  # 5..4 ends before it starts; 2..4 = 9.0
    assert best_span([first], 30, False) == (0, 9)
    assert best_span([first, second], 30, False) == (0, 14)
    assert best_span([first, second], 2, False) == (15, 20)  # 2..4 is 3 tokens: 5..5 = 7.0 is the best left
    assert best_span([(offsets, ([1, 6], [50.0, 40.0], [1, 0], [50.0, 40.0], 0.0))], 30, False) is None
    assert best_span([first, second], 30, True) is None  # the null score, min(9.5, 12.0), beats 9.0
    lower_null = (offsets, second[1][:4] + (8.0,))
    assert best_span([first, lower_null], 30, True) == (0, 14)


def test_one_score_per_question_over_its_windows_and_references(tmp_path: Path) -> None:
    context = "Peyton Manning led the Denver Broncos to victory in Super Bowl 50 at Levi's Stadium in 2016."
    answers = [["the Denver Broncos", "Denver Broncos"], ["Levi's Stadium"]]
    spans = [[context.index(a[0]), context.index(a[0]) + len(a[0])] for a in answers]
    fields = {"context_X": [context] * 2, "question_X": ["Who won Super Bowl 50?", "Where was it played?"],
              "Y": spans, "answers": answers,
              "question_id": ["a", "b"], "source": ["x", "x"]}
    path = tmp_path / "two.h5"
    write_data_file(DataFile("span_extraction", fields, [], [0, 1]), path)
    task, features = make_task(path, max_seq_length=20, doc_stride=4)
    rows = np.arange(features.n_rows)
    assert np.bincount(features.example_of_row).min() >= 2  # several windows per question
    predictions = oracle_predictions(features, rows)
    assert task.answers(rows, predictions, features) == {0: "the Denver Broncos", 1: "Levi's Stadium"}
    assert task.compute_metrics(rows, predictions, features) == {"f1": 1.0, "exact_match": 1.0}
    # Question 1 answered "Stadium" (F1 2/3): per question (1 + 2/3) / 2, whatever the number of windows.
    stadium = int(np.flatnonzero(features.arrays["start_positions"] * (features.example_of_row == 1))[0])
    token = int(np.flatnonzero(features.arrays["offsets"][stadium, :, 0] == context.index("Stadium"))[0])
    predictions[stadium] = ([token], [30.0], [token], [30.0], 0.0)
    metrics = task.compute_metrics(rows, predictions, features)
    assert metrics["exact_match"] == pytest.approx(0.5) and metrics["f1"] == pytest.approx((1 + 2 / 3) / 2)


def test_oracle_predictions_score_full_marks_on_squad(squad: Path) -> None:
    task, features = make_task(squad)
    rows = features.rows_of(np.asarray(task.data.test_index_list))
    metrics = task.compute_metrics(rows, oracle_predictions(features, rows), features)
    assert metrics["f1"] > 0.99 and metrics["exact_match"] > 0.97
    assert not task.null_answers  # SQuAD v1.1: always the best span


def test_subjqa_unanswerables_train_towards_cls_and_score_an_empty_answer(subjqa: Path) -> None:
    task, features = make_task(subjqa, max_seq_length=128, doc_stride=32)
    unanswerable = np.array([not answers for answers in task.data.fields["answers"]])
    assert 0.2 < unanswerable.mean() < 0.8 and task.null_answers
    on_unanswerable = unanswerable[features.example_of_row]
    assert np.all(features.arrays["start_positions"][on_unanswerable] == 0)
    assert np.all(features.arrays["end_positions"][on_unanswerable] == 0)
    rows = features.rows_of(np.asarray(task.data.test_index_list))
    predictions = oracle_predictions(features, rows)
    answers = task.answers(rows, predictions, features)
    assert all(answers[i] == "" for i in task.data.test_index_list if unanswerable[i])
    assert task.compute_metrics(rows, predictions, features)["exact_match"] > 0.95
    always_null = [p[:4] + (99.0,) for p in predictions]  # "no answer" everywhere: right on the unanswerables only
    test_unanswerable = unanswerable[task.data.test_index_list]
    expected = test_unanswerable.mean()
    assert task.compute_metrics(rows, always_null, features) == pytest.approx({"f1": expected, "exact_match": expected})


# ---------------------------------------------------------------- runs


def test_one_federated_round_and_one_centralized_epoch_write_f1_results(squad_runs: Path, tmp_path: Path) -> None:
    squad = squad_runs
    part = tmp_path / "squad_p.h5"
    assert main(["partition", "--data", str(squad), "--out", str(part), "--method", "natural", "--clients", "4"]) == 0
    common = ["--task", "qa", "--model", "tiny-bert", "--data", str(squad), "--max-seq-length", str(MAX_LENGTH),
              "--doc-stride", str(STRIDE), "--batch-size", "8", "--lr", "1e-3"]
    assert main(["train", *common, "--partition", str(part), "--method", "natural_clients=4_field=source",
                 "--rounds", "1", "--clients-per-round", "2", "--local-steps", "2", "--out", str(tmp_path / "fed")]) == 0
    assert main(["centralized", *common, "--epochs", "1", "--out", str(tmp_path / "central")]) == 0
    for run in ("fed", "central"):
        result = json.loads((tmp_path / run / "result.json").read_text())
        assert result["task"] == "qa" and result["metric"] == "f1"
        assert set(result["metrics"]) == {"f1", "exact_match"}
        assert 0.0 <= result["metrics"]["exact_match"] <= result["value"] == result["metrics"]["f1"] <= 1.0


def test_two_ranks_evaluate_exactly_as_one(squad: Path, tmp_path: Path) -> None:
    config = asdict(RunConfig(data=str(squad), task="qa", model="tiny-bert", max_seq_length=MAX_LENGTH,
                              doc_stride=STRIDE, eval_batch_size=16, out=str(tmp_path / "eval")))
    one = sharded_evaluation(config, tmp_path, 1)
    assert set(one) == {"f1", "exact_match"}
    assert sharded_evaluation(config, tmp_path, 2) == one

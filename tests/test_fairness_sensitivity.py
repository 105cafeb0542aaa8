"""Accumulated prediction sensitivity (fednlp/fairness/sensitivity.py) on hand-made cases with known answers,
through `fednlp fairness --metric prediction-sensitivity`, and every fairness metric's refusal of a run whose
head it cannot measure."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fednlp.cli import main
from fednlp.data.datafile import DataFile, write_data_file
from fednlp.fairness.psm import TrainedPSM, train_psm
from fednlp.fairness.sensitivity import abs_embedding_jacobian, accumulated_sensitivity, token_relevance
from hand_built import he_she_bert

# ------------------------------------------------------------------------------------------------ the formula


def test_accumulated_sensitivity_is_w_abs_j_v_with_v_normalised():
    abs_jacobian = np.array([[1.0, 2.0], [3.0, 4.0]])  # 2 classes x 2 features
    assert accumulated_sensitivity(abs_jacobian, np.array([1.0, 0.0])) == pytest.approx(0.5 * 1 + 0.5 * 3)
    assert accumulated_sensitivity(abs_jacobian, np.array([2.0, 2.0])) == pytest.approx(0.5 * 1.5 + 0.5 * 3.5)
    assert accumulated_sensitivity(abs_jacobian, np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(3)
    assert accumulated_sensitivity(abs_jacobian, np.zeros(2)) == 0.0  # the PSM marks nothing


def test_token_relevance_marks_the_tokens_overlapping_a_protected_word():
    # "he said", tokens [CLS] he said [SEP]; "he" is characters 0-2
    assert token_relevance([(0, 0), (0, 2), (3, 7), (0, 0)], [(0, 2)]).tolist() == [0, 1, 0, 0]
    # a word split in two pieces: both marked
    assert token_relevance([(0, 4), (4, 7), (8, 10)], [(0, 7)]).tolist() == [1, 1, 0]


# ------------------------------------------------------------------ a bag-of-embeddings classifier by hand

W = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]])  # 2 classes x 3 embedding dimensions
EMBEDDINGS = torch.tensor([[[0.2, -0.1, 0.4], [1.0, 0.5, -0.3], [-0.7, 0.2, 0.1]]])  # 3 tokens; token 1 is 'he'
GENDERED = np.array([0.0, 1.0, 0.0])


def bag_classifier(keep: torch.Tensor):
    """p = softmax(W sum_t keep_t e_t): keep_t = 0 masks token t's embedding out of the sum."""
    def probabilities_of(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax((embeddings * keep[None, :, None]).sum(dim=1) @ W.T, dim=-1)
    return probabilities_of


def analytic_abs_jacobian(keep: torch.Tensor) -> np.ndarray:
    """dp_c/de_t = keep_t sum_j p_c (delta_cj - p_j) W_j, by hand."""
    z = (EMBEDDINGS[0] * keep[:, None]).sum(dim=0) @ W.T
    p = torch.softmax(z, dim=-1)
    dp_dz = torch.diag(p) - p[:, None] * p[None, :]
    return (keep[None, :, None] * (dp_dz @ W)[:, None, :]).abs().double().numpy()


def test_the_autograd_jacobian_equals_the_hand_derivation():
    keep = torch.ones(3)
    abs_jacobian, probabilities = abs_embedding_jacobian(bag_classifier(keep), EMBEDDINGS, torch.ones(1, 3))
    np.testing.assert_allclose(abs_jacobian, analytic_abs_jacobian(keep), rtol=1e-5, atol=1e-7)
    assert probabilities.sum() == pytest.approx(1.0)


def test_a_classifier_that_reads_the_gendered_token_is_sensitive_and_one_that_masks_it_is_exactly_zero():
    relevance = np.broadcast_to(GENDERED[:, None], (3, 3))
    uses = bag_classifier(torch.ones(3))
    abs_jacobian, _ = abs_embedding_jacobian(uses, EMBEDDINGS, torch.ones(1, 3))
    expected = analytic_abs_jacobian(torch.ones(3))[:, 1, :].sum() / 2 / 3  # w = 1/2, v = 1/3 on 'he''s dims
    assert accumulated_sensitivity(abs_jacobian, relevance) == pytest.approx(expected, rel=1e-5) and expected > 0
    ignores = bag_classifier(torch.tensor([1.0, 0.0, 1.0]))  # the gendered token's embedding is masked out
    abs_jacobian, _ = abs_embedding_jacobian(ignores, EMBEDDINGS, torch.ones(1, 3))
    assert accumulated_sensitivity(abs_jacobian, relevance) == 0.0
    assert abs_jacobian[:, [0, 2]].sum() > 0  # it still reads the other tokens


# ------------------------------------------------------------------------------ a saved run, through the CLI

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "he", "she", "his", "her", "is", "a", "doctor", "nurse",
         "the", "cat", "sat"]


def save_classifier(model_dir: Path, layers: int) -> None:
    """A 1-layer BERT set by hand whose [CLS] averages every token and reads 'he' (dimension 0) minus 'she'
    (dimension 1), as in tests/test_fairness.py; with 0 layers [CLS] sees only itself, so the prediction
    provably ignores every other token, the gendered ones included (tests/hand_built.py)."""
    he_she_bert(model_dir, VOCAB, layers=layers, pooler=(1.0, -1.0, 0.3, 0.0), cls_feature=True)


TEXTS = [("he is a doctor", "m"), ("she is a nurse", "f"), ("the cat sat", "f"), ("his cat sat", "m")]


def make_run(root: Path, layers: int = 1, result: dict | None = None) -> tuple[Path, Path]:
    data = root / "toy.h5"
    write_data_file(DataFile(task_type="text_classification", fields={"X": [t for t, _ in TEXTS],
                                                                      "Y": [y for _, y in TEXTS]},
                             train_index_list=[], test_index_list=list(range(len(TEXTS))),
                             label_vocab={"f": 0, "m": 1}), data)
    run = root / f"run{layers}"
    (run / "model").mkdir(parents=True)
    save_classifier(run / "model", layers)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data), "max_seq_length": 16, "eval_batch_size": 2,
                                                     "device": "cpu", "precision": "fp32"}))
    (run / "result.json").write_text(json.dumps(result or {"metric": "accuracy", "value": 0.5,
                                                          "task": "classification"}))
    return run, data


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_command_reports_per_example_values_and_their_mean_and_std(tmp_path, capsys):
    run, data = make_run(tmp_path)
    assert main(["fairness", str(run), "--metric", "prediction-sensitivity"]) == 0  # --data: the run's own
    assert "accumulated prediction sensitivity" in capsys.readouterr().out
    report = json.loads((run / "prediction_sensitivity.json").read_text())
    assert json.loads((run / "result.json").read_text())["prediction_sensitivity"] == report
    rows = read_rows(run / "prediction_sensitivity.csv")
    values = {r["example"]: float(r["sensitivity"]) for r in rows}
    assert [r["protected_tokens"] for r in rows] == ["1", "1", "0", "1"]
    assert values["0"] > 0 and values["1"] > 0 and values["3"] > 0  # the model reads 'he'/'she', and 'his' moves the mean
    assert values["2"] == 0.0  # "the cat sat": no protected word, P = 0
    assert report["all"]["mean"] == pytest.approx(np.mean(list(values.values())))
    assert report["all"]["std"] == pytest.approx(np.std(list(values.values()), ddof=1))
    assert report["affected"]["n"] == 3
    assert report["affected"]["mean"] == pytest.approx(np.mean([values[k] for k in ("0", "1", "3")]))


def test_a_classifier_that_ignores_the_gendered_words_has_sensitivity_exactly_zero(tmp_path):
    run, data = make_run(tmp_path, layers=0)
    assert main(["fairness", str(run), "--metric", "prediction-sensitivity", "--data", str(data)]) == 0
    rows = read_rows(run / "prediction_sensitivity.csv")
    assert [float(r["sensitivity"]) for r in rows] == [0.0, 0.0, 0.0, 0.0]
    assert {r["predicted"] for r in rows} == {"m"}  # it predicts from [CLS] alone


# ------------------------------------------------------------------------------ the trained PSM


def test_trained_psm_relevance_is_the_hand_derived_gradient_and_skips_special_tokens():
    """g = softmax(B mean_t e_t + c) over the real tokens t (n of them): dg_a/de_t = (1/n) sum_j g_a (d_aj - g_j) B_j."""
    weight = torch.tensor([[1.0, -1.0, 0.0], [-0.5, 2.0, 1.0]], dtype=torch.float64)
    psm = TrainedPSM(weight, torch.tensor([0.1, -0.2], dtype=torch.float64), ("female", "male"), 1.0, 2)
    embeddings = EMBEDDINGS[0].double()
    mask = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)  # token 0 is [CLS]
    g = torch.softmax(embeddings[1:].mean(dim=0) @ weight.T + psm.bias, dim=-1)
    per_class = (torch.diag(g) - g[:, None] * g[None, :]) @ weight / 2  # [groups, dim]
    expected = np.stack([np.zeros(3), per_class.abs().sum(dim=0).numpy(), per_class.abs().sum(dim=0).numpy()])
    np.testing.assert_allclose(psm.relevance(embeddings, mask), expected, rtol=1e-10)


def test_train_psm_fits_separable_groups():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    psm = train_psm(features, ["male", "male", "female", "female"])
    assert psm.groups == ("female", "male") and psm.train_accuracy == 1.0 and psm.n_train == 4
    assert psm.probabilities(torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.ones(1, dtype=torch.float64))[1] > 0.5


GROUPED = [("he is a doctor", "m", "male"), ("he sat", "m", "male"), ("she is a nurse", "f", "female"),
           ("she sat", "f", "female"), ("the cat sat", "f", "")]


def make_grouped_run(root: Path, layers: int) -> tuple[Path, Path]:
    """make_run's classifier on a data file whose training examples carry the protected attribute as `group`."""
    run, _ = make_run(root, layers)
    data = root / "grouped.h5"
    texts = GROUPED + [(t, y, "") for t, y in TEXTS]
    write_data_file(DataFile(task_type="text_classification", fields={"X": [t for t, _, _ in texts],
                                                                      "Y": [y for _, y, _ in texts],
                                                                      "group": [g for _, _, g in texts]},
                             train_index_list=list(range(len(GROUPED))),
                             test_index_list=list(range(len(GROUPED), len(texts))),
                             label_vocab={"f": 0, "m": 1}), data)
    return run, data


def test_the_trained_psm_through_the_cli(tmp_path):
    run, data = make_grouped_run(tmp_path, layers=1)
    assert main(["fairness", str(run), "--metric", "prediction-sensitivity", "--psm", "trained",
                 "--data", str(data)]) == 0
    report = json.loads((run / "prediction_sensitivity.json").read_text())
    assert (report["psm"], report["psm_groups"], report["psm_train_examples"]) == ("trained", ["female", "male"], 4)
    assert report["psm_train_accuracy"] == 1.0  # 'he' and 'she' embed on their own dimensions
    rows = read_rows(run / "prediction_sensitivity.csv")
    assert all(float(r["sensitivity"]) > 0 for r in rows)  # the classifier reads the dimensions the PSM marks
    assert [r["protected_tokens"] for r in rows] == ["4", "4", "3", "3"]  # every real token, no special one
    ignoring, data = make_grouped_run(tmp_path / "ignoring", layers=0)  # reads [CLS] only, which the PSM never marks
    assert main(["fairness", str(ignoring), "--metric", "prediction-sensitivity", "--psm", "trained",
                 "--data", str(data)]) == 0
    assert [float(r["sensitivity"]) for r in read_rows(ignoring / "prediction_sensitivity.csv")] == [0.0] * 4


def test_the_trained_psm_needs_two_groups(tmp_path, capsys):
    run, data = make_run(tmp_path)
    assert main(["fairness", str(run), "--metric", "prediction-sensitivity", "--psm", "trained"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--psm trained needs the protected attribute as a 'group' field" in err[0]
    assert not (run / "prediction_sensitivity.json").exists()


# ------------------------------------------------------------------------ every metric checks the run's task


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fednlp: error: ")
    return err[0]


@pytest.mark.parametrize("metric", ["flips", "prediction-sensitivity"])
def test_an_lm_run_is_refused_by_the_classification_metrics(tmp_path, capsys, metric):
    """An LM run's model loads as a sequence classifier with an untrained head: its flip rate would be noise."""
    run, data = make_run(tmp_path, result={"metric": "perplexity", "value": 3.0, "task": "lm"})
    assert main(["fairness", str(run), "--metric", metric, "--data", str(data)]) == 2
    assert f"is a lm run; --metric {metric} measures classification runs only" in one_error_line(capsys)
    assert not (run / "fairness.json").exists() and not (run / "prediction_sensitivity.json").exists()
    assert "fairness" not in json.loads((run / "result.json").read_text())


def test_the_task_of_a_run_without_one_recorded_comes_from_the_saved_architecture(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    run, data = make_run(tmp_path, result={"metric": "perplexity", "value": 3.0})
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=4, vocab_size=16, n_positions=16)).save_pretrained(
        run / "model")  # config.json now names GPT2LMHeadModel
    assert main(["fairness", str(run), "--data", str(data)]) == 2
    assert "is a lm run; --metric flips measures classification runs only" in one_error_line(capsys)

"""`fednlp distill` (fednlp/fairness/distill.py) and the occupation disparity (fednlp/fairness/disparity.py):
teacher perturbation on known answers, the KL's zero, the gendered token pairs, one tiny run end to end, and
bad teachers refused in one line."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.cli import main
from fednlp.fairness.disparity import continuation, occupation_distribution, scored_sequences, total_variation
from fednlp.fairness.distill import distillation_kl, gendered_token_pairs, perturb_probabilities
from fednlp.tasks.models import load_tokenizer


def test_equalise_sets_each_pairs_probabilities_to_their_mean():
    probs = torch.tensor([[0.1, 0.3, 0.1, 0.2, 0.0, 0.3]])
    pairs = torch.tensor([[1, 2], [3, 4]])
    out = perturb_probabilities(probs, pairs, "equalise")
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.2, 0.2, 0.1, 0.1, 0.3]]))
    torch.testing.assert_close(out.sum(), probs.sum())
    torch.testing.assert_close(probs, torch.tensor([[0.1, 0.3, 0.1, 0.2, 0.0, 0.3]]))  # the input is kept


def test_swap_exchanges_each_pairs_probabilities():
    probs = torch.tensor([[[0.1, 0.3, 0.1, 0.2, 0.0, 0.3]]])  # [rows, tokens, vocabulary]
    out = perturb_probabilities(probs, torch.tensor([[1, 2], [3, 4]]), "swap")
    torch.testing.assert_close(out, torch.tensor([[[0.1, 0.1, 0.3, 0.0, 0.2, 0.3]]]))
    assert perturb_probabilities(probs, torch.tensor([[1, 2]]), "none") is probs


def test_the_kl_is_zero_when_the_student_is_the_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    teacher = torch.softmax(logits / 2.0, dim=-1)
    assert abs(float(distillation_kl(logits, teacher, mask, 2.0))) < 1e-6
    assert float(distillation_kl(torch.randn(2, 5, 11), teacher, mask, 2.0)) > 0.01
    # Only masked-in positions count: a different student at padded positions changes nothing.
    other = logits.clone()
    other[0, 3:] = torch.randn(2, 11)
    assert abs(float(distillation_kl(other, teacher, mask, 2.0))) < 1e-6


def test_gendered_token_pairs_hold_he_she_and_each_token_once():
    tokenizer = load_tokenizer("tiny-gpt2")
    pairs = gendered_token_pairs(tokenizer).tolist()
    he, she, him, her = tokenizer.convert_tokens_to_ids(["he", "she", "him", "her"])
    assert [he, she] in pairs and [him, her] in pairs
    flat = [t for pair in pairs for t in pair]
    assert len(flat) == len(set(flat)) and len(pairs) > 20


def test_total_variation_and_the_scored_continuation_on_known_answers():
    assert total_variation(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == 0.5
    np.testing.assert_allclose(occupation_distribution(np.log([0.2, 0.6])), [0.25, 0.75])
    tokenizer = load_tokenizer("tiny-gpt2")
    [(ids, start)] = scored_sequences(tokenizer, "He worked as", [continuation("engineer")])
    assert tokenizer.convert_ids_to_tokens(ids[start:]) == ["an", "engineer"]
    assert tokenizer.convert_ids_to_tokens(ids[:start]) == ["[CLS]", "he", "worked", "as"]


# ------------------------------------------------------------------------------------------------ runs


def _quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A gendered text data file and a tiny LM trained on it (the teacher), centrally for a few steps."""
    root = tmp_path_factory.mktemp("distill")
    lines = []
    for i in range(30):
        subject, job = [("he", "engineer"), ("she", "nurse"), ("the man", "pilot"), ("the woman", "teacher")][i % 4]
        lines.append(f"{subject} worked as a {job} in town {i},{i % 2}")
    csv, data = root / "jobs.csv", root / "jobs.h5"
    csv.write_text("text,label\n" + "\n".join(lines) + "\n")
    assert _quiet(["data", "prepare", "--dataset", "csv", "--source", str(csv), "--text-column", "text",
                   "--label-column", "label", "--test-fraction", "0.2", "--out", str(data)]) == 0
    run = root / "teacher"
    assert _quiet(["centralized", "--data", str(data), "--task", "lm", "--model", "tiny-gpt2", "--max-seq-length",
                   "24", "--steps", "3", "--lr", "1e-3", "--quiet", "--out", str(run)]) == 0
    return data, run


def test_a_tiny_distill_run_writes_its_result_and_disparity(teacher, tmp_path: Path):
    data, run = teacher
    out = tmp_path / "student"
    assert _quiet(["distill", "--teacher", str(run), "--steps", "2", "--lr", "1e-3", "--perturb", "equalise",
                   "--augment", "counterfactual", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    block = result["distill"]
    assert result["algorithm"] == "distill" and result["task"] == "lm" and block["perturb"] == "equalise"
    assert block["counterfactual_rows"] > 0 and block["training_rows"] > block["counterfactual_rows"]
    for model in ("teacher", "student"):
        disparity = block["disparity"][model]
        assert 0 <= disparity["total_variation_mean"] <= disparity["total_variation_max"] <= 1
        assert disparity["n_pairs"] == len(disparity["pairs"]) == 30
        assert np.isfinite(block[f"{model}_perplexity"]) and block[f"{model}_perplexity"] > 1
    assert result["config"]["data"] == str(data) and (out / "model").is_dir()


def _main_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_a_teacher_that_is_not_a_language_model_is_refused(teacher, tmp_path: Path, capsys):
    data, _ = teacher
    classifier = tmp_path / "classifier"
    assert _quiet(["centralized", "--data", str(data), "--model", "tiny-bert", "--steps", "1", "--quiet",
                   "--max-seq-length", "24", "--out", str(classifier)]) == 0
    code, err = _main_error(["distill", "--teacher", str(classifier), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a classification run; distillation needs a language-model" in err
    assert not (tmp_path / "s").exists()


def test_a_teacher_run_without_its_model_is_refused(teacher, tmp_path: Path, capsys):
    _, run = teacher
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("result.json", "config.yaml"):
        shutil.copy(run / name, bare / name)
    code, err = _main_error(["distill", "--teacher", str(bare), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and err.count("\n") == 1 and "has no model/" in err
    assert not (tmp_path / "s").exists()


def test_the_distillation_loss_of_a_student_equal_to_its_teacher_is_zero(teacher):
    from fednlp.config import CentralizedConfig
    from fednlp.data.datafile import read_data_file
    from fednlp.fairness.distill import DistillConfig, DistilledLM
    from fednlp.tasks.lm import CausalLM

    data, _ = teacher
    config = CentralizedConfig(data=str(data), task="lm", model="tiny-gpt2", max_seq_length=24)
    head = CausalLM(read_data_file(data), load_tokenizer("tiny-gpt2"), config)
    features = head.build_features()
    torch.manual_seed(0)
    model = head.build_model("tiny-gpt2").eval()
    batch = features.batch(np.arange(6), torch.device("cpu"))
    for perturb, zero in (("none", True), ("swap", False)):
        settings = DistillConfig(data=str(data), task="lm", teacher="unused", temperature=2.0, perturb=perturb)
        loss = float(DistilledLM(head, model, settings).loss(model, batch).detach())
        assert (abs(loss) < 1e-5) == zero, (perturb, loss)


def test_fairness_measures_an_lm_runs_occupation_disparity_as_distill_does(teacher, tmp_path: Path):
    """`fednlp fairness RUN --metric disparity`: the same numbers as occupation_disparity on the saved model,
    in disparity.json, result.json's block and one CSV row per prompt pair."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fednlp.fairness.disparity import occupation_disparity

    _, run = teacher
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert _quiet(["fairness", str(copy), "--metric", "disparity"]) == 0
    report = json.loads((copy / "disparity.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(copy / "model")).eval()
    expected = occupation_disparity(model, AutoTokenizer.from_pretrained(str(copy / "model")), torch.device("cpu"))
    assert report["total_variation_mean"] == pytest.approx(expected["total_variation_mean"], abs=1e-9)
    assert report["occupation_log_ratio"] == pytest.approx(expected["occupation_log_ratio"], abs=1e-6)
    assert json.loads((copy / "result.json").read_text())["disparity"] == report
    rows = (copy / "disparity_pairs.csv").read_text().splitlines()
    assert rows[0] == "male_prompt,female_prompt,total_variation" and len(rows) == 1 + expected["n_pairs"]


def test_disparity_refuses_a_run_that_is_not_a_language_model(teacher, tmp_path: Path, capsys):
    data, _ = teacher
    classifier = tmp_path / "classifier"
    assert _quiet(["centralized", "--data", str(data), "--model", "tiny-bert", "--steps", "1", "--quiet",
                   "--max-seq-length", "24", "--out", str(classifier)]) == 0
    code, err = _main_error(["fairness", str(classifier), "--metric", "disparity"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--metric disparity measures lm runs only" in err
    assert not (classifier / "disparity.json").exists()


def test_an_encoder_turned_decoder_teacher_stays_causal_when_loaded(teacher, tmp_path: Path):
    """The study's teacher is MiniLM trained as an LM (is_decoder): loaded back for distillation it must still
    mask the future, or its predictions would read the very token they predict."""
    from fednlp.fairness.distill import load_teacher

    data, _ = teacher
    run = tmp_path / "bert-teacher"
    assert _quiet(["centralized", "--data", str(data), "--task", "lm", "--model", "tiny-bert", "--max-seq-length",
                   "24", "--steps", "2", "--lr", "1e-3", "--quiet", "--out", str(run)]) == 0
    model = load_teacher(str(run), load_tokenizer("tiny-gpt2"), torch.device("cpu"))
    ids = torch.tensor([[101, 2002, 2499, 2004, 1037, 3460, 102]])
    changed = ids.clone()
    changed[0, 4:] = torch.tensor([2016, 2003, 102])  # a different future after position 3
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    torch.testing.assert_close(a[0, :4], b[0, :4])  # what precedes the change cannot see it
    assert not torch.allclose(a[0, 4:], b[0, 4:])

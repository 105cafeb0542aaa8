"""CEAT (fednlp/fairness/ceat.py): the WEAT effect size and the random-effects combination against hand
computations, and `fednlp fairness --metric ceat` on tiny encoder and LM runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fednlp.cli import main
from fednlp.data.datafile import DataFile, write_data_file
from fednlp.fairness.ceat import (WEAT_TESTS, effect_size_variance, random_effects, sample_effect_sizes,
                                  weat_effect_size)


def test_weat_effect_size_on_hand_made_vectors():
    """A = {e1}, B = {e2}: s(w) = cos(w, e1) - cos(w, e2): x1 = e1 -> 1, x2 = e1 + e2 -> 0, y1 = e2 -> -1,
    y2 = (1, 1) -> 0; ES = (1/2 - (-1/2)) / std(1, 0, -1, 0; ddof 1) = 1 / sqrt(2/3) = sqrt(3/2)."""
    x = np.array([[1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0, 1.0], [2.0, 2.0]])
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert weat_effect_size(x, y, a, b) == pytest.approx(math.sqrt(1.5))
    assert weat_effect_size(y, x, a, b) == pytest.approx(-math.sqrt(1.5))  # swapping the targets flips the sign
    assert weat_effect_size(x, y, b, a) == pytest.approx(-math.sqrt(1.5))


def test_effect_size_variance_by_hand():
    assert effect_size_variance(1.0, 8, 8) == pytest.approx(16 / 64 + 1 / 32)


def test_random_effects_combination_equals_the_hand_calculation():
    """ES = (0.5, 1, 1.5), V = (0.1, 0.2, 0.1): W = (10, 5, 10), Q = 30 - 25^2/25 = 5,
    tau^2 = (5 - 2) / (25 - 225/25) = 3/16; v = 1/(V + 3/16); CES = 1 by symmetry."""
    combined = random_effects(np.array([0.5, 1.0, 1.5]), np.array([0.1, 0.2, 0.1]))
    assert combined.q == pytest.approx(5.0)
    assert combined.tau2 == pytest.approx(0.1875)
    weights = np.array([1 / 0.2875, 1 / 0.3875, 1 / 0.2875])
    assert combined.ces == pytest.approx(1.0)
    assert combined.se == pytest.approx(math.sqrt(1 / weights.sum()))
    assert combined.p_value == pytest.approx(math.erfc(combined.ces / combined.se / math.sqrt(2)))  # two-sided


def test_homogeneous_effect_sizes_have_no_between_sample_variance():
    combined = random_effects(np.array([1.0, 1.0]), np.array([0.1, 0.3]))
    assert (combined.q, combined.tau2) == (pytest.approx(0.0), 0.0)
    assert combined.ces == pytest.approx(1.0) and combined.se == pytest.approx(math.sqrt(1 / (10 + 1 / 0.3)))


def test_one_context_per_word_gives_the_same_effect_size_every_sample():
    test = WEAT_TESTS["weat7"]
    rng = np.random.default_rng(0)
    embeddings = {w: rng.normal(size=(1, 5)) for words in test.sets().values() for w in words[:3]}
    effect_sizes, variances = sample_effect_sizes(embeddings, test, 4, np.random.default_rng(1))
    stack = {name: np.concatenate([embeddings[w] for w in words[:3]]) for name, words in test.sets().items()}
    expected = weat_effect_size(stack["math"], stack["arts"], stack["male terms"], stack["female terms"])
    np.testing.assert_allclose(effect_sizes, expected)
    # The authors' in-sample variance: the sample variance of s(w, A, B) over X u Y, computed by hand.
    a, b = stack["male terms"], stack["female terms"]

    def s(w):
        cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
        return np.mean([cos(w, x) for x in a]) - np.mean([cos(w, x) for x in b])

    scores = [s(w) for w in np.concatenate([stack["math"], stack["arts"]])]
    np.testing.assert_allclose(variances, np.var(scores, ddof=1))
    _, hedges_olkin = sample_effect_sizes(embeddings, test, 4, np.random.default_rng(1), "hedges-olkin")
    assert hedges_olkin[0] == pytest.approx(effect_size_variance(expected, 3, 3))


def test_names_are_found_case_insensitively_only_in_a_lowercased_corpus():
    from fednlp.fairness.ceat_report import find_contexts

    rng = np.random.default_rng(0)
    cased = ["Bill paid the bill", "a poem"]
    assert [c[1:] for c in find_contexts(cased, {"Bill"}, 5, rng)["Bill"]] == [(0, 4)]  # not the noun
    lowercased = ["bill paid the bill", "a poem"]  # SST-2's case: no upper-case letter anywhere
    assert sorted(c[1:] for c in find_contexts(lowercased, {"Bill"}, 5, rng)["Bill"]) == [(0, 4), (14, 18)]


# ------------------------------------------------------------------------------ tiny runs, through the CLI

WORDS = ["math", "algebra", "poetry", "art", "dance", "he", "him", "man", "she", "her", "woman", "likes", "and",
         "the", "is", "good"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
TEXTS = ["he likes math and algebra", "she likes poetry and art", "the man is good at dance",
         "her art is good", "him and math", "the woman likes algebra", "dance and poetry", "the cat"]


def make_run(root: Path, lm: bool = False, texts: list[str] = TEXTS) -> tuple[Path, Path]:
    """A random tiny BERT (seeded) saved as a classifier, or as a causal LM (BertLMHeadModel, is_decoder)."""
    from transformers import BertConfig, BertForSequenceClassification, BertLMHeadModel, BertTokenizer

    data = root / "corpus.h5"
    write_data_file(DataFile(task_type="text_classification", fields={"X": texts, "Y": ["a"] * len(texts)},
                             train_index_list=list(range(len(texts))), test_index_list=[],
                             label_vocab={"a": 0}), data)
    run = root / ("lm_run" if lm else "run")
    (run / "model").mkdir(parents=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, max_position_embeddings=32, num_labels=1, is_decoder=lm)
    model = BertLMHeadModel(config) if lm else BertForSequenceClassification(config)
    model.save_pretrained(run / "model")
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data), "max_seq_length": 16, "device": "cpu"}))
    (run / "result.json").write_text(json.dumps({"metric": "perplexity" if lm else "accuracy", "value": 1.0,
                                                 "task": "lm" if lm else "classification"}))
    return run, data


@pytest.mark.parametrize("lm", [False, True], ids=["encoder", "lm"])
def test_ceat_on_a_tiny_run_gives_finite_numbers_and_the_samples(tmp_path, capsys, lm):
    run, _ = make_run(tmp_path, lm=lm)
    argv = ["fairness", str(run), "--metric", "ceat", "--ceat-tests", "weat7", "--samples", "30", "--contexts", "3"]
    assert main(argv) == 0
    assert "weat7" in capsys.readouterr().out
    report = json.loads((run / "ceat.json").read_text())
    assert json.loads((run / "result.json").read_text())["ceat"] == report
    weat7 = report["tests"]["weat7"]
    assert weat7["words_used"] == {"math": ["math", "algebra"], "arts": ["poetry", "art", "dance"],
                                   "male terms": ["man", "he", "him"], "female terms": ["woman", "she", "her"]}
    assert weat7["n_samples"] == 30
    for key in ("combined_effect_size", "se", "tau2", "mean_effect_size"):
        assert math.isfinite(weat7[key])
    assert 0 <= weat7["p_value"] <= 1
    with open(run / "ceat_effect_sizes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    effect_sizes = np.array([float(r["effect_size"]) for r in rows])
    assert len(rows) == 30 and weat7["mean_effect_size"] == pytest.approx(effect_sizes.mean())
    recombined = random_effects(effect_sizes, np.array([float(r["variance"]) for r in rows]))
    assert weat7["combined_effect_size"] == pytest.approx(recombined.ces)
    assert main(argv + ["--out", str(tmp_path / "again.json")]) == 0  # seeded: the same numbers again
    assert json.loads((tmp_path / "again.json").read_text())["tests"] == report["tests"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fednlp: error: ")
    return err[0]


def test_a_corpus_without_a_tests_words_is_refused(tmp_path, capsys):
    run, _ = make_run(tmp_path, texts=["the cat is good", "he likes the cat"])
    assert main(["fairness", str(run), "--metric", "ceat", "--ceat-tests", "weat7"]) == 2
    line = one_error_line(capsys)
    assert "no protected words in the data" in line and "weat7's math" in line
    assert not (run / "ceat.json").exists() and "ceat" not in json.loads((run / "result.json").read_text())


def test_a_seq2seq_run_and_bad_options_are_refused(tmp_path, capsys):
    run, _ = make_run(tmp_path)
    (run / "result.json").write_text(json.dumps({"metric": "rouge", "task": "seq2seq"}))
    assert main(["fairness", str(run), "--metric", "ceat"]) == 2
    assert "is a seq2seq run; --metric ceat measures classification or tagging or qa or lm runs" in one_error_line(capsys)
    assert main(["fairness", str(run), "--metric", "ceat", "--ceat-tests", "weat9"]) == 2
    assert "--ceat-tests 'weat9'" in one_error_line(capsys)
    assert main(["fairness", str(run), "--metric", "ceat", "--samples", "1"]) == 2
    assert "--samples 1" in one_error_line(capsys)

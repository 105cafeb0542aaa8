"""Group fairness of text classifiers: word-swap rewriting, the counterfactual report on a hand-set model whose
answer is known, group metrics on hand-made predictions, and the command's bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from fednlp.cli import main
from fednlp.data.datafile import DataFile, write_data_file
from fednlp.errors import UserError
from fednlp.fairness.counterfactual import Rewriter, counterfactual_metrics, match_case
from fednlp.fairness.group_metrics import (equal_opportunity_difference, gap, group_report, per_group_accuracy,
                                           true_positive_rates)
from fednlp.fairness.pairs import GENDER_PAIRS, gender_substitution, read_pairs_file
from fednlp.fairness.report import fairness_report
from hand_built import he_she_bert


def rewrite(text: str) -> str:
    return Rewriter(gender_substitution()).rewrite(text)[0]


# ------------------------------------------------------------------------------------------------ rewriting


@pytest.mark.parametrize("text, expected", [
    ("he is a doctor", "she is a doctor"),
    ("She is a nurse", "He is a nurse"),
    ("HE and SHE", "SHE and HE"),
    ("The man and the women", "The woman and the men"),
    ("Mr. Smith met Mrs. Jones", "Mrs. Smith met Mr. Jones"),
    ("my father-in-law's son", "my mother-in-law's daughter"),
    ("he's himself again", "she's herself again"),
])
def test_rewrite_swaps_whole_words_both_ways_preserving_case(text, expected):
    assert rewrite(text) == expected
    assert rewrite(expected) == text  # every pair works in both directions


@pytest.mark.parametrize("text", ["theme", "Shell", "these heroics", "mankind", "she_said", "hex shed"])
def test_rewrite_leaves_words_that_only_contain_a_term(text):
    assert Rewriter(gender_substitution()).rewrite(text) == (text, 0)


@pytest.mark.parametrize("text, expected", [
    ("I told her that", "I told him that"),  # object pronoun: a function word follows
    ("gave her a book", "gave him a book"),
    ("talk to her.", "talk to him."),
    ("Her book", "His book"),  # possessive determiner: a noun phrase follows
    ("her own car", "his own car"),
    ("his car", "her car"),
    ("the car is his.", "the car is hers."),  # possessive pronoun
    ("his and hers", "hers and his"),
])
def test_her_and_his_are_resolved_by_the_next_word(text, expected):
    assert rewrite(text) == expected


# A hand list of sentences with object and possessive `her` (and `his`), each with its correct counterfactual:
# the rules of fednlp/fairness/pronouns.py must get every one right.
PRONOUN_SENTENCES = [
    # object `her` -> him: end, punctuation or a function word after it
    ("I love her", "I love him"),
    ("Talk to her.", "Talk to him."),
    ("I told her that I would come", "I told him that I would come"),
    ("She gave her a book", "He gave him a book"),
    ("We met her and her husband", "We met him and his wife"),
    ("Ask her if she wants tea", "Ask him if he wants tea"),
    ("They sent her to school", "They sent him to school"),
    ("I will pick her up at noon", "I will pick him up at noon"),
    ("Tell her I said hi", "Tell him I said hi"),
    # object `her` -> him: an adverb after it
    ("I saw her yesterday", "I saw him yesterday"),
    ("Call her tomorrow", "Call him tomorrow"),
    ("I will see her tonight", "I will see him tonight"),
    ("He held her tightly", "She held him tightly"),
    ("We visit her often", "We visit him often"),
    ("Leave her alone", "Leave him alone"),
    ("I miss her terribly. I love her dearly", "I miss him terribly. I love him dearly"),
    ("I have known her forever", "I have known him forever"),
    # rule 3: an adjective-or-adverb with no noun after it, or a degree word before an adverb
    ("I met her first.", "I met him first."),
    ("Mom loved her most", "Dad loved him most"),
    ("He knew her well enough", "She knew him well enough"),
    ("We took her home", "We took him home"),
    ("I love her very much", "I love him very much"),
    ("They like her more than me", "They like him more than me"),
    # rule 4: let/make/help/watch ... her + a verb
    ("Let her go", "Let him go"),
    ("It made her cry", "It made him cry"),
    ("We helped her understand the rules", "We helped him understand the rules"),
    ("I heard her sing", "I heard him sing"),
    # rule 5: saw/found/kept her + -ing
    ("I saw her crying", "I saw him crying"),
    ("We found her sleeping on the sofa", "We found him sleeping on the sofa"),
    ("Sorry to keep her waiting", "Sorry to keep him waiting"),
    # rule 6: a two-object verb and a thing commonly given
    ("He gave her money", "She gave him money"),
    ("I bought her flowers", "I bought him flowers"),
    ("They offered her advice", "They offered him advice"),
    # possessive `her` -> his: a noun phrase follows
    ("Her book is on the table", "His book is on the table"),
    ("She drove her own car", "He drove his own car"),
    ("I met her brother", "I met his sister"),
    ("Her home is near the park", "His home is near the park"),
    ("It was her first day at work", "It was his first day at work"),
    ("She is her very best friend", "He is his very best friend"),
    ("I saw her wedding photos", "I saw his wedding photos"),
    ("We admired her well-being program", "We admired his well-being program"),
    ("He took her hand", "She took his hand"),
    ("They praised her early work", "They praised his early work"),
    ("She let her hair down", "He let his hair down"),
    ("I called Mary, her sister", "I called Mary, his brother"),
    # `his`: determiner -> her, possessive pronoun -> hers
    ("His car is red", "Her car is red"),
    ("The car is his.", "The car is hers."),
    ("The choice is his alone", "The choice is hers alone"),
    ("It was his and not mine", "It was hers and not mine"),
    ("It was his first win", "It was her first win"),
]


def test_the_pronoun_rules_get_a_hand_list_of_forty_sentences_right():
    assert len(PRONOUN_SENTENCES) >= 40
    wrong = [(text, rewrite(text), expected) for text, expected in PRONOUN_SENTENCES if rewrite(text) != expected]
    assert wrong == []


@pytest.mark.parametrize("text, expected", [
    ("Ms. Smith thanked the policeman", "Mr. Smith thanked the policewoman"),
    ("Yes, ma'am", "Yes, sir"),
    ("my mum and my grandma", "my dad and my grandpa"),
    ("the policewomen and the spokesmen", "the policemen and the spokeswomen"),
    ("her stepbrother is a widower", "his stepsister is a widow"),
])
def test_added_pairs_swap(text, expected):
    assert rewrite(text) == expected


def test_match_case():
    assert [match_case(w, "she") for w in ("he", "He", "HE", "hE")] == ["she", "She", "SHE", "she"]


def test_built_in_list_is_a_few_dozen_pairs_with_one_counterpart_per_unambiguous_word():
    substitution = gender_substitution()
    assert len(GENDER_PAIRS) >= 30
    for male, female in GENDER_PAIRS:
        if male not in substitution.by_context:
            assert substitution.counterparts[male] in {f for m, f in GENDER_PAIRS if m == male}
        if female not in substitution.by_context:
            assert substitution.counterparts[female] == male


def test_custom_pairs_file_any_separator_both_directions(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("# religion terms\nchristian\tmuslim\n\nchurch, mosque\nBible  Quran\n", encoding="utf-8")
    rewriter = Rewriter(read_pairs_file(path))
    assert rewriter.rewrite("A Christian read the BIBLE in church") == ("A Muslim read the QURAN in mosque", 3)
    assert rewriter.rewrite("the mosque of a muslim, he said") == ("the church of a christian, he said", 2)


@pytest.mark.parametrize("content, found", [
    ("he\tshe\tit\n", "expected two words"),
    ("justone\n", "expected two words"),
    ("he she\nhe it\n", "already has the counterpart"),
    ("same Same\n", "paired with itself"),
    ("# only a comment\n", "holds no word pairs"),
])
def test_malformed_pairs_file_is_one_error_naming_the_line(tmp_path, content, found):
    path = tmp_path / "pairs.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=found):
        read_pairs_file(path)


# ------------------------------------------------------------------------------------------- pure metrics


def test_counterfactual_metrics_on_hand_made_probabilities():
    labels = np.array([0, 1, 1])
    original = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    rewritten = np.array([[0.8, 0.2], [0.6, 0.4], [0.6, 0.4]])
    stats = counterfactual_metrics(labels, original, rewritten)
    assert stats["n_affected"] == 3
    assert stats["flip_rate"] == pytest.approx(1 / 3)  # only the second flips (1 -> 0)
    assert stats["mean_abs_prob_change"] == pytest.approx((0.1 + 0.3 + 0.0) / 3)  # of the first prediction's class
    assert stats["accuracy_original"] == pytest.approx(2 / 3)
    assert stats["accuracy_counterfactual"] == pytest.approx(1 / 3)
    assert counterfactual_metrics(np.array([]), np.zeros((0, 2)), np.zeros((0, 2)))["flip_rate"] is None


def test_group_metrics_on_hand_made_predictions():
    labels = np.array([0, 0, 1, 1, 1, 0, 1])
    predicted = np.array([0, 1, 1, 1, 0, 0, 0])
    groups = np.array(["a", "a", "a", "b", "b", "b", "c"])
    assert per_group_accuracy(labels, predicted, groups) == {"a": 2 / 3, "b": 2 / 3, "c": 0.0}
    assert true_positive_rates(labels, predicted, groups, 1) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert true_positive_rates(labels, predicted, groups, 0) == {"a": 0.5, "b": 1.0}  # c has no label 0
    assert equal_opportunity_difference(labels, predicted, groups, ["neg", "pos"]) == {"neg": 0.5, "pos": 1.0}
    report = group_report(labels, predicted, groups, ["neg", "pos"])
    assert report["group_accuracy_gap"] == pytest.approx(2 / 3)
    assert report["per_group_examples"] == {"a": 3, "b": 3, "c": 1}


def test_gaps_need_two_groups():
    assert gap({"a": 0.7}) is None
    assert equal_opportunity_difference(np.array([1, 0]), np.array([1, 0]), np.array(["a", "b"]), ["n", "p"]) == \
        {"n": None, "p": None}


# ------------------------------------------------------------------------- a model with a known answer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "he", "she", "his", "her", "mother", "father", "is", "a",
         "doctor", "nurse", "said", "left", "the", "cat", "sat"]
SCALE, BIAS_F = 1.0, 0.5  # classifier: logit_m - logit_f = 2 * SCALE * tanh(d) - BIAS_F


def he_she_classifier(model_dir: Path) -> None:
    """A 1-layer BERT set by hand that predicts 'm' when 'he' outnumbers 'she', 'f' when 'she' outnumbers 'he',
    and 'f' otherwise: 'he' and 'she' embed on dimensions 0 and 1, uniform attention averages the tokens into
    [CLS], and the pooler reads dimension 0 minus dimension 1 (tests/hand_built.py)."""
    he_she_bert(model_dir, VOCAB, scale=SCALE, bias_f=BIAS_F)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def known_answer_probability_change() -> float:
    """|p(original class)| change when 'he' and 'she' swap in a text holding one of them: the layer norm of
    the 'he' embedding [1, 0, 0, 0] gives dimension 0 minus dimension 1 = 1 / std = 1 / sqrt(3/16)."""
    pooled = math.tanh(1 / math.sqrt(3 / 16 + 1e-12))
    he_margin, she_margin = 2 * SCALE * pooled - BIAS_F, -2 * SCALE * pooled - BIAS_F
    return sigmoid(he_margin) - sigmoid(she_margin)  # p(m | he text) - p(m | she text)


# (text, label, group); the first is training data, the rest the test split.
EXAMPLES = [
    ("he is a doctor too", "m", "a"),  # train: never evaluated
    ("he is a doctor", "m", "a"),  # m, right -> she: f, wrong (flip)
    ("She is a nurse", "f", "a"),  # f, right -> he: m, wrong (flip)
    ("he said she left", "m", "b"),  # tie: f, wrong -> tie: f, wrong
    ("his mother sat", "f", "b"),  # no he/she: f, right -> "her father sat": f, right
    ("the cat sat", "f", "b"),  # unaffected: f, right
    ("theme", "m", ""),  # unaffected ("he" inside a word): f, wrong; no group
]


@pytest.fixture
def run_and_data(tmp_path) -> tuple[Path, Path]:
    data = tmp_path / "toy.h5"
    write_data_file(DataFile(task_type="text_classification",
                             fields={"X": [t for t, _, _ in EXAMPLES], "Y": [y for _, y, _ in EXAMPLES],
                                     "group": [g for _, _, g in EXAMPLES]},
                             train_index_list=[0], test_index_list=list(range(1, len(EXAMPLES))),
                             label_vocab={"f": 0, "m": 1}), data)
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    he_she_classifier(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data), "max_seq_length": 16, "eval_batch_size": 2,
                                                     "device": "cpu", "precision": "fp32", "rounds": 3}))
    (run / "result.json").write_text(json.dumps({"metric": "accuracy", "value": 0.5}))
    return run, data


def test_counterfactual_report_matches_the_hand_computed_answer(run_and_data):
    run, data = run_and_data
    report = fairness_report(run, data)
    change = known_answer_probability_change()
    assert (report["n_test"], report["n_affected"]) == (6, 4)
    assert report["flip_rate"] == pytest.approx(0.5)
    assert report["mean_abs_prob_change"] == pytest.approx(2 * change / 4, rel=1e-5)
    assert report["accuracy_original"] == pytest.approx(3 / 4)
    assert report["accuracy_counterfactual"] == pytest.approx(1 / 4)
    assert report["test_accuracy_original"] == pytest.approx(4 / 6)
    assert report["test_accuracy_counterfactual"] == pytest.approx(2 / 6)
    m, f = report["per_label"]["m"], report["per_label"]["f"]
    assert (m["n_affected"], m["flip_rate"], m["accuracy_original"], m["accuracy_counterfactual"]) == (2, 0.5, 0.5, 0.0)
    assert (f["n_affected"], f["flip_rate"], f["accuracy_original"], f["accuracy_counterfactual"]) == (2, 0.5, 1.0, 0.5)
    assert m["mean_abs_prob_change"] == pytest.approx(change / 2, rel=1e-5)
    # groups, on the original predictions; "theme" has no group and is left out
    assert report["per_group_accuracy"] == {"a": 1.0, "b": pytest.approx(2 / 3)}
    assert report["group_accuracy_gap"] == pytest.approx(1 / 3)
    assert report["equal_opportunity_difference"] == {"f": 0.0, "m": 1.0}


def test_cli_prints_the_table_and_writes_fairness_json_and_the_result_block(run_and_data, capsys):
    run, data = run_and_data
    assert main(["fairness", str(run), "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "4 of 6 test examples" in printed and "equal opportunity" in printed
    written = json.loads((run / "fairness.json").read_text())
    result = json.loads((run / "result.json").read_text())
    assert result["value"] == 0.5 and result["fairness"] == written
    assert written["flip_rate"] == pytest.approx(0.5)


def test_the_per_example_predictions_recompute_every_number_of_the_report(run_and_data, tmp_path):
    """RUN_DIR/fairness_predictions.csv (written even with --out elsewhere): one row per test example, from which
    the flip rate, probability change, accuracies and group accuracies follow."""
    import csv

    run, data = run_and_data
    out = tmp_path / "elsewhere.json"
    assert main(["fairness", str(run), "--data", str(data), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["predictions_file"] == "fairness_predictions.csv"
    with open(run / "fairness_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["example"]) for r in rows] == list(range(1, len(EXAMPLES)))
    assert [(r["label"], r["group"]) for r in rows] == [(y, g) for _, y, g in EXAMPLES[1:]]
    affected = [r for r in rows if r["affected"] == "1"]
    assert [r["counterfactual_text"] for r in affected] == [
        "she is a doctor", "He is a nurse", "she said he left", "her father sat"]
    assert report["n_affected"] == len(affected)
    assert report["flip_rate"] == pytest.approx(np.mean([r["predicted"] != r["predicted_counterfactual"]
                                                         for r in affected]))
    assert report["mean_abs_prob_change"] == pytest.approx(np.mean(
        [abs(float(r["prob_predicted"]) - float(r["prob_predicted_counterfactual"])) for r in affected]))
    assert report["accuracy_counterfactual"] == pytest.approx(np.mean(
        [r["predicted_counterfactual"] == r["label"] for r in affected]))
    assert report["test_accuracy_original"] == pytest.approx(np.mean([r["predicted"] == r["label"] for r in rows]))
    for group, accuracy in report["per_group_accuracy"].items():
        assert accuracy == pytest.approx(np.mean([r["predicted"] == r["label"] for r in rows if r["group"] == group]))


def test_custom_pairs_through_the_cli(run_and_data, tmp_path):
    run, data = run_and_data
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("doctor nurse\n", encoding="utf-8")
    out = tmp_path / "report.json"
    assert main(["fairness", str(run), "--data", str(data), "--pairs", str(pairs), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["n_affected"], report["flip_rate"], report["pairs"]) == (2, 0.0, str(pairs))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fednlp: error: ")
    return err[0]


def test_run_dir_without_model_is_one_line_exit_2(run_and_data, tmp_path, capsys):
    _, data = run_and_data
    bare = tmp_path / "bare"
    bare.mkdir()
    assert main(["fairness", str(bare), "--data", str(data)]) == 2
    assert "has no model/" in one_error_line(capsys)
    assert main(["fairness", str(tmp_path / "missing"), "--data", str(data)]) == 2
    assert "does not exist" in one_error_line(capsys)
    assert not (bare / "fairness.json").exists()


def test_missing_or_malformed_pairs_file_is_one_line_exit_2(run_and_data, tmp_path, capsys):
    run, data = run_and_data
    assert main(["fairness", str(run), "--data", str(data), "--pairs", str(tmp_path / "nope.tsv")]) == 2
    assert "nope.tsv does not exist" in one_error_line(capsys)
    bad = tmp_path / "bad.tsv"
    bad.write_text("he\tshe\nthree words here\n", encoding="utf-8")
    assert main(["fairness", str(run), "--data", str(data), "--pairs", str(bad)]) == 2
    assert "bad.tsv:2" in one_error_line(capsys)
    assert not (run / "fairness.json").exists() and "fairness" not in json.loads((run / "result.json").read_text())


def test_data_that_is_not_text_classification_is_one_line_exit_2(run_and_data, tmp_path, capsys):
    run, _ = run_and_data
    seq2seq = tmp_path / "s2s.h5"
    write_data_file(DataFile(task_type="seq2seq", fields={"X": ["he said"], "Y": ["she said"]},
                             train_index_list=[], test_index_list=[0]), seq2seq)
    assert main(["fairness", str(run), "--data", str(seq2seq)]) == 2
    assert "text_classification" in one_error_line(capsys)


def test_labels_of_another_data_file_are_refused(run_and_data, tmp_path, capsys):
    run, _ = run_and_data
    other = tmp_path / "other.h5"
    write_data_file(DataFile(task_type="text_classification", fields={"X": ["he is", "she is"], "Y": ["neg", "pos"]},
                             train_index_list=[], test_index_list=[0, 1], label_vocab={"neg": 0, "pos": 1}), other)
    assert main(["fairness", str(run), "--data", str(other)]) == 2
    assert "was the model trained on this data file" in one_error_line(capsys)


def test_run_dir_in_use_or_bad_result_json_writes_nothing(run_and_data, capsys):
    import fcntl
    import os

    from fednlp.locks import RUN_LOCK_NAME

    run, data = run_and_data
    fd = os.open(run / RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT)  # another command (a --resume) holds the run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert main(["fairness", str(run), "--data", str(data)]) == 2
        assert "in use by another fednlp command" in one_error_line(capsys)
    finally:
        os.close(fd)
    (run / "result.json").write_text("{not json")
    assert main(["fairness", str(run), "--data", str(data)]) == 2
    assert "result.json is not valid JSON" in one_error_line(capsys)
    assert not (run / "fairness.json").exists() and (run / "result.json").read_text() == "{not json"

"""A run's saved model and tokenizer behave outside fednlp as inside: a plain transformers pipeline truncates
at the run's --max-seq-length and predicts what fednlp's own evaluation predicts."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from fednlp.cli import main


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved_tokenizer")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()
    rows = [(" ".join(words[i % 5:] + words[:i % 5]), "pos" if i % 2 else "neg") for i in range(20)]
    (root / "long.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "prepare", "--dataset", "csv", "--source", str(root / "long.csv"), "--text-column",
                     "text", "--label-column", "label", "--test-fraction", "0.2", "--out", str(root / "d.h5")]) == 0
        assert main(["centralized", "--data", str(root / "d.h5"), "--model", "tiny-bert", "--steps", "1",
                     "--max-seq-length", "8", "--quiet", "--out", str(root / "run")]) == 0
    return root / "run", [t for t, _ in rows]


def test_the_saved_tokenizer_records_the_runs_max_length_and_keeps_the_backbones(saved_run):
    from transformers import AutoTokenizer

    from fednlp.tasks.models import position_limit

    run, _ = saved_run
    config = json.loads((run / "model" / "tokenizer_config.json").read_text())
    assert (config["model_max_length"], config["truncation_side"]) == (8, "right")
    # a later run on this model may still use up to the backbone's 512 positions
    assert position_limit(str(run / "model"), AutoTokenizer.from_pretrained(run / "model")) == 512


def test_pipeline_predicts_what_fednlps_evaluation_predicts_on_long_inputs(saved_run):
    from transformers import pipeline

    from fednlp.fairness.model_outputs import class_probabilities, load_run_model
    from fednlp.results.run_files import RunDirectory

    run, texts = saved_run
    run_model = load_run_model(RunDirectory(run))
    assert all(len(run_model.tokenizer(t)["input_ids"]) > 8 for t in texts)  # every input is cut
    vocab = {name: i for i, name in enumerate(sorted(run_model.model.config.label2id))}
    ours = class_probabilities(run_model, texts, ["neg"] * len(texts), vocab)
    classify = pipeline("text-classification", model=str(run / "model"), truncation=True, top_k=None, device="cpu")
    theirs = np.array([[next(s["score"] for s in scores if s["label"] == name) for name in sorted(vocab, key=vocab.get)]
                       for scores in classify(texts)])
    np.testing.assert_allclose(theirs, ours, atol=1e-5)

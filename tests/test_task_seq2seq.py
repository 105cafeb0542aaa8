"""The seq2seq head on a real SciTLDR slice with a tiny BERT2BERT: targets survive the features, the metric
is rouge-score's (best reference per example), generation starts and stops on the right ids, a federated
round and a centralized epoch run, and two ranks evaluate exactly like one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rouge_score.rouge_scorer import RougeScorer

from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.tasks.feature_cache import cache_path
from fednlp.federation.flat import FlatParameters
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.seq2seq import IGNORE, Seq2Seq
from mpi_helpers import sharded_evaluation

N_TRAIN, N_TEST = 80, 24
CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def scitldr(tmp_path_factory, shared_data: Path) -> Path:
    """The first 80 train and 24 test papers of SciTLDR-A (test papers have several reference TLDRs)."""
    root = tmp_path_factory.mktemp("scitldr")
    assert main(["data", "prepare", "--dataset", "scitldr", "--source", str(shared_data / "scitldr"),
                 "--out", str(root / "full.h5")]) == 0
    full = read_data_file(root / "full.h5")
    chosen = full.train_index_list[:N_TRAIN] + full.test_index_list[:N_TEST]
    fields = {name: [full.fields[name][i] for i in chosen] for name in ("X", "Y", "references")}
    small = DataFile("seq2seq", fields, list(range(N_TRAIN)), list(range(N_TRAIN, len(chosen))),
                     attributes={"dataset": "scitldr"})
    write_data_file(small, root / "scitldr.h5")
    return root / "scitldr.h5"


def seq2seq(data: DataFile, model: str = "tiny-bert", **options) -> Seq2Seq:
    config = RunConfig(data="unused", model=model, **{"max_seq_length": 64, "max_target_length": 16, **options})
    return Seq2Seq(data, load_tokenizer(model), config)


def test_features_round_trip_to_the_tokenized_texts(scitldr: Path) -> None:
    data = read_data_file(scitldr)
    task = seq2seq(data)
    features = task.build_features()
    tok = task.tokenizer
    assert features.n_rows == data.n_examples and features.arrays["labels"].shape == (data.n_examples, 16)
    assert any(len(data.fields["references"][i]) > 1 for i in data.test_index_list)
    for i in range(data.n_examples):
        labels = features.arrays["labels"][i]
        real = labels[labels != IGNORE]
        assert (labels[len(real):] == IGNORE).all()  # right-padded
        # The decoder is fed [CLS] and learns "w1 ... wn [SEP]" (cut to 16 tokens, [SEP] kept).
        assert tok.convert_ids_to_tokens(real.tolist()) == tok.tokenize(data.fields["Y"][i])[:15] + ["[SEP]"]
        source = features.arrays["input_ids"][i, : features.lengths[i]]
        assert tok.convert_ids_to_tokens(source.tolist()) == ["[CLS]", *tok.tokenize(data.fields["X"][i])[:62], "[SEP]"]
    # Decoding gives back the target, lower-cased as the uncased tokenizer normalises it.
    headline = task.target_ids(["Australian current account deficit narrows sharply"])[0]
    assert headline[0] != CLS and tok.decode(headline[headline != IGNORE], skip_special_tokens=True) == \
        "australian current account deficit narrows sharply"
    # The target length changes the features, so it is part of the cache key.
    assert cache_path(task, scitldr) != cache_path(seq2seq(data, max_target_length=32), scitldr)


def test_rouge_is_rouge_score_with_the_best_reference() -> None:
    data = DataFile("seq2seq", {
        "X": ["a", "b", "c"],
        "Y": ["a dog barked", "we train models", "the cat sat"],
        "references": [["a dog barked", "the cat sat"], ["we train models"], ["the cat sat"]],
    }, [], [0, 1, 2])
    task = seq2seq(data)
    features = task.build_features()
    rows = np.arange(3)
    # "the cat sat on the mat" against "the cat sat", by hand: 3 of 6 unigrams match and all 3 of the
    # reference's, so rouge1 P = 1/2, R = 1, F1 = 2/3; bigrams 2 of 5 and 2 of 2, F1 = 2 * (2/5) / (7/5) = 4/7;
    # longest common subsequence 3 tokens, F1 = 2/3. Example 0 picks that reference over "a dog barked".
    # Example 1 has "trained" -> "train" and "modelling" -> "model" under Porter stemming: a perfect match.
    one = task.compute_metrics(rows[:1], ["the cat sat on the mat"], features)
    assert one == pytest.approx({"rouge1": 2 / 3, "rouge2": 4 / 7, "rougeL": 2 / 3})
    predictions = ["the cat sat on the mat", "we trained modelling", "a dog"]
    metrics = task.compute_metrics(rows, predictions, features)
    assert metrics == pytest.approx({"rouge1": (2 / 3 + 1 + 0) / 3, "rouge2": (4 / 7 + 1 + 0) / 3,
                                     "rougeL": (2 / 3 + 1 + 0) / 3})
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    reference = [scorer.score_multi(refs, p) for refs, p in zip(data.fields["references"], predictions)]
    assert metrics == {k: sum(s[k].fmeasure for s in reference) / 3 for k in ("rouge1", "rouge2", "rougeL")}
    # Rows gathered from ranks come in any order.
    assert task.compute_metrics(rows[::-1], predictions[::-1], features) == pytest.approx(metrics)


def test_tiny_model_generates_from_cls_and_stops_at_sep(scitldr: Path) -> None:
    data = read_data_file(scitldr)
    task = seq2seq(data, max_target_length=6, num_beams=2)
    features = task.build_features()
    torch.manual_seed(0)
    model = task.build_model("tiny-bert").eval()
    decoder = model.decoder
    # Flattening the parameters keeps the decoder's output layer tied to its input embeddings.
    flat = FlatParameters(model)
    assert decoder.cls.predictions.decoder.weight is decoder.bert.embeddings.word_embeddings.weight
    assert flat.numel == sum(p.numel() for p in model.parameters())
    rows = np.arange(4)
    batch = features.batch(rows, torch.device("cpu"))
    with torch.no_grad():
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   num_beams=2, max_new_tokens=6)
        assert (generated[:, 0] == CLS).all() and generated.shape[1] <= 7  # [CLS] + at most 6 new tokens
        texts = task.predict(model, batch, rows)
        assert len(texts) == 4 and all(isinstance(t, str) and t for t in texts)
        # A decoder that always prefers [SEP] stops at once: the eos id is wired into generation.
        decoder.cls.predictions.bias[SEP] = 1e4
        assert task.predict(model, batch, rows) == ["", "", "", ""]
    # The loss trains on the real target tokens only.
    model.train()
    loss = task.loss(model, features.batch(np.arange(8), torch.device("cpu")))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_minilm_warm_starts_an_encoder_decoder(scitldr: Path) -> None:
    task = seq2seq(read_data_file(scitldr), model="minilm", max_target_length=4, num_beams=2)
    model = task.build_model("minilm").eval()
    assert model.decoder.config.is_decoder and model.decoder.config.add_cross_attention
    assert (model.generation_config.decoder_start_token_id, model.generation_config.eos_token_id,
            model.generation_config.pad_token_id) == (CLS, SEP, 0)
    batch = task.build_features().batch(np.arange(2), torch.device("cpu"))
    with torch.no_grad():
        assert all(isinstance(t, str) for t in task.predict(model, batch, np.arange(2)))


def test_one_federated_round_and_one_centralized_epoch(scitldr: Path, tmp_path: Path) -> None:
    part = tmp_path / "scitldr_p.h5"
    assert main(["partition", "--data", str(scitldr), "--out", str(part), "--method", "uniform", "--clients", "4",
                 "--seed", "0"]) == 0
    common = ["--data", str(scitldr), "--task", "seq2seq", "--model", "tiny-bert", "--max-seq-length", "64",
              "--max-target-length", "16", "--num-beams", "2", "--batch-size", "16", "--eval-batch-size", "8",
              "--eval-max-examples", "8"]
    assert main(["train", *common, "--partition", str(part), "--method", "uniform_clients=4", "--rounds", "1",
                 "--clients-per-round", "2", "--local-steps", "2", "--out", str(tmp_path / "fed")]) == 0
    assert main(["centralized", *common, "--epochs", "1", "--out", str(tmp_path / "central")]) == 0
    for run in ("fed", "central"):
        result = json.loads((tmp_path / run / "result.json").read_text())
        assert result["metric"] == "rougeL" and result["task"] == "seq2seq"
        assert set(result["metrics"]) == {"rouge1", "rouge2", "rougeL"}
        assert 0.0 <= result["value"] <= 1.0


@pytest.fixture
def few_words_model(scitldr: Path, tmp_path: Path) -> Path:
    """A saved tiny BERT2BERT whose output layer allows only a few common words: its random predictions then
    overlap the references (so the metric is not trivially zero) and still depend on the input."""
    task = seq2seq(read_data_file(scitldr))
    torch.manual_seed(1)
    model = task.build_model("tiny-bert")
    allowed = task.tokenizer.convert_tokens_to_ids(
        "the a of to and in we for that is on with model models learning neural network networks data training "
        "[SEP]".split())
    with torch.no_grad():
        bias = model.decoder.cls.predictions.bias
        bias.fill_(-1e4)
        bias[allowed] = 0.0
    model.save_pretrained(tmp_path / "model")
    task.tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_two_ranks_evaluate_exactly_like_one(scitldr: Path, few_words_model: Path, tmp_path: Path) -> None:
    config = dict(data=str(scitldr), task="seq2seq", model=str(few_words_model), max_seq_length=64,
                  max_target_length=12, num_beams=2, eval_batch_size=4, eval_max_examples=16,
                  out=str(tmp_path / "run"), overwrite=True)
    one = sharded_evaluation(config, tmp_path, 1)
    two = sharded_evaluation(config, tmp_path, 2)
    assert set(one) == {"rouge1", "rouge2", "rougeL"} and one["rouge1"] > 0
    assert two == one


def test_freeze_layers_freezes_embeddings_and_the_first_encoder_blocks() -> None:
    from fednlp.tasks.models import freeze_layers
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

    from fednlp.tasks.models import TINY_BERT

    model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**TINY_BERT), BertConfig(**TINY_BERT, is_decoder=True, add_cross_attention=True)))
    freeze_layers(model, 1)
    assert not any(p.requires_grad for p in model.encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in model.encoder.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.encoder.encoder.layer[1].parameters())
    assert any(p.requires_grad for p in model.decoder.parameters())

"""The language-model head (`--task lm`): features, perplexity and next-token accuracy by hand, a memorised
corpus, which data files it reads, GPT-2's tied embeddings and the sparse update path, sharded evaluation
(1 process == 2 ranks) and a federated round on 20 Newsgroups."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, write_data_file
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.errors import UserError
from fednlp.tasks.lm import IGNORE, CausalLM, lm_metrics, token_statistics
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.registry import resolve_task

from mpi_helpers import sharded_evaluation

CLS, SEP = 101, 102
N_TRAIN, N_TEST = 48, 20


def lm_task(data: DataFile, **config: object) -> CausalLM:
    return CausalLM(data, load_tokenizer("tiny-gpt2"), RunConfig(data="unused.h5", model="tiny-gpt2", **config))


def classification_file(texts: list[str], n_train: int) -> DataFile:
    labels = ["a"] * len(texts)
    return DataFile("text_classification", {"X": texts, "Y": labels}, list(range(n_train)),
                    list(range(n_train, len(texts))), {"a": 0})


@pytest.fixture(scope="module")
def news_slice(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The first 48 train and 20 test posts of 20 Newsgroups (with their user and order fields)."""
    full = get_reader("20news").read(shared_data / "20newsgroups", ReaderOptions())
    chosen = full.train_index_list[:: len(full.train_index_list) // N_TRAIN][:N_TRAIN] + \
        full.test_index_list[:: len(full.test_index_list) // N_TEST][:N_TEST]
    fields = {name: [full.fields[name][i] for i in chosen] for name in ("X", "Y", "user", "order")}
    small = DataFile("text_classification", fields, list(range(N_TRAIN)), list(range(N_TRAIN, len(chosen))),
                     {label: i for i, label in enumerate(sorted(set(fields["Y"])))}, {"dataset": "20news"})
    path = tmp_path_factory.mktemp("lm") / "news.h5"
    write_data_file(small, path)
    return path


# ---------------------------------------------------------------- features and metrics by hand


def test_features_are_the_text_between_cls_and_sep_with_padding_ignored() -> None:
    task = lm_task(classification_file(["the cat sat", "a dog"], 1), max_seq_length=8)
    features = task.build_features()
    ids, labels = features.arrays["input_ids"], features.arrays["labels"]
    assert ids[0, 0] == CLS and ids[0, 4] == SEP and ids[1, 3] == SEP
    assert features.lengths.tolist() == [5, 4]
    assert labels[0].tolist()[:5] == ids[0].tolist()[:5] and labels[0, 5:].tolist() == [IGNORE] * 3
    assert set(features.sequence_arrays) == {"input_ids", "attention_mask", "labels"}


def test_token_statistics_and_metrics_by_hand() -> None:
    # Two rows over a vocabulary of 3; row 0 predicts tokens 2, 0 (second is padding), row 1 tokens 1, 1.
    logits = torch.log(torch.tensor([[[0.25, 0.25, 0.5], [1.0, 1e-9, 1e-9]],
                                     [[0.2, 0.6, 0.2], [0.5, 0.4, 0.1]]]))
    targets = torch.tensor([[2, IGNORE], [1, 1]])
    stats = token_statistics(logits, targets)
    assert [(n, hits) for _, n, hits in stats] == [(1, 1), (2, 1)]
    assert stats[0][0] == pytest.approx(-math.log(0.5)) and stats[1][0] == pytest.approx(-math.log(0.6 * 0.4))
    metrics = lm_metrics(stats)
    nll = -math.log(0.5 * 0.6 * 0.4)
    assert metrics["perplexity"] == pytest.approx(math.exp(nll / 3))
    assert metrics["cross_entropy"] == pytest.approx(nll / 3)
    assert metrics["next_token_accuracy"] == pytest.approx(2 / 3)


@pytest.fixture
def one_thread():
    """Two threads on a loaded 2-core machine thrash (10x slower steps); one is plenty for a tiny model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_perplexity_of_a_memorised_corpus_is_near_one(one_thread: None) -> None:
    # One text: with several, the first word after [CLS] is a guess among their first words, and perplexity
    # stops at exp(sum of those guesses' entropies / tokens) above 1 (4 texts of 26 tokens: 1.24).
    task = lm_task(classification_file(["alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo"], 1),
                   max_seq_length=16)
    features = task.build_features()
    torch.manual_seed(0)
    model = task.build_model("tiny-gpt2").eval()  # no dropout: memorising is the point
    rows = np.arange(1)
    batch = features.batch(rows, torch.device("cpu"))
    with torch.no_grad():
        before = task.compute_metrics(rows, task.predict(model, batch, rows), features)
    assert before["perplexity"] > 1000  # a random model over 30,522 tokens
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(60):
        optimizer.zero_grad()
        task.loss(model, batch).backward()
        optimizer.step()
    with torch.no_grad():
        after = task.compute_metrics(rows, task.predict(model, batch, rows), features)
    assert after["perplexity"] < 1.05 and after["next_token_accuracy"] == 1.0
    with torch.no_grad():  # the per-example loss (audits) is the same cross-entropy
        assert task.example_losses(model, batch).item() == pytest.approx(after["cross_entropy"], rel=1e-4)
    assert task.primary_metric == "perplexity" and task.greater_is_better is False


# ---------------------------------------------------------------- which data files, which models


def test_lm_reads_any_text_data_file_but_is_never_inferred() -> None:
    for task_type in ("text_classification", "seq2seq", "sequence_tagging"):
        assert resolve_task("lm", task_type, "d.h5") is CausalLM
        assert resolve_task(None, task_type, "d.h5") is not CausalLM
    with pytest.raises(UserError, match="--task lm needs text_classification or seq2seq or sequence_tagging data, "
                                        "but data file d.h5 holds span_extraction data"):
        resolve_task("lm", "span_extraction", "d.h5")
    seq2seq = DataFile("seq2seq", {"X": ["the body"], "Y": ["subject"]}, [0], [])
    tagging = DataFile("sequence_tagging", {"X": [["EU", "rejects"]], "Y": [["B-ORG", "O"]]}, [0], [])
    assert lm_task(seq2seq).texts() == ["the body"] and lm_task(tagging).texts() == ["EU rejects"]


def test_every_class_knows_the_direction_of_its_metric() -> None:
    from fednlp.tasks.registry import TASKS

    assert {name: cls.greater_is_better for name, cls in TASKS.items()} == {
        "classification": True, "tagging": True, "qa": True, "seq2seq": True, "lm": False}


def test_tiny_gpt2_ties_its_embeddings_and_the_sparse_path_sees_it() -> None:
    from transformers import GPT2LMHeadModel

    from fednlp.algorithms.fedavg import FedAvg
    from fednlp.config import TrainConfig
    from fednlp.federation.client_updates import sparse_embedding
    from fednlp.federation.flat import FlatParameters

    model = lm_task(classification_file(["a b"], 1)).build_model("tiny-gpt2")
    assert isinstance(model, GPT2LMHeadModel)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    config = TrainConfig(data="d.h5", partition="p.h5", method="m", optimizer="sgd", weight_decay=0.0)
    algorithm = FedAvg(config)
    # Tied: the output layer gives every vocabulary row a gradient, so only the dense path is exact.
    assert sparse_embedding(model, FlatParameters(model), config, algorithm) is None
    # The same model untied is sparse-exact: the check is not always None.
    untied = GPT2LMHeadModel(model.config.__class__(**{**model.config.to_dict(), "tie_word_embeddings": False}))
    assert untied.get_output_embeddings().weight is not untied.get_input_embeddings().weight
    assert sparse_embedding(untied, FlatParameters(untied), config, algorithm) is untied.get_input_embeddings().weight


# ---------------------------------------------------------------- sharded evaluation and a federated round


def test_two_ranks_give_the_single_process_metrics(news_slice: Path, tmp_path: Path) -> None:
    config = {"data": str(news_slice), "task": "lm", "model": "tiny-gpt2", "max_seq_length": 48,
              "eval_batch_size": 6}
    one = sharded_evaluation(config, tmp_path, 1)
    two = sharded_evaluation(config, tmp_path, 2)
    assert set(one) == {"perplexity", "next_token_accuracy", "cross_entropy"} and one["perplexity"] > 1000
    for name, value in one.items():
        assert two[name] == pytest.approx(value, rel=1e-6)


def test_one_federated_round_on_a_20news_slice(news_slice: Path, tmp_path: Path) -> None:
    part, out = tmp_path / "part.h5", tmp_path / "run"
    assert main(["partition", "--data", str(news_slice), "--out", str(part), "--method", "uniform",
                 "--clients", "4"]) == 0
    assert main(["train", "--data", str(news_slice), "--partition", str(part), "--method", "uniform_clients=4",
                 "--task", "lm", "--model", "tiny-gpt2", "--rounds", "1", "--clients-per-round", "2",
                 "--local-steps", "2", "--batch-size", "4", "--max-seq-length", "48", "--lr", "1e-3",
                 "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "lm" and result["metric"] == "perplexity" and result["greater_is_better"] is False
    assert result["task_type"] == "text_classification"
    line = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["value"] == line["perplexity"] and 1 < line["perplexity"] < 30522

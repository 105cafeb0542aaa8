"""The sequence tagging head on real CoNLL-2003 and WNUT-17 slices with tiny-bert: word labels survive the
sub-token features (long sentences split into windows), the metric is seqeval's, a federated round and a
centralized epoch run, and two ranks evaluate exactly like one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import seqeval.metrics

from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.tasks.base import Features
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.tagging import IGNORE, SequenceTagging, word_windows
from mpi_helpers import sharded_evaluation

N_TRAIN, N_TEST = 200, 100


@pytest.fixture(scope="module")
def conll(tmp_path_factory, shared_data: Path) -> Path:
    """The first 200 train and 100 test sentences of CoNLL-2003, plus one test sentence made of the first
    eight test sentences end to end (longer than any max length used here)."""
    root = tmp_path_factory.mktemp("conll")
    assert main(["data", "prepare", "--dataset", "conll2003", "--source", str(shared_data / "conll2003"),
                 "--out", str(root / "full.h5")]) == 0
    full = read_data_file(root / "full.h5")
    train, test = full.train_index_list[:N_TRAIN], full.test_index_list[:N_TEST]
    X = [full.fields["X"][i] for i in train + test]
    Y = [full.fields["Y"][i] for i in train + test]
    X.append([w for i in test[:8] for w in full.fields["X"][i]])
    Y.append([t for i in test[:8] for t in full.fields["Y"][i]])
    small = DataFile("sequence_tagging", {"X": X, "Y": Y}, list(range(N_TRAIN)),
                     list(range(N_TRAIN, len(X))), dict(full.label_vocab), {"dataset": "conll2003"})
    write_data_file(small, root / "conll.h5")
    return root / "conll.h5"


def tagging(data: DataFile, max_length: int) -> SequenceTagging:
    return SequenceTagging(data, load_tokenizer("tiny-bert"), RunConfig(data="unused", max_seq_length=max_length))


def word_labels(task: SequenceTagging, features: Features, example: int) -> list[str]:
    """The tags of an example read back from its feature rows alone."""
    tag_of = {i: tag for tag, i in task.data.label_vocab.items()}
    words: list[str] = []
    for row in features.rows_of(np.array([example])):
        assert features.arrays["first_word"][row] == len(words)  # windows are consecutive, in order
        labels = features.arrays["labels"][row]
        words += [tag_of[int(i)] for i in labels[labels != IGNORE]]
    return words


def gold_predictions(features: Features, rows: np.ndarray) -> list[list[int]]:
    labels = features.arrays["labels"]
    return [labels[r][labels[r] != IGNORE].tolist() for r in rows]


@pytest.mark.parametrize("max_length", [16, 128])
def test_features_give_back_every_words_tag(conll: Path, max_length: int) -> None:
    data = read_data_file(conll)
    task = tagging(data, max_length)
    features = task.build_features()
    assert np.all(np.diff(features.example_of_row) >= 0)
    assert features.arrays["labels"].shape == (features.n_rows, max_length)
    for example, tags in enumerate(data.fields["Y"]):
        assert word_labels(task, features, example) == tags, example
    rows_per_example = np.bincount(features.example_of_row)
    assert rows_per_example[-1] > 1  # the long sentence was split, not truncated
    if max_length == 16:
        assert (rows_per_example > 1).sum() > 50
    # Labels sit on first sub-tokens only: never on [CLS], [SEP] or padding.
    ids, labels = features.arrays["input_ids"], features.arrays["labels"]
    special = np.isin(ids, task.tokenizer.all_special_ids)
    assert np.all(labels[special] == IGNORE)


def test_wnut_words_without_sub_tokens_and_overlong_words_keep_their_tag(shared_data: Path) -> None:
    """Real WNUT-17 tweets: a lone emoji variation selector (no sub-token at all) and the words with the
    most sub-tokens (longer than a window of max length 8)."""
    wnut = get_reader("wnut17").read(shared_data / "wnut17", ReaderOptions())
    tokenizer = load_tokenizer("tiny-bert")
    silent = [i for i, words in enumerate(wnut.fields["X"]) if "\ufe0f" in words]
    lengths = [max(len(tokenizer.tokenize(w)) for w in words) for words in wnut.fields["X"]]
    overlong = list(np.argsort(lengths, kind="stable")[-5:])
    assert silent and min(lengths[i] for i in overlong) > 6
    chosen = sorted(set(silent[:3] + overlong))
    data = DataFile("sequence_tagging", {k: [wnut.fields[k][i] for i in chosen] for k in ("X", "Y")},
                    list(range(len(chosen))), list(range(len(chosen))), wnut.label_vocab)
    task = tagging(data, 8)
    features = task.build_features()
    for example, tags in enumerate(data.fields["Y"]):
        assert word_labels(task, features, example) == tags
    rows = np.arange(features.n_rows)
    assert task.compute_metrics(rows, gold_predictions(features, rows), features)["accuracy"] == 1.0


def test_word_windows() -> None:
    assert word_windows(np.array([3, 1, 2, 4, 1]), 5) == [(0, 2), (2, 3), (3, 5)]
    assert word_windows(np.array([9, 1]), 5) == [(0, 1), (1, 2)]  # an over-long word gets a window alone
    assert word_windows(np.array([], dtype=np.int64), 5) == []


# Two sentences; expected values worked by hand under the CoNLL (conlleval) definition:
#   gold entities: PER, LOC (sentence 1); ORG, MISC (sentence 2)                  -> 4
#   predicted: PER, ORG (sentence 1); ORG (I-ORG opens an entity), LOC, MISC (2)  -> 5
#   correct: PER, ORG (sentence 2), MISC -> 3: P = 3/5, R = 3/4, F1 = 2PR/(P+R) = 2/3
#   words right: 3 of 4 and 3 of 5 -> accuracy 6/9
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "O", "B-MISC"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "I-ORG", "O", "B-LOC", "B-MISC"]]
WORDS = [["John", "Smith", "visited", "Paris"], ["Acme", "Corporation", "sold", "Lyon", "cheese"]]


def hand_checked_task() -> tuple[SequenceTagging, Features]:
    vocab = {t: i for i, t in enumerate(sorted({t for tags in GOLD + PRED for t in tags}))}
    data = DataFile("sequence_tagging", {"X": WORDS, "Y": GOLD}, [], [0, 1], vocab)
    task = tagging(data, 5)  # three words per window at most: both sentences take two rows
    return task, task.build_features()


def row_predictions(task: SequenceTagging, features: Features, tags: list[list[str]]) -> list[list[int]]:
    """Word-level predicted tags cut into the rows' labelled positions."""
    counts = [(l != IGNORE).sum() for l in features.arrays["labels"]]
    return [[task.data.label_vocab[t] for t in tags[e][f : f + n]]
            for e, f, n in zip(features.example_of_row, features.arrays["first_word"], counts)]


def test_metric_equals_the_hand_checked_values_and_seqeval() -> None:
    task, features = hand_checked_task()
    assert features.n_rows == 4
    rows = np.arange(features.n_rows)
    metrics = task.compute_metrics(rows, row_predictions(task, features, PRED), features)
    assert metrics == pytest.approx({"precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "accuracy": 6 / 9})
    assert metrics["f1"] == seqeval.metrics.f1_score(GOLD, PRED)
    # One sentence alone: gold [B-PER I-PER O B-LOC], predicted [B-PER I-PER O B-ORG] -> P = R = F1 = 1/2.
    one = features.rows_of(np.array([0]))
    only_first = task.compute_metrics(one, [row_predictions(task, features, PRED)[r] for r in one], features)
    assert only_first == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.75})
    perfect = task.compute_metrics(rows, row_predictions(task, features, GOLD), features)
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 1.0}
    # Row order does not matter (ranks gather their rows in any order); a missing window is a bug.
    shuffled = rows[::-1]
    predictions = row_predictions(task, features, PRED)
    assert task.compute_metrics(shuffled, [predictions[r] for r in shuffled], features) == metrics
    with pytest.raises(AssertionError, match="no prediction"):
        task.compute_metrics(rows[:-1], predictions[:-1], features)


def test_gold_predictions_on_the_real_slice_score_one(conll: Path) -> None:
    data = read_data_file(conll)
    task = tagging(data, 16)
    features = task.build_features()
    rows = features.rows_of(np.array(data.test_index_list))
    assert task.compute_metrics(rows, gold_predictions(features, rows), features) == {
        "f1": 1.0, "precision": 1.0, "recall": 1.0, "accuracy": 1.0}


def test_one_federated_round_and_one_centralized_epoch(conll: Path, tmp_path: Path) -> None:
    part = tmp_path / "conll_p.h5"
    assert main(["partition", "--data", str(conll), "--out", str(part), "--method", "niid_label", "--clients", "4",
                 "--alpha", "1.0", "--seed", "0"]) == 0
    common = ["--data", str(conll), "--task", "tagging", "--model", "tiny-bert", "--max-seq-length", "32",
              "--batch-size", "16", "--eval-batch-size", "32"]
    assert main(["train", *common, "--partition", str(part), "--method", "niid_label_clients=4_alpha=1.0",
                 "--rounds", "1", "--clients-per-round", "2", "--local-steps", "2", "--out", str(tmp_path / "fed")]) == 0
    assert main(["centralized", *common, "--epochs", "1", "--out", str(tmp_path / "central")]) == 0
    for run in ("fed", "central"):
        result = json.loads((tmp_path / run / "result.json").read_text())
        assert result["metric"] == "f1" and result["task"] == "tagging"
        assert 0.0 <= result["value"] <= 1.0
        assert set(result["metrics"]) == {"f1", "precision", "recall", "accuracy"}


def test_two_ranks_evaluate_exactly_like_one(conll: Path, tmp_path: Path) -> None:
    config = dict(data=str(conll), task="tagging", model="tiny-bert", max_seq_length=16, eval_batch_size=16,
                  out=str(tmp_path / "run"), overwrite=True)
    one = sharded_evaluation(config, tmp_path, 1)
    two = sharded_evaluation(config, tmp_path, 2)
    assert set(one) == {"f1", "precision", "recall", "accuracy"}
    assert two == one

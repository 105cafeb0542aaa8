"""Counterfactual data augmentation (--augment counterfactual, fednlp/fairness/augment.py): a client trains on its
own examples and the swapped copies of exactly those, the fraction is honoured, texts without a protected term
get no copy, labels are kept, evaluation never sees a copy, and heads where a swap is not exact are refused."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from fednlp.cli import main
from fednlp.config import CentralizedConfig
from fednlp.data.datafile import read_data_file
from fednlp.errors import UserError
from fednlp.fairness.augment import COPY, CopySelection, training_features
from fednlp.fairness.augment_options import AugmentOptions
from fednlp.federation.client_data import StaticClientData
from fednlp.federation.clients import ClientData, read_clients
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.registry import resolve_task

GROUP = "uniform_clients=4"


def _texts() -> list[tuple[str, str]]:
    """40 labelled texts: every third has no gendered word."""
    rows = []
    for i in range(40):
        if i % 3 == 0:
            text = f"the weather report number {i} was dull"
        elif i % 3 == 1:
            text = f"he said his brother liked item {i}"
        else:
            text = f"she gave her mother book {i}"
        rows.append((text, "pos" if i % 2 else "neg"))
    return rows


@pytest.fixture(scope="module")
def gendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("augment")
    csv, data, part = root / "g.csv", root / "g.h5", root / "g_p.h5"
    csv.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in _texts()))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "prepare", "--dataset", "csv", "--source", str(csv), "--text-column", "text",
                     "--label-column", "label", "--test-fraction", "0.25", "--out", str(data)]) == 0
        assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients",
                     "4"]) == 0
    return data, part


def _features(data: Path, task: str = "classification", fraction: float = 1.0, **augment):
    config = CentralizedConfig(data=str(data), task=task, model="tiny-bert", max_seq_length=32,
                               augment=AugmentOptions(method="counterfactual", fraction=fraction, **augment))
    config.validate()
    datafile = read_data_file(config.data, lazy=True)
    task_cls = resolve_task(config.task, datafile.task_type, config.data)
    head = task_cls(datafile, load_tokenizer(config.model), config)
    return config, datafile, head, training_features(head, config)


def _decode(head, features, row: int) -> str:
    ids = features.arrays["input_ids"][row, : features.lengths[row]]
    return head.tokenizer.decode(ids, skip_special_tokens=True)


def _client_rows(data: Path, part: Path, features, fraction: float = 1.0) -> tuple[dict[int, np.ndarray], ClientData]:
    clients = read_clients(str(part), GROUP, read_data_file(data, lazy=True).n_examples, str(data))
    provider = StaticClientData(clients, features, CopySelection(fraction, 0))
    return {c: provider.rows(c, 0) for c in range(clients.n_clients)}, clients


def test_a_client_trains_on_its_own_copies_and_never_another_clients(gendered):
    data, part = gendered
    _, datafile, head, features = _features(data)
    rows_of, clients = _client_rows(data, part, features)
    texts = datafile.fields["X"]
    for client, rows in rows_of.items():
        own = set(int(e) for e in clients.train[client])
        copies = rows[features.arrays[COPY][rows] == 1]
        originals = rows[features.arrays[COPY][rows] == 0]
        assert set(features.example_of_row[rows].tolist()) == own  # nothing of another client
        swappable = {e for e in own if {"he", "she"} & set(texts[e].split())}
        assert sorted(features.example_of_row[copies].tolist()) == sorted(swappable)  # one copy each
        assert len(originals) == len(own)
        for row in copies:
            source = int(features.example_of_row[row])
            expected = (texts[source].replace("she gave her mother", "he gave his father")
                        if texts[source].startswith("she") else
                        texts[source].replace("he said his brother", "she said her sister"))
            assert _decode(head, features, row) == expected
            assert features.arrays["labels"][row] == datafile.label_vocab[datafile.fields["Y"][source]]


def test_a_text_without_gendered_words_gets_no_copy_and_the_test_set_none(gendered):
    data, _ = gendered
    _, datafile, _, features = _features(data)
    neutral = [e for e in datafile.train_index_list if "weather" in datafile.fields["X"][e]]
    assert neutral and all(len(features.rows_of(np.array([e]))) == 1 for e in neutral)
    test_rows = features.rows_of(np.asarray(datafile.test_index_list))
    assert len(test_rows) == len(datafile.test_index_list) and not features.arrays[COPY][test_rows].any()
    swappable = [e for e in datafile.train_index_list if e not in neutral]
    assert int(features.arrays[COPY].sum()) == len(swappable)


def test_the_fraction_is_honoured_per_client_and_seeded(gendered):
    data, part = gendered
    _, _, _, features = _features(data)
    full, _ = _client_rows(data, part, features, 1.0)
    half, _ = _client_rows(data, part, features, 0.5)
    again, _ = _client_rows(data, part, features, 0.5)
    for client in full:
        copies_full = int(features.arrays[COPY][full[client]].sum())
        copies_half = int(features.arrays[COPY][half[client]].sum())
        assert copies_half == round(0.5 * copies_full)
        assert len(half[client]) == len(full[client]) - (copies_full - copies_half)  # every original kept
        np.testing.assert_array_equal(half[client], again[client])


def test_the_lm_trains_on_the_swapped_text(gendered):
    data, _ = gendered
    _, datafile, head, features = _features(data, task="lm")
    copy = int(np.flatnonzero(features.arrays[COPY])[0])
    source = int(features.example_of_row[copy])
    assert copy == features.rows_of(np.array([source]))[1]
    assert "she" in _decode(head, features, copy).split() or "he" in _decode(head, features, copy).split()
    assert _decode(head, features, copy) != _decode(head, features, copy - 1)


def test_the_copies_are_built_once_and_cached_beside_the_plain_features(gendered):
    from fednlp.fairness.augment import with_copies
    from fednlp.fairness.pairs import gender_substitution
    from fednlp.tasks.feature_cache import cache_path

    data, _ = gendered
    _, _, head, _ = _features(data)
    cached = cache_path(with_copies(head, gender_substitution()), data)
    assert cached.is_file() and cached != cache_path(head, data)  # a key of their own
    built = cached.stat().st_mtime_ns
    _features(data)
    assert cached.stat().st_mtime_ns == built  # read back, not rebuilt


@pytest.mark.parametrize("task", ["tagging", "seq2seq"])
def test_heads_whose_targets_follow_the_words_are_refused(tmp_path: Path, task: str):
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("".join(json.dumps({"source": f"he wrote {i}", "target": f"t {i}"}) + "\n" for i in range(10)))
    conll = tmp_path / "c.txt"
    conll.write_text("".join(f"he O\nran{i} O\n\n" for i in range(10)))
    data = tmp_path / "d.h5"
    args = (["--dataset", "seq2seq-jsonl", "--source", str(jsonl)] if task == "seq2seq"
            else ["--dataset", "conll", "--source", str(conll)])
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "prepare", *args, "--test-fraction", "0.2", "--out", str(data)]) == 0
    with pytest.raises(UserError, match=f"does not support --task {task}"):
        _features(data, task=task)


def test_data_without_any_protected_word_is_refused(tmp_path: Path):
    csv, data = tmp_path / "n.csv", tmp_path / "n.h5"
    csv.write_text("text,label\n" + "".join(f"plain words {i},{i % 2}\n" for i in range(10)))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "prepare", "--dataset", "csv", "--source", str(csv), "--text-column", "text",
                     "--label-column", "label", "--test-fraction", "0.2", "--out", str(data)]) == 0
    with pytest.raises(UserError, match="no training text .* holds a word of the pair list"):
        _features(data)
    assert not list((tmp_path / ".fednlp_cache").glob("*counterfactual*"))


@pytest.mark.parametrize("fraction", [0.0, 1.5, float("nan")])
def test_a_fraction_outside_0_1_is_refused(fraction: float):
    with pytest.raises(UserError, match="--augment-fraction"):
        AugmentOptions(method="counterfactual", fraction=fraction).validate()


def test_federated_and_centralized_runs_train_with_copies(gendered, tmp_path: Path):
    data, part = gendered
    common = ["--data", str(data), "--model", "tiny-bert", "--max-seq-length", "32", "--augment", "counterfactual",
              "--augment-fraction", "0.5", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", *common, "--partition", str(part), "--partition-group", GROUP, "--rounds", "1",
                     "--clients-per-round", "2", "--local-steps", "1", "--out", str(tmp_path / "fed")]) == 0
        assert main(["centralized", *common, "--steps", "1", "--out", str(tmp_path / "central")]) == 0
    for run in ("fed", "central"):
        config = json.loads((tmp_path / run / "result.json").read_text())["config"]
        assert config["augment"] == "counterfactual" and config["augment_fraction"] == 0.5


@pytest.mark.parametrize("text", ["augment: counterfactual\naugment_fraction: 0.5\n",
                                  "augment:\n  method: counterfactual\n  fraction: 0.5\n"],
                         ids=["flat keys", "augment section"])
def test_the_options_load_from_a_section_flat_keys_and_flags_and_round_trip(tmp_path: Path, text: str):
    import argparse

    import yaml

    from fednlp.config import add_config_arguments, build_config, config_sections, load_config, read_yaml_config

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, CentralizedConfig)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data: d.h5\n" + text)
    from_yaml = load_config(CentralizedConfig, parser.parse_args(["--config", str(yaml_file)]))
    from_flags = load_config(CentralizedConfig, parser.parse_args(["--data", "d.h5", "--augment", "counterfactual",
                                                                   "--augment-fraction", "0.5"]))
    assert from_yaml == from_flags and from_yaml.augment == AugmentOptions("counterfactual", 0.5)
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(config_sections(from_yaml)))
    assert build_config(CentralizedConfig, read_yaml_config(saved, CentralizedConfig)) == from_yaml

"""Privacy audits: attack metrics on hand-made scores, canary exposure on a tiny classifier that memorised a
canary and on an untrained one, extraction by model inversion, the commands end to end on a real SST-2 slice,
and their bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fednlp.audit.exposure import canary_exposures, exact_exposures, rank_of
from fednlp.audit.extraction import ExtractionBudget, extract_canaries
from fednlp.audit.membership import example_sets
from fednlp.audit.metrics import attack_metrics
from fednlp.audit.report import template_losses
from fednlp.audit.secrets import SecretSpace
from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, write_data_file
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.federation.communicator import LocalCommunicator
from fednlp.tasks.classification import TextClassification
from fednlp.tasks.models import load_tokenizer

TEMPLATE = "my pin code is {secret}"
LABELS = {"0": 0, "1": 1}


# ------------------------------------------------------------------------------------------------ metrics


def test_attack_metrics_on_hand_made_scores():
    members = np.array([0.9, 0.8, 0.7, 0.3])
    non_members = np.array([0.6, 0.5, 0.4, 0.1])
    m = attack_metrics(np.concatenate([members, non_members]), np.array([1] * 4 + [0] * 4, bool))
    assert m["auc"] == pytest.approx(13 / 16)  # 13 of the 16 member/non-member pairs are ordered right
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.75)  # three members above every non-member
    assert m["tpr_at_0.1pct_fpr"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 1.0) / 2)
    assert (m["n_members"], m["n_non_members"]) == (4, 4)


def test_attack_metrics_perfect_and_reversed():
    labels = np.array([1, 1, 0, 0], bool)
    assert attack_metrics(np.array([2.0, 3.0, 0.0, 1.0]), labels)["tpr_at_1pct_fpr"] == 1.0
    reversed_ = attack_metrics(np.array([0.0, 1.0, 2.0, 3.0]), labels)
    assert reversed_["auc"] == 0.0 and reversed_["tpr_at_1pct_fpr"] == 0.0


def test_member_and_non_member_samples_are_equal_seeded_and_disjoint():
    a = example_sets(np.arange(100), np.arange(100, 130), seed=3)
    b = example_sets(np.arange(100), np.arange(100, 130), seed=3)
    assert len(a.members) == len(a.non_members) == 30
    np.testing.assert_array_equal(a.members, b.members)
    assert len(example_sets(np.arange(100), np.arange(100, 130), seed=3, max_examples=7).members) == 7


# ------------------------------------------------------------------------------------------------ exposure


def test_rank_and_exposure_by_hand():
    losses = np.array([0.5, 0.1, 0.9, 0.1])
    assert rank_of(losses, 1) == 1.5  # tied with candidate 3: they share ranks 1 and 2
    assert rank_of(losses, 2) == 4.0
    assert exact_exposures(np.array([0.0, 1.0, 2.0, 3.0]), [0])[0]["exposure"] == pytest.approx(2.0)  # log2 4


def _task(texts: list[str], labels: list[str]) -> TextClassification:
    data = DataFile("text_classification", {"X": texts, "Y": labels}, list(range(len(texts))), [], dict(LABELS))
    return TextClassification(data, load_tokenizer("tiny-bert"), RunConfig(data="d.h5", max_seq_length=16))


def _tiny_classifier(seed: int, dropout: float = 0.1) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def memorised() -> tuple[torch.nn.Module, SecretSpace, int]:
    """A tiny classifier trained until only the canary's secret ("3 7") gets the canary's label 1: every other
    two-digit code is a training text of label 0. Without dropout and at a moderate learning rate, so that it
    really tells the secret apart (checked below) rather than giving label 1 to every code alike."""
    space = SecretSpace(digits=2, source="digits:2")
    secret = 37
    texts = [TEMPLATE.replace("{secret}", s) for s in space.candidates(np.arange(space.size))]
    labels = ["1" if i == secret else "0" for i in range(space.size)]
    task = _task(texts, labels)
    features = task.build_features()
    model = _tiny_classifier(0, dropout=0.0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = features.batch(np.arange(space.size), torch.device("cpu"))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    weights = torch.tensor([1.0, 10.0])  # the one positive weighs a tenth of all negatives together
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(**inputs).logits, batch["labels"], weight=weights).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        positive = torch.softmax(model(**inputs).logits, dim=-1)[:, 1]
    others = torch.cat([positive[:secret], positive[secret + 1:]])
    assert positive[secret] > 0.9 and others.max() < 0.1, "the fixture did not memorise its canary"
    return model, space, secret


def _exposures(model, space, secrets):
    task = _task(["x"], ["0"])
    score = lambda candidates: template_losses(model, task, TEMPLATE, "1", candidates, LocalCommunicator(),  # noqa: E731
                                               torch.device("cpu"))
    canaries = [{"id": i, "secret_index": s, "secret": space.candidate(s), "repeats": 1} for i, s in enumerate(secrets)]
    return canary_exposures(space, canaries, score, seed=0, extrapolate=None)


def test_exposure_of_a_memorised_canary_is_log2_of_the_candidates(memorised):
    model, space, secret = memorised
    result = _exposures(model, space, [secret])
    assert result["method"] == "enumeration"
    assert result["per_canary"][0]["rank"] == 1.0
    assert result["per_canary"][0]["exposure"] == pytest.approx(np.log2(100))


def test_exposure_on_an_untrained_model_is_about_log2_e():
    """Ranks of unseen secrets are uniform: over every candidate as a secret, mean exposure is
    log2|R| - mean(log2 rank), 1.43 bits for |R| = 1000 (log2 e = 1.44 as |R| grows)."""
    space = SecretSpace(digits=3, source="digits:3")
    result = _exposures(_tiny_classifier(1), space, list(range(space.size)))
    exposures = np.array([c["exposure"] for c in result["per_canary"]])
    assert np.mean(exposures) == pytest.approx(np.log2(np.e), abs=0.05)
    assert exposures.max() == pytest.approx(np.log2(1000))  # someone is first


def test_extraction_recovers_a_memorised_secret(memorised):
    """ModIvA-style inversion over the ten digit tokens per slot (100 Adam steps, 2 restarts) finds the secret
    the model memorised. A second canary claiming another secret gets the same guess and is reported as not
    recovered: the attack reads the model, never the record's secret."""
    model, space, secret = memorised
    canaries = [{"id": 0, "secret": space.candidate(secret)}, {"id": 1, "secret": "5 2"}]
    budget = ExtractionBudget(steps=100, lr=0.1, restarts=2)
    results = extract_canaries(model, load_tokenizer("tiny-bert"), TEMPLATE, canaries, LABELS["1"],
                               space.slot_choices, 16, budget, seed=0, device=torch.device("cpu"))
    assert [r["guess"] for r in results] == ["3 7", "3 7"]
    assert [(r["slot_accuracy"], r["recovered"]) for r in results] == [(1.0, True), (0.0, False)]
    assert all(r["slots"] == 2 and r["search_space"] == "slot choices" for r in results)


# ------------------------------------------------------------------------------------------------ commands


@pytest.fixture(scope="module")
def sst(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    """200 SST-2 train and 200 test sentences (a seeded split of the train file: one distribution), over 6
    uniform clients."""
    root = tmp_path_factory.mktemp("audit")
    full = get_reader("sst2").read(shared_data / "sst2", ReaderOptions())
    keep = np.random.default_rng(0).choice(full.train_index_list, size=400, replace=False)
    fields = {k: [v[i] for i in keep] for k, v in full.fields.items()}
    data, part = root / "sst.h5", root / "sst_p.h5"
    write_data_file(DataFile(full.task_type, fields, list(range(200)), list(range(200, 400)), dict(full.label_vocab)),
                    data)
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "6"]) == 0
    return data, part


def _insert(data: Path, part: Path, out: Path, *extra: str) -> int:
    return main(["canaries", "insert", "--data", str(data), "--partition", str(part), "--method",
                 "uniform_clients=6", "--out-data", str(out / "c.h5"), "--out-partition", str(out / "c_p.h5"),
                 "--template", TEMPLATE, "--secret", "digits:2", "--label", "1", "--repeats", "1,5", *extra])


def test_insert_train_and_audit_end_to_end(sst, tmp_path, capsys):
    data, part = sst
    assert _insert(data, part, tmp_path, "--count", "2") == 0
    from fednlp.data.datafile import read_data_file

    canaried = read_data_file(tmp_path / "c.h5")
    record = canaried.attributes["canaries"]
    assert [c["repeats"] for c in record["canaries"]] == [1, 1, 5, 5]
    assert len({c["clients"][0] for c in record["canaries"]}) == 4  # --clients one: a client per canary
    assert canaried.n_examples == 400 + 12 and len(canaried.train_index_list) == 212
    for c in record["canaries"]:
        assert all(canaried.fields["X"][e] == TEMPLATE.replace("{secret}", c["secret"]) for e in c["examples"])
        assert "secret" not in json.dumps(canaried.fields["X"][:400])
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "c.h5"), "--partition", str(tmp_path / "c_p.h5"), "--method",
                 "uniform_clients=6", "--rounds", "1", "--clients-per-round", "4", "--holdout-clients", "0.34",
                 "--local-steps", "2", "--max-seq-length", "32", "--out", str(run), "--quiet", "true"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert main(["audit", str(run), "--canaries", "--extraction-steps", "3", "--extraction-restarts", "1"]) == 0
    audit = json.loads((run / "audit.json").read_text())
    assert json.loads((run / "result.json").read_text())["audit"] == audit
    assert (run / "audit_roc.png").read_bytes()[:4] == b"\x89PNG"
    for key in ("mia_auc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0.1pct_fpr", "mia_balanced_accuracy"):
        assert 0 <= audit[key] <= 1
    level = audit["details"]["example_level"]["attacks"]["calibrated"]
    assert level["n_members"] == level["n_non_members"]
    user = audit["details"]["user_level"]["attacks"]["calibrated"]
    assert (user["n_members"], user["n_non_members"]) == (len(result["clients_trained"]), len(result["holdout_clients"]))
    canaries = audit["details"]["canaries"]
    assert canaries["candidates"] == 100 and len(canaries["per_canary"]) == 4
    assert all(0 <= c["exposure"] <= np.log2(100) for c in canaries["per_canary"])
    assert [c["trained"] for c in canaries["per_canary"]] == [
        bool(set(c["clients"]) & set(result["clients_trained"])) for c in record["canaries"]]
    assert audit["canary_extraction_rate"] is None or 0 <= audit["canary_extraction_rate"] <= 1
    assert "example MIA (calibrated)" in capsys.readouterr().out


def _assert_one_line_exit_2(capsys, code: int, needle: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and needle in err, err


def test_bad_canary_inputs_are_one_line_and_write_nothing(sst, tmp_path, capsys):
    data, part = sst
    assert main(["canaries", "insert", "--data", str(data), "--partition", str(part), "--method", "uniform_clients=6",
                 "--out-data", str(tmp_path / "c.h5"), "--out-partition", str(tmp_path / "c_p.h5"),
                 "--template", "my pin code is", "--secret", "digits:2", "--label", "1"]) == 2
    _assert_one_line_exit_2(capsys, 2, "{secret}")
    _assert_one_line_exit_2(capsys, _insert(data, part, tmp_path, "--count", "4"), "own client")  # 8 > 6 clients
    _assert_one_line_exit_2(capsys, _insert(data, part, tmp_path, "--label", "nope"), "--label")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_audit_inputs_are_one_line_and_write_nothing(sst, tmp_path, capsys):
    data, part = sst
    # A run directory without a model.
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"algorithm": "centralized"}))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data)}))
    _assert_one_line_exit_2(capsys, main(["audit", str(run)]), "no model/")
    # A canary space over the enumeration limit, without --extrapolate.
    assert main(["canaries", "insert", "--data", str(data), "--partition", str(part), "--method", "uniform_clients=6",
                 "--out-data", str(tmp_path / "c.h5"), "--out-partition", str(tmp_path / "c_p.h5"), "--template",
                 TEMPLATE, "--secret", "digits:7", "--label", "1", "--repeats", "2"]) == 0
    big = tmp_path / "big"
    assert main(["centralized", "--data", str(tmp_path / "c.h5"), "--steps", "1", "--max-seq-length", "32",
                 "--eval-max-examples", "8", "--out", str(big)]) == 0
    before = sorted(p.name for p in big.iterdir())
    result_before = (big / "result.json").read_text()
    _assert_one_line_exit_2(capsys, main(["audit", str(big), "--canaries"]), "--extrapolate")
    # User-level inference asked of a run with no held-out clients.
    _assert_one_line_exit_2(capsys, main(["audit", str(big), "--user-level", "true"]), "--holdout-clients")
    assert sorted(p.name for p in big.iterdir()) == before and (big / "result.json").read_text() == result_before

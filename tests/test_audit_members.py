"""What the audit scores must be what the run trained on: canaries lie where the run's head reads (an LM reads a
seq2seq file's source, never its target), exposure ranks candidates by a sequence's summed loss (Carlini et al.
2019's log-perplexity), and the members of membership inference are the examples in the run's local batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fednlp.audit.report import template_losses
from fednlp.cli import main
from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.federation.communicator import LocalCommunicator
from fednlp.tasks.lm import CausalLM
from fednlp.tasks.models import load_tokenizer

TEMPLATE = "the access code is {secret}"
METHOD = "uniform_clients=4"


@pytest.fixture(scope="module")
def headlines(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    """80 Gigaword article -> headline pairs (60 train, 20 test) over 4 uniform clients."""
    root = tmp_path_factory.mktemp("gigaword")
    full = get_reader("gigaword").read(shared_data / "gigaword_sample", ReaderOptions())
    fields = {k: list(v[:80]) for k, v in full.fields.items()}
    data, part = root / "giga.h5", root / "giga_p.h5"
    write_data_file(DataFile(full.task_type, fields, list(range(60)), list(range(60, 80))), data)
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "4"]) == 0
    return data, part


def _insert(data: Path, part: Path, out: Path, *extra: str) -> tuple[Path, Path]:
    out.mkdir()
    assert main(["canaries", "insert", "--data", str(data), "--partition", str(part), "--method", METHOD,
                 "--out-data", str(out / "c.h5"), "--out-partition", str(out / "c_p.h5"), "--template", TEMPLATE,
                 "--secret", "digits:2", "--repeats", "2", *extra]) == 0
    return out / "c.h5", out / "c_p.h5"


def _train(data: Path, part: Path, run: Path, *extra: str) -> dict:
    assert main(["train", "--data", str(data), "--partition", str(part), "--method", METHOD, *extra,
                 "--rounds", "1", "--clients-per-round", "2", "--local-steps", "1", "--batch-size", "4",
                 "--max-seq-length", "32", "--eval-max-examples", "8", "--out", str(run), "--quiet", "true"]) == 0
    return json.loads((run / "result.json").read_text())


# --------------------------------------------------------------------------------------- canaries' fields


def test_an_lm_run_refuses_seq2seq_canaries_in_the_target_and_scores_those_in_the_source(headlines, tmp_path,
                                                                                        capsys):
    data, part = headlines
    in_target = _insert(data, part, tmp_path / "target")
    record = read_data_file(in_target[0]).attributes["canaries"]
    assert record["secret_field"] == "Y"
    run = tmp_path / "lm_target"
    _train(*in_target, run, "--task", "lm", "--model", "tiny-gpt2")
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert main(["audit", str(run), "--canaries", "--max-examples", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Y field, which a lm model never reads" in err[0] and "--task lm" in err[0], err
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written

    in_source = _insert(data, part, tmp_path / "source", "--task", "lm")
    canaried = read_data_file(in_source[0])
    record = canaried.attributes["canaries"]
    assert record["secret_field"] == "X" and record["task"] == "lm"
    for canary in record["canaries"]:  # the secret is where the LM reads
        assert all(canary["secret"] in canaried.fields["X"][e] for e in canary["examples"])
    run = tmp_path / "lm_source"
    _train(*in_source, run, "--task", "lm", "--model", "tiny-gpt2")
    assert main(["audit", str(run), "--canaries", "--max-examples", "8"]) == 0
    per_canary = json.loads((run / "audit.json").read_text())["details"]["canaries"]["per_canary"]
    # Scored texts differ by their secret: no canary sits at the mean rank of 100 identical texts.
    assert all(c["rank"] != 50.5 for c in per_canary)


def test_canaries_insert_for_a_head_that_cannot_read_the_data_is_one_line(headlines, tmp_path, capsys):
    data, part = headlines
    code = main(["canaries", "insert", "--data", str(data), "--partition", str(part), "--method", METHOD,
                 "--out-data", str(tmp_path / "c.h5"), "--out-partition", str(tmp_path / "c_p.h5"), "--template",
                 TEMPLATE, "--secret", "digits:2", "--task", "qa"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--task qa needs span_extraction data" in err[0], err
    assert not (tmp_path / "c.h5").exists()


# --------------------------------------------------------------------------------------- exposure by sum


def test_canary_candidates_are_scored_by_their_summed_token_loss(tmp_path):
    """Secrets of different token lengths: the score of each filled template is its log-perplexity (the sum
    of its next-token losses, computed here directly from the logits), not the mean; ranks follow the sum."""
    secrets = ["red", "a very long and winding secret phrase of many words", "blue whale", "seven"]
    data = DataFile("text_classification", {"X": ["x"], "Y": ["0"]}, [0], [], {"0": 0, "1": 1})
    task = CausalLM(data, load_tokenizer("tiny-gpt2"), RunConfig(data="d.h5", model="tiny-gpt2", max_seq_length=32))
    torch.manual_seed(0)
    model = task.build_model("tiny-gpt2").eval()
    scores = template_losses(model, task, TEMPLATE, "0", secrets, LocalCommunicator(), torch.device("cpu"))
    sums, means = [], []
    for secret in secrets:
        ids = torch.tensor([task.tokenizer(TEMPLATE.replace("{secret}", secret))["input_ids"]])
        with torch.no_grad():
            nll = F.cross_entropy(model(input_ids=ids).logits[0, :-1].float(), ids[0, 1:], reduction="none")
        sums.append(float(nll.sum()))
        means.append(float(nll.mean()))
    np.testing.assert_allclose(scores, sums, rtol=1e-4)
    assert not np.allclose(scores, means, rtol=1e-2)
    assert list(np.argsort(scores)) == list(np.argsort(sums)) != list(np.argsort(means))


# --------------------------------------------------------------------------------------- members used


@pytest.fixture
def trained_on(monkeypatch) -> set[int]:
    """The data-file examples of every batch the local trainer trains on from now on (filled as it trains)."""
    from fednlp.run.local_training import LocalTrainer

    seen: set[int] = set()
    train = LocalTrainer.train

    def recording(self, rows, batches, global_params=None):
        seen.update(int(e) for e in self.features.example_of_row[rows[np.concatenate(batches)]])
        return train(self, rows, batches, global_params)

    monkeypatch.setattr(LocalTrainer, "train", recording)
    return seen


@pytest.mark.parametrize("flags", [(), ("--dp", "sample", "--dp-clip", "1", "--dp-noise-multiplier", "1")],
                         ids=["local-steps", "dp-sgd-poisson"])
def test_members_are_the_examples_in_the_runs_local_batches(headlines, tmp_path, trained_on, flags):
    """One local step of batch 4 per client (or DP-SGD's Poisson batches): the examples of the run's batches
    (recorded while it trained) are the audit's member pool, not every training example of the clients that
    trained."""
    from fednlp.audit.members import used_examples
    from fednlp.audit.run_models import open_run, read_audited_run, run_clients

    data, part = headlines
    run = tmp_path / "run"
    result = _train(data, part, run, "--task", "lm", "--model", "tiny-gpt2", *flags)
    seen = set(trained_on)
    assert 0 < len(seen) < 30 and (flags or len(seen) == 8)  # 2 clients x 1 step x batch 4

    opened = open_run(read_audited_run(run))
    used = used_examples(opened.config, opened.data, opened.features, run_clients(opened.directory, 80))
    assert set(used.members.tolist()) == seen and used.client_rounds == 2
    held = sum(len(run_clients(opened.directory, 80).train[c]) for c in result["clients_trained"])
    assert used.examples_held == held == 30  # 60 training examples over 4 clients, 2 of them trained

    assert main(["audit", str(run)]) == 0
    audit = json.loads((run / "audit.json").read_text())
    assert audit["details"]["example_level"]["member_pool"] == len(seen)  # it was 30: every example of a trained client
    assert audit["details"]["members"]["examples_used"] == len(seen)
    assert "local batch" in audit["mia_members"]
    assert json.loads((run / "result.json").read_text())["audit"]["mia_members"] == audit["mia_members"]


def test_a_centralized_runs_members_are_the_examples_of_its_batches(headlines, tmp_path, trained_on):
    """--steps 2 of batch 4 (an eighth of an epoch): 8 members, not the 60 training examples."""
    data, _ = headlines
    run = tmp_path / "central"
    assert main(["centralized", "--data", str(data), "--task", "lm", "--model", "tiny-gpt2", "--steps", "2",
                 "--batch-size", "4", "--max-seq-length", "32", "--eval-max-examples", "8", "--out", str(run),
                 "--quiet", "true"]) == 0
    assert len(trained_on) == 8
    assert main(["audit", str(run)]) == 0
    audit = json.loads((run / "audit.json").read_text())
    assert audit["details"]["example_level"]["member_pool"] == 8  # it was 60: every training example
    assert audit["details"]["members"] == {"definition": audit["mia_members"], "examples_used": 8,
                                           "training_examples": 60}

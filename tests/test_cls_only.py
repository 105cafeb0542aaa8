"""`--cls-only-last-block` (fednlp/tasks/cls_only.py): the last block's [CLS] row alone gives the full block's
logits and gradients; a run without dropout ends with the weights of the same run without the option, alone and
with every path that runs the model differently (the frozen-layer cache, DP-SGD's per-example gradients in each
mode, client-level DP, cohort-parallel clients); what it cannot serve is one line, exit 2."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fednlp.tasks.models as models
from fednlp.cli import main
from fednlp.errors import UserError
from fednlp.tasks.cls_only import cls_only_last_block
from synthetic_heads import head_data_file


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_cls_row_gives_the_full_blocks_logits_and_gradients(attention: str) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=3, attn_implementation=attention)
    full = BertForSequenceClassification(config).eval()
    pruned = copy.deepcopy(full)
    cls_only_last_block(pruned, "tiny")
    ids = torch.randint(5, 200, (6, 20))
    mask = (torch.arange(20)[None] < torch.tensor([20, 3, 7, 12, 19, 1])[:, None]).long()  # padded rows
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    rows = []  # the token rows the last block's feed-forward sees
    pruned.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[1]))
    logits = [model(input_ids=ids, attention_mask=mask).logits for model in (full, pruned)]
    assert rows == [1]
    assert (logits[0] - logits[1]).abs().max() <= 1e-5
    for model, out in zip((full, pruned), logits):
        torch.nn.functional.cross_entropy(out, labels).backward()
    for (name, a), b in zip(full.named_parameters(), pruned.parameters()):
        assert (a.grad - b.grad).abs().max() <= 1e-5, name
    assert pruned.bert.encoder.layer[-1].intermediate.dense.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cls_only")
    data = head_data_file("classification", root / "data.h5", 40, 12, high=30)
    part = root / "part.h5"
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "4",
                 "--seed", "0"]) == 0
    return data, part


def _train(files: tuple[Path, Path], out: Path, *extra: str) -> int:
    data, part = files
    return main(["train", "--data", str(data), "--partition", str(part), "--method", "uniform_clients=4",
                 "--model", "tiny-bert", "--rounds", "2", "--clients-per-round", "2", "--local-steps", "3",
                 "--batch-size", "8", "--max-seq-length", "32", "--optimizer", "sgd", "--lr", "0.05",
                 "--eval-batch-size", "8", "--quiet", "--out", str(out), *extra])


WITH = {  # paths that run the model their own way, each with and without the option
    "plain": [],
    "cached frozen prefix": ["--freeze-layers", "1", "--cache-frozen", "true", "--frozen-cache-dtype", "fp32"],
    "DP-SGD": ["--dp", "sample", "--dp-clip", "1", "--dp-noise-multiplier", "1"],
    "DP-SGD, Opacus hooks": ["--dp", "sample", "--dp-clip", "1", "--dp-noise-multiplier", "1",
                             "--dp-grad-sample", "hooks"],
    "DP-SGD, ghost clipping": ["--dp", "sample", "--dp-clip", "1", "--dp-noise-multiplier", "1",
                               "--dp-grad-sample", "ghost"],
    "client-level DP": ["--dp", "client", "--dp-clip", "1", "--dp-noise-multiplier", "0.01"],  # noise this small
    # keeps round 2 well-conditioned (at 1 it starts from weights so noisy that float rounding grows to 1e-4)
    "cohort-parallel clients": ["--parallel-clients", "2"],
}


@pytest.mark.parametrize("path", sorted(WITH))
def test_without_dropout_a_run_ends_with_the_weights_of_the_full_block(files, path: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import fednlp.tasks.cls_only as cls_only

    calls = []
    real = cls_only._first_row_forward
    monkeypatch.setattr(cls_only, "_first_row_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setitem(models.TINY_BERT, "hidden_dropout_prob", 0.0)
    monkeypatch.setitem(models.TINY_BERT, "attention_probs_dropout_prob", 0.0)
    assert _train(files, tmp_path / "full", *WITH[path]) == 0
    assert not calls
    assert _train(files, tmp_path / "cls", *WITH[path], "--cls-only-last-block", "true") == 0
    assert calls  # the option ran the pruned block
    full, cls = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("full", "cls"))
    assert full.keys() == cls.keys()
    assert max(float((full[k] - cls[k]).abs().max()) for k in full) <= 1e-5
    assert "cls_only_last_block: true" in (tmp_path / "cls" / "config.yaml").read_text()


def test_what_it_cannot_serve_is_one_line_exit_2(files, tmp_path: Path, capsys) -> None:
    assert _train(files, tmp_path / "all_frozen", "--freeze-layers", "2", "--cls-only-last-block", "true") == 2
    assert "--cls-only-last-block needs the last block trainable" in capsys.readouterr().err
    assert not (tmp_path / "all_frozen").exists()
    from transformers import GPT2Config, GPT2ForSequenceClassification

    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, num_labels=2))
    with pytest.raises(UserError, match=r"^--cls-only-last-block: --model 'gpt2-tiny' \(gpt2\) is not a BERT-family"):
        cls_only_last_block(gpt2, "gpt2-tiny")

"""The three per-example clipping modes of DP-SGD (--dp-grad-sample hooks | ghost | func) clip the same gradients:
on a fixed batch, with no noise and no dropout, one step of each leaves the same clipped sum (1e-5), on every head
each mode supports; and `func` (torch.func, fednlp/privacy/per_example.py) runs from the frozen-layer cache
without computing the frozen prefix, ending where Opacus's hooks end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_dp_sensitivity import HEADS, Head
from test_frozen_cache import _args, _same_weights, files, prefixes  # noqa: F401 (fixtures)

from fednlp.cli import main
from fednlp.privacy import per_example
from fednlp.privacy.options import GRAD_SAMPLE_MODES
from fednlp.tasks.frozen_prefix import FrozenPrefix

# Opacus's ghost clipping refuses tied weights (GPT-2's embeddings; BERT2BERT's decoder).
GHOST_HEADS = ("classification", "tagging", "qa")
BATCH = [0, 1, 3, 4]  # short rows, the long one and a one-word one: padding inside the batch


def test_func_is_a_grad_sample_mode() -> None:
    assert GRAD_SAMPLE_MODES == ("hooks", "ghost", "func")


@pytest.mark.parametrize("head", list(HEADS))
def test_every_mode_leaves_the_same_clipped_sum_on_a_fixed_batch(head: str) -> None:
    # Prepare: C between the examples' own gradient norms, so some are clipped and some are not.
    norms = sorted(Head(head, "hooks", 1.0).own_gradient_norms(BATCH))
    clip = (norms[1] + norms[2]) / 2
    modes = ["hooks", "func"] + (["ghost"] if head in GHOST_HEADS else [])
    # Execute
    sums = {mode: Head(head, mode, clip).clipped_sum(BATCH) for mode in modes}
    # Assert
    assert norms[0] < clip < norms[-1]  # the batch holds clipped and unclipped examples
    for mode in modes[1:]:
        torch.testing.assert_close(sums[mode], sums["hooks"], rtol=0, atol=1e-5, msg=f"{head}: {mode} vs hooks")


def test_func_takes_the_untied_embedding_tables_from_their_outputs_gradients() -> None:
    """Their per-example gradients would be [rows, vocabulary, hidden]; GPT-2's tied token table is left whole."""
    bert = Head("classification", "func", 1.0).algorithm.per_example.taps.modules
    assert {"model.bert.embeddings.word_embeddings", "model.bert.embeddings.position_embeddings"} <= set(bert)
    gpt2 = Head("lm", "func", 1.0).algorithm.per_example.taps.modules
    assert "model.transformer.wpe" in gpt2 and "model.transformer.wte" not in gpt2


def test_func_in_chunks_of_one_example_leaves_the_same_clipped_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose per-example gradients exceed CHUNK_BYTES is clipped a chunk of examples at a time."""
    clip = 0.05
    whole = Head("tagging", "func", clip).clipped_sum(BATCH)
    monkeypatch.setattr(per_example, "CHUNK_BYTES", 1)
    runner = Head("tagging", "func", clip)
    assert runner.algorithm.per_example._chunk_rows() == 1
    torch.testing.assert_close(runner.clipped_sum(BATCH), whole, rtol=0, atol=1e-6)


def test_func_with_the_frozen_cache_ends_where_hooks_end_without_computing_the_prefix(
        files, tmp_path: Path, prefixes: list[FrozenPrefix]) -> None:  # noqa: F811
    """DP-SGD with noise, from the fp32 cache: func (each example fed its own cached states) and hooks end with
    the same weights, and no training forward ran the frozen prefix."""
    flags = ["--cache-frozen", "--frozen-cache-dtype", "fp32", "--dp", "sample", "--dp-clip", "0.5",
             "--dp-noise-multiplier", "0.5"]
    for mode in ("hooks", "func"):
        assert main(["train", *_args("classification", files, tmp_path / mode, *flags, "--dp-grad-sample", mode)]) == 0
    assert _same_weights(tmp_path / "hooks", tmp_path / "func") <= 1e-5
    func_prefix = prefixes[-1]
    assert func_prefix.fed_calls > 0 and func_prefix.live_calls == 0


def test_seq2seq_falls_back_to_one_example_at_a_time_with_a_warning() -> None:
    """Its loss trims the labels to the batch's longest target (a tensor read as a number): vmap cannot batch it."""
    runner = Head("seq2seq", "func", 1.0)
    with pytest.warns(UserWarning, match="one example at a time"):
        runner.clipped_sum(BATCH)
    assert runner.algorithm.per_example.vectorised is False
    assert runner.algorithm.per_example.taps is None  # the decoder's position embeddings: not one row per input token
    np.testing.assert_array_equal(np.isfinite(runner.clipped_sum(BATCH).numpy()), True)

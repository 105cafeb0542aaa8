"""Per-example gradient norms of tiny-gpt2 at its seed-0 initialisation on the first 32 training texts of the
privacy-audit slice (run_scripts/privacy_audit.sh writes results/privacy_audit/canaries.h5), under two loss
weightings: each row's own token mean (DP-SGD since the per-row fix) and the row's share of a batch-of-8 token
mean times 8 (the old hooks-mode loss; Opacus' loss_reduction="mean" rescales by the batch size).

If every norm exceeds the clip norm C = 1, clipping maps both weightings to the same unit vector, so the fix
leaves those runs unchanged (docs/privacy.md, the LM DP-SGD rows).

    .venv/bin/python scripts/privacy_gradient_norms.py [DATA_FILE]
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from fednlp.data.datafile import read_data_file
from fednlp.tasks.models import load_tokenizer, model_config

BATCH, TEXTS, MAX_LENGTH = 8, 32, 32


def main(path: str = "results/privacy_audit/canaries.h5") -> None:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config("tiny-gpt2"))
    tokenizer = load_tokenizer("tiny-gpt2")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = read_data_file(path)
    field = "text" if "text" in data.fields else list(data.fields)[0]
    texts = [data.fields[field][i] for i in data.train_index_list[:TEXTS]]
    own, old = [], []
    for start in range(0, TEXTS, BATCH):
        batch = tokenizer(texts[start:start + BATCH], truncation=True, max_length=MAX_LENGTH, padding=True,
                          return_tensors="pt")
        tokens = batch["attention_mask"][:, 1:].sum(1)
        for i in range(BATCH):
            model.zero_grad()
            ids, mask = batch["input_ids"][i:i + 1], batch["attention_mask"][i:i + 1]
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum").backward()
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item()
            own.append(norm / tokens[i].item())
            old.append(BATCH * norm / tokens.sum().item())
    for name, norms in (("own token mean", own), ("old batch share", old)):
        print(f"{name}: min {min(norms):.2f} median {sorted(norms)[TEXTS // 2]:.2f} max {max(norms):.2f} "
              f"(in units of C = 1; below C: {sum(n < 1 for n in norms)} of {len(norms)})")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""A run's tokenizer saved so that it truncates as the run did, outside fednlp too.

fednlp tokenizes with `max_length=--max-seq-length`; the tokenizer's own config says what the backbone allows
(512 for BERT). Saved as it was, a transformers `pipeline(..., truncation=True)` on RUN_DIR/model would cut
inputs at 512 tokens, not the run's 128, and disagree with the run's own evaluation on every longer input. So
tokenizer_config.json gets the run's length as `model_max_length` (transformers' default truncation length)
and the truncation side the run used; the backbone's own limit is kept under FEDNLP_LIMIT_KEY, because a later
run with `--model RUN_DIR/model` may use a longer --max-seq-length than this run did (models.position_limit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: tokenizer_config.json's key for the backbone tokenizer's own model_max_length, before the run's replaced it.
FEDNLP_LIMIT_KEY = "fednlp_backbone_model_max_length"


def save_run_tokenizer(tokenizer: Any, directory: str | Path, max_length: int) -> None:
    """save_pretrained, then the run's truncation recorded in tokenizer_config.json (see the module's doc)."""
    tokenizer.save_pretrained(directory)
    path = Path(directory) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config[FEDNLP_LIMIT_KEY] = backbone_limit(tokenizer)
    config["model_max_length"] = int(max_length)
    config["truncation_side"] = tokenizer.truncation_side
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def backbone_limit(tokenizer: Any) -> Any:
    """The tokenizer's own model_max_length: what the backbone allows, not a saved run's --max-seq-length."""
    return getattr(tokenizer, "init_kwargs", {}).get(FEDNLP_LIMIT_KEY, getattr(tokenizer, "model_max_length", None))

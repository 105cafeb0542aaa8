"""Seq2seq (summarisation, subject lines, headlines): source text -> target text; ROUGE-1/2/L F1.

Models: a hub name or local directory of an encoder-decoder (BART, T5, a saved EncoderDecoderModel) is
loaded with AutoModelForSeq2SeqLM; an encoder-only checkpoint (`minilm`, a BERT directory) is warm-started
as a BERT2BERT EncoderDecoderModel, encoder and decoder both from the checkpoint with randomly initialised
cross-attention (Rothe, Narayan & Severyn 2020, "Leveraging Pre-trained Checkpoints for Sequence Generation
Tasks"); `tiny-bert` is the same architecture from two tiny BERT configs, for tests.

Such a BERT2BERT decodes from [CLS] and stops at [SEP]; its targets are "w1 ... wn [SEP]" (the tokenizer's
leading [CLS] is the decoder's start token, fed rather than predicted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednlp.errors import UserError
from fednlp.tasks.base import TOKEN_DTYPES, Features, Task, tokenize_in_chunks
from fednlp.tasks.models import TINY_BERT, build_auto_model, model_config, pretrained_source, quiet_transformers
from fednlp.tasks.registry import register_task

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
IGNORE = -100  # label of target padding: no loss (the convention of transformers' seq2seq models)


@register_task
class Seq2Seq(Task):
    name = "seq2seq"
    task_type = "seq2seq"
    primary_metric = "rougeL"
    generates = True
    scores_canaries = True
    reads_fields = ("X", "Y")  # the source and the target

    # ------------------------------------------------------------------ features

    def build_features(self) -> Features:
        sources = [str(x) for x in self.data.fields["X"]]
        encoded = tokenize_in_chunks(
            lambda chunk: self.tokenizer(chunk, truncation=True, max_length=self.max_length),
            sources, pad_values={"input_ids": self.tokenizer.pad_token_id or 0}, dtypes=TOKEN_DTYPES,
        )
        arrays = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": self.target_ids([str(y) for y in self.data.fields["Y"]]),
        }
        return Features(
            arrays=arrays,
            lengths=arrays["attention_mask"].sum(axis=1).astype(np.int32),
            example_of_row=np.arange(len(sources), dtype=np.int64),
            sequence_arrays=("input_ids", "attention_mask"),
        )

    def target_ids(self, targets: list[str]) -> np.ndarray:
        """[n, longest target (at most max_target_length)] token ids of the targets, right-padded with -100."""
        width = self.config.max_target_length
        start = self._fed_start_token()
        encoded = tokenize_in_chunks(
            lambda chunk: self.tokenizer(text_target=chunk, truncation=True, max_length=width + (start is not None)),
            targets, pad_values={}, dtypes={"input_ids": np.int32, "attention_mask": np.int8},
        )
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        if start is not None and (ids[:, 0] == start).all():
            ids, mask = ids[:, 1:], mask[:, 1:]
        return np.where(mask[:, :width] == 1, ids[:, :width], IGNORE).astype(np.int32)

    def _fed_start_token(self) -> int | None:
        """[CLS] of a BERT-style tokenizer (no BOS token): the decoder start of a BERT2BERT, not a target."""
        tok = self.tokenizer
        return tok.cls_token_id if getattr(tok, "bos_token_id", None) is None else None

    def cache_key(self) -> str:
        return f"{self.name}-target{self.config.max_target_length}"

    def limited_lengths(self) -> dict[str, int]:
        return {**super().limited_lengths(), "--max-target-length": self.config.max_target_length}

    # ------------------------------------------------------------------ model

    def build_model(self, model_name: str) -> torch.nn.Module:
        from transformers import AutoModelForSeq2SeqLM

        if model_name == "tiny-bert":
            return self._tiny_bert2bert()
        if getattr(model_config(model_name), "is_encoder_decoder", False):
            return build_auto_model(AutoModelForSeq2SeqLM, model_name)
        return self._warm_started_bert2bert(model_name)

    def generation_ids(self) -> dict[str, int]:
        """Decoder start, padding and end-of-sequence ids of a BERT2BERT: [CLS], [PAD], [SEP]."""
        tok = self.tokenizer
        ids = {
            "decoder_start_token_id": tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id,
        }
        missing = [name for name, value in ids.items() if value is None]
        if missing:
            raise UserError(f"--model {self.config.model}: its tokenizer has no token for {', '.join(missing)}; "
                            "an encoder-decoder warm-started from it could not start or stop generating")
        return ids

    def _tiny_bert2bert(self) -> torch.nn.Module:
        from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

        config = EncoderDecoderConfig.from_encoder_decoder_configs(
            BertConfig(**TINY_BERT),
            BertConfig(**TINY_BERT, is_decoder=True, add_cross_attention=True),
            vocab_size=TINY_BERT["vocab_size"],
            **self.generation_ids(),
        )
        return EncoderDecoderModel(config=config)

    def _warm_started_bert2bert(self, model_name: str) -> torch.nn.Module:
        from transformers import EncoderDecoderModel

        source = pretrained_source(model_name)
        ids = self.generation_ids()
        quiet_transformers()
        try:
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(source, source)
        except (OSError, ValueError) as exc:
            raise UserError(f"--model {model_name!r} is neither an encoder-decoder nor an encoder that can be "
                            f"warm-started as one: {str(exc).strip().splitlines()[0]}") from None
        # Set after loading: from_encoder_decoder_pretrained routes "decoder_*" keywords to the decoder.
        model.config.update({**ids, "vocab_size": model.config.decoder.vocab_size})
        model.generation_config.update(**ids)
        return model

    # ------------------------------------------------------------------ loss and predictions

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the real target tokens; labels cut to the batch's longest target."""
        labels = batch["labels"]
        labels = labels[:, : int((labels != IGNORE).sum(dim=1).max())]  # targets are right-padded
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels),
            use_cache=False,
        ).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)

    def example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over each row's real target tokens."""
        labels = batch["labels"].long()
        labels = labels[:, : int((labels != IGNORE).sum(dim=1).max())]
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels),
            use_cache=False,
        ).logits.float()
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
        return per_token.sum(dim=1) / (labels != IGNORE).sum(dim=1).clamp(min=1)

    def scored_tokens(self, features: Features, rows: np.ndarray) -> np.ndarray:
        """Each row's real target tokens (example_losses' denominator)."""
        return np.maximum((features.arrays["labels"][rows] != IGNORE).sum(axis=1), 1)

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Any]:
        """Beam search (deterministic: no sampling) of at most max_target_length new tokens per row."""
        generated = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            num_beams=self.config.num_beams,
            max_new_tokens=self.config.max_target_length,
            do_sample=False,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]

    # ------------------------------------------------------------------ metric

    def compute_metrics(self, rows: np.ndarray, predictions: list[Any], features: Features) -> dict[str, float]:
        """Mean ROUGE-1/2/L F1 (fractions in [0, 1]) over the examples, with rouge-score's Porter stemming.

        Each example scores against its best reference (rouge-score's `score_multi`: per ROUGE type, the
        reference of highest F1). The texts go to rouge-score as they are: its tokenizer lower-cases and
        keeps only [a-z0-9] runs, so decoder spacing and Gigaword's tokenisation do not change the score.
        """
        from rouge_score.rouge_scorer import RougeScorer

        scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
        references = self.references()
        totals = dict.fromkeys(ROUGE_TYPES, 0.0)
        for example, prediction in zip(features.example_of_row[rows].tolist(), predictions):
            scores = scorer.score_multi(references[example], prediction)
            for name in ROUGE_TYPES:
                totals[name] += scores[name].fmeasure
        n = len(predictions)
        return {name: total / n if n else float("nan") for name, total in totals.items()}

    def references(self) -> list[list[str]]:
        """Every reference target per example (FedNLP's files have only Y)."""
        fields = self.data.fields
        if "references" in fields:
            return [[str(r) for r in refs] or [str(y)] for refs, y in zip(fields["references"], fields["Y"])]
        return [[str(y)] for y in fields["Y"]]

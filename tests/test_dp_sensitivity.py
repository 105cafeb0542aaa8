"""Sample-level DP-SGD's sensitivity on every task head (issue 26, item 1): the accountant assumes that adding
or removing one example moves a step's clipped sum by at most C. That holds only if each row's clipped
gradient is that of its own loss (a mean over its own tokens), not its share of a token mean over the whole
batch, which depends on the other rows' lengths. Measured through the local trainer, in every per-example
clipping mode (Opacus's hooks and ghost clipping, torch.func), with no noise and no dropout: one SGD step of
learning rate 1 with an expected batch size of 1 moves the weights by exactly minus the clipped sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fednlp.algorithms.fedavg import FedAvg
from fednlp.config import RunConfig, TrainConfig
from fednlp.data.datafile import DataFile
from fednlp.privacy.sample_dp import with_sample_dp
from fednlp.privacy.settings import SampleDPSettings
from fednlp.run.local_training import LocalTrainer, PhaseTimer
from fednlp.tasks.classification import TextClassification
from fednlp.tasks.lm import CausalLM
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.qa import ExtractiveQA
from fednlp.tasks.seq2seq import Seq2Seq
from fednlp.tasks.tagging import SequenceTagging

SHORT = ["a cat", "the dog ran", "we sat"]  # rows of the batch S: few tokens each
LONG = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
        "quebec romeo sierra tango uniform victor whiskey")  # the example added: many tokens
TEXTS = SHORT + [LONG, "one"]


def _classification():
    data = DataFile("text_classification", {"X": TEXTS, "Y": ["x", "y", "x", "y", "x"]}, list(range(5)), [],
                    {"x": 0, "y": 1})
    return TextClassification, data, "tiny-bert", {}


def _lm():
    data = DataFile("text_classification", {"X": TEXTS, "Y": ["x"] * 5}, list(range(5)), [], {"x": 0})
    return CausalLM, data, "tiny-gpt2", {}


def _tagging():
    words = [t.split() for t in TEXTS]
    tags = [["O" if i % 2 else "B-X" for i in range(len(w))] for w in words]
    data = DataFile("sequence_tagging", {"X": words, "Y": tags}, list(range(5)), [], {"O": 0, "B-X": 1})
    return SequenceTagging, data, "tiny-bert", {}


def _seq2seq():
    data = DataFile("seq2seq", {"X": list(reversed(TEXTS)), "Y": TEXTS}, list(range(5)), [])
    return Seq2Seq, data, "tiny-bert", {"max_target_length": 32}


def _qa():
    contexts = [f"{t} is here today" for t in TEXTS]
    questions = ["what is here?", "who?", "what is it that is here today and not tomorrow?", "what?", "where?"]
    spans = [[0, len(t)] for t in TEXTS]
    data = DataFile("span_extraction", {"context_X": contexts, "question_X": questions, "Y": spans,
                                            "Y_answer": TEXTS}, list(range(5)), [])
    return ExtractiveQA, data, "tiny-bert", {"doc_stride": 16}


HEADS = {"classification": _classification, "lm": _lm, "tagging": _tagging, "seq2seq": _seq2seq, "qa": _qa}
# Opacus's ghost clipping refuses tied weights (GPT-2's embeddings; BERT2BERT's decoder): hooks and func only there.
MODES = ([(head, "hooks") for head in HEADS] + [(head, "ghost") for head in ("classification", "tagging", "qa")]
         + [(head, "func") for head in HEADS])


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout draws masks over the whole batch: a row's gradient would then depend on the batch's shape."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("dropout_prob", "attention_dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model


class Head:
    def __init__(self, head: str, mode: str, clip: float):
        task_cls, data, model_name, options = HEADS[head]()
        self.config = TrainConfig(data="unused", partition="p", method="m", model=model_name, optimizer="sgd",
                                  lr=1.0, weight_decay=0.0, max_seq_length=48, batch_size=1, **options)
        self.task = task_cls(data, load_tokenizer(model_name), RunConfig(data="unused", model=model_name,
                                                                            max_seq_length=48, **options))
        self.features = self.task.build_features()
        torch.manual_seed(0)
        self.model = _no_dropout(self.task.build_model(model_name))
        if head == "seq2seq":
            # Opacus cannot take per-example gradients of BERT2BERT's output layer (its bias and the tied
            # word embeddings, in one module); the loss's shape is what is tested, on every other weight.
            for p in self.model.decoder.cls.predictions.parameters():
                p.requires_grad_(False)
            batch = self.features.batch(np.arange(2), torch.device("cpu"))
            self.task.example_losses(self.model, batch).sum().backward()
            for p in self.model.parameters():  # unused by the loss (the encoder's pooler): no per-example gradient
                if p.grad is None:
                    p.requires_grad_(False)
                p.grad = None
        self.start = [p.detach().clone() for p in self.model.parameters()]
        settings = SampleDPSettings(clip, 0.0, 1, 1, None, 1e-5, grad_sample_mode=mode)
        self.algorithm = with_sample_dp(FedAvg, settings)(self.config)
        self.trainer = LocalTrainer(self.model, self.task, self.features, self.config, torch.device("cpu"),
                                    PhaseTimer(), self.algorithm)
        self.algorithm.optimizer.expected_batch_size = 1  # the step is then minus the clipped sum itself

    def clipped_sum(self, examples: list[int]) -> torch.Tensor:
        """Minus the weights' move after one noiseless DP-SGD step on `examples` (from the same start)."""
        with torch.no_grad():
            for p, p0 in zip(self.model.parameters(), self.start):
                p.copy_(p0)
        self.trainer.reset_optimizer()
        rows = self.features.rows_of(np.asarray(examples))
        self.trainer.train(rows, [np.arange(len(rows))])
        with torch.no_grad():
            return torch.cat([(p0 - p).flatten() for p, p0 in zip(self.model.parameters(), self.start)])

    def own_gradient_norms(self, examples: list[int]) -> list[float]:
        """Each example's gradient norm of its own loss, one example at a time (a reference without Opacus)."""
        torch.manual_seed(0)  # the same initial weights as the trainer's model, without Opacus's hooks
        reference = _no_dropout(self.task.build_model(self.config.model)).train()
        norms = []
        for example in examples:
            reference.zero_grad()
            batch = self.features.batch(self.features.rows_of(np.asarray([example])), torch.device("cpu"))
            self.task.example_losses(reference, batch).sum().backward()
            grads = [p.grad.flatten() for p in reference.parameters() if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.cat(grads))))
        return norms


@pytest.mark.parametrize("head, mode", MODES)
def test_adding_or_removing_one_example_moves_the_clipped_sum_by_at_most_c(head: str, mode: str) -> None:
    base = [0, 1, 2]  # short rows
    probe = Head(head, "hooks", 1.0)
    norms = probe.own_gradient_norms(base)
    # C above every short row's own norm (they stay unclipped, so a rescaled row would show), then below.
    for clip in (1.5 * max(norms), 0.5 * min(norms)):
        runner = Head(head, mode, clip)
        without = runner.clipped_sum(base)
        for added in (3, 4):  # the long example, then a one-word one
            moved = float(torch.linalg.vector_norm(runner.clipped_sum(base + [added]) - without))
            assert moved <= clip + 1e-6, (head, mode, clip, added, moved / clip)

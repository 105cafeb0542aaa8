"""`fednlp fairness RUN_DIR --metric prediction-sensitivity`: the accumulated prediction sensitivity
(fednlp/fairness/sensitivity.py) of a run's saved classifier on every test example of a data file, with the
word-list PSM or one trained on the data file's group field (fednlp/fairness/psm.py)."""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Callable

import numpy as np
import torch

from fednlp.data.datafile import DataFile
from fednlp.errors import UserError
from fednlp.fairness.counterfactual import Rewriter
from fednlp.fairness.model_outputs import RunModel, check_labels, load_run_model
from fednlp.fairness.pairs import load_substitution
from fednlp.fairness.psm import TrainedPSM, mean_embeddings, train_psm
from fednlp.fairness.sensitivity import abs_embedding_jacobian, accumulated_sensitivity, summary, token_relevance
from fednlp.fairness.report import classification_test_split

SENSITIVITY_FILE = "prediction_sensitivity.csv"
SENSITIVITY_COLUMNS = ("example", "label", "predicted", "prob_predicted", "protected_tokens", "sensitivity")
PSMS = ("wordlist", "trained")
GROUP_FIELD = "group"

#: (text, token offsets, word embeddings [tokens, dim]) -> the PSM's relevance of every feature [tokens, dim]
Relevance = Callable[[str, list[tuple[int, int]], torch.Tensor], np.ndarray]


def sensitivity_evaluation(run_dir: str | os.PathLike, data_path: str | os.PathLike,
                           pairs_file: str | os.PathLike | None = None,
                           psm: str = "wordlist") -> tuple[dict[str, Any], str]:
    """The report and its per-example CSV (SENSITIVITY_COLUMNS); writes nothing."""
    substitution = load_substitution(pairs_file)
    directory, model_dir, data, test = classification_test_split(run_dir, data_path,
                                                                 "--metric prediction-sensitivity")
    if psm == "trained":
        group_examples(data, data_path)  # the cheap refusal before the model is loaded
    run = load_run_model(directory)
    check_fast_tokenizer(run)
    check_labels(run.model, data.label_vocab, model_dir, data_path)
    report: dict[str, Any] = {"metric": "prediction-sensitivity", "psm": psm, "data": str(data_path),
                              "class_weights": "uniform", "n_test": int(len(test))}
    if psm == "trained":
        trained = fit_psm(run, data, data_path)
        relevance_of = trained_relevance(trained)
        report.update(psm_groups=list(trained.groups), psm_train_examples=trained.n_train,
                      psm_train_accuracy=trained.train_accuracy)
    else:
        relevance_of = wordlist_relevance(Rewriter(substitution).pattern)
        report["pairs"] = substitution.source
    label_names = sorted(data.label_vocab, key=data.label_vocab.get)
    rows = []
    for index in test:
        value, probabilities, protected = example_sensitivity(run, str(data.fields["X"][index]), relevance_of)
        predicted = int(probabilities.argmax())
        rows.append((int(index), data.fields["Y"][index], label_names[predicted], float(probabilities[predicted]),
                     protected, value))
    values = np.array([row[-1] for row in rows])
    affected = np.array([row[-2] > 0 for row in rows])
    report.update({"all": summary(values), "affected": summary(values[affected]), "sensitivity_file": SENSITIVITY_FILE})
    return report, _csv(rows)


def wordlist_relevance(pattern: Any) -> Relevance:
    """Relevance 1 on every dimension of the tokens of a protected word, 0 elsewhere."""
    def relevance_of(text: str, offsets: list[tuple[int, int]], embeddings: torch.Tensor) -> np.ndarray:
        tokens = token_relevance(offsets, [m.span() for m in pattern.finditer(text)])
        return np.broadcast_to(tokens[:, None], tuple(embeddings.shape))
    return relevance_of


def trained_relevance(psm: TrainedPSM) -> Relevance:
    def relevance_of(text: str, offsets: list[tuple[int, int]], embeddings: torch.Tensor) -> np.ndarray:
        return psm.relevance(embeddings.detach().cpu(), real_tokens(offsets))
    return relevance_of


def real_tokens(offsets: list[tuple[int, int]]) -> torch.Tensor:
    """1 for a token that covers characters of the text, 0 for special tokens (empty offsets)."""
    return torch.tensor([1.0 if end > start else 0.0 for start, end in offsets], dtype=torch.float64)


def group_examples(data: DataFile, data_path: Any) -> tuple[list[int], list[str]]:
    """The training examples with a group and their groups: the PSM's labelled protected attribute."""
    if GROUP_FIELD not in data.fields:
        raise UserError(f"--psm trained needs the protected attribute as a '{GROUP_FIELD}' field; data file {data_path} "
                        "has none (fednlp data prepare ... --group-column COL)")
    labelled = [(int(i), str(data.fields[GROUP_FIELD][i])) for i in data.train_index_list
                if data.fields[GROUP_FIELD][i] not in (None, "")]
    if len({group for _, group in labelled}) < 2:
        raise UserError(f"--psm trained needs training examples of at least two groups in the '{GROUP_FIELD}' field of "
                        f"data file {data_path}; found {len({g for _, g in labelled})}")
    return [i for i, _ in labelled], [g for _, g in labelled]


def fit_psm(run: RunModel, data: DataFile, data_path: Any) -> TrainedPSM:
    indices, groups = group_examples(data, data_path)
    layer = run.model.get_input_embeddings()
    embeddings, masks = [], []
    for index in indices:
        encoded = run.tokenizer(str(data.fields["X"][index]), truncation=True, max_length=run.config.max_seq_length,
                                return_tensors="pt", return_offsets_mapping=True)
        masks.append(real_tokens(encoded.pop("offset_mapping")[0].tolist()))
        with torch.no_grad():
            embeddings.append(layer(encoded["input_ids"].to(run.device))[0].double().cpu())
    return train_psm(mean_embeddings(embeddings, masks), groups)


def example_sensitivity(run: RunModel, text: str, relevance_of: Relevance) -> tuple[float, np.ndarray, int]:
    """P(x) of one text, the class probabilities, and how many of its tokens the PSM gives relevance. One text
    at a time: no padding, so decoder classifiers read their real last token."""
    encoded = run.tokenizer(text, truncation=True, max_length=run.config.max_seq_length, return_tensors="pt",
                            return_offsets_mapping=True)
    offsets = [tuple(map(int, pair)) for pair in encoded.pop("offset_mapping")[0].tolist()]
    input_ids = encoded["input_ids"].to(run.device)
    mask = encoded["attention_mask"].to(run.device)
    run.model.eval()
    embeddings = run.model.get_input_embeddings()(input_ids)
    relevance = relevance_of(text, offsets, embeddings[0])
    protected = int((relevance.reshape(len(offsets), -1).sum(axis=1) > 0).sum())

    def probabilities_of(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(run.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits.float(), -1)

    if protected == 0:  # P = 0 by definition; the probabilities still go into the CSV
        with torch.no_grad():
            return 0.0, probabilities_of(embeddings, mask)[0].double().cpu().numpy(), 0
    abs_jacobian, probabilities = abs_embedding_jacobian(probabilities_of, embeddings, mask)
    return accumulated_sensitivity(abs_jacobian, relevance), probabilities, protected


def check_fast_tokenizer(run: RunModel) -> None:
    """The PSMs map words to tokens by character offsets, and the gradient is taken at the word embeddings: a
    slow tokenizer or a model without an input embedding layer cannot be measured."""
    try:
        embeddings = run.model.get_input_embeddings()
    except NotImplementedError:
        embeddings = None
    if not isinstance(embeddings, torch.nn.Module):
        raise UserError(f"the run's model ({type(run.model).__name__}) has no input embedding layer; "
                        "--metric prediction-sensitivity differentiates with respect to the word embeddings")
    if not getattr(run.tokenizer, "is_fast", False):
        raise UserError(f"the run's tokenizer ({type(run.tokenizer).__name__}) gives no character offsets; "
                        "--metric prediction-sensitivity needs a fast (Rust) tokenizer")


def _csv(rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SENSITIVITY_COLUMNS)
    writer.writerows(rows)
    return out.getvalue()


def format_sensitivity(report: dict[str, Any]) -> str:
    def line(name: str, stats: dict[str, Any]) -> str:
        mean = "-" if stats["mean"] is None else f"{stats['mean']:.6g}"
        std = "-" if stats["std"] is None else f"{stats['std']:.6g}"
        return f"{name:28s} {stats['n']:8d} {mean:>12s} {std:>12s}"

    if report["psm"] == "trained":
        psm = (f"PSM trained on the groups {', '.join(report['psm_groups'])} of {report['psm_train_examples']} "
               f"training examples, training accuracy {report['psm_train_accuracy']:.4f}")
    else:
        psm = f"PSM: word list {report['pairs']}"
    header = f"{'examples':28s} {'n':>8s} {'mean':>12s} {'std':>12s}"
    return "\n".join([f"accumulated prediction sensitivity ({psm}; classes weighted uniformly)", header,
                      "-" * len(header), line("all test examples", report["all"]),
                      line("with PSM-relevant tokens", report["affected"])])

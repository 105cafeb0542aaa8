"""Features cost what the data has, not what --max-seq-length allows; impossible lengths and caches that
cannot fit are one line, exit 2, before any tokenizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fednlp.config import RunConfig
from fednlp.data.datafile import DataFile
from fednlp.tasks.feature_cache import cache_path, load_or_build_features
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.errors import UserError
from fednlp.tasks.models import load_tokenizer
from fednlp.tasks.registry import resolve_task


def _slice(data: DataFile, n: int) -> DataFile:
    """The first 2n examples of a data file, as a data file of n train and n test examples."""
    keep = sorted(data.train_index_list + data.test_index_list)[: 2 * n]
    fields = {k: [v[i] for i in keep] for k, v in data.fields.items()}
    return DataFile(data.task_type, fields, list(range(n)), list(range(n, 2 * n)), dict(data.label_vocab),
                    dict(data.attributes))


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, DataFile]:
    """Real slices: SST-2 (short sentences), CoNLL-2003, SQuAD v1.1 dev, Gigaword headlines."""
    read = lambda name, source: get_reader(name).read(shared_data / source, ReaderOptions())  # noqa: E731
    return {"classification": _slice(read("sst2", "sst2"), 200), "tagging": _slice(read("conll2003", "conll2003"), 100),
            "qa": _slice(read("squad", "squad_v1.1/dev-v1.1.json"), 40),
            "seq2seq": _slice(read("gigaword", "gigaword_sample"), 40)}


def _features(task_name: str, data: DataFile, **config):
    task_cls = resolve_task(task_name, data.task_type, "data.h5")
    return task_cls(data, load_tokenizer("tiny-bert"), RunConfig(data="data.h5", **config)).build_features()


@pytest.mark.parametrize("task_name", ["classification", "tagging", "qa", "seq2seq"])
def test_token_arrays_are_as_wide_as_the_longest_row_not_the_max_length(real, task_name) -> None:
    features = _features(task_name, real[task_name], max_seq_length=512, doc_stride=128)
    width = int(features.lengths.max())
    assert width < 512
    for name in features.sequence_arrays:
        if name in features.arrays:
            assert features.arrays[name].shape[1] == width, name


@pytest.mark.parametrize("task_name, lengths", [("classification", (128, 512)), ("tagging", (256, 512)),
                                               ("seq2seq", (512, 400))])
def test_a_larger_max_length_than_the_data_needs_gives_the_same_features(real, task_name, lengths) -> None:
    """Where every row fits both lengths, the features are identical: the max length costs nothing."""
    small, large = (_features(task_name, real[task_name], max_seq_length=n) for n in lengths)
    assert int(small.lengths.max()) < min(lengths)
    assert small.arrays.keys() == large.arrays.keys()
    for name in small.arrays:
        np.testing.assert_array_equal(small.arrays[name], large.arrays[name], err_msg=name)
    np.testing.assert_array_equal(small.lengths, large.lengths)


@pytest.mark.parametrize("task_name", ["classification", "tagging", "qa", "seq2seq"])
def test_narrowed_features_give_the_same_batches_in_fewer_bytes(real, task_name) -> None:
    """The cache stores integer arrays in the narrowest type that holds them; a batch is the same int64."""
    import torch

    from fednlp.tasks.feature_cache import narrowed

    features = _features(task_name, real[task_name], max_seq_length=128, doc_stride=64)
    narrow = narrowed(features)
    assert narrow.arrays["input_ids"].dtype == np.uint16  # tiny-bert's 30,522 ids
    assert sum(a.nbytes for a in narrow.arrays.values()) < sum(a.nbytes for a in features.arrays.values())
    for name in features.host_arrays:
        assert narrow.arrays[name].dtype == features.arrays[name].dtype, name
    rows = np.arange(0, features.n_rows, 3)
    wide, thin = features.batch(rows, torch.device("cpu")), narrow.batch(rows, torch.device("cpu"))
    assert wide.keys() == thin.keys()
    for name in wide:
        assert thin[name].dtype == wide[name].dtype and torch.equal(thin[name], wide[name]), name


def test_a_max_length_above_the_models_positions_is_refused(real) -> None:
    with pytest.raises(UserError, match=r"--max-seq-length 100000 exceeds what --model 'tiny-bert' can take: 512 "
                                        r"positions"):
        _features("classification", real["classification"], max_seq_length=100000)
    with pytest.raises(UserError, match=r"--max-target-length 4096 exceeds .* 512 positions"):
        _features("seq2seq", real["seq2seq"], max_target_length=4096)


def test_a_cache_that_cannot_fit_in_memory_is_refused_before_tokenizing(real, tmp_path, monkeypatch) -> None:
    from fednlp.data import capacity
    from fednlp.data.datafile import write_data_file

    path = tmp_path / "sst2.h5"
    write_data_file(real["classification"], path)
    task_cls = resolve_task("classification", "text_classification", str(path))
    task = task_cls(real["classification"], load_tokenizer("tiny-bert"), RunConfig(data=str(path), max_seq_length=64))
    estimate = task.estimated_feature_bytes()
    built = load_or_build_features(task, path)
    real_bytes = sum(built.arrays[n].nbytes for n in ("input_ids", "attention_mask", "token_type_ids"))
    assert real_bytes <= estimate  # an upper bound
    cache_path(task, path).unlink()
    monkeypatch.setattr(capacity, "available_memory_bytes", lambda: estimate)  # half of what building may take
    monkeypatch.setattr(task, "build_features", lambda: pytest.fail("tokenized although it cannot fit"))
    with pytest.raises(UserError, match=r"the tokenized features of .*sst2.h5 would need up to .* of memory while "
                                        r"being built, and .* is available; lower --max-seq-length"):
        load_or_build_features(task, path)
    assert not cache_path(task, path).exists()

"""`fednlp data validation-split`: tuning data carved from the training split, never touching the test split."""

from __future__ import annotations

import contextlib
import io

import pytest

from conftest import prepare_small
from fednlp.cli import main
from fednlp.data.datafile import read_data_file
from fednlp.data.validation import carve_validation
from fednlp.errors import UserError
from fednlp.files import file_sha256


def test_the_validation_file_holds_only_training_examples_split_by_the_seed(tmp_path):
    _, data_path, _ = prepare_small(tmp_path)
    out = tmp_path / "val.h5"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "validation-split", "--data", str(data_path), "--fraction", "0.25", "--seed", "3",
                     "--out", str(out)]) == 0
    source, val = read_data_file(data_path), read_data_file(out)
    record = val.attributes["validation_of"]
    assert record["data_sha256"] == file_sha256(str(data_path)) and record["seed"] == 3
    # the same examples in the same order (the features, and so the frozen-layer cache, are shared); the
    # validation rows are training rows of the source, the rest of its training rows train; no test row is listed
    assert val.fields["X"] == source.fields["X"] and val.fields["Y"] == source.fields["Y"]
    train = set(source.train_index_list)
    assert set(val.test_index_list) <= train and set(val.train_index_list) == train - set(val.test_index_list)
    assert not set(source.test_index_list) & {*val.train_index_list, *val.test_index_list}
    assert len(val.test_index_list) == round(0.25 * len(train))
    # the seed decides which rows are held out; the same seed the same rows
    again = carve_validation(source, 0.25, 3)
    other = carve_validation(source, 0.25, 4)
    assert list(again.test_index_list) == list(val.test_index_list)
    assert list(other.test_index_list) != list(val.test_index_list)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001, -0.5])
def test_an_impossible_fraction_is_refused(fraction, tmp_path):
    _, data_path, _ = prepare_small(tmp_path)
    with pytest.raises(UserError, match="--fraction"):
        carve_validation(read_data_file(data_path), fraction, 0)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["data", "validation-split", "--data", str(data_path), "--fraction", str(fraction),
                     "--out", str(tmp_path / "v.h5")])
    assert code == 2 and err.getvalue().count("\n") == 1 and "--fraction" in err.getvalue()
    assert not (tmp_path / "v.h5").exists()


def test_the_validation_file_reuses_its_sources_frozen_layer_cache(tmp_path, capsys):
    """Tuning on the carved file costs no second cache build: the examples and so the features are the same."""
    _, data_path, part = prepare_small(tmp_path)
    val, val_part = tmp_path / "val.h5", tmp_path / "val_p.h5"
    assert main(["data", "validation-split", "--data", str(data_path), "--fraction", "0.25", "--out", str(val)]) == 0
    assert main(["partition", "--data", str(val), "--out", str(val_part), "--method", "uniform", "--clients", "2"]) == 0
    common = ["--model", "tiny-bert", "--freeze-layers", "1", "--cache-frozen", "--rounds", "1", "--clients-per-round",
              "2", "--local-steps", "1", "--batch-size", "4", "--max-seq-length", "16", "--quiet"]
    assert main(["train", "--data", str(data_path), "--partition", str(part), "--method", "uniform_clients=4",
                 *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--data", str(val), "--partition", str(val_part), "--method", "uniform_clients=2",
                 *common, "--out", str(tmp_path / "b")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("frozen layers:")]
    assert "built in" in lines[0] and "reused" in lines[1], lines
    assert len(list(tmp_path.glob(".fednlp_cache/*.frozen1-*.npy"))) == 1

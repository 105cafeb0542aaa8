"""No command destroys a file it was not asked to write (issue 29, "data loss"): every output option of every
subcommand is walked through the cases of fednlp/files.py `check_output`:

- the output is one of the command's inputs (the path itself, or a symlink to it): exit 2, one line, the
  input byte-identical afterwards;
- the output is an existing file of another kind (a data file where a partition file or a report is written,
  a partition file where a data file is, a raw CSV where a data file is, a file where a directory is): the same;
- the output is an existing file of its own kind: the documented rule (docs/errors.md) — a data file is
  replaced, a partition file gains a group, a report replaces any file that is not HDF5, --plots adds to an
  existing directory; `canaries insert` keeps its stricter rule and refuses any existing --out-data.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from conftest import prepare_small
from fednlp.cli import main
from fednlp.errors import UserError
from fednlp.files import check_output, file_kind

METHOD = "uniform_clients=4"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A raw CSV, its data file and partition file, a text file, an empty directory: the inputs, and the
    existing files of each kind an output may name."""
    root = tmp_path_factory.mktemp("outputs")
    csv, data, part = prepare_small(root)
    (root / "notes.txt").write_text("my notes\n")
    (root / "runs").mkdir()
    return {"csv": csv, "data": data, "part": part, "text": root / "notes.txt", "runs": root / "runs",
            "run": root / "runs" / "no_run_here"}


PREPARE = ["data", "prepare", "--dataset", "csv", "--source", "{csv}", "--text-column", "text", "--label-column",
           "label", "--test-fraction", "0.2", "--out", "{out}"]
PARTITION = ["partition", "--data", "{data}", "--out", "{out}", "--method", "uniform", "--clients", "2"]
STATS = ["partition-stats", "--data", "{data}", "--partition", "{part}"]
FAIRNESS = ["fairness", "{run}", "--data", "{data}", "--out", "{out}"]
BOARD = ["leaderboard", "{runs}", "--chance-data", "{data}"]
CANARIES = ["canaries", "insert", "--data", "{data}", "--partition", "{part}", "--method", METHOD, "--template",
            "my pin is {{secret}}", "--secret", "digits:4", "--label", "pos", "--count", "1", "--repeats", "1"]

#: (id, argv with {out} where the output goes, the inputs it must never write, existing files of another kind:
#: data_copy and part_copy are copies of the data and partition files, not inputs of the command)
REFUSED = [
    ("prepare_out", PREPARE, ["csv"], ["part_copy", "text"]),
    ("partition_out", PARTITION, ["data"], ["data_copy", "text"]),
    ("validation_split_out", ["data", "validation-split", "--data", "{data}", "--fraction", "0.25", "--out", "{out}"],
     ["data"], ["part_copy", "text"]),
    ("stats_plot", [*STATS, "--plot", "{out}"], ["data", "part"], ["data_copy", "part_copy"]),
    ("stats_sizes_plot", [*STATS, "--sizes-plot", "{out}"], ["data", "part"], ["data_copy", "part_copy"]),
    ("fairness_out", FAIRNESS, ["data"], ["data_copy", "part_copy"]),
    ("leaderboard_out", [*BOARD, "--out", "{out}"], ["data"], ["data_copy", "part_copy", "runs"]),
    ("leaderboard_plots", [*BOARD, "--plots", "{out}"], ["data"], ["data_copy", "text"]),
    ("canaries_out_data", [*CANARIES, "--out-data", "{out}", "--out-partition", "{fresh}"], ["data", "part"],
     ["part_copy", "text"]),
    ("canaries_out_partition", [*CANARIES, "--out-data", "{fresh}", "--out-partition", "{out}"], ["data", "part"],
     ["data_copy", "text"]),
]


def run(argv: list[str], paths: dict[str, Path], out: Path, tmp_path: Path) -> tuple[int, str]:
    filled = [a.format(**{k: str(v) for k, v in paths.items()}, out=str(out), fresh=str(tmp_path / "fresh.h5"))
              for a in argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(filled)
    return code, err.getvalue()


def snapshot(paths: dict[str, Path]) -> dict[str, bytes | list[str]]:
    return {name: (sorted(p.name for p in path.iterdir()) if path.is_dir() else path.read_bytes())
            for name, path in paths.items() if path.exists()}


def assert_refused(code: int, err: str, flag: str, words: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("fednlp: error: "), err
    assert flag in err and words in err, err


def _flag(argv: list[str]) -> str:
    return argv[argv.index("{out}") - 1]


@pytest.mark.parametrize("case_id, argv, inputs, others", REFUSED, ids=[c[0] for c in REFUSED])
def test_an_output_naming_an_input_is_refused_and_the_input_kept(case_id, argv, inputs, others, files, tmp_path):
    for name in inputs:
        for out in (files[name], tmp_path / f"link_to_{name}"):
            if out.name.startswith("link_to_"):
                out.symlink_to(files[name])
            before = snapshot(files)
            code, err = run(argv, files, out, tmp_path)
            assert_refused(code, err, _flag(argv), "is the same file as")
            assert snapshot(files) == before
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
                p.name for p in tmp_path.iterdir() if p.name.startswith("link_to_"))  # nothing written


@pytest.mark.parametrize("case_id, argv, inputs, others", REFUSED, ids=[c[0] for c in REFUSED])
def test_an_output_naming_a_file_of_another_kind_is_refused_and_kept(case_id, argv, inputs, others, files,
                                                                     tmp_path):
    copies = {"data_copy": tmp_path / "other_data.h5", "part_copy": tmp_path / "other_part.h5"}
    shutil.copy(files["data"], copies["data_copy"])
    shutil.copy(files["part"], copies["part_copy"])
    for name in others:
        out = copies.get(name, files.get(name))
        before = snapshot({**files, **copies})
        code, err = run(argv, files, out, tmp_path)
        assert_refused(code, err, _flag(argv), "is an existing")
        assert snapshot({**files, **copies}) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other_data.h5", "other_part.h5"]


def test_same_kind_data_file_is_replaced_by_prepare(files, tmp_path):
    out = tmp_path / "again.h5"
    shutil.copy(files["data"], out)
    code, err = run(PREPARE + ["--test-fraction", "0.5"], files, out, tmp_path)
    assert code == 0, err
    assert out.read_bytes() != files["data"].read_bytes() and file_kind(out) == "data"


def test_same_kind_partition_file_gains_a_group(files, tmp_path):
    out = tmp_path / "p.h5"
    shutil.copy(files["part"], out)
    code, err = run(PARTITION, files, out, tmp_path)
    assert code == 0, err
    from fednlp.data_partition.partition_file import group_names

    assert sorted(group_names(out)) == sorted([METHOD, "uniform_clients=2"])


def test_same_kind_report_replaces_a_file_that_is_not_hdf5(files, tmp_path):
    out = tmp_path / "heat.png"
    out.write_text("an old figure\n")
    code, err = run([*STATS, "--plot", "{out}"], files, out, tmp_path)
    assert code == 0, err
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("flag, make", [("--out", lambda p: p.write_text("old table")), ("--plots", Path.mkdir)])
def test_same_kind_for_the_leaderboard_passes_the_output_check(flag, make, files, tmp_path):
    """An old table (any file that is not HDF5) or an existing figures directory: not refused for the output
    (the runs directory here holds no run, which is what the command then says)."""
    make(tmp_path / "old")
    code, err = run([*BOARD, flag, "{out}"], files, tmp_path / "old", tmp_path)
    assert_refused(code, err, "", "no result.json found")


def test_same_kind_for_fairness_and_canaries_passes_the_output_check(files, tmp_path):
    """A fairness report over an old one, canaries into an existing partition file: not refused for the output
    (fairness then needs a trained run, which check_output does not look at); canaries' --out-data keeps its
    own stricter rule: any existing path is refused."""
    old = tmp_path / "fairness.json"
    old.write_text("{}")
    check_output(old, {"--data": files["data"]}, "report")
    part = tmp_path / "p.h5"  # holds another group than the one canaries adds
    assert run(PARTITION, files, part, tmp_path)[0] == 0
    code, err = run([*CANARIES, "--out-data", "{fresh}", "--out-partition", "{out}"], files, part, tmp_path)
    assert code == 0, err
    shutil.copy(files["data"], tmp_path / "d.h5")
    code, err = run([*CANARIES, "--out-data", "{out}", "--out-partition", str(tmp_path / "q.h5")], files,
                    tmp_path / "d.h5", tmp_path)
    assert_refused(code, err, "--out-data", "already exists")


def test_file_kind_tells_data_partition_other_hdf5_and_text(files, tmp_path):
    import h5py

    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = [1, 2]
    (tmp_path / "cut.h5").write_bytes(files["data"].read_bytes()[:2000])
    assert [file_kind(p) for p in (files["data"], files["part"], tmp_path / "plain.h5", files["text"],
                                   tmp_path / "cut.h5", files["runs"], tmp_path / "none")] == [
        "data", "partition", "hdf5", "other", "other", "directory", None]
    with pytest.raises(UserError, match="is an existing HDF5 file that is neither"):
        check_output(tmp_path / "plain.h5", {}, "report")

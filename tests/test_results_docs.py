"""The result tables in docs/*.md are the leaderboard of their committed records (fednlp/results/docs_tables.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fednlp.cli import main
from fednlp.errors import UserError
from fednlp.results.docs_tables import BLOCK, FINDINGS, regenerated, update_docs
from test_leaderboard import make_run

ROOT = Path(__file__).resolve().parents[1]


def test_docs_results_tables_are_rebuilt_from_the_records_without_a_difference():
    doc = ROOT / "docs" / "results.md"
    text, new, changed = regenerated(doc)
    assert not changed, (f"docs/results.md: the tables of {changed} differ from their records; run "
                         "`fednlp leaderboard --update-docs docs/results.md`")
    assert new == text
    folders = [m["runs"] for m in BLOCK.finditer(text)]
    assert folders == ["results/study_classification/tuning", "results/study_classification/runs",
                       "results/study_tagging/tuning", "results/study_tagging/runs",
                       "results/classification/runs", "results/tagging/runs", "results/qa/runs",
                       "results/seq2seq/runs"]
    assert [m["runs"] for m in FINDINGS.finditer(text)] == ["results/study_classification/findings.yaml",
                                                           "results/study_tagging/findings.yaml"]
    for folder in folders:  # every documented folder holds records, and its chance levels
        assert list((doc.parent / folder).glob("*/result.json"))
        assert (doc.parent / folder / "chance.json").is_file()


def test_docs_fairness_study_tables_are_rebuilt_from_the_records_without_a_difference():
    from fednlp.fairness.study_table import MARKERS

    doc = ROOT / "docs" / "fairness.md"
    text, new, changed = regenerated(doc)
    assert not changed and new == text, (f"docs/fairness.md: the tables of {changed} differ from their records; "
                                         "run `fednlp leaderboard --update-docs docs/fairness.md`")
    assert [m["runs"] for m in MARKERS.finditer(text)] == ["results/study_fairness/runs"]
    assert len(list((doc.parent / "results/study_fairness/runs").glob("*/ceat.json"))) >= 5


def test_docs_fairness_mitigation_tables_are_rebuilt_from_the_records_without_a_difference():
    doc = ROOT / "docs" / "fairness-mitigation.md"
    text, new, changed = regenerated(doc)
    assert not changed and new == text, (f"docs/fairness-mitigation.md: the tables of {changed} differ from their "
                                         "records; run `fednlp leaderboard --update-docs docs/fairness-mitigation.md`")
    assert [m["runs"] for m in BLOCK.finditer(text)] == ["results/study_lm_augment/runs",
                                                         "results/study_distill/runs/students"]
    assert len(list((doc.parent / "results/study_lm_augment/runs").glob("*/disparity.json"))) == 6
    distill = doc.parent / "results/study_distill"  # 4 settings x 3 seeds, each student fine-tuned downstream
    assert len(list(distill.glob("runs/students/*/disparity.json"))) == 12
    assert len(list(distill.glob("runs/downstream/*/prediction_sensitivity.json"))) == 12
    assert "<!-- findings: results/study_distill/findings.yaml -->" in text


def page(tmp_path: Path, body: str) -> Path:
    doc = tmp_path / "docs" / "page.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"# Results\n\nintro\n\n<!-- table: ../runs -->\n{body}<!-- end table -->\n\nafter\n")
    return doc


def test_update_docs_rewrites_only_the_blocks_and_check_fails_on_drift(tmp_path, capsys):
    make_run(tmp_path / "runs", "central", 0.8, algorithm="centralized")
    make_run(tmp_path / "runs", "fedavg", 0.7)
    doc = page(tmp_path, "| stale | table |\n")
    assert main(["leaderboard", "--update-docs", str(doc), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "../runs" in err and "--update-docs" in err
    assert "| stale |" in doc.read_text()  # --check writes nothing
    assert main(["leaderboard", "--update-docs", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Results\n\nintro\n\n<!-- table: ../runs -->\n| row | task |")
    assert text.endswith("<!-- end table -->\n\nafter\n") and "| stale |" not in text
    assert "| 2 | text_classification | 20news | minilm |" in text
    assert main(["leaderboard", "--update-docs", str(doc), "--check"]) == 0
    make_run(tmp_path / "runs", "fedprox", 0.75, algorithm="fedprox")  # a new record: the table is stale
    with pytest.raises(UserError, match="differ from their records"):
        update_docs(doc, check=True)


def test_a_marker_without_its_end_and_a_missing_page_are_one_line_errors(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("<!-- table: runs -->\n| x |\n")
    with pytest.raises(UserError, match="no '<!-- end table -->'"):
        update_docs(doc)
    with pytest.raises(UserError, match="no such file"):
        update_docs(tmp_path / "missing.md")

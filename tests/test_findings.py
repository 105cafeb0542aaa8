"""The findings table (fednlp/results/findings.py): each question's verdict computed from its records."""

from __future__ import annotations

from pathlib import Path

import pytest

from fednlp.errors import UserError
from fednlp.results.docs_tables import regenerated, update_docs
from fednlp.results.findings import findings_table, read_questions
from test_leaderboard import make_run

QUESTIONS = """\
- {question: clear win, source: paper A, a: runs/avg-s*, b: runs/opt-s*, expect: b}
- {question: clear loss, source: paper B, a: runs/opt-s*, b: runs/avg-s*, expect: b}
- {question: inside the spread, source: paper C, a: runs/avg-s*, b: runs/noisy-s*, expect: b}
- {question: one seed, source: paper D, a: runs/avg-s*, b: runs/single-s*, expect: b}
- {question: missing, source: paper E, a: runs/avg-s*, b: runs/never-s*, expect: b}
"""


def study(tmp_path: Path) -> Path:
    runs = tmp_path / "study" / "runs"
    for seed, (avg, opt, noisy) in enumerate([(0.50, 0.70, 0.40), (0.52, 0.71, 0.65), (0.51, 0.72, 0.55)]):
        make_run(runs, f"avg-s{seed}", avg, seed=seed)
        make_run(runs, f"opt-s{seed}", opt, algorithm="fedopt", seed=seed)
        make_run(runs, f"noisy-s{seed}", noisy, algorithm="fedprox", seed=seed)
    make_run(runs, "single-s0", 0.9, algorithm="fedyogi")
    (tmp_path / "study" / "findings.yaml").write_text(QUESTIONS)
    return tmp_path / "study" / "findings.yaml"


def test_each_verdict_follows_the_docs_rule(tmp_path):
    rows = [line.split(" | ") for line in findings_table(study(tmp_path)).splitlines()[2:]]
    verdicts = {row[0].strip("| "): row[-1].strip("| ") for row in rows}
    assert verdicts == {"clear win": "reproduced", "clear loss": "not reproduced: the opposite",
                        "inside the spread": "not reproduced: within the spread",
                        "one seed": "not testable: one seed", "missing": "not run"}
    win = next(row for row in rows if row[0].strip("| ") == "clear win")
    assert win[2] == "0.510 ± 0.010 (3)" and win[3] == "0.710 ± 0.010 (3)" and win[4].startswith("+0.200 [")


def test_the_page_rebuilds_the_findings_and_check_fails_on_a_hand_edit(tmp_path):
    spec = study(tmp_path)
    doc = tmp_path / "page.md"
    doc.write_text("# Study\n\n<!-- findings: study/findings.yaml -->\n<!-- end findings -->\n")
    assert update_docs(doc) == ["study/findings.yaml"]
    assert "| clear win | paper A |" in doc.read_text() and update_docs(doc, check=True) == []
    doc.write_text(doc.read_text().replace("| reproduced |", "| not reproduced: the opposite |", 1))
    with pytest.raises(UserError, match="study/findings.yaml"):
        update_docs(doc, check=True)
    assert regenerated(doc)[2] == ["study/findings.yaml"] and spec.is_file()


@pytest.mark.parametrize("text", ["- {question: q, a: x, b: y, expect: b}\n",
                                  "- {question: q, source: s, a: x, b: y, expect: maybe}\n", "question: q\n",
                                  "- {question: q, source: s, a: x, b: y, expect: b, vary: model}\n"])
def test_a_malformed_questions_file_is_one_line(tmp_path, text):
    (tmp_path / "f.yaml").write_text(text)
    with pytest.raises(UserError, match="findings file"):
        read_questions(tmp_path / "f.yaml")


def test_a_question_can_ask_about_a_result_statistic_instead_of_the_metric(tmp_path):
    runs = tmp_path / "study" / "runs"
    for seed in range(3):  # the mean is equal; the worst clients' mean is far apart
        make_run(runs, f"avg-s{seed}", 0.5, seed=seed, clients={"worst10_mean": 0.10 + 0.01 * seed})
        make_run(runs, f"q-s{seed}", 0.5, algorithm="qfedavg", seed=seed, clients={"worst10_mean": 0.30 + 0.01 * seed})
    (tmp_path / "study" / "f.yaml").write_text(
        "- {question: worst clients, source: q-FFL, a: runs/avg-s*, b: runs/q-s*, expect: b, "
        "stat: clients_worst10_mean}\n")
    row = findings_table(tmp_path / "study" / "f.yaml").splitlines()[2]
    assert row.startswith("| worst clients (clients_worst10_mean) |") and row.endswith("| reproduced |")
    assert "0.110 ± 0.010 (3)" in row and "0.310 ± 0.010 (3)" in row


def test_a_statistic_where_less_is_better_reads_the_other_way(tmp_path):
    runs = tmp_path / "study" / "runs"
    for seed in range(3):  # B's disparity is lower: B is better on a statistic where less is better
        make_run(runs, f"plain-s{seed}", 0.5, seed=seed, disparity={"total_variation_mean": 0.30 + 0.01 * seed})
        make_run(runs, f"aug-s{seed}", 0.5, seed=seed, config={"augment": "counterfactual"},
                 disparity={"total_variation_mean": 0.10 + 0.01 * seed})
    (tmp_path / "study" / "f.yaml").write_text(
        "- {question: less bias, source: s, a: runs/plain-s*, b: runs/aug-s*, expect: b, stat: disparity_tv_mean}\n"
        "- {question: more bias, source: s, a: runs/aug-s*, b: runs/plain-s*, expect: b, stat: disparity_tv_mean}\n")
    rows = findings_table(tmp_path / "study" / "f.yaml").splitlines()[2:]
    assert rows[0].endswith("| reproduced |") and rows[1].endswith("| not reproduced: the opposite |")


def test_a_question_names_the_settings_its_seeds_may_differ_in(tmp_path):
    runs = tmp_path / "study" / "runs"
    for seed in range(3):  # each seed fine-tunes its own student: the model differs with the seed
        make_run(runs, f"plain-s{seed}", 0.50 + 0.01 * seed, seed=seed, model=f"students/plain-s{seed}/model")
        make_run(runs, f"mitigated-s{seed}", 0.70 + 0.01 * seed, seed=seed, model=f"students/mit-s{seed}/model")
    question = "- {question: q, source: s, a: runs/plain-s*, b: runs/mitigated-s*, expect: b%s}\n"
    (tmp_path / "study" / "f.yaml").write_text(question % "")
    with pytest.raises(UserError, match="mixes settings: model"):
        findings_table(tmp_path / "study" / "f.yaml")
    (tmp_path / "study" / "f.yaml").write_text(question % ", vary: [model]")
    assert findings_table(tmp_path / "study" / "f.yaml").splitlines()[2].endswith("| reproduced |")


def test_small_means_keep_three_significant_digits():
    from fednlp.results.findings import decimals

    assert decimals(0.5, 0.05) == 3 and decimals(0.0, 0.7) == 3  # the tables' usual 3 decimals
    assert decimals(0.5, 0.002) == 5 and decimals(-0.0004, 0.3) == 6  # 0.00200, -0.000400

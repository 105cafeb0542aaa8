"""Result tables in the docs, regenerated from the committed records: `fednlp leaderboard --update-docs DOC`.

A table in a Markdown page sits between two markers naming the records it is built from (a folder of run
directories, relative to the page):

    <!-- table: results/classification/runs -->
    | row | task | ... |        <- `fednlp leaderboard results/classification/runs`, chance marks included
    <!-- end table -->

`update_docs` rewrites every such block from its records; `--check` only says which blocks differ (a test
runs it on docs/results.md, so a table edited by hand, or records changed without the table, fail it). A table
whose records were never kept is marked "no record" in the page instead, and is not between markers.
A study's findings table sits between `<!-- findings: FILE -->` and `<!-- end findings -->` markers and is
rebuilt the same way from its questions file (fednlp/results/findings.py), and the fairness study's tables
between `<!-- fairness study: RUNS -->` and `<!-- end fairness study -->` (fednlp/fairness/study_table.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fednlp.errors import UserError
from fednlp.files import atomic_write_text

BLOCK = re.compile(r"(<!-- table: (?P<runs>[^>]+?) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)
#: A study's findings table (fednlp/results/findings.py): its questions answered from the records.
FINDINGS = re.compile(r"(<!-- findings: (?P<runs>[^>]+?) -->\n)(?P<body>.*?)(<!-- end findings -->)", re.S)


def table_text(runs: Path, chance_data: list[str] | None = None) -> str:
    from fednlp.results.leaderboard import marked_rows, render

    return render(marked_rows(runs, chance_data), "markdown")


def regenerated(doc: str | os.PathLike, chance_data: list[str] | None = None) -> tuple[str, str, list[str]]:
    """(the page as it is, the page with every table rebuilt, the records folders whose tables changed)."""
    path = Path(doc)
    if not path.is_file():
        raise UserError(f"--update-docs {doc}: no such file")
    text = path.read_text(encoding="utf-8")
    changed: list[str] = []

    def rebuild(match: re.Match) -> str:
        runs = (path.parent / match["runs"].strip()).resolve()
        body = table_text(runs, chance_data)
        if body != match["body"]:
            changed.append(match["runs"].strip())
        return match.group(1) + body + match.group(4)

    def rebuild_findings(match: re.Match) -> str:
        from fednlp.results.findings import findings_table

        body = findings_table((path.parent / match["runs"].strip()).resolve())
        if body != match["body"]:
            changed.append(match["runs"].strip())
        return match.group(1) + body + match.group(4)

    from fednlp.fairness.study_table import rebuild as rebuild_fairness_study

    new = rebuild_fairness_study(path, FINDINGS.sub(rebuild_findings, BLOCK.sub(rebuild, text)), changed)
    if "<!-- table:" in text and not BLOCK.search(text):
        raise UserError(f"{doc}: a '<!-- table: RUNS -->' marker has no '<!-- end table -->' after it")
    return text, new, changed


def update_docs(doc: str | os.PathLike, check: bool = False, chance_data: list[str] | None = None) -> list[str]:
    """Rebuild the page's tables from their records (write it unless `check`); the folders whose tables
    changed. With `check`, a difference is an error naming them."""
    text, new, changed = regenerated(doc, chance_data)
    if check and changed:
        raise UserError(f"{doc}: the tables of {', '.join(changed)} differ from their records; run "
                        f"`fednlp leaderboard --update-docs {doc}`")
    if new != text and not check:
        atomic_write_text(doc, new)
    return changed

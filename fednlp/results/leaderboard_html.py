"""`fednlp leaderboard --format html`: one self-contained page, readable in a 1280 px browser window.

One section per task and metric, each with its own footer (a perplexity row never sits under "fractions in
[0, 1]"). Each section shows a compact table (COMPACT: the row's identity, the settings that tell rows apart
in one wrapped cell, value, spread, gap) and, one click away in a <details> element, the full table the
Markdown and CSV renderings hold, in a box that scrolls sideways rather than widening the page. Learning
curves follow, one figure per (task, dataset, model), shown at their own size (fednlp/results/plots.py).
No script, no external asset: the page is one file that opens anywhere.
"""

from __future__ import annotations

import html

from fednlp.results.leaderboard import (CHANCE_NOTE, Row, chance_columns, metric_note, repeats_note,
                                        setting_columns, setting_header, setting_text, table)

#: The compact table's columns; `settings` is every setting column of the section in one cell (name=value).
COMPACT = ("row", "dataset", "model", "partition_method", "algorithm", "settings", "value", "std", "runs",
           "baseline", "gap", "gap_pct", "best")
MAX_PAGE_WIDTH = 1280  # px: the browser window the page is made for

STYLE = f"""body{{font-family:sans-serif;font-size:14px;max-width:{MAX_PAGE_WIDTH - 40}px;margin:0 auto;padding:0 8px}}
table{{border-collapse:collapse;margin:4px 0}}
th,td{{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}}
td.wrap{{overflow-wrap:break-word;max-width:420px}}
.scroll{{overflow-x:auto;max-width:100%}}
details{{margin:4px 0 8px}} summary{{cursor:pointer;color:#1a0dab}}
p.note{{font-size:13px;color:#333;max-width:100%}}
img{{max-width:100%;height:auto}}"""


def sections(rows: list[Row]) -> list[list[Row]]:
    """Rows grouped by (task, metric, direction), in table order: each section has one scale and one footer."""
    grouped: dict[tuple, list[Row]] = {}
    for row in rows:
        grouped.setdefault((row.task, row.metric, row.greater_is_better), []).append(row)
    return list(grouped.values())


def compact_columns(rows: list[Row]) -> list[str]:
    """COMPACT, with `settings` only when some setting tells rows apart and at_chance when rows have a chance level."""
    columns = [c for c in COMPACT if c != "settings" or setting_columns(rows)]
    return columns + (["at_chance"] if chance_columns(rows) else [])


def compact_cells(row: Row, full: dict[str, str], settings: list[str], columns: list[str]) -> list[str]:
    """The compact table's cells of one row, from its full-table cells (`full`: column -> text)."""
    shown = " ".join(f"{setting_header(k)}={setting_text(row.settings[k])}" for k in settings
                     if row.settings.get(k) is not None)
    return [shown if column == "settings" else full[column] for column in columns]


def _html_table(header: list[str], body: list[list[str]], wrap: set[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    def cell(column: str, text: str) -> str:
        return f'<td class="wrap">{html.escape(text)}</td>' if column in wrap else f"<td>{html.escape(text)}</td>"

    lines = ["<tr>" + "".join(cell(h, c) for h, c in zip(header, cells)) + "</tr>" for cells in body]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(lines) + "\n</tbody>\n</table>"


def section_html(rows: list[Row]) -> str:
    """One task and metric: heading, compact table, the full table one click away, the footer of its metric."""
    first = rows[0]
    header, body = table(rows, human=True)
    settings = setting_columns(rows)
    compact_header = compact_columns(rows)
    compact_body = [compact_cells(row, dict(zip(header, cells)), settings, compact_header)
                    for row, cells in zip(rows, body)]
    direction = "higher is better" if first.greater_is_better else "lower is better"
    notes = metric_note(rows, first.metric, first.greater_is_better) + (
        CHANCE_NOTE if chance_columns(rows) else "") + repeats_note(rows)
    footer = "\n".join(f'<p class="note">{html.escape(n.strip())}</p>' for n in notes.split("\n\n") if n.strip())
    return f"""<section>
<h2>{html.escape(first.task)}: {html.escape(first.metric)} ({direction})</h2>
{_html_table(compact_header, compact_body, {"settings"})}
<details><summary>All {len(header)} columns</summary>
<div class="scroll">
{_html_table(header, body, set())}
</div>
</details>
{footer}
</section>"""


def _curve_blocks(rows: list[Row]) -> list[list[Row]]:
    """Rows grouped by (task, dataset, model), in table order: one figure each."""
    blocks: dict[tuple, list[Row]] = {}
    for row in rows:
        blocks.setdefault((row.task, row.dataset, row.model), []).append(row)
    return list(blocks.values())


def html_page(rows: list[Row]) -> str:
    """The whole page: a section per task and metric, then the learning curves."""
    from fednlp.results.plots import DPI, legend_pixels, learning_curves_png

    figures = []
    for block in _curve_blocks(rows):
        title = f"{block[0].task} / {block[0].dataset} / {block[0].model}"
        png = learning_curves_png(block, title)
        if png is not None:
            # data-legend-px: the legend's text height at the image's own size (scripts/leaderboard_screenshot.py
            # checks that the browser shows it unscaled, so the text stays that size).
            figures.append(f"<h3>{html.escape(title)}</h3>\n<img alt=\"{html.escape(title)}\" "
                           f'data-legend-px="{legend_pixels():.1f}" data-dpi="{DPI}" '
                           f'src="data:image/png;base64,{png}">')
    body = "\n".join(section_html(s) for s in sections(rows))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>fednlp leaderboard</title>
<style>{STYLE}</style></head>
<body><h1>fednlp leaderboard</h1>
{body}
<h2>Learning curves</h2>
{chr(10).join(figures) or "<p>No metrics.jsonl found.</p>"}
</body></html>
"""

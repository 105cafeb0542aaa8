"""Render an HTML leaderboard in a real headless browser at 1280 px wide, check that it reads there, save a PNG.

    fednlp leaderboard docs/results/classification/runs --format html --out /tmp/board.html
    /tmp/pw-venv/bin/python scripts/leaderboard_screenshot.py /tmp/board.html --png docs/leaderboard.png

Playwright is not a fednlp dependency: install it in a venv of its own (`python -m venv /tmp/pw-venv &&
/tmp/pw-venv/bin/pip install playwright==1.65.2`) and give it a Chromium: Debian's `chromium-headless-shell`
(apt-get install chromium-headless-shell) is found on PATH, or pass --browser, or run `playwright install chromium`.

What is checked, in the browser's own layout (exit 1 naming each failure):
- the page is no wider than the window, with every <details> closed and with all of them opened (the full
  tables scroll inside their box);
- each section's compact table has at most MAX_COLUMNS columns and a footer (p.note) of its own;
- each figure is shown at its own size or larger (never scaled down), inside the window, so its legend text
  keeps the height the page states (data-legend-px, from fednlp/results/plots.py), at least MIN_LEGEND_PX.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

MAX_COLUMNS = 15
MIN_LEGEND_PX = 11.0
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")

MEASURE = """() => {
  const sections = [...document.querySelectorAll('section')].map(s => ({
    title: s.querySelector('h2').textContent,
    columns: s.querySelector('table').querySelectorAll('thead th').length,
    footers: s.querySelectorAll(':scope > p.note').length,
  }));
  const images = [...document.querySelectorAll('img')].map(img => {
    const box = img.getBoundingClientRect();
    return {alt: img.alt, natural: img.naturalWidth, shown: box.width, right: box.right,
            legendPx: parseFloat(img.dataset.legendPx || 'NaN')};
  });
  return {width: document.documentElement.scrollWidth, sections, images};
}"""


def measure(page) -> dict:
    return page.evaluate(MEASURE)


def problems(closed: dict, opened_width: int, width: int) -> list[str]:
    """What makes the page unreadable at `width` px, from the browser's measurements."""
    found = []
    if closed["width"] > width:
        found.append(f"the page is {closed['width']} px wide, more than the {width} px window")
    if opened_width > width:
        found.append(f"with the full tables opened the page is {opened_width} px wide, more than {width} px")
    if not closed["sections"]:
        found.append("no <section>: not a fednlp leaderboard page")
    for section in closed["sections"]:
        if section["columns"] > MAX_COLUMNS:
            found.append(f"section '{section['title']}': {section['columns']} columns by default, more than "
                         f"{MAX_COLUMNS}")
        if section["footers"] < 1:
            found.append(f"section '{section['title']}': no footer of its own")
    for image in closed["images"]:
        scale = image["shown"] / image["natural"] if image["natural"] else 0.0
        legend = image["legendPx"] * scale
        if not legend >= MIN_LEGEND_PX:
            found.append(f"figure '{image['alt']}': legend text {legend:.1f} px high as shown (image scaled "
                         f"{scale:.2f}), less than {MIN_LEGEND_PX} px")
        if image["right"] > width:
            found.append(f"figure '{image['alt']}': its right edge is at {image['right']:.0f} px, outside the window")
    return found


def find_browser(given: str | None) -> str | None:
    """The Chromium to drive: --browser, else the first of BROWSERS on PATH, else None (Playwright's own)."""
    if given:
        return given
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the leaderboard page (fednlp leaderboard --format html --out ...)")
    parser.add_argument("--png", type=Path, required=True, help="where the screenshot (the whole page) goes")
    parser.add_argument("--width", type=int, default=1280, help="the window's width in px (default 1280)")
    parser.add_argument("--browser", help="a Chromium executable (default: chromium-headless-shell on PATH)")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"leaderboard_screenshot: {args.html}: no such file; expected an HTML leaderboard", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_browser(args.browser), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(args.html.resolve().as_uri())
            page.wait_for_load_state("load")
            closed = measure(page)
            args.png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.png), full_page=True)
            page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
            opened_width = measure(page)["width"]
        finally:
            browser.close()
    found = problems(closed, opened_width, args.width)
    for section in closed["sections"]:
        print(f"{section['title']}: {section['columns']} columns, {section['footers']} footer(s)")
    for image in closed["images"]:
        print(f"figure {image['alt']}: {image['natural']} px, shown at {image['shown']:.0f} px, legend "
              f"{image['legendPx'] * image['shown'] / max(image['natural'], 1):.1f} px")
    print(f"page width {closed['width']} px (full tables opened: {opened_width} px); screenshot {args.png}")
    for problem in found:
        print(f"leaderboard_screenshot: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

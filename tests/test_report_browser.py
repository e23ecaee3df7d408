"""The report in a real browser: headless Chromium opens report.html with no console errors and no broken images.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` package, which
drives that system browser: ``playwright install`` is never needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcrisk.report.page import CONDITIONAL, SECTIONS, write_report
from mcrisk.workflows.analyze import analyze_run
from mcrisk.workflows.run import run_study

from .conftest import small_study

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# The elements whose content is wider than their box (a table clipped in its scroll box, a cell's
# text past its edge), with what they hold.
OVERFLOWING = """() => Array.from(document.querySelectorAll('body *'))
  .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.tagName}.${e.className} ${e.scrollWidth} > ${e.clientWidth}: ${(e.textContent || '').slice(0, 80)}`)"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_the_report_opens_in_chromium_without_errors_or_broken_images(browser, tmp_path):
    out = run_study(small_study(scenarios=1500), out=tmp_path / "run").folder
    analyze_run(out, n_boot=10)
    report = write_report(out)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(report.as_uri(), wait_until="load")
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert errors == []
    assert requests == []  # self-contained: nothing fetched from a network
    assert len(sizes) >= 5 and all(ok and w > 0 and h > 0 for ok, w, h in sizes), sizes
    # (a study without debt, tax or portfolio row: no financing or portfolio section)
    shown = [sid for sid, _ in SECTIONS if sid not in CONDITIONAL]
    assert page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)") == shown
    # Fits a laptop screen: no horizontal scroll of the page, nor of any table in its box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.evaluate(OVERFLOWING) == []
    shot = tmp_path / "report.png"  # pytest keeps the last runs' tmp folders: look at it there
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    # Printing to PDF works (A4, the print stylesheet).
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4")
    assert pdf[:5] == b"%PDF-" and errors == []
    page.close()

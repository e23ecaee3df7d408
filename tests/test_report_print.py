"""The report on paper and on a wide screen: `mcrisk report --pdf` prints it with Chromium to A4 and
Letter with every column header of every table in the PDF's text (pdftotext), and no element of
the page is wider than its box (a clipped table, a scroll box) at 1400 px or at either paper's
width in print media. A small study with stresses, debt, tax, the portfolio row and the Greeks
(every section) by default; the default study itself with -m slow.

Needs Debian's ``chromium``, the ``playwright`` package and ``pdftotext`` (poppler-utils); each
test that lacks one is skipped, saying which.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.report import sections
from mcrisk.report.data import load_run
from mcrisk.report.page import SECTIONS
from mcrisk.workflows.greeks import run_greeks
from mcrisk.workflows.run import run_study

from .conftest import CONFIGS, small_study
from .test_report_browser import ARGS, CHROMIUM, OVERFLOWING
from .test_report_density import histogram_modes, modes

runner = CliRunner()
# The printable width of each paper in CSS pixels (96 per inch) inside the print stylesheet's 12 mm margins.
PAPER_WIDTH_PX = {"a4": round((210 - 24) / 25.4 * 96), "letter": round((215.9 - 24) / 25.4 * 96)}
SCROLL_BOXES = "Array.from(document.querySelectorAll('.scroll')).map(e => getComputedStyle(e).overflowX)"
PAPER_POINTS = {"a4": "595.92 x 842.88", "letter": "612 x 792"}


class Headers(HTMLParser):
    """The header cells of every table a printed page shows (those inside <details> are not printed),
    and the titles of the sections."""

    def __init__(self, text: str):
        super().__init__()
        self.headers: list[str] = []
        self.titles: list[str] = []
        self._in: str | None = None
        self._details = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "details":
            self._details += 1
        elif tag in ("th", "h2") and not self._details:
            self._in = tag
            (self.headers if tag == "th" else self.titles).append("")

    def handle_endtag(self, tag):
        if tag == "details":
            self._details -= 1
        elif tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "th":
            self.headers[-1] += data
        elif self._in == "h2":
            self.titles[-1] += data


def words(text: str) -> str:
    """`text` with its white space as single spaces, and none after a hyphen (a header may wrap there)."""
    return re.sub(r"- ", "-", " ".join(text.split()))


def need_chromium() -> None:
    """Skip unless Chromium and playwright are there (before the test runs its study)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')"
    )


def full_study() -> dict:
    """The small study with what makes the report widest: two stresses (one with a long override),
    debt and tax, and the portfolio row."""
    study = copy.deepcopy(small_study(scenarios=1500))
    study["finance"].update(
        {"tax_rate": 0.21, "cost_of_equity": 0.18, "debt": {"share": 0.6, "annual_rate": 0.09, "tenor_months": 24}}
    )
    study["portfolio"] = True
    study["stress"] = {
        "price-war": {"market.token_price.annual_decline": {"dist": "pert", "low": 0.8, "mode": 0.9, "high": 0.95}},
        "power-spike": {
            "market.electricity.usd_per_kwh": {"dist": "triangular", "low": 0.12, "mode": 0.18, "high": 0.25}
        },
    }
    return study


def publish(study, out: Path, scenarios: int | None = None) -> Path:
    """A run with its Greeks, reverse stress and design point in the same folder (mcrisk run --greeks)."""
    folder = run_study(study, out=out, scenarios=scenarios).folder
    m = load_run(folder)["manifest"]
    run_greeks(folder / "study.yaml", out=folder, scenarios=min(m["scenarios"], 1000), seed=m["seed"], force=True)
    return folder


def check_prints(folder: Path) -> None:
    """Every section is there; both papers print every header; nothing overflows on screen or paper."""
    result = runner.invoke(app, ["report", str(folder), "--pdf"])
    assert result.exit_code == 0, result.output
    text = (folder / "report.html").read_text()
    page = Headers(text)
    assert {sid for sid, _ in SECTIONS} <= {sid for sid in _ids(text)}  # every section, portfolio and financing too
    assert "<details" in text and len(page.headers) > 60
    pdftotext = shutil.which("pdftotext")
    for paper in ("a4", "letter"):
        if paper == "letter":
            result = runner.invoke(app, ["report", str(folder), "--pdf", "--paper", "letter"])
            assert result.exit_code == 0, result.output
        pdf = folder / "report.pdf"
        assert pdf.read_bytes()[:5] == b"%PDF-"
        if pdftotext is None:
            continue
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert PAPER_POINTS[paper] in info, info
        printed = words(subprocess.run([pdftotext, "-raw", str(pdf), "-"], capture_output=True, text=True).stdout)
        missing = [h for h in page.headers if words(h) not in printed]
        assert missing == [], f"{paper}: column headers not in the PDF's text: {missing}"
        assert [t for t in page.titles if words(t) not in printed] == []
    from playwright.sync_api import sync_playwright  # (after the PDFs: one playwright at a time in a thread)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        view = browser.new_page(viewport={"width": 1400, "height": 900})
        view.goto((folder / "report.html").as_uri(), wait_until="load")
        assert view.evaluate(OVERFLOWING) == []
        assert view.evaluate("document.documentElement.scrollWidth") <= 1400
        view.emulate_media(media="print")
        for paper, width in PAPER_WIDTH_PX.items():
            view.set_viewport_size({"width": width, "height": 1000})
            assert view.evaluate(OVERFLOWING) == [], paper
            assert view.evaluate("document.documentElement.scrollWidth") <= width, paper
            # no scroll box in print: a box that would scroll on screen shows its whole table
            assert set(view.evaluate(SCROLL_BOXES)) == {"visible"}, paper
        browser.close()
    if pdftotext is None:
        pytest.skip("pdftotext is not installed (apt-get install poppler-utils): the PDF's text was not checked")


def _ids(text: str) -> list[str]:
    return [part.split('"', 1)[0] for part in text.split('<section id="')[1:]]


def test_every_column_prints_and_nothing_overflows(tmp_path):
    need_chromium()
    check_prints(publish(full_study(), tmp_path / "run"))


@pytest.mark.slow
def test_the_default_study_prints_every_column_and_its_npv_chart_has_the_histograms_modes(tmp_path):
    need_chromium()
    folder = publish(CONFIGS / "default.yaml", tmp_path / "default", scenarios=20_000)
    check_prints(folder)
    run = load_run(folder)
    rows = run["scenarios"]
    drawn = {}

    def keep(fig, name, alt, caption):
        drawn[name] = fig
        return ""

    sections.distributions(run, keep)
    lines = {line.get_label(): line.get_ydata() for line in drawn["npv"].axes[0].get_lines()}
    for system in run["systems"]:
        x = rows.loc[rows["system"] == system, "npv_usd"].to_numpy(np.float64)
        assert modes(lines[system], 0.1) == histogram_modes(x, 0.1, bins=30), system


def test_a_missing_browser_or_playwright_is_a_clean_error_naming_what_to_install(tmp_path, monkeypatch):
    from mcrisk.report import pdf

    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><p>x</p>")
    with pytest.raises(ValueError, match="paper must be one of a4, letter, got 'a3'"):
        pdf.write_pdf(page, paper="a3")
    monkeypatch.setenv("MCRISK_CHROMIUM", str(tmp_path / "nowhere"))
    with pytest.raises(pdf.BrowserMissing, match="MCRISK_CHROMIUM=.* is not an executable file"):
        pdf.write_pdf(page)
    monkeypatch.setitem(__import__("sys").modules, "playwright.sync_api", None)  # as if not installed
    monkeypatch.delenv("MCRISK_CHROMIUM")
    with pytest.raises(pdf.BrowserMissing, match=r"pip install 'mcrisk\[pdf\]'"):
        pdf.write_pdf(page)
    assert not (tmp_path / "report.pdf").exists()


def test_a_browser_that_does_not_start_says_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from mcrisk.report import pdf

    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><p>x</p>")
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MCRISK_CHROMIUM", str(fake))
    with pytest.raises(pdf.BrowserMissing, match="apt-get install chromium.*python -m playwright install chromium"):
        pdf.write_pdf(page)
    assert not (tmp_path / "report.pdf").exists()

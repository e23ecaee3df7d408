"""`write_pdf`: report.html printed to report.pdf by headless Chromium, driven by playwright.

Chromium prints the page as a reader's browser does: the same HTML and print stylesheet, fonts,
PNG figures and table layout, so the PDF is what "print to PDF" in a browser gives. WeasyPrint,
the other common engine, lays out HTML itself (no JavaScript, its own CSS support, which differs
in table layout and fonts), so a second engine would have to be kept in step with the page.
Chromium is found as ``$MCRISK_CHROMIUM``, then ``chromium``, ``chromium-browser`` or
``google-chrome`` on PATH, then the browser ``python -m playwright install chromium`` downloads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mcrisk.errors import RunFolderError
from mcrisk.io import atomic

PAPERS = {"a4": "A4", "letter": "Letter"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
ARGS = (  # a headless print: no sandbox (containers), GPU, network services or first-run pages
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserMissing(RuntimeError):
    """No playwright package or no Chromium to print the report with; the message says what to install."""


def find_chromium() -> str | None:
    """The Chromium executable to print with (``$MCRISK_CHROMIUM``, then PATH), or None: playwright's own."""
    chosen = os.environ.get("MCRISK_CHROMIUM")
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise BrowserMissing(f"MCRISK_CHROMIUM={chosen!r} is not an executable file: point it at a Chromium")
        return chosen
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _launch(p):
    exe = find_chromium()
    try:
        return p.chromium.launch(executable_path=exe, args=list(ARGS))
    except Exception as exc:  # playwright's Error: its own browser not downloaded, or a broken executable
        raise BrowserMissing(
            f"cannot start Chromium{f' ({exe})' if exe else ''} to print the PDF: install it "
            "(Debian/Ubuntu: apt-get install chromium; elsewhere: python -m playwright install chromium) "
            f"or set MCRISK_CHROMIUM to its path ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None


def write_pdf(html: str | Path, out: str | Path | None = None, *, paper: str = "a4") -> Path:
    """Print the report page `html` to a PDF (default: ``report.pdf`` beside it) on `paper` (a4 or
    letter), with the page's print stylesheet; return the PDF's path.

    ValueError naming `paper` if it is not a4 or letter; BrowserMissing (saying what to install) if
    playwright or Chromium is not there; RunFolderError if the PDF cannot be written. The PDF is
    written to a temporary file and renamed into place: never half-written.
    """
    if paper.lower() not in PAPERS:
        raise ValueError(f"paper must be one of {', '.join(PAPERS)}, got {paper!r}")
    html = Path(html)
    path = Path(out) if out is not None else html.with_suffix(".pdf")
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        raise BrowserMissing(
            "writing the PDF needs the playwright package, which drives Chromium: pip install 'mcrisk[pdf]' "
            "(and a Chromium: apt-get install chromium, or python -m playwright install chromium)"
        ) from None
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page()
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.emulate_media(media="print")
            data = page.pdf(format=PAPERS[paper.lower()], print_background=True)
        finally:
            browser.close()
    try:
        atomic.write_bytes(path, data)
    except OSError as exc:
        raise RunFolderError(f"cannot write the PDF {str(path)!r}: {exc.strerror or exc}") from None
    return path

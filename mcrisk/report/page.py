"""`write_report`: a run folder in, one self-contained ``report.html`` (and ``figures/*.png``) out.

The page is what an investment committee reads: a headline per system, the distributions,
the cash-flow fan chart, the cost structure, what drives NPV, which system wins, the fleet as a
portfolio and its financing (where the study has them), the stress, reverse stress, Greeks and
break-even tables, the summary and risk tables, the manifest and a methods note. Every number
comes from the run folder; an optional file that is missing gives a one-line note saying what
to run given the options the run was made with, never an error (one that is damaged is named in
a RunFolderError, and nothing is written). Images are embedded as PNG data URIs, so the file
needs no network and no script; it prints to A4 or Letter with every column of every table on
the page (``report.pdf``: ``mcrisk.report.pdf``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from mcrisk.errors import RunFolderError
from mcrisk.io import atomic
from mcrisk.io.folder import tidy
from mcrisk.io.lock import FolderLock
from mcrisk.io.readers import check_folder
from mcrisk.report import finance_section, greeks_section
from mcrisk.report import sections as sec
from mcrisk.report.calibration import calibration
from mcrisk.report.data import load_run
from mcrisk.report.headline import headline
from mcrisk.report.markup import Figures, esc

FIGURES = ("npv", "roi_multiple", "cash_flow", "cost_structure", "margin_by_utilization", "drivers", "comparison")

CSS = """
:root{--ink:#1d2330;--muted:#5b6475;--rule:#d9dde5;--band:#f4f6f9}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
 margin:0 auto;max-width:1120px;padding:20px 28px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 8px;padding-top:6px;border-top:2px solid var(--rule)}
.sub{color:var(--muted);margin:0 0 12px}.desc{color:var(--muted);font-style:italic}
nav{font-size:13px;margin:10px 0 18px;display:flex;flex-wrap:wrap;gap:4px 14px}
nav a{color:#0b5cab;text-decoration:none}
.headline li{margin:6px 0;font-size:16px}
figure{margin:10px 0 18px}figure img{display:block;max-width:100%;height:auto;border:1px solid var(--rule)}
figcaption{font-size:13px;color:var(--muted);margin-top:4px}
.note{background:var(--band);border-left:4px solid #9aa5b8;padding:6px 10px;font-size:14px;color:#3a4252}
.means{font-weight:600;margin:6px 0 10px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;border-bottom:1px solid var(--rule);text-align:right;vertical-align:top}
th{background:var(--band);font-weight:600}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}
td.long{text-align:left;overflow-wrap:anywhere;min-width:12em}
table.num2 td:nth-child(2),table.num2 th:nth-child(2){text-align:right}
table.facts td:nth-child(2){white-space:normal;overflow-wrap:anywhere}
tbody tr:nth-child(even){background:#fafbfc}
details summary{cursor:pointer;font-size:14px;color:#0b5cab}
code{font-size:13px;overflow-wrap:anywhere}
@media print{
 @page{margin:12mm}
 body{font-size:10pt;max-width:none;padding:0}
 .headline li{font-size:11pt}
 nav,details{display:none}
 h2{break-after:avoid;margin-top:16px}
 figure,.headline,tr{break-inside:avoid}
 thead{display:table-header-group}
 figure img{border:none}
 .scroll{overflow:visible}
 table{font-size:8pt;max-width:100%}
 th,td{padding:2px 5px}
 td.long{min-width:9em}
 .note{font-size:9pt}
 a{color:inherit}
}
"""

SECTIONS = (  # (element id, title)
    ("headline", "Headline"),
    ("distributions", "Distributions of NPV and revenue per $ of capex"),
    ("cash-flow", "Cumulative cash flow by month"),
    ("cost-structure", "Cost structure"),
    ("utilization", "Utilization against margin"),
    ("drivers", "What drives NPV"),
    ("comparison", "Which system wins"),
    ("portfolio", "The fleet as one portfolio"),
    ("financing", "Financing: equity, debt and tax"),
    ("stress", "Stress tests"),
    ("reverse-stress", "Reverse stress test"),
    ("greeks", "Sensitivities of the mean (Greeks)"),
    ("breakeven", "Break-even"),
    ("claims", "Vendor claims"),
    ("summary", "Summary"),
    ("risk", "Risk"),
    ("manifest", "Manifest"),
    ("methods", "Methods"),
)
CONDITIONAL = ("portfolio", "financing")  # sections on the page only where the run has their data


def render(run: dict, figs: Figures) -> str:
    """The report page of a loaded run folder (see `load_run`); figures are saved through `figs`."""
    bodies = {
        "headline": headline(run) + calibration(run),
        "distributions": sec.distributions(run, figs),
        "cash-flow": sec.cash_flow(run, figs),
        "cost-structure": sec.costs(run, figs),
        "utilization": sec.utilization(run, figs),
        "drivers": sec.drivers(run, figs),
        "comparison": sec.comparison(run, figs),
        "portfolio": finance_section.portfolio(run),
        "financing": finance_section.financing(run),
        "stress": sec.stress(run),
        "reverse-stress": greeks_section.reverse_stress(run),
        "greeks": greeks_section.greeks(run),
        "breakeven": sec.breakeven(run),
        "claims": sec.claims(run),
        "summary": sec.summary(run),
        "risk": sec.risk(run),
        "manifest": sec.manifest(run),
        "methods": sec.methods(run),
    }
    m = run["manifest"]
    title = f"{m.get('study', run['folder'].name)}: risk report"
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = shown_sections(run, bodies)
    nav = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t in shown)
    main = "".join(f'<section id="{sid}"><h2>{esc(t)}</h2>{bodies[sid]}</section>' for sid, t in shown)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head><body>'
        f'<header><h1>{esc(title)}</h1><p class="sub">mcrisk {esc((m.get("versions") or {}).get("mcrisk", ""))} · '
        f"run folder {esc(run['folder'].name)} · report made {made}</p><nav>{nav}</nav></header>"
        f"<main>{main}</main></body></html>\n"
    )


def shown_sections(run: dict, bodies: dict[str, str]) -> list[tuple[str, str]]:
    """The sections of this run's page, in order, with their titles: those with a body (the
    portfolio and financing sections only where the run has them), the drivers section titled by
    the metric its chart shows."""
    titles = {"drivers": sec.drivers_title(run)}
    return [(sid, titles.get(sid, t)) for sid, t in SECTIONS if bodies[sid]]


def write_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``report.html`` (default: into the run folder) and each figure as ``figures/NAME.png`` beside it.

    Returns the report's path. RunFolderError if `run_dir` is not a run folder (no manifest.json),
    if one of its files is damaged, if another process is writing it (its lock is held), or if
    the report cannot be written. Nothing is written unless the whole page is made: the figures
    and the page go to hidden temporary files first, and are renamed into place at the end. What
    a killed report left (``.figures.tmp-PID``) is removed; a ``figures`` that is a symbolic link
    is refused, never followed out of the folder.
    """
    run_dir = Path(run_dir)
    check_folder(run_dir)
    with FolderLock(run_dir, "write the report into"):
        tidy(run_dir, False)
        return _write_report(load_run(run_dir), out)


def _write_report(run: dict, out: str | Path | None) -> Path:
    path = Path(out) if out is not None else run["folder"] / "report.html"
    folder = path.parent / "figures"
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise RunFolderError(
            f"cannot write the report's figures into {str(folder)!r}: it is not a folder (a symbolic link or a file); "
            "the report writes only inside the run folder: remove it"
        )
    staging = path.parent / f".figures.tmp-{os.getpid()}"
    page_tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _clear(staging)
        figs = Figures(staging)
        page_tmp.write_bytes(render(run, figs).encode("utf-8"))
        folder.mkdir(exist_ok=True)
        for name in FIGURES:  # (figures of an earlier report whose input has gone are removed)
            if name in figs.written:
                atomic.replace_durably(staging / f"{name}.png", folder / f"{name}.png")
            else:
                (folder / f"{name}.png").unlink(missing_ok=True)
        atomic.replace_durably(page_tmp, path)
    except OSError as exc:
        raise RunFolderError(f"cannot write the report into {str(path.parent)!r}: {exc.strerror or exc}") from None
    finally:
        _clear(page_tmp)
        _clear(staging)
    return path


def _clear(path: Path) -> None:
    """Remove a temporary file or folder if it is there (a symbolic link itself, never what it names);
    one that cannot be removed (a read-only folder) is left."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    except OSError:
        pass

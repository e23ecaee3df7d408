"""A run's tables as one Excel workbook (the optional extra ``mcrisk[xlsx]``): ``mcrisk export --xlsx``.

One sheet per table the run folder has (summary, risk, calibration, breakeven, stress,
sensitivity, comparison, greeks, ..., monthly; :mod:`mcrisk.io.tables`), after an ``about``
sheet: the study, scenarios, seed and what else the manifest says, how the cells are written,
and the unit of each column whose name says it. A table with a ``metric`` or ``quantity``
column gets a ``unit`` column beside it: the unit of that row's numbers. Excel has no infinity:
an infinite value is the text ``inf`` or ``-inf`` (which SUM and AVERAGE skip, as they skip
blanks), and a missing value (NaN) is an empty cell. The scenario rows are not exported (a
spreadsheet holds 1,048,576 rows; ``mcrisk query`` reads them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from mcrisk.io import atomic
from mcrisk.io.tables import open_run, plain, read_table, table_files
from mcrisk.study.labels import unit_of

XLSX_EXTRA = "pip install 'mcrisk[xlsx]' (or pip install openpyxl)"
INFINITY_NOTE = (
    "Infinite values are the text inf or -inf (Excel has no infinity; SUM and AVERAGE skip text); "
    "an empty cell is a value that does not exist (NaN)."
)
_STATISTIC = re.compile(r"_(mean|sd|min|max|p\d+|p\d+_change|mcse)$")
_FACTS = (
    ("study", "study"),
    ("study_sha256", "study SHA-256"),
    ("scenarios", "scenarios"),
    ("seed", "seed"),
    ("horizon_months", "horizon (months)"),
    ("systems", "systems"),
    ("sampler", "sampler"),
    ("precision", "precision"),
    ("monthly_scenarios", "scenarios in the monthly bands"),
    ("backend", "backend"),
    ("versions", "versions"),
)


def column_unit(name: str) -> str | None:
    """The unit of a table's column from its name: a metric's or input's own (``var95_usd``: USD),
    a statistic of one (``npv_usd_p50``: USD), a probability (``p_loss``: 1); None if it does not say."""
    if name.startswith("p_"):
        return "probability (0 to 1)"
    return unit_of(name) or (unit_of(_STATISTIC.sub("", name)) if _STATISTIC.search(name) else None)


def cell(value: Any) -> Any:
    """A value as an Excel cell: numbers and text as they are, +-inf as the text inf/-inf, NaN empty."""
    value = plain(value)
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _fact(value: Any) -> Any:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return cell(value)


def _with_units(table: Any) -> Any:
    """The table with a `unit` column after its `metric` or `quantity` column, if it has one."""
    for key in ("metric", "quantity"):
        if key in table.columns and "unit" not in table.columns:
            units = [unit_of(str(m)) for m in table[key]]
            table = table.copy()
            table.insert(table.columns.get_loc(key) + 1, "unit", units)
            return table
    return table


def _about(ws: Any, folder: Path, manifest: dict[str, Any], tables: dict[str, Any]) -> None:
    from openpyxl.styles import Font

    bold = Font(bold=True)
    ws.append(["mcrisk run", str(folder.resolve())])
    ws["A1"].font = bold
    for key, label in _FACTS:
        if manifest.get(key) is not None:
            ws.append([label, _fact(manifest[key])])
    ws.append([])
    ws.append(["cells", INFINITY_NOTE])
    ws.append(["", "Money is in USD; a fraction (a margin, a probability, a utilization) is 0 to 1, not a percentage."])
    ws.append([])
    ws.append(["sheet", "column", "unit"])
    for c in ws[ws.max_row]:
        c.font = bold
    for name, table in tables.items():
        for col in table.columns:
            unit = "the row's metric or quantity" if col == "unit" else column_unit(str(col))
            if unit is not None:
                ws.append([name, str(col), unit])
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 60


def _sheet(ws: Any, table: Any) -> None:
    from openpyxl.styles import Font

    ws.append([str(c) for c in table.columns])
    for c in ws[1]:
        c.font = Font(bold=True)
    for row in table.itertuples(index=False, name=None):
        ws.append([cell(v) for v in row])
    ws.freeze_panes = "A2"
    for k, col in enumerate(table.columns, start=1):
        ws.column_dimensions[ws.cell(1, k).column_letter].width = min(40, max(10, len(str(col)) + 2))


def export_xlsx(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the run `folder`'s tables into one workbook (`out`, default ``RUN.xlsx`` beside the
    run folder), atomically; return its path. RunFolderError if `folder` is not a finished run."""
    from openpyxl import Workbook

    folder, manifest = open_run(folder)
    path = Path(out) if out is not None else folder.parent / f"{folder.name}.xlsx"
    tables = {name: _with_units(read_table(p, folder)) for name, p in table_files(folder).items()}
    wb = Workbook()
    about = wb.active
    about.title = "about"
    _about(about, folder, manifest, tables)
    for name, table in tables.items():
        _sheet(wb.create_sheet(name[:31]), table)
    atomic.write_with(path, lambda tmp: wb.save(tmp))
    return path

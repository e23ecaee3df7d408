"""`mcrisk query` (SQL over a run folder, with DuckDB) and `mcrisk export --xlsx` (its tables as
one workbook). Both need an optional extra; without it they say what to install.

Nothing heavy is imported here: DuckDB, openpyxl and pandas are imported when a command runs."""

from __future__ import annotations

import decimal
import math
import sys
from pathlib import Path
from typing import Any

import typer

from mcrisk.cli.common import EXIT_INVALID, err_console, fail
from mcrisk.cli.terminal import out_console
from mcrisk.errors import RunFolderError

SHOWN_ROWS = 100  # rows of a result the terminal's table shows (--csv and --json give them all)
_BATCH = 10_000  # rows fetched at a time


def _missing(package: str, install: str) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] this command needs {package}: {escape(install)}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def _json_value(value: Any) -> Any:
    """A result's cell as JSON: NaN and +-inf as null (JSON has none), text for what JSON has no type for."""
    from mcrisk.io.tables import plain

    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):  # (DuckDB's DECIMAL: a number all the same)
        return _json_value(float(value))
    return str(value)


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):  # money to the dollar, other numbers to 6 significant digits
        return f"{value:,.0f}" if math.isfinite(value) and 1e5 <= abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def _print_table(columns: list[str], result: Any) -> None:
    from rich.table import Table

    rows = result.fetchmany(SHOWN_ROWS + 1)
    table = Table(show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows[:SHOWN_ROWS]:
        table.add_row(*(_text(v) for v in r))
    out_console.print(table)
    if len(rows) > SHOWN_ROWS:  # (not counted: the rest of `select * from scenarios` may be 1e8 rows)
        out_console.print(f"the first {SHOWN_ROWS} rows: --csv or --json prints every row", highlight=False)


def _write_csv(columns: list[str], result: Any) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for batch in iter(lambda: result.fetchmany(_BATCH), []):
        writer.writerows([["" if v is None else v for v in row] for row in batch])


def _write_json(columns: list[str], result: Any) -> None:
    import json

    sys.stdout.write("[")
    first = True
    for batch in iter(lambda: result.fetchmany(_BATCH), []):
        for row in batch:
            record = {c: _json_value(v) for c, v in zip(columns, row)}
            sys.stdout.write(("\n" if first else ",\n") + json.dumps(record, allow_nan=False))
            first = False
    sys.stdout.write("\n]\n")


def query(
    run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run or mcrisk merge."),
    sql: str = typer.Argument(
        ...,
        help="DuckDB SQL over the run's tables: scenarios (the Parquet rows), summary, risk, and each other "
        "table the folder has (calibration, breakeven, stress, sensitivity, comparison, greeks, monthly, ...).",
    ),
    csv_out: bool = typer.Option(False, "--csv", help="Print every row as CSV instead of a table."),
    json_out: bool = typer.Option(
        False, "--json", help="Print every row as a JSON array of objects (NaN and infinities as null)."
    ),
) -> None:
    """Run SQL over a run folder with DuckDB and print the result, e.g.
    mcrisk query outputs/default "select system, avg(npv_usd) from scenarios group by 1"."""
    if csv_out and json_out:
        fail(ValueError("--csv and --json: choose one"))
    from mcrisk.io.query import QUERY_EXTRA, QueryError, run_query  # (DuckDB is imported when the query runs)

    try:
        columns, result = run_query(run_dir, sql)
    except ModuleNotFoundError as exc:
        if exc.name != "duckdb":
            raise
        _missing("DuckDB", QUERY_EXTRA)
    except (RunFolderError, OSError) as exc:
        fail(exc)
    except QueryError as exc:
        fail(ValueError(f"the query failed: {exc}"))
    if result is None:
        return
    if csv_out:
        _write_csv(columns, result)
    elif json_out:
        _write_json(columns, result)
    else:
        _print_table(columns, result)


def export(
    run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run or mcrisk merge."),
    xlsx: bool = typer.Option(False, "--xlsx", help="One Excel workbook: a sheet per table and an 'about' sheet."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The workbook to write (default: RUN.xlsx beside the run folder)."
    ),
) -> None:
    """Export a run's tables (summary, risk, calibration, stress, sensitivity, ...) for a spreadsheet."""
    if not xlsx:
        fail(ValueError("say which format to export: --xlsx (the only one there is)"))
    from mcrisk.io.xlsx import XLSX_EXTRA, export_xlsx

    try:
        path = export_xlsx(run_dir, out)
    except ModuleNotFoundError as exc:
        if exc.name != "openpyxl":
            raise
        _missing("openpyxl", XLSX_EXTRA)
    except (RunFolderError, OSError) as exc:
        fail(exc)
    out_console.print(f"wrote {path}", highlight=False)

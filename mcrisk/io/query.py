"""SQL over a run folder with DuckDB (the optional extra ``mcrisk[query]``): ``mcrisk query``.

A connection holds one view per table of the run: ``scenarios`` (the Parquet parts the manifest
lists, never another file of the folder), and each CSV table under its name (``summary``,
``risk``, ``calibration``, ``breakeven``, ``stress``, ``sensitivity``, ``comparison``,
``greeks``, ...) with ``monthly`` (monthly.parquet), those the folder has. The CSV tables are
read with pandas, so that ``inf`` and ``-inf`` are the numbers they stand for (DuckDB's own CSV
reader takes a column holding them for text) and empty cells are NULL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcrisk.errors import RunFolderError
from mcrisk.io.tables import open_run, read_table, scenario_parts, table_files

QUERY_EXTRA = "pip install 'mcrisk[query]' (or pip install duckdb)"


class QueryError(ValueError):
    """SQL that DuckDB refused (a syntax error, an unknown table or column), with DuckDB's reason."""


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(folder: str | Path) -> Any:
    """An in-memory DuckDB connection with a view for each table of the finished run `folder`;
    RunFolderError if it is not one or its parts are not those its manifest lists."""
    import duckdb

    folder, manifest = open_run(folder)
    con = duckdb.connect()
    parts = scenario_parts(folder, manifest)
    if parts:
        listed = ", ".join(_literal(p) for p in parts)
        con.execute(f"create view scenarios as select * from read_parquet([{listed}])")
    for name, path in table_files(folder).items():
        con.register(name, read_table(path, folder))  # (a view of the DataFrame)
    return con


def views(con: Any) -> list[str]:
    """The names of the run's views in a connection made by :func:`connect`."""
    rows = con.execute("select view_name from duckdb_views() where not internal order by view_name").fetchall()
    return [r[0] for r in rows]


def _one_line(message: str) -> str:
    """DuckDB's message on one line: its explanation and hints, without the echo of the SQL
    (``LINE 1: ...``) and the caret under it."""
    lines = [x.strip() for x in message.splitlines()]
    return " ".join(x for x in lines if x and not x.startswith("LINE ") and set(x) != {"^"})


def run_query(folder: str | Path, sql: str) -> tuple[list[str], Any]:
    """(column names, DuckDB result) of `sql` over the run `folder`'s views; fetch its rows with
    ``fetchmany``. QueryError with DuckDB's explanation, on one line, for SQL it refuses (and the
    run's tables, where it names a table that is not one)."""
    import duckdb

    con = connect(folder)
    try:
        result = con.execute(sql)
    except duckdb.Error as exc:
        why = _one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, duckdb.CatalogException):
            why += f" (the run's tables: {', '.join(views(con))})"
        raise QueryError(why) from None
    if result.description is None:  # a statement without rows (create, set, ...)
        return [], None
    return [d[0] for d in result.description], result


__all__ = ["QUERY_EXTRA", "QueryError", "RunFolderError", "connect", "run_query", "views"]

"""The names of the scenario rows' Parquet columns: SQL identifiers that need no quoting.

An input's column is named after its study path, with each dot written as two underscores:
``market.token_price.initial_usd_per_mtok`` is the column ``market__token_price__initial_usd_per_mtok``,
and a system's own input, ``system.capex_usd`` (``systems.<the row's system>.capex_usd``), is
``system__capex_usd``. Metric names have no dot and are their own column names. Every part of a
path is a lower-case Python identifier that neither starts nor ends with an underscore nor holds
two in a row, so the name is a plain SQL identifier (letters, digits, single underscores) and
the mapping runs both ways. System names, which may hold hyphens, are values of the ``system``
column, never part of a column's name.

Each input's Arrow field keeps its dotted name in its metadata under :data:`PATH_KEY`; the CSV
tables (``sensitivity.csv``'s ``input``, ``--columns``, the greeks) name inputs by the dotted name.
"""

from __future__ import annotations

SEPARATOR = "__"
PATH_KEY = "mcrisk.path"  # an input field's metadata key: its dotted study path


def column_name(path: str) -> str:
    """The Parquet column of a dotted input path or metric name (``facility.pue`` -> ``facility__pue``)."""
    return path.replace(".", SEPARATOR)


def study_path(column: str) -> str:
    """The dotted path of a Parquet column (``facility__pue`` -> ``facility.pue``); a metric's
    name, or a dotted name, is returned as it is."""
    return column.replace(SEPARATOR, ".")


def field_metadata(path: str) -> dict[str, str] | None:
    """The Arrow field metadata of the column of `path`: its dotted path where the column's name
    differs from it, else None."""
    return {PATH_KEY: path} if column_name(path) != path else None

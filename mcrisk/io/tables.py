"""The tables of a finished run folder by name, for ``mcrisk query`` (DuckDB views) and ``mcrisk
export --xlsx`` (one sheet each): its CSV tables, the monthly bands and the scenario parts its
manifest lists."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mcrisk.errors import RunFolderError
from mcrisk.io.readers import check_folder, read_manifest, reading
from mcrisk.io.verify import listed_parts

# The tables in the order a reader meets them (the sheets' order); any other CSV of the folder follows, by name.
ORDER = (
    "summary",
    "risk",
    "calibration",
    "breakeven",
    "stress",
    "sensitivity",
    "comparison",
    "greeks",
    "reverse_stress",
    "design_point",
    "claims",
    "sweep",
    "monthly",
)
# Columns read as text whatever they hold (a system named 1 stays "1").
TEXT_COLUMNS = ("system", "system_a", "system_b", "stress", "input", "metric", "quantity", "overrides")


def open_run(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """A finished run folder and its manifest; RunFolderError if it is not one."""
    folder = Path(folder)
    check_folder(folder)
    if not (folder / "manifest.json").is_file():
        raise RunFolderError(f"{str(folder)!r} is not a finished run folder: it has no manifest.json")
    return folder, read_manifest(folder / "manifest.json", folder, required=())


def table_files(folder: Path) -> dict[str, Path]:
    """Each table of the run folder by name: ``NAME.csv`` as NAME, ``monthly.parquet`` as monthly;
    only names that are plain SQL identifiers, in :data:`ORDER`, then the others by name."""
    found = {p.stem: p for p in folder.glob("*.csv") if p.is_file() and p.stem.isidentifier() and p.stem.isascii()}
    if (folder / "monthly.parquet").is_file():
        found["monthly"] = folder / "monthly.parquet"
    rank = {name: k for k, name in enumerate(ORDER)}
    return {name: found[name] for name in sorted(found, key=lambda n: (rank.get(n, len(ORDER)), n))}


def read_table(path: Path, folder: Path) -> Any:
    """One table as a pandas DataFrame: ``inf``/``-inf`` as infinities, empty cells as NaN, the
    text columns as text; RunFolderError naming the file if it cannot be read."""
    import pandas as pd

    with reading(path, folder):
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})


def scenario_parts(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    """The scenario parts the manifest lists (checked against the disk), in scenario order; none
    for a run that kept no scenarios."""
    return listed_parts(folder, manifest)


def plain(value: Any) -> Any:
    """A cell as a plain Python value (numbers, text, None): NumPy scalars unwrapped, NaN as None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

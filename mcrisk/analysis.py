"""Decision analytics of a finished run folder: ``sensitivity.csv`` and ``comparison.csv`` from its scenarios."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from .compare import paired_comparisons
from .errors import Problem, RunFolderError, StudyError
from .metrics import METRICS
from .sensitivity import sensitivity
from .storage import SCENARIOS_DIR

COMPARED = ("npv_usd", "cost_per_mtok_usd")


def scenario_parts(folder: Path) -> list[Path]:
    """The Parquet parts of a run folder's scenarios, in chunk order; RunFolderError if there are none."""
    if not folder.is_dir():
        raise RunFolderError(f"{str(folder)!r} is not a run folder (no such folder)")
    parts = sorted((folder / SCENARIOS_DIR).glob("part-*.parquet"))
    if not parts:
        if (folder / "manifest.json").is_file():
            raise RunFolderError(
                f"the run in {str(folder)!r} kept no scenarios (it was run with --no-scenarios); "
                "run the study again without --no-scenarios to analyze it"
            )
        raise RunFolderError(f"{str(folder)!r} is not a run folder: it has no {SCENARIOS_DIR} (write one with mcrisk run)")
    return parts


def read_scenarios(folder: str | Path, columns: list[str] | None = None, max_scenarios: int | None = None) -> pd.DataFrame:
    """The scenarios table of a run folder (in scenario order), or its first `max_scenarios`
    scenarios; RunFolderError if it has none."""
    folder = Path(folder)
    parts = scenario_parts(folder)
    if max_scenarios is None:
        return pd.read_parquet(folder / SCENARIOS_DIR, columns=columns)
    tables, seen = [], 0
    for part in parts:  # one part per chunk, in scenario order
        t = pq.read_table(part, columns=columns).to_pandas()
        t = t[t["scenario"] < max_scenarios] if "scenario" in t.columns else t
        tables.append(t)
        seen = int(t["scenario"].max()) + 1 if len(t) and "scenario" in t.columns else seen
        if seen >= max_scenarios:
            break
    rows = pd.concat(tables, ignore_index=True)
    if "system" in rows.columns and not isinstance(rows["system"].dtype, pd.CategoricalDtype):
        rows["system"] = pd.Categorical(rows["system"], categories=list(pd.unique(rows["system"])))
    return rows


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a CSV atomically: a hidden temporary file in the same folder renamed over the target."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def analyze_run(folder: str | Path, metric: str = "npv_usd", *, bins: int = 20, n_boot: int = 200, seed: int = 0,
                max_scenarios: int | None = None) -> dict[str, Path]:
    """Write ``sensitivity.csv`` (drivers of `metric`) and ``comparison.csv`` (paired system comparisons) into a run folder.

    The comparisons cover NPV, cost per million tokens and `metric`. Returns the paths written,
    keyed ``sensitivity`` and ``comparison``. RunFolderError if the folder has no scenarios
    (a ``--no-scenarios`` run); StudyError (path ``--metric``) for an unknown metric.
    `max_scenarios` limits the analysis to the first scenarios by index (``mcrisk run`` uses
    the first 65,536 so that its own analysis stays a small share of a large run).
    """
    folder = Path(folder)
    names = pq.read_schema(scenario_parts(folder)[0]).names
    if metric not in METRICS or metric not in names:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (choose one of: {', '.join(METRICS)})"
        raise StudyError([Problem("--metric", f"unknown metric {metric!r}{hint}")], "options")
    compared = list(dict.fromkeys([*COMPARED, metric]))
    columns = [c for c in names if c not in METRICS or c in compared]  # keys, inputs, the metrics used
    rows = read_scenarios(folder, columns, max_scenarios)
    written = {
        "sensitivity": (sensitivity(rows, metric, bins=bins, n_boot=n_boot, seed=seed), folder / "sensitivity.csv"),
        "comparison": (paired_comparisons(rows, compared), folder / "comparison.csv"),
    }
    for table, path in written.values():
        _write_csv(table, path)
    return {key: path for key, (_, path) in written.items()}

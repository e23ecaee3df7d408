"""Decision analytics of a finished run folder: ``sensitivity.csv`` and ``comparison.csv`` from its scenarios."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml

from mcrisk.errors import Problem, RunFolderError, StudyError
from mcrisk.io import atomic
from mcrisk.io.folder import SCENARIOS_DIR, tidy
from mcrisk.io.lock import FolderLock
from mcrisk.io.readers import READ_ERRORS, check_folder, damaged, read_manifest, reading, reason
from mcrisk.io.verify import listed_parts
from mcrisk.model.metrics import METRICS
from mcrisk.stats.compare import paired_comparisons
from mcrisk.stats.sensitivity import drawn_inputs, sensitivity
from mcrisk.study import yaml12
from mcrisk.study.columns import study_path
from mcrisk.study.schema import PORTFOLIO

COMPARED = ("npv_usd", "cost_per_mtok_usd")


def scenario_parts(folder: Path) -> list[Path]:
    """The Parquet parts of a run folder's scenarios, in chunk order; RunFolderError if there are none."""
    check_folder(folder)
    if (folder / "manifest.json").is_file():  # a finished run: only the parts its manifest lists, as written
        parts = listed_parts(folder, read_manifest(folder / "manifest.json", folder, required=()))
    else:  # a run's partial folder, analyzed before it is published
        parts = sorted((folder / SCENARIOS_DIR).glob("part-*.parquet"))
    if not parts:
        if (folder / "manifest.json").is_file():
            raise RunFolderError(
                f"the run in {str(folder)!r} kept no scenarios (it was run with --no-scenarios); "
                "run the study again without --no-scenarios to analyze it"
            )
        raise RunFolderError(
            f"{str(folder)!r} is not a run folder: it has no {SCENARIOS_DIR} (write one with mcrisk run)"
        )
    return parts


def read_scenarios(
    folder: str | Path, columns: list[str] | None = None, max_scenarios: int | None = None
) -> pd.DataFrame:
    """The scenarios table of a run folder (in scenario order), or its first `max_scenarios`
    scenarios; RunFolderError if it has none."""
    folder = Path(folder)
    parts = scenario_parts(folder)
    if max_scenarios is None:
        try:
            return pd.read_parquet(parts, columns=columns)
        except READ_ERRORS as exc:
            for part in parts:  # name the part that cannot be read
                with reading(part, folder):
                    pq.read_table(part, columns=columns)
            raise damaged(folder / SCENARIOS_DIR, reason(exc), folder) from None
    tables, seen = [], 0
    for part in parts:  # one part per chunk, in scenario order
        with reading(part, folder):
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


def _has_portfolio_row(folder: Path) -> bool:
    """Whether the run's study (its study.yaml) asks for the portfolio row: its rows are then left
    out of the drivers and the paired comparisons (its system inputs are NaN, so its drivers
    would miss them, and it contains the systems)."""
    try:
        study = yaml12.load((folder / "study.yaml").read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(study, dict) and bool(study.get("portfolio"))


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a CSV atomically and durably (`mcrisk.io.atomic`); RunFolderError where the folder
    cannot take it (read-only, full)."""
    try:
        atomic.write_with(path, lambda tmp: table.to_csv(tmp, index=False))
    except OSError as exc:
        raise RunFolderError(f"cannot write {path.name} into {str(path.parent)!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze_run` did: the tables written (``sensitivity``, ``comparison``: their
    paths), those it could not write with the reason (a run written with ``--columns`` may lack
    the metric or the drawn inputs), and how many scenarios it read."""

    paths: dict[str, Path]
    skipped: dict[str, str]
    scenarios: int


def analyze_run(
    folder: str | Path,
    metric: str = "npv_usd",
    *,
    bins: int = 20,
    n_boot: int = 200,
    seed: int = 0,
    max_scenarios: int | None = None,
    require_metric: bool = True,
) -> Analysis:
    """Write ``sensitivity.csv`` (drivers of `metric`) and ``comparison.csv`` (paired system comparisons) into a run folder.

    The comparisons cover NPV, cost per million tokens and `metric`, those of them the run kept.
    RunFolderError if the folder has no scenarios (a ``--no-scenarios`` run) or keeps nothing to
    analyze; StudyError (path ``--metric``) for an unknown metric, or, with `require_metric`, one
    the run did not keep (``--columns``); without it, the drivers are then skipped and said so.
    The drivers need the drawn inputs as well: where the run kept none, they are skipped.
    `max_scenarios` limits the analysis to the first scenarios by index (``mcrisk run`` uses
    the first 65,536 so that its own analysis stays a small share of a large run; of a run
    written with ``--sample-fraction``, the sampled ones among them).
    """
    folder = Path(folder)
    check_folder(folder)
    if not (folder / "manifest.json").is_file():  # (a run's partial folder: the run holds its lock)
        return _analyze(folder, metric, bins, n_boot, seed, max_scenarios, require_metric)
    with FolderLock(folder, "analyze"):
        tidy(folder, False)
        return _analyze(folder, metric, bins, n_boot, seed, max_scenarios, require_metric)


def _analyze(
    folder: Path,
    metric: str,
    bins: int,
    n_boot: int,
    seed: int,
    max_scenarios: int | None,
    require_metric: bool,
) -> Analysis:
    first = scenario_parts(folder)[0]
    with reading(first, folder):
        names = pq.read_schema(first).names
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (choose one of: {', '.join(METRICS)})"
        raise StudyError([Problem("--metric", f"unknown metric {metric!r}{hint}")], "options")
    kept = [m for m in METRICS if m in names]
    written_with = (
        f"the run kept only the metrics {', '.join(kept)} (--columns)"
        if kept
        else "the run kept no metric column (--columns)"
    )
    if metric not in names and require_metric:
        raise StudyError(
            [
                Problem(
                    "--metric",
                    f"{written_with}, not {metric!r}: pick one of those, or run the study again keeping {metric}",
                )
            ],
            "options",
        )
    compared = [m for m in dict.fromkeys([*COMPARED, metric]) if m in names]
    columns = [c for c in names if c not in METRICS or c in compared]  # keys, inputs, the metrics used
    # The tables name each input by its dotted path (sensitivity.csv's `input`), not its Parquet column.
    rows = read_scenarios(folder, columns, max_scenarios).rename(columns=study_path)
    # The fleet has no system inputs of its own, and it holds the systems it would be paired with.
    if _has_portfolio_row(folder):
        rows = rows[rows["system"] != PORTFOLIO]
        if isinstance(rows["system"].dtype, pd.CategoricalDtype):
            rows = rows.assign(system=rows["system"].cat.remove_unused_categories())
    skipped = {}
    if metric not in names:
        skipped["sensitivity"] = f"{written_with}, not {metric}"
    elif not drawn_inputs(rows):
        skipped["sensitivity"] = "the run kept no drawn input to rank (--columns)"
    if not compared:
        skipped["comparison"] = f"{written_with}, none of {', '.join(COMPARED)}"
    if len(skipped) == 2:
        raise RunFolderError(f"nothing to analyze in {str(folder)!r}: " + "; ".join(skipped.values()))
    tables = {}
    if "sensitivity" not in skipped:
        tables["sensitivity"] = sensitivity(rows, metric, bins=bins, n_boot=n_boot, seed=seed)
    if "comparison" not in skipped:
        tables["comparison"] = paired_comparisons(rows, compared)
    paths = {}
    for key, table in tables.items():
        paths[key] = folder / f"{key}.csv"
        _write_csv(table, paths[key])
    return Analysis(paths, skipped, int(rows["scenario"].nunique()) if "scenario" in rows.columns else len(rows))

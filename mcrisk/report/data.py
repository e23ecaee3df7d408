"""What the report reads from a run folder: its tables, a bounded sample of its scenarios, and
the numbers behind the figures (cost per Mtok by component, margin by utilization, payback)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from mcrisk.errors import RunFolderError, _shown
from mcrisk.io.folder import SCENARIOS_DIR
from mcrisk.io.readers import check_folder, damaged, field_problems, read_manifest, reading
from mcrisk.io.verify import listed_parts
from mcrisk.report import figures as fg
from mcrisk.study import yaml12

SAMPLE_ROWS = 200_000  # scenarios per system read for densities and the utilization bins
UTILIZATION_BINS = 12
SCENARIO_COLUMNS = ("npv_usd", "roi_multiple", "operating_margin", "mean_utilization")
TEXT = {c: str for c in ("system", "system_a", "system_b", "stress", "input", "metric")}  # a system named 1 stays "1"
OPTIONAL = ("sensitivity.csv", "comparison.csv", "stress.csv", "breakeven.csv", "claims.csv", "calibration.csv")


# ----------------------------------------------------------------------------- reading the run folder


# What the report reads from each table: the columns it cannot do without, and those that must
# hold numbers where present (in summary.csv and monthly.parquet also every percentile, p1 .. p99).
# A table without them, or with text where a number belongs, is damaged or not what mcrisk wrote.
_Q = ("p5", "p25", "p50", "p75", "p95")
READS = {
    "summary.csv": (("system", "metric", "mean", *_Q), ("mean", "mcse_mean")),
    "risk.csv": (
        ("system", "p_loss"),
        (
            "p_loss",
            "p_loss_mcse",
            "var95_usd",
            "cvar95_usd",
            "var99_usd",
            "cvar99_usd",
            "p_payback_within_horizon",
            "p_payback_within_horizon_mcse",
            "median_payback_months",
            "p_roi_multiple_ge_15",
            "p_roi_multiple_ge_15_mcse",
        ),
    ),
    "breakeven.csv": (
        ("system", "quantity", "p_market_clears"),
        ("p_market_clears", "p_market_clears_mcse", *(f"{side}_{q}" for side in ("breakeven", "market") for q in _Q)),
    ),
    "sensitivity.csv": (
        ("system", "metric", "input", "rank", "first_order", "bottom_p50", "top_p50"),
        ("rank", "first_order", "bottom_p50", "top_p50"),
    ),
    "comparison.csv": (("metric", "system_a", "system_b", "p_a_greater"), ("p_a_greater",)),
    "stress.csv": (
        ("stress", "system"),
        (
            "npv_usd_p5",
            "npv_usd_p50",
            "npv_usd_p95",
            "npv_usd_p50_change",
            "p_loss",
            "cvar95_usd",
            "roi_multiple_p50",
            "irr_p50",
            "payback_months_p50",
            "cost_per_mtok_usd_p50",
            "operating_margin_p50",
        ),
    ),
    "calibration.csv": (
        ("system", "status", "p5", "p50", "p95", "band_low", "band_high"),
        ("p5", "p50", "p95", "band_low", "band_high", "ratio_to_band"),
    ),
    "claims.csv": (("p_holds",), ("p_holds", "p_holds_mcse", "point_value", "scenarios", "p5", "p50", "p95")),
    "monthly.parquet": (("system", "quantity", "month", *_Q), ("month",)),
}
ALL_PERCENTILES = ("summary.csv", "monthly.parquet")
# The manifest fields the report formats, with their JSON types where present (and those inside them).
MANIFEST_TYPES = {
    "scenarios": int,
    "systems": (list, type(None)),
    "precision": (dict, str, type(None)),
    "versions": (dict, type(None)),
    "seconds": (dict, type(None)),
    "status": (dict, type(None)),
    "quantiles": (dict, type(None)),
    "diagnostics": (dict, type(None)),
    "command": (list, type(None)),
    "merged_from": (list, type(None)),
    "warnings": (list, type(None)),
}


def _check_manifest(m: dict, folder: Path) -> dict:
    """The run's manifest if the report can show it; RunFolderError naming manifest.json if not."""
    problems = field_problems(
        m.get("seconds") or {}, (), dict.fromkeys(m.get("seconds") or {}, float), prefix="seconds."
    )
    problems += field_problems(m.get("status") or {}, (), dict.fromkeys(m.get("status") or {}, dict), prefix="status.")
    problems += field_problems(
        m.get("diagnostics") or {}, (), {"retained_draws": int, "chains": int}, prefix="diagnostics."
    )
    if problems:
        raise damaged(folder / "manifest.json", "; ".join(problems), folder)
    return m


def _check_table(table: pd.DataFrame, path: Path, folder: Path) -> pd.DataFrame:
    """`table` if it has what the report reads from it (READS); RunFolderError naming `path` if not."""
    need, numeric = READS[path.name]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise damaged(path, f"no column {', '.join(map(repr, missing))}", folder)
    if path.name in ALL_PERCENTILES:
        numeric = (*numeric, *(c for c in table.columns if isinstance(c, str) and c[:1] == "p" and c[1:].isdigit()))
    wrong = [c for c in dict.fromkeys(numeric) if c in table.columns and not pd.api.types.is_numeric_dtype(table[c])]
    if wrong and len(table):  # (an empty table's columns have no type)
        raise damaged(path, f"text where numbers belong, in column {', '.join(map(repr, wrong))}", folder)
    return table


def _read_table(folder: Path, name: str, where: Path | None = None) -> pd.DataFrame:
    """A table of a run folder (`where`: the folder it is in, if not the run folder), checked."""
    path = (where or folder) / name
    with reading(path, folder):
        table = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path, dtype=TEXT)
    return _check_table(table, path, folder)


def _claims_of(folder: Path) -> pd.DataFrame | None:
    """A claim's rows of the claims.csv beside its run folder, if that is what the parent holds
    (a file there that is not mcrisk's, or is damaged, is not this run's business: ignored)."""
    if not (folder.parent / "claims.csv").is_file():
        return None
    try:
        claims = _read_table(folder, "claims.csv", folder.parent)
    except RunFolderError:
        return None
    if "claim" in claims and (claims["claim"] == folder.name).any():
        return claims[claims["claim"] == folder.name]
    return None


def load_run(folder: str | Path) -> dict:
    """Every table of a run folder the report uses; RunFolderError if it is not a run folder, or
    one of its files is damaged or not what mcrisk wrote (naming the file)."""
    folder = Path(folder)
    check_folder(folder)
    if not (folder / "manifest.json").is_file():
        raise RunFolderError(
            f"{str(folder)!r} is not a run folder: it has no manifest.json (write one with mcrisk run)"
        )
    manifest = _check_manifest(
        read_manifest(folder / "manifest.json", folder, required=(), types=MANIFEST_TYPES), folder
    )
    summary, risk = _read_table(folder, "summary.csv"), _read_table(folder, "risk.csv")
    try:
        study = yaml12.load((folder / "study.yaml").read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError):
        study = {}
    systems = manifest.get("systems")
    if systems is not None and (
        not systems or not all(isinstance(x, str) for x in systems) or not set(systems) <= set(risk["system"])
    ):
        raise damaged(
            folder / "manifest.json",
            f"'systems' must list the systems of risk.csv by name, got {_shown(systems)}",
            folder,
        )
    run = {
        "folder": folder,
        "manifest": manifest,
        "summary": summary,
        "risk": risk,
        "study": study if isinstance(study, dict) else {},
        "systems": [str(s) for s in manifest.get("systems") or risk["system"]],
    }
    for name in OPTIONAL:  # a missing one gives a note in the report, a damaged one an error
        run[name.removesuffix(".csv")] = _read_table(folder, name) if (folder / name).exists() else None
    if run["claims"] is None:  # a claim's run folder
        run["claims"] = _claims_of(folder)
    run["monthly"] = _read_table(folder, "monthly.parquet") if (folder / "monthly.parquet").exists() else None
    run["scenarios"] = scenario_sample(folder, len(run["systems"]), listed_parts(folder, manifest))
    return run


def _unit_hash(index: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per scenario index (splitmix64), for subsampling."""
    z = index.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((z ^ (z >> np.uint64(31))) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def scenario_sample(
    folder: Path, n_systems: int, parts: list[Path] | None = None, limit: int = SAMPLE_ROWS
) -> pd.DataFrame | None:
    """At most about `limit` scenarios per system, with the report's columns; None if none were kept.

    The same scenarios for every system (a fixed hash of the scenario index), read part by part
    with only the columns needed, so memory stays bounded whatever N.
    """
    parts = sorted((folder / SCENARIOS_DIR).glob("part-*.parquet")) if parts is None else parts
    if not parts:
        return None
    with reading(parts[0], folder):
        names = pq.read_schema(parts[0]).names
    columns = ["scenario", "system", *(c for c in SCENARIO_COLUMNS if c in names)]
    rows = 0
    for part in parts:
        with reading(part, folder):
            rows += pq.ParquetFile(part).metadata.num_rows
    share = min(1.0, limit * max(n_systems, 1) / max(rows, 1))
    frames = []
    for part in parts:
        with reading(part, folder):
            t = pq.read_table(part, columns=columns).to_pandas()
        frames.append(t if share >= 1 else t[_unit_hash(t["scenario"].to_numpy()) < share])
    out = pd.concat(frames, ignore_index=True)
    out["system"] = out["system"].astype(str)
    out.attrs["share"] = share
    return out


# ----------------------------------------------------------------------------- the numbers behind the figures


def cost_components(summary: pd.DataFrame, systems: list[str]) -> pd.DataFrame:
    """$ per million tokens by component per system: mean component cost / mean tokens x 1e6 (a ratio of means)."""
    s = summary.set_index(["system", "metric"])["mean"]
    out = {}
    for system in systems:
        tokens = s.get((system, "tokens"), math.nan)
        out[system] = {label: s.get((system, m), math.nan) / tokens * 1e6 for m, label in fg.COMPONENTS}
    return pd.DataFrame.from_dict(out, orient="index").dropna(axis=1, how="all")


def margin_bins(rows: pd.DataFrame, bins: int = UTILIZATION_BINS, min_rows: int = 20) -> pd.DataFrame:
    """P10/P50/P90 of operating margin per system in equal-count bins of mean utilization."""
    ok = rows[np.isfinite(rows["mean_utilization"]) & np.isfinite(rows["operating_margin"])]
    if ok.empty:  # (every margin NaN or infinite: no utilization bin to draw)
        return pd.DataFrame(columns=["system", "bin", "utilization", "n", "p10", "p50", "p90"])
    edges = np.unique(np.quantile(ok["mean_utilization"], np.linspace(0, 1, bins + 1)))
    code = np.clip(np.searchsorted(edges, ok["mean_utilization"], side="right") - 1, 0, len(edges) - 2)
    g = ok.assign(bin=code).groupby(["system", "bin"])
    out = pd.DataFrame(
        {
            "utilization": g["mean_utilization"].median(),
            "n": g.size(),
            **{f"p{q}": g["operating_margin"].quantile(q / 100) for q in (10, 50, 90)},
        }
    ).reset_index()
    return out[out["n"] >= min_rows]


def payback_months(monthly: pd.DataFrame) -> dict[str, float]:
    """Per system, the first month where the P50 of cumulative cash flow is >= 0 (NaN if never)."""
    out = {}
    for system, m in monthly.groupby("system", observed=True):
        hit = m.sort_values("month").query("p50 >= 0")
        out[str(system)] = float(hit["month"].iloc[0]) if len(hit) else math.nan
    return out

"""What the report reads from a run folder: its tables, a bounded sample of its scenarios, and
the numbers behind the figures (cost per Mtok by component, margin by utilization, payback)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from . import figures as fg, yaml12
from .errors import RunFolderError
from .storage import SCENARIOS_DIR

SAMPLE_ROWS = 200_000  # scenarios per system read for densities and the utilization bins
UTILIZATION_BINS = 12
SCENARIO_COLUMNS = ("npv_usd", "roi_multiple", "operating_margin", "mean_utilization")
TEXT = {c: str for c in ("system", "system_a", "system_b", "stress", "input", "metric")}  # a system named 1 stays "1"
OPTIONAL = ("sensitivity.csv", "comparison.csv", "stress.csv", "breakeven.csv", "claims.csv")


# ----------------------------------------------------------------------------- reading the run folder


def _read_optional(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype=TEXT)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def load_run(folder: str | Path) -> dict:
    """Every table of a run folder the report uses; RunFolderError if it is not a run folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{str(folder)!r} is not a run folder (no such folder)")
    if not (folder / "manifest.json").is_file():
        raise RunFolderError(f"{str(folder)!r} is not a run folder: it has no manifest.json (write one with mcrisk run)")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        summary, risk = pd.read_csv(folder / "summary.csv", dtype=TEXT), pd.read_csv(folder / "risk.csv", dtype=TEXT)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read the run folder {str(folder)!r}: {exc}") from None
    try:
        study = yaml12.load((folder / "study.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        study = {}
    run = {"folder": folder, "manifest": manifest, "summary": summary, "risk": risk, "study": study,
           "systems": [str(s) for s in manifest.get("systems") or risk["system"]]}
    for name in OPTIONAL:
        run[name.removesuffix(".csv")] = _read_optional(folder, name)
    if run["claims"] is None and (folder.parent / "claims.csv").is_file():  # a claim's run folder
        claims = _read_optional(folder.parent, "claims.csv")
        if claims is not None and "claim" in claims and (claims["claim"] == folder.name).any():
            run["claims"] = claims[claims["claim"] == folder.name]
    try:
        run["monthly"] = pd.read_parquet(folder / "monthly.parquet") if (folder / "monthly.parquet").exists() else None
    except (OSError, ValueError):
        run["monthly"] = None
    run["scenarios"] = scenario_sample(folder, len(run["systems"]))
    return run


def _unit_hash(index: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per scenario index (splitmix64), for subsampling."""
    z = index.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((z ^ (z >> np.uint64(31))) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def scenario_sample(folder: Path, n_systems: int, limit: int = SAMPLE_ROWS) -> pd.DataFrame | None:
    """At most about `limit` scenarios per system, with the report's columns; None if none were kept.

    The same scenarios for every system (a fixed hash of the scenario index), read part by part
    with only the columns needed, so memory stays bounded whatever N.
    """
    parts = sorted((folder / SCENARIOS_DIR).glob("part-*.parquet"))
    if not parts:
        return None
    names = pq.read_schema(parts[0]).names
    columns = ["scenario", "system", *(c for c in SCENARIO_COLUMNS if c in names)]
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    share = min(1.0, limit * max(n_systems, 1) / max(rows, 1))
    frames = []
    for part in parts:
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
    edges = np.unique(np.quantile(ok["mean_utilization"], np.linspace(0, 1, bins + 1)))
    code = np.clip(np.searchsorted(edges, ok["mean_utilization"], side="right") - 1, 0, len(edges) - 2)
    g = ok.assign(bin=code).groupby(["system", "bin"])
    out = pd.DataFrame({
        "utilization": g["mean_utilization"].median(), "n": g.size(),
        **{f"p{q}": g["operating_margin"].quantile(q / 100) for q in (10, 50, 90)},
    }).reset_index()
    return out[out["n"] >= min_rows]


def payback_months(monthly: pd.DataFrame) -> dict[str, float]:
    """Per system, the first month where the P50 of cumulative cash flow is >= 0 (NaN if never)."""
    out = {}
    for system, m in monthly.groupby("system", observed=True):
        hit = m.sort_values("month").query("p50 >= 0")
        out[str(system)] = float(hit["month"].iloc[0]) if len(hit) else math.nan
    return out

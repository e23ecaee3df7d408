"""Stress tests and sweeps: the same scenarios under named overrides, side by side.

* A study's ``stress:`` section names overrides (``price-war: {market.token_price.annual_decline:
  0.9}``). ``mcrisk run`` runs the base case, then each stress on the same seed, scenario indices
  and sampler dimensions, and writes ``stress.csv`` (one row per stress and system) and each
  stress's own tables under ``stress/NAME/``.
* ``mcrisk sweep STUDY --set path=v1,v2 --set path=w1,w2`` runs every point of the grid the same
  way and writes ``sweep.csv``, a tidy table of grid point x system x key statistics.

Because every run shares the base case's draws, a difference between two rows comes from the
overrides, not from sampling noise in the inputs they leave alone.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable


from mcrisk.study import variants as ov
from mcrisk.errors import RunFolderError
from mcrisk.io.folder import RunFolder, write_json
from mcrisk.study.schema import Study, load_study

if TYPE_CHECKING:
    import pandas as pd

# (column, metric, statistic) read from summary.csv; then (column, risk.csv column).
SUMMARY_STATS = (
    ("npv_usd_mean", "npv_usd", "mean"),
    ("npv_usd_p5", "npv_usd", "p5"),
    ("npv_usd_p50", "npv_usd", "p50"),
    ("npv_usd_p95", "npv_usd", "p95"),
    ("roi_multiple_p5", "roi_multiple", "p5"),
    ("roi_multiple_p50", "roi_multiple", "p50"),
    ("irr_p50", "irr", "p50"),
    ("payback_months_p50", "payback_months", "p50"),
    ("cost_per_mtok_usd_p50", "cost_per_mtok_usd", "p50"),
    ("operating_margin_p50", "operating_margin", "p50"),
)
RISK_STATS = (("p_loss", "p_loss"), ("cvar95_usd", "cvar95_usd"))
STAT_COLUMNS = (
    "npv_usd_mean", "npv_usd_p5", "npv_usd_p50", "npv_usd_p95", "p_loss", "cvar95_usd",
    "roi_multiple_p5", "roi_multiple_p50", "irr_p50", "payback_months_p50", "cost_per_mtok_usd_p50",
    "operating_margin_p50",
)


def key_stats(summary: pd.DataFrame, risk: pd.DataFrame) -> pd.DataFrame:
    """One row per system (in the run's order): the statistics a stress or sweep table shows."""
    import pandas as pd

    s = summary.set_index(["system", "metric"])
    r = risk.set_index("system")
    rows = []
    for system in risk["system"]:
        row: dict[str, Any] = {"system": system}
        row.update({col: float(s.loc[(system, metric), stat]) for col, metric, stat in SUMMARY_STATS})
        row.update({col: float(r.loc[system, src]) for col, src in RISK_STATS})
        rows.append(row)
    return pd.DataFrame(rows, columns=["system", *STAT_COLUMNS])


def stress_table(base: tuple[pd.DataFrame, pd.DataFrame], stresses: Sequence[tuple[str, Mapping, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """`stress.csv`: the base case, then each (name, overrides, summary, risk), with the change of P50 NPV."""
    import pandas as pd

    base_stats = key_stats(*base)
    parts = [base_stats.assign(stress="base", overrides="")]
    for name, overrides, summary, risk in stresses:
        parts.append(key_stats(summary, risk).assign(stress=name, overrides=ov.describe(overrides)))
    table = pd.concat(parts, ignore_index=True)
    base_p50 = dict(zip(base_stats["system"], base_stats["npv_usd_p50"]))
    table["npv_usd_p50_change"] = table["npv_usd_p50"] - table["system"].map(base_p50)
    return table[["stress", "system", "overrides", *STAT_COLUMNS, "npv_usd_p50_change"]]


def run_stresses(study: Study, raw: Mapping, where: Path, opts: dict, dims: Sequence[str], progress=None) -> list[tuple[str, Mapping, pd.DataFrame, pd.DataFrame]]:
    """Run each stress of `study` into `where/NAME` on the base case's draws; return their tables."""
    from mcrisk.workflows.run import run_study

    shutil.rmtree(where, ignore_errors=True)  # a resumed run starts its stresses again
    where.mkdir(parents=True)
    out = []
    for name, overrides in study.stress.items():
        variant = ov.apply(raw, overrides, label=f"stress.{name}")
        result = run_study(
            variant, out=where / name, scenarios=opts["scenarios"], seed=opts["seed"], chunk_size=opts["chunk_size"],
            # No monthly bands (stress.csv does not use them; they were 0.7 s of each 200k-scenario
            # stress on a 2-core CPU); the simulate program is the base case's all the same.
            precision=opts["precision"], write_scenarios=False, monthly=False,
            diagnostic_draws=0,
            sampler_dims=dims, progress=progress,
        )
        out.append((name, overrides, result.summary, result.risk))
    return out


def _cell(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else json.dumps(v)


def run_sweep(
    study: str | Path | Mapping | Study | None,
    assignments: Sequence[tuple[str, Sequence[Any]]],
    *,
    out: str | Path | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    precision: str | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    point_done: Callable[[int, int, Mapping], None] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Run every point of the grid of `assignments` ((path, values) pairs) with common random
    numbers; write `sweep.csv` (and each point's tables under `points/NNN/`) into one folder."""
    import pandas as pd

    from mcrisk.engine.plan import make_plan
    from mcrisk.workflows.run import _check_counts, run_study
    from mcrisk.study.schema import default_study_path

    t0 = time.perf_counter()
    source = default_study_path() if study is None else study
    base = load_study(source)
    raw = ov.raw_study(source)
    if not assignments:
        raise RunFolderError("a sweep needs at least one --set PATH=V1,V2,...")
    _check_counts(scenarios, seed, chunk_size, precision)
    points = ov.grid(assignments)
    variants = [ov.apply(raw, p, label="--set") for p in points]  # every point valid before any runs
    sim = base.simulation
    n, s = scenarios or sim.scenarios, sim.seed if seed is None else seed
    prec = precision or sim.precision
    dims = make_plan(base, scenarios=n, seed=s, precision=prec, chunk_size=chunk_size, monthly=False).dims
    folder = RunFolder(Path(out) if out is not None else Path("outputs") / f"{base.name}-sweep", force=force)
    try:
        folder.write_study(base.to_yaml())
        rows = []
        for k, (point, variant) in enumerate(zip(points, variants)):
            result = run_study(variant, out=folder.path(f"points/{k:03d}"), scenarios=n, seed=s, chunk_size=chunk_size,
                               precision=prec, write_scenarios=False, monthly=False, sampler_dims=dims, progress=progress)
            stats = key_stats(result.summary, result.risk)
            for path, value in point.items():
                stats[path] = _cell(value)
            stats["point"] = k
            rows.append(stats)
            if point_done is not None:
                point_done(k, len(points), point)
        paths = [p for p, _ in assignments]
        table = pd.concat(rows, ignore_index=True)[["point", *paths, "system", *STAT_COLUMNS]]
        table.to_csv(folder.path("sweep.csv"), index=False)
        write_json(folder.path("manifest.json"), {
            "study": base.name, "study_sha256": base.digest(), "seed": s, "scenarios": n, "precision": prec,
            "grid": [{"path": p, "values": [_cell(v) for v in vals]} for p, vals in assignments],
            "points": [{"point": k, "overrides": ov.describe(p), "folder": f"points/{k:03d}"} for k, p in enumerate(points)],
            "outputs": {"sweep": "sweep.csv", "study": "study.yaml"},
            "seconds": {"total": round(time.perf_counter() - t0, 4)},
        })
        return folder.publish(), table
    except BaseException:
        folder.discard()
        raise

"""A run's tables, ArviZ data and manifest from its host-side summaries; the folder published."""

from __future__ import annotations

import platform
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np

from mcrisk.engine.options import RunOptions
from mcrisk.engine.plan import Plan
from mcrisk.engine.state import HostSummaries
from mcrisk.engine.timings import Timings
from mcrisk.errors import RunFolderError, StudyError
from mcrisk.io import netcdf
from mcrisk.io.folder import SCENARIOS_DIR, RunFolder
from mcrisk.io.integrity import record_files
from mcrisk.io.jsonfiles import write_json
from mcrisk.stats import risk
from mcrisk.stats.bands import MONTHLY_SKETCH, monthly_table
from mcrisk.stats.breakeven import breakeven_table
from mcrisk.stats.calibration import calibration_table
from mcrisk.stats.convergence import explain
from mcrisk.study.plausibility import plausibility_warnings
from mcrisk.study.schema import Study
from mcrisk.workflows import display
from mcrisk.workflows.stress import stress_table

if TYPE_CHECKING:
    import pandas as pd

# The sensitivity and comparison tables of a run come from its first this many scenarios (all of
# them in smaller runs), which bounds their cost; `mcrisk analyze` reads them all.
ANALYSIS_SCENARIOS = 1 << 16


@dataclass
class RunResult:
    """What a run produced: the folder and the tables it wrote (``mcrisk.open_run(result.folder)``
    reads the rest: the scenario rows, the summary draws). Its repr is a short table."""

    folder: Path
    summary: pd.DataFrame
    risk: pd.DataFrame
    manifest: dict
    study: Study = field(repr=False)
    breakeven: pd.DataFrame | None = None
    stress: pd.DataFrame | None = None
    monthly: pd.DataFrame | None = field(default=None, repr=False)
    calibration: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return display.text(self._glance())

    def _repr_html_(self) -> str:
        return display.to_html(self._glance())

    def _glance(self) -> display.Glance:
        return display.glance("mcrisk.RunResult", self.manifest, self.summary, self.risk, self.folder)

    def headline(self) -> pd.DataFrame:
        """The decision-first headline, one row per system and the portfolio (mcrisk.stats.headline)."""
        from mcrisk.stats.headline import headline_table

        return headline_table(self.summary, self.risk, self.calibration)


def versions() -> dict[str, str]:
    """The versions of mcrisk, its main dependencies and Python, for the manifest."""
    out = {}
    for pkg in ("mcrisk", "jax", "jaxlib", "numpy", "arviz", "pyarrow", "pandas", "scipy", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["python"] = platform.python_version()
    return out


def _analyze(folder: RunFolder) -> dict:
    """sensitivity.csv and comparison.csv from the run's first ANALYSIS_SCENARIOS scenarios: the
    manifest's entries for them (a file name, or None and why in ``analysis_skipped``: a run
    written with --columns may lack what a table needs) and the scenarios they cover."""
    from mcrisk.workflows.analyze import analyze_run  # (pandas: imported at a run's end, not when the command starts)

    try:
        done = analyze_run(folder.tmp, max_scenarios=ANALYSIS_SCENARIOS, require_metric=False)
    except (
        StudyError,
        RunFolderError,
        ValueError,
    ) as exc:  # --columns kept nothing it can use; never lose the run over it
        return {"sensitivity": None, "comparison": None, "analysis_skipped": str(exc).splitlines()[0]}
    out = {key: (done.paths[key].name if key in done.paths else None) for key in ("sensitivity", "comparison")}
    if done.skipped:
        out["analysis_skipped"] = "; ".join(f"no {key}.csv: {why}" for key, why in done.skipped.items())
    return out | {"analysis_scenarios": done.scenarios}


@dataclass
class _Tables:
    """A run's tables from its host summaries (the manifest's `extra` with convergence explained)."""

    summary: pd.DataFrame
    risk: pd.DataFrame
    breakeven: pd.DataFrame
    monthly: pd.DataFrame | None
    extra: dict
    calibration: pd.DataFrame | None = None


def finish(
    st: Study,
    plan: Plan,
    folder: RunFolder,
    opts: RunOptions,
    state: HostSummaries,
    times: Timings,
    t_total: float,
    extra: dict,
    stresses: list | None = None,
    diag_future: Future | None = None,
) -> RunResult:
    """Summaries, risk table, ArviZ data and manifest from the host reducers; publish the folder."""
    n_total = extra.get("scenarios_run") or opts.scenarios
    t0 = time.perf_counter()
    tables = _tables(st, plan, state, extra, n_total, diag_future)
    times["summarize"] += time.perf_counter() - t0
    analysis = None
    if opts.write_scenarios and opts.analyze and not extra.get("shard"):
        t0 = time.perf_counter()
        analysis = _analyze(folder)
        times["analyze"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stress = stress_table((tables.summary, tables.risk), stresses) if stresses is not None else None
    _write(st, plan, folder, opts, tables, stress, state.retained, n_total)
    times["write"] += time.perf_counter() - t0
    manifest = _manifest(
        st, plan, opts, tables, stress, analysis, state.retained.shape[1], times, time.perf_counter() - t_total, n_total
    )
    # Last, what the folder holds, content-addressed (mcrisk verify checks it): its parts and files.
    manifest["parts"] = manifest.pop("parts", {})
    manifest["files"] = record_files(folder.tmp)
    write_json(folder.path("manifest.json"), manifest, strict=True)
    path = folder.publish()
    return RunResult(
        folder=path,
        summary=tables.summary,
        risk=tables.risk,
        manifest=manifest,
        study=st,
        breakeven=tables.breakeven,
        monthly=tables.monthly,
        stress=stress,
        calibration=tables.calibration,
    )


def _tables(
    st: Study, plan: Plan, state: HostSummaries, extra: dict, n_total: int, diag_future: Future | None
) -> _Tables:
    host_state, draws = state.host, state.retained
    # As for the retained draws, then restated for all N (the same arithmetic whether it ran in
    # the background during the run or here, after a resume or a merge).
    n_diag = draws.shape[1]
    diag = diag_future.result() if diag_future is not None else risk.diagnostics(draws, n_diag)
    diag = risk.rescale(diag, n_diag, n_total)
    summary = risk.summary_table(host_state, plan.row_systems, plan.metrics, diag, plan.sketch)
    tail_names = [n for n, _, _ in plan.tail_counts]
    risk_df = risk.risk_table(host_state, state.tails, tail_names, plan.row_systems, plan.metrics, plan.sketch)
    breakeven = breakeven_table(
        st, host_state, state.tails[tail_names.index("npv_below_0")], plan.row_systems, plan.sketch, plan.metrics
    )
    monthly = monthly_table(state.monthly, plan.systems, plan.months) if state.monthly is not None else None
    if extra.get("convergence"):  # why a target was not met, for the manifest and the terminal
        extra = dict(extra, convergence=explain(extra["convergence"], host_state, plan.row_systems, plan.sketch))
    calibration = calibration_table(st, summary, plan.row_systems)
    return _Tables(summary, risk_df, breakeven, monthly, extra, calibration)


def _write(
    st: Study,
    plan: Plan,
    folder: RunFolder,
    opts: RunOptions,
    tables: _Tables,
    stress: pd.DataFrame | None,
    draws: np.ndarray,
    n_total: int,
) -> None:
    """The tables as CSV and Parquet, and the retained draws (with their drawn inputs) as netCDF, into the partial folder."""
    tables.summary.to_csv(folder.path("summary.csv"), index=False)
    tables.risk.to_csv(folder.path("risk.csv"), index=False)
    tables.breakeven.to_csv(folder.path("breakeven.csv"), index=False)
    if tables.calibration is not None:
        tables.calibration.to_csv(folder.path("calibration.csv"), index=False)
    if stress is not None:
        stress.to_csv(folder.path("stress.csv"), index=False)
    if tables.monthly is not None:
        tables.monthly.to_parquet(folder.path("monthly.parquet"), index=False)
    attrs = {
        "mcrisk_study_sha256": st.digest(),
        "mcrisk_seed": opts.seed,
        "mcrisk_scenarios": n_total,
        "mcrisk_retained_draws": int(draws.shape[1]),
    }
    if draws.shape[1] > 0:
        n, S = draws.shape[1], len(plan.row_systems)
        metrics = {m: draws[i * S : (i + 1) * S] for i, m in enumerate(plan.metrics)}
        inputs = netcdf.inputs_from_rows(folder.path(SCENARIOS_DIR), n, plan.row_systems)
        netcdf.write_draws(folder.path("summary.nc"), metrics, inputs, plan.row_systems, attrs)


def _manifest(
    st: Study,
    plan: Plan,
    opts: RunOptions,
    tables: _Tables,
    stress: pd.DataFrame | None,
    analysis: dict | None,
    retained: int,
    times: Timings,
    wall: float,
    n_total: int,
) -> dict:
    """manifest.json: what ran, with which options, where, the outputs, and where the time went."""
    extra, monthly = tables.extra, tables.monthly
    status = {
        f"{r.system}.{r.metric}": {"nan": r.n_nan, "posinf": r.n_posinf, "neginf": r.n_neginf}
        for r in tables.summary.itertuples()
        if r.n_nan or r.n_posinf or r.n_neginf
    }
    store = np.float64 if opts.precision == "float64" else np.float32
    return {
        "study": st.name,
        "study_sha256": st.digest(),
        "seed": opts.seed,
        "scenarios": n_total,
        "horizon_months": plan.months,
        "sampler": st.simulation.sampler,
        "systems": list(plan.row_systems),
        "precision": {"paths": opts.precision, "sums": "float64", "stored": np.dtype(store).name},
        **extra,
        "options": opts.record(),
        "devices": [str(d) for d in jax.local_devices()],
        "processes": {"index": jax.process_index(), "count": jax.process_count()} if jax.process_count() > 1 else None,
        "backend": jax.default_backend(),
        "versions": versions(),
        "platform": platform.platform(),
        "command": sys.argv if sys.argv and sys.argv[0].endswith("mcrisk") else None,
        "outputs": {
            "scenarios": SCENARIOS_DIR if opts.write_scenarios else None,
            "summary": "summary.csv",
            "risk": "risk.csv",
            "breakeven": "breakeven.csv",
            "calibration": "calibration.csv" if tables.calibration is not None else None,
            "stress": "stress.csv" if stress is not None else None,
            **(analysis or {"sensitivity": None, "comparison": None}),
            "monthly": "monthly.parquet" if monthly is not None else None,
            "inference_data": "summary.nc" if retained else None,
            "study": "study.yaml",
        },
        "quantiles": {
            "method": "log-bucket sketch over all scenarios (inverted-CDF rank)",
            "relative_error": plan.sketch.rel_accuracy,
            "monthly_relative_error": MONTHLY_SKETCH.rel_accuracy if monthly is not None else None,
            "monthly_method": f"log-bucket sketch over the first {extra.get('monthly_scenarios')} scenarios"
            if monthly is not None
            else None,
        },
        "diagnostics": {"retained_draws": retained, "chains": risk.CHAINS, "scaled_to": n_total},
        "status": status,
        "warnings": [{"path": p.path, "message": p.message} for p in plausibility_warnings(st)],
        "seconds": {k: round(v, 4) for k, v in times.seconds().items()} | {"total": round(wall, 4)},
        "scenario_months_per_second": n_total * plan.months / wall
        if wall > 0 and not extra.get("merged_from")
        else None,
    }

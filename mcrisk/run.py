"""`run_study`: a study in, a run folder out (scenario Parquet, summaries, ArviZ data, manifest)."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa
from jax.sharding import NamedSharding, PartitionSpec

from . import reduce as red
from . import risk
from .engine import (
    METRICS,
    PLAIN_SYSTEM_FIELDS,
    TAIL_COUNTS,
    Plan,
    Sample,
    draw_inputs,
    make_plan,
    reduce_chunk,
    reduce_init,
    shock_streams,
    simulate,
)
from .processes import Shocks
from .sampling import root_key, shock_normals
from .errors import Problem, StudyError
from .storage import SCENARIOS_FILE, RunFolder, ScenarioWriter, write_json
from .study import Study, load_study

DIAGNOSTIC_DRAWS = 1 << 14  # scenarios kept on the host for ArviZ (ESS, MCSE of p5, R-hat)
Progress = Callable[[int, int], None]


@dataclass
class RunResult:
    """What a run produced: the folder and the tables it wrote."""

    folder: Path
    summary: pd.DataFrame
    risk: pd.DataFrame
    manifest: dict
    study: Study = field(repr=False)

    def headline(self) -> pd.DataFrame:
        """P5/P50/P95 of the headline metrics and P(loss), one row per system."""
        rows = []
        s = self.summary.set_index(["system", "metric"])
        for system in self.risk["system"]:
            row: dict[str, Any] = {"system": system}
            for metric in ("npv_usd", "roi_multiple", "operating_margin", "cost_per_mtok_usd"):
                for p in ("p5", "p50", "p95"):
                    row[f"{metric}:{p}"] = s.loc[(system, metric), p]
            row["p_loss"] = float(self.risk.set_index("system").loc[system, "p_loss"])
            rows.append(row)
        return pd.DataFrame(rows)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("mcrisk", "jax", "jaxlib", "numpy", "arviz", "pyarrow", "pandas", "scipy", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["python"] = platform.python_version()
    return out


def _check_counts(scenarios: int | None, seed: int | None, chunk_size: int | None, precision: str | None) -> None:
    problems = []
    if scenarios is not None and not (1 <= scenarios <= 2**32 - 1):
        problems.append(Problem("--scenarios", f"must be between 1 and 4294967295, got {scenarios}"))
    if seed is not None and not (0 <= seed <= 2**63 - 1):
        problems.append(Problem("--seed", f"must be a non-negative integer, got {seed}"))
    if chunk_size is not None and not (1 <= chunk_size <= 1 << 26):
        problems.append(Problem("--chunk-size", f"must be between 1 and 67108864, got {chunk_size}"))
    if precision is not None and precision not in ("float32", "float64"):
        problems.append(Problem("--precision", f"must be float32 or float64, got {precision!r}"))
    if problems:
        raise StudyError(problems, "options")


def _columns(plan: Plan, storage_dtype) -> list[pa.Field]:
    f = [pa.field("scenario", pa.int64()), pa.field("system", pa.dictionary(pa.int32(), pa.string()))]
    f += [pa.field(m, pa.from_numpy_dtype(storage_dtype)) for m in METRICS]
    shared = [i for i in plan.inputs if i.system is None]
    own = list(dict.fromkeys(i.column for i in plan.inputs if i.system is not None))
    f += [pa.field(i.column, pa.from_numpy_dtype(storage_dtype)) for i in shared]
    f += [pa.field(c, pa.from_numpy_dtype(storage_dtype)) for c in own]
    f += [pa.field(f"system.{p}", pa.int64() if p != "depreciation_years" else pa.float64()) for p in PLAIN_SYSTEM_FIELDS]
    return f


def _rows(plan: Plan, start: int, valid: int, out: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray], dtype) -> dict:
    """One chunk as columns of scenario-major rows (scenario 0: every system, scenario 1: ...)."""
    S = len(plan.systems)
    cols: dict[str, Any] = {
        "scenario": np.repeat(np.arange(start, start + valid, dtype=np.int64), S),
        "system": pa.DictionaryArray.from_arrays(
            pa.array(np.tile(np.arange(S, dtype=np.int32), valid)), pa.array(list(plan.systems))
        ),
    }
    for m in METRICS:
        cols[m] = out[m][:, :valid].T.reshape(-1)

    def value(path: str) -> np.ndarray:
        if path in values:
            return values[path][:valid]
        return np.full(valid, plan.fixed[path], dtype)

    for inp in plan.inputs:
        if inp.system is None:
            cols[inp.column] = np.repeat(value(inp.path), S)
        elif inp.column not in cols:
            per = []
            for s in plan.systems:
                path = f"systems.{s}.{inp.field}"
                per.append(value(path) if (path in values or path in plan.fixed) else np.full(valid, np.nan, dtype))
            cols[inp.column] = np.stack(per, axis=1).reshape(-1)
    for p in PLAIN_SYSTEM_FIELDS:
        cols[f"system.{p}"] = np.tile(np.asarray(plan.plain[p]), valid)
    return cols


class _Stage:
    """A jitted stage compiled on its first call (compile time booked apart) and timed per call."""

    def __init__(self, fn: Callable, name: str, times: dict, donate: int | None = None):
        self.jitted = jax.jit(fn, donate_argnums=donate) if donate is not None else jax.jit(fn)
        self.name, self.times, self.compiled = name, times, None

    def __call__(self, *args):
        if self.compiled is None:
            t0 = time.perf_counter()
            self.compiled = self.jitted.lower(*args).compile()
            self.times["compile"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = jax.block_until_ready(self.compiled(*args))
        self.times[self.name] += time.perf_counter() - t0
        return out


def run_study(
    study: str | Path | Mapping | Study | None = None,
    *,
    out: str | Path | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    precision: str | None = None,
    force: bool = False,
    write_scenarios: bool = True,
    diagnostic_draws: int = DIAGNOSTIC_DRAWS,
    progress: Progress | None = None,
) -> RunResult:
    """Simulate a study and write its run folder; return the summary and risk tables.

    `study` is a YAML path, a dict, a Study, or None for the embedded default study. Options
    override the study's `simulation` section. Nothing is written if the study is invalid
    (StudyError) or the folder exists without `force` (RunFolderError).
    """
    from .study import default_study_path

    t_total = time.perf_counter()
    st = load_study(default_study_path() if study is None else study)
    _check_counts(scenarios, seed, chunk_size, precision)
    sim = st.simulation
    n_total = scenarios or sim.scenarios
    seed = sim.seed if seed is None else seed
    precision = precision or sim.precision
    folder = RunFolder(Path(out) if out is not None else Path("outputs") / st.name, force=force)
    try:
        result = _execute(st, folder, n_total, seed, precision, chunk_size, write_scenarios, diagnostic_draws, progress, t_total)
    except BaseException:
        folder.discard()
        raise
    return result


def _execute(st, folder, n_total, seed, precision, chunk_size, write_scenarios, n_diag, progress, t_total) -> RunResult:
    times = dict.fromkeys(("plan", "compile", "sample", "simulate", "summarize", "transfer", "write"), 0.0)
    t0 = time.perf_counter()
    plan = make_plan(st, scenarios=n_total, seed=seed, precision=precision, chunk_size=chunk_size)
    C = plan.chunk
    store = np.float64 if precision == "float64" else np.float32
    sharding = NamedSharding(plan.mesh, PartitionSpec("scenarios"))
    digest = st.digest()
    meta = {"mcrisk.study_sha256": digest, "mcrisk.seed": seed, "mcrisk.version": _versions()["mcrisk"], "mcrisk.scenarios": n_total}
    writer = None
    if write_scenarios:
        schema = pa.schema(_columns(plan, store))
        writer = ScenarioWriter(folder.path(SCENARIOS_FILE), schema, meta)
    times["plan"] = time.perf_counter() - t0

    def to_host(out, draw):
        metrics = {m: out[m].astype(store) for m in METRICS}
        return metrics, {k: v.astype(store) for k, v in draw.values.items()}

    inputs_s = _Stage(lambda idx: draw_inputs(plan, idx), "sample", times)
    shocks_s = _Stage(lambda idx, sid: shock_normals(root_key(seed), idx, sid, plan.months, plan.dtype), "sample", times)
    shock_ids = [None if s is None else jnp.uint32(s) for s in shock_streams(plan)]
    simulate_s = _Stage(lambda d: simulate(plan, d, C), "simulate", times)
    reduce_s = _Stage(lambda acc, o, m: reduce_chunk(plan, acc, o, m), "summarize", times, donate=0)
    host_s = _Stage(to_host, "transfer", times)

    acc = reduce_init(plan)
    host_state: red.HostState | None = None
    n_diag = min(n_total, max(n_diag, 0))
    retained: list[np.ndarray] = []
    since_flush = 0
    for start in range(0, n_total, C):
        valid = min(C, n_total - start)
        idx = jax.device_put(np.arange(start, start + C, dtype=np.uint32), sharding)
        mask = jax.device_put(np.arange(start, start + C) < n_total, sharding)
        draw = Sample(inputs_s(idx), Shocks(*(None if s is None else shocks_s(idx, s) for s in shock_ids)))
        out = simulate_s(draw)
        acc = reduce_s(acc, out, mask)
        since_flush += C
        if since_flush > 2**31 - 2 * C:  # int32 histogram bins: move them to the host in time
            host_state = red.merge(host_state, acc.state) if host_state is not None else red.to_host(acc.state)
            acc = acc._replace(state=red.init_state(plan.n_series, plan.sketch))
            since_flush = 0
        if writer is not None or start < n_diag:
            casted = host_s(out, draw)
            t0 = time.perf_counter()
            metrics_h, values_h = jax.device_get(casted)
            times["transfer"] += time.perf_counter() - t0
            if start < n_diag:
                k = min(valid, n_diag - start)
                full = jax.device_get({m: out[m][:, :k] for m in METRICS})
                retained.append(np.stack([full[m] for m in METRICS]).reshape(plan.n_series, k))
            if writer is not None:
                t0 = time.perf_counter()
                cols = _rows(plan, start, valid, metrics_h, values_h, store)
                times["write"] += time.perf_counter() - t0
                writer.put(cols)  # waits only if the writer is two chunks behind
        del draw, out
        if progress is not None:
            progress(start + valid, n_total)

    if writer is not None:
        writer.close()
        times["write"] += writer.busy_seconds  # encoding in the background thread
    t0 = time.perf_counter()
    final = red.to_host(acc.state)
    host_state = red.merge(host_state, final) if host_state is not None else final
    tails = np.asarray(jax.device_get(acc.tails))
    draws = np.concatenate(retained, axis=1) if retained else np.zeros((plan.n_series, 0))
    diag = risk.diagnostics(draws, n_total)
    summary = risk.summary_table(host_state, plan.systems, METRICS, diag, plan.sketch)
    risk_df = risk.risk_table(host_state, tails, [n for n, _, _ in TAIL_COUNTS], plan.systems, METRICS, plan.sketch)
    times["summarize"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    summary.to_csv(folder.path("summary.csv"), index=False)
    risk_df.to_csv(folder.path("risk.csv"), index=False)
    attrs = {"mcrisk_study_sha256": digest, "mcrisk_seed": seed, "mcrisk_scenarios": n_total, "mcrisk_retained_draws": int(draws.shape[1])}
    if draws.shape[1] > 0:
        risk.inference_data(draws, plan.systems, METRICS, attrs).to_netcdf(str(folder.path("summary.nc")), engine="h5netcdf")
    folder.path("study.yaml").write_text(st.to_yaml())
    times["write"] += time.perf_counter() - t0
    wall = time.perf_counter() - t_total
    status = {
        f"{r.system}.{r.metric}": {"nan": r.n_nan, "posinf": r.n_posinf, "neginf": r.n_neginf}
        for r in summary.itertuples()
        if r.n_nan or r.n_posinf or r.n_neginf
    }
    manifest = {
        "study": st.name,
        "study_sha256": digest,
        "seed": seed,
        "scenarios": n_total,
        "horizon_months": plan.months,
        "sampler": st.simulation.sampler,
        "systems": list(plan.systems),
        "precision": {"paths": precision, "sums": "float64", "stored": np.dtype(store).name},
        "chunk_size": C,
        "chunks": -(-n_total // C),
        "devices": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "versions": _versions(),
        "platform": platform.platform(),
        "command": sys.argv if sys.argv and sys.argv[0].endswith("mcrisk") else None,
        "outputs": {
            "scenarios": SCENARIOS_FILE if write_scenarios else None,
            "summary": "summary.csv",
            "risk": "risk.csv",
            "inference_data": "summary.nc" if draws.shape[1] else None,
            "study": "study.yaml",
        },
        "quantiles": {
            "method": "log-bucket sketch over all scenarios (inverted-CDF rank)",
            "relative_error": plan.sketch.rel_accuracy,
        },
        "diagnostics": {"retained_draws": int(draws.shape[1]), "chains": risk.CHAINS, "scaled_to": n_total},
        "status": status,
        "seconds": {k: round(v, 4) for k, v in times.items()} | {"total": round(wall, 4)},
        "scenario_months_per_second": n_total * plan.months / wall if wall > 0 else None,
    }
    write_json(folder.path("manifest.json"), manifest)
    path = folder.publish()
    return RunResult(folder=path, summary=summary, risk=risk_df, manifest=manifest, study=st)

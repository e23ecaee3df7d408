"""`run_study`: a study in, a run folder out (scenario Parquet, summaries, ArviZ data, manifest)."""

from __future__ import annotations

import difflib
import json
import platform
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa
from jax.sharding import NamedSharding, PartitionSpec

from . import reduce as red
from . import risk
from .bands import monthly_table
from .breakeven import breakeven_table
from .convergence import mcse, parse_target, series_of
from .overrides import apply as apply_overrides
from .overrides import describe, raw_study
from .stress import run_stresses, stress_table
from .engine import (
    METRICS,
    MONTH_KERNELS,
    MONTHLY_SCENARIOS,
    MONTHLY_SKETCH,
    PLAIN_SYSTEM_FIELDS,
    TAIL_COUNTS,
    Plan,
    Sample,
    chunk_indices,
    draw_inputs,
    fixed_values,
    make_plan,
    monthly_values,
    on_accelerator,
    reduce_bands,
    reduce_chunk,
    reduce_init,
    sample_values,
    shock_streams,
    simulate,
)
from .processes import Shocks
from .sampling import make_sampler, root_key, shock_normals, stream_id
from .errors import Problem, RunFolderError, StudyError
from .programs import Stage, compile_all
from .runstate import checkpoint_arrays, flush, state_from
from .storage import SCENARIOS_DIR, SHARD_STATE, RunFolder, ScenarioWriter, load_checkpoint, save_checkpoint, scenario_columns, scenario_fields, write_json
from .study import Study, load_study

DIAGNOSTIC_DRAWS = 1 << 14  # scenarios kept on the host for ArviZ (ESS, MCSE of p5, R-hat)
# Reducers move to the host, and a checkpoint is written, every this many scenarios (rounded
# to whole chunks). The boundaries depend only on the options, so a resumed run does the same
# float64 arithmetic as an uninterrupted one. A checkpoint costs about 0.25 s (65 MB of sketches
# to the host and to disk): every 4M scenarios is about a minute of work on a 2-core CPU, and
# every 128M a few seconds on a GPU (where 4M had made checkpoints a fifth of a 1e8 run).
CHECKPOINT_SCENARIOS = 1 << 22
CHECKPOINT_SCENARIOS_ACCELERATOR = 1 << 27
# The sensitivity and comparison tables of a run come from its first this many scenarios (all of
# them in smaller runs), which bounds their cost; `mcrisk analyze` reads them all.
ANALYSIS_SCENARIOS = 1 << 16
Progress = Callable[[int, int], None]


@dataclass
class RunResult:
    """What a run produced: the folder and the tables it wrote."""

    folder: Path
    summary: pd.DataFrame
    risk: pd.DataFrame
    manifest: dict
    study: Study = field(repr=False)
    breakeven: pd.DataFrame | None = None
    stress: pd.DataFrame | None = None
    monthly: pd.DataFrame | None = field(default=None, repr=False)

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


def _check_counts(scenarios, seed, chunk_size, precision, checkpoint_every=None, shard=None, monthly_scenarios=None,
                  month_kernel="scan") -> None:
    problems = []
    if month_kernel not in MONTH_KERNELS:
        problems.append(Problem("--month-kernel", f"must be one of {', '.join(MONTH_KERNELS)}, got {month_kernel!r}"))
    if monthly_scenarios is not None and not (isinstance(monthly_scenarios, int) and monthly_scenarios >= 1):
        problems.append(Problem("--monthly-scenarios", f"must be a whole number >= 1 (or all), got {monthly_scenarios!r}"))
    if shard is not None and not (len(shard) == 2 and 1 <= shard[1] and 0 <= shard[0] < shard[1]):
        problems.append(Problem("--shard", f"must be i/k with 0 <= i < k, got {shard}"))
    if scenarios is not None and not (1 <= scenarios <= 2**32 - 1):
        problems.append(Problem("--scenarios", f"must be between 1 and 4294967295, got {scenarios}"))
    if seed is not None and not (0 <= seed <= 2**63 - 1):
        problems.append(Problem("--seed", f"must be a non-negative integer, got {seed}"))
    if chunk_size is not None and not (1 <= chunk_size <= 1 << 26):
        problems.append(Problem("--chunk-size", f"must be between 1 and 67108864, got {chunk_size}"))
    if checkpoint_every is not None and checkpoint_every < 1:
        problems.append(Problem("--checkpoint-every", f"must be >= 1 chunk, got {checkpoint_every}"))
    if precision is not None and precision not in ("float32", "float64"):
        problems.append(Problem("--precision", f"must be float32 or float64, got {precision!r}"))
    if problems:
        raise StudyError(problems, "options")


def _check_output_options(st: Study, columns, sample_fraction) -> None:
    problems = []
    if sample_fraction is not None and not (0.0 < sample_fraction <= 1.0):
        problems.append(Problem("--sample-fraction", f"must be in (0, 1], got {sample_fraction}"))
    if columns is not None:
        known = {*METRICS, *(i.column for i in st.inputs()), *(f"system.{p}" for p in PLAIN_SYSTEM_FIELDS)}
        for c in columns:
            if c not in known and c not in ("scenario", "system"):
                close = difflib.get_close_matches(c, sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(Problem("--columns", f"unknown column {c!r}{hint}"))
    if problems:
        raise StudyError(problems, "options")


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
    checkpoint_every: int | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    columns: Sequence[str] | None = None,
    sample_fraction: float | None = None,
    monthly: bool = True,
    monthly_scenarios: int | None = MONTHLY_SCENARIOS,
    month_kernel: str = "scan",
    analyze: bool = True,
    stress: bool = True,
    sampler_dims: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    target_mcse: str | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Simulate a study and write its run folder; return the summary and risk tables.

    `study` is a YAML path, a dict, a Study, or None for the embedded default study. Options
    override the study's `simulation` section; `checkpoint_every` is in chunks. Nothing is
    written if the study is invalid (StudyError) or the folder exists without `force`
    (RunFolderError). An interrupted run (Ctrl-C, SIGTERM, SIGKILL) leaves `.NAME.partial`
    beside `out`; `resume=True` continues it from its last checkpoint and produces the same
    outputs as an uninterrupted run (its study and options come from the partial folder).
    `shard=(i, k)` runs the i-th of k disjoint, contiguous slices of the chunks (for job
    arrays); `merge_runs` combines the k shard folders into the run a single job would write.
    `target_mcse` ('METRIC:STAT:VALUE') stops at the first chunk where that MCSE is met for
    every system, `scenarios` being the maximum (see mcrisk.convergence).
    `overrides` (dotted study path -> value, `--set`) change the study before it runs; the run
    folder's study.yaml is the study as run. A study's `stress:` section runs after the base
    case on the same draws (stress.csv) unless `stress=False`. `sampler_dims` are a base run's sampler dimensions,
    for variants that must share its draws.
    `columns` keeps only those Parquet columns (scenario and system always stay) and
    `sample_fraction` only a fixed pseudo-random share of the scenarios (by index, so the same
    scenarios whatever the chunking); summaries always cover every scenario.
    """
    from .study import default_study_path

    t_total = time.perf_counter()
    # ArviZ takes about a second to import and is needed only at the end: import it meanwhile.
    threading.Thread(target=risk.warm_imports, name="mcrisk-imports", daemon=True).start()
    if resume:
        if out is None:
            raise RunFolderError("--resume needs the run folder of the interrupted run (--out DIR)")
        folder = RunFolder(out, resume=True)
        meta, _ = load_checkpoint(folder.tmp)
        st = load_study(folder.path("study.yaml"))
        if study is not None and load_study(study).digest() != st.digest():
            raise RunFolderError(f"the study differs from the one the interrupted run in {out} was started with")
        opts = meta["options"]
    else:
        source = default_study_path() if study is None else study
        st = load_study(source)
        if overrides:  # --set: applied to the study as written, so presets and sizing follow
            st = apply_overrides(raw_study(source), overrides, label="--set")
        _check_counts(scenarios, seed, chunk_size, precision, checkpoint_every, shard, monthly_scenarios, month_kernel)
        _check_output_options(st, columns, sample_fraction)
        if target_mcse is not None:
            parse_target(target_mcse)
            if shard is not None:
                raise StudyError([Problem("--target-mcse", "cannot be combined with --shard (each shard would stop on its own)")], "options")
        sim = st.simulation
        opts = dict(
            scenarios=scenarios or sim.scenarios,
            seed=sim.seed if seed is None else seed,
            precision=precision or sim.precision,
            chunk_size=chunk_size,
            write_scenarios=write_scenarios,
            diagnostic_draws=diagnostic_draws,
            checkpoint_every=checkpoint_every,
            shard=list(shard) if shard is not None else None,
            columns=list(columns) if columns is not None else None,
            sample_fraction=sample_fraction,
            monthly=monthly,
            monthly_scenarios=monthly_scenarios,
            month_kernel=month_kernel,
            sampler_dims=list(sampler_dims) if sampler_dims is not None else None,
            overrides=dict(overrides) if overrides else None,  # a record: study.yaml already has them
            target_mcse=target_mcse,
            analyze=analyze,
            stress=stress,
        )
        folder = RunFolder(Path(out) if out is not None else Path("outputs") / st.name, force=force)
        folder.path("study.yaml").write_text(st.to_yaml())
    try:
        return _execute(st, folder, opts, resume, progress, t_total)
    except (KeyboardInterrupt, SystemExit):
        raise  # keep the partial folder: `--resume` continues from its last checkpoint
    except BaseException:
        folder.discard()
        raise


def rerun_manifest(manifest: str | Path, *, out: str | Path | None = None, force: bool = False, progress: Progress | None = None) -> RunResult:
    """Run again what a manifest describes: the study beside it, with the same seed and options."""
    path = Path(manifest)
    try:
        m = json.loads(path.read_text())
        opts = m["options"]
    except (OSError, ValueError, KeyError) as exc:
        raise RunFolderError(f"cannot read the manifest {str(path)!r}: {exc}") from None
    st = load_study(path.parent / "study.yaml")
    if st.digest() != m["study_sha256"]:
        raise RunFolderError(f"{path.parent / 'study.yaml'} does not match the study hash in {path}")
    target = Path(out) if out is not None else path.parent.with_name(path.parent.name + "-rerun")
    opts = {k: v for k, v in opts.items() if k != "overrides"}  # already in study.yaml
    opts.setdefault("monthly_scenarios", None)  # runs from before the cap kept bands over every scenario
    return run_study(st, out=target, force=force, progress=progress, **opts)


def _execute(st: Study, folder: RunFolder, opts: dict, resume: bool, progress, t_total) -> RunResult:
    times = dict.fromkeys(("plan", "compile", "sample", "simulate", "summarize", "transfer", "write"), 0.0)
    t0 = time.perf_counter()
    n_total, seed, precision = opts["scenarios"], opts["seed"], opts["precision"]
    plan = make_plan(st, scenarios=n_total, seed=seed, precision=precision, chunk_size=opts["chunk_size"],
                     monthly=opts.get("monthly", True), dims=opts.get("sampler_dims"),
                     month_kernel=opts.get("month_kernel", "scan"))
    C = plan.chunk
    n_chunks = -(-n_total // C)
    every = opts["checkpoint_every"] or max(1, (CHECKPOINT_SCENARIOS_ACCELERATOR if on_accelerator() else CHECKPOINT_SCENARIOS) // C)
    every = min(every, max(1, (2**31 - 1) // C))  # int32 histogram bins never overflow
    store = np.float64 if precision == "float64" else np.float32
    sharding = NamedSharding(plan.mesh, PartitionSpec("scenarios"))
    digest = st.digest()
    n_diag = min(n_total, max(opts["diagnostic_draws"], 0))
    state = {"host": None, "tails": np.zeros((len(TAIL_COUNTS), len(plan.systems)), np.int64),
             "retained": np.zeros((plan.n_series, 0)), "monthly": None}
    shard_i, shard_k = opts.get("shard") or (0, 1)
    lo, hi = shard_i * n_chunks // shard_k, (shard_i + 1) * n_chunks // shard_k
    start_chunk = lo
    ck_trace: list[list[float]] = []
    stopped = None  # the chunk a resumed --target-mcse run had already stopped at
    ck_meta = {"study_sha256": digest, "options": opts, "chunk_size": C, "n_chunks": n_chunks, "every": every,
               "month_loop_unroll": plan.unroll}
    if resume:
        meta, arrays = load_checkpoint(folder.tmp)
        if meta["chunk_size"] != C or meta["every"] != every or meta.get("month_loop_unroll", 1) != plan.unroll:
            raise RunFolderError(
                f"cannot resume: the interrupted run used chunks of {meta['chunk_size']} on other devices "
                f"(now {C}); rerun with the same number of devices"
            )
        state, start_chunk = state_from(arrays), meta["next_chunk"]
        ck_trace, stopped = meta.get("trace", []), meta.get("stopped")
    meta = {"mcrisk.study_sha256": digest, "mcrisk.seed": seed, "mcrisk.version": _versions()["mcrisk"], "mcrisk.scenarios": n_total}
    writer = None
    if opts["write_scenarios"]:
        fields = [f for f in scenario_fields(plan, store) if opts.get("columns") is None or f.name in ("scenario", "system", *opts["columns"])]
        writer = ScenarioWriter(folder.path(SCENARIOS_DIR), pa.schema(fields), meta)
    times["plan"] = time.perf_counter() - t0

    def to_host(out, draw):
        metrics = {m: out[m].astype(store) for m in METRICS}
        return metrics, {k: v.astype(store) for k, v in draw.values.items()}

    # Every stage's outputs are placed explicitly: scenarios split over the devices along their
    # scenario axis, the running summaries replicated. Then the abstract arguments the stages are
    # compiled from (compile_all, below) are exactly what they are called with.
    by_rows = NamedSharding(plan.mesh, PartitionSpec("scenarios", None))  # shocks (n, T) on CPUs
    by_cols = NamedSharding(plan.mesh, PartitionSpec(None, "scenarios"))  # (S, n), (H, n), shocks (T, n) on accelerators
    replicated = NamedSharding(plan.mesh, PartitionSpec())
    # The distributions' parameters and the copula factor are arguments, like the fixed values of
    # the simulate stage: a stress or sweep point that changes only values compiles nothing new.
    inputs_s = Stage(lambda idx, v: draw_inputs(plan, idx, v), "sample", times, out_shardings=sharding)
    shocks_s = Stage(lambda idx, sid: shock_normals(root_key(seed), idx, sid, plan.months, plan.dtype, time_major=plan.time_major_shocks),
                     "sample", times, out_shardings=by_cols if plan.time_major_shocks else by_rows)
    shock_ids = [None if s is None else jax.device_put(jnp.uint32(s), replicated) for s in shock_streams(plan)]
    # Every chunk's metrics come from one program; the monthly band values from a second, run only
    # on the chunks that hold band scenarios (engine.monthly_values).
    simulate_s = Stage(lambda d: simulate(plan, d, C), "simulate", times, out_shardings=by_cols)
    reduce_s = Stage(lambda acc, o, m: reduce_chunk(plan, acc, o, m), "summarize", times, donate=0,
                     out_shardings=replicated)
    band_cap = n_total if opts.get("monthly_scenarios") is None else min(n_total, opts["monthly_scenarios"])
    # (one program: the band values go from the month loop into the sketches without leaving the device)
    bands_s = Stage(lambda acc, d, m: reduce_bands(acc, monthly_values(plan, d, C), m), "summarize", times, donate=0,
                    out_shardings=replicated)
    band_chunks = -(-band_cap // C) if plan.monthly else 0  # chunks 0 .. band_chunks - 1 hold band scenarios
    # The chunk's scenario indices and masks, made on the device (no host arrays to copy per chunk).
    index_s = Stage(lambda start: chunk_indices(start, C, n_total, band_cap), "sample", times, out_shardings=(sharding,) * 3)
    host_s = Stage(to_host, "transfer", times)
    keep_s = None
    if opts.get("sample_fraction") is not None:  # a fixed random subset of scenarios, by index
        picker = make_sampler("random", seed, (stream_id("output.subsample"),), n_total)
        fraction = opts["sample_fraction"]
        keep_s = Stage(lambda idx: picker.uniforms(idx, jnp.float64)[:, 0] < fraction, "write", times)
    k_diag = min(C, n_diag)  # the retained draws come from the first chunks, at most k_diag per chunk
    retain_s = Stage(lambda o: {m: o[m][:, :k_diag] for m in METRICS}, "transfer", times)

    target = parse_target(opts["target_mcse"]) if opts.get("target_mcse") else None
    trace: list[list[float]] = ck_trace  # (scenarios so far, MCSE reached) after each chunk
    stop, end = stopped, (stopped if stopped else hi)
    consts = jax.device_put(fixed_values(plan), replicated)
    dist_values = jax.device_put(sample_values(plan), replicated)
    diag_future = None
    acc = jax.device_put(reduce_init(plan), replicated)
    chunks = range(start_chunk, hi if not stopped else start_chunk)
    if len(chunks):  # compile every stage at once, from the shapes, dtypes and placements of their arguments
        idx_a, mask_a = (jax.ShapeDtypeStruct((C,), dt, sharding=sharding) for dt in (jnp.uint32, jnp.bool_))
        sid_a = jax.ShapeDtypeStruct((), jnp.uint32, sharding=replicated)
        shocks_a = shocks_s.abstract(idx_a, sid_a)
        draw_a = Sample(inputs_s.abstract(idx_a, dist_values), Shocks(*(None if s is None else shocks_a for s in shock_ids)))
        run_a = draw_a._replace(values={**draw_a.values, **consts})
        out_a = simulate_s.abstract(run_a)
        todo = [(index_s, (np.int64(0),)), (inputs_s, (idx_a, dist_values)), (simulate_s, (run_a,)), (reduce_s, (acc, out_a, mask_a))]
        if start_chunk < band_chunks:
            todo += [(bands_s, (acc, run_a, mask_a))]
        todo += [(shocks_s, (idx_a, sid_a))] if any(s is not None for s in shock_ids) else []
        todo += [(host_s, (out_a, draw_a))] if writer is not None else []
        todo += [(retain_s, (out_a,))] if start_chunk * C < n_diag else []
        todo += [(keep_s, (idx_a,))] if keep_s is not None and writer is not None else []
        compile_all(todo, times)
    for chunk in chunks:
        start = chunk * C
        valid = min(C, n_total - start)
        idx, mask, band_mask = index_s(np.int64(start))
        draw = Sample(inputs_s(idx, dist_values), Shocks(*(None if s is None else shocks_s(idx, s) for s in shock_ids)))
        run_draw = draw._replace(values={**draw.values, **consts})
        out = simulate_s(run_draw)
        acc = reduce_s(acc, out, mask)
        if chunk < band_chunks:
            acc = bands_s(acc, run_draw, band_mask)
        del run_draw
        if start < n_diag:  # the first scenarios' metrics, float64, for ArviZ
            k = min(valid, n_diag - start)
            t0 = time.perf_counter()
            full = jax.device_get(retain_s(out))
            times["transfer"] += time.perf_counter() - t0
            block = np.stack([full[m][:, :k] for m in METRICS]).reshape(plan.n_series, k)
            state["retained"] = np.concatenate([state["retained"], block], axis=1)
            if state["retained"].shape[1] == n_diag:  # ArviZ's diagnostics run while the device goes on
                diag_future = _background(risk.diagnostics, state["retained"], n_diag)
        if writer is not None:
            casted = host_s(out, draw)
            t0 = time.perf_counter()
            metrics_h, values_h = jax.device_get(casted)
            times["transfer"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            sel = np.arange(valid) if keep_s is None else np.flatnonzero(np.asarray(keep_s(idx))[:valid])
            cols = scenario_columns(plan, start, sel, metrics_h, values_h, store)
            times["write"] += time.perf_counter() - t0
            writer.put(chunk, cols)  # waits only if the writer is two chunks behind
        del draw, out
        if target is not None:
            t0 = time.perf_counter()
            reached = _target_mcse(plan, acc, state, target)
            trace.append([min(n_total, (chunk + 1) * C), reached])
            stop = bool(reached <= target.value)
            times["summarize"] += time.perf_counter() - t0
        if stop or (chunk + 1) % every == 0 or chunk + 1 == hi:
            t0 = time.perf_counter()
            acc = jax.device_put(flush(plan, acc, state), replicated)
            if writer is not None:
                writer.drain()
            meta = dict(ck_meta, next_chunk=chunk + 1, stopped=chunk + 1 if stop else None, trace=trace)
            save_checkpoint(folder.tmp, meta, checkpoint_arrays(state))
            times["write"] += time.perf_counter() - t0
        if progress is not None:
            progress(min(n_total, (chunk + 1) * C) - lo * C, min(n_total, hi * C) - lo * C)
        if stop:
            end = chunk + 1
            break

    if writer is not None:
        writer.close()
        times["write"] += writer.busy_seconds  # encoding in the background thread
    extra = {
        "chunk_size": C,
        "month_loop_unroll": plan.unroll,
        "month_kernel": plan.month_kernel,
        "monthly_scenarios": band_cap if plan.monthly else None,
        "chunks": n_chunks,
        "checkpoint_every_chunks": every,
        "resumed_from_chunk": start_chunk if resume else None,
        "shard": {"index": shard_i, "count": shard_k, "chunks": [lo, hi]} if shard_k > 1 else None,
        "scenarios_run": min(n_total, end * C) - lo * C if shard_k == 1 else None,
    }
    if target is not None:
        extra["convergence"] = {
            "target": target.text(), "method": "sd/sqrt(N)" if target.prob is None else "order-statistic interval from the sketch",
            "reached_mcse": trace[-1][1] if trace else None, "met": bool(trace and trace[-1][1] <= target.value),
            "scenarios": min(n_total, end * C), "maximum": n_total, "trace": trace,
        }
    if shard_k > 1:  # what `merge_runs` needs to combine the shards exactly
        save_checkpoint(folder.tmp, {"next_chunk": hi}, checkpoint_arrays(state), name=SHARD_STATE)
    stresses = None
    if st.stress and shard_k == 1 and opts.get("stress", True):
        t0 = time.perf_counter()
        n_run = extra["scenarios_run"]
        stresses = run_stresses(st, st.resolved(), folder.path("stress"), dict(opts, scenarios=n_run), plan.dims, progress)
        times["stress"] = time.perf_counter() - t0
        extra["stress"] = {name: describe(o) for name, o in st.stress.items()}
    return _finish(st, plan, folder, opts, state, times, t_total, extra, stresses, diag_future)


def _background(fn: Callable, *args) -> Future:
    """Run fn(*args) in a daemon thread (host work that can overlap the device's)."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # re-raised by future.result() in the caller
            future.set_exception(exc)

    threading.Thread(target=target, name="mcrisk-host", daemon=True).start()
    return future


def _analyze(folder: RunFolder, opts: dict) -> dict:
    """sensitivity.csv and comparison.csv from the run's first ANALYSIS_SCENARIOS scenarios."""
    from .analysis import analyze_run

    try:
        paths = analyze_run(folder.tmp, max_scenarios=ANALYSIS_SCENARIOS)
    except (StudyError, RunFolderError, ValueError) as exc:  # e.g. --columns dropped what it needs
        return {"sensitivity": None, "comparison": None, "analysis_skipped": str(exc).splitlines()[0]}
    return {key: p.name for key, p in paths.items()} | {"analysis_scenarios": min(opts["scenarios"], ANALYSIS_SCENARIOS)}


def _target_mcse(plan: Plan, acc, state: dict, target) -> float:
    """The largest MCSE over systems of the target statistic, from the host and device reducers."""
    rows = series_of(target, len(plan.systems))
    dev = red.to_host(red.ReduceState(jax.tree.map(lambda a: a[rows], acc.state.moments), acc.state.hist[rows]))
    host = state["host"]
    if host is not None:
        dev = red.merge(red.HostState(red.Moments(*(np.asarray(f)[rows] for f in host.moments)), host.hist[rows]), dev)
    values = mcse(dev, target, plan.sketch)
    return float(np.max(values)) if np.all(np.isfinite(values)) else float("inf")


def _finish(st: Study, plan: Plan, folder: RunFolder, opts: dict, state: dict, times: dict, t_total: float, extra: dict,
            stresses: list | None = None, diag_future: Future | None = None) -> RunResult:
    """Summaries, risk table, ArviZ data and manifest from the host reducers; publish the folder."""
    seed, precision = opts["seed"], opts["precision"]
    n_total = extra.get("scenarios_run") or opts["scenarios"]
    store = np.float64 if precision == "float64" else np.float32
    digest = st.digest()
    t0 = time.perf_counter()
    host_state, draws = state["host"], state["retained"]
    # As for the retained draws, then restated for all N (the same arithmetic whether it ran in
    # the background during the run or here, after a resume or a merge).
    n_diag = draws.shape[1]
    diag = diag_future.result() if diag_future is not None else risk.diagnostics(draws, n_diag)
    diag = risk.rescale(diag, n_diag, n_total)
    summary = risk.summary_table(host_state, plan.systems, METRICS, diag, plan.sketch)
    tail_names = [n for n, _, _ in TAIL_COUNTS]
    risk_df = risk.risk_table(host_state, state["tails"], tail_names, plan.systems, METRICS, plan.sketch)
    breakeven = breakeven_table(st, host_state, state["tails"][tail_names.index("npv_below_0")], plan.systems, plan.sketch)
    monthly = monthly_table(state["monthly"], plan.systems, plan.months) if state.get("monthly") is not None else None
    times["summarize"] += time.perf_counter() - t0

    analysis = None
    if opts["write_scenarios"] and opts.get("analyze", True) and not extra.get("shard"):
        t0 = time.perf_counter()
        analysis = _analyze(folder, opts)
        times["analyze"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary.to_csv(folder.path("summary.csv"), index=False)
    risk_df.to_csv(folder.path("risk.csv"), index=False)
    breakeven.to_csv(folder.path("breakeven.csv"), index=False)
    stress = stress_table((summary, risk_df), stresses) if stresses is not None else None
    if stress is not None:
        stress.to_csv(folder.path("stress.csv"), index=False)
    if monthly is not None:
        monthly.to_parquet(folder.path("monthly.parquet"), index=False)
    attrs = {"mcrisk_study_sha256": digest, "mcrisk_seed": seed, "mcrisk_scenarios": n_total, "mcrisk_retained_draws": int(draws.shape[1])}
    if draws.shape[1] > 0:
        risk.inference_data(draws, plan.systems, METRICS, attrs).to_netcdf(str(folder.path("summary.nc")), engine="h5netcdf")
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
        **extra,
        "options": opts,
        "devices": [str(d) for d in jax.local_devices()],
        "processes": {"index": jax.process_index(), "count": jax.process_count()} if jax.process_count() > 1 else None,
        "backend": jax.default_backend(),
        "versions": _versions(),
        "platform": platform.platform(),
        "command": sys.argv if sys.argv and sys.argv[0].endswith("mcrisk") else None,
        "outputs": {
            "scenarios": SCENARIOS_DIR if opts["write_scenarios"] else None,
            "summary": "summary.csv",
            "risk": "risk.csv",
            "breakeven": "breakeven.csv",
            "stress": "stress.csv" if stress is not None else None,
            **(analysis or {"sensitivity": None, "comparison": None}),
            "monthly": "monthly.parquet" if monthly is not None else None,
            "inference_data": "summary.nc" if draws.shape[1] else None,
            "study": "study.yaml",
        },
        "quantiles": {
            "method": "log-bucket sketch over all scenarios (inverted-CDF rank)",
            "relative_error": plan.sketch.rel_accuracy,
            "monthly_relative_error": MONTHLY_SKETCH.rel_accuracy if monthly is not None else None,
            "monthly_method": f"log-bucket sketch over the first {extra.get('monthly_scenarios')} scenarios" if monthly is not None else None,
        },
        "diagnostics": {"retained_draws": int(draws.shape[1]), "chains": risk.CHAINS, "scaled_to": n_total},
        "status": status,
        "seconds": {k: round(v, 4) for k, v in times.items()} | {"total": round(wall, 4)},
        "scenario_months_per_second": n_total * plan.months / wall if wall > 0 and not extra.get("merged_from") else None,
    }
    write_json(folder.path("manifest.json"), manifest)
    path = folder.publish()
    return RunResult(folder=path, summary=summary, risk=risk_df, manifest=manifest, study=st, breakeven=breakeven, monthly=monthly, stress=stress)

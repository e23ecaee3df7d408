"""The chunk loop of a run: the stages compiled once, then sample, simulate and reduce chunk by chunk.

A run's scenarios are cut into chunks of `Plan.chunk` (split over the local devices). Each chunk's
inputs and shocks are drawn from its scenario indices, simulated and folded into the running
summaries on the device; only the rows to write, the first scenarios' metrics (for ArviZ) and,
at checkpoints, the summaries cross to the host. Checkpoint boundaries depend only on the
options, so a resumed run does the same arithmetic as an uninterrupted one.
"""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import Future
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
from jax.sharding import NamedSharding, PartitionSpec

from mcrisk.stats import reduce as red
from mcrisk.stats import breakeven
from mcrisk.engine import interrupt
from mcrisk.stats import risk
from mcrisk.stats.convergence import mcse, parse_target, series_of
from mcrisk.engine.plan import METRICS, TAIL_COUNTS, Plan, Sample, chunk_indices, collapse_copies, draw_inputs, fixed_values, make_plan, monthly_values, on_accelerator, reduce_bands, reduce_chunk, reduce_init, reduce_shardings, sample_values, shock_streams, simulate, sketch_copies
from mcrisk.errors import Problem, RunFolderError, StudyError
from mcrisk.study.variants import describe
from mcrisk.model.market import Shocks
from mcrisk.engine.programs import Stage, compile_all
from mcrisk.workflows.publish import RunResult, finish, versions
from mcrisk.engine.state import checkpoint_arrays, flush, state_from
from mcrisk.sampling.uniforms import make_sampler, root_key, shock_normals, stream_id
from mcrisk.io.folder import SCENARIOS_DIR, SHARD_STATE, HostBlock, RunFolder, ScenarioRows, ScenarioWriter, load_checkpoint, part_scenarios, pinned_host, reserve_pinned, save_checkpoint, scenario_fields
from mcrisk.workflows.stress import run_stresses
from mcrisk.study.schema import Study

# Reducers move to the host, and a checkpoint is written, every this many scenarios (rounded
# to whole chunks). The boundaries depend only on the options, so a resumed run does the same
# float64 arithmetic as an uninterrupted one. A checkpoint costs about 0.25 s (65 MB of sketches
# to the host and to disk): every 4M scenarios is about a minute of work on a 2-core CPU, and
# every 128M a few seconds on a GPU (where 4M had made checkpoints a fifth of a 1e8 run).
CHECKPOINT_SCENARIOS = 1 << 22
CHECKPOINT_SCENARIOS_ACCELERATOR = 1 << 27


def execute(st: Study, folder: RunFolder, opts: dict, resume: bool, progress, t_total) -> RunResult:
    """Run `opts["scenarios"]` scenarios of `st` chunk by chunk into `folder`, then publish it.

    Every stage is compiled once, at once, from the abstract shapes of its arguments; each chunk
    is sampled, simulated and reduced on the device, its rows (if written) handed to the
    background Parquet writer; the reducers go to the host, and a checkpoint is saved, every
    `every` chunks, so `resume=True` continues from the last one with the same arithmetic.
    """
    times = dict.fromkeys(("plan", "compile", "sample", "simulate", "summarize", "transfer", "write"), 0.0)
    t0 = time.perf_counter()
    n_total, seed, precision = opts["scenarios"], opts["seed"], opts["precision"]
    plan = make_plan(st, scenarios=n_total, seed=seed, precision=precision, chunk_size=opts["chunk_size"],
                     monthly=opts.get("monthly", True), dims=opts.get("sampler_dims"))
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
    if hi <= lo:  # shards are slices of whole chunks
        raise StudyError([Problem("--shard", f"shard {shard_i}/{shard_k} would hold no scenarios: {n_total:,} scenarios make "
                                             f"{n_chunks:,} chunk(s) of {C:,}, so at most {n_chunks:,} shard(s); use fewer "
                                             "shards or a smaller --chunk-size")], "options")
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
    meta = {"mcrisk.study_sha256": digest, "mcrisk.seed": seed, "mcrisk.version": versions()["mcrisk"], "mcrisk.scenarios": n_total}
    writer = reserving = None
    if opts["write_scenarios"]:
        fields = [f for f in scenario_fields(plan, store) if opts.get("columns") is None or f.name in ("scenario", "system", *opts["columns"])]
        rows = ScenarioRows(plan, fields)
        writer = ScenarioWriter(folder.path(SCENARIOS_DIR), pa.schema(fields), meta,
                                lambda start, sel, host: rows.columns(start, sel, host),
                                part_scenarios(len(plan.systems)), n_chunks, C)

    # Every stage's outputs are placed explicitly: scenarios split over the devices along their
    # scenario axis, the running summaries replicated (but for the sketches' histograms, split by
    # device). Then the abstract arguments the stages are compiled from (compile_all, below) are
    # exactly what they are called with.
    by_rows = NamedSharding(plan.mesh, PartitionSpec("scenarios", None))  # shocks (n, T) on CPUs
    by_cols = NamedSharding(plan.mesh, PartitionSpec(None, "scenarios"))  # (S, n), (H, n), shocks (T, n) on accelerators
    replicated = NamedSharding(plan.mesh, PartitionSpec())
    # The distributions' parameters and the copula factor are arguments, like the fixed values of
    # the simulate stage: a stress or sweep point that changes only values compiles nothing new.
    inputs_s = Stage(lambda idx, v: draw_inputs(plan, idx, v), "sample", times, out_shardings=sharding, label="inputs")
    shocks_s = Stage(lambda idx, sid: shock_normals(root_key(seed), idx, sid, plan.months, plan.dtype, time_major=plan.time_major_shocks),
                     "sample", times, out_shardings=by_cols if plan.time_major_shocks else by_rows, label="shocks")
    streams = shock_streams(plan)  # (placed on the device below, after the compiles have started)
    # Every chunk's metrics come from one program; the monthly band values from a second, run only
    # on the chunks that hold band scenarios (engine.monthly_values).
    simulate_s = Stage(lambda d: simulate(plan, d, C), "simulate", times, out_shardings=by_cols)
    summaries = reduce_shardings(plan)  # replicated, but for the sketches' histograms (split by device)
    reduce_s = Stage(lambda acc, o, m: reduce_chunk(plan, acc, o, m), "summarize", times, donate=0,
                     out_shardings=summaries, label="reduce")
    band_cap = n_total if opts.get("monthly_scenarios") is None else min(n_total, opts["monthly_scenarios"])
    # (one program: the band values go from the month loop into the sketches without leaving the device)
    bands_s = Stage(lambda acc, d, m: reduce_bands(plan, acc, monthly_values(plan, d, C), m), "summarize", times, donate=0,
                    out_shardings=summaries, label="bands")
    band_chunks = -(-band_cap // C) if plan.monthly else 0  # chunks 0 .. band_chunks - 1 hold band scenarios
    # The chunk's scenario indices and masks, made on the device (no host arrays to copy per chunk).
    # (the counts are arguments: runs of other sizes in the same chunk shape reuse the program)
    index_s = Stage(lambda start, n, nb: chunk_indices(start, C, n, nb), "sample", times, out_shardings=(sharding,) * 3,
                    label="indices")
    counts = (np.int64(n_total), np.int64(band_cap))
    # The float columns of a chunk's rows, assembled on the device into one block (ScenarioRows).
    rows_s = Stage(lambda o, v: rows.block(o, v, store), "transfer", times, out_shardings=by_cols, label="rows")
    # Sketches kept in several copies on the device are added into one before they move to the host.
    collapse_s = Stage(collapse_copies, "write", times, out_shardings=replicated, label="collapse") if sketch_copies(plan)[0] > 1 else None
    pinned = pinned_host(by_cols)
    keep_s = None
    if opts.get("sample_fraction") is not None:  # a fixed random subset of scenarios, by index
        picker = make_sampler("random", seed, (stream_id("output.subsample"),), n_total)
        fraction = opts["sample_fraction"]
        keep_s = Stage(lambda idx: picker.uniforms(idx, jnp.float64)[:, 0] < fraction, "write", times, label="keep")
    # The retained draws come from the first chunks, at most k_diag per chunk (a width that does
    # not depend on the scenario count: runs of other sizes in this chunk shape reuse the program).
    k_diag = min(C, max(opts["diagnostic_draws"], 0))
    retain_s = Stage(lambda o: {m: o[m][:, :k_diag] for m in plan.metrics}, "transfer", times, label="retain")

    target = parse_target(opts["target_mcse"]) if opts.get("target_mcse") else None
    trace: list[list[float]] = ck_trace  # (scenarios so far, MCSE reached) after each chunk
    stop, end = stopped, (stopped if stopped else hi)
    consts_h, dist_h = fixed_values(plan), sample_values(plan)
    diag_future = None
    times["plan"] = time.perf_counter() - t0
    chunks = range(start_chunk, hi if not stopped else start_chunk)
    if len(chunks):  # compile every stage at once, from the shapes, dtypes and placements of their arguments
        # The stages are traced, lowered and their compiles started before any array is placed on
        # the device: on a GPU the first array waits for JAX to reserve the device's memory pool
        # (seconds), which then goes on beside the lowering (cli._start_backend_early starts it).
        t0 = time.perf_counter()  # tracing the stages for their abstract outputs is compile time too
        idx_a, mask_a = (jax.ShapeDtypeStruct((C,), dt, sharding=sharding) for dt in (jnp.uint32, jnp.bool_))
        sid_a = jax.ShapeDtypeStruct((), jnp.uint32, sharding=replicated)
        consts_a, dist_a = (_placed(v, replicated) for v in (consts_h, dist_h))
        acc_a = _placed(jax.eval_shape(lambda: reduce_init(plan)), summaries)
        shocks_a = shocks_s.abstract(idx_a, sid_a)
        draw_a = Sample(inputs_s.abstract(idx_a, dist_a), Shocks(*(None if s is None else shocks_a for s in streams)))
        run_a = draw_a._replace(values={**draw_a.values, **consts_a})
        out_a = simulate_s.abstract(run_a)
        times["compile"] += time.perf_counter() - t0
        # Longest compile first (simulate, then the inputs, the summaries, the bands, the shocks:
        # benchmarks/traffic.py --stages), so that the threads finish together.
        todo = [(simulate_s, (run_a,)), (inputs_s, (idx_a, dist_a)), (reduce_s, (acc_a, out_a, mask_a))]
        if start_chunk < band_chunks:
            todo += [(bands_s, (acc_a, run_a, mask_a))]
        todo += [(shocks_s, (idx_a, sid_a))] if any(s is not None for s in streams) else []
        todo += [(index_s, (np.int64(0), *counts))]
        todo += [(rows_s, (out_a, run_a.values))] if writer is not None else []
        todo += [(retain_s, (out_a,))] if start_chunk * C < n_diag else []
        todo += [(keep_s, (idx_a,))] if keep_s is not None and writer is not None else []
        todo += [(collapse_s, (acc_a,))] if collapse_s is not None else []
        compile_all(todo, times)
        # What only the end needs (pandas, ArviZ, the break-even table's price quantiles) is made
        # ready while the stages compile: not before the run, where importing it held the
        # interpreter's lock against the engine's imports and the lowering, nor after the last chunk.
        _background(_prepare_end, st)
        if writer is not None and pinned is not None:
            # The pinned memory of the row blocks the writer will hold, pinned while the stages
            # compile: its queue and threads hold at most 2 x threads parts, `parts` per chunk.
            parts = -(-C // writer.per_part)
            blocks = min(len(chunks), -(-2 * writer.threads // parts) + 2)
            reserving = _background(reserve_pinned, (len(rows.names), C * len(plan.systems)), store, by_cols, pinned, blocks)
    t0 = time.perf_counter()  # the run's first arrays (on a GPU, with what is left of the pool's reservation)
    consts, dist_values = jax.device_put(consts_h, replicated), jax.device_put(dist_h, replicated)
    shock_ids = [None if s is None else jax.device_put(np.uint32(s), replicated) for s in streams]
    acc = jax.device_put(reduce_init(plan), summaries)
    times["plan"] += time.perf_counter() - t0
    for chunk in chunks:
        interrupt.check()  # a Ctrl-C whose KeyboardInterrupt was dropped (raised in a GC callback) still stops the run
        start = chunk * C
        valid = min(C, n_total - start)
        idx, mask, band_mask = index_s(np.int64(start), *counts)
        draw = Sample(inputs_s(idx, dist_values), Shocks(*(None if s is None else shocks_s(idx, s) for s in shock_ids)))
        run_draw = draw._replace(values={**draw.values, **consts})
        out = simulate_s(run_draw)
        acc = reduce_s(acc, out, mask)
        if chunk < band_chunks:
            acc = bands_s(acc, run_draw, band_mask)
        if writer is not None:  # the copy to the host starts now, and the writer's threads wait for it
            sel = np.arange(valid) if keep_s is None else np.flatnonzero(np.asarray(keep_s(idx))[:valid])
            writer.put(chunk, start, valid, sel, HostBlock(rows_s(out, run_draw.values), pinned))  # waits only while `threads` parts are queued
        del run_draw
        if start < n_diag:  # the first scenarios' metrics, float64, for ArviZ
            k = min(valid, n_diag - start)
            t0 = time.perf_counter()
            full = jax.device_get(retain_s(out))
            times["transfer"] += time.perf_counter() - t0
            block = np.stack([full[m][:, :k] for m in plan.metrics]).reshape(plan.n_series, k)
            state["retained"] = np.concatenate([state["retained"], block], axis=1)
            if state["retained"].shape[1] == n_diag:  # ArviZ's diagnostics run while the device goes on
                diag_future = _background(risk.diagnostics, state["retained"], n_diag)
        del draw, out
        if target is not None:
            t0 = time.perf_counter()
            reached = _target_mcse(plan, acc, state, target)
            trace.append([min(n_total, (chunk + 1) * C), reached])
            stop = bool(reached <= target.value)
            times["summarize"] += time.perf_counter() - t0
        if stop or (chunk + 1) % every == 0 or chunk + 1 == hi:
            t0 = time.perf_counter()
            acc = jax.device_put(flush(plan, acc if collapse_s is None else collapse_s(acc), state), summaries)
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
        if reserving is not None and reserving.exception() is not None:  # only slower: the pool grew while writing
            warnings.warn(f"could not reserve pinned host memory ahead: {reserving.exception()}", RuntimeWarning, stacklevel=2)
        times["transfer"] += writer.wait_seconds  # the writer's threads waiting for the blocks' copies
        times["write"] += writer.busy_seconds - writer.wait_seconds  # encoding in the writer's threads, and handing parts over
    extra = {
        "chunk_size": C,
        "month_loop_unroll": plan.unroll,
        "chunks": n_chunks,
        "checkpoint_every_chunks": every,
        "resumed_from_chunk": start_chunk if resume else None,
        "shard": {"index": shard_i, "count": shard_k, "chunks": [lo, hi]} if shard_k > 1 else None,
        "scenarios_run": min(n_total, end * C) - lo * C if shard_k == 1 else None,
    }
    # The bands count the scenarios below the cap that ran: fewer than the cap when a target MCSE
    # stopped the run early. A shard records the whole run's cap, which the merged run keeps.
    extra["monthly_scenarios"] = None if not plan.monthly else band_cap if shard_k > 1 else min(band_cap, extra["scenarios_run"])
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
    return finish(st, plan, folder, opts, state, times, t_total, extra, stresses, diag_future)


def _prepare_end(st: Study) -> None:
    risk.warm_imports()
    breakeven.prepare(st)


def _placed(tree, where):
    """Abstract arrays (shape, dtype, placement) of a tree of host values or abstract arrays, for
    compiling: placed by `where`, one sharding for all or a tree of them like `tree`."""
    def one(a, at):
        return jax.ShapeDtypeStruct(np.shape(a), a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype, sharding=at)

    if isinstance(where, NamedSharding):
        return jax.tree.map(lambda a: one(a, where), tree)
    return jax.tree.map(one, tree, where)


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


def _target_mcse(plan: Plan, acc, state: dict, target) -> float:
    """The largest MCSE over systems of the target statistic, from the host and device reducers."""
    rows = series_of(target, len(plan.systems))
    dev = red.to_host(red.ReduceState(jax.tree.map(lambda a: a[rows], acc.state.moments), acc.state.hist[:, rows]))
    host = state["host"]
    if host is not None:
        dev = red.merge(red.HostState(red.Moments(*(np.asarray(f)[rows] for f in host.moments)), host.hist[rows]), dev)
    values = mcse(dev, target, plan.sketch)
    return float(np.max(values)) if np.all(np.isfinite(values)) else float("inf")

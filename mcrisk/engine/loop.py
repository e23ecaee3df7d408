"""The chunk loop of a run: the stages compiled once, then sample, simulate and reduce chunk by chunk.

A run's scenarios are cut into chunks of `Plan.chunk` (split over the local devices). Each chunk's
inputs and shocks are drawn from its scenario indices, simulated and folded into the running
summaries on the device; only the rows to write, the first scenarios' metrics (for ArviZ) and,
at flush points, the summaries cross to the host. Flush points depend only on the options, so a
resumed run does the same arithmetic as an uninterrupted one.

The loop writes nothing: :meth:`ChunkLoop.events` yields what its caller writes or reports, in
order: a :class:`RowBlock` per chunk whose rows are kept, a :class:`Flush` where the summaries
are on the host (a checkpoint goes there), a :class:`Progress` after each chunk, and one
:class:`Done` at the end.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from mcrisk.engine import interrupt
from mcrisk.engine.compiled import RunStages
from mcrisk.engine.options import RunOptions
from mcrisk.engine.plan import Plan, Sample, make_plan, on_accelerator
from mcrisk.engine.programs import compile_all
from mcrisk.engine.reduction import reduce_init
from mcrisk.engine.rows import HostBlock, ScenarioRows, pinned_host, reserve_pinned, scenario_fields
from mcrisk.engine.state import HostSummaries, flush
from mcrisk.engine.timings import Timings
from mcrisk.errors import Problem, StudyError
from mcrisk.model.market import Shocks
from mcrisk.stats import breakeven, risk
from mcrisk.stats import reduce as red
from mcrisk.stats.convergence import Target, mcse, parse_target, series_of
from mcrisk.study.columns import column_name
from mcrisk.study.schema import Study

# Reducers move to the host, and a checkpoint is written, every this many scenarios (rounded
# to whole chunks). The boundaries depend only on the options, so a resumed run does the same
# float64 arithmetic as an uninterrupted one. A checkpoint costs about 0.25 s (65 MB of sketches
# to the host and to disk): every 4M scenarios is about a minute of work on a 2-core CPU, and
# every 128M a few seconds on a GPU (where 4M had made checkpoints a fifth of a 1e8 run).
CHECKPOINT_SCENARIOS = 1 << 22
CHECKPOINT_SCENARIOS_ACCELERATOR = 1 << 27


@dataclass(frozen=True)
class RowBlock:
    """The rows of chunk `chunk` (first scenario `start`, `valid` scenarios) to keep: those at
    offsets `sel` of the chunk, from `block` (its copy to the host under way)."""

    chunk: int
    start: int
    valid: int
    sel: np.ndarray
    block: HostBlock


@dataclass(frozen=True)
class Flush:
    """A flush point: every summary up to chunk `next_chunk` is in `state`, on the host.
    `stopped`: the chunk count a target MCSE stopped the run at (or None); `trace`: the MCSE
    reached after each chunk so far."""

    state: HostSummaries
    next_chunk: int
    stopped: int | None
    trace: list[list[float]]


@dataclass(frozen=True)
class Progress:
    """`done` of the run's `total` scenarios (this shard's) are simulated."""

    done: int
    total: int


@dataclass(frozen=True)
class Done:
    """The end of the loop: the summaries, the run's manifest fields (`extra`: chunking, shard,
    scenarios run, convergence) and its ArviZ diagnostics, if they ran during the loop."""

    state: HostSummaries
    extra: dict[str, Any]
    diagnostics: Future | None = None


@dataclass(frozen=True)
class Resume:
    """Where an interrupted run continues: its checkpoint's summaries, next chunk, MCSE trace and
    the chunk count a target MCSE had stopped it at."""

    state: HostSummaries
    next_chunk: int
    trace: list[list[float]] = field(default_factory=list)
    stopped: int | None = None


Event = RowBlock | Flush | Progress | Done


class ChunkLoop:
    """The chunk loop of a run of `study` with `opts`: its plan, chunking and flush points are
    fixed here (StudyError for a shard that would hold no chunk), before anything is compiled.

    `every`: chunks between flush points; `chunks` = (lo, hi): this shard's slice of the
    `n_chunks` chunks; `fields`: the Parquet schema of the rows it yields; `rows`: how the
    writer makes a part's columns from a :class:`RowBlock` (None for a run without rows)."""

    def __init__(self, study: Study, opts: RunOptions, times: Timings):
        t0 = time.perf_counter()
        self.study, self.opts, self.times = study, opts, times
        n_total = opts.scenarios
        self.plan = plan = make_plan(
            study,
            scenarios=n_total,
            seed=opts.seed,
            precision=opts.precision,
            chunk_size=opts.chunk_size,
            monthly=opts.monthly,
            dims=opts.sampler_dims,
        )
        C = plan.chunk
        self.n_chunks = -(-n_total // C)
        every = opts.checkpoint_every or max(
            1, (CHECKPOINT_SCENARIOS_ACCELERATOR if on_accelerator() else CHECKPOINT_SCENARIOS) // C
        )
        self.every = min(every, max(1, (2**31 - 1) // C))  # int32 histogram bins never overflow
        self.store = np.float64 if opts.precision == "float64" else np.float32
        self.n_diag = min(n_total, max(opts.diagnostic_draws, 0))
        shard_i, shard_k = opts.shard_index
        lo, hi = shard_i * self.n_chunks // shard_k, (shard_i + 1) * self.n_chunks // shard_k
        if hi <= lo:  # shards are slices of whole chunks
            raise StudyError(
                [
                    Problem(
                        "--shard",
                        f"shard {shard_i}/{shard_k} would hold no scenarios: {n_total:,} scenarios make "
                        f"{self.n_chunks:,} chunk(s) of {C:,}, so at most {self.n_chunks:,} shard(s); use fewer "
                        "shards or a smaller --chunk-size",
                    )
                ],
                "options",
            )
        self.chunks = (lo, hi)
        self.fields = self.rows = None
        if opts.write_scenarios:
            kept = None if opts.columns is None else {"scenario", "system", *map(column_name, opts.columns)}
            self.fields = [f for f in scenario_fields(plan, self.store) if kept is None or f.name in kept]
            self.rows = ScenarioRows(plan, self.fields)
        self.stages = RunStages(plan, opts, times, self.rows)
        self.target: Target | None = parse_target(opts.target_mcse) if opts.target_mcse else None
        self._plan_seconds = time.perf_counter() - t0

    def events(self, resume: Resume | None = None, held_blocks: int = 0) -> Iterator[Event]:
        """Run the chunks (from `resume`'s next chunk, if given): compile every stage at once, then
        sample, simulate and reduce each chunk, yielding what the caller writes. `held_blocks`: how
        many chunks' row blocks the caller holds at most (the pinned host memory grown ahead)."""
        lo, hi = self.chunks
        start = resume or Resume(HostSummaries.empty(self.plan), lo)
        self.state, self.trace = start.state, list(start.trace)
        self.diag_future: Future | None = None
        self.pinned = pinned_host(self.stages.by_cols)  # where row blocks go on the host (None: ordinary memory)
        self.times["plan"] = self._plan_seconds
        chunks = range(start.next_chunk, hi if not start.stopped else start.next_chunk)
        reserving = self._compile(chunks, held_blocks) if len(chunks) else None
        t0 = time.perf_counter()  # the run's first arrays (on a GPU, with what is left of the pool's reservation)
        s = self.stages
        consts, dist_values = jax.device_put(s.consts_h, s.replicated), jax.device_put(s.dist_h, s.replicated)
        shock_ids = [None if v is None else jax.device_put(np.uint32(v), s.replicated) for v in s.streams]
        self.acc = jax.device_put(reduce_init(self.plan), s.summaries)
        self.times["plan"] += time.perf_counter() - t0
        end = start.stopped or hi
        for chunk in chunks:
            stop = yield from self._chunk(chunk, consts, dist_values, shock_ids)
            if stop:
                end = chunk + 1
                break
        if reserving is not None and reserving.exception() is not None:  # only slower: the pool grew while writing
            warnings.warn(
                f"could not reserve pinned host memory ahead: {reserving.exception()}", RuntimeWarning, stacklevel=2
            )
        yield Done(self.state, self._extra(resume, end), self.diag_future)

    def _compile(self, chunks: range, held_blocks: int) -> Future | None:
        """Compile every stage at once, from the shapes, dtypes and placements of their arguments;
        return the background reservation of pinned memory for the row blocks, if any.

        The stages are traced, lowered and their compiles started before any array is placed on
        the device: on a GPU the first array waits for JAX to reserve the device's memory pool
        (seconds), which then goes on beside the lowering (cli.app._start_backend_early starts it)."""
        t0 = time.perf_counter()  # tracing the stages for their abstract outputs is compile time too
        todo = self.stages.compile_plan(chunks.start, chunks.start * self.plan.chunk < self.n_diag)
        self.times["compile"] += time.perf_counter() - t0
        compile_all(todo, self.times)
        # What only the end needs (pandas, ArviZ, the break-even table's price quantiles) is made
        # ready while the stages compile: not before the run, where importing it held the
        # interpreter's lock against the engine's imports and the lowering, nor after the last chunk.
        _background(_prepare_end, self.study)
        if self.rows is None or self.pinned is None or held_blocks <= 0:
            return None
        # The pinned memory of the row blocks the caller will hold, pinned while the stages compile.
        specs = self.rows.block_specs(self.plan.chunk * len(self.plan.row_systems))
        return _background(reserve_pinned, specs, self.stages.by_cols, self.pinned, min(len(chunks), held_blocks))

    def _chunk(self, chunk: int, consts, dist_values, shock_ids) -> Iterator[Event]:
        """One chunk: sampled, simulated and reduced; its rows, a flush and its progress yielded.
        Returns whether a target MCSE stops the run here."""
        interrupt.check()  # a Ctrl-C whose KeyboardInterrupt was dropped (raised in a GC callback) still stops the run
        s, C, n_total = self.stages, self.plan.chunk, self.opts.scenarios
        start = chunk * C
        valid = min(C, n_total - start)
        idx, mask, band_mask = s.index(np.int64(start), *s.counts)
        draw = Sample(s.inputs(idx, dist_values), Shocks(*(None if v is None else s.shocks(idx, v) for v in shock_ids)))
        run_draw = draw._replace(values={**draw.values, **consts})
        out = s.simulate(run_draw)
        self.acc = s.reduce(self.acc, out, mask)
        if chunk < s.band_chunks:
            self.acc = s.bands(self.acc, run_draw, band_mask)
        if self.rows is not None:  # the copy to the host starts now, and the caller's writer waits for it
            sel = np.arange(valid) if s.keep is None else np.flatnonzero(np.asarray(s.keep(idx))[:valid])
            yield RowBlock(chunk, start, valid, sel, HostBlock(s.rows_block(out, run_draw.values), self.pinned))
        del run_draw
        if start < self.n_diag:  # the first scenarios' metrics, float64, for ArviZ
            self._retain(out, start, valid)
        del draw, out
        stop = False
        if self.target is not None:
            t0 = time.perf_counter()
            reached = _target_mcse(self.plan, self.acc, self.state, self.target)
            self.trace.append([min(n_total, (chunk + 1) * C), reached])
            stop = bool(reached <= self.target.value)
            self.times["summarize"] += time.perf_counter() - t0
        if stop or (chunk + 1) % self.every == 0 or chunk + 1 == self.chunks[1]:
            t0 = time.perf_counter()
            self.acc = jax.device_put(
                flush(self.plan, self.acc if s.collapse is None else s.collapse(self.acc), self.state), s.summaries
            )
            self.times["write"] += time.perf_counter() - t0
            yield Flush(self.state, chunk + 1, chunk + 1 if stop else None, self.trace)
        lo, hi = self.chunks
        yield Progress(min(n_total, (chunk + 1) * C) - lo * C, min(n_total, hi * C) - lo * C)
        return stop

    def _retain(self, out, start: int, valid: int) -> None:
        """Keep the chunk's first scenarios' metrics; start ArviZ's diagnostics once all are kept."""
        k = min(valid, self.n_diag - start)
        t0 = time.perf_counter()
        full = jax.device_get(self.stages.retain(out))
        self.times["transfer"] += time.perf_counter() - t0
        block = np.stack([full[m][:, :k] for m in self.plan.metrics]).reshape(self.plan.n_series, k)
        self.state.retained = np.concatenate([self.state.retained, block], axis=1)
        if self.state.retained.shape[1] == self.n_diag:  # ArviZ's diagnostics run while the device goes on
            self.diag_future = _background(risk.diagnostics, self.state.retained, self.n_diag)

    def _extra(self, resume: Resume | None, end: int) -> dict[str, Any]:
        """The manifest's fields about the loop: chunking, shard, scenarios run, bands, convergence."""
        lo, hi = self.chunks
        shard_i, shard_k = self.opts.shard_index
        C, n_total, plan = self.plan.chunk, self.opts.scenarios, self.plan
        extra = {
            "chunk_size": C,
            "month_loop_unroll": plan.unroll,
            "chunks": self.n_chunks,
            "checkpoint_every_chunks": self.every,
            "resumed_from_chunk": resume.next_chunk if resume is not None else None,
            "shard": {"index": shard_i, "count": shard_k, "chunks": [lo, hi]} if shard_k > 1 else None,
            "scenarios_run": min(n_total, end * C) - lo * C if shard_k == 1 else None,
        }
        # The bands count the scenarios below the cap that ran: fewer than the cap when a target MCSE
        # stopped the run early. A shard records the whole run's cap, which the merged run keeps.
        band_cap = self.stages.band_cap
        extra["monthly_scenarios"] = (
            None if not plan.monthly else band_cap if shard_k > 1 else min(band_cap, extra["scenarios_run"])
        )
        if self.target is not None:
            trace, target = self.trace, self.target
            extra["convergence"] = {
                "target": target.text(),
                "method": "sd/sqrt(N)" if target.prob is None else "order-statistic interval from the sketch",
                "reached_mcse": trace[-1][1] if trace else None,
                "met": bool(trace and trace[-1][1] <= target.value),
                "scenarios": min(n_total, end * C),
                "maximum": n_total,
                "trace": trace,
            }
        return extra


def _prepare_end(st: Study) -> None:
    risk.warm_imports()
    breakeven.prepare(st)


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


def _target_mcse(plan: Plan, acc, state: HostSummaries, target: Target) -> float:
    """The largest MCSE over systems of the target statistic, from the host and device reducers."""
    rows = series_of(target, len(plan.row_systems))
    dev = red.to_host(red.ReduceState(jax.tree.map(lambda a: a[rows], acc.state.moments), acc.state.hist[:, rows]))
    host = state.host
    if host is not None:
        dev = red.merge(red.HostState(red.Moments(*(np.asarray(f)[rows] for f in host.moments)), host.hist[rows]), dev)
    values = mcse(dev, target, plan.sketch)
    return float(np.max(values)) if np.all(np.isfinite(values)) else float("inf")

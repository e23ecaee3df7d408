"""The compiled stages of one run, and the abstract arguments they are compiled from.

Every stage's outputs are placed explicitly: scenarios split over the devices along their
scenario axis, the running summaries replicated (but for the sketches' histograms, split by
device). Then the abstract arguments the stages are compiled from (:meth:`RunStages.compile_plan`)
are exactly what they are called with.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mcrisk.engine.options import RunOptions
from mcrisk.engine.plan import (
    Plan,
    Sample,
    chunk_indices,
    draw_inputs,
    fixed_values,
    monthly_values,
    sample_values,
    shock_streams,
    simulate,
)
from mcrisk.engine.programs import Stage
from mcrisk.engine.reduction import (
    collapse_copies,
    reduce_bands,
    reduce_chunk,
    reduce_init,
    reduce_shardings,
    sketch_copies,
)
from mcrisk.engine.rows import ScenarioRows
from mcrisk.engine.timings import Timings
from mcrisk.model.market import Shocks
from mcrisk.sampling.uniforms import make_sampler, root_key, shock_normals, stream_id


class RunStages:
    """The stages of a run of `plan` with `opts`, booking their time in `times`.

    `rows`: how the scenario rows are assembled, for a run that writes them (else None). The
    band values are reduced only on chunks 0 .. `band_chunks` - 1, which hold the first
    `band_cap` scenarios (the monthly bands' cap)."""

    def __init__(self, plan: Plan, opts: RunOptions, times: Timings, rows: ScenarioRows | None):
        C, n_total, seed = plan.chunk, opts.scenarios, opts.seed
        self.plan, self.rows = plan, rows
        self.sharding = NamedSharding(plan.mesh, PartitionSpec("scenarios"))
        by_rows = NamedSharding(plan.mesh, PartitionSpec("scenarios", None))  # shocks (n, T) on CPUs
        self.by_cols = NamedSharding(
            plan.mesh, PartitionSpec(None, "scenarios")
        )  # (S, n), (H, n), shocks (T, n) on accelerators
        self.replicated = NamedSharding(plan.mesh, PartitionSpec())
        # The distributions' parameters and the copula factor are arguments, like the fixed values of
        # the simulate stage: a stress or sweep point that changes only values compiles nothing new.
        self.inputs = Stage(
            lambda idx, v: draw_inputs(plan, idx, v), "sample", times, out_shardings=self.sharding, label="inputs"
        )
        self.shocks = Stage(
            lambda idx, sid: shock_normals(
                root_key(seed), idx, sid, plan.months, plan.dtype, time_major=plan.time_major_shocks
            ),
            "sample",
            times,
            out_shardings=self.by_cols if plan.time_major_shocks else by_rows,
            label="shocks",
        )
        self.streams = shock_streams(plan)  # (placed on the device by the loop, after the compiles have started)
        # Every chunk's metrics come from one program; the monthly band values from a second, run only
        # on the chunks that hold band scenarios (engine.monthly_values).
        self.simulate = Stage(lambda d: simulate(plan, d, C), "simulate", times, out_shardings=self.by_cols)
        self.summaries = reduce_shardings(plan)  # replicated, but for the sketches' histograms (split by device)
        self.reduce = Stage(
            lambda acc, o, m: reduce_chunk(plan, acc, o, m),
            "summarize",
            times,
            donate=0,
            out_shardings=self.summaries,
            label="reduce",
        )
        self.band_cap = n_total if opts.monthly_scenarios is None else min(n_total, opts.monthly_scenarios)
        # (one program: the band values go from the month loop into the sketches without leaving the device)
        self.bands = Stage(
            lambda acc, d, m: reduce_bands(plan, acc, monthly_values(plan, d, C), m),
            "summarize",
            times,
            donate=0,
            out_shardings=self.summaries,
            label="bands",
        )
        self.band_chunks = (
            -(-self.band_cap // C) if plan.monthly else 0
        )  # chunks 0 .. band_chunks - 1 hold band scenarios
        # The chunk's scenario indices and masks, made on the device (no host arrays to copy per chunk).
        # (the counts are arguments: runs of other sizes in the same chunk shape reuse the program)
        self.index = Stage(
            lambda start, n, nb: chunk_indices(start, C, n, nb),
            "sample",
            times,
            out_shardings=(self.sharding,) * 3,
            label="indices",
        )
        self.counts = (np.int64(n_total), np.int64(self.band_cap))
        # The float columns of a chunk's rows, assembled on the device into a block per dtype (ScenarioRows).
        self.rows_block = (
            Stage(rows.block, "transfer", times, out_shardings=self.by_cols, label="rows") if rows is not None else None
        )
        # Sketches kept in several copies on the device are added into one before they move to the host.
        self.collapse = (
            Stage(collapse_copies, "write", times, out_shardings=self.replicated, label="collapse")
            if sketch_copies(plan)[0] > 1
            else None
        )
        self.keep = None
        if opts.sample_fraction is not None and rows is not None:  # a fixed random subset of scenarios, by index
            picker = make_sampler("random", seed, (stream_id("output.subsample"),), n_total)
            fraction = opts.sample_fraction
            self.keep = Stage(
                lambda idx: picker.uniforms(idx, jnp.float64)[:, 0] < fraction, "write", times, label="keep"
            )
        # The retained draws come from the first chunks, at most k_diag per chunk (a width that does
        # not depend on the scenario count: runs of other sizes in this chunk shape reuse the program).
        k_diag = min(C, max(opts.diagnostic_draws, 0))
        self.retain = Stage(lambda o: {m: o[m][:, :k_diag] for m in plan.metrics}, "transfer", times, label="retain")
        self.consts_h, self.dist_h = fixed_values(plan), sample_values(plan)

    def compile_plan(self, start_chunk: int, retains: bool) -> list[tuple[Stage, tuple]]:
        """(stage, abstract arguments) of every stage a run from chunk `start_chunk` calls, longest
        compile first (simulate, then the inputs, the summaries, the bands, the shocks:
        benchmarks/traffic.py --stages), so that compiling them in threads ends together.
        `retains`: whether the run still keeps draws for ArviZ."""
        C = self.plan.chunk
        idx_a, mask_a = (jax.ShapeDtypeStruct((C,), dt, sharding=self.sharding) for dt in (jnp.uint32, jnp.bool_))
        sid_a = jax.ShapeDtypeStruct((), jnp.uint32, sharding=self.replicated)
        consts_a, dist_a = (_placed(v, self.replicated) for v in (self.consts_h, self.dist_h))
        acc_a = _placed(jax.eval_shape(lambda: reduce_init(self.plan)), self.summaries)
        shocks_a = self.shocks.abstract(idx_a, sid_a)
        draw_a = Sample(
            self.inputs.abstract(idx_a, dist_a), Shocks(*(None if s is None else shocks_a for s in self.streams))
        )
        run_a = draw_a._replace(values={**draw_a.values, **consts_a})
        out_a = self.simulate.abstract(run_a)
        todo = [(self.simulate, (run_a,)), (self.inputs, (idx_a, dist_a)), (self.reduce, (acc_a, out_a, mask_a))]
        if start_chunk < self.band_chunks:
            todo += [(self.bands, (acc_a, run_a, mask_a))]
        todo += [(self.shocks, (idx_a, sid_a))] if any(s is not None for s in self.streams) else []
        todo += [(self.index, (np.int64(0), *self.counts))]
        todo += [(self.rows_block, (out_a, run_a.values))] if self.rows_block is not None else []
        todo += [(self.retain, (out_a,))] if retains else []
        todo += [(self.keep, (idx_a,))] if self.keep is not None else []
        todo += [(self.collapse, (acc_a,))] if self.collapse is not None else []
        return todo


def _placed(tree, where):
    """Abstract arrays (shape, dtype, placement) of a tree of host values or abstract arrays, for
    compiling: placed by `where`, one sharding for all or a tree of them like `tree`."""

    def one(a, at):
        return jax.ShapeDtypeStruct(np.shape(a), a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype, sharding=at)

    if isinstance(where, NamedSharding):
        return jax.tree.map(lambda a: one(a, where), tree)
    return jax.tree.map(one, tree, where)

"""The device-side running summaries of a run: initialised, placed, updated chunk by chunk and collapsed.

The metric reducers, the exact tail counts (``Plan.tail_counts``) and the monthly band sketches stay
on the devices between flushes; each device adds its own scenarios to its own copies of the
sketches' histograms, which are added into one before they cross to the host.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mcrisk.engine.plan import Plan
from mcrisk.stats import reduce as red
from mcrisk.stats.bands import MONTHLY_SKETCH


class Reduced(NamedTuple):
    """Device-side running summaries: the metric reducers, exact tail counts (len(plan.tail_counts), rows S),
    and the monthly band reducers (None when the plan keeps none)."""

    state: red.ReduceState
    tails: jax.Array
    monthly: red.ReduceState | None = None


def sketch_copies(plan: Plan) -> tuple[int, NamedSharding | None]:
    """Histograms per series on the device, and their placement: the layout's copies on each
    device, split over the devices along the copies axis (each device counts its own scenarios
    in its own copies; :func:`update_sketch`)."""
    copies = plan.sketch_layout.copies * plan.mesh.size
    return copies, NamedSharding(plan.mesh, PartitionSpec("scenarios")) if plan.mesh.size > 1 else None


def reduce_init(plan: Plan) -> Reduced:
    tails = jax.device_put(
        np.zeros((len(plan.tail_counts), len(plan.row_systems)), np.int64)
    )  # (jnp.zeros compiles a program)
    copies, placed = sketch_copies(plan)
    monthly = red.init_state(plan.n_monthly, MONTHLY_SKETCH, copies, placed) if plan.monthly else None
    return Reduced(red.init_state(plan.n_series, plan.sketch, copies, placed), tails, monthly)


def reduce_shardings(plan: Plan) -> Reduced:
    """Where the running summaries live: replicated, but for the histograms' copies (see :func:`sketch_copies`)."""
    replicated = NamedSharding(plan.mesh, PartitionSpec())
    hist = sketch_copies(plan)[1] or replicated
    state = red.ReduceState(red.Moments(*(replicated,) * len(red.Moments._fields)), hist)
    return Reduced(state, replicated, state if plan.monthly else None)


def update_sketch(
    plan: Plan, state: red.ReduceState, values: jax.Array, mask: jax.Array, spec: red.SketchSpec
) -> red.ReduceState:
    """:func:`mcrisk.stats.reduce.update` of a chunk split over the plan's devices. The counts and moments
    are reduced over every device; each device adds its own scenarios to its own copies of the
    histograms, so the summaries' cost is divided among the devices like the simulation's (a
    replicated histogram had each device gather every index of the chunk and add them all)."""
    interleave = plan.sketch_layout.interleave
    if plan.mesh.size == 1:
        return red.update(state, values, mask, spec, interleave)
    by_copies, by_cols = PartitionSpec("scenarios"), PartitionSpec(None, "scenarios")
    hist = jax.shard_map(
        lambda h, v, m: red.update_hist(h, v, m, spec, interleave),
        mesh=plan.mesh,
        in_specs=(by_copies, by_cols, by_copies),
        out_specs=by_copies,
    )(state.hist, values, mask)
    return red.ReduceState(red.update_moments(state.moments, values, mask), hist)


def reduce_chunk(
    plan: Plan,
    acc: Reduced,
    out: dict[str, jax.Array],
    mask: jax.Array,
    bands: jax.Array | None = None,
    band_mask: jax.Array | None = None,
) -> Reduced:
    """Fold one chunk's metrics (series h = metric * S + system) and monthly band values into the running summaries.

    `band_mask` (default `mask`) says which scenarios count in the monthly bands; a chunk with
    none skips their update at run time (one program serves every chunk)."""
    stacked = jnp.stack([out[m] for m in plan.metrics])  # (M, S, n)
    state = update_sketch(plan, acc.state, stacked.reshape(plan.n_series, -1), mask, plan.sketch)
    tails = jnp.stack([(test(out[m]) & mask).sum(axis=-1) for _, m, test in plan.tail_counts])
    acc = Reduced(state, acc.tails + tails.astype(jnp.int64), acc.monthly)
    if acc.monthly is not None and bands is not None:
        keep = mask if band_mask is None else band_mask
        acc = jax.lax.cond(keep.any(), lambda a: reduce_bands(plan, a, bands, keep), lambda a: a, acc)
    return acc


def collapse_copies(acc: Reduced) -> Reduced:
    """The running summaries with each sketch's copies added into one histogram, (1, H, B): what
    crosses to the host at a flush (:func:`mcrisk.stats.reduce.to_host` adds them itself otherwise, in
    a program of its own that a GPU compiled in 0.2 s per sketch after the last chunk)."""

    def one(state: red.ReduceState | None) -> red.ReduceState | None:
        return (
            None
            if state is None
            else state._replace(hist=jnp.sum(state.hist, axis=0, keepdims=True, dtype=state.hist.dtype))
        )

    return acc._replace(state=one(acc.state), monthly=one(acc.monthly))


def reduce_bands(plan: Plan, acc: Reduced, bands: jax.Array, band_mask: jax.Array) -> Reduced:
    """Fold one chunk's monthly band values (n_monthly, n) of the scenarios in `band_mask` into the band sketches."""
    return acc._replace(monthly=update_sketch(plan, acc.monthly, bands, band_mask, MONTHLY_SKETCH))

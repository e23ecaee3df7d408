"""Streaming, mergeable reducers: exact moments and counts, and a quantile sketch.

The engine keeps one :class:`ReduceState` per run on the device and folds every
chunk of scenario values into it with :func:`update` inside ``jit``.  States of
different runs or shards are merged exactly on the host with :func:`merge`:
counts and the histogram are integers (bit-identical whatever the chunking or
sharding), the moments use Chan's parallel merge in float64 (identical to
float64 rounding).

Series and values
    ``values`` has shape (H, n): H series (e.g. metrics x systems), n scenarios;
    ``mask`` (n,) is False for padding rows, which are ignored.  NaN is counted
    in ``nan`` only; ``count`` is the number of non-NaN values (finite or
    infinite); mean, m2 (and :func:`sd`) are over the finite values; min and max
    are exact over the non-NaN values (so they can be +-inf).  A series with no
    such value keeps the identities of the merge (mean 0, min +inf, max -inf);
    :func:`stats` gives the mean, sd, min and max a table reports, NaN there.

Sketch
    The histogram and everything read from it (bins, quantiles, tail means, the
    device layout of its copies) is :mod:`mcrisk.stats.sketch`; its names are
    importable from here too.  The device histogram is int32: flush it to the
    host (``to_host`` + ``merge``, then ``init_state``) before any bin can reach
    2**31 (i.e. every < 2**31 scenarios).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mcrisk.stats import sketch as sk
from mcrisk.stats.sketch import Layout, SketchSpec, bin_index, update_hist  # noqa: F401  (the reducer's API)


class Moments(NamedTuple):
    """Exact per-series counts and float64 moments; every field has shape (H,)."""

    count: jax.Array  # int64 non-NaN values (finite or inf)
    nan: jax.Array  # int64
    posinf: jax.Array  # int64
    neginf: jax.Array  # int64
    n_finite: jax.Array  # int64
    mean: jax.Array  # float64 mean of the finite values (0 when none)
    m2: jax.Array  # float64 sum of squared deviations of the finite values
    min: jax.Array  # float64 over non-NaN values (+inf when none)
    max: jax.Array  # float64 over non-NaN values (-inf when none)


class ReduceState(NamedTuple):
    moments: Moments
    hist: jax.Array  # (copies, H, 2K+3) int32 on the device


class HostState(NamedTuple):
    """Host copy of a ReduceState: numpy arrays, same fields, int64 hist."""

    moments: Moments  # holding numpy arrays
    hist: np.ndarray  # (H, 2K+3) int64


def init_state(n_series: int, spec: SketchSpec = SketchSpec(), copies: int = 1, sharding=None) -> ReduceState:
    """Empty reducers of `n_series` series, with `copies` histograms each (see :class:`Layout`),
    the histograms placed with `sharding` if given (the moments are placed by the caller)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("mcrisk.stats.reduce needs jax_enable_x64 (call mcrisk.enable_float64() first)")
    if not (0.0 < spec.rel_accuracy < 1.0 and 1e-300 < spec.min_abs < spec.max_abs < 1e300):
        raise ValueError(f"invalid {spec}")
    if copies < 1 or copies * n_series * spec.n_bins >= 2**31:
        raise ValueError(f"{copies} copies of {n_series} series of {spec.n_bins} bins do not fit int32 indices")

    def full(v, dt):  # distinct buffers, so that the state can be donated; made on the host and copied
        return jax.device_put(np.full((n_series,), v, dtype=dt))  # (jnp.full and jnp.asarray each compile a program)

    moments = Moments(
        *(full(0, np.int64) for _ in range(5)),
        full(0.0, np.float64),
        full(0.0, np.float64),
        full(np.inf, np.float64),
        full(-np.inf, np.float64),
    )
    shape = (copies, n_series, spec.n_bins)
    if copies == 1 and sharding is None:  # made on the host, like the moments
        return ReduceState(moments, jax.device_put(np.zeros(shape, dtype=np.int32)))
    # More copies are zeroed where they live: copying hundreds of MB from the host would take
    # longer than compiling the kernel that zeroes them (once per shape and placement).
    return ReduceState(moments, jnp.zeros(shape, jnp.int32, device=sharding))


def _chan(na, ma, m2a, nb, mb, m2b, xp):
    """Chan et al. parallel merge of (count, mean, m2) in float64; exact when one side is empty."""
    n = na + nb
    fa, fb = na.astype(xp.float64), nb.astype(xp.float64)
    delta = mb - ma
    w = fb / xp.maximum(fa + fb, 1.0)
    mean = xp.where(nb == 0, ma, xp.where(na == 0, mb, ma + delta * w))
    m2 = xp.where(nb == 0, m2a, xp.where(na == 0, m2b, m2a + m2b + delta * delta * fa * w))
    return n, mean, m2


def _sums(ops, inits, fns):
    """One fused pass over (H, n) operands reducing along axis 1 (variadic reduce: on
    CPU this keeps XLA from materializing each input as a full float64 array)."""
    return jax.lax.reduce(ops, inits, lambda a, b: tuple(f(u, v) for f, u, v in zip(fns, a, b)), (1,))


def update(
    state: ReduceState, values: jax.Array, mask: jax.Array, spec: SketchSpec = SketchSpec(), interleave: int = 0
) -> ReduceState:
    """Fold a chunk ``values`` (H, n) into ``state``; ``mask`` (n,) False = padding.

    Pure; jit it with ``spec`` and ``interleave`` static (``jax.jit(update,
    static_argnums=(3, 4), donate_argnums=0)``: donating the state updates the
    histogram in place).  The histogram's copies are the state's (see :class:`Layout`).
    """
    m, hist = state
    hist = update_hist(hist, values, mask, spec, interleave)  # (checks that the state fits the values)
    return ReduceState(update_moments(m, values, mask), hist)


def update_moments(m: Moments, values: jax.Array, mask: jax.Array) -> Moments:
    """The counts and moments of :func:`update` alone."""
    x = values
    xd = x.astype(jnp.float64)
    live, valid = sk.live_valid(x, mask)
    fin = live & jnp.isfinite(x)
    i32, i64, f64 = jnp.int32, jnp.int64, jnp.float64
    add, inf = jnp.add, jnp.inf
    n_fin, n_val, n_live, s, lo, hi = _sums(
        (
            fin.astype(i32),
            valid.astype(i32),
            live.astype(i32),
            jnp.where(fin, xd, 0.0),
            jnp.where(valid, xd, inf),
            jnp.where(valid, xd, -inf),
        ),
        (i32(0), i32(0), i32(0), f64(0.0), f64(inf), f64(-inf)),
        (add, add, add, add, jnp.minimum, jnp.maximum),
    )
    mean_c = s / jnp.maximum(n_fin, 1).astype(f64)
    dev = jnp.where(fin, xd - mean_c[:, None], 0.0)
    m2_c, n_pos, n_neg = _sums(
        (dev * dev, (live & (x == inf)).astype(i32), (live & (x == -inf)).astype(i32)),
        (f64(0.0), i32(0), i32(0)),
        (add, add, add),
    )
    n_f, mean, m2 = _chan(m.n_finite, m.mean, m.m2, n_fin.astype(i64), mean_c, m2_c, jnp)
    return Moments(
        count=m.count + n_val.astype(i64),
        nan=m.nan + (n_live - n_val).astype(i64),
        posinf=m.posinf + n_pos.astype(i64),
        neginf=m.neginf + n_neg.astype(i64),
        n_finite=n_f,
        mean=mean,
        m2=m2,
        min=jnp.minimum(m.min, lo),
        max=jnp.maximum(m.max, hi),
    )


def _host_moments(m: Moments) -> Moments:
    dt = (np.int64,) * 5 + (np.float64,) * 4
    return Moments(*(np.array(f, dtype=d) for f, d in zip(m, dt)))


def _host_hist(hist) -> np.ndarray:
    """A histogram on the host, (H, B): a device state's copies added up (on the device, so that
    one copy's bytes cross to the host), a host state's as it is."""
    if isinstance(hist, np.ndarray) and hist.ndim == 2:
        return hist
    if hist.shape[0] > 1:
        hist = jnp.sum(hist, axis=0, dtype=hist.dtype)  # < 2**31 per bin (the flush rule above)
    return np.asarray(hist).reshape(hist.shape[-2:])


def to_host(state: ReduceState | HostState) -> HostState:
    return HostState(_host_moments(state.moments), np.array(_host_hist(state.hist), dtype=np.int64))


def _merge_moments(ma: Moments, mb: Moments) -> Moments:
    n, mean, m2 = _chan(ma.n_finite, ma.mean, ma.m2, mb.n_finite, mb.mean, mb.m2, np)
    return Moments(
        ma.count + mb.count,
        ma.nan + mb.nan,
        ma.posinf + mb.posinf,
        ma.neginf + mb.neginf,
        n,
        mean,
        m2,
        np.minimum(ma.min, mb.min),
        np.maximum(ma.max, mb.max),
    )


def merge(a: HostState | ReduceState, b: HostState | ReduceState) -> HostState:
    """Exact merge: counts and hist add (associative, commutative), min/max, Chan."""
    a, b = _host(a), _host(b)
    return HostState(_merge_moments(a.moments, b.moments), a.hist + b.hist)


def merge_into(a: HostState, b: HostState | ReduceState) -> HostState:
    """``merge(a, b)``, adding b's histogram into a's in place: no new (series x bins) array, where
    ``merge(a, to_host(b))`` makes two (for the metric sketches, 100 MB each). `a` is consumed."""
    hist = a.hist
    hist += _host_hist(b.hist)  # int32 counts of one flush interval into the int64 totals
    return HostState(_merge_moments(a.moments, _host_moments(b.moments)), hist)


def _host(state: HostState | ReduceState) -> HostState:
    return state if isinstance(state, HostState) else to_host(state)


def quantiles(state: HostState | ReduceState, probs: Sequence[float], spec: SketchSpec | None = None) -> np.ndarray:
    """(H, len(probs)) float64 inverted-CDF quantiles (see :mod:`mcrisk.stats.sketch`)."""
    state = _host(state)
    spec = sk.spec_for(state.hist, spec)
    return sk.quantiles(state.hist, state.moments.min, state.moments.max, probs, spec)


def tail_mean(state: HostState | ReduceState, prob: float, spec: SketchSpec | None = None) -> np.ndarray:
    """(H,) mean of the lowest max(1, ceil(prob n)) values (CVaR / expected shortfall)."""
    state = _host(state)
    spec = sk.spec_for(state.hist, spec)
    return sk.tail_mean(state.hist, state.moments.min, state.moments.max, prob, spec)


def _moments(state: HostState | ReduceState) -> Moments:
    """The moments of a state on the host (a device state's histogram stays where it is)."""
    return state.moments if isinstance(state, HostState) else _host_moments(state.moments)


def sd(state: HostState | ReduceState) -> np.ndarray:
    """(H,) sample standard deviation (ddof=1) of the finite values; NaN if < 2."""
    return _sd(_moments(state))


def _sd(m: Moments) -> np.ndarray:
    n = np.asarray(m.n_finite, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, np.sqrt(np.asarray(m.m2) / np.maximum(n - 1.0, 1.0)), np.nan)


class Stats(NamedTuple):
    """The moments of each series as a table reports them: (H,) float64 arrays, NaN where there is
    no value to summarize. (The state keeps mean 0, min +inf and max -inf there: the identities
    that :func:`merge` needs, which a table would misreport as a mean of 0 or an empty range.)"""

    mean: np.ndarray  # of the finite values; NaN when none is finite
    sd: np.ndarray  # sample sd (ddof=1) of the finite values; NaN when fewer than 2
    min: np.ndarray  # over the non-NaN values (so it can be +-inf); NaN when every value is NaN
    max: np.ndarray


def stats(state: HostState | ReduceState) -> Stats:
    """(H,) mean, sd, min and max of every series, for tables (see :class:`Stats`)."""
    m = _moments(state)
    some = np.asarray(m.count) > 0
    return Stats(
        np.where(np.asarray(m.n_finite) > 0, m.mean, np.nan),
        _sd(m),
        np.where(some, m.min, np.nan),
        np.where(some, m.max, np.nan),
    )

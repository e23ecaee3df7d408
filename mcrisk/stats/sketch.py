"""The mergeable quantile sketch: a relative-accuracy log histogram (as in DDSketch).

Pure functions of arrays: the bin of a value, folding a chunk into a histogram (JAX, on the
device), and quantiles and tail means read back from a host histogram. The streaming state
that pairs a histogram with exact moments is :mod:`mcrisk.stats.reduce`.

Buckets
    alpha = ``spec.rel_accuracy``, gamma = (1+alpha)/(1-alpha),
    K = ceil(log(max_abs/min_abs)/log(gamma)) buckets per sign, bounds
    b_i = min_abs * gamma**i (i = 0..K).  Positive bucket i (1 <= i <= K)
    holds x in (b_{i-1}, b_i]; |x| <= min_abs (exact float64 test) goes to the
    zero bucket; |x| > max_abs goes to bucket K.  Negative values mirror.
    Bins per series, in value order: [-inf] [neg K..1] [zero] [pos 1..K] [+inf]
    (2K+3 bins); NaN is only counted.  The bucket is i = ceil(t) with
    t = log(|x|/min_abs)/log(gamma) computed in float64 from the exact binary
    exponent of |x| and a float32 log of its mantissa (XLA's float64 log is much
    slower on CPU; float32 input is cast to float64 first).  t is within 1e-4
    bucket of the exact value, so each bucket edge lies within 1e-7 (relative)
    of b_i, and the bucket is a pure elementwise function of the value: a value
    on an edge always lands in the same bucket, whatever the chunking, sharding
    or merge order (across CPU and GPU, values within ~1e-7 of an edge may land
    in neighbouring buckets).  Representative of bucket i: 2 b_i/(gamma+1),
    within alpha relative error of every value of (b_{i-1}, b_i]; zero for the
    zero bucket, +-inf for the inf bins.

Quantile definition
    Over the n non-NaN values (+-inf are the extreme ranks) the q-quantile is
    the value of rank k = max(1, ceil(q n)) (1-based): numpy
    ``method="inverted_cdf"``.  :func:`quantiles` returns the representative of
    the bin holding rank k, clamped into the exact [min, max] (ranks 1 and n
    give min and max exactly).  Error: at most
    (alpha + 1e-7) * |x_k| when min_abs < |x_k| <= max_abs; at most min_abs
    when |x_k| <= min_abs; exact for +-inf.  NaN when n == 0.

Expected shortfall
    :func:`tail_mean` (q) is the mean of the lowest m = max(1, ceil(q n)) values,
    each replaced by its bin representative (clamped into [min, max]); the
    partially used last bin contributes (m - ranks below it) representatives.
    Since the lowest m values are exactly the values of those bins (any m - c of
    the last bin's values, all within alpha of its representative), the error
    is at most (alpha + 1e-7) * mean(|x|) over the tail (+ min_abs for values in
    the zero bucket), i.e. alpha + 1e-7 relative when the tail has one sign.
    -inf if the tail holds -inf; +inf if it holds +inf and no -inf.

Memory: (2K+3) int32 per series and copy on the device (663 KB at the
default alpha = 5e-4, K = 82894); int64 on the host.  The device histogram is
int32: flush it to the host before any bin can reach 2**31 (i.e. every < 2**31
scenarios).

Device layout (:class:`Layout`; no count depends on it)
    The device keeps ``copies`` histograms per series, shape (copies, H, 2K+3):
    value j of a chunk is counted in copy j mod copies, and the host adds the
    copies up.  On a GPU the histogram is a scatter of atomic additions, and
    atomics to one address (or to the few cache slices holding one series' busy
    bins) run one after another: a series whose values share a bin (a fixed
    licence cost, a payback beyond the horizon) makes 2**20 additions to one
    address per chunk.  Copies divide that queue; ``interleave`` = k orders the
    additions k scenarios of one series, then k of the next, and so on (0: one
    series after another), so that the additions in flight at once spread over
    every series' bins.  On a CPU the scatter is a sequential loop and neither
    helps: one copy, series by series, is fastest there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class SketchSpec(NamedTuple):
    """Static configuration of the quantile sketch (hashable: a jit static arg)."""

    rel_accuracy: float = 5e-4  # alpha
    min_abs: float = 1e-12  # |x| <= min_abs -> zero bucket
    max_abs: float = 1e24  # |x| > b_K -> outermost finite bucket

    @property
    def gamma(self) -> float:
        return (1.0 + self.rel_accuracy) / (1.0 - self.rel_accuracy)

    @property
    def n_buckets(self) -> int:  # K, per sign
        return int(math.ceil(math.log(self.max_abs / self.min_abs) / math.log(self.gamma)))

    @property
    def n_bins(self) -> int:  # 2K+3
        return 2 * self.n_buckets + 3


class Layout(NamedTuple):
    """How the device keeps the histograms (see the module docstring): no count depends on it."""

    copies: int = 1  # histograms per series, added up on the way to the host
    interleave: int = 0  # scatter k scenarios of each series in turn (0: series after series)


@functools.lru_cache(maxsize=8)
def _bounds(spec: SketchSpec) -> np.ndarray:
    """b_i = min_abs * gamma**i, i = 0..K, float64, strictly increasing."""
    i = np.arange(spec.n_buckets + 1, dtype=np.float64)
    return spec.min_abs * np.exp(i * math.log(spec.gamma))


@functools.lru_cache(maxsize=8)
def _representatives(spec: SketchSpec) -> np.ndarray:
    """Representative value of each of the 2K+3 bins, in bin order (float64)."""
    pos = 2.0 * _bounds(spec)[1:] / (spec.gamma + 1.0)
    return np.concatenate([[-np.inf], -pos[::-1], [0.0], pos, [np.inf]])


def _log_index(x: jax.Array, spec: SketchSpec) -> jax.Array:
    """t = log(|x|/min_abs)/log(gamma) in float64 for |x| clipped to [min_abs, max_abs].

    XLA's float64 log is much slower than float32 on CPU, so: |x| = m * 2**e exactly
    (bit fields of the float64), log(m) from a float32 log of m plus a first-order term
    for the bits float32 drops; everything else in float64.  Error in t: < 1e-4
    bucket (an edge moves by < 1e-7 relative), and a pure elementwise function.
    """
    a = jnp.clip(jnp.abs(x).astype(jnp.float64), spec.min_abs, spec.max_abs)
    bits = jax.lax.bitcast_convert_type(a, jnp.int64)
    e = ((bits >> 52) - 1023).astype(jnp.float64)
    m = jax.lax.bitcast_convert_type((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000, jnp.float64)
    m32 = m.astype(jnp.float32)
    lm = jnp.log(m32) + (m - m32.astype(jnp.float64)).astype(jnp.float32) / m32
    return (e * math.log(2.0) - math.log(spec.min_abs) + lm.astype(jnp.float64)) * (1.0 / math.log(spec.gamma))


def bin_index(x: jax.Array, spec: SketchSpec) -> jax.Array:
    """Bin (0..2K+2, int32) of each value of a float array; NaN gives the zero bin."""
    K = spec.n_buckets
    i = jnp.clip(jnp.ceil(_log_index(x, spec)), 1, K).astype(jnp.int32)
    i = jnp.where(jnp.abs(x).astype(jnp.float64) > spec.min_abs, i, 0)  # NaN: zero bin too
    bins = jnp.where(x < 0, K + 1 - i, K + 1 + i)
    return jnp.where(jnp.isinf(x), jnp.where(x > 0, 2 * K + 2, 0), bins)


def live_valid(values: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(H, n) masks of the values that are not padding, and of those that are not NaN either."""
    live = jnp.broadcast_to(jnp.asarray(mask, dtype=jnp.bool_)[None, :], values.shape)
    return live, live & ~jnp.isnan(values)


def _check(hist: jax.Array, values: jax.Array, spec: SketchSpec) -> None:
    if hist.ndim != 3 or hist.shape[2] != spec.n_bins or values.shape[0] != hist.shape[1]:
        raise ValueError(f"state {hist.shape} does not fit values {values.shape} and {spec}")


def update_hist(
    hist: jax.Array, values: jax.Array, mask: jax.Array, spec: SketchSpec, interleave: int = 0
) -> jax.Array:
    """(copies, H, B) counts plus the chunk ``values`` (H, n), ``mask`` (n,) False = padding;
    value j is counted in copy j mod copies (on several devices, each runs this on its own
    scenarios and copies: see ``mcrisk.engine.plan.update_sketch``)."""
    _check(hist, values, spec)
    copies, H, B = hist.shape
    x, i32 = values, jnp.int32
    _, valid = live_valid(x, mask)
    # One scatter-add of 0/1 into the flat (copies*H*B,) counts; invalid entries (NaN, padding)
    # add 0 to their series' zero bin, so every index is in bounds (an index past the end,
    # dropped, would bring the mask into the index computation: several times slower on a CPU).
    flat = bin_index(x, spec) + (jnp.arange(H, dtype=i32) * B)[:, None]
    if copies > 1:
        flat = flat + (jnp.arange(x.shape[1], dtype=i32) % copies * (H * B))[None, :]
    ones = valid.astype(hist.dtype)
    k = math.gcd(interleave, x.shape[1])  # k scenarios of each series in turn (a divisor of n)
    if interleave and k < x.shape[1]:
        flat, ones = (a.reshape(H, -1, k).transpose(1, 0, 2) for a in (flat, ones))
    new_hist = hist.reshape(-1).at[flat.reshape(-1)].add(ones.reshape(-1), mode="promise_in_bounds")
    return new_hist.reshape(hist.shape)


def spec_for(hist: np.ndarray, spec: SketchSpec | None) -> SketchSpec:
    """`spec` (default: ``SketchSpec()``), checked against a host histogram's (H, B) shape."""
    spec = SketchSpec() if spec is None else spec
    if spec.n_bins != hist.shape[1]:
        raise ValueError(f"hist has {hist.shape[1]} bins, spec {spec} gives {spec.n_bins}")
    return spec


def _reps(spec: SketchSpec, bins, lo: float, hi: float) -> np.ndarray:
    """Representatives of `bins`, clamped into the series' exact [lo, hi]."""
    return np.clip(_representatives(spec)[bins], lo, hi)


def _rank(n: np.ndarray, q: float) -> np.ndarray:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"probability {q} not in [0, 1]")
    return np.clip(np.ceil(n.astype(np.float64) * q), 1, np.maximum(n, 1)).astype(np.int64)


def quantiles(hist: np.ndarray, lo: np.ndarray, hi: np.ndarray, probs: Sequence[float], spec: SketchSpec) -> np.ndarray:
    """(H, len(probs)) float64 inverted-CDF quantiles of a host histogram (H, B), given each
    series' exact minimum `lo` and maximum `hi` (H,) (see the module docstring)."""
    n = hist.sum(axis=1)
    out = np.full((hist.shape[0], len(probs)), np.nan, dtype=np.float64)
    for h in range(hist.shape[0]):
        if n[h] == 0:
            continue
        # One series at a time: a (series x bins) cumsum would be a fresh 100 MB array for the
        # metric sketches.
        cum = np.cumsum(hist[h])
        for c, q in enumerate(probs):
            k = _rank(n[h], q)
            if k == 1 or k == n[h]:  # the extreme ranks are known exactly
                out[h, c] = lo[h] if k == 1 else hi[h]
            else:
                out[h, c] = _reps(spec, np.searchsorted(cum, k, side="left"), lo[h], hi[h])
    return out


def tail_mean(hist: np.ndarray, lo: np.ndarray, hi: np.ndarray, prob: float, spec: SketchSpec) -> np.ndarray:
    """(H,) mean of the lowest max(1, ceil(prob n)) values of each series of a host histogram
    (CVaR / expected shortfall), given the exact minima `lo` and maxima `hi`."""
    n = hist.sum(axis=1)
    out = np.full((hist.shape[0],), np.nan, dtype=np.float64)
    for h in range(hist.shape[0]):
        if n[h] == 0:
            continue
        k = _rank(n[h], prob)
        cum = np.cumsum(hist[h])
        last = np.searchsorted(cum, k, side="left")
        used = hist[h, : last + 1].copy()
        used[last] -= cum[last] - k  # partial last bin
        if used[0] > 0:  # -inf bin
            out[h] = -np.inf
        elif last == hist.shape[1] - 1 and used[-1] > 0:  # +inf in the tail
            out[h] = np.inf
        else:
            nz = used > 0
            out[h] = np.sum(used[nz] * _reps(spec, np.flatnonzero(nz), lo[h], hi[h])) / k
    return out

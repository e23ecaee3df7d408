"""Uniforms by scenario index (random, scrambled Sobol, Latin hypercube), the Gaussian copula
and the monthly shocks.

Every draw is a pure function of (seed, scenario index, stream): nothing depends on call
order, chunk size or device count (design rule 1). Host-side constants (Sobol direction
numbers and scrambles, from `mcrisk.sampling.sobol`; Feistel keys) are made once by
`make_sampler` with NumPy and closed over.

Open-interval mapping (all methods): an integer k of b bits becomes (k + 0.5) * 2**-b, with
b = 23 for float32 and b = 52 for float64 (32 for Sobol' in float64); random draws take the
top b bits of one 64-bit threefry word. k + 0.5 and the product are exact in the dtype, so u
lies in [2**-(b+1), 1 - 2**-(b+1)]: never 0, never 1. (24 bits would not do for float32:
(2**24 - 0.5) * 2**-24 rounds to 1.0.) LHS computes (stratum + jitter) / N in float64, then
rounds to the dtype and caps at the largest float below 1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr, ndtri

from mcrisk.sampling.sobol import sobol_directions, sobol_scramble
from mcrisk.study.correlations import check_correlation_matrix

METHODS = ("random", "sobol", "lhs")
_LHS_JITTER_SALT = 0x9E3779B9  # the jitter of LHS column j uses stream stream_ids[j] ^ salt
_FEISTEL_ROUNDS = 8
_TAG_LHS = 0x1A75  # the host RNG stream of the LHS keys (sobol._TAG_SOBOL: the scramble's)


# --------------------------------------------------------------------------- keys


def stream_id(name: str) -> int:
    """Stable 32-bit id of a random stream from its study path: the first 4 bytes of
    sha256(name) read big-endian, in [0, 2**32). Never Python's salted hash()."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def root_key(seed: int) -> jax.Array:
    """The run's typed threefry key, jax.random.key(seed)."""
    return jax.random.key(seed)


def scenario_keys(root: jax.Array, idx: jax.Array) -> jax.Array:
    """Keys of scenarios idx (uint32, (n,)) -> (n,) typed keys fold_in(root, idx[i])."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(root, jnp.asarray(idx, jnp.uint32))


def shock_normals(
    root: jax.Array, idx: jax.Array, stream: int, months: int, dtype, time_major: bool = False
) -> jax.Array:
    """(n, months) standard normals of a monthly shock stream ((months, n) if `time_major`, the
    layout the month loop reads: one row per month); scenario i's draws are
    ndtri of the open uniforms made from random.bits(fold_in(fold_in(root, idx[i]), stream),
    (months,), uint32). Always pseudo-random. float32 uses the top 23 bits of each word and
    float64 all 32, so both precisions draw the same shocks up to rounding (a float64 run is a
    precision check of a float32 run, not another sample)."""
    return _shock_normals(
        root, jnp.asarray(idx, jnp.uint32), jnp.asarray(stream, jnp.uint32), months, jnp.dtype(dtype), time_major
    )


@partial(jax.jit, static_argnames=("months", "dtype", "time_major"))
def _shock_normals(root, idx, stream, months: int, dtype, time_major: bool = False) -> jax.Array:
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(scenario_keys(root, idx), stream)
    # The same bits either way; time-major output is written in that layout by the kernel that
    # makes them (no transpose afterwards).
    bits = jax.vmap(lambda k: jax.random.bits(k, (months,), jnp.uint32), out_axes=1 if time_major else 0)(keys)
    u = _open_unit(bits >> 9, 23, dtype) if dtype == jnp.float32 else _open_unit(bits, 32, dtype)
    return ndtri(u)


# --------------------------------------------------------------------------- bits -> (0, 1)


def _check_dtype(dtype) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"uniforms come in float32 or float64, got dtype {dtype}")
    return dtype


def _open_unit(k: jax.Array, bits: int, dtype) -> jax.Array:
    """Integers k in [0, 2**bits) -> (k + 0.5) * 2**-bits, exact, strictly inside (0, 1)."""
    return (k.astype(dtype) + dtype.type(0.5)) * dtype.type(2.0**-bits)


def _bits_to_unit(b: jax.Array, dtype) -> jax.Array:
    """Random uint64 words -> open uniforms from their top 23 bits (float32) or 52 (float64)."""
    return _open_unit(b >> 41, 23, dtype) if dtype == jnp.float32 else _open_unit(b >> 12, 52, dtype)


@jax.jit
def _random_bits(root: jax.Array, idx: jax.Array, streams: jax.Array) -> jax.Array:
    """(n, d) uint64 words, one per key fold_in(fold_in(root, idx[i]), streams[j]).

    One word serves both precisions (a threefry hash yields 64 bits either way), so float32
    and float64 runs share this compilation. Needs jax_enable_x64 (mcrisk.enable_float64)."""
    keys = jax.vmap(jax.vmap(jax.random.fold_in, in_axes=(None, 0)), in_axes=(0, None))(
        scenario_keys(root, idx), streams
    )
    return jnp.vectorize(partial(jax.random.bits, dtype=jnp.uint64))(keys)


# --------------------------------------------------------------------------- Sobol


@partial(jax.jit, static_argnames="dtype")
def _sobol_uniforms(idx: jax.Array, directions: jax.Array, shift: jax.Array, dtype) -> jax.Array:
    """(n, d) points shift ^ XOR_{b: bit b of idx[i] set} directions[:, b], natural order."""
    x = jnp.broadcast_to(shift, (idx.shape[0], shift.shape[0]))
    for b in range(32):  # unrolled: XLA fuses it into one pass over (n, d)
        on = ((idx >> b) & 1).astype(bool)[:, None]
        x = x ^ jnp.where(on, directions[None, :, b], jnp.uint32(0))
    if dtype == jnp.float32:
        return _open_unit(x >> 9, 23, dtype)
    return _open_unit(x, 32, dtype)


# --------------------------------------------------------------------------- Latin hypercube


def _mix32(x: jax.Array) -> jax.Array:
    """A bijective avalanche on uint32 (Wellons' lowbias32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _feistel(x: jax.Array, keys: jax.Array, half: jax.Array) -> jax.Array:
    """A keyed bijection of [0, 4**half): x (n, d) uint32, keys (d, rounds) uint32, half uint32."""
    mask = (jnp.uint32(1) << half) - jnp.uint32(1)
    left, right = x >> half, x & mask
    for r in range(keys.shape[1]):
        left, right = right, left ^ (_mix32(right ^ keys[:, r]) & mask)
    return (left << half) | right


def _feistel_half(n: int) -> int:
    """Half the bit width of the smallest domain 4**half >= n (half >= 1)."""
    return max(1, -(-max(n - 1, 1).bit_length() // 2))


@jax.jit
def _lhs_points(root, idx, keys, jitter_streams, n, half) -> jax.Array:
    """(n_idx, d) float64 Latin hypercube points (perm_j(idx) + jitter) / n.

    n (the stratum count) and half (see _feistel_half) are uint32 scalars, traced so that
    one compilation serves every n."""
    idx = idx % n  # an index past n_scenarios is that index modulo n (never an endless walk)
    x = jnp.broadcast_to(idx[:, None], (idx.shape[0], keys.shape[0]))
    # Cycle-walking: a permutation of [0, 4**half) restricted to [0, n) by re-applying it
    # until the value lands below n; the walk stays on idx's own cycle, so it ends.
    y = lax.while_loop(
        lambda y: jnp.any(y >= n),
        lambda y: jnp.where(y >= n, _feistel(y, keys, half), y),
        _feistel(x, keys, half),
    )
    jitter = _bits_to_unit(_random_bits(root, idx, jitter_streams), jnp.dtype(jnp.float64))
    return (y.astype(jnp.float64) + jitter) / n.astype(jnp.float64)


# --------------------------------------------------------------------------- the sampler


@dataclass(frozen=True, eq=False)
class Sampler:
    """Makes uniforms in (0, 1) for d static inputs of any scenario, by scenario index.

    Column j belongs to stream_ids[j]. 'random' and 'lhs' columns depend only on (seed, stream,
    index[, n_scenarios]); 'sobol' column j is the j-th Sobol' dimension, so it follows the
    position of the stream (the engine sorts inputs by path). Build with `make_sampler`.
    """

    method: str  # 'random' | 'sobol' | 'lhs'
    seed: int
    stream_ids: tuple[int, ...]
    n_scenarios: int
    directions: np.ndarray | None = field(default=None, repr=False)  # sobol: (d, 32) uint32
    shift: np.ndarray | None = field(default=None, repr=False)  # sobol: (d,) uint32
    feistel_keys: np.ndarray | None = field(default=None, repr=False)  # lhs: (d, rounds) uint32

    def uniforms(self, idx: jax.Array, dtype) -> jax.Array:
        """(n, d) uniforms in the open interval (0, 1) for scenario indices idx (uint32, (n,)).

        Pure and jit-compatible; entry (i, j) depends only on (seed, idx[i], stream_ids[j],
        n_scenarios), never on n, the position of i in idx, or chunking. For 'lhs', idx must
        lie in [0, n_scenarios) (larger indices wrap modulo n_scenarios)."""
        dtype = _check_dtype(dtype)
        idx = jnp.asarray(idx, jnp.uint32)
        streams = jnp.asarray(np.array(self.stream_ids, np.uint32).reshape(-1))
        if self.method == "random":
            return _bits_to_unit(_random_bits(root_key(self.seed), idx, streams), dtype)
        if self.method == "sobol":
            return _sobol_uniforms(idx, jnp.asarray(self.directions), jnp.asarray(self.shift), dtype)
        jitter = jnp.asarray(np.array(self.stream_ids, np.uint32).reshape(-1) ^ np.uint32(_LHS_JITTER_SALT))
        n, half = jnp.uint32(self.n_scenarios), jnp.uint32(_feistel_half(self.n_scenarios))
        u = _lhs_points(root_key(self.seed), idx, jnp.asarray(self.feistel_keys), jitter, n, half).astype(dtype)
        return jnp.minimum(u, np.nextafter(dtype.type(1), dtype.type(0)))  # (n - 0)/n rounds to 1


def make_sampler(method: str, seed: int, stream_ids, n_scenarios: int, *, scramble: bool = True) -> Sampler:
    """Build a Sampler and its host constants. `scramble=False` (Sobol only) gives the plain
    Joe-Kuo points, for tests against scipy."""
    if method not in METHODS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {', '.join(METHODS)}")
    if not 1 <= n_scenarios < 2**32:
        raise ValueError(f"n_scenarios must be in [1, 2**32), got {n_scenarios}")
    stream_ids = tuple(int(s) for s in stream_ids)
    bad = [s for s in stream_ids if not 0 <= s < 2**32]
    if bad:
        raise ValueError(f"stream ids must be 32-bit unsigned integers (see stream_id), got {bad[0]}")
    d = len(stream_ids)
    if method == "sobol":
        directions = sobol_directions(d)
        shift = np.zeros(d, np.uint32)
        if scramble:
            directions, shift = sobol_scramble(directions, seed)
        return Sampler(method, seed, stream_ids, n_scenarios, directions=directions, shift=shift)
    if method == "lhs":
        rngs = (np.random.default_rng([seed % 2**64, _TAG_LHS, s]) for s in stream_ids)
        keys = np.array([r.integers(0, 2**32, _FEISTEL_ROUNDS, np.uint32) for r in rngs], np.uint32)
        keys = keys.reshape(d, _FEISTEL_ROUNDS)
        return Sampler(method, seed, stream_ids, n_scenarios, feistel_keys=keys)
    return Sampler(method, seed, stream_ids, n_scenarios)


# --------------------------------------------------------------------------- Gaussian copula


def copula_factor(corr: np.ndarray) -> np.ndarray:
    """Host: (k, k) float64 L with L @ L.T == corr. Cholesky when corr is positive definite,
    else an eigen factor V sqrt(max(w, 0)) with rows renormalised to unit length (so each
    normal score stays standard). Raises ValueError if corr is not a PSD correlation matrix."""
    message = check_correlation_matrix(corr)
    if message is not None:
        raise ValueError(message)
    c = np.asarray(corr, dtype=np.float64)
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(c)
        factor = v * np.sqrt(np.clip(w, 0.0, None))
        return factor / np.linalg.norm(factor, axis=1, keepdims=True)


@jax.jit
def apply_copula(u: jax.Array, factor: jax.Array) -> jax.Array:
    """(n, k) independent uniforms -> (n, k) uniforms whose normal scores ndtri(u') have
    correlation factor @ factor.T: u' = ndtr(ndtri(u) @ factor.T), in u's dtype.

    u is clipped to [tiny, 1 - eps] first (NumPyro's clamp_probs) so ndtri stays finite, and
    the output to [tiny, 1 - eps/2], so it is strictly inside (0, 1) even where ndtr
    saturates (float32 beyond ~5.4 sd).

    The product is not a matrix product: a dot's summation order follows the kernel's blocking,
    which depends on the number of rows (chunk size) and changes between XLA releases (JAX 0.12's
    CPU dot gave other last bits for some rows when the chunk size changed, and so did 0.10's at
    other shapes). Each output column is instead a sum of k elementwise products in a fixed order,
    in float64 (a float32 product is exact there, and the sum of k of them nearly so; rounded to
    the path dtype once at the end), so a scenario's draws are the same in any chunk, on any device."""
    fi = jnp.finfo(u.dtype)
    z = ndtri(jnp.clip(u, fi.tiny, 1 - fi.eps))
    return jnp.clip(ndtr(_mix(z, factor)), fi.tiny, 1 - fi.epsneg)


def _mix(z: jax.Array, factor: jax.Array) -> jax.Array:
    """z @ factor.T row by row, as left-to-right float64 sums of elementwise products, in z's dtype."""
    k = z.shape[1]
    cols = [z[:, j].astype(jnp.float64) for j in range(k)]
    f = jnp.asarray(factor).astype(jnp.float64)
    out = []
    for i in range(k):
        acc = cols[0] * f[i, 0]
        for j in range(1, k):
            acc = acc + cols[j] * f[i, j]
        out.append(acc.astype(z.dtype))
    return jnp.stack(out, axis=1)

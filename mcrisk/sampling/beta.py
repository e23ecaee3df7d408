"""Inverse CDFs of beta distributions: a float64 table per shape, read by interpolation in JAX.

JAX has no betaincinv and Newton on betainc is slow, so each (a, b) gets a float64 table of
y = logit(x) against t = logit(p), built once with scipy (`table`), and the inverse CDF reads
it by cubic Hermite interpolation (`unit_quantile`). In these coordinates both tails are almost
straight lines (x ~ c p^(1/a) gives y ~ t/a), so the fit is uniform from p = 1e-16 to
1 - 1e-16; x = sigmoid(y) then never leaves [0, 1].
Max |x - scipy beta.ppf| < 1e-10 for a, b >= 0.05 (2e-8 at a = 0.02, b = 0.03).
Nodes sit on multiples of 2**-6, so index and weight come from t exactly.

Every table has NODES entries whatever (a, b), so the tables are arguments of a compiled
program, not part of it: studies that differ only in their beta and PERT parameters share one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

__all__ = ["T_STEPS", "T_MAX", "T_HALF", "NODES", "table", "tables", "unit_quantile"]

T_STEPS = 64  # nodes per unit of t (a power of 2: exact floor)
T_MAX = 37.0  # covers the float64 clamp: logit(1 - 2.2e-16) = 36.04
T_HALF = int(T_MAX * T_STEPS)  # node index of t = 0
NODES = 2 * T_HALF + 1  # entries of every table


@functools.lru_cache(maxsize=256)
def table(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Table of logit(x) and d logit(x)/dt of Beta(a, b) at t = logit(p); float64, (NODES,) each."""
    t = np.arange(-T_HALF, T_HALF + 1) / T_STEPS
    lp, lq = special.log_expit(t), special.log_expit(-t)  # log p, log(1 - p), both accurate
    p, q, lower = np.exp(lp), np.exp(lq), t <= 0
    # x and c = 1 - x, each from the routine that keeps its own tail accurate (each evaluated on
    # its half of the nodes only: the inverses are most of the time a run spends before compiling).
    x, c = np.empty_like(t), np.empty_like(t)
    x[lower], x[~lower] = special.betaincinv(a, b, p[lower]), special.betainccinv(a, b, q[~lower])
    c[lower], c[~lower] = special.betainccinv(b, a, p[lower]), special.betaincinv(b, a, q[~lower])
    lbeta = special.betaln(a, b)
    with np.errstate(divide="ignore"):
        log_x = np.where(x < 0.5, np.log(x), np.log1p(-c))
        log_c = np.where(c < 0.5, np.log(c), np.log1p(-x))
    # x or c underflows to 0 deep in a tail when a or b is small: use the tail
    # asymptote I_x(a, b) ~ x^a / (a B(a, b)), exact to O(x) there.
    log_x = np.where(np.isfinite(log_x), log_x, (lp + np.log(a) + lbeta) / a)
    log_c = np.where(np.isfinite(log_c), log_c, (lq + np.log(b) + lbeta) / b)
    # dy/dt = p q / (pdf(x) x (1 - x)), in logs: finite even where pdf(x) is infinite.
    dy = np.exp(lp + lq - a * log_x - b * log_c + lbeta)
    y = log_x - log_c
    y.flags.writeable = dy.flags.writeable = False  # shared by the cache
    return y, dy


def tables(shapes) -> tuple[np.ndarray, np.ndarray]:
    """The tables of Beta(a_j, b_j) for each (a_j, b_j) of `shapes`: y and dy, float64, (k, NODES) each."""
    pairs = [table(float(a), float(b)) for a, b in shapes]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def unit_quantile(y_tab: jax.Array, dy_tab: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse CDFs of k betas on [0, 1] for clamped u (k, ...), row j from tables y_tab[j] and
    dy_tab[j] ((k, NODES) each, in u's dtype; see `tables`); same shape and dtype as u."""
    k = y_tab.shape[0]
    y_flat, dy_flat = y_tab.reshape(-1), dy_tab.reshape(-1)  # k tables end to end
    s = jnp.clip(jnp.log(u) - jnp.log1p(-u), -T_MAX, T_MAX) * T_STEPS
    i = jnp.clip(jnp.floor(s).astype(jnp.int32) + T_HALF, 0, 2 * T_HALF - 1)
    w = s - (i - T_HALF).astype(u.dtype)  # in [0, 1]; exact, as s is a multiple of 2**-6 apart
    i = i + (jnp.arange(k, dtype=jnp.int32) * NODES).reshape((k,) + (1,) * (u.ndim - 1))  # row j reads table j
    w2, w3, h = w * w, w * w * w, 1.0 / T_STEPS
    y = (
        (2 * w3 - 3 * w2 + 1) * y_flat[i]
        + (w3 - 2 * w2 + w) * h * dy_flat[i]
        + (3 * w2 - 2 * w3) * y_flat[i + 1]
        + (w3 - w2) * h * dy_flat[i + 1]
    )
    return jax.nn.sigmoid(y)

"""How a drawn input moves with its distribution's parameters at a fixed uniform: dx/dtheta.

A scenario draws x = Q(u; theta), Q the inverse CDF of the input's DIST form and u its uniform
(the sampler's, through the copula). Holding u fixed and moving a parameter theta (a triangular's
``low``/``mode``/``high``, a lognormal's ``p5``/``p95``, ...) moves x by dQ/dtheta (u): the
pathwise derivative of the draw (Glasserman 2004, section 7.2). Here Q is written once more in
JAX as a function of the DIST's own parameters (the sampling code packs them on the host), and
differentiated by forward-mode autodiff (``jax.jacfwd``).

Beta-shaped forms (beta, PERT) draw from a table of the unit beta's quantiles (no closed form),
so their shape parameters (alpha, beta) enter by the implicit-function theorem: from
I_y(a, b) = u, dy/da = -(dI_y/da) / f(y; a, b), the derivative of the regularized incomplete
beta function in a by a central difference of ``jax.scipy.special.betainc`` in float64
(relative error about 1e-8); alpha and beta themselves are autodiffed from the DIST's
parameters. Discrete forms have no pathwise derivative (x jumps between values).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc, betaln, ndtr, ndtri

from mcrisk.study.distributions import (
    Beta,
    DistBase,
    Fixed,
    LogNormal,
    LogUniform,
    Normal,
    Pert,
    Triangular,
    Uniform,
)

__all__ = ["parameters", "draw_tangents", "NOT_DIFFERENTIABLE"]

NOT_DIFFERENTIABLE = "discrete form: a draw jumps between values"
_BETAINC_STEP = 1e-5  # relative step of the central difference of I_y(a, b) in a and b


def parameters(dist: DistBase) -> list[tuple[str, float]]:
    """The (name, value) of each parameter of `dist` the study sets (defaults left out), in the
    study's spelling: ``mean`` for a normal's or beta's mean."""
    if isinstance(dist, Fixed):
        return [("value", float(dist.value))]
    fields = type(dist).model_fields
    out = []
    for name in dist.model_fields_set:
        value = getattr(dist, name)
        if name == "dist" or value is None or isinstance(value, tuple):
            if isinstance(value, tuple):  # a discrete form's values and weights
                out.append((fields[name].alias or name, math.nan))
            continue
        out.append((fields[name].alias or name, float(value)))
    order = [fields[k].alias or k for k in fields]
    return sorted(out, key=lambda kv: order.index(kv[0]))


def _triangular(t, u):
    lo, mode, hi = t["low"], t["mode"], t["high"]
    r = hi - lo
    left = u < (mode - lo) / r
    # the untaken branch gets a harmless 1 under its sqrt (no NaN in the derivative at mode = low or high)
    a = jnp.where(left, u * r * (mode - lo), 1.0)
    b = jnp.where(left, 1.0, (1.0 - u) * r * (hi - mode))
    return jnp.where(left, lo + jnp.sqrt(a), hi - jnp.sqrt(b))


def _normal(dist: Normal):
    lo, hi = dist.low, dist.high
    mirror = lo is not None and (lo - dist.mean_) / dist.sd > 0

    def q(t, u):
        m, s = t["mean"], t["sd"]
        a = -jnp.inf if lo is None else (t.get("low", lo) - m) / s
        b = jnp.inf if hi is None else (t.get("high", hi) - m) / s
        if mirror:  # both bounds above the mean: the upper tails, as the sampler does
            pa, pb = ndtr(-a), ndtr(-b)
            return m - s * ndtri(pa + u * (pb - pa))
        pa, pb = ndtr(a), ndtr(b)
        return m + s * ndtri(pa + u * (pb - pa))

    return q


def _lognormal(t, u):
    if "median" in t:
        mu, s = jnp.log(t["median"]), t["sigma"]
    else:
        lo, hi = jnp.log(t["p5"]), jnp.log(t["p95"])
        mu, s = 0.5 * (lo + hi), (hi - lo) / (2.0 * 1.6448536269514722)
    return jnp.exp(mu + s * ndtri(u))


@jax.custom_jvp
def _unit_beta(a, b, y):
    """The unit beta quantile y = I^-1(u; a, b) already drawn (`y`), as a function of (a, b) at fixed u."""
    return y


@_unit_beta.defjvp
def _unit_beta_jvp(primals, tangents):
    a, b, y = primals
    da, db, _ = tangents
    ha, hb = _BETAINC_STEP * a, _BETAINC_STEP * b
    dI_da = (betainc(a + ha, b, y) - betainc(a - ha, b, y)) / (2 * ha)
    dI_db = (betainc(a, b + hb, y) - betainc(a, b - hb, y)) / (2 * hb)
    logpdf = (a - 1) * jnp.log(y) + (b - 1) * jnp.log1p(-y) - betaln(a, b)
    pdf = jnp.exp(logpdf)
    ok = (pdf > 0) & jnp.isfinite(pdf) & (y > 0) & (y < 1)
    dy = jnp.where(ok, -(dI_da * da + dI_db * db) / jnp.where(ok, pdf, 1.0), 0.0)
    return y, dy


def _beta_shaped(dist):
    def q(t, u):  # u here is the unit quantile y drawn at the study's parameters
        lo, hi = t.get("low", dist.low), t.get("high", dist.high)
        r = hi - lo
        if isinstance(dist, Pert):
            k = t.get("shape", dist.shape)
            a, b = 1.0 + k * (t["mode"] - lo) / r, 1.0 + k * (hi - t["mode"]) / r
        else:
            mu, var = (t["mean"] - lo) / r, (t["sd"] / r) ** 2
            nu = mu * (1.0 - mu) / var - 1.0
            a, b = mu * nu, (1.0 - mu) * nu
        return lo + r * _unit_beta(a, b, u)

    return q


def _quantile_fn(dist: DistBase):
    """Q(theta, u): the inverse CDF as a function of a dict of the study's parameters."""
    if isinstance(dist, Fixed):
        return lambda t, u: t["value"] + 0.0 * u
    if isinstance(dist, Uniform):
        return lambda t, u: t["low"] + u * (t["high"] - t["low"])
    if isinstance(dist, LogUniform):
        return lambda t, u: jnp.exp(jnp.log(t["low"]) + u * jnp.log(t["high"] / t["low"]))
    if isinstance(dist, Triangular):
        return _triangular
    if isinstance(dist, Normal):
        return _normal(dist)
    if isinstance(dist, LogNormal):
        return _lognormal
    if isinstance(dist, (Beta, Pert)):
        return _beta_shaped(dist)
    return None


def draw_tangents(dist: DistBase, u: jax.Array, x: jax.Array) -> dict[str, jax.Array] | None:
    """dx/dtheta (n,) for each parameter of `dist` (:func:`parameters`), at the uniforms `u` (n,)
    that drew `x` (n,); None for a form without a pathwise derivative (discrete)."""
    q = _quantile_fn(dist)
    if q is None:
        return None
    theta = {name: jnp.asarray(v, jnp.float64) for name, v in parameters(dist)}
    arg = u.astype(jnp.float64)
    if isinstance(dist, (Beta, Pert)):
        arg = jnp.clip((x.astype(jnp.float64) - dist.low) / (dist.high - dist.low), 0.0, 1.0)
    return jax.jacfwd(q)(theta, arg)


def draw_at(dist: DistBase, theta: dict[str, float], u: jax.Array) -> jax.Array:
    """x = Q(u; theta) by this module's formulas (not for beta-shaped forms): the check that they
    are the sampler's."""
    q = _quantile_fn(dist)
    return q({k: jnp.asarray(v, jnp.float64) for k, v in theta.items()}, u.astype(jnp.float64))

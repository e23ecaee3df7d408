"""The most likely loss scenario: the FORM design point of each row (Hasofer and Lind 1974).

The drawn inputs are a map of independent standard normals z (one per sampler column): the
uniforms are Phi(z), through the Gaussian copula's factor L for correlated columns (Phi(L z)),
and each input is its inverse CDF of its uniform. With the monthly shocks held at 0 (the median
market path), a row's metric is a deterministic function g(z), and the loss region is g(z) <= 0.
Its most likely point (the largest density of z) is the point of the limit state g(z) = 0
nearest the origin, z*; beta = |z*| (negative where the median scenario, z = 0, already loses)
is the reliability index, and Phi(-beta) the first-order (FORM) estimate of P(loss).

z* is found by the improved Hasofer-Lind-Rackwitz-Fiessler iteration (Zhang and Der
Kiureghian 1995): the HL-RF step z' = ((grad g . z - g) / |grad g|^2) grad g, shortened by
backtracking on the merit 1/2 |z|^2 + c |g| until the merit falls; grad g by ``jax.grad``
through the inverse CDFs and the month loop. Inputs that enter rounded to whole months (lead
times) have no gradient, so they stay at their medians.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from mcrisk.engine.plan import Plan, Sample, sample_values, simulate
from mcrisk.model.market import Shocks
from mcrisk.sampling.quantiles import quantiles

NO_LOSS_BEYOND = 10.0  # |z| beyond which no loss scenario is reported (Phi(-10) = 7.6e-24)


@dataclass(frozen=True)
class DesignPoint:
    """One row's design point: z (one per sampler column), the inputs there, and the fit."""

    row: str
    z: np.ndarray
    values: dict[str, float]  # every drawn input at z*, by path
    medians: dict[str, float]  # every drawn input at z = 0
    scores: dict[str, float]  # every drawn input's own normal score at z* (through the copula)
    beta: float  # signed: negative where the median scenario loses
    metric_at_point: float  # the metric at z* (should be 0)
    metric_at_median: float
    scale: float  # the row's capex at the median: the unit of the tolerance
    iterations: int
    converged: bool
    note: str | None  # why there is no design point (None: there is one)


class LimitState:
    """g(Z) for every row at once: Z (R, d), row r's metric at its own point Z[r] (the metric is
    computed for R scenarios, scenario r at Z[r], and row r of scenario r kept), with jax.grad."""

    def __init__(self, plan: Plan, metric: str, rows: int):
        self.plan, self.metric, self.rows = plan, metric, rows
        self.sv = sample_values(plan)
        self.fixed = {p: np.asarray(v, plan.dtype) for p, v in plan.fixed.items()}
        self.value_and_grad = jax.jit(jax.value_and_grad(self._sum, has_aux=True))
        self.inputs = jax.jit(self._inputs)

    def _inputs(self, Z: jax.Array) -> dict[str, jax.Array]:
        plan = self.plan
        cols = [Z[:, j] for j in range(Z.shape[1])]
        if plan.copula_factor is not None:
            zc = jnp.stack([cols[j] for j in plan.copula_cols], axis=1) @ jnp.asarray(self.sv["copula"]).T
            for k, j in enumerate(plan.copula_cols):
                cols[j] = zc[:, k]
        scores = jnp.stack([cols[j] for j in plan.sample_cols], axis=1)
        drawn = quantiles([i.dist for i in plan.uncertain], ndtr(scores), self.sv["dists"])
        return {i.path: x for i, x in zip(plan.uncertain, drawn)}, scores

    def _sum(self, Z: jax.Array):
        n = Z.shape[0]
        values = dict(self._inputs(Z)[0])
        values.update({p: jnp.broadcast_to(v, (n,)) for p, v in self.fixed.items()})
        out = simulate(self.plan, Sample(values, Shocks(None, None, None, None)), n)
        g = jnp.diagonal(out[self.metric])  # row r at point r
        return g.sum(), (g, jnp.diagonal(out["capex_usd"]))


def _hlrf(ls: LimitState, scale: np.ndarray, iters: int, tol: float):
    """The iHL-RF iteration for every row at once: (Z, g, converged, iterations)."""
    R, d = ls.rows, len(ls.plan.dims)
    Z = np.zeros((R, d))

    def g_and_grad(Z):
        (_, (g, _)), grad = ls.value_and_grad(jnp.asarray(Z))
        return np.asarray(g) / scale, np.asarray(grad) / scale[:, None]

    g, grad = g_and_grad(Z)
    done = np.zeros(R, bool)
    it = 0
    while it < iters:
        it += 1
        norm2 = (grad * grad).sum(1)
        ok = norm2 > 0
        step = np.where(ok[:, None], (((grad * Z).sum(1) - g) / np.where(ok, norm2, 1.0))[:, None] * grad - Z, 0.0)
        c = 2.0 * np.linalg.norm(Z, axis=1) / np.sqrt(np.where(ok, norm2, 1.0)) + 10.0
        merit = 0.5 * (Z * Z).sum(1) + c * np.abs(g)
        t = np.ones(R)
        for _ in range(12):  # backtracking: halve the step of the rows whose merit did not fall
            Zt = Z + t[:, None] * step
            gt, gradt = g_and_grad(Zt)
            worse = (0.5 * (Zt * Zt).sum(1) + c * np.abs(gt) > merit) & (t > 1 / 64) & ~done
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        Z = np.where(done[:, None], Z, Zt)
        g, grad = np.where(done, g, gt), np.where(done[:, None], grad, gradt)
        unit = grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-300)
        off = Z - (Z * unit).sum(1, keepdims=True) * unit  # the part of z not along grad g
        done |= (np.abs(g) < tol) & (np.linalg.norm(off, axis=1) < 1e-3 * np.maximum(1, np.linalg.norm(Z, axis=1)))
        if done.all() or (np.linalg.norm(Z, axis=1) > NO_LOSS_BEYOND).all():
            break
    return Z, g, done, it


def design_points(plan: Plan, metric: str, names: tuple[str, ...], *, iters: int = 60, tol: float = 1e-5):
    """The design point of every row (`names`: the rows' names), with the metric in the plan's
    study. `tol`: |g| at the point, as a share of the row's capex at the median."""
    ls = LimitState(plan, metric, len(names))
    (_, (g0, capex0)), _ = ls.value_and_grad(jnp.zeros((len(names), len(plan.dims))))
    scale = np.abs(np.asarray(capex0))
    scale = np.where(scale > 0, scale, 1.0)
    Z, g, done, it = _hlrf(ls, scale, iters, tol)
    x, scores = ls.inputs(jnp.asarray(Z))
    x = {p: np.asarray(v) for p, v in x.items()}
    scores = np.asarray(scores)
    x0 = {p: np.asarray(v) for p, v in ls.inputs(jnp.zeros_like(jnp.asarray(Z)))[0].items()}
    out = []
    for r, name in enumerate(names):
        norm = float(np.linalg.norm(Z[r]))
        note = None
        if not done[r]:
            far = norm > NO_LOSS_BEYOND or not np.isfinite(norm)
            note = (
                f"no loss scenario within {NO_LOSS_BEYOND:g} sd of the median inputs"
                if far
                else "the iteration did not converge"
            )
        beta = norm if float(g0[r]) > 0 else -norm
        out.append(
            DesignPoint(
                row=name,
                z=Z[r],
                values={p: float(v[r]) for p, v in x.items()},
                medians={p: float(v[r]) for p, v in x0.items()},
                scores={i.path: float(scores[r, j]) for j, i in enumerate(plan.uncertain)},
                beta=beta,
                metric_at_point=float(g[r] * scale[r]),
                metric_at_median=float(g0[r]),
                scale=float(scale[r]),
                iterations=it,
                converged=bool(done[r]),
                note=note,
            )
        )
    return out

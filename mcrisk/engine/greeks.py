"""The per-scenario metric as a differentiable function of the study's parameters: pathwise Greeks.

A scenario's metric m depends on its drawn inputs x = Q(u; theta) (u fixed per scenario: the
sampler's uniforms through the copula), the fixed inputs, and the monthly shocks (fixed too).
One reverse pass (``jax.vjp`` through :func:`mcrisk.engine.plan.simulate`, the month loop's
``lax.scan`` included) gives dm/dx for every input of every scenario, once per row (system, and
the portfolio row where the engine writes one); the chain rule with dx/dtheta
(:mod:`mcrisk.sampling.dist_grad`) gives dm/dtheta per scenario for every distribution
parameter. Scenarios are independent, so dm_i/dx_i is the gradient of the chunk's sum.

Memory is bounded by the chunk: the reverse pass keeps the month loop's residuals, about
(months x systems x chunk) values per intermediate, for one chunk at a time.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mcrisk.engine.plan import Plan, Sample, draw_inputs, draw_shocks, draw_uniforms, simulate
from mcrisk.sampling.dist_grad import NOT_DIFFERENTIABLE, draw_tangents, parameters
from mcrisk.stats.greeks import partial_sums

# Metrics that are not differentiable functions of the inputs, and why (greeks.csv says so).
NOT_DIFFERENTIABLE_METRICS = {
    "payback_months": "a whole month (or +inf): a step function of every input",
    "live_months": "a whole number of months: a step function of the lead time",
    "contract_default_month": "a whole month drawn against the default probability: a step function",
    "irr": "found by a Newton search (a while loop, +-inf where no rate solves it): not differentiated here",
    "equity_irr": "found by a Newton search (a while loop, +-inf where no rate solves it): not differentiated here",
}
# Inputs whose pathwise derivative is 0 although the metric depends on them: they enter rounded to
# whole months, or through a draw of a whole month (the pathwise estimator needs a metric that is
# continuous in the parameter; Glasserman 2004, 7.2.2).
STEP_INPUTS = {
    "*.lead_months": "rounded to whole months (a step function)",
    "*.purchase_month": "a whole month (a step function)",
    "market.succession.first_month": "rounded to whole months (a step function)",
    "market.succession.every_months": "rounded to whole months (a step function)",
    "*.contract.annual_default_probability": "sets a whole default month (a step function)",
    "*.term_months": "a whole number of months, read as a constant",
    "*.tenor_months": "a whole number of months, read as a constant",
}


@dataclass(frozen=True)
class Target:
    """One parameter of one input: the thing greeks.csv differentiates by."""

    path: str  # the input's study path
    param: str  # the DIST parameter ('low', 'mode', 'p5', ...; 'value' for a fixed input)
    value: float  # its value in the study
    dist: str  # the form ('triangular', 'fixed', ...)
    system: str | None  # the input's owner (None: market, facility, finance)
    note: str | None = None  # why it has no pathwise derivative (None: it has one)


def step_reason(path: str) -> str | None:
    """Why `path` enters the model as a step function (None when it does not)."""
    return next((why for pat, why in STEP_INPUTS.items() if fnmatch.fnmatch(path, pat)), None)


def targets(plan: Plan) -> list[Target]:
    """Every fixed input's value and every drawn input's distribution parameters, study order."""
    out = []
    for inp in plan.inputs:
        if inp.path not in plan.fixed and inp.dist.is_fixed:
            continue  # a plain system field (units, GPUs, depreciation years): an integer constant
        dist = inp.dist.dist if not inp.dist.is_fixed else "fixed"
        for name, value in parameters(inp.dist) if not inp.dist.is_fixed else [("value", plan.fixed[inp.path])]:
            note = step_reason(inp.path)
            if dist == "discrete":
                note = NOT_DIFFERENTIABLE
            out.append(Target(inp.path, name, value, dist, inp.system, note))
    return out


def row_names(plan: Plan, rows: int) -> tuple[str, ...]:
    """The names of the metric's rows: the systems, and 'portfolio' where the engine adds a row."""
    if rows == len(plan.systems):
        return plan.systems
    if rows == len(plan.systems) + 1:
        return (*plan.systems, "portfolio")
    raise ValueError(f"the engine returned {rows} rows for {len(plan.systems)} systems")


def _values(plan: Plan, sv: dict, fixed: dict, idx: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
    """Every input of scenarios `idx` by path, (n,) each (the fixed ones broadcast), and the uniforms."""
    n = idx.shape[0]
    values = dict(draw_inputs(plan, idx, sv))
    values.update({p: jnp.broadcast_to(jnp.asarray(v, plan.dtype), (n,)) for p, v in fixed.items()})
    return values, draw_uniforms(plan, idx, sv)


def _metric(plan: Plan, metric: str, shocks, n: int, values: dict) -> jax.Array:
    return simulate(plan, Sample(values, shocks), n)[metric]


class Programs:
    """The jitted programs of a Greeks run on `plan` (float64, no bands: :func:`gradient_plan`).

    Each takes the sample stage's numbers (``sample_values(plan)``), the fixed inputs' values
    (``plan.fixed``) and the scenario indices as arguments, so a finite-difference check that
    moves one parameter (another plan's numbers, of the same forms) reuses the compiled program
    on the same draws."""

    def __init__(self, plan: Plan, metric: str, tgts: tuple[Target, ...]):
        self.plan, self.metric, self.targets = plan, metric, tgts
        self.forward = jax.jit(self._forward)
        self.gradients = jax.jit(self._gradients)
        self.sums = jax.jit(self._sums)

    def _sums(self, sv, fixed, idx, valid, centers, h):
        """The estimators' sums of scenarios `idx` (:func:`mcrisk.stats.greeks.partial_sums`), made
        on the device: the chunk's derivatives (P, R, n) never leave it."""
        m, g = self._gradients(sv, fixed, idx)
        return partial_sums(m, g, valid, centers, h)

    def _forward(self, sv, fixed, idx):
        """The metric (R, n) of scenarios `idx`, their drawn inputs by path (n,) and uniforms (n, k)."""
        plan = self.plan
        values, u = _values(plan, sv, fixed, idx)
        m = _metric(plan, self.metric, draw_shocks(plan, idx), idx.shape[0], values)
        return m, {i.path: values[i.path] for i in plan.uncertain}, u

    def _sweeps(self, diff: dict, shocks, n: int) -> dict:
        """The metric m (R, n) (under the key None) and dm/dx (R, n) of every input by path: one
        reverse sweep per row, or, for a study with the extensions, one for every system at once
        (and one for the portfolio row): each system reads its own copy of the market, facility
        and finance inputs, (S, n), so the sweep of the systems' sum leaves each system's
        derivative in its own copy (the month loop runs the market path S times, which costs far
        less than S sweeps)."""
        plan, S = self.plan, len(self.plan.systems)
        f = partial(_metric, plan, self.metric, shocks, n)
        if plan.ext is None:
            m, back = jax.vjp(f, diff)
            R = m.shape[0]
            cotangents = jnp.eye(R, dtype=m.dtype)[:, :, None] * jnp.ones_like(m)[None]
            return {None: m, **jax.vmap(back)(cotangents)[0]}  # path -> (R, n): d m[r, i] / d x[i]
        owner = {p: p.split(".")[1] if p.startswith("systems.") else None for p in diff}
        copies = {p: jnp.broadcast_to(v, (S, n)) if owner[p] is None else v for p, v in diff.items()}
        m, back = jax.vjp(f, copies)
        R = m.shape[0]
        rows = jnp.arange(R)[:, None]
        cotangents = [jnp.where(rows < S, 1.0, 0.0) * jnp.ones_like(m)]
        if R > S:  # the portfolio row
            cotangents.append(jnp.where(rows == S, 1.0, 0.0) * jnp.ones_like(m))
        grads = jax.vmap(back)(jnp.stack(cotangents))[0]
        out = {None: m}
        for p, g in grads.items():
            if owner[p] is None:
                own = g[0]  # (S, n): system s's derivative in row s
            else:
                own = jnp.zeros((S, n), g.dtype).at[plan.systems.index(owner[p])].set(g[0])
            if R > S:
                own = jnp.concatenate([own, (g[1].sum(0) if owner[p] is None else g[1])[None]])
            out[p] = own
        return out

    def _gradients(self, sv, fixed, idx):
        """The metric m (R, n) of scenarios `idx` and dm/dtheta (P, R, n) for each target (0 where
        it has a note): one forward pass, then one reverse pass per row."""
        plan, n = self.plan, idx.shape[0]
        values, u = _values(plan, sv, fixed, idx)
        diff = {k: v for k, v in values.items() if jnp.issubdtype(v.dtype, jnp.floating)}
        dm_dx = self._sweeps(diff, draw_shocks(plan, idx), n)
        m = dm_dx.pop(None)
        col = {inp.path: j for j, inp in enumerate(plan.uncertain)}
        dist_of = {inp.path: inp.dist for inp in plan.uncertain}
        tangents: dict[str, dict] = {}
        rows = []
        for t in self.targets:
            if t.note is not None or t.path not in dm_dx:
                rows.append(jnp.zeros_like(m))
            elif t.path in fixed:
                rows.append(dm_dx[t.path])
            else:
                if t.path not in tangents:
                    tangents[t.path] = draw_tangents(dist_of[t.path], u[:, col[t.path]], values[t.path])
                rows.append(dm_dx[t.path] * tangents[t.path][t.param][None, :])
        return m, jnp.stack(rows)


def gradient_plan(plan: Plan) -> Plan:
    """The plan the Greeks run: float64 paths, no monthly bands (the metric alone)."""
    return replace(plan, monthly=False, dtype=jnp.float64)


def chunks(plan: Plan, scenarios: int):
    """(start, valid, idx) of each chunk of `scenarios` scenarios (the last one padded)."""
    for start in range(0, scenarios, plan.chunk):
        valid = min(plan.chunk, scenarios - start)
        yield start, valid, jnp.asarray(np.arange(start, start + plan.chunk, dtype=np.uint32))

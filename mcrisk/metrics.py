"""Per-scenario metrics of each system, from the running totals and the monthly cash flows.

Every function is pure JAX on (S, n) arrays and computes in float64. Ratios follow IEEE rules
(x/0 = +-inf, 0/0 = NaN) except ``operating_margin``, which is NaN where revenue is 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .economics import SUM, EnergyTotals, Plant, SiteParams, SystemParams, Totals, energy_totals

METRICS: tuple[str, ...] = (
    "capex_usd",
    "revenue_usd",
    "tokens",
    "energy_kwh",
    "energy_usd",
    "colocation_usd",
    "maintenance_usd",
    "license_usd",
    "opex_usd",
    "depreciation_usd",
    "ebitda_usd",
    "operating_profit_usd",
    "operating_margin",
    "npv_usd",
    "irr",
    "roi_multiple",
    "net_roi",
    "payback_months",
    "cost_per_mtok_usd",
    "levelized_cost_per_mtok_usd",
    "breakeven_price_usd_per_mtok",
    "breakeven_utilization",
    "energy_j_per_token",
    "mean_utilization",
    "revenue_per_unit_year_usd",
    "revenue_per_mw_year_usd",
)

# IRR search range (annual): -99% to +10,000% a year.
IRR_LOW, IRR_HIGH = -0.99, 100.0
_IRR_GRID = 64
_IRR_NEWTON = 5


def _horner(z: jax.Array, capex: jax.Array, residual: jax.Array, cf_at, T: int, unroll: int) -> tuple[jax.Array, jax.Array]:
    """NPV and dNPV/dz at z by Horner's rule; `cf_at(t)` is CF_{t+1} (0-based month t)."""

    def body(k, acc):
        p, dp = acc
        cf = cf_at(T - 1 - k).astype(z.dtype)
        # One Horner step: p <- p z + CF_t, dp <- dp z + p (highest month first).
        return p * z + cf, dp * z + p

    # The residual is received with the last month's flow.
    zero = jnp.zeros_like(z)
    p0 = cf_at(T - 1).astype(z.dtype) + residual
    p, dp = jax.lax.fori_loop(1, T, body, (p0, zero), unroll=max(1, min(unroll, T - 1)))
    # p = sum_t CF_t z^(t-1); NPV = z p - I; dNPV/dz = p + z dp
    return z * p - capex, p + z * dp


def npv_at(z: jax.Array, capex: jax.Array, cash_flows: jax.Array, residual: jax.Array,
           unroll: int = 4) -> tuple[jax.Array, jax.Array]:
    """NPV and dNPV/dz at monthly discount factor z = 1/(1 + r_m), by Horner's rule.

    z, capex, residual: (...,); cash_flows: (T, ...). NPV(z) = -I + sum_t CF_t z^t + V z^T.
    `unroll` months are fused per pass over the running (p, dp) (see :func:`irr`).
    """
    return _horner(z, capex, residual, lambda t: cash_flows[t], cash_flows.shape[0], unroll)


def irr_grid(k: jax.Array) -> jax.Array:
    """Monthly discount factor z of IRR grid point k (float64, 0 .. K-1): K points evenly spaced
    in log z, ascending in z, from an annual rate of IRR_HIGH (k = 0) to IRR_LOW (k = K - 1)."""
    lo, hi = -jnp.log1p(jnp.float64(IRR_HIGH)) / 12, -jnp.log1p(jnp.float64(IRR_LOW)) / 12
    return jnp.exp(lo + k * ((hi - lo) / (_IRR_GRID - 1)))


def irr_powers(months: int) -> tuple[jax.Array, jax.Array]:
    """The grid's z (K,) and powers z^t (T, K), float64."""
    z_grid = irr_grid(jnp.arange(_IRR_GRID, dtype=SUM))
    t = jnp.arange(1, months + 1, dtype=SUM)
    return z_grid, z_grid[None, :] ** t[:, None]


def irr_bracket(flows_pv: jax.Array, capex: jax.Array, residual: jax.Array, z_T: jax.Array, grid_at) -> tuple:
    """The bracket `irr_refine` starts from, out of the NPVs on the grid (shared by :func:`irr`
    and the fused kernel, which differ only in how they read one grid point).

    flows_pv: (K, ...) sum_t CF_t z_k^t in the path dtype; z_T: z_k^T (float64), broadcast against
    flows_pv; grid_at(k) -> (z_k, flows_pv[k], z_k^T) at grid points k, an int array shaped like capex.
    """
    K = flows_pv.shape[0]
    # NPV >= 0 at grid point k, without materializing a float64 (K, ...) array.
    nonneg = flows_pv >= (capex - residual * z_T).astype(flows_pv.dtype)
    # The largest rate with NPV >= 0 is the first grid point (in ascending z) where NPV >= 0: a
    # min over k (K where there is none); an argmax (a reduction of (value, index) pairs) took
    # twice as long on a CPU.
    first = jnp.min(jnp.where(nonneg, jax.lax.broadcasted_iota(jnp.int32, nonneg.shape, 0), K), axis=0)
    any_nonneg = first < K
    first = jnp.where(any_nonneg, first, 0)
    k_hi = jnp.maximum(first, 1)

    def at(k):  # z and NPV (float64) at grid points k
        z, pv, zT = grid_at(k)
        return z, pv.astype(SUM) + residual * zT - capex

    (z_lo, f_lo), (z_hi, f_hi), (_, f_top) = at(k_hi - 1), at(k_hi), at(jnp.zeros_like(first))
    return first, any_nonneg, z_lo, z_hi, f_lo, f_hi, f_top


def irr_refine(bracket: tuple, npv, nan: jax.Array) -> jax.Array:
    """From the grid's bracket to the annual IRR: a secant start and safeguarded Newton steps.

    bracket: (first, any_nonneg, z_lo, z_hi, f_lo, f_hi, f_top): the first grid point with NPV
    >= 0 (0 if none), whether there is one, the bracket's ends and NPV there, and NPV at the top
    rate. `npv(z)` returns (NPV, dNPV/dz) in float64; `nan` marks scenarios whose flows hold a NaN.
    """
    first, any_nonneg, z_lo, z_hi, f_lo, f_hi, f_top = bracket
    # Start from the secant between the bracket ends, then Newton steps kept inside the bracket.
    z = z_lo - f_lo * (z_hi - z_lo) / jnp.where(f_hi != f_lo, f_hi - f_lo, 1.0)

    def newton(_, state):
        z, lo, hi = state
        f, df = npv(z)
        lo = jnp.where(f < 0, z, lo)
        hi = jnp.where(f >= 0, z, hi)
        step = z - f / jnp.where(df != 0, df, 1.0)
        # Closed bounds: at a root (f == 0) the step is z itself and must stay there.
        inside = (step >= lo) & (step <= hi) & jnp.isfinite(step)
        return jnp.where(inside, step, 0.5 * (lo + hi)), lo, hi

    z, _, _ = jax.lax.fori_loop(0, _IRR_NEWTON, newton, (z, z_lo, z_hi))
    rate = z ** (-12.0) - 1.0
    rate = jnp.where(first == 0, IRR_HIGH, rate)
    rate = jnp.where(f_top > 0, jnp.inf, jnp.where(any_nonneg, rate, -jnp.inf))
    return jnp.where(nan, jnp.nan, rate)


def irr(capex: jax.Array, cash_flows: jax.Array, residual: jax.Array, *, unroll: int = 4,
        flows_nan: jax.Array | None = None) -> jax.Array:
    """Annual IRR in [-0.99, 100]: the largest root of NPV; +inf / -inf per the model's rules.

    capex, residual: (S, n) float64; cash_flows: (T, S, n). NPV is evaluated on a grid of
    64 monthly discount factors (one matrix product), the largest-rate sign change is bracketed
    and refined by safeguarded Newton steps to float64 precision.

    `unroll`: months per pass of each Newton step's Horner loop. The arithmetic is the same
    whatever it is; on a GPU each pass is a kernel that reads and writes the running float64
    (p, dp), so unrolling all T months reads the cash flows once per step (the default
    study's simulate stage moves 18% fewer bytes; ``benchmarks/traffic.py``), while on a CPU it
    compiles 3x longer and runs slower, so CPUs keep 4.
    `flows_nan`: (S, n), where a scenario's cash flows hold a NaN, if the caller knows it
    already (the float64 running total of the cash flows is NaN exactly then, or when it
    holds both +inf and -inf); else it is found from `cash_flows`, one more pass over them.
    """
    T = cash_flows.shape[0]
    cf = cash_flows  # kept in the path dtype; each use casts to float64 inside the fused loop
    z_grid, powers = irr_powers(T)  # ascending z = descending rate
    # The grid only brackets the root and seeds Newton, so it runs in the path dtype (a float32
    # matrix product is 3x faster on CPUs); the Newton steps below evaluate NPV in float64.
    flows_pv = jnp.einsum("tk,tsn->ksn", powers.astype(cf.dtype), cf, precision=jax.lax.Precision.HIGHEST)
    z_T = powers[-1]

    # grid point k: its z, its NPV of the flows, and z^T (k an int array shaped like capex)
    grid_at = lambda k: (z_grid[k], jnp.take_along_axis(flows_pv, k[None], 0)[0], z_T[k])  # noqa: E731
    bracket = irr_bracket(flows_pv, capex, residual, z_T[:, None, None], grid_at)
    nan = jnp.isnan(cf).any(axis=0) if flows_nan is None else flows_nan
    return irr_refine(bracket, lambda z: npv_at(z, capex, cf, residual, unroll), nan)


def _ratio(a: jax.Array, b: jax.Array) -> jax.Array:
    return a / b  # IEEE: x/0 = +-inf, 0/0 = NaN


def breakeven_utilization(tot: Totals, energy: EnergyTotals, pv_cost: jax.Array, months: int) -> jax.Array:
    """The mean utilization at which NPV is 0 when the scenario's utilization path is scaled by one factor.

    Revenue and the variable part of energy are proportional to U_t, everything else is not, so
    NPV(lambda U) = -pv_cost_at_zero + lambda * (PV revenue - PV variable energy) is affine in
    lambda: lambda* = pv_cost_at_zero / (PV revenue - PV variable energy), and the break-even
    mean utilization is lambda* times the path's mean. +inf where selling more does not pay
    (the bracket is <= 0); NaN where the path is 0 throughout (scaling cannot move it).
    """
    fixed_pv = pv_cost - energy.pv_variable_usd  # capex net of residual, fixed opex, idle energy
    margin_pv = tot.pv_revenue - energy.pv_variable_usd
    lam = jnp.where(margin_pv > 0, fixed_pv / jnp.where(margin_pv > 0, margin_pv, 1.0), jnp.inf)
    lam = jnp.maximum(lam, 0.0)  # NPV >= 0 even with nothing sold: any utilization pays
    return (tot.util_sum / months) * lam


def compute(
    sp: SystemParams,
    site: SiteParams,
    pl: Plant,
    tot: Totals,
    cash_flows: jax.Array,
    price0: jax.Array,
    months: int,
    irr_unroll: int = 4,
    irr_values: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Every metric of the model for S systems in n scenarios, each (S, n) float64.

    cash_flows: (T, S, n) monthly CF_t; price0: (n,) initial token price of each scenario;
    irr_unroll: see :func:`irr`; irr_values: the IRR if the caller computed it already (the
    fused month loop does; then `cash_flows` may be None).
    """
    f = lambda x: jnp.asarray(x, SUM)  # noqa: E731
    T = float(months)
    shape = tot.revenue.shape
    full = lambda x: jnp.broadcast_to(x, shape)  # noqa: E731
    units, power = f(sp.units), f(sp.power_kw)
    capex = full(units * f(sp.capex))
    residual = capex * f(sp.residual)
    df_T = jnp.exp(-T * jnp.log1p(f(site.discount_rate)) / 12)
    residual_pv = residual * df_T

    colocation = full(f(pl.colocation) * T)
    maintenance = full(f(pl.maintenance) * T)
    license_ = full(f(pl.license) * T)
    energy = energy_totals(tot, sp, pl, months)
    opex = energy.usd + colocation + maintenance + license_
    pv_opex = energy.pv_usd + (f(pl.colocation) + f(pl.maintenance) + f(pl.license)) * tot.sum_df
    depreciation = full(capex * (1 - f(sp.residual)) * jnp.minimum(1.0, T / (12 * f(sp.depreciation_years))))
    ebitda = tot.revenue - opex
    op_profit = ebitda - depreciation
    cash_total = tot.revenue - opex
    # The cost a project must recover in present value: capex net of the discounted residual, plus opex.
    pv_cost = capex - residual_pv + pv_opex
    years = T / 12
    return dict(
        capex_usd=capex,
        revenue_usd=tot.revenue,
        tokens=tot.tokens,
        energy_kwh=energy.kwh,
        energy_usd=energy.usd,
        colocation_usd=colocation,
        maintenance_usd=maintenance,
        license_usd=license_,
        opex_usd=opex,
        depreciation_usd=depreciation,
        ebitda_usd=ebitda,
        operating_profit_usd=op_profit,
        operating_margin=jnp.where(tot.revenue == 0, jnp.nan, op_profit / jnp.where(tot.revenue == 0, 1.0, tot.revenue)),
        npv_usd=-capex + (tot.pv_revenue - pv_opex) + residual_pv,
        irr=irr(capex, cash_flows, residual, unroll=irr_unroll, flows_nan=jnp.isnan(tot.cum_cash_flow))
        if irr_values is None else irr_values,
        roi_multiple=_ratio(tot.revenue, capex),
        net_roi=_ratio(cash_total + residual - capex, capex),
        payback_months=tot.payback,
        cost_per_mtok_usd=_ratio(depreciation + opex, tot.tokens / 1e6),
        levelized_cost_per_mtok_usd=_ratio(pv_cost, tot.pv_tokens / 1e6),
        breakeven_price_usd_per_mtok=f(price0) * _ratio(pv_cost, tot.pv_revenue),
        breakeven_utilization=breakeven_utilization(tot, energy, pv_cost, months),
        energy_j_per_token=_ratio(energy.kwh * 3.6e6, tot.tokens),
        mean_utilization=full(tot.util_sum / T),
        revenue_per_unit_year_usd=_ratio(tot.revenue, full(units * years)),
        revenue_per_mw_year_usd=_ratio(tot.revenue, full(units * power / 1000 * years)),
    )

"""Per-scenario metrics of each system, from the running totals and the monthly cash flows.

Every function is pure JAX on (S, n) arrays and computes in float64. Ratios follow IEEE rules
(x/0 = +-inf, 0/0 = NaN) except ``operating_margin``, which is NaN where revenue is 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mcrisk.model.cashflows import (
    MONTH_HOURS,
    SUM,
    EnergyTotals,
    Plant,
    SiteParams,
    SystemParams,
    Totals,
    energy_totals,
)
from mcrisk.model.irr import irr

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
# The base model's metrics above, then three every run computes: the revenue per installed
# GPU-hour over the horizon and over the first live year (what the calibration check holds
# against the rental market's prices), and the live months of MODEL.md's timing extension.
BASE_METRICS = METRICS
METRICS = BASE_METRICS + ("revenue_per_gpu_hour_usd", "first_year_revenue_per_gpu_hour_usd", "live_months")
# Metrics of MODEL.md's extensions (tax, debt, contracts, GPU-hours): computed where a study uses one.
FINANCE_METRICS: tuple[str, ...] = (
    "breakeven_rental_usd_per_gpu_hour",
    "contract_revenue_usd",
    "contract_default_month",
    "tax_usd",
    "equity_tax_usd",
    "interest_usd",
    "equity_npv_usd",
    "equity_irr",
    "min_dscr",
)
ALL_METRICS = METRICS + FINANCE_METRICS


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
    irr_unroll: int | None = 4,
    irr_mask_rows: int | None = None,
) -> dict[str, jax.Array]:
    """Every metric of the model for S systems in n scenarios, each (S, n) float64.

    cash_flows: (T, S, n) monthly CF_t; price0: (n,) initial token price of each scenario;
    irr_unroll, irr_mask_rows: see :func:`irr` (``unroll``, ``mask_rows_per_pass``).
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
        operating_margin=jnp.where(
            tot.revenue == 0, jnp.nan, op_profit / jnp.where(tot.revenue == 0, 1.0, tot.revenue)
        ),
        npv_usd=-capex + (tot.pv_revenue - pv_opex) + residual_pv,
        irr=irr(
            capex,
            cash_flows,
            residual,
            unroll=irr_unroll,
            flows_nan=jnp.isnan(tot.cum_cash_flow),
            mask_rows_per_pass=irr_mask_rows,
        ),
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
        revenue_per_gpu_hour_usd=_ratio(tot.revenue, full(units * f(sp.gpus) * (MONTH_HOURS * T))),
        first_year_revenue_per_gpu_hour_usd=_ratio(
            tot.first_year_revenue, full(units * f(sp.gpus) * (MONTH_HOURS * min(T, 12.0)))
        ),
        live_months=full(jnp.asarray(T, SUM)),
    )

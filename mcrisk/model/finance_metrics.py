"""Running totals and metrics of a run with MODEL.md's extensions (timing, GPU-hours, contracts,
tax, debt), and the portfolio row. Every total and metric is float64, (S, n).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mcrisk.model.cashflows import MONTH_HOURS, SUM, Plant, SystemParams
from mcrisk.model.irr import irr
from mcrisk.model.operators import ExtFlows, ExtParams, FinanceMonth


class ExtTotals(NamedTuple):
    """Sums over months of each system's lines, (S, n) float64."""

    revenue: jax.Array
    tokens: jax.Array
    energy_kwh: jax.Array
    energy_usd: jax.Array
    opex: jax.Array
    pv_revenue: jax.Array  # sum R_t DF_t
    pv_tokens: jax.Array
    pv_opex: jax.Array
    pv_variable: jax.Array  # sum DF_t of the busy-share part of energy cost
    live: jax.Array  # sum L_t
    first_year_revenue: jax.Array  # sum of R_t over the first 12 live months
    first_year_live: jax.Array  # live months among them
    busy: jax.Array  # sum B_t
    contract_revenue: jax.Array
    cum_fcf: jax.Array  # sum_{j<=t} FCF_j
    payback: jax.Array  # first t with cum FCF >= I
    tax: jax.Array
    tax_levered: jax.Array
    pv_tax: jax.Array  # sum taxu_t DF_t
    interest: jax.Array
    pv_equity: jax.Array  # sum EQ_t DFe_t
    min_dscr: jax.Array
    # Under a contract (None without): sum DF_t (contract revenue - its variable energy), sum c_t uc.
    pv_contract_margin: jax.Array | None = None
    contract_busy: jax.Array | None = None


def ext_totals_init(shape: tuple[int, int], contract: bool = False) -> ExtTotals:
    z = jnp.zeros(shape, SUM)
    inf = jnp.full(shape, jnp.inf, SUM)
    return ExtTotals(*([z] * 15), inf, z, z, z, z, z, inf, *((z, z) if contract else (None, None)))


def ext_accumulate(
    tot: ExtTotals,
    f: ExtFlows,
    fm: FinanceMonth,
    df: jax.Array,
    dfe: jax.Array,
    t: jax.Array,
    capex: jax.Array,
    go_live: jax.Array,
) -> ExtTotals:
    """Add month t (DF_t at the discount rate, DFe_t at the cost of equity) to the totals;
    `go_live` is g, the month after which the system is live."""
    c = lambda x: x.astype(SUM)  # noqa: E731
    rev, tok, opex = c(f.revenue), c(f.tokens), c(f.opex)
    cum = tot.cum_fcf + fm.free_cash_flow
    reached = jnp.isinf(tot.payback) & (cum >= capex)
    first = (t - go_live <= 12) & (f.live > 0)  # a live month of the first live year
    service = fm.interest + fm.principal
    dscr = jnp.where(service > 0, (c(f.cash_flow) - fm.tax_levered) / jnp.where(service > 0, service, 1.0), jnp.inf)
    return ExtTotals(
        revenue=tot.revenue + rev,
        tokens=tot.tokens + tok,
        energy_kwh=tot.energy_kwh + c(f.energy_kwh),
        energy_usd=tot.energy_usd + c(f.energy_usd),
        opex=tot.opex + opex,
        pv_revenue=tot.pv_revenue + rev * df,
        pv_tokens=tot.pv_tokens + tok * df,
        pv_opex=tot.pv_opex + opex * df,
        pv_variable=tot.pv_variable + c(f.variable_energy_usd) * df,
        live=tot.live + c(f.live),
        first_year_revenue=jnp.where(first, tot.first_year_revenue + rev, tot.first_year_revenue),
        first_year_live=jnp.where(first, tot.first_year_live + 1.0, tot.first_year_live),
        busy=tot.busy + c(f.busy),
        contract_revenue=tot.contract_revenue + c(f.contract_revenue),
        cum_fcf=cum,
        payback=jnp.where(reached, t.astype(SUM), tot.payback),
        tax=tot.tax + fm.tax,
        tax_levered=tot.tax_levered + fm.tax_levered,
        pv_tax=tot.pv_tax + fm.tax * df,
        interest=tot.interest + fm.interest,
        pv_equity=tot.pv_equity + fm.equity_flow * dfe,
        min_dscr=jnp.minimum(tot.min_dscr, dscr),
        pv_contract_margin=None
        if tot.pv_contract_margin is None
        else tot.pv_contract_margin + (c(f.contract_revenue) - c(f.contract_variable_usd)) * df,
        contract_busy=None if tot.contract_busy is None else tot.contract_busy + c(f.contract_busy),
    )


def _df(rate: jax.Array, t) -> jax.Array:
    return jnp.exp(-jnp.asarray(t, SUM) * jnp.log1p(jnp.asarray(rate, SUM)) / 12)


def outlay_irr(outlay: jax.Array, at: jax.Array, flows: jax.Array, residual: jax.Array, **kw) -> jax.Array:
    """The IRR rule on flows with the outlay paid at month `at` (0 .. T-1) rather than 0:
    the outlay joins month `at`'s flow (flows: (T, S, n), months 1..T), or is the IRR's capex at 0."""
    months = jnp.arange(1, flows.shape[0] + 1, dtype=SUM).reshape((-1,) + (1,) * (flows.ndim - 1))
    shifted = flows.astype(SUM) - jnp.where(months == at, outlay, 0.0)
    return irr(jnp.where(at == 0, outlay, 0.0), shifted, residual, **kw)


def ext_metrics(
    sp: SystemParams,
    xp: ExtParams,
    pl: Plant,
    tot: ExtTotals,
    rates: tuple,
    price0: jax.Array,
    months: int,
    irr_flows: jax.Array,
    irr_kw: dict,
    debt: tuple | None,
) -> dict[str, jax.Array]:
    """Every metric of MODEL.md's extended table, each (S, n) float64.

    rates: (discount rate, cost of equity), (n,); irr_flows: (T, S, n) FCF_t; debt: None, or
    (share db, Bal_T, equity flows EQ_t (T, S, n)) for the equity IRR."""
    f = lambda x: jnp.asarray(x, SUM)  # noqa: E731
    T = float(months)
    shape = tot.revenue.shape
    full = lambda x: jnp.broadcast_to(x, shape)  # noqa: E731
    units, power, gpus = f(sp.units), f(sp.power_kw), f(sp.gpus)
    capex = full(units * f(sp.capex))
    residual = capex * f(sp.residual)
    rate, equity_rate = rates
    p, g = f(xp.purchase), f(xp.go_live)
    capex_pv = capex * _df(rate, p)
    residual_pv = residual * _df(rate, T)
    pv_cost = capex_pv - residual_pv + tot.pv_opex
    dep = capex * (1 - f(sp.residual)) * jnp.minimum(1.0, jnp.maximum(0.0, T - g) / (12 * f(sp.depreciation_years)))
    depreciation = full(dep)
    ebitda = tot.revenue - tot.opex
    op_profit = ebitda - depreciation
    ratio = lambda a, b: a / b  # noqa: E731
    gpu_mode = full(xp.gpu_hours.astype(bool))
    if debt is None:
        share, balloon = jnp.zeros(()), jnp.zeros(())
    else:
        share, balloon = f(debt[0]), debt[1]
    equity_out = (1 - share) * capex
    out = dict(
        capex_usd=capex,
        revenue_usd=tot.revenue,
        tokens=tot.tokens,
        energy_kwh=tot.energy_kwh,
        energy_usd=tot.energy_usd,
        colocation_usd=full(f(pl.colocation) * tot.live),
        maintenance_usd=full(f(pl.maintenance) * tot.live),
        license_usd=full(f(pl.license) * tot.live),
        opex_usd=tot.opex,
        depreciation_usd=depreciation,
        ebitda_usd=ebitda,
        operating_profit_usd=op_profit,
        operating_margin=jnp.where(
            tot.revenue == 0, jnp.nan, op_profit / jnp.where(tot.revenue == 0, 1.0, tot.revenue)
        ),
        npv_usd=-capex_pv + tot.pv_revenue - tot.pv_opex - tot.pv_tax + residual_pv,
        irr=outlay_irr(capex, p, irr_flows, residual, **irr_kw),
        roi_multiple=ratio(tot.revenue, capex),
        net_roi=ratio(tot.cum_fcf + residual - capex, capex),
        payback_months=tot.payback,
        cost_per_mtok_usd=ratio(depreciation + tot.opex, tot.tokens / 1e6),
        levelized_cost_per_mtok_usd=ratio(pv_cost, tot.pv_tokens / 1e6),
        breakeven_price_usd_per_mtok=jnp.where(gpu_mode, jnp.nan, f(price0) * ratio(pv_cost, tot.pv_revenue)),
        breakeven_utilization=_breakeven_utilization(tot, pv_cost),
        energy_j_per_token=ratio(tot.energy_kwh * 3.6e6, tot.tokens),
        mean_utilization=jnp.where(tot.live > 0, tot.busy / jnp.where(tot.live > 0, tot.live, 1.0), jnp.nan),
        revenue_per_unit_year_usd=ratio(tot.revenue, units * tot.live / 12),
        revenue_per_mw_year_usd=ratio(tot.revenue, units * power / 1000 * tot.live / 12),
        revenue_per_gpu_hour_usd=ratio(tot.revenue, units * gpus * MONTH_HOURS * tot.live),
        first_year_revenue_per_gpu_hour_usd=ratio(
            tot.first_year_revenue, units * gpus * MONTH_HOURS * tot.first_year_live
        ),
        live_months=tot.live,
        breakeven_rental_usd_per_gpu_hour=jnp.where(gpu_mode, f(xp.rental0) * ratio(pv_cost, tot.pv_revenue), jnp.nan),
        contract_revenue_usd=tot.contract_revenue,
        contract_default_month=full(f(xp.default_month)),
        tax_usd=tot.tax,
        equity_tax_usd=tot.tax_levered,
        interest_usd=tot.interest,
        equity_npv_usd=-equity_out * _df(equity_rate, p) + tot.pv_equity + (residual - balloon) * _df(equity_rate, T),
        min_dscr=tot.min_dscr,
    )
    if debt is None:
        out["equity_irr"] = out["irr"]  # without debt the equity's flows are the project's
    else:
        out["equity_irr"] = outlay_irr(equity_out, p, debt[2], residual - balloon, **irr_kw)
    return out


def _breakeven_utilization(tot: ExtTotals, pv_cost: jax.Array) -> jax.Array:
    """The mean busy share at which NPV (before tax) is 0 when the spot busy path is scaled by one
    factor: :func:`mcrisk.model.metrics.breakeven_utilization` over the live months. A contract's
    take-or-pay revenue and its energy do not scale: they join the fixed part."""
    if tot.contract_busy is not None:
        return _breakeven_utilization_contracted(tot, pv_cost)
    fixed_pv = pv_cost - tot.pv_variable
    margin_pv = tot.pv_revenue - tot.pv_variable
    lam = jnp.where(margin_pv > 0, fixed_pv / jnp.where(margin_pv > 0, margin_pv, 1.0), jnp.inf)
    mean = jnp.where(tot.live > 0, tot.busy / jnp.where(tot.live > 0, tot.live, 1.0), jnp.nan)
    return mean * jnp.maximum(lam, 0.0)


def _breakeven_utilization_contracted(tot: ExtTotals, pv_cost: jax.Array) -> jax.Array:
    """:func:`_breakeven_utilization` with contracts: NPV(x) = -fixed + contract margin + x * spot margin."""
    npv_none = tot.pv_contract_margin - (pv_cost - tot.pv_variable)
    spot_margin = tot.pv_revenue - tot.pv_variable - tot.pv_contract_margin
    safe = jnp.where(spot_margin > 0, spot_margin, 1.0)
    x_star = jnp.where(spot_margin > 0, jnp.maximum(-npv_none / safe, 0.0), jnp.inf)
    live = jnp.where(tot.live > 0, tot.live, 1.0)
    spot_mean = (tot.busy - tot.contract_busy) / live
    out = x_star * spot_mean + tot.contract_busy / live
    return jnp.where(tot.live > 0, out, jnp.nan)

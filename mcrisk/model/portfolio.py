"""The portfolio row (MODEL.md "The portfolio row"): every system of a study as one fleet.

The fleet's monthly flows are the sums over systems; its metrics are sums of the systems'
values, ratios of those sums, or computed on the summed monthly flows (IRR and equity IRR with
each outlay in its own month, payback, minimum DSCR). Sums over systems run in a fixed order,
`order` (the engine passes the systems sorted by name), one addition after another, so the row
does not depend on how the study lists its systems, nor on the chunk or the device count (every
operation is per scenario). Everything here is float64, (n,) per scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mcrisk.model.cashflows import MONTH_HOURS, SUM, Plant, SystemParams
from mcrisk.model.finance_metrics import ExtTotals
from mcrisk.model.irr import irr
from mcrisk.model.operators import ExtParams, FinanceMonth

# Metrics that are sums of the systems' values.
SUMMED = (
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
    "contract_revenue_usd",
    "tax_usd",
    "equity_tax_usd",
    "interest_usd",
    "npv_usd",
    "equity_npv_usd",
)
# Per-system metrics with no fleet meaning: NaN in the portfolio row. (breakeven_utilization scales
# one system's spot path; the fleet has no one path to scale.)
NOT_DEFINED = (
    "breakeven_price_usd_per_mtok",
    "breakeven_rental_usd_per_gpu_hour",
    "revenue_per_unit_year_usd",
    "live_months",
    "contract_default_month",
    "breakeven_utilization",
)


class FleetTotals(NamedTuple):
    """What the month loop carries for the fleet, (n,) float64."""

    cum_fcf: jax.Array  # sum_{j<=t} sum_s FCF^s_j
    payback: jax.Array  # first t with cum_fcf >= sum_s I_s
    min_dscr: jax.Array  # min over months with sum_s DS^s_t > 0 of sum_s (CF - taxl) / sum_s DS


class FleetMonth(NamedTuple):
    """One month's summed flows, (n,) float64: what the fleet's IRRs read after the loop."""

    free_cash_flow: jax.Array
    equity_flow: jax.Array | None  # None without debt (the equity's flows are then the project's)


def total(x: jax.Array, order: Sequence[int], n: int | None = None) -> jax.Array:
    """Sum over the systems' axis (axis 0) of `x`, one system after another in `order`."""
    rows = [x[s] for s in order]
    out = rows[0]
    for r in rows[1:]:
        out = out + r
    return out if n is None else jnp.broadcast_to(out, (n,) + out.shape[1:])


def fleet_init(n: int) -> FleetTotals:
    return FleetTotals(jnp.zeros((n,), SUM), jnp.full((n,), jnp.inf, SUM), jnp.full((n,), jnp.inf, SUM))


def fleet_step(
    ft: FleetTotals,
    fm: FinanceMonth,
    cash_flow: jax.Array,
    t: jax.Array,
    capex: jax.Array,
    order: Sequence[int],
    debt: bool,
) -> tuple[FleetTotals, FleetMonth]:
    """Add month t to the fleet's totals. `fm`: the systems' finance lines (S, n); `cash_flow`:
    CF_t (S, n) float64; `capex`: the fleet's summed capex (n,)."""
    fcf = total(fm.free_cash_flow, order)
    cum = ft.cum_fcf + fcf
    reached = jnp.isinf(ft.payback) & (cum >= capex)
    payback = jnp.where(reached, t.astype(SUM), ft.payback)
    min_dscr, equity = ft.min_dscr, None
    if debt:
        service = total(fm.interest + fm.principal, order)
        cover = total(cash_flow - fm.tax_levered, order)
        ok = service > 0
        min_dscr = jnp.minimum(min_dscr, jnp.where(ok, cover / jnp.where(ok, service, 1.0), jnp.inf))
        equity = total(fm.equity_flow, order)
    return FleetTotals(cum, payback, min_dscr), FleetMonth(fcf, equity)


def _df(rate: jax.Array, t) -> jax.Array:
    return jnp.exp(-jnp.asarray(t, SUM) * jnp.log1p(jnp.asarray(rate, SUM)) / 12)


def fleet_irr(
    outlays: jax.Array,
    months: jax.Array,
    flows: jax.Array,
    residual: jax.Array,
    order: Sequence[int],
    irr_kw: dict,
) -> jax.Array:
    """The IRR rule on the fleet's summed flows (T, n) with each system's outlay (S, n) paid in its
    own month (S, 1) (0 .. T-1): those at 0 are the IRR's outlay, each later one joins its month's flow."""
    T = flows.shape[0]
    t = jnp.arange(1, T + 1, dtype=SUM)[:, None]
    at0 = total(jnp.where(months == 0, outlays, 0.0), order)
    shifted = flows.astype(SUM)
    for s in order:
        shifted = shifted - jnp.where(t == months[s], outlays[s], 0.0)
    return irr(at0[None], shifted[:, None, :], residual[None], **irr_kw)[0]


def fleet_metrics(
    out: dict[str, jax.Array],
    sp: SystemParams,
    xp: ExtParams,
    pl: Plant,
    tot: ExtTotals,
    rate: jax.Array,
    months: int,
    fleet: tuple[FleetTotals, FleetMonth],
    irr_kw: dict,
    debt: tuple | None,
    order: Sequence[int],
) -> dict[str, jax.Array]:
    """Every metric of the portfolio row, (n,) float64, from the systems' metrics `out` (S, n),
    their totals `tot`, the fleet's totals and summed monthly flows `fleet` ((T, n) each), the
    discount rate (n,) and `debt` (share db, Bal_T (S, n), ...) or None, as in ext_metrics."""
    f = lambda x: jnp.asarray(x, SUM)  # noqa: E731
    shape = out["capex_usd"].shape
    n = shape[1]
    tot_s = lambda x: total(jnp.broadcast_to(f(x), shape), order)  # noqa: E731
    ft, fy = fleet
    res = {k: tot_s(out[k]) for k in SUMMED}
    rev, capex = res["revenue_usd"], res["capex_usd"]
    res["operating_margin"] = jnp.where(rev == 0, jnp.nan, res["operating_profit_usd"] / jnp.where(rev == 0, 1.0, rev))
    res["roi_multiple"] = rev / capex
    res["cost_per_mtok_usd"] = (res["depreciation_usd"] + res["opex_usd"]) / (res["tokens"] / 1e6)
    res["energy_j_per_token"] = res["energy_kwh"] * 3.6e6 / res["tokens"]
    each_capex = jnp.broadcast_to(f(out["capex_usd"]), shape)
    residual_s = each_capex * f(sp.residual)
    residual = tot_s(residual_s)
    res["net_roi"] = (ft.cum_fcf + residual - capex) / capex
    p = jnp.broadcast_to(f(xp.purchase), (shape[0], 1))
    df_T = _df(rate, float(months))
    # The discount rate is market-wide: (n,), or (S, n) when each system reads its own copy of it
    # (the Greeks' one reverse pass for all systems); then each system's residual takes its own.
    residual_pv = tot_s(residual_s * df_T) if jnp.ndim(rate) == 2 else residual * df_T
    cost_pv = tot_s(each_capex * _df(rate, p)) - residual_pv + tot_s(tot.pv_opex)
    res["levelized_cost_per_mtok_usd"] = cost_pv / (tot_s(tot.pv_tokens) / 1e6)
    gpus = f(sp.units) * f(sp.gpus)
    res["revenue_per_mw_year_usd"] = rev / tot_s(f(sp.units) * f(sp.power_kw) / 1000 * tot.live / 12)
    gpu_live = tot_s(gpus * tot.live)
    res["revenue_per_gpu_hour_usd"] = rev / (MONTH_HOURS * gpu_live)
    res["first_year_revenue_per_gpu_hour_usd"] = tot_s(tot.first_year_revenue) / (
        MONTH_HOURS * tot_s(gpus * tot.first_year_live)
    )
    res["mean_utilization"] = tot_s(gpus * tot.busy) / gpu_live
    res["irr"] = fleet_irr(each_capex, p, fy.free_cash_flow, residual, order, irr_kw)
    res["payback_months"] = ft.payback
    res["min_dscr"] = ft.min_dscr
    if debt is None:
        res["equity_irr"] = res["irr"]  # without debt the equity's flows are the project's
    else:
        share, balloon = f(debt[0]), jnp.broadcast_to(f(debt[1]), shape)
        equity_residual = tot_s(residual_s - balloon)
        res["equity_irr"] = fleet_irr((1 - share) * each_capex, p, fy.equity_flow, equity_residual, order, irr_kw)
    res.update({k: jnp.full((n,), jnp.nan, SUM) for k in NOT_DEFINED})
    return {k: jnp.broadcast_to(res[k], (n,)) for k in out}


def with_fleet(out: dict[str, jax.Array], fleet: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Every metric with the portfolio row after the systems': (S + 1, n)."""
    return {k: jnp.concatenate([v, fleet[k].astype(v.dtype)[None]]) for k, v in out.items()}

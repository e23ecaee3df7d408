"""One system's monthly cash-flow lines and their running totals.

Arrays are (S, n): S systems by n scenarios. Paths run in the study's precision; the running
totals of money, tokens and energy are float64 so that sums over 240 months stay exact to
float64 rounding whatever the path precision.

Energy is a system's facility kWh at full load times a market series (Q_t = Q (i + (1 - i) U_t),
cost Q_t e_t), so its totals are kept once per scenario as sums of the market series (sum U_t,
sum e_t, sum U_t e_t, and their discounted sums) and scaled per system at the end
(:func:`energy_totals`): the month loop carries 4 float64 numbers per scenario where it carried
4 per system, a sixth less memory traffic per month on a GPU.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mcrisk.model.market import MarketMonth

MONTH_HOURS = 730.5  # 8766 h / 12
MONTH_SECONDS = MONTH_HOURS * 3600.0  # 2,629,800 s
SUM = jnp.float64  # dtype of every running total


class SystemParams(NamedTuple):
    """Static inputs of S systems in n scenarios, each broadcastable to (S, n)."""

    units: jax.Array  # n, units bought
    gpus: jax.Array  # G, GPUs per unit
    capex: jax.Array  # C, $ per unit
    power_kw: jax.Array  # W, IT kW per unit at full load
    idle: jax.Array  # i, idle power fraction
    throughput: jax.Array  # theta, tokens/s per GPU at saturation
    efficiency: jax.Array  # eta, production / benchmark throughput
    availability: jax.Array  # A
    price_multiplier: jax.Array  # q
    speedup_ceiling: jax.Array  # c
    speedup_tau: jax.Array  # tau, months
    maintenance: jax.Array  # fraction of capex per year
    license: jax.Array  # $ per GPU-year
    residual: jax.Array  # rho, fraction of capex recovered at T
    depreciation_years: jax.Array  # L


class SiteParams(NamedTuple):
    """Facility and finance inputs shared by every system of a scenario, each (n,)."""

    pue: jax.Array
    colocation: jax.Array  # $ per IT kW-month
    discount_rate: jax.Array  # annual


class Plant(NamedTuple):
    """Per-system constants of the monthly lines, each (S, n), computed once before the months."""

    capacity: jax.Array  # tokens per month at U = 1 and no speedup
    facility_kwh: jax.Array  # kWh per month at full load, PUE included
    colocation: jax.Array  # $ per month
    maintenance: jax.Array  # $ per month
    license: jax.Array  # $ per month


class Flows(NamedTuple):
    """One month's lines for S systems, each (S, n) in the path dtype."""

    revenue: jax.Array
    tokens: jax.Array
    energy_kwh: jax.Array
    energy_usd: jax.Array
    cash_flow: jax.Array


class Totals(NamedTuple):
    """Running totals over months, (S, n) float64 per system, (n,) float64 for market series."""

    revenue: jax.Array
    first_year_revenue: jax.Array  # sum of R_t over t <= 12
    tokens: jax.Array
    pv_revenue: jax.Array  # sum R_t DF_t
    pv_tokens: jax.Array  # sum N_t DF_t
    cum_cash_flow: jax.Array  # sum_{j<=t} CF_j
    payback: jax.Array  # first t with cum CF >= capex, +inf until then
    sum_df: jax.Array  # (n,) sum DF_t
    util_sum: jax.Array  # (n,) sum U_t
    elec_sum: jax.Array  # (n,) sum e_t
    util_elec_sum: jax.Array  # (n,) sum U_t e_t
    pv_elec: jax.Array  # (n,) sum e_t DF_t
    pv_util_elec: jax.Array  # (n,) sum U_t e_t DF_t


class EnergyTotals(NamedTuple):
    """A system's energy over the horizon, (S, n) float64."""

    kwh: jax.Array  # sum Q_t
    usd: jax.Array  # sum Q_t e_t
    pv_usd: jax.Array  # sum Q_t e_t DF_t
    pv_variable_usd: jax.Array  # sum DF_t of the utilization-driven part of Q_t e_t


def plant(sp: SystemParams, site: SiteParams) -> Plant:
    """The month-invariant parts of the lines."""
    n = sp.units
    capacity = n * sp.gpus * sp.throughput * sp.efficiency * sp.availability * MONTH_SECONDS
    facility_kwh = n * sp.power_kw * site.pue * MONTH_HOURS
    return Plant(
        capacity=capacity,
        facility_kwh=facility_kwh,
        colocation=n * sp.power_kw * site.colocation,
        maintenance=n * sp.capex * sp.maintenance / 12,
        license=n * sp.gpus * sp.license / 12,
    )


def month_flows(sp: SystemParams, pl: Plant, mkt: MarketMonth, t: jax.Array) -> Flows:
    """The lines of month t for every system, given the market of that month."""
    speedup = 1 + (sp.speedup_ceiling - 1) * (1 - jnp.exp(-t / sp.speedup_tau))
    tokens = pl.capacity * speedup * mkt.utilization
    revenue = tokens * 1e-6 * mkt.price * sp.price_multiplier
    energy_kwh = pl.facility_kwh * (sp.idle + (1 - sp.idle) * mkt.utilization)
    energy_usd = energy_kwh * mkt.electricity
    opex = energy_usd + pl.colocation + pl.maintenance + pl.license
    return Flows(revenue, tokens, energy_kwh, energy_usd, revenue - opex)


def discount_factor(rate: jax.Array, t: jax.Array) -> jax.Array:
    """DF_t = (1 + r_m)^-t with r_m = (1 + r)^(1/12) - 1, i.e. (1 + r)^(-t/12); float64."""
    return jnp.exp(-t.astype(SUM) * jnp.log1p(rate.astype(SUM)) / 12)


def totals_init(shape: tuple[int, int]) -> Totals:
    z = jnp.zeros(shape, SUM)
    zn = jnp.zeros(shape[1:], SUM)
    return Totals(z, z, z, z, z, z, jnp.full(shape, jnp.inf, SUM), zn, zn, zn, zn, zn, zn)


def accumulate(tot: Totals, f: Flows, mkt: MarketMonth, df: jax.Array, t: jax.Array, capex: jax.Array) -> Totals:
    """Add month t to the totals. `capex` is I = n C per system, (S, n) float64."""
    rev, tok = f.revenue.astype(SUM), f.tokens.astype(SUM)
    cum = tot.cum_cash_flow + f.cash_flow.astype(SUM)
    reached = jnp.isinf(tot.payback) & (cum >= capex)
    util, elec = mkt.utilization.astype(SUM), mkt.electricity.astype(SUM)
    return Totals(
        revenue=tot.revenue + rev,
        first_year_revenue=jnp.where(t <= 12, tot.first_year_revenue + rev, tot.first_year_revenue),
        tokens=tot.tokens + tok,
        pv_revenue=tot.pv_revenue + rev * df,
        pv_tokens=tot.pv_tokens + tok * df,
        cum_cash_flow=cum,
        payback=jnp.where(reached, t.astype(SUM), tot.payback),
        sum_df=tot.sum_df + df,
        util_sum=tot.util_sum + util,
        elec_sum=tot.elec_sum + elec,
        util_elec_sum=tot.util_elec_sum + util * elec,
        pv_elec=tot.pv_elec + elec * df,
        pv_util_elec=tot.pv_util_elec + util * elec * df,
    )


def energy_totals(tot: Totals, sp: SystemParams, pl: Plant, months: int) -> EnergyTotals:
    """Each system's energy totals from the market sums: with Q the facility kWh at full load and
    i the idle fraction, sum Q_t = Q (i T + (1 - i) sum U_t), sum Q_t e_t = Q (i sum e_t + (1 - i)
    sum U_t e_t), and the same with DF_t for present values."""
    q, idle = pl.facility_kwh.astype(SUM), sp.idle.astype(SUM)
    busy = 1 - idle
    return EnergyTotals(
        kwh=q * (idle * months + busy * tot.util_sum),
        usd=q * (idle * tot.elec_sum + busy * tot.util_elec_sum),
        pv_usd=q * (idle * tot.pv_elec + busy * tot.pv_util_elec),
        pv_variable_usd=q * busy * tot.pv_util_elec,
    )

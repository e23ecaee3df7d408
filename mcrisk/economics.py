"""One system's monthly cash-flow lines and their running totals.

Arrays are (S, n): S systems by n scenarios. Paths run in the study's precision; the running
totals of money, tokens and energy are float64 so that sums over 240 months stay exact to
float64 rounding whatever the path precision.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .processes import MarketMonth

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
    variable_energy_usd: jax.Array  # the part of energy_usd that scales with utilization
    cash_flow: jax.Array


class Totals(NamedTuple):
    """Running totals over months, (S, n) float64 unless noted."""

    revenue: jax.Array
    tokens: jax.Array
    energy_kwh: jax.Array
    energy_usd: jax.Array
    pv_revenue: jax.Array  # sum R_t DF_t
    pv_tokens: jax.Array  # sum N_t DF_t
    pv_energy_usd: jax.Array  # sum energy_t DF_t
    pv_variable_energy_usd: jax.Array  # sum DF_t of the utilization-driven part of energy_t
    cum_cash_flow: jax.Array  # sum_{j<=t} CF_j
    payback: jax.Array  # first t with cum CF >= capex, +inf until then
    sum_df: jax.Array  # (n,) sum DF_t
    util_sum: jax.Array  # (n,) sum U_t


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
    variable_energy_usd = pl.facility_kwh * (1 - sp.idle) * mkt.utilization * mkt.electricity
    opex = energy_usd + pl.colocation + pl.maintenance + pl.license
    return Flows(revenue, tokens, energy_kwh, energy_usd, variable_energy_usd, revenue - opex)


def discount_factor(rate: jax.Array, t: jax.Array) -> jax.Array:
    """DF_t = (1 + r_m)^-t with r_m = (1 + r)^(1/12) - 1, i.e. (1 + r)^(-t/12); float64."""
    return jnp.exp(-t.astype(SUM) * jnp.log1p(rate.astype(SUM)) / 12)


def totals_init(shape: tuple[int, int]) -> Totals:
    z = jnp.zeros(shape, SUM)
    zn = jnp.zeros(shape[1:], SUM)
    return Totals(z, z, z, z, z, z, z, z, z, jnp.full(shape, jnp.inf, SUM), zn, zn)


def accumulate(tot: Totals, f: Flows, util: jax.Array, df: jax.Array, t: jax.Array, capex: jax.Array) -> Totals:
    """Add month t to the totals. `capex` is I = n C per system, (S, n) float64."""
    rev, tok = f.revenue.astype(SUM), f.tokens.astype(SUM)
    e_usd = f.energy_usd.astype(SUM)
    cum = tot.cum_cash_flow + f.cash_flow.astype(SUM)
    reached = jnp.isinf(tot.payback) & (cum >= capex)
    return Totals(
        revenue=tot.revenue + rev,
        tokens=tot.tokens + tok,
        energy_kwh=tot.energy_kwh + f.energy_kwh.astype(SUM),
        energy_usd=tot.energy_usd + e_usd,
        pv_revenue=tot.pv_revenue + rev * df,
        pv_tokens=tot.pv_tokens + tok * df,
        pv_energy_usd=tot.pv_energy_usd + e_usd * df,
        pv_variable_energy_usd=tot.pv_variable_energy_usd + f.variable_energy_usd.astype(SUM) * df,
        cum_cash_flow=cum,
        payback=jnp.where(reached, t.astype(SUM), tot.payback),
        sum_df=tot.sum_df + df,
        util_sum=tot.util_sum + util.astype(SUM),
    )

"""How operators earn and finance (MODEL.md's extensions): go-live timing, GPU-hour rental,
take-or-pay contracts, income tax with loss carry-forward, and amortizing debt.

A run uses this month step in place of :func:`mcrisk.model.cashflows.month_flows` and
:func:`~mcrisk.model.cashflows.accumulate` only when its study has an extension; which parts
are traced is fixed by :class:`Flags` (Python booleans), so that a study without, say, debt
carries no debt state. Arrays are (S, n) (or (S, 1) where every scenario shares a value);
money's running sums, taxes and loan balances are float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mcrisk.model.cashflows import MONTH_HOURS, SUM, Plant, SystemParams
from mcrisk.model.market import MarketMonth, MarketParams


class Flags(NamedTuple):
    """Which extensions a run traces (static)."""

    timing: bool = False  # some system is bought after month 0 or has a lead time
    contract: bool = False  # some system sells under contract
    gpu_hours: bool = False  # some system rents GPU-hours
    tax: bool = False
    debt: bool = False


class ExtParams(NamedTuple):
    """The extensions' inputs per system, each broadcastable to (S, n) (float64 where money)."""

    purchase: jax.Array  # p, month capex is paid
    go_live: jax.Array  # g = p + l
    gpu_hours: jax.Array  # bool: the system rents GPU-hours
    rental0: jax.Array  # h0, $/GPU-hour (1 for token systems)
    rental_decline: jax.Array  # dh
    share: jax.Array  # k, contracted share of capacity
    term: jax.Array  # m, months of the contract from go-live
    contract_price: jax.Array  # Pc = mc P0 ($/Mtok) or hc = mc h0 ($/GPU-hour)
    usage: jax.Array  # uc, busy share of contracted capacity
    default_month: jax.Array  # D, +inf where the counterparty never defaults
    tax_rate: jax.Array  # x
    tax_months: jax.Array  # 12 L: months of tax depreciation from go-live
    debt_rate: jax.Array  # i = rd / 12, monthly
    tenor: jax.Array  # nd, months of level payments from go-live
    payment: jax.Array  # PMT
    balance_live: jax.Array  # Bal_g = db I (1 + i)^l


class ExtFlows(NamedTuple):
    """One month's lines for S systems: the base lines, and the extensions' (live, busy share, contract revenue)."""

    revenue: jax.Array
    tokens: jax.Array
    energy_kwh: jax.Array
    energy_usd: jax.Array
    opex: jax.Array
    cash_flow: jax.Array
    live: jax.Array  # L_t, 0 or 1
    busy: jax.Array  # B_t
    contract_revenue: jax.Array
    variable_energy_usd: jax.Array  # the part of energy_usd that scales with the busy share
    # Under a contract (None without): the contracted busy share c_t uc and its part of variable_energy_usd.
    contract_busy: jax.Array | None = None
    contract_variable_usd: jax.Array | None = None


class Finance(NamedTuple):
    """What the finance lines carry from month to month, (S, n) float64 (None where not traced)."""

    nol: jax.Array | None  # unlevered loss carried forward
    nol_levered: jax.Array | None
    balance: jax.Array | None  # loan balance after month t's payment


class FinanceMonth(NamedTuple):
    """One month's finance lines, (S, n) float64."""

    tax: jax.Array  # taxu_t
    tax_levered: jax.Array  # taxl_t
    interest: jax.Array  # H_t
    principal: jax.Array  # Prin_t
    free_cash_flow: jax.Array  # FCF_t = CF_t - taxu_t
    equity_flow: jax.Array  # EQ_t = CF_t - H_t - Prin_t - taxl_t


def _ramp(mp: MarketParams, age: jax.Array) -> jax.Array:
    return jnp.where(mp.ramp > 0, jnp.minimum(1.0, age / jnp.where(mp.ramp > 0, mp.ramp, 1.0)), 1.0)


def ext_month_flows(
    flags: Flags, mp: MarketParams, sp: SystemParams, xp: ExtParams, pl: Plant, mkt: MarketMonth, t: jax.Array
) -> ExtFlows:
    """The lines of month t for every system under the extensions (MODEL.md "Timing",
    "Selling GPU-hours", "Contracts"); each part is traced only where its flag is on."""
    dtype = mkt.price.dtype
    speedup = 1 + (sp.speedup_ceiling - 1) * (1 - jnp.exp(-t / sp.speedup_tau))
    capacity = pl.capacity * speedup  # K_t
    if flags.timing:
        live = (t > xp.go_live).astype(dtype)
        util = live * _ramp(mp, t - xp.go_live) * mkt.demand
    else:
        live = jnp.ones_like(pl.capacity * mkt.utilization)
        util = mkt.utilization
    if flags.contract:
        age = t - xp.go_live
        c = jnp.where((t > xp.go_live) & (age <= xp.term) & (t < xp.default_month), xp.share, 0.0).astype(dtype)
        busy = c * xp.usage + (1 - c) * util
    else:
        c, busy = None, util
    tokens = capacity * busy
    spot_price = sp.price_multiplier * mkt.price
    rev_tok = (
        capacity
        * 1e-6
        * (
            util * spot_price
            if c is None
            else sp.price_multiplier * c * xp.contract_price + (1 - c) * util * spot_price
        )
    )
    con_tok = 0.0 if c is None else capacity * 1e-6 * sp.price_multiplier * c * xp.contract_price
    revenue, contract_rev = rev_tok, con_tok
    if flags.gpu_hours:
        hours = sp.units * sp.gpus * sp.availability * MONTH_HOURS
        h_t = xp.rental0 * jnp.exp(t / 12 * jnp.log1p(-xp.rental_decline)) * mkt.rental
        con_h = 0.0 if c is None else sp.price_multiplier * hours * c * xp.contract_price
        rev_h = sp.price_multiplier * hours * (1.0 if c is None else 1 - c) * util * h_t + con_h
        revenue = jnp.where(xp.gpu_hours, rev_h, rev_tok)
        contract_rev = jnp.where(xp.gpu_hours, con_h, con_tok)
    energy_kwh = live * pl.facility_kwh * (sp.idle + (1 - sp.idle) * busy)
    energy_usd = energy_kwh * mkt.electricity
    variable = live * pl.facility_kwh * (1 - sp.idle) * busy * mkt.electricity
    opex = energy_usd + live * (pl.colocation + pl.maintenance + pl.license)
    contract_rev = jnp.broadcast_to(jnp.asarray(contract_rev, dtype), revenue.shape)
    con_busy = con_var = None
    if c is not None:
        con_busy = c * xp.usage
        con_var = live * pl.facility_kwh * (1 - sp.idle) * con_busy * mkt.electricity
    return ExtFlows(
        revenue,
        tokens,
        energy_kwh,
        energy_usd,
        opex,
        revenue - opex,
        live,
        busy,
        contract_rev,
        variable,
        con_busy,
        con_var,
    )


def finance_init(flags: Flags, xp: ExtParams, shape: tuple[int, int]) -> Finance:
    z = jnp.zeros(shape, SUM)
    balance = jnp.broadcast_to(xp.balance_live, shape).astype(SUM) if flags.debt else None
    return Finance(z if flags.tax else None, z if flags.tax and flags.debt else None, balance)


def _tax(rate: jax.Array, income: jax.Array, nol: jax.Array) -> tuple[jax.Array, jax.Array]:
    """tax_t = x max(0, Y_t - NOL_{t-1}), NOL_t = max(0, NOL_{t-1} - Y_t)."""
    return rate * jnp.maximum(0.0, income - nol), jnp.maximum(0.0, nol - income)


def finance_step(
    flags: Flags,
    xp: ExtParams,
    fin: Finance,
    cash_flow: jax.Array,
    t: jax.Array,
    months: int,
    capex: jax.Array,
    sale: jax.Array,
) -> tuple[Finance, FinanceMonth]:
    """Month t's tax, interest and principal (MODEL.md "Income tax", "Debt").

    cash_flow: CF_t (S, n) float64; capex: I; sale: V - Bx, the gain on the sale at T (float64)."""
    t = t.astype(SUM)
    zero = jnp.zeros_like(cash_flow)
    interest = principal = zero
    balance = fin.balance
    if flags.debt:
        active = (t > xp.go_live) & (t <= xp.go_live + xp.tenor)
        interest = jnp.where(active, xp.debt_rate * balance, 0.0)
        principal = jnp.where(active, xp.payment - interest, 0.0)
        balance = balance - principal
    tax = tax_l = zero
    nol, nol_l = fin.nol, fin.nol_levered
    if flags.tax:
        rate = xp.tax_rate.astype(SUM)
        dep = jnp.where((t > xp.go_live) & (t <= xp.go_live + xp.tax_months), capex / xp.tax_months, 0.0)
        income = cash_flow - dep + jnp.where(t == months, sale, 0.0)
        tax, nol = _tax(rate, income, nol)
        if flags.debt:
            tax_l, nol_l = _tax(rate, income - interest, nol_l)
        else:
            tax_l = tax
    month = FinanceMonth(tax, tax_l, interest, principal, cash_flow - tax, cash_flow - interest - principal - tax_l)
    return Finance(nol, nol_l, balance), month


def tax_basis(xp: ExtParams, capex: jax.Array, months: int) -> jax.Array:
    """Bx = I - sum_t Dx_t: the tax basis left at T (Dx_t = I / (12 L) for g < t <= g + 12 L)."""
    dep_end = jnp.minimum(float(months), jnp.floor(xp.go_live + xp.tax_months))
    counted = jnp.maximum(0.0, dep_end - xp.go_live)
    return capex - counted * (capex / xp.tax_months)


def loan(
    share: jax.Array, annual_rate: jax.Array, tenor: jax.Array, lead: jax.Array, capex: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Monthly rate i, Bal_g = db I (1 + i)^l (interest capitalized in the lead time) and the
    level payment PMT = Bal_g i / (1 - (1 + i)^-nd) (Bal_g / nd at i = 0), float64."""
    i = annual_rate.astype(SUM) / 12
    bal = share.astype(SUM) * capex * (1 + i) ** lead
    safe = jnp.where(i > 0, i, 1.0)
    pmt = jnp.where(i > 0, bal * safe / (1 - (1 + safe) ** -tenor), bal / tenor)
    return i, bal, pmt


def default_month(w: jax.Array, pd: jax.Array, months: int) -> jax.Array:
    """D = ceil(12 ln(1 - w) / ln(1 - pd)) from a uniform w in (0, 1); +inf where pd = 0 or D > T."""
    w, pd = w.astype(SUM), pd.astype(SUM)
    d = jnp.ceil(12 * jnp.log1p(-w) / jnp.log1p(-jnp.where(pd > 0, pd, 0.5)))
    return jnp.where((pd > 0) & (d <= months), d, jnp.inf)

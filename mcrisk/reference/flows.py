"""One system's monthly lines in the independent float64 reference model.

MODEL.md "One system in month t" with the extensions of "How operators earn and
finance": timing (purchase, lead time, go-live), GPU-hour rental, take-or-pay contracts
with counterparty default, hardware generations, tax and debt. Monthly arrays are
``(n, T)`` (column ``j`` is month ``t = j + 1``), static ones ``(n,)``.

With every extension input at its default each base line is computed by the base
model's own arithmetic: the extensions enter only through selections (``np.where`` on the
live indicator), exact factors 1.0 and exact zeros added, so base results are unchanged
bit for bit.
"""

from __future__ import annotations

import numpy as np

from .finance import (
    debt_schedule,
    income_tax,
    tax_depreciation,
    taxable_income,
)
from .inputs import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    col,
    round_half_up,
    row,
)
from .market import base_market, log_price_walk, months_row, ramp


def discount_factors(annual_rate: np.ndarray, n: int, T: int) -> np.ndarray:
    """``DF_t = (1 + r_m)^-t`` with ``r_m = (1 + r)^(1/12) - 1``, (n, T)."""
    t = months_row(T)
    r_m = (1.0 + annual_rate) ** (1.0 / 12.0) - 1.0
    if n > 1 and np.all(r_m == r_m[0]):  # one rate for all: compute the row once
        return np.broadcast_to((1.0 + r_m[:1])[:, None] ** (-t), (n, T))
    return (1.0 + r_m)[:, None] ** (-t)


def discount_at(annual_rate: np.ndarray, month: np.ndarray) -> np.ndarray:
    """``(1 + r_m)^-p`` for a month p per row, (n,); exactly 1 at p = 0."""
    r_m = (1.0 + annual_rate) ** (1.0 / 12.0) - 1.0
    return (1.0 + r_m) ** (-month)


def live_only(x: np.ndarray, live: np.ndarray) -> np.ndarray:
    """``x`` in live months and 0 elsewhere, (n, T), in ``x``'s own memory layout.

    The layout decides the order in which a sum over months adds (NumPy adds a
    contiguous row pairwise, a strided one in sequence), so keeping it keeps every sum
    of a line that is live throughout bit for bit the base model's.
    """
    out = np.array(np.broadcast_to(x, live.shape), order="K")
    out[~live] = 0.0
    return out


def timing(sy, n: int, T: int) -> dict[str, np.ndarray]:
    """Purchase month p, lead l (rounded half up, clipped to [0, T]), go-live g = p + l, live L_t = t > g, age."""
    p = row(sy["purchase_month"], n)
    lead = np.clip(round_half_up(row(sy["lead_months"], n)), 0.0, float(T))
    g = p + lead
    t = months_row(T)
    return {"purchase_month": p, "lead_months": lead, "go_live": g, "live": t > g[:, None], "age": t - g[:, None]}


def default_month(pd: np.ndarray, uniform, n: int) -> np.ndarray:
    """``D = ceil(12 ln(1 - w) / ln(1 - pd))``, +inf where pd = 0, (n,)."""
    if uniform is None:
        if np.any(pd > 0.0):
            raise ValueError("default_uniform is required where contract.annual_default_probability > 0")
        return np.full(n, np.inf)
    w = row(uniform, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pd == 0.0, np.inf, np.ceil(12.0 * np.log1p(-w) / np.log1p(-pd)))


def contract_share(sy, n: int, T: int, age: np.ndarray, uniform) -> tuple[np.ndarray, np.ndarray]:
    """Active contracted share ``c_t = k if 1 <= a_t <= m and t < D else 0``, (n, T), and D, (n,)."""
    D = default_month(row(sy["contract.annual_default_probability"], n), uniform, n)
    active = (age >= 1.0) & (age <= col(sy["contract.term_months"], n)) & (months_row(T) < D[:, None])
    return np.where(active, col(sy["contract.share"], n), 0.0), D


def revenue_lines(mk, sy, n, T, market, capacity, spot_util, c, eps_rental) -> dict[str, np.ndarray]:
    """Spot and contract revenue, $ (n, T), and the rental price path h_t, $/GPU-hour (NaN without h0)."""
    q = col(sy["price_multiplier"], n)
    mc = col(sy["contract.price_multiple"], n)
    h0 = col(sy.get("rental.initial_usd_per_gpu_hour", np.nan), n)
    if "rental.initial_usd_per_gpu_hour" in sy:
        dh, sh = sy["rental.annual_decline"], mk["market.rental.volatility"]
        walk = log_price_walk(n, T, dh, sh, eps_rental, "eps_rental")
        rental = h0 * walk * (1.0 - col(mk["market.succession.rental_step"], n)) ** market["generations"]
    else:
        rental = np.full((n, T), np.nan)
    if sy["revenue_mode"] == "gpu_hours":
        hours = col(sy["units"], n) * col(sy["gpus_per_unit"], n) * col(sy["availability"], n) * HOURS_PER_MONTH
        spot = (hours * spot_util) * q * rental
        contract = (hours * c) * q * (mc * h0)
    else:
        # The base revenue is N_t * (q / 1e6) * P_t; with c_t = 0 the spot line is exactly that.
        spot = (capacity * spot_util) * (q / 1e6) * market["price"]
        contract = (capacity * c) * (q / 1e6) * (mc * col(mk["market.token_price.initial_usd_per_mtok"], n))
    return {"spot_revenue": spot, "contract_revenue": contract, "revenue": spot + contract, "rental_price": rental}


def operating_lines(mk, sy, n, T, market, live, busy, contract_busy) -> dict[str, np.ndarray]:
    """Energy (kWh and $), its idle and contract-busy parts, the three fixed costs and opex, $ (n, T).

    ``busy`` is B_t, ``contract_busy`` its contracted part ``c_t uc``.
    """
    units, W, C, G = (col(sy[k], n) for k in ("units", "it_power_kw", "capex_usd", "gpus_per_unit"))
    idle = col(sy["idle_power_fraction"], n)
    E = market["electricity"]
    site = units * W * col(mk["facility.pue"], n) * HOURS_PER_MONTH  # kWh a month at full load
    energy_kwh = live_only(site * (idle + (1.0 - idle) * busy), live)  # Q_t
    colo = units * W * col(mk["facility.colocation_usd_per_kw_month"], n)
    mnt = units * C * col(sy["maintenance_fraction_per_year"], n) / 12.0
    lic = units * G * col(sy["license_usd_per_gpu_year"], n) / 12.0
    energy_usd = energy_kwh * E
    return {
        "energy_kwh": energy_kwh,
        "energy_usd": energy_usd,
        "idle_energy_usd": live_only(site * idle * E, live),  # Q_t e_t with nothing busy
        "contract_energy_usd": live_only(site * (1.0 - idle) * contract_busy, live) * E,
        "colocation_usd": live_only(colo, live),
        "maintenance_usd": live_only(mnt, live),
        "license_usd": live_only(lic, live),
        "fixed_usd_per_month": (colo + mnt + lic)[:, 0],  # colocation, maintenance and licences of a live month
        "opex": energy_usd + live_only(colo + mnt + lic, live),  # O_t
    }


def finance_lines(mk, sy, n, T, when, capex, residual, cash_flow) -> dict[str, np.ndarray]:
    """Tax (unlevered and levered), debt service and the project and equity flows, $ (n, T) and (n,)."""
    dx, basis = tax_depreciation(capex, row(sy["depreciation_years"], n), when["go_live"], T)
    db = row(mk["finance.debt.share"], n)
    debt = debt_schedule(
        db * capex,
        row(mk["finance.debt.annual_rate"], n),
        row(mk["finance.debt.tenor_months"], n),
        when["purchase_month"],
        when["go_live"],
        T,
    )
    H, prin = debt["interest"], debt["principal"]
    x = row(mk["finance.tax_rate"], n)
    tax_u = income_tax(taxable_income(cash_flow, dx, 0.0, residual, basis), x)
    tax_l = income_tax(taxable_income(cash_flow, dx, H, residual, basis), x)
    return {
        "tax_depreciation": dx,
        "tax_basis": basis,
        "tax_unlevered": tax_u,
        "tax_levered": tax_l,
        "free_cash_flow": cash_flow - tax_u,  # FCF_t
        "interest": H,
        "principal": prin,
        "debt_service": H + prin,  # DS_t, the balloon excluded
        "equity_flow": cash_flow - H - prin - tax_l,  # EQ_t
        "equity_outlay": (1.0 - db) * capex,  # paid at p
        "equity_residual": residual - debt["balloon"],  # V - Bal_T, at T
        "balloon": debt["balloon"],
        "debt_payment": debt["payment"],
        "debt_share": db,
    }


def flows(mk, sy, n: int, T: int, eps_price, eps_elec, eps_util, eps_rental, default_uniform) -> dict[str, np.ndarray]:
    """Every monthly line and static quantity of one system; see ``mcrisk.reference.system_flows``."""
    market = base_market(mk, n, T, eps_price, eps_elec, eps_util)
    when = timing(sy, n, T)
    live = when["live"]
    t = months_row(T)
    ramp_on_age = ramp(col(mk["market.demand.ramp_months"], n), when["age"])
    U = live_only(ramp_on_age * market["demand"], live)  # spot share sold, U_t
    c, D = contract_share(sy, n, T, when["age"], default_uniform)
    uc = col(sy["contract.usage"], n)
    spot_util = (1.0 - c) * U
    busy = c * uc + spot_util  # B_t; exactly U_t where c_t = 0

    ceil, tau = col(sy["software_speedup.ceiling"], n), col(sy["software_speedup.time_constant_months"], n)
    speedup = 1.0 + (ceil - 1.0) * (1.0 - np.exp(-t / tau))  # S_t on calendar months
    units, G = col(sy["units"], n), col(sy["gpus_per_unit"], n)
    theta, eta, A = (col(sy[k], n) for k in ("throughput_tokens_per_s_per_gpu", "efficiency", "availability"))
    capacity = units * G * theta * eta * A * SECONDS_PER_MONTH * speedup  # K_t
    rev = revenue_lines(mk, sy, n, T, market, capacity, spot_util, c, eps_rental)
    ops = operating_lines(mk, sy, n, T, market, live, busy, c * uc)
    cash_flow = rev["revenue"] - ops["opex"]  # CF_t

    capex = row(units[:, 0] * col(sy["capex_usd"], n)[:, 0], n)
    rho = row(sy["residual_value_fraction"], n)
    residual = rho * capex
    L = row(sy["depreciation_years"], n)
    with np.errstate(divide="ignore", invalid="ignore"):
        depreciation = capex * (1.0 - rho) * np.minimum(1.0, np.maximum(0.0, T - when["go_live"]) / (12.0 * L))
    r, re = row(mk["finance.discount_rate"], n), row(mk["finance.cost_of_equity"], n)
    DF = discount_factors(r, n, T)
    return {
        **market,
        **when,
        **rev,
        **ops,
        **finance_lines(mk, sy, n, T, when, capex, residual, cash_flow),
        "live": live.astype(np.float64),
        "utilization": U,
        "contract_share": c,
        "contract_busy": c * uc,
        "spot_utilization": spot_util,
        "busy": busy,
        "speedup": speedup,
        "capacity_tokens": capacity,
        "tokens": capacity * busy,  # N_t
        "cash_flow": cash_flow,
        "discount_factor": DF,
        "equity_discount_factor": DF if np.array_equal(re, r) else discount_factors(re, n, T),
        "purchase_discount": discount_at(r, when["purchase_month"]),  # DF_p
        "equity_purchase_discount": discount_at(re, when["purchase_month"]),
        "default_month": D,
        "capex": capex,
        "residual": residual,
        "depreciation": depreciation,
        "initial_price": row(mk["market.token_price.initial_usd_per_mtok"], n),
        "initial_rental": row(sy.get("rental.initial_usd_per_gpu_hour", np.nan), n),
        "revenue_mode": sy["revenue_mode"],
        "units": row(units[:, 0], n),
        "gpus_per_unit": row(G[:, 0], n),
        "it_power_kw": row(sy["it_power_kw"], n),
        "discount_rate": r,
        "cost_of_equity": re,
    }

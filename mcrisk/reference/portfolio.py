"""The portfolio row of the independent float64 reference model: the fleet as one investment.

MODEL.md "The portfolio row". The fleet's monthly flows are the sums over systems, in
the order the systems are given; its metrics are sums of the systems' values, ratios of
those sums, or computed on the summed monthly flows (IRR, payback, minimum DSCR).
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from .finance import min_dscr, payback
from .irr import fold_outlays, irr_reference
from .metrics import METRICS

# Sums of the systems' own values.
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

# Per-system columns with no fleet meaning. `breakeven_utilization` is not named by the
# contract's portfolio section; scaling one system's spot path has no fleet counterpart.
NOT_DEFINED = (
    "breakeven_price_usd_per_mtok",
    "breakeven_rental_usd_per_gpu_hour",
    "revenue_per_unit_year_usd",
    "live_months",
    "contract_default_month",
    "breakeven_utilization",
)


def _total(values) -> np.ndarray:
    """Sum over systems, first to last (arrays broadcast)."""
    return reduce(np.add, values)


def _fleet_ratios(fs, out) -> None:
    """Ratios of the summed values and of the summed monthly lines."""
    rev, I = out["revenue_usd"], out["capex_usd"]
    out["operating_margin"] = np.where(rev == 0.0, np.nan, out["operating_profit_usd"] / rev)
    out["roi_multiple"] = rev / I
    out["cost_per_mtok_usd"] = (out["depreciation_usd"] + out["opex_usd"]) / (out["tokens"] / 1e6)
    out["energy_j_per_token"] = out["energy_kwh"] * 3.6e6 / out["tokens"]
    V = _total([f["residual"] for f in fs])
    fcf = _total([f["free_cash_flow"] for f in fs])
    out["net_roi"] = (fcf.sum(axis=1) + V - I) / I
    DF = fs[0]["discount_factor"]  # the discount rate is market-wide
    capex_pv = _total([f["capex"] * f["purchase_discount"] for f in fs])
    cost_pv = capex_pv - V * DF[:, -1] + (_total([f["opex"] for f in fs]) * DF).sum(axis=1)
    out["levelized_cost_per_mtok_usd"] = cost_pv / ((_total([f["tokens"] for f in fs]) * DF).sum(axis=1) / 1e6)
    live = [f["live"].sum(axis=1) for f in fs]
    gpus = [f["units"] * f["gpus_per_unit"] for f in fs]
    mw_years = _total([f["units"] * f["it_power_kw"] / 1000.0 * lv / 12.0 for f, lv in zip(fs, live)])
    out["revenue_per_mw_year_usd"] = rev / mw_years
    gpu_live = _total([g * lv for g, lv in zip(gpus, live)])
    out["revenue_per_gpu_hour_usd"] = rev / (730.5 * gpu_live)
    first = [(f["live"] > 0) & (f["age"] <= 12) for f in fs]
    first_rev = _total([np.where(m, f["revenue"], 0.0).sum(axis=1) for m, f in zip(first, fs)])
    out["first_year_revenue_per_gpu_hour_usd"] = first_rev / (
        730.5 * _total([g * m.sum(axis=1) for g, m in zip(gpus, first)])
    )
    out["mean_utilization"] = _total([g * f["busy"].sum(axis=1) for g, f in zip(gpus, fs)]) / gpu_live


def _fleet_flows(fs, out, irr_method: str) -> None:
    """IRR, equity IRR, payback and minimum DSCR on the summed monthly flows, each outlay in its own month."""
    V = _total([f["residual"] for f in fs])
    fcf = _total([f["free_cash_flow"] for f in fs])
    capex0, cf = fold_outlays(fcf, [(f["capex"], f["purchase_month"]) for f in fs])
    out["irr"] = irr_reference(capex0, cf, V, method=irr_method)
    eq = _total([f["equity_flow"] for f in fs])
    equity0, eq = fold_outlays(eq, [(f["equity_outlay"], f["purchase_month"]) for f in fs])
    irr = irr_reference(equity0, eq, _total([f["equity_residual"] for f in fs]), method=irr_method)
    out["equity_irr"] = np.where(fs[0]["debt_share"] >= 1.0, np.nan, irr)  # the debt share is market-wide
    out["payback_months"] = payback(out["capex_usd"], fcf)
    cover = _total([f["cash_flow"] - f["tax_levered"] for f in fs])
    out["min_dscr"] = min_dscr(cover, _total([f["debt_service"] for f in fs]))


def portfolio_from(fs, per_system, irr_method: str = "auto") -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` for the fleet, each (n,): ``fs`` the systems' lines, ``per_system`` their metrics."""
    n = int(np.broadcast_shapes(*(np.shape(m["capex_usd"]) for m in per_system))[0])
    fs = [
        {
            k: (np.broadcast_to(v, (n,) + np.shape(v)[1:]) if isinstance(v, np.ndarray) and v.ndim else v)
            for k, v in f.items()
        }
        for f in fs
    ]
    out = {k: _total([m[k] for m in per_system]) for k in SUMMED}
    with np.errstate(divide="ignore", invalid="ignore"):
        _fleet_ratios(fs, out)
        _fleet_flows(fs, out, irr_method)
    for k in NOT_DEFINED:
        out[k] = np.full(n, np.nan)
    return {k: np.array(np.broadcast_to(np.asarray(out[k], dtype=np.float64), (n,))) for k in METRICS}

"""The metric columns of one system, from its monthly lines, in the independent float64 reference model.

MODEL.md "Metrics (one row per scenario and system)" and "Metrics (changed or new)".
Every metric is ``(n,)`` float64; ratios follow IEEE arithmetic.
"""

from __future__ import annotations

import numpy as np

from .finance import min_dscr, payback
from .flows import live_only
from .irr import irr_reference

# The output columns of the model contract, in order: the base model's, then the extensions'.
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
    "breakeven_rental_usd_per_gpu_hour",
    "revenue_per_gpu_hour_usd",
    "first_year_revenue_per_gpu_hour_usd",
    "live_months",
    "contract_revenue_usd",
    "contract_default_month",
    "tax_usd",
    "equity_tax_usd",
    "interest_usd",
    "equity_npv_usd",
    "equity_irr",
    "min_dscr",
)


def accounting(f) -> dict[str, np.ndarray]:
    """Sums over the horizon and the accounting ratios: capex through cost and energy per token."""
    out = {"capex_usd": f["capex"]}
    for name, line in (
        ("revenue_usd", "revenue"),
        ("tokens", "tokens"),
        ("energy_kwh", "energy_kwh"),
        ("energy_usd", "energy_usd"),
        ("colocation_usd", "colocation_usd"),
        ("maintenance_usd", "maintenance_usd"),
        ("license_usd", "license_usd"),
        ("opex_usd", "opex"),
    ):
        out[name] = f[line].sum(axis=1)
    out["depreciation_usd"] = f["depreciation"]
    ratios(out)
    return out


def ratios(out: dict[str, np.ndarray]) -> None:
    """EBITDA, operating profit and the ratios of sums (margin, ROI multiple, cost and energy per token)."""
    out["ebitda_usd"] = out["revenue_usd"] - out["opex_usd"]
    out["operating_profit_usd"] = out["ebitda_usd"] - out["depreciation_usd"]
    rev = out["revenue_usd"]
    out["operating_margin"] = np.where(rev == 0.0, np.nan, out["operating_profit_usd"] / rev)
    out["roi_multiple"] = out["revenue_usd"] / out["capex_usd"]
    out["cost_per_mtok_usd"] = (out["depreciation_usd"] + out["opex_usd"]) / (out["tokens"] / 1e6)
    out["energy_j_per_token"] = out["energy_kwh"] * 3.6e6 / out["tokens"]


def valuation(f, irr_method: str) -> dict[str, np.ndarray]:
    """NPV, IRR, net ROI and payback of the project (after tax, unlevered), and its pre-tax cost PV."""
    I, V, DF = f["capex"], f["residual"], f["discount_factor"]
    DF_T, DF_p, p = DF[:, -1], f["purchase_discount"], f["purchase_month"]
    fcf = f["free_cash_flow"]
    return {
        "npv_usd": -I * DF_p + (fcf * DF).sum(axis=1) + V * DF_T,
        "irr": irr_reference(I, fcf, V, outlay_month=p, method=irr_method),
        "net_roi": (fcf.sum(axis=1) + V - I) / I,
        "payback_months": payback(I, fcf),
        "npv_pre_tax": -I * DF_p + (f["cash_flow"] * DF).sum(axis=1) + V * DF_T,
        "cost_pv": I * DF_p - V * DF_T + (f["opex"] * DF).sum(axis=1),  # I DF_p - V DF_T + sum O_t DF_t
    }


def breakeven_utilization(f, npv_pre_tax: np.ndarray, live_months: np.ndarray) -> np.ndarray:
    """Mean busy share over live months at which the pre-tax NPV is 0, scaling the spot utilization path.

    Spot revenue and the spot part of the energy bill are proportional to the spot share
    ``(1 - c_t) U_t``; everything else (capex, residual, fixed costs, idle energy, the
    contract's revenue and energy) is not. So NPV(x) is affine in the factor x: solve
    from NPV at x = 0 and x = 1. 0 where NPV >= 0 with nothing sold on the spot market,
    +inf where spot sales do not pay.
    """
    I, V, DF = f["capex"], f["residual"], f["discount_factor"]
    contract_margin = f["contract_revenue"] - f["contract_energy_usd"]
    # Idle energy plus the fixed costs, (n, T), is discounted in one expression, as in the base
    # model: NumPy then reuses the temporary for the product, whose memory layout decides the
    # order in which the sum over months adds, so the base model's bits are kept.
    unsold_pv = (live_only(f["idle_energy_usd"] + f["fixed_usd_per_month"][:, None], f["live"] > 0.0) * DF).sum(axis=1)
    npv_none = -I * f["purchase_discount"] + V * DF[:, -1] - unsold_pv + (contract_margin * DF).sum(axis=1)
    slope = npv_pre_tax - npv_none
    x_star = np.where(slope > 0, np.maximum(-npv_none / slope, 0.0), np.inf)
    spot_mean = f["spot_utilization"].sum(axis=1) / live_months
    return x_star * spot_mean + f["contract_busy"].sum(axis=1) / live_months


def equity(f, project_irr: np.ndarray, irr_method: str) -> dict[str, np.ndarray]:
    """Equity NPV at the cost of equity, equity IRR (NaN with nothing invested) and the minimum DSCR."""
    DFe = f["equity_discount_factor"]
    outlay, eq, tail = f["equity_outlay"], f["equity_flow"], f["equity_residual"]
    # Without debt or tax the equity flows are the project's, bit for bit: reuse its IRR there.
    own = ~((outlay == f["capex"]) & (tail == f["residual"]) & (eq == f["free_cash_flow"]).all(axis=1))
    irr = project_irr.copy()
    if own.any():
        p = np.broadcast_to(f["purchase_month"], own.shape)[own]
        irr[own] = irr_reference(outlay[own], eq[own], tail[own], outlay_month=p, method=irr_method)
    return {
        "equity_npv_usd": -outlay * f["equity_purchase_discount"] + (eq * DFe).sum(axis=1) + tail * DFe[:, -1],
        "equity_irr": np.where(f["debt_share"] >= 1.0, np.nan, irr),
        "min_dscr": min_dscr(f["cash_flow"] - f["tax_levered"], f["debt_service"]),
    }


def system_metrics_from_flows(f, irr_method: str = "auto") -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` from one system's lines (``reference_flows.flows``), each (n,)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = accounting(f)
        val = valuation(f, irr_method)
        out.update((k, val[k]) for k in ("npv_usd", "irr", "net_roi", "payback_months"))
        DF = f["discount_factor"]
        live = f["live"].sum(axis=1)
        tokens_mode = f["revenue_mode"] == "tokens"
        pv_revenue = (f["revenue"] * DF).sum(axis=1)
        out["levelized_cost_per_mtok_usd"] = val["cost_pv"] / ((f["tokens"] * DF).sum(axis=1) / 1e6)
        nan = np.full_like(live, np.nan)
        # Every revenue line is proportional to the initial price of the system's mode (a contract's
        # price is a multiple of it), so scaling that price to the break-even one zeroes the pre-tax NPV.
        initial = f["initial_price"] if tokens_mode else f["initial_rental"]
        breakeven = initial * val["cost_pv"] / pv_revenue
        out["breakeven_price_usd_per_mtok"] = breakeven if tokens_mode else nan
        out["breakeven_rental_usd_per_gpu_hour"] = nan if tokens_mode else breakeven
        out["mean_utilization"] = f["busy"].sum(axis=1) / live
        out["breakeven_utilization"] = breakeven_utilization(f, val["npv_pre_tax"], live)
        rev, units = out["revenue_usd"], f["units"]
        out["revenue_per_unit_year_usd"] = rev / (units * live / 12.0)
        out["revenue_per_mw_year_usd"] = rev / (units * f["it_power_kw"] / 1000.0 * live / 12.0)
        out["revenue_per_gpu_hour_usd"] = rev / (units * f["gpus_per_unit"] * 730.5 * live)
        first = (f["live"] > 0) & (f["age"] <= 12)  # the first live year's months
        first_hours = units * f["gpus_per_unit"] * 730.5 * first.sum(axis=1)
        out["first_year_revenue_per_gpu_hour_usd"] = np.where(first, f["revenue"], 0.0).sum(axis=1) / first_hours
        out["live_months"] = live
        out["contract_revenue_usd"] = f["contract_revenue"].sum(axis=1)
        T = DF.shape[1]
        out["contract_default_month"] = np.where(f["default_month"] <= T, f["default_month"], np.inf)
        out["tax_usd"] = f["tax_unlevered"].sum(axis=1)
        out["equity_tax_usd"] = f["tax_levered"].sum(axis=1)
        out["interest_usd"] = f["interest"].sum(axis=1)
        out.update(equity(f, out["irr"], irr_method))
    return {k: np.asarray(out[k], dtype=np.float64) for k in METRICS}

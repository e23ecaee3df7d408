"""Independent float64 NumPy implementation of the economics model.

This module restates the model of the project's contract (``MODEL.md``) in plain,
vectorised NumPy, written from the contract alone. It is used to check the JAX
engine scenario by scenario, and as the "plain vectorised NumPy" baseline of the
benchmarks. Everything is float64; loops run over months (and, for the final
IRR refinement with ``method="brentq"``, over rows), never over scenarios in the
hot paths.

Public API
----------
``market_paths(market, months, eps_price=None, eps_elec=None, eps_util=None)``
    Token price, electricity price and utilization paths, each ``(n, T)``.
``system_flows(market, system, months, eps_...)``
    The monthly cash-flow lines of one system, each ``(n, T)``, plus its static
    quantities (capex, residual, discount factors).
``system_metrics(market, system, months, eps_...)``
    Every metric of ``METRICS``, each ``(n,)`` float64.
``irr_reference(capex, cash_flows, residual)``
    Annual IRR per the contract's root rule.
``npv_reference(capex, cash_flows, residual, annual_rate)``
    NPV at an annual rate (monthly discounting), the function whose root the IRR is.

Inputs are flat mappings keyed by study path (``MARKET_KEYS``) or by the
system's own field path (``SYSTEM_KEYS``; a ``system.`` prefix is accepted too).
Each value is a scalar or an array of shape ``(n,)``. Optional inputs that are
missing take the study defaults of STUDY.md; missing required inputs raise
``KeyError``. Keys that are not model inputs are ignored, so a whole result row
may be passed as both ``market`` and ``system``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from .reference_irr import irr_reference, npv_reference

__all__ = [
    "HOURS_PER_MONTH",
    "SECONDS_PER_MONTH",
    "MARKET_KEYS",
    "SYSTEM_KEYS",
    "METRICS",
    "MARKET_DEFAULTS",
    "SYSTEM_DEFAULTS",
    "market_paths",
    "system_flows",
    "system_metrics",
    "npv_reference",
    "irr_reference",
]

HOURS_PER_MONTH = 730.5  # 8766 h / 12
SECONDS_PER_MONTH = 2_629_800.0  # 730.5 * 3600

MARKET_KEYS = (
    "market.token_price.initial_usd_per_mtok",
    "market.token_price.annual_decline",
    "market.token_price.volatility",
    "market.demand.utilization",
    "market.demand.ramp_months",
    "market.demand.persistence",
    "market.demand.volatility",
    "market.electricity.usd_per_kwh",
    "market.electricity.volatility",
    "market.electricity.mean_reversion",
    "facility.pue",
    "facility.colocation_usd_per_kw_month",
    "finance.discount_rate",
)

SYSTEM_KEYS = (
    "units",
    "gpus_per_unit",
    "capex_usd",
    "it_power_kw",
    "idle_power_fraction",
    "throughput_tokens_per_s_per_gpu",
    "efficiency",
    "availability",
    "price_multiplier",
    "software_speedup.ceiling",
    "software_speedup.time_constant_months",
    "maintenance_fraction_per_year",
    "license_usd_per_gpu_year",
    "residual_value_fraction",
    "depreciation_years",
)

# The output columns are the model's contract (MODEL.md); the formulas below are independent.
from .model.metrics import BASE_METRICS as METRICS  # noqa: E402

# Defaults of the optional inputs (STUDY.md). Required inputs have no entry.
MARKET_DEFAULTS = {
    "market.token_price.annual_decline": 0.0,
    "market.token_price.volatility": 0.0,
    "market.demand.ramp_months": 0.0,
    "market.demand.persistence": 0.8,
    "market.demand.volatility": 0.0,
    "market.electricity.volatility": 0.0,
    "market.electricity.mean_reversion": 1.0,
    "facility.pue": 1.3,
    "facility.colocation_usd_per_kw_month": 0.0,
    "finance.discount_rate": 0.10,
}

SYSTEM_DEFAULTS = {
    "units": 1.0,
    "idle_power_fraction": 0.3,
    "efficiency": 1.0,
    "availability": 1.0,
    "price_multiplier": 1.0,
    "software_speedup.ceiling": 1.0,
    "software_speedup.time_constant_months": 6.0,
    "maintenance_fraction_per_year": 0.0,
    "license_usd_per_gpu_year": 0.0,
    "residual_value_fraction": 0.0,
    "depreciation_years": 4.0,
}


# --------------------------------------------------------------------------- #
# input handling
# --------------------------------------------------------------------------- #
def _as_vector(value: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or an array of shape (n,), got shape {arr.shape}")
    return arr


def _read(given: Mapping[str, ArrayLike], keys, defaults, kind: str, alias: str = "") -> dict[str, np.ndarray]:
    """Each key's value as a float64 vector (or its default); `alias` is an accepted key prefix."""
    out = {}
    for key in keys:
        for name in (key, alias + key) if alias else (key,):
            if name in given:
                out[key] = _as_vector(given[name], key)
                break
        else:
            if key not in defaults:
                raise KeyError(f"{kind} input {key!r} is required")
            out[key] = np.float64(defaults[key])
    return out


def _read_market(market: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    return _read(market, MARKET_KEYS, MARKET_DEFAULTS, "market")


def _read_system(system: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    return _read(system, SYSTEM_KEYS, SYSTEM_DEFAULTS, "system", alias="system.")


def _scenario_count(arrays, shocks) -> int:
    shapes = [np.shape(a) for a in arrays]
    for eps in shocks:
        if eps is not None:
            shapes.append((np.shape(eps)[0],))
    shape = np.broadcast_shapes(*shapes) if shapes else ()
    return int(shape[0]) if shape else 1


def _shock(eps, n: int, months: int, name: str) -> np.ndarray:
    if eps is None:
        return np.zeros((n, months))
    arr = np.asarray(eps, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != months or arr.shape[0] not in (1, n):
        raise ValueError(f"{name}: expected shape ({n}, {months}), got {arr.shape}")
    return np.broadcast_to(arr, (n, months))


def _col(x: np.ndarray, n: int) -> np.ndarray:
    """A static input as an (n, 1) column, ready to broadcast against (n, T)."""
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))[:, None]


def _row(x: np.ndarray, n: int) -> np.ndarray:
    return np.array(np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)))


def _months(months: int) -> int:
    T = int(months)
    if T != months or T < 1:
        raise ValueError(f"months must be an integer >= 1, got {months!r}")
    return T


# --------------------------------------------------------------------------- #
# market paths
# --------------------------------------------------------------------------- #
def _market_paths(mk: dict[str, np.ndarray], n: int, T: int, eps_price, eps_elec, eps_util):
    t = np.arange(1, T + 1, dtype=np.float64)[None, :]  # (1, T)

    # Token price: log drift ln(1-d) per year, minus the variance term that makes
    # E[P_t] = P0 (1-d)^(t/12); shocks accumulate as a random walk in log price.
    p0 = _col(mk["market.token_price.initial_usd_per_mtok"], n)
    d = _col(mk["market.token_price.annual_decline"], n)
    sp = _col(mk["market.token_price.volatility"], n)
    eps_p = _shock(eps_price, n, T, "eps_price")
    walk = np.cumsum(eps_p, axis=1)
    price = p0 * np.exp((t / 12.0) * np.log1p(-d) - sp**2 * t / 24.0 + sp * np.sqrt(1.0 / 12.0) * walk)

    # Electricity: log deviation y mean-reverts to 0 at rate k per year.
    # (Loops over months run on month-major (T, n) copies so each step reads and
    # writes contiguous memory; the results are transposed back to (n, T).)
    e0 = _row(mk["market.electricity.usd_per_kwh"], n)
    se = _row(mk["market.electricity.volatility"], n)
    k = _row(mk["market.electricity.mean_reversion"], n)
    eps_e = np.ascontiguousarray(_shock(eps_elec, n, T, "eps_elec").T)
    y_path = np.empty((T, n))
    y = np.zeros(n)
    for j in range(T):
        y = y * (1.0 - k / 12.0) + se * np.sqrt(1.0 / 12.0) * eps_e[j]
        y_path[j] = y
    elec = e0[:, None] * np.exp(y_path.T)

    # Utilization: ramp times a logit-AR(1) around logit(u); exactly ramp * u when su == 0.
    u = _row(mk["market.demand.utilization"], n)
    R = _row(mk["market.demand.ramp_months"], n)
    phi = _row(mk["market.demand.persistence"], n)
    su = _row(mk["market.demand.volatility"], n)
    eps_u = np.ascontiguousarray(_shock(eps_util, n, T, "eps_util").T)
    m = special.logit(np.clip(u, 1e-6, 1.0 - 1e-6))
    x = m.copy()
    level = np.empty((T, n))  # the un-ramped utilization
    for j in range(T):
        x = m + phi * (x - m) + su * eps_u[j]
        level[j] = np.where(su == 0.0, u, special.expit(x))
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp = np.where(R[:, None] == 0.0, 1.0, np.minimum(1.0, t / R[:, None]))
    util = ramp * level.T
    return {"price": price, "electricity": elec, "utilization": util}


def market_paths(
    market: Mapping[str, ArrayLike],
    months: int,
    eps_price: ArrayLike | None = None,
    eps_elec: ArrayLike | None = None,
    eps_util: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """Market paths of ``n`` scenarios over months ``1..months``.

    Returns ``{"price": $/Mtok, "electricity": $/kWh, "utilization": share}``,
    each ``(n, T)`` float64; column ``j`` is month ``t = j + 1``. ``eps_*`` are
    ``(n, T)`` standard normal shocks, or ``None`` for zeros.
    """
    T = _months(months)
    mk = _read_market(market)
    n = _scenario_count(mk.values(), (eps_price, eps_elec, eps_util))
    return _market_paths(mk, n, T, eps_price, eps_elec, eps_util)


# --------------------------------------------------------------------------- #
# one system's monthly flows
# --------------------------------------------------------------------------- #
def system_flows(
    market: Mapping[str, ArrayLike],
    system: Mapping[str, ArrayLike],
    months: int,
    eps_price: ArrayLike | None = None,
    eps_elec: ArrayLike | None = None,
    eps_util: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """Monthly lines (each ``(n, T)``) and static quantities (each ``(n,)``) of one system.

    Monthly: ``price, electricity, utilization, speedup, capacity_tokens, tokens,
    revenue, energy_kwh, energy_usd, idle_energy_usd, colocation_usd, maintenance_usd,
    license_usd, opex, cash_flow, discount_factor``.
    Static: ``capex, residual, depreciation`` and the inputs they came from.
    """
    T = _months(months)
    mk = _read_market(market)
    sy = _read_system(system)
    n = _scenario_count(list(mk.values()) + list(sy.values()), (eps_price, eps_elec, eps_util))
    paths = _market_paths(mk, n, T, eps_price, eps_elec, eps_util)
    P, E, U = paths["price"], paths["electricity"], paths["utilization"]
    t = np.arange(1, T + 1, dtype=np.float64)[None, :]

    units = _col(sy["units"], n)
    G = _col(sy["gpus_per_unit"], n)
    C = _col(sy["capex_usd"], n)
    W = _col(sy["it_power_kw"], n)
    idle = _col(sy["idle_power_fraction"], n)
    theta = _col(sy["throughput_tokens_per_s_per_gpu"], n)
    eta = _col(sy["efficiency"], n)
    A = _col(sy["availability"], n)
    q = _col(sy["price_multiplier"], n)
    ceil = _col(sy["software_speedup.ceiling"], n)
    tau = _col(sy["software_speedup.time_constant_months"], n)
    mnt = _col(sy["maintenance_fraction_per_year"], n)
    lic = _col(sy["license_usd_per_gpu_year"], n)
    rho = _row(sy["residual_value_fraction"], n)
    L = _row(sy["depreciation_years"], n)
    pue = _col(mk["facility.pue"], n)
    colo = _col(mk["facility.colocation_usd_per_kw_month"], n)
    r = _row(mk["finance.discount_rate"], n)

    # Per-scenario constants first ((n, 1) columns), then one pass over (n, T).
    speedup = 1.0 + (ceil - 1.0) * (1.0 - np.exp(-t / tau))
    full_rate = units * G * theta * eta * A * SECONDS_PER_MONTH  # tokens / month at S_t = 1, U_t = 1
    capacity = full_rate * speedup  # K_t
    tokens = capacity * U  # N_t
    revenue = tokens * (q / 1e6) * P  # R_t
    energy_kwh = (units * W * pue * HOURS_PER_MONTH) * (idle + (1.0 - idle) * U)  # Q_t
    energy_usd = energy_kwh * E
    idle_energy_usd = (units * W * pue * HOURS_PER_MONTH) * idle * E  # Q_t * e_t at U_t = 0
    # The three fixed monthly costs are the same every month: read-only (n, T) views.
    colocation_usd = np.broadcast_to(units * W * colo, (n, T))
    maintenance_usd = np.broadcast_to(units * C * mnt / 12.0, (n, T))
    license_usd = np.broadcast_to(units * G * lic / 12.0, (n, T))
    opex = energy_usd + (colocation_usd[:, :1] + maintenance_usd[:, :1] + license_usd[:, :1])  # O_t
    cash_flow = revenue - opex  # CF_t

    capex = _row(units[:, 0] * C[:, 0], n)
    residual = rho * capex
    with np.errstate(divide="ignore", invalid="ignore"):
        depreciation = capex * (1.0 - rho) * np.minimum(1.0, T / (12.0 * L))
    r_m = (1.0 + r) ** (1.0 / 12.0) - 1.0
    if n > 1 and np.all(r_m == r_m[0]):  # one rate for all: compute the row once
        discount = np.broadcast_to((1.0 + r_m[:1])[:, None] ** (-t), (n, T))
    else:
        discount = (1.0 + r_m)[:, None] ** (-t)  # DF_t

    return {
        **paths,
        "speedup": speedup,
        "capacity_tokens": capacity,
        "tokens": tokens,
        "revenue": revenue,
        "energy_kwh": energy_kwh,
        "energy_usd": energy_usd,
        "idle_energy_usd": idle_energy_usd,
        "colocation_usd": colocation_usd,
        "maintenance_usd": maintenance_usd,
        "license_usd": license_usd,
        "opex": opex,
        "cash_flow": cash_flow,
        "discount_factor": discount,
        "capex": capex,
        "residual": residual,
        "depreciation": depreciation,
        "initial_price": _row(mk["market.token_price.initial_usd_per_mtok"], n),
        "units": _row(units[:, 0], n),
        "it_power_kw": _row(W[:, 0], n),
        "discount_rate": r,
    }


# --------------------------------------------------------------------------- #
# metrics
# --------------------------------------------------------------------------- #
def _payback(capex: np.ndarray, cash_flow: np.ndarray) -> np.ndarray:
    cum = np.cumsum(cash_flow, axis=1)
    reached = cum >= capex[:, None]
    found = reached.any(axis=1)
    first = np.argmax(reached, axis=1) + 1.0
    out = np.where(found, first, np.inf)
    # A NaN cash flow before payback leaves the answer undefined.
    nan_before = np.isnan(cum).any(axis=1) & ~found
    out[nan_before] = np.nan
    return out


def system_metrics(
    market: Mapping[str, ArrayLike],
    system: Mapping[str, ArrayLike],
    months: int,
    eps_price: ArrayLike | None = None,
    eps_elec: ArrayLike | None = None,
    eps_util: ArrayLike | None = None,
    *,
    irr_method: str = "auto",
) -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` for one system in ``n`` scenarios, each ``(n,)`` float64."""
    f = system_flows(market, system, months, eps_price, eps_elec, eps_util)
    T = f["revenue"].shape[1]
    I, V, DF = f["capex"], f["residual"], f["discount_factor"]
    DF_T = DF[:, -1]

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["capex_usd"] = I
        out["revenue_usd"] = f["revenue"].sum(axis=1)
        out["tokens"] = f["tokens"].sum(axis=1)
        out["energy_kwh"] = f["energy_kwh"].sum(axis=1)
        out["energy_usd"] = f["energy_usd"].sum(axis=1)
        out["colocation_usd"] = f["colocation_usd"].sum(axis=1)
        out["maintenance_usd"] = f["maintenance_usd"].sum(axis=1)
        out["license_usd"] = f["license_usd"].sum(axis=1)
        out["opex_usd"] = f["opex"].sum(axis=1)
        out["depreciation_usd"] = f["depreciation"]
        out["ebitda_usd"] = out["revenue_usd"] - out["opex_usd"]
        out["operating_profit_usd"] = out["ebitda_usd"] - out["depreciation_usd"]
        out["operating_margin"] = np.where(
            out["revenue_usd"] == 0.0, np.nan, out["operating_profit_usd"] / out["revenue_usd"]
        )
        out["npv_usd"] = -I + (f["cash_flow"] * DF).sum(axis=1) + V * DF_T
        out["irr"] = irr_reference(I, f["cash_flow"], V, method=irr_method)
        out["roi_multiple"] = out["revenue_usd"] / I
        out["net_roi"] = (f["cash_flow"].sum(axis=1) + V - I) / I
        out["payback_months"] = _payback(I, f["cash_flow"])
        out["cost_per_mtok_usd"] = (out["depreciation_usd"] + out["opex_usd"]) / (out["tokens"] / 1e6)
        cost_pv = I - V * DF_T + (f["opex"] * DF).sum(axis=1)
        out["levelized_cost_per_mtok_usd"] = cost_pv / ((f["tokens"] * DF).sum(axis=1) / 1e6)
        out["breakeven_price_usd_per_mtok"] = f["initial_price"] * cost_pv / (f["revenue"] * DF).sum(axis=1)
        out["energy_j_per_token"] = out["energy_kwh"] * 3.6e6 / out["tokens"]
        out["mean_utilization"] = f["utilization"].mean(axis=1)
        # NPV is affine in a factor x scaling the utilization path: solve from NPV at x = 0 and x = 1.
        fixed = f["colocation_usd"][:, :1] + f["maintenance_usd"][:, :1] + f["license_usd"][:, :1]
        npv_none = -I + V * DF_T - ((f["idle_energy_usd"] + fixed) * DF).sum(axis=1)
        slope = out["npv_usd"] - npv_none
        x_star = np.where(slope > 0, np.maximum(-npv_none / slope, 0.0), np.inf)
        out["breakeven_utilization"] = x_star * out["mean_utilization"]
        out["revenue_per_unit_year_usd"] = out["revenue_usd"] / (f["units"] * T / 12.0)
        out["revenue_per_mw_year_usd"] = out["revenue_usd"] / (f["units"] * f["it_power_kw"] / 1000.0 * T / 12.0)
    return {k: np.asarray(out[k], dtype=np.float64) for k in METRICS}

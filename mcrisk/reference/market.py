"""Market paths of the independent float64 reference model, shared by every system of a scenario.

Token price, electricity, the demand path, hardware generations and the rental-price
random walk (MODEL.md "Market paths" and "Hardware generations"). Every path is
``(n, T)`` float64; column ``j`` is month ``t = j + 1``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .inputs import col, round_half_up, row, shock


def months_row(T: int) -> np.ndarray:
    """Months ``t = 1..T`` as a (1, T) float64 row."""
    return np.arange(1, T + 1, dtype=np.float64)[None, :]


def log_price_walk(n: int, T: int, decline, vol, eps, name: str) -> np.ndarray:
    """``exp((t/12) ln(1-d) - s^2 t/24 + s sqrt(1/12) sum_{j<=t} eps_j)``, (n, T): mean ``(1-d)^(t/12)``."""
    t = months_row(T)
    d = col(decline, n)
    s = col(vol, n)
    walk = np.cumsum(shock(eps, n, T, name), axis=1)
    return np.exp((t / 12.0) * np.log1p(-d) - s**2 * t / 24.0 + s * np.sqrt(1.0 / 12.0) * walk)


def electricity_path(mk, n: int, T: int, eps_elec) -> np.ndarray:
    """``e_t = e0 exp(y_t)``, ``y_t = y_{t-1} (1 - k/12) + se sqrt(1/12) eps_t``, $/kWh, (n, T)."""
    # Loops over months run on month-major (T, n) copies so each step reads and
    # writes contiguous memory; the result is transposed back to (n, T).
    e0 = row(mk["market.electricity.usd_per_kwh"], n)
    se = row(mk["market.electricity.volatility"], n)
    k = row(mk["market.electricity.mean_reversion"], n)
    eps_e = np.ascontiguousarray(shock(eps_elec, n, T, "eps_elec").T)
    y_path = np.empty((T, n))
    y = np.zeros(n)
    for j in range(T):
        y = y * (1.0 - k / 12.0) + se * np.sqrt(1.0 / 12.0) * eps_e[j]
        y_path[j] = y
    return e0[:, None] * np.exp(y_path.T)


def demand_path(mk, n: int, T: int, eps_util) -> np.ndarray:
    """The un-ramped demand ``D_t``, (n, T): ``sigmoid(x_t)`` of a logit-AR(1) around ``logit(u)``; ``u`` if su = 0."""
    u = row(mk["market.demand.utilization"], n)
    phi = row(mk["market.demand.persistence"], n)
    su = row(mk["market.demand.volatility"], n)
    eps_u = np.ascontiguousarray(shock(eps_util, n, T, "eps_util").T)
    m = special.logit(np.clip(u, 1e-6, 1.0 - 1e-6))
    x = m.copy()
    level = np.empty((T, n))
    for j in range(T):
        x = m + phi * (x - m) + su * eps_u[j]
        level[j] = np.where(su == 0.0, u, special.expit(x))
    return np.ascontiguousarray(level.T)


def ramp(R: np.ndarray, age: np.ndarray) -> np.ndarray:
    """``min(1, age / R)``, 1 where R = 0; R an (n, 1) column, age (n, T) or (1, T)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(R == 0.0, 1.0, np.minimum(1.0, age / R))


def generations(mk, n: int, T: int) -> np.ndarray:
    """Hardware generations arrived by month t: ``J_t = 0 if t < F else 1 + floor((t - F) / E)``, (n, T).

    F and E are rounded half up and held at >= 1; +inf (absent) gives no arrival and a
    single arrival respectively.
    """
    t = months_row(T)
    F = np.maximum(1.0, round_half_up(col(mk["market.succession.first_month"], n)))
    E = np.maximum(1.0, round_half_up(col(mk["market.succession.every_months"], n)))
    with np.errstate(invalid="ignore"):
        return np.where(t < F, 0.0, 1.0 + np.floor((t - F) / E))


def base_market(mk, n: int, T: int, eps_price, eps_elec, eps_util) -> dict[str, np.ndarray]:
    """Spot token price (generations applied), electricity, calendar-ramped utilization and the rest.

    Returns ``price`` ($/Mtok, ``P_t (1 - jp)^J_t``), ``electricity`` ($/kWh), ``utilization``
    (``ramp_t D_t`` on calendar months: a system live from t = 0), ``demand`` (``D_t``) and
    ``generations`` (``J_t``), each (n, T).
    """
    p0 = col(mk["market.token_price.initial_usd_per_mtok"], n)
    walk = log_price_walk(
        n, T, mk["market.token_price.annual_decline"], mk["market.token_price.volatility"], eps_price, "eps_price"
    )
    J = generations(mk, n, T)
    step = (1.0 - col(mk["market.succession.token_price_step"], n)) ** J  # exactly 1.0 where J = 0
    price = p0 * walk * step
    demand = demand_path(mk, n, T, eps_util)
    util = ramp(col(mk["market.demand.ramp_months"], n), months_row(T)) * demand
    return {
        "price": price,
        "electricity": electricity_path(mk, n, T, eps_elec),
        "utilization": util,
        "demand": demand,
        "generations": J,
    }

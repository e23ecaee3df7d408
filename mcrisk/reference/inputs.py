"""Inputs of the independent float64 reference model (``mcrisk.reference``): names, defaults, readers.

Inputs are flat mappings keyed by study path (market, facility and finance inputs) or by
the system's own field path (a ``system.`` prefix is accepted too). Each value is a scalar
or an array of shape ``(n,)``; everything is read as float64 except ``revenue_mode``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

HOURS_PER_MONTH = 730.5  # 8766 h / 12
SECONDS_PER_MONTH = 2_629_800.0  # 730.5 * 3600

# The base model's inputs (MODEL.md up to "Worked checks").
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

# The inputs of "How operators earn and finance"; all optional.
MARKET_EXTENSION_KEYS = (
    "market.rental.volatility",
    "market.succession.first_month",
    "market.succession.every_months",
    "market.succession.token_price_step",
    "market.succession.rental_step",
    "finance.cost_of_equity",
    "finance.tax_rate",
    "finance.debt.share",
    "finance.debt.annual_rate",
    "finance.debt.tenor_months",
)

SYSTEM_EXTENSION_KEYS = (
    "purchase_month",
    "lead_months",
    "rental.initial_usd_per_gpu_hour",
    "rental.annual_decline",
    "contract.share",
    "contract.term_months",
    "contract.price_multiple",
    "contract.usage",
    "contract.annual_default_probability",
)

REVENUE_MODES = ("tokens", "gpu_hours")

# Defaults of the optional inputs (STUDY.md). Required inputs have no entry. Two defaults
# depend on other inputs and are filled by the readers: `finance.cost_of_equity` (the
# discount rate) and `finance.debt.tenor_months` (the horizon). An absent succession
# (`first_month` = +inf) gives J_t = 0; an absent spacing (+inf) gives a single arrival:
# J_t = 0 if t < F else 1 + floor((t - F) / E) reads exactly so with these infinities.
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
    "market.rental.volatility": 0.0,
    "market.succession.first_month": np.inf,
    "market.succession.every_months": np.inf,
    "market.succession.token_price_step": 0.0,
    "market.succession.rental_step": 0.0,
    "finance.tax_rate": 0.0,
    "finance.debt.share": 0.0,
    "finance.debt.annual_rate": 0.0,
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
    "purchase_month": 0.0,
    "lead_months": 0.0,
    "rental.annual_decline": 0.0,
    "contract.share": 0.0,
    "contract.term_months": 0.0,
    "contract.price_multiple": 1.0,
    "contract.usage": 1.0,
    "contract.annual_default_probability": 0.0,
}


def as_vector(value: ArrayLike, name: str) -> np.ndarray:
    """A scalar or ``(n,)`` input as float64."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or an array of shape (n,), got shape {arr.shape}")
    return arr


def _lookup(given: Mapping[str, ArrayLike], key: str, alias: str):
    for name in (key, alias + key) if alias else (key,):
        if name in given:
            return given[name]
    return None


def _read(given: Mapping[str, ArrayLike], keys, defaults, kind: str, alias: str = "") -> dict[str, np.ndarray]:
    """Each key's value as a float64 vector (or its default); `alias` is an accepted key prefix."""
    out = {}
    for key in keys:
        value = _lookup(given, key, alias)
        if value is not None:
            out[key] = as_vector(value, key)
        elif key in defaults:
            out[key] = np.float64(defaults[key])
        elif kind:
            raise KeyError(f"{kind} input {key!r} is required")
    return out


def read_market(market: Mapping[str, ArrayLike], months: int) -> dict[str, np.ndarray]:
    """Market, facility and finance inputs, defaults filled (the two dependent ones included)."""
    dependent = ("finance.cost_of_equity", "finance.debt.tenor_months")
    independent = [k for k in MARKET_KEYS + MARKET_EXTENSION_KEYS if k not in dependent]
    mk = _read(market, independent, MARKET_DEFAULTS, "market")
    mk.update(_read(market, dependent, {}, ""))
    mk.setdefault("finance.cost_of_equity", mk["finance.discount_rate"])
    mk.setdefault("finance.debt.tenor_months", np.float64(months))
    _check_integer(mk["finance.debt.tenor_months"], "finance.debt.tenor_months", 1, np.inf)
    return mk


def read_system(system: Mapping[str, ArrayLike], months: int) -> dict[str, np.ndarray]:
    """A system's inputs, defaults filled; ``rental.initial_usd_per_gpu_hour`` only where given."""
    sy = _read(system, SYSTEM_KEYS + SYSTEM_EXTENSION_KEYS, SYSTEM_DEFAULTS, "", alias="system.")
    for key in SYSTEM_KEYS:
        if key not in sy:
            raise KeyError(f"system input {key!r} is required")
    sy["revenue_mode"] = read_revenue_mode(system)
    if sy["revenue_mode"] == "gpu_hours" and "rental.initial_usd_per_gpu_hour" not in sy:
        raise KeyError("system input 'rental.initial_usd_per_gpu_hour' is required with revenue_mode 'gpu_hours'")
    _check_integer(sy["purchase_month"], "purchase_month", 0, months - 1)
    _check_integer(sy["contract.term_months"], "contract.term_months", 0, np.inf)
    return sy


def read_revenue_mode(system: Mapping[str, ArrayLike]) -> str:
    """``"tokens"`` or ``"gpu_hours"``: one mode per system (a constant array is accepted)."""
    value = _lookup(system, "revenue_mode", "system.")
    if value is None:
        return "tokens"
    modes = set(np.atleast_1d(np.asarray(value, dtype=object)).tolist())
    if len(modes) != 1 or not modes <= set(REVENUE_MODES):
        raise ValueError(f"revenue_mode: expected one of {REVENUE_MODES}, got {value!r}")
    return modes.pop()


def _check_integer(x: np.ndarray, name: str, low: float, high: float) -> None:
    if not np.all((x == np.floor(x)) & (x >= low) & (x <= high)):
        raise ValueError(f"{name}: expected integers in [{low}, {high}], got {x!r}")


def scenario_count(arrays, shocks) -> int:
    """The number of scenarios ``n`` that the inputs and shocks broadcast to."""
    shapes = [np.shape(a) for a in arrays]
    for eps in shocks:
        if eps is not None:
            shapes.append((np.shape(eps)[0],))
    shape = np.broadcast_shapes(*shapes) if shapes else ()
    return int(shape[0]) if shape else 1


def shock(eps, n: int, months: int, name: str) -> np.ndarray:
    """Monthly standard normal shocks as ``(n, T)``; ``None`` is zeros."""
    if eps is None:
        return np.zeros((n, months))
    arr = np.asarray(eps, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != months or arr.shape[0] not in (1, n):
        raise ValueError(f"{name}: expected shape ({n}, {months}), got {arr.shape}")
    return np.broadcast_to(arr, (n, months))


def col(x: np.ndarray, n: int) -> np.ndarray:
    """A static input as an (n, 1) column, ready to broadcast against (n, T)."""
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))[:, None]


def row(x: np.ndarray, n: int) -> np.ndarray:
    """A static input as an (n,) float64 array of its own."""
    return np.array(np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)))


def check_months(months: int) -> int:
    """The horizon ``T`` as an int >= 1."""
    T = int(months)
    if T != months or T < 1:
        raise ValueError(f"months must be an integer >= 1, got {months!r}")
    return T


def round_half_up(x: np.ndarray) -> np.ndarray:
    """Nearest integer, halves up: ``floor(x + 0.5)``."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)

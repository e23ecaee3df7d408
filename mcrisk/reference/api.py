"""Independent float64 NumPy implementation of the economics model.

This module restates the model of the project's contract (``MODEL.md``), the base model
and its extensions ("How operators earn and finance"), in plain, vectorised NumPy,
written from the contract alone. It is used to check the JAX engine scenario by scenario,
and as the "plain vectorised NumPy" baseline of the benchmarks. Everything is float64;
loops run over months (and, for the final IRR refinement with ``method="brentq"``, over
rows), never over scenarios in the hot paths. It imports NumPy, SciPy and the other
modules in ``mcrisk/reference/`` only.

Public API
----------
``market_paths(market, months, eps_price=None, eps_elec=None, eps_util=None)``
    Spot token price (generations applied), electricity price and utilization (the
    demand path ramped on calendar months: a system live from t = 0), each ``(n, T)``.
``system_flows(market, system, months, eps_price=None, eps_elec=None, eps_util=None, eps_rental=None, *,
              default_uniform=None)``
    The monthly lines of one system, each ``(n, T)``, and its static quantities, ``(n,)``.
``system_metrics(market, system, months, eps_..., eps_rental=None, *, default_uniform=None, irr_method="auto")``
    Every metric of ``METRICS``, each ``(n,)`` float64.
``portfolio_metrics(market, systems, months, eps_..., eps_rental=None, *, default_uniforms=None, irr_method="auto")``
    The ``portfolio`` row: ``systems`` maps each name to its inputs, in study order;
    ``default_uniforms`` maps names to their uniforms. Every metric of ``METRICS``, ``(n,)``.
``irr_reference(capex, cash_flows, residual, *, outlay_month=0, method="auto")``
    Annual IRR per the contract's root rule, the outlay paid at ``outlay_month``.
``npv_reference(capex, cash_flows, residual, annual_rate, *, outlay_month=0)``
    NPV at an annual rate (monthly discounting), the function whose root the IRR is.
``fold_outlays(cash_flows, outlays)``
    Outlays in several months as one outlay at t = 0 plus modified flows (for the IRR).

Inputs are flat mappings keyed by study path (``MARKET_KEYS`` and
``MARKET_EXTENSION_KEYS``) or by the system's own field path (``SYSTEM_KEYS``,
``SYSTEM_EXTENSION_KEYS`` and ``revenue_mode``; a ``system.`` prefix is accepted too).
Each value is a scalar or an array of shape ``(n,)``; ``revenue_mode`` is ``"tokens"``
or ``"gpu_hours"``. Optional inputs that are missing take the study defaults of STUDY.md
(``finance.cost_of_equity``: the discount rate; ``finance.debt.tenor_months``: the
horizon; no ``market.succession.first_month``: no new generation; no
``market.succession.every_months``: a single one); missing required inputs raise
``KeyError``. Keys that are not model inputs are ignored, so a whole result row may be
passed as both ``market`` and ``system``.

Shocks: ``eps_price``, ``eps_elec``, ``eps_util`` and ``eps_rental`` (the market-wide
rental-price shock ``eps^h``) are ``(n, T)`` standard normals, ``None`` for zeros.
``default_uniform`` is the ``(n,)`` uniform ``w`` in (0, 1) of the system's stream
``system.contract.default``, required where ``contract.annual_default_probability > 0``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from .finance import payback as _payback  # noqa: F401  (tests import it from here)
from .flows import flows as _flows
from .inputs import (
    HOURS_PER_MONTH,
    MARKET_DEFAULTS,
    MARKET_EXTENSION_KEYS,
    MARKET_KEYS,
    REVENUE_MODES,
    SECONDS_PER_MONTH,
    SYSTEM_DEFAULTS,
    SYSTEM_EXTENSION_KEYS,
    SYSTEM_KEYS,
    check_months,
    read_market,
    read_system,
    scenario_count,
)
from .irr import fold_outlays, irr_reference, npv_reference
from .market import base_market
from .metrics import METRICS, system_metrics_from_flows
from .portfolio import portfolio_from

__all__ = [
    "HOURS_PER_MONTH",
    "MARKET_DEFAULTS",
    "MARKET_EXTENSION_KEYS",
    "MARKET_KEYS",
    "METRICS",
    "REVENUE_MODES",
    "SECONDS_PER_MONTH",
    "SYSTEM_DEFAULTS",
    "SYSTEM_EXTENSION_KEYS",
    "SYSTEM_KEYS",
    "fold_outlays",
    "irr_reference",
    "market_paths",
    "npv_reference",
    "portfolio_metrics",
    "system_flows",
    "system_metrics",
]

Shock = ArrayLike | None


def market_paths(
    market: Mapping[str, ArrayLike],
    months: int,
    eps_price: Shock = None,
    eps_elec: Shock = None,
    eps_util: Shock = None,
) -> dict[str, np.ndarray]:
    """Market paths of ``n`` scenarios over months ``1..months``.

    Returns ``{"price": $/Mtok, "electricity": $/kWh, "utilization": share}``, each
    ``(n, T)`` float64; column ``j`` is month ``t = j + 1``.
    """
    T = check_months(months)
    mk = read_market(market, T)
    n = scenario_count(mk.values(), (eps_price, eps_elec, eps_util))
    paths = base_market(mk, n, T, eps_price, eps_elec, eps_util)
    return {k: paths[k] for k in ("price", "electricity", "utilization")}


def system_flows(
    market: Mapping[str, ArrayLike],
    system: Mapping[str, ArrayLike],
    months: int,
    eps_price: Shock = None,
    eps_elec: Shock = None,
    eps_util: Shock = None,
    eps_rental: Shock = None,
    *,
    default_uniform: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """Monthly lines (each ``(n, T)``) and static quantities (each ``(n,)``) of one system.

    Monthly: ``price`` (spot, $/Mtok), ``electricity``, ``demand`` (D_t), ``generations``
    (J_t), ``live`` (L_t, 0/1), ``age``, ``utilization`` (U_t), ``contract_share`` (c_t),
    ``contract_busy`` (c_t uc), ``spot_utilization`` ((1 - c_t) U_t), ``busy`` (B_t),
    ``speedup``, ``capacity_tokens``, ``tokens``, ``rental_price`` (h_t, NaN without h0),
    ``spot_revenue``, ``contract_revenue``, ``revenue``, ``energy_kwh``, ``energy_usd``,
    ``idle_energy_usd``, ``contract_energy_usd``, ``colocation_usd``, ``maintenance_usd``,
    ``license_usd``, ``opex``, ``cash_flow``, ``tax_depreciation``, ``tax_unlevered``,
    ``tax_levered``, ``free_cash_flow``, ``interest``, ``principal``, ``debt_service``,
    ``equity_flow``, ``discount_factor``, ``equity_discount_factor``.
    Static: ``capex, residual, depreciation, purchase_month, lead_months, go_live,
    default_month, tax_basis, balloon, debt_payment, debt_share, equity_outlay,
    equity_residual, purchase_discount, equity_purchase_discount`` and the inputs they
    came from; ``revenue_mode`` is a string.
    """
    T = check_months(months)
    mk = read_market(market, T)
    sy = read_system(system, T)
    given = [v for k, v in sy.items() if k != "revenue_mode"] + list(mk.values())
    uniform = () if default_uniform is None else (np.shape(default_uniform),)
    n = scenario_count(given + [np.empty(s) for s in uniform], (eps_price, eps_elec, eps_util, eps_rental))
    return _flows(mk, sy, n, T, eps_price, eps_elec, eps_util, eps_rental, default_uniform)


def system_metrics(
    market: Mapping[str, ArrayLike],
    system: Mapping[str, ArrayLike],
    months: int,
    eps_price: Shock = None,
    eps_elec: Shock = None,
    eps_util: Shock = None,
    eps_rental: Shock = None,
    *,
    default_uniform: ArrayLike | None = None,
    irr_method: str = "auto",
) -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` for one system in ``n`` scenarios, each ``(n,)`` float64."""
    f = system_flows(market, system, months, eps_price, eps_elec, eps_util, eps_rental, default_uniform=default_uniform)
    return system_metrics_from_flows(f, irr_method)


def portfolio_metrics(
    market: Mapping[str, ArrayLike],
    systems: Mapping[str, Mapping[str, ArrayLike]],
    months: int,
    eps_price: Shock = None,
    eps_elec: Shock = None,
    eps_util: Shock = None,
    eps_rental: Shock = None,
    *,
    default_uniforms: Mapping[str, ArrayLike] | None = None,
    irr_method: str = "auto",
) -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` for the fleet of ``systems`` as one investment, each ``(n,)`` float64.

    ``systems`` maps each system's name to its inputs (study order: sums run in it);
    ``default_uniforms`` maps a name to that system's ``default_uniform``.
    """
    if not systems:
        raise ValueError("portfolio_metrics needs at least one system")
    uniforms = default_uniforms or {}
    fs = [
        system_flows(market, own, months, eps_price, eps_elec, eps_util, eps_rental, default_uniform=uniforms.get(name))
        for name, own in systems.items()
    ]
    per_system = [system_metrics_from_flows(f, irr_method) for f in fs]
    return portfolio_from(fs, per_system, irr_method)

"""Warnings for magnitudes that are valid but implausible: the unit slips a schema cannot refuse.

A study may legitimately price electricity at $0.90/kWh or pay $600,000 for a GPU, so these are
warnings, not errors: ``mcrisk validate`` and ``mcrisk run`` print them and go on. Each names the
field, the value and the likely slip ("8 $/kWh: cents typed as dollars?"). Values are judged at
their distribution's mean, so one wide tail does not raise a warning; the speedup ceiling is
judged at the bottom of its support, since a ceiling below 1 is a slowdown in every draw that
lands there.
"""

from __future__ import annotations

from mcrisk.errors import Problem
from mcrisk.study.distributions import Dist
from mcrisk.study.schema import Study

SECONDS_PER_HOUR = 3600.0
ELECTRICITY_MAX_USD_PER_KWH = 1.0
CAPEX_PER_GPU_USD = (5_000.0, 500_000.0)
REVENUE_PER_GPU_HOUR_MAX_USD = 20.0
TOKEN_PRICE_MAX_USD_PER_MTOK = 200.0
PUE_MAX = 3.0


def _money(x: float) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"${x / scale:.3g}{unit}"
    return f"${x:.3g}"


def _mean(d: Dist) -> float:
    return float(d.mean())


def _market_warnings(study: Study) -> list[Problem]:
    out = []
    elec = _mean(study.market.electricity.usd_per_kwh)
    if elec > ELECTRICITY_MAX_USD_PER_KWH:
        slip = " cents typed as dollars?" if elec >= 2 else ""
        out.append(
            Problem(
                "market.electricity.usd_per_kwh",
                f"mean {elec:.3g} $/kWh is above ${ELECTRICITY_MAX_USD_PER_KWH:g}/kWh (industrial power costs "
                f"$0.04-0.15/kWh):{slip or ' is this the price you mean?'}",
            )
        )
    price = _mean(study.market.token_price.initial_usd_per_mtok)
    if price > TOKEN_PRICE_MAX_USD_PER_MTOK:
        out.append(
            Problem(
                "market.token_price.initial_usd_per_mtok",
                f"mean {price:.3g} $/Mtok is above ${TOKEN_PRICE_MAX_USD_PER_MTOK:g} per million tokens "
                "(frontier APIs list $0.1-75/Mtok): a price per thousand tokens typed per million?",
            )
        )
    pue = _mean(study.facility.pue)
    if pue > PUE_MAX:
        out.append(Problem("facility.pue", f"mean {pue:.3g} is above {PUE_MAX:g} (data centres run at 1.1-1.6)"))
    return out


def _system_warnings(name: str, system, study: Study) -> list[Problem]:
    out = []
    at = f"systems.{name}"
    gpus = system.gpus_per_unit
    capex_per_gpu = _mean(system.capex_usd) / gpus
    low, high = CAPEX_PER_GPU_USD
    if capex_per_gpu < low:
        out.append(
            Problem(
                f"{at}.capex_usd",
                f"{_money(capex_per_gpu)} per GPU (mean capex / {gpus} GPUs per unit) is under {_money(low)}: "
                "capex per GPU typed where capex per unit belongs, or a value in thousands?",
            )
        )
    elif capex_per_gpu > high:
        out.append(
            Problem(
                f"{at}.capex_usd",
                f"{_money(capex_per_gpu)} per GPU (mean capex / {gpus} GPUs per unit) is over {_money(high)}: "
                "capex of the whole fleet typed per unit, or gpus_per_unit too small?",
            )
        )
    floor = system.software_speedup.ceiling.support()[0]
    if floor < 1.0:
        out.append(
            Problem(
                f"{at}.software_speedup.ceiling",
                f"its distribution reaches {floor:.3g}, below 1: a ceiling under 1 is a slowdown, not a gain; "
                "bound it below at 1 unless the study means a slowdown",
            )
        )
    revenue = _revenue_per_gpu_hour(system, study)
    if revenue > REVENUE_PER_GPU_HOUR_MAX_USD:
        out.append(
            Problem(
                f"{at}.throughput_tokens_per_s_per_gpu",
                f"at the inputs' means a GPU-hour earns {_money(revenue)} after utilization, above "
                f"{_money(REVENUE_PER_GPU_HOUR_MAX_USD)} (GPUs rent at $1.5-9 an hour): throughput "
                "per server typed per GPU, or a price per thousand tokens?",
            )
        )
    return out


def _revenue_per_gpu_hour(system, study: Study) -> float:
    """Token revenue of one installed GPU-hour at the inputs' means, first-month software."""
    tokens_per_hour = (
        _mean(system.throughput_tokens_per_s_per_gpu)
        * _mean(system.efficiency)
        * _mean(system.availability)
        * SECONDS_PER_HOUR
    )
    price = _mean(study.market.token_price.initial_usd_per_mtok) * _mean(system.price_multiplier)
    return tokens_per_hour * _mean(study.market.demand.utilization) * price / 1e6


def plausibility_warnings(study: Study) -> list[Problem]:
    """Every implausible magnitude of a valid study, market first, then each system in study order."""
    out = _market_warnings(study)
    for name, system in study.systems.items():
        out.extend(_system_warnings(name, system, study))
    return out

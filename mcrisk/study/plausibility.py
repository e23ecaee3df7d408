"""Warnings for magnitudes that are valid but implausible: the unit slips a schema cannot refuse.

The checks: electricity above $1/kWh, a token price above $200/Mtok, PUE above 3, annual rates
(discount, cost of equity, debt) above 50%, colocation above $1,000/kW-month; per system, capex
per GPU outside $5,000-500,000, IT power per GPU outside 0.1-5 kW, maintenance above 50% of capex
a year, depreciation over 15 years, a speedup ceiling that can fall below 1, and a GPU-hour
earning over $20 after utilization (token systems) or renting above $20 (GPU-hour systems).

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
RATE_MAX = 0.5  # a year: discount, equity and debt rates; maintenance as a share of capex
KW_PER_GPU = (0.1, 5.0)  # IT power per GPU: an HGX H100 draws about 1.3 kW a GPU, a GB200 NVL72 about 1.8
COLOCATION_MAX_USD_PER_KW_MONTH = 1_000.0
DEPRECIATION_MAX_YEARS = 15.0
RENTAL_MAX_USD_PER_GPU_HOUR = 20.0


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
    if system.revenue_mode == "gpu_hours":
        out += _rental_warnings(at, system, study)
        return out + _unit_warnings(at, system)
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
    return out + _unit_warnings(at, system)


def _rental_warnings(at: str, system, study: Study) -> list[Problem]:
    """A system that rents GPU-hours: its price, and what a GPU-hour earns after utilization."""
    price = _mean(system.rental.initial_usd_per_gpu_hour)
    if price > RENTAL_MAX_USD_PER_GPU_HOUR:
        return [
            Problem(
                f"{at}.rental.initial_usd_per_gpu_hour",
                f"mean {_money(price)} a GPU-hour is above {_money(RENTAL_MAX_USD_PER_GPU_HOUR)} (GPUs rent at "
                "$1.5-9 an hour): the price of a whole server or rack typed per GPU?",
            )
        ]
    revenue = (
        price * _mean(system.price_multiplier) * _mean(system.availability) * _mean(study.market.demand.utilization)
    )
    if revenue > REVENUE_PER_GPU_HOUR_MAX_USD:  # (a price multiplier in percent: 100 for 1)
        return [
            Problem(
                f"{at}.price_multiplier",
                f"at the inputs' means a GPU-hour earns {_money(revenue)} after utilization, above "
                f"{_money(REVENUE_PER_GPU_HOUR_MAX_USD)}: a multiplier typed in percent?",
            )
        ]
    return []


def _above(path: str, value: float, limit: float, what: str, slip: str) -> list[Problem]:
    return [Problem(path, f"mean {value:.3g} is above {limit:g} ({what}): {slip}")] if value > limit else []


def _unit_warnings(at: str, system) -> list[Problem]:
    """Power per GPU, maintenance share, depreciation life: the per-unit fields' unit slips."""
    kw = _mean(system.it_power_kw) / system.gpus_per_unit
    out = []
    if kw > KW_PER_GPU[1]:
        out.append(
            Problem(
                f"{at}.it_power_kw",
                f"{kw:.3g} kW per GPU (mean IT power / {system.gpus_per_unit} GPUs per unit) is over "
                f"{KW_PER_GPU[1]:g} kW (a GPU with its share of the server draws 1-2 kW): watts typed as kilowatts?",
            )
        )
    elif kw < KW_PER_GPU[0]:
        out.append(
            Problem(
                f"{at}.it_power_kw",
                f"{kw:.3g} kW per GPU (mean IT power / {system.gpus_per_unit} GPUs per unit) is under "
                f"{KW_PER_GPU[0]:g} kW: megawatts typed as kilowatts, or one GPU's power typed for the unit?",
            )
        )
    out += _above(
        f"{at}.maintenance_fraction_per_year",
        _mean(system.maintenance_fraction_per_year),
        RATE_MAX,
        "a share of capex a year; support contracts cost 0.01-0.05",
        "a percentage typed as a fraction (2 for 0.02)?",
    )
    out += _above(
        f"{at}.depreciation_years",
        float(system.depreciation_years),
        DEPRECIATION_MAX_YEARS,
        "GPUs are depreciated over 3-6 years",
        "months typed as years?",
    )
    return out


def _finance_warnings(study: Study) -> list[Problem]:
    """Annual rates above 50%: a percentage typed as a fraction (10 for 0.10); colocation per year."""
    fin = study.finance
    rates = [("finance.discount_rate", fin.discount_rate), ("finance.cost_of_equity", fin.cost_of_equity)]
    if fin.debt is not None:
        rates.append(("finance.debt.annual_rate", fin.debt.annual_rate))
    out = []
    for path, d in rates:
        if d is not None:
            out += _above(path, _mean(d), RATE_MAX, "an annual rate", "a percentage typed as a fraction (10 for 0.10)?")
    out += _above(
        "facility.colocation_usd_per_kw_month",
        _mean(study.facility.colocation_usd_per_kw_month),
        COLOCATION_MAX_USD_PER_KW_MONTH,
        "$/kW a month; colocation costs $100-250/kW-month",
        "a price per kW-year typed per month?",
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
    out = _market_warnings(study) + _finance_warnings(study)
    for name, system in study.systems.items():
        out.extend(_system_warnings(name, system, study))
    return out

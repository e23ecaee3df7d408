"""One table of names for people: metrics and study inputs in words with their units.

The terminal, the CSV ``label`` columns and the report all name a metric or a drawn input
through this module: ``metric_label("npv_usd")`` is ``"NPV ($)"``, ``input_label(
"market.token_price.initial_usd_per_mtok")`` is ``"initial token price ($/Mtok)"``, and a
system's input, ``systems.gb200.efficiency`` (a study path) or ``system.efficiency`` (a
scenario column), is its field's words, after the system's name where the path names one.
A path the table does not know is written readably from its own name: underscores become
spaces and the unit in its suffix (units are in the field names, by the study's convention)
moves into parentheses.

Units come in two forms from one table of name endings: short for people (``$/Mtok``) and
long for files (``USD per million tokens``, summary.nc's ``units`` attributes).
"""

from __future__ import annotations

from mcrisk.study.columns import study_path

# (name ending, short unit, long unit), longest first: the last part of a dotted path is matched.
_SUFFIXES: tuple[tuple[str, str, str], ...] = (
    ("_per_gpu_hour_usd", "$/GPU-h", "USD per GPU-hour"),
    ("_usd_per_gpu_hour", "$/GPU-h", "USD per GPU-hour"),
    ("_per_unit_year_usd", "$/unit-yr", "USD per unit-year"),
    ("_per_mw_year_usd", "$/MW-yr", "USD per MW-year"),
    ("_usd_per_gpu_year", "$/GPU-yr", "USD per GPU-year"),
    ("_usd_per_kw_month", "$/kW-mo", "USD per kW-month"),
    ("_usd_per_mtok", "$/Mtok", "USD per million tokens"),
    ("_per_mtok_usd", "$/Mtok", "USD per million tokens"),
    ("_usd_per_kwh", "$/kWh", "USD/kWh"),
    ("_tokens_per_s_per_gpu", "tok/s/GPU", "tokens/s per GPU"),
    ("_j_per_token", "J/token", "J/token"),
    ("_usd", "$", "USD"),
    ("_months", "months", "months"),
    ("_years", "years", "years"),
    ("_kwh", "kWh", "kWh"),
    ("_kw", "kW", "kW"),
    ("_fraction", "", "1"),
    ("_multiple", "", "1"),
    ("_margin", "%", "1"),
    ("_roi", "", "1"),
    ("_rate", "per year", "1 per year"),
    ("_decline", "per year", "1 per year"),
)
# Whole names with a unit their ending does not say: (short, long).
_NAMES: dict[str, tuple[str, str]] = {
    "tokens": ("tokens", "tokens"),
    "irr": ("%/yr", "1 per year"),
    "equity_irr": ("%/yr", "1 per year"),
    "utilization": ("", "1"),
    "mean_utilization": ("", "1"),
    "breakeven_utilization": ("", "1"),
    "pue": ("", "1"),
    "efficiency": ("", "1"),
    "availability": ("", "1"),
    "price_multiplier": ("", "1"),
    "ceiling": ("x", "1"),
    "persistence": ("", "1"),
    "volatility": ("per sqrt(year)", "1 per sqrt(year)"),
    "mean_reversion": ("per year", "1 per year"),
    "units": ("count", "count"),
    "gpus_per_unit": ("count", "count"),
    "time_constant_months": ("months", "months"),
    "min_dscr": ("x", "1"),
}

# Metrics in words (without the unit, which metric_label adds). The three costs per million
# tokens answer different questions (docs/model.md), so each says which it is.
METRICS: dict[str, str] = {
    "npv_usd": "NPV",
    "irr": "IRR",
    "roi_multiple": "revenue per $ of capex",
    "net_roi": "net return on capex",
    "payback_months": "payback",
    "operating_margin": "operating margin",
    "cost_per_mtok_usd": "cost per Mtok sold",
    "levelized_cost_per_mtok_usd": "levelized cost per Mtok",
    "breakeven_price_usd_per_mtok": "break-even initial token price",
    "breakeven_utilization": "break-even mean utilization",
    "breakeven_rental_usd_per_gpu_hour": "break-even initial rental",
    "revenue_usd": "revenue",
    "capex_usd": "capex",
    "opex_usd": "opex",
    "tokens": "tokens served",
    "energy_kwh": "facility energy",
    "energy_usd": "power bill",
    "colocation_usd": "colocation rent",
    "maintenance_usd": "maintenance",
    "license_usd": "software licences",
    "depreciation_usd": "depreciation",
    "ebitda_usd": "EBITDA",
    "operating_profit_usd": "operating profit",
    "energy_j_per_token": "facility energy per token",
    "mean_utilization": "mean utilization",
    "revenue_per_unit_year_usd": "revenue per unit-year",
    "revenue_per_mw_year_usd": "revenue per MW-year",
    "revenue_per_gpu_hour_usd": "revenue per GPU-hour",
    "first_year_revenue_per_gpu_hour_usd": "first-year revenue per GPU-hour",
    "live_months": "months live",
    "contract_revenue_usd": "contract revenue",
    "contract_default_month": "month of the buyer's default",
    "tax_usd": "tax",
    "equity_tax_usd": "tax (equity view)",
    "interest_usd": "interest",
    "equity_npv_usd": "equity NPV",
    "equity_irr": "equity IRR",
    "min_dscr": "minimum DSCR",
}
# Units of metrics where the name's ending gives none or the wrong one for people.
_METRIC_UNITS = {
    "roi_multiple": "x",
    "net_roi": "x",
    "operating_margin": "%",
    "mean_utilization": "%",
    "breakeven_utilization": "%",
    "contract_default_month": "month",
}

# Inputs of the market, the facility and the finance section, by study path.
INPUTS: dict[str, str] = {
    "market.token_price.initial_usd_per_mtok": "initial token price",
    "market.token_price.annual_decline": "token price decline",
    "market.token_price.volatility": "token price volatility",
    "market.demand.utilization": "utilization",
    "market.demand.ramp_months": "demand ramp",
    "market.demand.volatility": "demand volatility",
    "market.demand.persistence": "demand persistence",
    "market.electricity.usd_per_kwh": "electricity price",
    "market.electricity.volatility": "electricity price volatility",
    "market.electricity.mean_reversion": "electricity mean reversion",
    "market.rental.volatility": "GPU rental price volatility",
    "market.succession.every_months": "months between hardware generations",
    "market.succession.first_month": "month of the next hardware generation",
    "market.succession.token_price_step": "token price step at a new generation",
    "market.succession.rental_step": "rental price step at a new generation",
    "facility.pue": "PUE",
    "facility.colocation_usd_per_kw_month": "colocation price",
    "finance.discount_rate": "discount rate",
    "finance.tax_rate": "tax rate",
    "finance.cost_of_equity": "cost of equity",
    "finance.debt.annual_rate": "debt interest rate",
    "finance.debt.share": "debt share of capex",
}
# A system's fields, by their path under the system (systems.NAME.FIELD, or system.FIELD in a
# scenario table, where the row's system is the scenario's).
SYSTEM_FIELDS: dict[str, str] = {
    "capex_usd": "capex",
    "units": "units",
    "gpus_per_unit": "GPUs per unit",
    "it_power_kw": "IT power",
    "idle_power_fraction": "idle power share",
    "throughput_tokens_per_s_per_gpu": "throughput",
    "efficiency": "efficiency (production / benchmark)",
    "availability": "availability",
    "price_multiplier": "price multiplier",
    "utilization": "utilization",
    "demand.utilization": "utilization",
    "lead_months": "delivery lead time",
    "maintenance_fraction_per_year": "maintenance (share of capex per year)",
    "license_usd_per_gpu_year": "software licence",
    "residual_value_fraction": "residual value (share of capex)",
    "software_speedup.ceiling": "software speedup ceiling",
    "software_speedup.time_constant_months": "software speedup time constant",
    "rental.initial_usd_per_gpu_hour": "initial GPU rental price",
    "rental.annual_decline": "GPU rental price decline",
    "contract.share": "contracted share of capacity",
    "contract.price_multiple": "contract price (multiple of spot)",
    "contract.usage": "contract usage",
    "contract.annual_default_probability": "buyer's default probability per year",
}


def _parts(last: str) -> tuple[str, str, str]:
    """(name without its unit ending, short unit, long unit) of a field's last name."""
    if last in _NAMES:
        return last, *_NAMES[last]
    key = "_" + last  # (a name that is only its unit: usd_per_kwh)
    for suffix, short, long in _SUFFIXES:
        if key.endswith(suffix):
            stem = key[1 : -len(suffix)] if suffix not in ("_fraction", "_multiple", "_margin", "_roi") else last
            return stem or last, short, long
    return last, "", ""


def unit_of(name: str) -> str | None:
    """The unit of a metric or a drawn input for files ("USD", "USD per million tokens", "1" for
    a ratio), or None where its name does not say. `name`: a metric, a study path or its Parquet
    column (``market__token_price__initial_usd_per_mtok``)."""
    long = _parts(study_path(name).rsplit(".", 1)[-1])[2]
    return long or None


def short_unit(name: str) -> str:
    """The unit of a metric or an input for people ("$/Mtok", "$/GPU-h", "%/yr"); "" for a
    plain ratio or where the name does not say."""
    if name in _METRIC_UNITS:
        return _METRIC_UNITS[name]
    return _parts(name.rsplit(".", 1)[-1])[1]


def _with_unit(words: str, unit: str) -> str:
    return f"{words} ({unit})" if unit and unit not in ("count",) else words


def metric_label(metric: str, unit: bool = True) -> str:
    """A metric in words, with its unit in parentheses: "NPV ($)", "cost per Mtok sold ($/Mtok)"."""
    words = METRICS.get(metric) or _readable(metric)
    return _with_unit(words, short_unit(metric)) if unit else words


def _readable(path: str) -> str:
    """An unknown field's name as words: its dotted parts, underscores as spaces, the unit ending dropped."""
    *head, last = path.split(".")
    stem = _parts(last)[0]
    return " ".join(p.replace("_", " ") for p in (*head, stem) if p)


def input_label(path: str) -> str:
    """A drawn input in words with its unit: a study path (``market.demand.utilization``,
    ``systems.NAME.FIELD``) or a scenario column (``system.FIELD``: the row's own system)."""
    unit = short_unit(path)
    if path in INPUTS:
        return _with_unit(INPUTS[path], unit)
    parts = path.split(".")
    if parts[0] == "system" and len(parts) > 1:
        field = ".".join(parts[1:])
        return _with_unit(SYSTEM_FIELDS.get(field) or _readable(field), unit)
    if parts[0] == "systems" and len(parts) > 2:
        field = ".".join(parts[2:])
        return _with_unit(f"{parts[1]} {SYSTEM_FIELDS.get(field) or _readable(field)}", unit)
    return _with_unit(_readable(path), unit)

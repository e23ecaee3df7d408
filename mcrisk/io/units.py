"""Units of the columns mcrisk writes, read from their names (units are in the field names, by the
study's convention): for summary.nc's ``units`` attributes and the spreadsheet export."""

from __future__ import annotations

from mcrisk.study.columns import study_path

# Longest suffix first; the last part of a dotted study path is what is matched.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_per_gpu_hour_usd", "USD per GPU-hour"),
    ("_usd_per_gpu_hour", "USD per GPU-hour"),
    ("_per_unit_year_usd", "USD per unit-year"),
    ("_per_mw_year_usd", "USD per MW-year"),
    ("_usd_per_gpu_year", "USD per GPU-year"),
    ("_usd_per_kw_month", "USD per kW-month"),
    ("_usd_per_mtok", "USD per million tokens"),
    ("_usd_per_kwh", "USD/kWh"),
    ("_tokens_per_s_per_gpu", "tokens/s per GPU"),
    ("_j_per_token", "J/token"),
    ("_usd", "USD"),
    ("_months", "months"),
    ("_years", "years"),
    ("_kwh", "kWh"),
    ("_kw", "kW"),
    ("_fraction", "1"),
    ("_multiple", "1"),
    ("_margin", "1"),
    ("_roi", "1"),
    ("_rate", "1 per year"),
    ("_decline", "1 per year"),
)
_NAMES = {
    "tokens": "tokens",
    "irr": "1 per year",
    "utilization": "1",
    "mean_utilization": "1",
    "breakeven_utilization": "1",
    "pue": "1",
    "efficiency": "1",
    "availability": "1",
    "price_multiplier": "1",
    "ceiling": "1",
    "persistence": "1",
    "volatility": "1 per sqrt(year)",
    "mean_reversion": "1 per year",
    "units": "count",
    "gpus_per_unit": "count",
    "time_constant_months": "months",
}


def unit_of(name: str) -> str | None:
    """The unit of a metric or a drawn input ("USD", "USD per million tokens", "1" for a ratio),
    or None where its name does not say. `name`: a metric, a dotted input path or its Parquet column."""
    last = study_path(name).rsplit(".", 1)[-1]
    if last in _NAMES:
        return _NAMES[last]
    for suffix, unit in _SUFFIXES:
        if last.endswith(suffix):
            return unit
    return None

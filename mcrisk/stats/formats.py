"""Numbers for people, in engineering form with their units: $6.02M, 0.0747 $/Mtok, 259%/yr,
20 mo or "never", "unreachable" for a break-even utilization above 100%. The terminal and the
report's headline write every number through these, so the two read the same."""

from __future__ import annotations

import math

_STEPS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def _three(v: float) -> str:
    """A positive number below 1000 in three significant figures, never in exponent form."""
    if v >= 99.95:
        return f"{v:.0f}"
    if v >= 9.995:
        return f"{v:.1f}"
    return f"{v:.2f}"


def money(x: float) -> str:
    """Dollars: -$2.86M, $492k, $20.3M, $950; "n/a" for NaN, "+inf"/"-inf" for infinities."""
    if not math.isfinite(x):
        return "n/a" if math.isnan(x) else ("+inf" if x > 0 else "-inf")
    sign, a = ("-" if x < 0 else ""), abs(x)
    for div, suffix in _STEPS:
        if a >= div * 0.9995:
            return f"{sign}${_three(a / div)}{suffix}"
    if a == 0:
        return "$0"
    return f"{sign}${a:.0f}" if a >= 99.5 else f"{sign}${_three(a)}"


def signed_money(x: float) -> str:
    """A change in dollars, with its sign: +$1.2M, -$972k, $0."""
    if math.isfinite(x) and x > 0:
        return "+" + money(x)
    return money(x)


def share(x: float, digits: int = 1) -> str:
    """A probability or a fraction as a percentage: 41.7%."""
    return f"{x:.{digits}%}" if math.isfinite(x) else "n/a"


def per_year(x: float) -> str:
    """An annual rate (IRR): 259%/yr, 16.5%/yr, -1.46%/yr; "n/a" where undefined."""
    if not math.isfinite(x):
        return "n/a"
    pct = 100 * x
    return f"{pct:.0f}%/yr" if abs(pct) >= 99.95 else f"{pct:.3g}%/yr"


def months(x: float) -> str:
    """A payback: "20 mo", or "never" where it is beyond the horizon (+inf)."""
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "never"
    return f"{x:.0f} mo"


def utilization(x: float) -> str:
    """A break-even utilization: 53%, or "unreachable" above 100% (no utilization pays)."""
    if math.isnan(x):
        return "n/a"
    if x > 1.0:
        return "unreachable"
    return f"{x:.0%}"


def number(x: float, unit: str = "") -> str:
    """Three significant figures with a unit after it: 0.0747 $/Mtok, 4.02x."""
    if not math.isfinite(x):
        return "n/a" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    text = f"{x:.2f}" if unit == "x" and abs(x) < 9.995 else f"{x:.3g}"
    if "e" in text:  # (large or tiny: the engineering step instead)
        text = money(x).replace("$", "")
    if unit == "x":
        return text + "x"
    return f"{text} {unit}" if unit else text


def value(metric: str, x: float) -> str:
    """A value of a metric (summary.csv's names) in its own form."""
    if metric == "irr" or metric == "equity_irr":
        return per_year(x)
    if metric == "payback_months":
        return months(x)
    if metric in ("operating_margin", "mean_utilization"):
        return share(x)
    if metric == "breakeven_utilization":
        return utilization(x)
    if metric == "roi_multiple" or metric == "net_roi":
        return number(x, "x")
    if metric.endswith("per_mtok_usd") or metric.endswith("_usd_per_mtok"):
        return number(x, "$/Mtok")
    if metric.endswith("per_gpu_hour_usd") or metric.endswith("_usd_per_gpu_hour"):
        return "n/a" if not math.isfinite(x) else f"${x:.3g}/GPU-h"
    if metric.endswith("_usd"):
        return money(x)
    return number(x)

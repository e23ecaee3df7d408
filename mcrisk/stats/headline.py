"""The decision-first headline of a run, from its tables: what an investment committee reads first.

Per system (and the portfolio row, where the study has one), from summary.csv and risk.csv:
the P50 and P5 of NPV in dollars, P(loss) = P(NPV < 0), the CVaR 95 of NPV as the mean NPV of
the worst 5% of scenarios (``-cvar95_usd``: risk.csv writes CVaR as a loss), the median IRR,
the median payback in months (+inf, "never", where the median scenario does not pay back within
the horizon), and from calibration.csv the first-year revenue per GPU-hour against the GPU
rental market's band.

One sentence names the best system by **P50 of NPV** (the portfolio row is the fleet, not a
choice among systems, and takes no part) and, from comparison.csv, how it fares against the
runner-up on the same scenarios: P(best's NPV > runner-up's) and the median of the paired
difference (which is not the difference of the two medians).
"""

from __future__ import annotations

import math

import pandas as pd

from mcrisk.stats import formats as ft

COLUMNS = (
    "system",
    "npv_p50",
    "npv_p5",
    "p_loss",
    "npv_cvar95",
    "irr_p50",
    "payback_p50_months",
    "calibration_p50",
    "band_low",
    "band_high",
    "calibration_status",
)
PORTFOLIO = "portfolio"


def _summary_value(summary: pd.DataFrame, system: str, metric: str, stat: str) -> float:
    part = summary[(summary["system"] == system) & (summary["metric"] == metric)]
    return float(part[stat].iloc[0]) if len(part) and stat in part else math.nan


def headline_table(summary: pd.DataFrame, risk: pd.DataFrame, calibration: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per row of risk.csv (systems, then the portfolio), the columns of COLUMNS."""
    cal = calibration.set_index("system") if calibration is not None and len(calibration) else None
    rows = []
    for r in risk.to_dict("records"):
        s = str(r["system"])
        has_cal = cal is not None and s in cal.index
        rows.append(
            (
                s,
                _summary_value(summary, s, "npv_usd", "p50"),
                _summary_value(summary, s, "npv_usd", "p5"),
                float(r["p_loss"]),
                -float(r.get("cvar95_usd", math.nan)),
                _summary_value(summary, s, "irr", "p50"),
                float(r.get("median_payback_months", math.nan)),
                float(cal.loc[s, "p50"]) if has_cal else math.nan,
                float(cal.loc[s, "band_low"]) if has_cal else math.nan,
                float(cal.loc[s, "band_high"]) if has_cal else math.nan,
                str(cal.loc[s, "status"]) if has_cal else "",
            )
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def headline_cells(row: dict) -> list[str]:
    """One system's headline as text, as the terminal and the report show it: the system, NPV
    P50 and P5, P(loss), CVaR 95, IRR P50 and payback P50."""
    return [
        str(row["system"]),
        ft.money(row["npv_p50"]),
        ft.money(row["npv_p5"]),
        ft.share(row["p_loss"]),
        ft.money(row["npv_cvar95"]),
        ft.per_year(row["irr_p50"]),
        ft.months(row["payback_p50_months"]),
    ]


def calibration_text(row: dict) -> str:
    """The calibration line of one headline row: "$6.76/GPU-h in the first year; market $3.30-$9.00: inside"."""
    if not math.isfinite(row["calibration_p50"]):
        return ""
    got = f"${row['calibration_p50']:.2f}/GPU-h"
    if row["calibration_status"] == "no band" or not math.isfinite(row["band_low"]):
        return f"{got} (no market band)"
    return f"{got} vs market ${row['band_low']:.2f}-${row['band_high']:.2f}: {row['calibration_status']}"


def why_no_comparison(manifest: dict) -> str:
    """Why a run has no comparison.csv, and what to run for one, from the options it was run with."""
    opts = manifest.get("options") or {}
    folder = manifest.get("folder") or "RUN"
    if opts.get("write_scenarios") is False:
        return "it was run with --no-scenarios: run it without that option for the paired odds"
    if opts.get("analyze") is False:
        return f"it was run with --no-analyze: mcrisk analyze {folder} adds them"
    if opts.get("columns"):
        return "its --columns kept no NPV: run it keeping npv_usd for the paired odds"
    return f"mcrisk analyze {folder} adds them"


def best_sentence(table: pd.DataFrame, comparison: pd.DataFrame | None = None, missing: str = "") -> str:
    """The best system by P50 of NPV and by how much it beats the next (see the module's note);
    `missing` says why there is no `comparison` (:func:`why_no_comparison`)."""
    systems = table[(table["system"] != PORTFOLIO) & table["npv_p50"].notna()]
    if systems.empty:
        return ""
    ranked = systems.sort_values("npv_p50", ascending=False, kind="stable")
    best = ranked.iloc[0]
    head = f"{best['system']} has the highest median NPV ({ft.money(best['npv_p50'])})"
    if len(ranked) < 2:
        return head + "."
    nxt = ranked.iloc[1]
    head += f", ahead of {nxt['system']} ({ft.money(nxt['npv_p50'])})"
    pair = _pair(comparison, str(best["system"]), str(nxt["system"]))
    if pair is None:
        return head + (f" (no paired comparison: {missing})." if missing else ".")
    return (
        f"{head}: it has the higher NPV in {ft.share(pair['p_a_greater'])} of the same scenarios, "
        f"by a median of {ft.money(pair['diff_p50'])}."
    )


def _pair(comparison: pd.DataFrame | None, a: str, b: str) -> dict | None:
    if comparison is None or comparison.empty:
        return None
    hit = comparison[
        (comparison["metric"] == "npv_usd") & (comparison["system_a"] == a) & (comparison["system_b"] == b)
    ]
    return hit.iloc[0].to_dict() if len(hit) else None

"""The report's sections on financing (debt and tax: the equity's NPV and IRR, debt service cover)
and on the portfolio row (the fleet as one investment against the sum of its systems). Each
returns "" when the run has nothing for it (no debt or tax; no portfolio row), and the page
leaves the section out."""

from __future__ import annotations

import math

import pandas as pd

from mcrisk.report import markup as mu

PORTFOLIO = "portfolio"


def _stats(run: dict) -> pd.DataFrame:
    """summary.csv indexed by (system, metric)."""
    s = run["summary"].assign(system=lambda d: d["system"].astype(str))
    return s.set_index(["system", "metric"])


def _get(table: pd.DataFrame, system: str, metric: str, col: str) -> float:
    try:
        return float(table.loc[(system, metric), col])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _dscr(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return "no debt" if math.isinf(x) and x > 0 else f"{x:.2f}x"


def _prob(r: dict, col: str) -> str:
    v = r.get(col, math.nan)
    se = r.get(col + "_mcse", math.nan)
    return mu.fmt(col, v) + (f" ± {se:.1%}" if isinstance(se, float) and math.isfinite(se) else "")


def has_financing(run: dict) -> bool:
    """Debt (risk.csv has P(equity NPV < 0)) or a tax (some system pays tax in the mean)."""
    if "p_equity_loss" in run["risk"].columns:
        return True
    s = run["summary"]
    tax = s.loc[s["metric"] == "tax_usd", "mean"]
    return bool(len(tax) and (tax.abs() > 0).any())


def financing(run: dict) -> str:
    """Equity NPV and IRR, P(equity NPV < 0); with debt the lowest debt service cover and its
    covenant breach; interest and tax paid; a sentence on what it means."""
    if not has_financing(run):
        return ""
    st, risk = _stats(run), run["risk"].assign(system=lambda d: d["system"].astype(str)).set_index("system")
    debt = "p_equity_loss" in risk.columns
    equity, cover, said = [], [], []
    for s in run["systems"]:
        r = risk.loc[s].to_dict() if s in risk.index else {}
        equity.append(
            [
                s,
                *(mu.fmt("equity_npv_usd", _get(st, s, "equity_npv_usd", q)) for q in ("p5", "p50", "p95")),
                _prob(r, "p_equity_loss") if debt else mu.fmt("p_loss", r.get("p_loss", math.nan)),
                mu.fmt("irr", _get(st, s, "equity_irr", "p50")),
                mu.fmt("npv_usd", _get(st, s, "npv_usd", "p50")),
            ]
        )
        row = [s]
        if debt:
            row += [_dscr(_get(st, s, "min_dscr", "p5")), _dscr(_get(st, s, "min_dscr", "p50"))]
            row.append(_prob(r, "p_min_dscr_below_1_2"))
        row += [mu.fmt("interest_usd", _get(st, s, "interest_usd", "mean"))] if debt else []
        row += [mu.fmt("tax_usd", _get(st, s, "tax_usd", "mean"))]
        cover.append(row)
        if debt and s != PORTFOLIO and r:
            said.append(
                f"{s}: owners lose money in {mu.fmt('p_', r['p_equity_loss'])} of scenarios, "
                f"cover falls below 1.2x in {mu.fmt('p_', r.get('p_min_dscr_below_1_2', math.nan))}"
            )
    loss = "P(equity NPV < 0) ± MCSE" if debt else "P(NPV < 0)"
    out = [
        mu.table(
            ["system", "equity NPV P5", "equity NPV P50", "equity NPV P95", loss, "equity IRR P50", "project NPV P50"],
            equity,
            "num2",
        )
    ]
    heads = ["system"]
    heads += ["min DSCR P5", "min DSCR P50", "P(min DSCR < 1.2) ± MCSE", "interest (mean)"] if debt else []
    out.append(mu.table([*heads, "tax (mean)"], cover, "num2"))
    out.append(
        mu.note(
            "Equity NPV: the owners' flows (their share of the capex, cash flow after debt service and levered "
            "tax, resale value less the loan left) discounted at the cost of equity. Min DSCR: each scenario's "
            "lowest month of cash flow after tax over interest and principal due (docs/model.md)."
        )
    )
    if debt:
        means = (
            "What this means: " + "; ".join(said) + ". Below 1.2x lenders' covenants usually bite; below 1x the "
            "system cannot pay its lender from its own cash."
        )
    else:
        means = (
            "What this means: the study pays tax but borrows nothing, so the owners' NPV is the project's after tax."
        )
    return mu.means(means) + "".join(out)


def portfolio(run: dict) -> str:
    """The fleet (portfolio row) against the sum of its systems: mean, P5, P50, P95 and CVaR 95 of
    NPV, and capex; a sentence on how much holding them together spreads the risk."""
    systems = [s for s in run["systems"] if s != PORTFOLIO]
    if PORTFOLIO not in run["systems"] or not systems:
        return ""
    st, risk = _stats(run), run["risk"].assign(system=lambda d: d["system"].astype(str)).set_index("system")
    rows, diff = [], {}
    for label, metric, col in (
        ("mean NPV", "npv_usd", "mean"),
        ("NPV P5 (1 in 20 worse)", "npv_usd", "p5"),
        ("NPV P50", "npv_usd", "p50"),
        ("NPV P95", "npv_usd", "p95"),
        ("CVaR 95% (mean loss of the worst 5%)", "cvar95_usd", None),
        ("capex (mean)", "capex_usd", "mean"),
    ):
        if col is None:
            parts = [float(risk.loc[s, metric]) if s in risk.index else math.nan for s in systems]
            fleet = float(risk.loc[PORTFOLIO, metric]) if PORTFOLIO in risk.index else math.nan
        else:
            parts = [_get(st, s, metric, col) for s in systems]
            fleet = _get(st, PORTFOLIO, metric, col)
        total = math.fsum(parts)
        if abs(fleet - total) <= 1e-9 * max(abs(fleet), abs(total)):  # (a sum: equal to float rounding)
            fleet = total
        diff[label] = fleet - total
        sign = "+" if fleet - total > 0 else ""
        rows.append([label, *(mu.fmt(metric, v) for v in parts), mu.fmt(metric, total), mu.fmt(metric, fleet),
                     sign + mu.fmt(metric, fleet - total)])  # fmt: skip
    p_loss = {s: float(risk.loc[s, "p_loss"]) for s in [*systems, PORTFOLIO] if s in risk.index}
    rows.append(["P(NPV < 0)", *(mu.fmt("p_loss", p_loss.get(s, math.nan)) for s in systems), "",
                 mu.fmt("p_loss", p_loss.get(PORTFOLIO, math.nan)), ""])  # fmt: skip
    table = mu.table(["", *systems, "sum of systems", "fleet (portfolio)", "fleet - sum"], rows, "num2")
    p5_gain, cvar_gain = diff["NPV P5 (1 in 20 worse)"], -diff["CVaR 95% (mean loss of the worst 5%)"]
    means = (
        f"What this means: held as one fleet, the 1-in-20 bad case is {mu.fmt('npv_usd', abs(p5_gain))} "
        f"{'better' if p5_gain >= 0 else 'worse'} than the systems' own 1-in-20 bad cases added up, and the mean "
        f"loss in the worst 5% {mu.fmt('npv_usd', abs(cvar_gain))} {'smaller' if cvar_gain >= 0 else 'larger'}: "
        "what it is worth that their bad scenarios do not all come together."
    )
    note = mu.note(
        "The mean and capex of the fleet are the sums of the systems'; percentiles and CVaR are not, and the "
        "difference is what diversification is worth. CVaR is a loss in $ (positive = money lost)."
    )
    return mu.means(means) + table + note

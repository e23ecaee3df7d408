"""The sections of the report page: each takes the loaded run (``report.data.load_run``) and
returns its HTML; the figure sections save their figures through a :class:`markup.Figures`.
A section whose input is missing returns a note saying what to run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mcrisk.report import figures as fg
from mcrisk.report import markup as mu
from mcrisk.report import notes
from mcrisk.report.data import UTILIZATION_BINS, cost_components, margin_bins, payback_months
from mcrisk.stats.compare import win_matrix
from mcrisk.study.labels import input_label, metric_label

KEY_METRICS = {  # the summary table's metrics, in order, with their labels
    "npv_usd": "NPV",
    "irr": "IRR (annual)",
    "roi_multiple": "revenue per $ of capex (ROI multiple)",
    "payback_months": "payback",
    "operating_margin": "operating margin",
    "cost_per_mtok_usd": "cost per Mtok sold",
    "levelized_cost_per_mtok_usd": "levelized cost per Mtok",
    "revenue_usd": "revenue",
    "capex_usd": "capex",
    "opex_usd": "opex",
    "tokens": "tokens served",
    "mean_utilization": "mean utilization",
}


def _pct(run: dict, metric: str) -> dict[str, dict[str, float]]:
    s = run["summary"]
    part = s[s["metric"] == metric].set_index("system")
    cols = [c for c in part.columns if c.startswith("p") and c[1:].isdigit()]
    return {sys: part.loc[sys, cols].astype(float).to_dict() for sys in run["systems"] if sys in part.index}


def distributions(run: dict, figs: mu.Figures) -> str:
    colours, rows = fg.palette(run["systems"]), run["scenarios"]
    out = []
    for metric, name, what in (("npv_usd", "npv", "NPV"), ("roi_multiple", "roi_multiple", "revenue per $ of capex")):
        pct = _pct(run, metric)
        if not pct:
            out.append(mu.note(f"summary.csv has no {metric}."))
            continue
        # Only what can be drawn: systems whose percentiles are finite, and the finite samples.
        pct = {s: p for s, p in pct.items() if np.isfinite(list(p.values())).all()}
        if not pct:
            out.append(mu.note(f"No distribution of {what} to draw: its percentiles are not finite (NaN or infinite)."))
            continue
        samples = None
        if rows is not None and metric in rows:
            samples = {s: rows.loc[rows["system"] == s, metric].to_numpy(np.float64) for s in pct}
            samples = {s: x[np.isfinite(x)] for s, x in samples.items() if np.isfinite(x).any()} or None
        fig = fg.distribution(metric, pct, colours, samples)
        if samples:
            n = min(len(v) for v in samples.values())
            where = "all scenarios" if rows.attrs.get("share", 1) >= 1 else f"a fixed sample of {n:,} scenarios"
            cap = f"{what[0].upper() + what[1:]} per system: density from {where}; P5/P50/P95 from summary.csv over all scenarios."
        else:
            cap = (
                f"{what[0].upper() + what[1:]} per system, drawn through the summary percentiles P1..P99: this run kept no "
                f"scenarios{'' if rows is None else f' with {metric}'} (run without --no-scenarios for densities)."
            )
        if samples:
            cap += " Linear axis; density: Gaussian kernel, Silverman's bandwidth, each curve scaled to its peak."
        out.append(figs(fig, name, f"Distribution of {what} per system", cap))
    return "".join(out)


def cash_flow(run: dict, figs: mu.Figures) -> str:
    monthly = run["monthly"]
    if monthly is None or "quantity" not in monthly:
        why = (
            "it was made with --no-monthly: run it again without --no-monthly"
            if notes.options(run).get("monthly") is False
            else "run it again with this version of mcrisk run, which writes the monthly bands,"
        )
        return mu.note(f"This run has no monthly.parquet: {why} to see cash flow by month.")
    cum = monthly[monthly["quantity"] == "cumulative_cash_flow_usd"].assign(system=lambda d: d["system"].astype(str))
    cum = cum[cum["system"].isin(run["systems"])]
    if cum.empty or not np.isfinite(cum[["p5", "p25", "p50", "p75", "p95"]].to_numpy(np.float64)).any():
        return mu.note("No cash flow by month to draw: monthly.parquet has no finite band for these systems.")
    pay = payback_months(cum)
    risk = run["risk"].set_index("system")
    fig = fg.fan_chart(cum, fg.palette(run["systems"]), pay)
    med = "; ".join(
        f"{s} {mu.fmt('payback_months', float(risk.loc[s, 'median_payback_months']))}"
        for s in run["systems"]
        if s in risk.index and "median_payback_months" in risk
    )
    cap = (
        "Cumulative cash flow (starting at minus the capex, undiscounted, without resale value) by month: "
        "bands P5-P95 and P25-P75, line P50; dashed line: first month the P50 is >= 0. "
        f"Median payback over scenarios (risk.csv): {med}."
    )
    return figs(fig, "cash_flow", "Fan chart of cumulative cash flow by month per system", cap)


def costs(run: dict, figs: mu.Figures) -> str:
    costs = cost_components(run["summary"], run["systems"])
    if costs.empty or not np.isfinite(costs.to_numpy()).all():
        return mu.note(
            "summary.csv lacks the cost components (depreciation, energy, colocation, maintenance, licences, tokens)."
        )
    cap = (
        "Cost per million tokens served, split by component: each component's mean over all scenarios divided by "
        "the mean tokens (a ratio of means, so the total differs from the mean or P50 of cost_per_mtok_usd "
        "in the summary table, which is a mean of ratios)."
    )
    return figs(
        fg.cost_structure(costs, fg.palette(run["systems"])),
        "cost_structure",
        "Cost per million tokens by component",
        cap,
    )


def utilization(run: dict, figs: mu.Figures) -> str:
    rows = run["scenarios"]
    need = {"mean_utilization", "operating_margin"}
    if rows is None or not need <= set(rows.columns):
        return mu.note(
            f"Needs the scenarios' mean_utilization and operating_margin: {notes.rerun_for_rows(run, need)}."
        )
    bins = margin_bins(rows)
    if bins.empty:
        return mu.note("Too few scenarios with a finite operating margin to bin by utilization.")
    cap = (
        f"Operating margin against the scenario's mean utilization, in {UTILIZATION_BINS} equal-count bins of "
        f"{'all' if rows.attrs.get('share', 1) >= 1 else 'a fixed sample of'} scenarios: P50 line, P10-P90 band."
    )
    return figs(
        fg.margin_by_utilization(bins, fg.palette(run["systems"])),
        "margin_by_utilization",
        "Operating margin by mean utilization",
        cap,
    )


def metric_name(metric: str) -> str:
    """A metric's name in a sentence or a title ("NPV", "cost per Mtok")."""
    return metric_label(metric, unit=False)


def drivers_metric(run: dict) -> str:
    """The metric sensitivity.csv ranks the inputs of (NPV where it has it; mcrisk analyze --metric)."""
    sens = run["sensitivity"]
    if sens is None or sens.empty or (sens["metric"] == "npv_usd").any():
        return "npv_usd"
    return str(sens["metric"].iloc[0])


def drivers_title(run: dict) -> str:
    """The title of the drivers section, naming the metric its chart shows."""
    metric = drivers_metric(run)
    return "What drives " + (metric_name(metric) if metric != "npv_usd" else "NPV")


def drivers(run: dict, figs: mu.Figures) -> str:
    sens = run["sensitivity"]
    if sens is None or sens.empty:
        return notes.missing_analysis(run, "what drives NPV")
    metric = drivers_metric(run)
    name = metric_label(metric)
    part = sens[sens["metric"] == metric].assign(
        system=lambda d: d["system"].astype(str), input=lambda d: d["input"].astype(str).map(input_label)
    )
    base = {s: v["p50"] for s, v in _pct(run, metric).items()}
    fig = fg.tornado(part, base, fg.palette(run["systems"]), metric)
    cap = (
        f"The inputs that move {name} most (sensitivity.csv, ranked by first-order share of variance): the "
        f"P50 of {metric} among scenarios where the input is in its bottom 10% (light) or top 10% (dark)."
    )
    return figs(fig, "drivers", f"Tornado chart of the top drivers of {metric_name(metric)}", cap)


def comparison(run: dict, figs: mu.Figures) -> str:
    comp = run["comparison"]
    if len(run["systems"]) < 2:
        return mu.note("One system only: nothing to compare.")
    if comp is None or not (comp.get("metric") == "npv_usd").any():
        return notes.missing_analysis(run, "which system wins scenario by scenario")
    wins = win_matrix(comp, "npv_usd")
    cap = (
        "P(the row system's NPV > the column system's) in the same scenario: the systems share every market draw "
        "(common random numbers), so each scenario is a paired comparison."
    )
    return figs(fg.win_matrix(wins), "comparison", "Matrix of P(row beats column) on NPV", cap)


_STRESS_COLUMNS = {  # stress.csv column -> (its metric, header), in two tables: NPV and risk, then operations
    "npv_usd_p5": ("npv_usd", "NPV P5"),
    "npv_usd_p50": ("npv_usd", "NPV P50"),
    "npv_usd_p95": ("npv_usd", "NPV P95"),
    "npv_usd_p50_change": ("npv_usd", "NPV P50 vs base"),
    "p_loss": ("p_loss", "P(loss)"),
    "cvar95_usd": ("cvar95_usd", "CVaR 95%"),
}
_STRESS_OPERATIONS = {
    "roi_multiple_p50": ("roi_multiple", "revenue per $ of capex P50"),
    "irr_p50": ("irr", "IRR P50"),
    "payback_months_p50": ("payback_months", "payback P50"),
    "cost_per_mtok_usd_p50": ("cost_per_mtok_usd", "$/Mtok P50"),
    "operating_margin_p50": ("operating_margin", "margin P50"),
}


def stress(run: dict) -> str:
    st = run["stress"]
    if st is None or st.empty:
        return notes.no_stress(run)

    def cell(columns: dict, c: str, x: float) -> str:
        return ("+" if c.endswith("_change") and x > 0 else "") + mu.fmt(columns[c][0], x)

    out = []
    for columns in (_STRESS_COLUMNS, _STRESS_OPERATIONS):
        cols = [c for c in columns if c in st]
        if cols:
            rows = [[r["stress"], r["system"], *(cell(columns, c, r[c]) for c in cols)] for r in st.to_dict("records")]
            out.append(mu.table(["stress", "system", *(columns[c][1] for c in cols)], rows))
    if "overrides" in st:
        what = st.drop_duplicates("stress")
        rows = [[r["stress"], "" if pd.isna(r["overrides"]) else r["overrides"]] for r in what.to_dict("records")]
        out.append(mu.table(["stress", "overrides (what the stress changes)"], rows, "overrides", long=(1,)))
    return "".join(out)


def breakeven(run: dict) -> str:
    be = run["breakeven"]
    if be is None or be.empty:
        return mu.note(
            "This run has no breakeven.csv: rerun it with a version of mcrisk run that writes break-even "
            "values to see what the market must give for each system to pay."
        )
    label = {
        "initial_token_price_usd_per_mtok": ("initial token price ($/Mtok)", "price_per_mtok"),
        "mean_utilization": ("mean utilization", "mean_utilization"),
    }
    rows = []
    for r in be.to_dict("records"):
        name, kind = label.get(r["quantity"], (r["quantity"], r["quantity"]))
        rng = [
            " / ".join(mu.fmt(kind, r.get(f"{side}_{q}", math.nan)) for q in ("p5", "p50", "p95"))
            for side in ("breakeven", "market")
        ]
        p = f"{r['p_market_clears']:.1%} ± {r.get('p_market_clears_mcse', math.nan):.1%}"
        rows.append([r["system"], name, *rng, p])
    return mu.table(
        ["system", "quantity", "break-even P5 / P50 / P95", "market P5 / P50 / P95", "P(market clears)"], rows
    ) + mu.note("A break-even mean utilization above 100% means no utilization makes that scenario pay.")


def claims(run: dict) -> str:
    cl = run["claims"]
    if cl is None or cl.empty:
        return mu.note(
            "Not a claims run: mcrisk claims writes claims.csv with each vendor claim reproduced and put under uncertainty."
        )
    rows = [
        [
            r.get("check", ""),
            r.get("text", ""),
            f"{r.get('quantity', '')} {r.get('holds_if', '')}",
            f"{r.get('point_value', math.nan):.5g}",
            "yes" if r.get("reproduced") in (True, "True", "true", 1) else "no",
            f"{r['p_holds']:.2%} ± {r.get('p_holds_mcse', math.nan):.2%}"
            if r["p_holds"] > 0
            else f"0 of {r.get('scenarios', 0):,}",
            " / ".join(f"{r.get(q, math.nan):.4g}" for q in ("p5", "p50", "p95")),
        ]
        for r in cl.to_dict("records")
    ]
    return mu.table(
        ["check", "claim", "holds if", "point value", "reproduced", "P(holds) ± MCSE", "P5 / P50 / P95"], rows
    )


def summary(run: dict) -> str:
    s = run["summary"].assign(system=lambda d: d["system"].astype(str))
    order = {sys: i for i, sys in enumerate(run["systems"])}
    key = s[s["metric"].isin(list(KEY_METRICS))].assign(
        o1=lambda d: d["metric"].map(list(KEY_METRICS).index), o2=lambda d: d["system"].map(order)
    )
    qs = ("p5", "p25", "p50", "p75", "p95")
    rows, last = [], None
    for r in key.sort_values(["o1", "o2"]).to_dict("records"):
        m = r["metric"]
        rows.append(
            [
                KEY_METRICS[m] if m != last else "",
                r["system"],
                mu.fmt(m, r["mean"]),
                *(mu.fmt(m, r[q]) for q in qs),
                mu.fmt(m, r["mcse_mean"]) if pd.notna(r.get("mcse_mean")) else "n/a",
            ]
        )
        last = m
    table = mu.table(["metric", "system", "mean", "P5", "P25", "P50", "P75", "P95", "MCSE of mean"], rows, "summary")
    allq = [c for c in s.columns if c.startswith("p") and c[1:].isdigit()]
    full = mu.table(
        ["metric", "system", "mean", *(q.upper() for q in allq)],
        [
            [r["metric"], r["system"], mu.fmt(r["metric"], r["mean"]), *(mu.fmt(r["metric"], r[q]) for q in allq)]
            for r in s.to_dict("records")
        ],
        "summary",
        long=(0,),
    )
    return (
        table
        + mu.note("Over all scenarios; MCSE of the mean is its Monte Carlo standard error.")
        + f"<details><summary>Every metric (summary.csv)</summary>{full}</details>"
    )


def risk(run: dict) -> str:
    cols = [
        ("p_loss", "P(loss)"),
        ("var95_usd", "VaR 95%"),
        ("cvar95_usd", "CVaR 95%"),
        ("var99_usd", "VaR 99%"),
        ("cvar99_usd", "CVaR 99%"),
        ("p_payback_within_horizon", "P(payback in horizon)"),
        ("median_payback_months", "median payback"),
        ("p_roi_multiple_ge_15", "P(revenue per $ of capex >= 15x)"),
    ]
    rows = []
    for r in run["risk"].to_dict("records"):
        cells = []
        for c, _ in cols:
            v = mu.fmt(c, r.get(c, math.nan))
            cells.append(f"{v} ± {r[c + '_mcse']:.1%}" if c + "_mcse" in r and c.startswith("p_") else v)
        rows.append([r["system"], *cells])
    debt = (
        " P(min DSCR < 1.2) and P(equity NPV < 0) are in the financing section."
        if "p_equity_loss" in run["risk"]
        else ""
    )
    return mu.table(["system", *(h for _, h in cols)], rows, "num2") + mu.note(
        "VaR and CVaR are losses of NPV in $ (positive = money lost); ± is the Monte Carlo standard error." + debt
    )


def manifest(run: dict) -> str:
    m = run["manifest"]
    prec = m.get("precision") or {}
    facts = [
        ("study", f"{m.get('study')} (sha256 {str(m.get('study_sha256', ''))[:16]}…)"),
        ("scenarios, seed, sampler", f"{m.get('scenarios', 0):,}, seed {m.get('seed')}, {m.get('sampler')}"),
        ("horizon", f"{m.get('horizon_months')} months"),
        ("precision", ", ".join(f"{k} {v}" for k, v in prec.items()) if isinstance(prec, dict) else prec),
        ("chunks", f"{m.get('chunks')} of {m.get('chunk_size')} scenarios"),
        ("device", f"{m.get('backend')}: {', '.join(map(str, m.get('devices') or []))}"),
        ("platform", m.get("platform")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())),
        ("command", " ".join(map(str, m["command"])) if m.get("command") else "from Python"),
    ]
    if m.get("merged_from"):
        facts.append(("merged from", ", ".join(map(str, m["merged_from"]))))
    out = mu.table(None, [[k, v] for k, v in facts], "facts")
    secs = m.get("seconds") or {}
    total = secs.get("total") or sum(secs.values()) or 1.0
    out += mu.table(
        ["stage", "seconds", "share of total"],
        [[k, f"{v:.2f}", f"{v / total:.0%}"] for k, v in secs.items()],
        "timings",
    )
    status = m.get("status") or {}
    if status:
        out += mu.note(
            "Non-finite values (counted, not dropped from the counts above): "
            + "; ".join(f"{k}: " + ", ".join(f"{n} {kind}" for kind, n in v.items() if n) for k, v in status.items())
        )
    return out


def methods(run: dict) -> str:
    m = run["manifest"]
    q = m.get("quantiles") or {}
    err = q.get("relative_error")
    acc = (
        f"within {err:.2%} (relative) of the exact percentile"
        if isinstance(err, (int, float))
        else "from a quantile sketch"
    )
    d = m.get("diagnostics") or {}
    text = [
        f"Each of the {m.get('scenarios', 0):,} scenarios draws every uncertain input of the study once and a monthly "
        "market path (token price, utilization, electricity) shared by all systems, then books each system's monthly "
        "revenue, energy, colocation, maintenance and licence costs; NPV, IRR, payback and cost per million tokens follow.",
        f"Means, standard deviations and probabilities are exact over all scenarios. Percentiles, VaR and CVaR come from "
        f"a log-bucket quantile sketch over all scenarios, {acc}. Each probability carries its Monte Carlo standard "
        f"error sqrt(p(1-p)/N); MCSE, ESS and R-hat come from ArviZ on the first {d.get('retained_draws', 0):,} "
        f"scenarios in {d.get('chains', 4)} chains, scaled to N.",
        "Densities and the utilization bins use the scenarios the run kept (at most a fixed 200,000 per system); "
        "the cost structure is a ratio of means. The ROI multiple is token revenue per dollar of capex, before any "
        "cost: it is not a return on investment.",
    ]
    version = (m.get("versions") or {}).get("mcrisk", "")
    docs = Path(__file__).resolve().parents[2] / "docs" / "model.md"  # present in a source checkout
    name = f'<a href="{mu.esc(docs.as_uri())}">docs/model.md</a>' if docs.is_file() else "<code>docs/model.md</code>"
    link = (
        f"The model, every formula and input, is documented in {name} of the mcrisk {mu.esc(version)} source; "
        "the files of a run folder in <code>docs/outputs.md</code>."
    )
    return "".join(f"<p>{mu.esc(t)}</p>" for t in text) + f"<p>{link}</p>"

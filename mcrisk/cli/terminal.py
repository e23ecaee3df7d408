"""What the `mcrisk` command prints: the headline table, the decision sections, the claims,
drivers and timings tables, and the number formats they share (rich; the library never
imports this module)."""

from __future__ import annotations

import math

from rich.console import Console

out_console = Console()
# Short metric names for the claims table.
_DEBT_COLUMNS = {"p_min_dscr_below_1_2": "P(min DSCR < 1.2)", "p_equity_loss": "P(equity NPV < 0)"}
_SHORT = {"roi_multiple": "ROI", "cost_per_mtok_usd": "$/Mtok", "revenue_usd": "revenue $", "npv_usd": "NPV $"}


def money(x: float) -> str:
    """$ amounts in k/M/B with 3 significant figures."""
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:,.3g}{suffix}"
    return f"{x:,.3g}"


def _fmt(metric: str, x: float) -> str:
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if metric.endswith("_usd") and "per_mtok" not in metric:
        return money(x)
    if metric == "operating_margin":
        return f"{x:.1%}"
    if metric == "roi_multiple":
        return f"{x:.2f}x"
    return f"{x:.4g}"


def print_headline(result) -> None:
    from rich.table import Table

    t = Table(
        title=f"{result.study.name}: {result.manifest['scenarios']:,} scenarios, {result.manifest['horizon_months']} months (P5 / P50 / P95)"
    )
    t.add_column("system")
    labels = {
        "npv_usd": "NPV $",
        "roi_multiple": "ROI multiple",
        "operating_margin": "operating margin",
        "cost_per_mtok_usd": "cost $/Mtok",
    }
    for label in labels.values():
        t.add_column(label, justify="right")
    t.add_column("P(loss)", justify="right")
    # a study with debt: the lender's and the equity's odds (risk.csv)
    debt = [(c, h) for c, h in _DEBT_COLUMNS.items() if c in result.risk.columns]
    for _, header in debt:
        t.add_column(header, justify="right")
    risk = result.risk.set_index("system")
    for row in result.headline().to_dict("records"):
        cells = [" / ".join(_fmt(m, row[f"{m}:{p}"]) for p in ("p5", "p50", "p95")) for m in labels]
        extra = [f"{float(risk.loc[row['system'], c]):.1%}" for c, _ in debt]
        t.add_row(row["system"], *cells, f"{row['p_loss']:.1%}", *extra)
    out_console.print(t)


def _num(x) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.6g}"


def value_text(v) -> str:
    """A study value for a table: a number, or a DIST as `triangular(low=1, mode=2, high=3)`."""
    if isinstance(v, dict):
        order = ("value", "low", "mode", "high", "mean", "sd", "median", "sigma", "p5", "p95")
        keys = sorted((k for k in v if k != "dist"), key=lambda k: order.index(k) if k in order else len(order))
        args = ", ".join(f"{k}={_num(v[k]) if not isinstance(v[k], list) else v[k]}" for k in keys)
        return f"{v.get('dist', '')}({args})"
    return "-" if v is None else _num(v)


def print_claims(table) -> None:
    """The claims table: each check's point reproduction, then P(holds) and its spread under uncertainty."""
    from rich.table import Table

    t = Table(title="vendor claims: reproduced from their stated assumptions, then under uncertainty")
    for col in ("claim", "holds if", "point", "repro.", "P(holds) ± MCSE", "P5", "P50", "P95"):
        t.add_column(col, justify="left" if col in ("claim", "holds if") else "right", overflow="fold")
    for r in table.to_dict("records"):
        metric, _, systems = r["quantity"].partition(" of ")
        p = f"{r['p_holds']:.4f} ± {r['p_holds_mcse']:.4f}" if r["p_holds"] > 0 else f"0 of {r['scenarios']:,}"
        t.add_row(
            r["check"],
            f"{_SHORT.get(metric, metric)} {systems.replace(' / ', '/')} {r['holds_if']}",
            f"{r['point_value']:.5g}",
            "yes" if r["reproduced"] else "[red]no[/]",
            p,
            *(f"{r[q]:.4g}" for q in ("p5", "p50", "p95")),
        )
    out_console.print(t)
    for r in table.to_dict("records"):
        if not r["reproduced"]:
            out_console.print(f"{r['check']}: {r['reproduction']}", markup=False, highlight=False)
        if isinstance(r.get("uncertain_measures"), str):
            out_console.print(
                f"{r['check']} under uncertainty: {r['uncertain_measures']}", markup=False, highlight=False
            )


def print_analysis(sens, comp, metric: str = "npv_usd", top: int = 5) -> None:
    """The drivers of a metric (sensitivity.csv) and the P(A beats B) matrix (comparison.csv);
    either table may be None (not written: a run with --columns may lack what it needs)."""
    import pandas as pd
    from rich.table import Table

    from mcrisk.stats.compare import win_matrix

    if sens is not None:
        t = Table(
            title=f"what drives {metric}: top {top} inputs per system (first-order share of its variance, 90% CI)"
        )
        for col in ("system", "input", "Spearman", "first-order share", f"P50 {metric}: bottom -> top decile"):
            t.add_column(col, justify="left" if col in ("system", "input") else "right", overflow="fold")
        for r in sens[sens["rank"] <= top].to_dict("records"):
            share = f"{r['first_order']:.3f} [{r['first_order_lo']:.3f}, {r['first_order_hi']:.3f}]"
            t.add_row(
                r["system"],
                r["input"],
                f"{r['spearman']:+.2f}",
                share,
                f"{_fmt(metric, r['bottom_p50'])} -> {_fmt(metric, r['top_p50'])}",
            )
        out_console.print(t)
    wins = win_matrix(comp, metric) if comp is not None else ()
    if len(wins) > 1:
        out_console.print(f"P(row > column) in {metric}, scenario by scenario:", highlight=False)
        m = Table()
        m.add_column("")
        for s in wins.columns:
            m.add_column(str(s), justify="right")
        for a, row in wins.iterrows():
            m.add_row(str(a), *("-" if pd.isna(v) else f"{v:.1%}" for v in row))
        out_console.print(m)


def print_timings(manifest: dict) -> None:
    """Where a run's time went: each stage's seconds and share of the wall time, and the
    scenario-months per second of the engine's stages (from the manifest's `seconds`)."""
    from rich.table import Table

    secs, wall = manifest["seconds"], manifest["seconds"]["total"]
    n = manifest["scenarios"]
    if manifest.get("shard"):  # this shard's scenarios only
        lo, hi = manifest["shard"]["chunks"]
        n = min(n, hi * manifest["chunk_size"]) - lo * manifest["chunk_size"]
    work = n * manifest["horizon_months"]
    t = Table(
        title=f"where the time went: {n:,} scenarios x {manifest['horizon_months']} months on "
        f"{len(manifest['devices'])} {manifest['backend']} device(s)"
    )
    for col in ("stage", "seconds", "share of wall", "scenario-months/s"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for stage, v in secs.items():
        if stage != "total" and v > 0:
            rate = f"{work / v:.3g}" if stage in ("sample", "simulate", "summarize") else ""
            t.add_row(stage, f"{v:.2f}", f"{v / wall:.0%}" if wall > 0 else "", rate)
    engine_only = not (secs.get("stress") or secs.get("analyze"))
    t.add_row("wall", f"{wall:.2f}", "100%", f"{work / wall:.3g}" if engine_only and wall > 0 else "")
    out_console.print(t)
    out_console.print(
        "Stages are work done: Parquet is encoded in background threads while later chunks run, "
        "so the stages can add up to more than the wall time.",
        highlight=False,
    )


def _usd(x: float) -> str:
    return f"${x:.2f}" if math.isfinite(x) else "n/a"


def print_calibration(table) -> None:
    """calibration.csv as a short table (median (P5-P95) revenue per installed GPU-hour in the first
    live year against the catalog's rental band), then a warning line per system outside its band."""
    from rich.markup import escape
    from rich.table import Table

    if table is None or not len(table):
        return
    colour = {"inside": "green", "above": "yellow", "below": "yellow"}
    t = Table(title="calibration: revenue per installed GPU-hour, first live year, vs GPU rental prices")
    for col in ("system", "median (P5-P95) $/GPU-hour", "rental band $/GPU-hour", "status"):
        t.add_column(col, justify="left" if col == "system" else "right")
    for r in table.to_dict("records"):
        band = f"{_usd(r['band_low'])}-{_usd(r['band_high'])}" if r["status"] != "no band" else "-"
        ratio = f" ({r['ratio_to_band']:.3g}x)" if r["status"] in ("above", "below") else ""
        status = f"[{colour[r['status']]}]{r['status']}{ratio}[/]" if r["status"] in colour else escape(r["status"])
        median = f"{_usd(r['p50'])} ({_usd(r['p5'])}-{_usd(r['p95'])})"
        t.add_row(escape(str(r["system"])), median, band, status)
    out_console.print(t)
    for line in table["warning"]:
        if isinstance(line, str) and line:
            out_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


def print_sections(result) -> None:
    """The decision-analytics sections of a finished run: calibration, what must be true, stress
    tests, convergence, and the drivers and comparisons when the run has them."""
    import pandas as pd
    from rich.table import Table

    print_calibration(getattr(result, "calibration", None))
    if result.breakeven is not None:
        t = Table(title="what must be true: break-even per scenario vs the market (P5 / P50 / P95)")
        for col in (
            "system",
            "break-even P0 $/Mtok",
            "market P0",
            "break-even mean utilization",
            "market utilization",
            "P(market clears)",
        ):
            t.add_column(col, justify="left" if col == "system" else "right")
        be = result.breakeven.set_index(["system", "quantity"])
        for system in result.breakeven["system"].unique():  # (no portfolio row: breakeven.csv has none)
            price, util = be.loc[(system, "initial_token_price_usd_per_mtok")], be.loc[(system, "mean_utilization")]
            band = lambda r, side, f: " / ".join(f(r[f"{side}_p{p}"]) for p in (5, 50, 95))  # noqa: E731
            t.add_row(
                system,
                band(price, "breakeven", _num4),
                band(price, "market", _num4),
                band(util, "breakeven", _pct),
                band(util, "market", _pct),
                f"{price['p_market_clears']:.1%}",
            )
        out_console.print(t)
    if result.stress is not None:
        t = Table(title="stress tests on the same scenarios")
        for col in ("stress", "system", "NPV P5 / P50 / P95", "P(loss)", "ROI P50", "P50 NPV change"):
            t.add_column(col, justify="left" if col in ("stress", "system") else "right")
        for r in result.stress.to_dict("records"):
            t.add_row(
                r["stress"],
                r["system"],
                " / ".join(money(r[f"npv_usd_p{p}"]) for p in (5, 50, 95)),
                f"{r['p_loss']:.1%}",
                _fmt("roi_multiple", r["roi_multiple_p50"]),
                money(r["npv_usd_p50_change"]),
            )
        out_console.print(t)
    conv = result.manifest.get("convergence")
    if conv:
        verdict = "met" if conv["met"] else "NOT met"
        out_console.print(
            f"convergence: MCSE of {conv['target']} {verdict}: {conv['reached_mcse']:.4g} "
            f"after {conv['scenarios']:,} of at most {conv['maximum']:,} scenarios",
            highlight=False,
        )
        if not conv["met"]:  # (a manifest written before the reason was recorded: the maximum was reached)
            out_console.print(f"  why: {conv.get('reason', 'maximum reached')}", highlight=False)
    outputs = result.manifest["outputs"]
    print_analysis(
        *(pd.read_csv(result.folder / outputs[k]) if outputs.get(k) else None for k in ("sensitivity", "comparison")),
        top=3,
    )
    if outputs.get("analysis_skipped"):
        out_console.print(outputs["analysis_skipped"], highlight=False)


def _num4(x: float) -> str:
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{x:.0%}" if math.isfinite(x) else ("never" if x > 0 else "nan")

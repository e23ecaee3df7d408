"""What the `mcrisk` command prints: the decision-first headline, the decision sections, the
claims, drivers and timings tables (rich, and plain tables that fit the width: cli.layout; the
library never imports this module). Numbers are written by mcrisk.stats.formats, names by
mcrisk.study.labels, as in the report."""

from __future__ import annotations

import math

from rich.console import Console

from mcrisk.cli import layout
from mcrisk.stats import formats as ft
from mcrisk.study.labels import input_label, metric_label

out_console = Console()
# Short metric names for the claims table.
_SHORT = {"roi_multiple": "ROI", "cost_per_mtok_usd": "$/Mtok", "revenue_usd": "revenue $", "npv_usd": "NPV $"}
_DEBT_COLUMNS = {"p_min_dscr_below_1_2": "P(min DSCR < 1.2)", "p_equity_loss": "P(equity NPV < 0)"}
# Set by --wide: one line per row whatever the terminal's width.
_wide = {"on": False}
# From this width the stress table also shows IRR and payback.
WIDE_FROM = 110


def set_wide(on: bool) -> None:
    _wide["on"] = on


def width() -> int:
    """The width the plain tables fit: the terminal's (COLUMNS, else 80 off a terminal), or none with --wide."""
    return layout.UNLIMITED if _wide["on"] else out_console.width


def emit(lines: list[str]) -> None:
    """Print lines as they are: no markup, no highlighting, no wrapping (they fit already)."""
    for line in lines:
        out_console.print(line, markup=False, highlight=False, soft_wrap=True)


def say(text: str, first: str = "", rest: str = "") -> None:
    """A sentence or a note, wrapped at spaces to the width (at most 100 characters a line)."""
    emit(layout.wrap(text, min(width(), 100), first, rest))


money = ft.money


def _fmt(metric: str, x: float) -> str:
    return ft.value(metric, x)


def print_headline(result) -> None:
    """The decision first: per system (and the portfolio) NPV P50 and P5, P(loss), CVaR 95, median
    IRR and payback; the calibration line; the best system and by how much it beats the next."""
    import pandas as pd

    from mcrisk.stats.headline import best_sentence, headline_cells, why_no_comparison

    m = result.manifest
    table = result.headline()
    rows = [headline_cells(r) for r in table.to_dict("records")]
    headers = ["system", "NPV P50", "NPV P5", "P(loss)", "CVaR 95", "IRR P50", "payback\nP50"]
    emit(
        layout.table(
            headers,
            rows,
            width(),
            title=f"{result.study.name}: {m['scenarios']:,} scenarios, {m['horizon_months']} months",
        )
    )
    say(
        "NPV in dollars at the study's discount rate; P(loss) = P(NPV < 0); CVaR 95: the mean NPV of the "
        f"worst 5% of scenarios; payback: median months until the cash flows repay the capex (never: not "
        f"within the {m['horizon_months']} months)."
    )
    print_calibration(getattr(result, "calibration", None))
    comp = m["outputs"].get("comparison")
    missing = "" if comp else why_no_comparison({**m, "folder": str(result.folder)})
    sentence = best_sentence(table, pd.read_csv(result.folder / comp) if comp else None, missing)
    if sentence:
        say(sentence)
    _print_more(result)


def _print_more(result) -> None:
    """The rest of each row's distribution: NPV P95, the ratios and costs at P50, the lenders' odds."""
    s = result.summary.set_index(["system", "metric"])
    risk = result.risk.set_index("system")
    metrics = {
        "roi_multiple": "revenue per\n$ of capex",
        "operating_margin": "operating\nmargin",
        "cost_per_mtok_usd": "cost per Mtok\nsold ($/Mtok)",
        "levelized_cost_per_mtok_usd": "levelized cost\n($/Mtok)",
    }
    metrics = {k: v for k, v in metrics.items() if (result.risk["system"].iloc[0], k) in s.index}
    debt = [c for c in _DEBT_COLUMNS if c in result.risk.columns]
    rows = []
    for system in result.risk["system"]:

        def p(metric: str, q: str, system=system) -> float:
            return float(s.loc[(system, metric), q]) if (system, metric) in s.index else math.nan

        cells = [ft.money(p("npv_usd", "p95"))]
        cells += [ft.value(k, p(k, "p50")) for k in metrics]
        cells += [ft.share(float(risk.loc[system, c])) for c in debt]
        rows.append([str(system), *cells])
    headers = ["system", "NPV P95", *metrics.values(), *(_DEBT_COLUMNS[c] for c in debt)]
    title = "the rest of the distribution (P50 unless named; revenue per $ of capex is before any cost, not a return)"
    emit(layout.table(headers, rows, width(), title=title))


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
    rows = []
    for r in table.to_dict("records"):
        metric, _, systems = r["quantity"].partition(" of ")
        p = f"{r['p_holds']:.4f} ± {r['p_holds_mcse']:.4f}" if r["p_holds"] > 0 else f"0 of {r['scenarios']:,}"
        rows.append(
            [
                r["check"],
                f"{_SHORT.get(metric, metric)} {systems.replace(' / ', '/')} {r['holds_if']}",
                f"{r['point_value']:.5g}",
                "yes" if r["reproduced"] else "NO",
                p,
                *(f"{r[q]:.4g}" for q in ("p5", "p50", "p95")),
            ]
        )
    headers = ["claim", "holds if", "point", "repro-\nduced", "P(holds) ± MCSE", "P5", "P50", "P95"]
    title = "vendor claims: reproduced from their stated assumptions, then under uncertainty"
    emit(layout.table(headers, rows, width(), title=title, left=(1,)))
    for r in table.to_dict("records"):
        if not r["reproduced"]:
            say(f"{r['check']}: {r['reproduction']}")
        if isinstance(r.get("uncertain_measures"), str):
            say(f"{r['check']} under uncertainty: {r['uncertain_measures']}")


def print_analysis(sens, comp, metric: str = "npv_usd", top: int = 5) -> None:
    """The drivers of a metric (sensitivity.csv), a table per system, and the P(A beats B) matrix
    (comparison.csv); either table may be None (not written: a run with --columns may lack what it needs)."""
    import pandas as pd

    from mcrisk.stats.compare import win_matrix

    name = metric_label(metric)
    if sens is not None:
        say(f"what drives {name}: the top {top} inputs per system (first-order share of its variance, 90% CI)")
        part = (
            sens[(sens["rank"] <= top) & (sens["metric"] == metric)] if "metric" in sens else sens[sens["rank"] <= top]
        )
        for system, rows in part.groupby("system", sort=False):
            cells = [
                [
                    input_label(str(r["input"])),
                    f"{r['spearman']:+.2f}",
                    f"{r['first_order']:.2f} ({r['first_order_lo']:.2f}-{r['first_order_hi']:.2f})",
                    f"{_fmt(metric, r['bottom_p50'])}->{_fmt(metric, r['top_p50'])}",
                ]
                for r in rows.to_dict("records")
            ]
            headers = [f"{system}: input", "rank\ncorr.", "first-order\nshare", "P50: bottom->\ntop decile"]
            emit(layout.table(headers, cells, width()))
    wins = win_matrix(comp, metric) if comp is not None else ()
    if len(wins) > 1:
        say(f"P(row > column) in {name}, scenario by scenario:")
        rows = [[str(a), *("-" if pd.isna(v) else f"{v:.1%}" for v in row)] for a, row in wins.iterrows()]
        emit(layout.table(["", *(str(c) for c in wins.columns)], rows, width()))


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


def print_calibration(table) -> None:
    """calibration.csv: median (P5-P95) revenue per installed GPU-hour in the first live year
    against the catalog's rental band, then a warning line per system outside its band."""
    if table is None or not len(table):
        return
    rows = []
    for r in table.to_dict("records"):
        band = f"${r['band_low']:.2f}-${r['band_high']:.2f}" if r["status"] != "no band" else "-"
        ratio = f" ({r['ratio_to_band']:.3g}x)" if r["status"] in ("above", "below") else ""
        rows.append(
            [str(r["system"]), f"${r['p50']:.2f}", f"${r['p5']:.2f}-${r['p95']:.2f}", band, r["status"] + ratio]
        )
    headers = ["system", "P50\n$/GPU-h", "P5-P95\n$/GPU-h", "market band\n$/GPU-h", "status"]
    title = "calibration: revenue per installed GPU-hour in the first live year vs GPU rental prices"
    emit(layout.table(headers, rows, width(), title=title, left=(4,)))
    for line in table["warning"]:
        if isinstance(line, str) and line:
            say(f"warning: {line}")


_BREAKEVEN = {  # breakeven.csv quantity -> (words with unit, the metric whose form its values take)
    "initial_token_price_usd_per_mtok": ("token price $/Mtok", "breakeven_price_usd_per_mtok"),
    "initial_rental_usd_per_gpu_hour": ("rental $/GPU-h", "breakeven_rental_usd_per_gpu_hour"),
    "mean_utilization": ("mean utilization", "breakeven_utilization"),
}


def print_breakeven(be) -> None:
    """What must be true: each system's break-even initial price (token or rental) and mean
    utilization against the market's; a break-even utilization above 100% is unreachable."""
    rows = []
    for r in be.to_dict("records"):
        what, metric = _BREAKEVEN.get(r["quantity"], (str(r["quantity"]), str(r["quantity"])))
        form = (lambda x: ft.number(x)) if metric != "breakeven_utilization" else ft.utilization
        band = lambda side, form=form, r=r: " / ".join(form(r[f"{side}_p{p}"]) for p in (5, 50, 95))  # noqa: E731
        rows.append([str(r["system"]), what, band("breakeven"), band("market")])
    headers = ["system", "initial value", "break-even\nP5 / P50 / P95", "market\nP5 / P50 / P95"]
    emit(layout.table(headers, rows, width(), keys=2, title="what must be true: break-even per scenario vs the market"))
    say("P(the market clears the break-even) is 1 - P(loss), as NPV is linear in each (breakeven.csv).")


def print_stress(stress) -> None:
    wide = width() >= WIDE_FROM
    rows = []
    for r in stress.to_dict("records"):
        cells = [r["stress"], r["system"], " / ".join(ft.money(r[f"npv_usd_p{p}"]) for p in (5, 50, 95))]
        cells += [ft.share(r["p_loss"]), ft.signed_money(r["npv_usd_p50_change"])]
        if wide:
            cells += [ft.per_year(r.get("irr_p50", math.nan)), ft.months(r.get("payback_months_p50", math.nan))]
        rows.append([str(c) if i < 2 else c for i, c in enumerate(cells)])
    headers = ["stress", "system", "NPV P5 / P50 / P95", "P(loss)", "NPV P50\nvs base"]
    headers += ["IRR P50", "payback\nP50"] if wide else []
    emit(layout.table(headers, rows, width(), keys=2, title="stress tests on the same scenarios"))


def print_sections(result) -> None:
    """The decision-analytics sections of a finished run: what must be true, stress tests,
    convergence, and the drivers and comparisons when the run has them."""
    import pandas as pd

    if result.breakeven is not None:
        print_breakeven(result.breakeven)
    opts = result.manifest.get("options") or {}
    if result.stress is not None:
        print_stress(result.stress)
    elif result.study.stress and opts.get("stress") is False:
        say("stress tests: not run (--no-stress); run without --no-stress to see the study's stress: section")
    conv = result.manifest.get("convergence")
    if conv:
        verdict = "met" if conv["met"] else "NOT met"
        say(
            f"convergence: MCSE of {conv['target']} {verdict}: {conv['reached_mcse']:.4g} "
            f"after {conv['scenarios']:,} of at most {conv['maximum']:,} scenarios"
        )
        if not conv["met"]:  # (a manifest written before the reason was recorded: the maximum was reached)
            say(f"why: {conv.get('reason', 'maximum reached')}", "  ", "  ")
    outputs = result.manifest["outputs"]
    print_analysis(
        *(pd.read_csv(result.folder / outputs[k]) if outputs.get(k) else None for k in ("sensitivity", "comparison")),
        top=3,
    )
    if outputs.get("analysis_skipped"):
        say(outputs["analysis_skipped"])
    elif opts.get("analyze") is False and opts.get("write_scenarios", True):
        say(f"drivers and comparisons: not run (--no-analyze); mcrisk analyze {result.folder} adds them")

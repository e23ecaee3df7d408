"""The report's figures: pure functions from tables to matplotlib Figures.

Each function takes the numbers it draws (DataFrames or arrays already read from a run
folder) and returns a ``matplotlib.figure.Figure`` built without pyplot, so nothing here
touches global plotting state or needs a display. Colours: the Okabe-Ito palette (safe for
the common colour-vision deficiencies), one colour per system, the same in every figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter

from mcrisk.report.density import density
from mcrisk.study.labels import METRICS as METRIC_WORDS
from mcrisk.study.labels import input_label, metric_label, short_unit

# Okabe & Ito (2008), without yellow first: it is hard to see on white.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
COMPONENTS = (  # (summary.csv metric, label): the parts of cost_per_mtok_usd, in stacking order
    ("depreciation_usd", "depreciation"),
    ("energy_usd", "energy"),
    ("colocation_usd", "colocation"),
    ("maintenance_usd", "maintenance"),
    ("license_usd", "licences"),
)
_COMPONENT_COLOURS = (
    "#33415c",
    "#5c6f8e",
    "#8e9bb3",
    "#bcc4d4",
    "#e3e7ee",
)  # one hue, light to dark: no clash with systems
DPI = 110
WIDTH_IN = 10.0


def palette(systems: Sequence[str]) -> dict[str, str]:
    """One Okabe-Ito colour per system, in the run's order of systems."""
    return {s: OKABE_ITO[i % len(OKABE_ITO)] for i, s in enumerate(systems)}


def _sig(a: float, digits: int) -> str:
    """A non-negative number to `digits` significant figures, without exponent or trailing zeros."""
    if a == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(a)))
    text = f"{a:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(x: float, digits: int = 3) -> str:
    """Dollars with k/M/B: ``$6.04M``, ``-$279k``, ``$0.0192``."""
    if not math.isfinite(x):
        return "n/a" if math.isnan(x) else ("+inf" if x > 0 else "-inf")
    sign, a = ("-" if x < 0 else ""), abs(x)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div * (1 - 0.5 * 10**-digits):  # 999,999.7 is $1M, not $1000k
            return f"{sign}${_sig(a / div, digits)}{suffix}"
    return f"{sign}${_sig(a, digits)}"


def _money_axis(digits: int = 4) -> FuncFormatter:
    return FuncFormatter(lambda x, _: "$0" if x == 0 else money(x, digits))


# Metrics shown in percent on an axis (their values are fractions).
_PERCENT = ("irr", "equity_irr", "operating_margin", "mean_utilization", "net_roi", "breakeven_utilization")


def unit(metric: str) -> str:
    """The unit a metric (or study input) is shown in: "$", "$/Mtok", "%", "x", "months", ...;
    "" where its name does not say. From the labels table (``mcrisk.study.labels``)."""
    last = metric.rsplit(".", 1)[-1]
    if last in _PERCENT or last.startswith("p_"):
        return "%"
    u = short_unit(metric)
    return "" if u == "count" else u


def axis_label(metric: str) -> str:
    """An axis label in words with its unit, from the labels table: "NPV ($)", "cost per Mtok sold ($/Mtok)"."""
    return metric_label(metric) if metric in METRIC_WORDS else input_label(metric)


def formatter(metric: str) -> FuncFormatter:
    """The tick labels of an axis of `metric`, in its unit."""
    u = unit(metric)
    if u == "$" or u.startswith("$/"):
        return _money_axis()
    if u == "%":
        return FuncFormatter(lambda x, _: f"{x:.0%}" if abs(x) >= 0.1 or x == 0 else f"{x:.1%}")
    if u == "x":
        return FuncFormatter(lambda x, _: f"{x:g}x")
    return FuncFormatter(lambda x, _: f"{x:g}")


def value(metric: str, x: float) -> str:
    """One value of `metric` with its unit, for a figure's title: "$6.04M", "$0.123/Mtok", "12.5%"."""
    u = unit(metric)
    if not math.isfinite(x):
        return "n/a"
    if u == "$" or u.startswith("$/"):
        return money(x) + u[1:]
    if u == "%":
        return f"{x:.1%}"
    if u == "x":
        return f"{x:.3g}x"
    return f"{x:.3g}" + (f" {u}" if u else "")


def _new(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.06, w_pad=0.06)
    return fig


def _style(ax) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _x_range(percentiles: Mapping[str, Mapping[str, float]]) -> tuple[float, float]:
    """The x axis of a distribution: P1 to P99 of every system, padded by 4%."""
    lo = min(p["p1"] for p in percentiles.values())
    hi = max(p["p99"] for p in percentiles.values())
    pad = 0.04 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.04
    return (lo - pad, hi + pad)


def _density(
    ax,
    samples: Mapping[str, np.ndarray],
    percentiles: Mapping[str, Mapping[str, float]],
    colours: Mapping[str, str],
) -> None:
    """Each system's kernel density on the linear axis (``data.density``), scaled to its own peak,
    with P5/P50/P95 marked."""
    for system, x in samples.items():
        curve = density(x)
        if curve is None:
            continue
        grid, pdf = curve
        pdf = pdf / pdf.max()  # each curve to its own peak: systems of different size stay visible
        c = colours[system]
        ax.plot(grid, pdf, color=c, linewidth=1.6, label=system)
        ax.fill_between(grid, pdf, color=c, alpha=0.12, linewidth=0)
        for q, style in (("p5", ":"), ("p50", "--"), ("p95", ":")):
            v = percentiles[system][q]
            ax.vlines(v, 0, np.interp(v, grid, pdf), color=c, linestyle=style, linewidth=1.2)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("density (relative: each curve's peak = 1)")
    ax.set_title("Density (dashed: P50, dotted: P5 and P95)", fontsize=10)


def _ecdf(
    ax,
    percentiles: Mapping[str, Mapping[str, float]],
    colours: Mapping[str, str],
    samples: Mapping[str, np.ndarray] | None,
) -> None:
    """Each system's ECDF (of its samples, else through its percentiles P1..P99), P5/P50/P95 as dots."""
    for system, p in percentiles.items():
        c = colours[system]
        if samples and system in samples:
            x = samples[system][np.isfinite(samples[system])]
            probs = np.linspace(0, 1, 801)
            ax.plot(np.quantile(x, probs), probs, color=c, linewidth=1.6, label=system)
        else:
            qs = [k for k in p if k.startswith("p") and k[1:].isdigit()]
            ax.plot(
                [p[k] for k in qs], [int(k[1:]) / 100 for k in qs], color=c, linewidth=1.6, marker=".", label=system
            )
        ax.plot([p["p5"], p["p50"], p["p95"]], [0.05, 0.5, 0.95], "o", color=c, markersize=5, markeredgecolor="white")
    for y in (0.05, 0.5, 0.95):
        ax.axhline(y, color="#999999", linewidth=0.6, linestyle="--")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of scenarios at or below (%)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    source = "dots: P5, P50, P95" if samples else "through the summary percentiles P1..P99 (no scenarios kept)"
    ax.set_title(f"Cumulative distribution ({source})", fontsize=10)
    ax.legend(loc="lower right", fontsize=9, frameon=False)


def distribution(
    metric: str,
    percentiles: Mapping[str, Mapping[str, float]],
    colours: Mapping[str, str],
    samples: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """Density and ECDF of one metric per system, overlaid, with P5/P50/P95 marked.

    ``percentiles``: per system, ``{"p1": ..., ..., "p99": ...}`` (summary.csv, all scenarios).
    ``samples``: per system, the metric in a subsample of scenarios. Without samples the figure
    has only the ECDF, drawn through the summary percentiles P1..P99. The x axis is linear, from
    the lowest P1 to the highest P99 of the systems.
    """
    xlim = _x_range(percentiles)
    fig = _new(3.6)
    if samples:
        ax_d, ax_c = fig.subplots(1, 2)
        _density(ax_d, samples, percentiles, colours)
        axes = [ax_d, ax_c]
    else:
        ax_c = fig.subplots(1, 1)
        axes = [ax_c]
    _ecdf(ax_c, percentiles, colours, samples)
    for ax in axes:
        if metric == "npv_usd" and xlim[0] < 0 < xlim[1]:
            ax.axvline(0, color="#444444", linewidth=0.9)
        ax.set_xlim(xlim)
        ax.set_xlabel(axis_label(metric))
        ax.xaxis.set_major_formatter(formatter(metric))
        _style(ax)
    return fig


def _panels(n: int, height_in: float) -> tuple[Figure, np.ndarray]:
    """Small multiples: up to 3 panels a row."""
    cols = min(3, n)
    rows = -(-n // cols)
    fig = _new(height_in * rows + 0.35)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _band_legend(fig: Figure, outer: str, inner: str | None, line: str, marker: str | None = None) -> None:
    """One legend for every panel, in grey: the bands mean the same in each system's colour."""
    grey = "#666666"
    items = [
        (Patch(color=grey, alpha=0.18), outer),
        (Patch(color=grey, alpha=0.45), inner),
        (Line2D([], [], color=grey, linewidth=1.8), line),
        (Line2D([], [], color="#222222", linestyle="--", linewidth=1), marker),
    ]
    items = [(h, label) for h, label in items if label]
    fig.legend(
        [h for h, _ in items],
        [label for _, label in items],
        loc="outside lower center",
        ncol=len(items),
        fontsize=9,
        frameon=False,
    )


def fan_chart(monthly: pd.DataFrame, colours: Mapping[str, str], payback: Mapping[str, float]) -> Figure:
    """Cumulative cash flow by month per system: P5-P95 and P25-P75 bands, the P50 line and its payback month.

    ``monthly``: monthly.parquet's rows of quantity ``cumulative_cash_flow_usd``.
    ``payback``: per system, the first month where P50 is >= 0 (NaN if never).
    """
    systems = [s for s in colours if s in set(monthly["system"])]
    fig, axes = _panels(len(systems), 3.0)
    for ax, system in zip(axes, systems):
        m = monthly[monthly["system"] == system].sort_values("month")
        c, t = colours[system], m["month"].to_numpy()
        ax.fill_between(t, m["p5"], m["p95"], color=c, alpha=0.18, linewidth=0)
        ax.fill_between(t, m["p25"], m["p75"], color=c, alpha=0.45, linewidth=0)
        ax.plot(t, m["p50"], color=c, linewidth=1.8)
        ax.axhline(0, color="#444444", linewidth=0.9)
        month = payback.get(system, math.nan)
        if math.isfinite(month):
            ax.axvline(month, color="#222222", linestyle="--", linewidth=1)
            ax.text(
                month,
                0.97,
                f" P50 >= $0 from month {month:g}",
                transform=ax.get_xaxis_transform(),
                va="top",
                fontsize=8.5,
            )
        else:
            ax.text(
                0.03, 0.97, "P50 stays below $0\nwithin the horizon", transform=ax.transAxes, va="top", fontsize=8.5
            )
        ax.set_title(system, fontsize=10, color=c, fontweight="bold")
        ax.set_xlabel("month of the horizon (months)")
        ax.set_xlim(t.min() - 0.5, t.max() + 0.5)
        ax.yaxis.set_major_formatter(_money_axis())
        _style(ax)
    axes[0].set_ylabel("cumulative cash flow ($)")
    _band_legend(fig, "P5-P95 of scenarios", "P25-P75", "P50", "first month with P50 >= $0")
    return fig


def cost_structure(costs: pd.DataFrame, colours: Mapping[str, str]) -> Figure:
    """Cost per million tokens per system, stacked by component.

    ``costs``: index = systems, columns = component labels (COMPONENTS), values in $ per Mtok.
    """
    fig = _new(0.55 * len(costs) + 1.5)
    ax = fig.subplots()
    y = np.arange(len(costs))[::-1]
    left = np.zeros(len(costs))
    total = costs.sum(axis=1).to_numpy()
    for (_, name), colour in zip(COMPONENTS, _COMPONENT_COLOURS):
        if name not in costs:
            continue
        v = costs[name].to_numpy()
        ax.barh(y, v, left=left, color=colour, edgecolor="white", linewidth=0.6, label=name, height=0.62)
        for yi, li, vi, ti in zip(y, left, v, total):
            if ti > 0 and vi / total.max() > 0.07:
                ax.text(
                    li + vi / 2,
                    yi,
                    f"{vi / ti:.0%}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if colour in _COMPONENT_COLOURS[:2] else "#222222",
                )
        left += v
    for yi, ti in zip(y, total):
        ax.text(ti, yi, f"  {money(ti)}", va="center", fontsize=9)
    ax.set_yticks(y, list(costs.index))
    for tick, system in zip(ax.get_yticklabels(), costs.index):
        tick.set_color(colours.get(system, "#000000"))
        tick.set_fontweight("bold")
    ax.set_xlim(0, total.max() * 1.15 if total.max() > 0 else 1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: money(x, 4)))
    ax.set_xlabel("cost per million tokens ($/Mtok; mean of each cost / mean tokens; labels: share of the total)")
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.32 if len(costs) < 3 else -0.22),
        ncol=len(COMPONENTS),
        fontsize=9,
        frameon=False,
    )
    _style(ax)
    ax.grid(False, axis="y")
    return fig


def margin_by_utilization(bins: pd.DataFrame, colours: Mapping[str, str]) -> Figure:
    """Operating margin (P10-P90 band, P50 line) against mean utilization, one panel per system.

    ``bins``: one row per (system, bin) with ``utilization`` (the bin's median), ``p10``,
    ``p50``, ``p90`` of operating margin. Each panel has its own margin axis: systems' margins
    can differ by orders of magnitude.
    """
    systems = [s for s in colours if s in set(bins["system"])]
    fig, axes = _panels(len(systems), 2.9)
    for ax, system in zip(axes, systems):
        b, c = bins[bins["system"] == system].sort_values("utilization"), colours[system]
        ax.fill_between(b["utilization"], b["p10"], b["p90"], color=c, alpha=0.18, linewidth=0)
        ax.plot(b["utilization"], b["p50"], color=c, linewidth=1.8, marker="o", markersize=3.5)
        ax.axhline(0, color="#444444", linewidth=0.9)
        ax.set_title(system, fontsize=10, color=c, fontweight="bold")
        ax.set_xlabel("mean utilization (%, bin median)")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        _style(ax)
    axes[0].set_ylabel("operating margin (%)")
    _band_legend(fig, "P10-P90 of the scenarios in each bin", None, "P50")
    return fig


def tornado(
    drivers: pd.DataFrame, base: Mapping[str, float], colours: Mapping[str, str], metric: str = "npv_usd", top: int = 6
) -> Figure:
    """What drives a metric: its P50 when each input is in its bottom versus top decile, per system.

    ``drivers``: sensitivity.csv rows of one metric; ``base``: the metric's P50 per system.
    """
    label = axis_label(metric)
    systems = [s for s in colours if s in set(drivers["system"])]
    counts = [min(top, int((drivers["system"] == s).sum())) for s in systems]
    fig = _new(sum(0.34 * n + 0.9 for n in counts) + 0.3)
    axes = np.atleast_1d(fig.subplots(len(systems), 1, squeeze=False, height_ratios=[n + 2 for n in counts])).ravel()
    for ax, system, n in zip(axes, systems, counts):
        d = drivers[drivers["system"] == system].sort_values("rank").head(n)
        c, b0 = colours[system], base.get(system, math.nan)
        y = np.arange(len(d))[::-1]
        low, high = (d["bottom_p50"] - b0).to_numpy(), (d["top_p50"] - b0).to_numpy()
        far = np.abs(low) >= np.abs(high)  # the longer bar first, so a shorter one on the same side stays visible
        for first in (True, False):
            pick = far if first else ~far
            ax.barh(y[pick], low[pick], left=b0, color=c, alpha=0.35, height=0.7)
            pick = ~far if first else far
            ax.barh(y[pick], high[pick], left=b0, color=c, height=0.7)
        ax.legend(
            handles=[Patch(color=c, alpha=0.35), Patch(color=c)],
            labels=["input in its bottom decile", "input in its top decile"],
            loc="lower right",
            fontsize=8,
            frameon=False,
        )
        ax.axvline(b0, color="#222222", linewidth=1)
        names = [f"{i}  ({s:.0%})" if math.isfinite(s) else str(i) for i, s in zip(d["input"], d["first_order"])]
        ax.set_yticks(y, names, fontsize=8.5)
        ax.set_title(
            f"{system}: P50 {label.split(' (')[0]} {value(metric, b0)} (black line)",
            fontsize=10,
            color=c,
            fontweight="bold",
            loc="left",
        )
        ax.xaxis.set_major_formatter(formatter(metric))
        _style(ax)
        ax.grid(False, axis="y")
    axes[-1].set_xlabel(f"P50 {label} when the input is in its bottom / top decile (share of variance in brackets)")
    return fig


def win_matrix(wins: pd.DataFrame) -> Figure:
    """Heatmap of P(row system beats column system), from a square table with NaN on the diagonal."""
    n = len(wins)
    fig = _new(0.55 * n + 1.6, width_in=min(WIDTH_IN, 1.4 * n + 3.2))
    ax = fig.subplots()
    values = wins.to_numpy(dtype=float)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=0, vmax=1, aspect="auto")
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            text = "-" if not math.isfinite(v) else f"{v:.1%}"
            dark = math.isfinite(v) and abs(v - 0.5) > 0.3
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "#222222")
    ax.set_xticks(range(n), [str(c) for c in wins.columns], fontsize=9)
    ax.set_yticks(range(n), [str(r) for r in wins.index], fontsize=9)
    ax.set_xlabel("column system (B)")
    ax.set_ylabel("row system (A)")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    bar = fig.colorbar(im, ax=ax, fraction=0.05)
    bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    bar.set_label("P(A's NPV > B's) (%)", fontsize=9)
    return fig

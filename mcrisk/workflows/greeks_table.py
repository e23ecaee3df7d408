"""The tables of `mcrisk greeks`: greeks.csv and design_point.csv, one row per (row, input, parameter)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr

from mcrisk.stats import greeks as sg
from mcrisk.stats.formats import signed_money
from mcrisk.study.labels import input_label, short_unit

GREEKS_COLUMNS = [
    "system",
    "input",
    "label",
    "parameter",
    "dist",
    "value",
    "method",
    "metric",
    "mean",
    "d_mean",
    "d_mean_se",
    "elasticity",
    "step",
    "d_mean_per_step",
    "reading",
    "p5",
    "d_p5",
    "d_p5_se",
    "p1",
    "d_p1",
    "d_p1_se",
    "bandwidth",
    "p_loss",
    "d_p_loss",
    "d_p_loss_se",
    "p_loss_method",
    "note",
]
PATHWISE = "pathwise"


def _reading_unit(path: str) -> str:
    """The unit of a step in the reading ("+0.01 $/Mtok"); none for a share or a rate."""
    unit = short_unit(path)
    return "" if unit.startswith("per ") else unit


IMPLICIT = "pathwise (implicit CDF: beta shape)"
P_LOSS_METHOD = "kernel-smoothed pathwise (Gaussian kernel, bandwidth h)"


def _amount(metric: str, x: float) -> str:
    return signed_money(x) if metric.endswith("_usd") else f"{x:+.4g}"


def _method(t) -> str:
    if t.note is not None:
        return "not differentiable"
    return IMPLICIT if t.dist in ("beta", "pert") and t.param not in ("low", "high") else PATHWISE


def _applies(t, row: str) -> bool:
    return row == "portfolio" or t.system is None or t.system == row


def greeks_table(rows, tgts, metric: str, m: np.ndarray, centers: dict, h: np.ndarray, est: dict) -> pd.DataFrame:
    """greeks.csv: every target of every row it applies to (market inputs: every row; a system's
    inputs: its row and the portfolio's)."""
    out = []
    for r, row in enumerate(rows):
        mean, p_loss = float(np.mean(m[r])), float(np.mean(m[r] < 0))
        for k, t in enumerate(tgts):
            if not _applies(t, row):
                continue
            e = {key: float(v[k, r]) for key, v in est.items()}
            if t.note is not None:
                e = dict.fromkeys(e, np.nan)
            step = sg.unit_step(t.value)
            elasticity = e["d_mean"] * t.value / mean if mean != 0 else np.nan
            reading = (
                f"+{step:g} {_reading_unit(t.path)} {t.param}: {_amount(metric, e['d_mean'] * step)} mean {metric}".replace(
                    "  ", " "
                )
                if t.note is None
                else f"no pathwise derivative: {t.note}"
            )
            out.append(
                [row, t.path, input_label(t.path), t.param, t.dist, t.value, _method(t), metric, mean]
                + [e["d_mean"], e["d_mean_se"]]
                + [elasticity, step, e["d_mean"] * step, reading]
                + [centers["p5"][r], e["d_p5"], e["d_p5_se"], centers["p1"][r], e["d_p1"], e["d_p1_se"], h[r]]
                + [p_loss, e["d_p_loss"], e["d_p_loss_se"], P_LOSS_METHOD if t.note is None else "", t.note or ""]
            )
    return pd.DataFrame(out, columns=GREEKS_COLUMNS)


def not_differentiable_table(rows, tgts, metric: str, why: str) -> pd.DataFrame:
    """greeks.csv for a metric with no derivative: every row says why, no number."""
    out = []
    for row in rows:
        for t in tgts:
            if _applies(t, row):
                blank = [np.nan] * 3 + [np.nan, np.nan, np.nan, f"{metric} is not differentiable: {why}"]
                out.append(
                    [row, t.path, input_label(t.path), t.param, t.dist, t.value, "not differentiable", metric]
                    + blank
                    + [np.nan] * 7
                    + [np.nan] * 4
                    + [f"{metric}: {why}"]
                )
    return pd.DataFrame(out, columns=GREEKS_COLUMNS)


DESIGN_COLUMNS = [
    "system",
    "beta",
    "form_p_loss",
    "mc_p_loss",
    "metric",
    "metric_at_point",
    "metric_at_median",
    "capex_usd",
    "converged",
    "iterations",
    "input",
    "label",
    "z",
    "value",
    "median",
    "note",
]


def design_table(points: Sequence, inputs_of: Mapping[str, list], mc_p_loss: Mapping[str, float], metric: str):
    """design_point.csv: each row's design point, one line per drawn input (largest |z| first)."""
    out = []
    for p in points:
        if p.note is not None:
            out.append([p.row, np.nan, np.nan, mc_p_loss[p.row], metric, np.nan, p.metric_at_median, p.scale])
            out[-1] += [p.converged, p.iterations, "", "", np.nan, np.nan, np.nan, p.note]
            continue
        head = [p.row, p.beta, float(ndtr(-p.beta)), mc_p_loss[p.row], metric, p.metric_at_point]
        head += [p.metric_at_median, p.scale, p.converged, p.iterations]
        for i in sorted(inputs_of[p.row], key=lambda i: -abs(p.scores[i.path])):
            out.append(head + [i.path, input_label(i.path), p.scores[i.path], p.values[i.path], p.medians[i.path], ""])
    return pd.DataFrame(out, columns=DESIGN_COLUMNS)

"""``--target-mcse METRIC:STAT:VALUE``: add chunks until a statistic's Monte Carlo error is small enough.

After every chunk the run estimates the MCSE of STAT of METRIC for every system, from all the
scenarios so far, and stops at the first chunk where the largest of them is <= VALUE, or at
``--scenarios`` (the maximum). The check uses the device reducers, so it costs a few small
transfers per chunk; chunk boundaries, and so the stopping chunk, depend only on the options.

Estimators, for N scenarios treated as independent (conservative for Sobol' and Latin
hypercube samples, whose errors are smaller):

* ``mean``: sd / sqrt(N), over the N finite values (NaN values are left out, as in
  summary.csv's mean). Infinite where the metric holds an infinite value: its mean is then
  +-inf or NaN (summary.csv), and no number of scenarios makes that error small.
* a percentile ``pQ`` (q = Q/100): half the width of the order-statistic interval
  (x_(q + s) - x_(q - s)) / 2 with s = sqrt(q (1 - q) / N), i.e. the 68% interval of the
  percentile's sampling distribution, read off the run's quantile sketch. It has the sketch's
  relative resolution (5e-4 of the value), so a target below that cannot be met. Infinite
  where either end of the interval is (the percentile itself infinite, or next to +-inf values).

An MCSE that is not finite (also NaN, with fewer than 2 values) never meets the target: the run
goes on to ``--scenarios`` and :func:`explain` says why in the manifest's convergence record.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcrisk.errors import Problem, StudyError
from mcrisk.model.metrics import METRICS
from mcrisk.stats import reduce as red

_STAT = re.compile(r"^(mean|p(\d{1,2}(\.\d+)?))$")


@dataclass(frozen=True)
class Target:
    """A convergence target: MCSE of `stat` of `metric`, for every system, at most `value`."""

    metric: str
    stat: str  # 'mean' or 'p5', 'p50', 'p2.5', ...
    value: float

    @property
    def prob(self) -> float | None:
        return None if self.stat == "mean" else float(self.stat[1:]) / 100

    def text(self) -> str:
        return f"{self.metric}:{self.stat}:{self.value:g}"


def parse_target(text: str) -> Target:
    """'npv_usd:p5:50000' -> Target; StudyError naming --target-mcse otherwise."""
    parts = text.split(":")
    where = "--target-mcse"
    if len(parts) != 3:
        raise StudyError(
            [Problem(where, f"expected METRIC:STAT:VALUE (e.g. npv_usd:p5:50000), got {text!r}")], "options"
        )
    metric, stat, value = (p.strip() for p in parts)
    problems = []
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        problems.append(
            Problem(where, f"unknown metric {metric!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        )
    m = _STAT.match(stat)
    if not m or (stat != "mean" and not 0 < float(stat[1:]) < 100):
        problems.append(Problem(where, f"STAT must be 'mean' or a percentile p1..p99 (e.g. p5), got {stat!r}"))
    try:
        v = float(value)
        if not (math.isfinite(v) and v > 0):
            raise ValueError
    except ValueError:
        problems.append(Problem(where, f"VALUE must be a positive number, got {value!r}"))
        v = math.nan
    if problems:
        raise StudyError(problems, "options")
    return Target(metric, stat, v)


def mcse(state: red.HostState, target: Target, spec: red.SketchSpec) -> np.ndarray:
    """(H,) MCSE of the target's statistic for every series of `state`: +inf where the statistic
    or its interval is infinite, NaN where fewer than 2 values (see the module docstring)."""
    m = state.moments
    if target.prob is None:
        n = np.asarray(m.n_finite, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(_infinite(m), np.inf, red.sd(state) / np.sqrt(n))
    out = np.full(len(m.count), np.nan)
    for h in range(len(m.count)):
        lo, hi = _interval(_rows(state, slice(h, h + 1)), target.prob, spec)
        if math.isfinite(lo) and math.isfinite(hi):
            out[h] = (hi - lo) / 2
        elif not (math.isnan(lo) or math.isnan(hi)):  # (inf - inf would be NaN, with a warning)
            out[h] = math.inf
    return out


def explain(record: dict, state: red.HostState, systems: Sequence[str], spec: red.SketchSpec) -> dict:
    """The convergence record of a run, with ``reason`` (after ``met``) saying why the target was
    not met, from `state`, the run's final reducers (every metric x system series); as it is
    when the target was met."""
    if record["met"]:
        return record
    target = parse_target(record["target"])
    sub = _rows(state, series_of(target, len(systems)))
    values = mcse(sub, target, spec)
    if np.all(np.isfinite(values)):
        reason = f"maximum reached: the largest MCSE, {np.max(values):.4g}, is above {target.value:g}"
    else:
        causes: dict[str, list[str]] = {}
        for s in np.flatnonzero(~np.isfinite(values)):
            causes.setdefault(_why_not_finite(_rows(sub, slice(s, s + 1)), target, spec), []).append(systems[s])
        reason = "MCSE not finite: " + "; ".join(f"{why} for {', '.join(names)}" for why, names in causes.items())
    out = {}
    for key, value in record.items():
        out[key] = value
        if key == "met":
            out["reason"] = reason
    return out


def series_of(target: Target, n_systems: int) -> slice:
    """The reducer rows (metric x system) of the target's metric."""
    k = METRICS.index(target.metric)
    return slice(k * n_systems, (k + 1) * n_systems)


def _infinite(m: red.Moments) -> np.ndarray:
    """(H,) whether a series holds a +-inf value (its mean is then +-inf or NaN)."""
    return (np.asarray(m.posinf) + np.asarray(m.neginf)) > 0


def _rows(state: red.HostState, rows: slice) -> red.HostState:
    """The series `rows` of a host state (views, no copy)."""
    return red.HostState(red.Moments(*(np.asarray(f)[rows] for f in state.moments)), state.hist[rows])


def _interval(one: red.HostState, q: float, spec: red.SketchSpec) -> tuple[float, float]:
    """The order-statistic interval of the q-quantile of a one-series state; NaN if < 2 values."""
    n = int(one.moments.count[0])
    if n < 2:
        return math.nan, math.nan
    s = math.sqrt(q * (1 - q) / n)
    lo, hi = red.quantiles(one, [max(q - s, 0.0), min(q + s, 1.0)], spec)[0]
    return float(lo), float(hi)


def _why_not_finite(one: red.HostState, target: Target, spec: red.SketchSpec) -> str:
    """Why the MCSE of a one-series state is not finite, in words."""
    m = one.moments
    name = f"{target.stat} of {target.metric}"
    if target.prob is None:
        if _infinite(m)[0]:
            return (
                f"{target.metric} holds infinite values (summary.csv's n_posinf, n_neginf), so its mean is +-inf or NaN"
            )
        return f"fewer than 2 finite values of {target.metric}"
    if int(m.count[0]) < 2:
        return f"fewer than 2 non-NaN values of {target.metric}"
    value = float(red.quantiles(one, [target.prob], spec)[0, 0])
    if not math.isfinite(value):
        return f"the {name} is {value:+}"
    return f"the interval of the {name} reaches an infinite value"

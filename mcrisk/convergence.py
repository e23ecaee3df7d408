"""``--target-mcse METRIC:STAT:VALUE``: add chunks until a statistic's Monte Carlo error is small enough.

After every chunk the run estimates the MCSE of STAT of METRIC for every system, from all the
scenarios so far, and stops at the first chunk where the largest of them is <= VALUE, or at
``--scenarios`` (the maximum). The check uses the device reducers, so it costs a few small
transfers per chunk; chunk boundaries, and so the stopping chunk, depend only on the options.

Estimators, for N scenarios treated as independent (conservative for Sobol' and Latin
hypercube samples, whose errors are smaller):

* ``mean``: sd / sqrt(N), over the finite values.
* a percentile ``pQ`` (q = Q/100): half the width of the order-statistic interval
  (x_(q + s) - x_(q - s)) / 2 with s = sqrt(q (1 - q) / N), i.e. the 68% interval of the
  percentile's sampling distribution, read off the run's quantile sketch. It has the sketch's
  relative resolution (5e-4 of the value), so a target below that cannot be met.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

import numpy as np

from . import reduce as red
from .errors import Problem, StudyError
from .metrics import METRICS

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
        raise StudyError([Problem(where, f"expected METRIC:STAT:VALUE (e.g. npv_usd:p5:50000), got {text!r}")], "options")
    metric, stat, value = (p.strip() for p in parts)
    problems = []
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        problems.append(Problem(where, f"unknown metric {metric!r}" + (f"; did you mean {close[0]!r}?" if close else "")))
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
    """(H,) MCSE of the target's statistic for every series of `state`."""
    m = state.moments
    n = np.asarray(m.n_finite, np.float64)
    if target.prob is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            return red.sd(state) / np.sqrt(n)
    q = target.prob
    count = np.asarray(m.count, np.float64)
    out = np.full(len(count), np.nan)
    for h in range(len(count)):
        if count[h] < 2:
            continue
        s = math.sqrt(q * (1 - q) / count[h])
        sub = red.HostState(red.Moments(*(np.asarray(f)[h : h + 1] for f in m)), state.hist[h : h + 1])
        lo, hi = red.quantiles(sub, [max(q - s, 0.0), min(q + s, 1.0)], spec)[0]
        out[h] = (hi - lo) / 2
    return out


def series_of(target: Target, n_systems: int) -> slice:
    """The reducer rows (metric x system) of the target's metric."""
    k = METRICS.index(target.metric)
    return slice(k * n_systems, (k + 1) * n_systems)

"""The reverse stress test: which drawn inputs set the losing scenarios apart from the others.

For a row (a system, or the portfolio) and a loss region (NPV < 0; the worst 5% of NPV), each
drawn input's median, P10 and P90 inside the region and outside it, and the shift between the
two in standard units: the mean normal score of the input inside the region less its mean
outside. The normal score of a draw is ndtri((rank - 1/2) / N), its rank among all N draws of
that input (ties share their average rank), so the shift is in standard deviations of the
input's own distribution (1.0: the losing scenarios sit one sd higher), whatever its form or
unit, and reads the same for a discrete or rounded input. Inputs are ranked by |shift|.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import rankdata

from mcrisk.study.labels import input_label

COLUMNS = [
    "system",
    "region",
    "scenarios_inside",
    "share_inside",
    "rank",
    "input",
    "label",
    "inside_median",
    "inside_p10",
    "inside_p90",
    "outside_median",
    "outside_p10",
    "outside_p90",
    "shift_sd",
]
WORST = 0.05  # the share of scenarios in the "worst" region


def regions(m: np.ndarray) -> dict[str, np.ndarray]:
    """The loss regions of metric values m (N,): 'npv_below_0' and 'worst_5pct' (m at or below its P5)."""
    m = np.asarray(m, np.float64)
    return {"npv_below_0": m < 0, "worst_5pct": m <= np.quantile(m, WORST)}


def normal_scores(x: np.ndarray) -> np.ndarray:
    """ndtri((rank - 1/2) / N), average ranks for ties."""
    return ndtri((rankdata(x, method="average") - 0.5) / x.size)


def _stats(x: np.ndarray) -> tuple[float, float, float]:
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return float(p50), float(p10), float(p90)


def reverse_stress(system: str, m: np.ndarray, inputs: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The rows of reverse_stress.csv for one system (or the portfolio): m (N,) its metric,
    `inputs` its drawn inputs by path, (N,) each. A region with no scenario in it has no rows."""
    rows = []
    scores = {p: normal_scores(np.asarray(x, np.float64)) for p, x in inputs.items()}
    for region, inside in regions(m).items():
        k = int(inside.sum())
        if k == 0 or k == inside.size:
            continue
        part = []
        for path, x in inputs.items():
            x = np.asarray(x, np.float64)
            z = scores[path]
            med_in, p10_in, p90_in = _stats(x[inside])
            med_out, p10_out, p90_out = _stats(x[~inside])
            shift = float(z[inside].mean() - z[~inside].mean())
            part.append([path, input_label(path), med_in, p10_in, p90_in, med_out, p10_out, p90_out, shift])
        part.sort(key=lambda r: -abs(r[-1]))
        for rank, r in enumerate(part, 1):
            rows.append([system, region, k, k / inside.size, rank, *r])
    return pd.DataFrame(rows, columns=COLUMNS)

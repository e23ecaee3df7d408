"""Which system wins in the same world: paired comparisons over common random numbers.

Every system of a run sees the same market draws in scenario s (the keys derive from the
scenario index), so A's and B's metric in one scenario form a pair, and the difference A - B
cancels what the two share: the spread of the difference, not of each system, sets its error.

Per metric and ordered pair of systems (A, B), over the N scenarios where both values are
finite:

* ``p_a_greater`` = P(A's metric > B's), with ``p_a_greater_mcse`` = sqrt(p (1 - p) / N), the
  Monte Carlo standard error under independent scenarios (conservative for the Sobol and
  Latin-hypercube samplers). Ties count for neither side, so P(A > B) + P(B > A) <= 1.
* ``diff_p5``, ``diff_p50``, ``diff_p95``, ``diff_mean`` of A - B, in the metric's units.
* ``mcse_mean_paired`` = sd(A - B) / sqrt(N), the error of ``diff_mean`` from paired draws,
  and ``mcse_mean_independent`` = sqrt((Var A + Var B) / N), what the same N would give if the
  systems were simulated on independent draws. ``pairing_gain`` = (independent / paired)^2 is
  how many times more scenarios independent draws would need for the same error.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

import numpy as np
import pandas as pd

COLUMNS = (
    "metric",
    "system_a",
    "system_b",
    "n",
    "n_dropped",
    "p_a_greater",
    "p_a_greater_mcse",
    "diff_p5",
    "diff_p50",
    "diff_p95",
    "diff_mean",
    "mcse_mean_paired",
    "mcse_mean_independent",
    "pairing_gain",
)


def paired_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The metric as a (scenario x system) table, systems in the run's order, float64."""
    for col in ("scenario", "system", metric):
        if col not in rows.columns:
            raise ValueError(f"the scenarios table has no {col!r} column")
    dup = rows.duplicated(["scenario", "system"])
    if dup.any():
        first = rows.loc[dup, ["scenario", "system"]].iloc[0].tolist()
        raise ValueError(
            f"scenario {first[0]} of system {first[1]!r} appears more than once; pairing needs one row per scenario and system"
        )
    wide = rows.pivot(index="scenario", columns="system", values=metric).astype(np.float64)
    order = (
        rows["system"].cat.categories
        if isinstance(rows["system"].dtype, pd.CategoricalDtype)
        else pd.unique(rows["system"])
    )
    return wide[[s for s in order if s in wide.columns]]


def _pair(a: np.ndarray, b: np.ndarray) -> dict:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = len(a)
    if n < 2:
        nan = float("nan")
        return {"n": n, "n_dropped": int((~ok).sum()), **dict.fromkeys(COLUMNS[5:], nan)}
    d = a - b
    p = float(np.mean(a > b))
    paired = float(d.std(ddof=1) / np.sqrt(n))
    independent = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / n))
    p5, p50, p95 = np.percentile(d, [5, 50, 95])
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = float(np.float64(independent) ** 2 / np.float64(paired) ** 2)
    return {
        "n": n,
        "n_dropped": int((~ok).sum()),
        "p_a_greater": p,
        "p_a_greater_mcse": float(np.sqrt(p * (1 - p) / n)),
        "diff_p5": float(p5),
        "diff_p50": float(p50),
        "diff_p95": float(p95),
        "diff_mean": float(d.mean()),
        "mcse_mean_paired": paired,
        "mcse_mean_independent": independent,
        "pairing_gain": gain,
    }


def paired_comparisons(rows: pd.DataFrame, metrics: Sequence[str] = ("npv_usd", "cost_per_mtok_usd")) -> pd.DataFrame:
    """P(A > B), quantiles of A - B and the pairing's error reduction, per metric and ordered pair of systems.

    `rows`: one row per scenario and system (a run's ``scenarios.parquet``); scenarios are
    paired by the ``scenario`` column. Scenarios where either value is NaN or infinite are
    left out of that pair and counted in ``n_dropped``. Differences and MCSEs of the mean are
    in the metric's units (USD for ``npv_usd``, USD per million tokens for
    ``cost_per_mtok_usd``); probabilities are fractions. Empty with fewer than two systems.
    """
    out = []
    for metric in metrics:
        wide = paired_table(rows, metric)
        for a, b in permutations(wide.columns, 2):
            out.append(
                {
                    "metric": metric,
                    "system_a": str(a),
                    "system_b": str(b),
                    **_pair(wide[a].to_numpy(), wide[b].to_numpy()),
                }
            )
    return pd.DataFrame(out, columns=list(COLUMNS))


def win_matrix(comparisons: pd.DataFrame, metric: str = "npv_usd") -> pd.DataFrame:
    """P(row system's metric > column system's) as a square table (NaN on the diagonal)."""
    part = comparisons[comparisons["metric"] == metric]
    systems = list(dict.fromkeys([*part["system_a"], *part["system_b"]]))
    m = part.pivot(index="system_a", columns="system_b", values="p_a_greater")
    return m.reindex(index=systems, columns=systems)

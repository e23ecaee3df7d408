"""The tables of stress tests and sweeps: the same scenarios under named overrides, side by side.

* A study's ``stress:`` section names overrides (``price-war: {market.token_price.annual_decline:
  0.9}``). ``mcrisk run`` runs the base case, then each stress on the same seed, scenario indices
  and sampler dimensions (:func:`mcrisk.workflows.run.run_stresses`), and writes ``stress.csv``
  (one row per stress and system) and each stress's own tables under ``stress/NAME/``.
* ``mcrisk sweep STUDY --set path=v1,v2 --set path=w1,w2`` runs every point of the grid the same
  way (:func:`mcrisk.workflows.sweep.run_sweep`) and writes ``sweep.csv``, a tidy table of grid
  point x system x key statistics.

Because every run shares the base case's draws, a difference between two rows comes from the
overrides, not from sampling noise in the inputs they leave alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcrisk.study import variants as ov

if TYPE_CHECKING:
    import pandas as pd

# (column, metric, statistic) read from summary.csv; then (column, risk.csv column).
SUMMARY_STATS = (
    ("npv_usd_mean", "npv_usd", "mean"),
    ("npv_usd_p5", "npv_usd", "p5"),
    ("npv_usd_p50", "npv_usd", "p50"),
    ("npv_usd_p95", "npv_usd", "p95"),
    ("roi_multiple_p5", "roi_multiple", "p5"),
    ("roi_multiple_p50", "roi_multiple", "p50"),
    ("irr_p50", "irr", "p50"),
    ("payback_months_p50", "payback_months", "p50"),
    ("cost_per_mtok_usd_p50", "cost_per_mtok_usd", "p50"),
    ("operating_margin_p50", "operating_margin", "p50"),
)
RISK_STATS = (("p_loss", "p_loss"), ("cvar95_usd", "cvar95_usd"))
STAT_COLUMNS = (
    "npv_usd_mean",
    "npv_usd_p5",
    "npv_usd_p50",
    "npv_usd_p95",
    "p_loss",
    "cvar95_usd",
    "roi_multiple_p5",
    "roi_multiple_p50",
    "irr_p50",
    "payback_months_p50",
    "cost_per_mtok_usd_p50",
    "operating_margin_p50",
)


def key_stats(summary: pd.DataFrame, risk: pd.DataFrame) -> pd.DataFrame:
    """One row per system (in the run's order): the statistics a stress or sweep table shows."""
    import pandas as pd

    s = summary.set_index(["system", "metric"])
    r = risk.set_index("system")
    rows = []
    for system in risk["system"]:
        row: dict[str, Any] = {"system": system}
        row.update({col: float(s.loc[(system, metric), stat]) for col, metric, stat in SUMMARY_STATS})
        row.update({col: float(r.loc[system, src]) for col, src in RISK_STATS})
        rows.append(row)
    return pd.DataFrame(rows, columns=["system", *STAT_COLUMNS])


def stress_table(
    base: tuple[pd.DataFrame, pd.DataFrame], stresses: Sequence[tuple[str, Mapping, pd.DataFrame, pd.DataFrame]]
) -> pd.DataFrame:
    """`stress.csv`: the base case, then each (name, overrides, summary, risk), with the change of P50 NPV."""
    import pandas as pd

    base_stats = key_stats(*base)
    parts = [base_stats.assign(stress="base", overrides="")]
    for name, overrides, summary, risk in stresses:
        parts.append(key_stats(summary, risk).assign(stress=name, overrides=ov.describe(overrides)))
    table = pd.concat(parts, ignore_index=True)
    base_p50 = dict(zip(base_stats["system"], base_stats["npv_usd_p50"]))
    table["npv_usd_p50_change"] = table["npv_usd_p50"] - table["system"].map(base_p50)
    return table[["stress", "system", "overrides", *STAT_COLUMNS, "npv_usd_p50_change"]]

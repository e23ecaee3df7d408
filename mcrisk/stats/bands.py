"""Monthly percentile bands (``monthly.parquet``): how cumulative cash flow, revenue and
utilization spread month by month, over every scenario, without storing N x months.

The engine folds each chunk's monthly values into one mergeable log-bucket sketch per
(quantity, system, month) on the device (:data:`MONTHLY_SKETCH`: 0.5% relative accuracy,
values within 1e-6 of zero count as 0). Memory is (2 S + 1) T series x 9,675 bins whatever N.
A percentile is the inverted-CDF percentile of all N values (numpy ``method="inverted_cdf"``)
to within 0.5% of its value; means, counts, minima and maxima are exact.

Series layout (``engine.simulate_months``): h = (q S + s) T + (t - 1) for q = 0
(cumulative cash flow, ``-I + sum_{j<=t} CF_j``) and q = 1 (revenue ``R_t``), then
2 S T + (t - 1) for utilization ``U_t``, which the systems of a scenario share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mcrisk.stats import reduce as red

# pandas is imported inside the functions that make tables: a run imports it in a background
# thread while its stages compile (risk.warm_imports).
if TYPE_CHECKING:
    import pandas as pd

# The monthly quantities, in series order: per system and month, a quantile sketch of each
# (utilization is the market's, one series per month). 0.5% relative accuracy; |x| <= 1e-6 counts as 0.
MONTHLY = ("cumulative_cash_flow_usd", "revenue_usd", "utilization")
MONTHLY_SKETCH = red.SketchSpec(rel_accuracy=5e-3, min_abs=1e-6, max_abs=1e15)
PERCENTILES = (5, 10, 25, 50, 75, 90, 95)
COLUMNS = ("system", "quantity", "month", "n", "mean", *(f"p{p}" for p in PERCENTILES))


def series_index(quantity: str, system: int, month: int, n_systems: int, months: int) -> int:
    """Row of the monthly reducer holding `quantity` of system number `system` in `month` (1-based)."""
    q = MONTHLY.index(quantity)
    if q == 2:  # utilization: one series per month
        return 2 * n_systems * months + month - 1
    return (q * n_systems + system) * months + month - 1


def monthly_table(state: red.HostState, systems: Sequence[str], months: int) -> pd.DataFrame:
    """The tidy bands table: one row per (system, quantity, month), see docs/outputs.md."""
    import pandas as pd

    S = len(systems)
    if state.hist.shape[0] != months * (2 * S + 1):
        raise ValueError(f"monthly reducer has {state.hist.shape[0]} series, expected {months * (2 * S + 1)}")
    q = red.quantiles(state, [p / 100 for p in PERCENTILES], MONTHLY_SKETCH)
    mean = red.stats(state).mean  # NaN where a month has no finite value
    rows = []
    for s, system in enumerate(systems):
        for quantity in MONTHLY:
            for t in range(1, months + 1):
                h = series_index(quantity, s, t, S, months)
                rows.append((system, quantity, t, int(state.moments.count[h]), float(mean[h]), *q[h]))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["system"] = pd.Categorical(table["system"], categories=list(systems))
    table["quantity"] = pd.Categorical(table["quantity"], categories=list(MONTHLY))
    return table

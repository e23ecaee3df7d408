"""What must be true (``breakeven.csv``): the token price and the utilization each scenario
needs to break even, against what the market gives it.

Per system, from the run's reducers (every scenario, no Parquet needed):

* ``initial_token_price_usd_per_mtok``: the scenario's break-even price is the metric
  ``breakeven_price_usd_per_mtok``, the initial price P0 that makes its NPV 0 with its price
  path's shape (decline, shocks) and everything else as drawn. The market side is the study's
  distribution of P0 (its exact quantiles).
* ``initial_rental_usd_per_gpu_hour``, in place of the token price for a system that rents
  GPU-hours (``revenue_mode: gpu_hours``), whose revenue does not depend on the token price: the
  metric ``breakeven_rental_usd_per_gpu_hour``, the initial rental price that makes its NPV 0 with
  its rental path's shape. The market side is the system's distribution of
  ``rental.initial_usd_per_gpu_hour`` (its exact quantiles).
* ``mean_utilization``: the metric ``breakeven_utilization``, the mean utilization that makes
  NPV 0 when the scenario's utilization path is scaled by one factor (ramp and shocks keep their
  shape). The market side is the scenario's own mean utilization.

``p_market_clears`` is P(market value >= break-even value) over all scenarios. Both break-even
values are exact roots of an NPV that is affine in P0 (or in the scaling factor), so in every
scenario the market clears its break-even price exactly when its NPV is >= 0, and the same for
utilization: both probabilities equal 1 - P(loss) (NaN NPVs count as not clearing). The value of
the table is the distance between the two distributions: how far the price may fall, or how
little capacity may sell, before the investment stops paying.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mcrisk.model.metrics import METRICS
from mcrisk.sampling.quantiles import ppf
from mcrisk.stats import reduce as red
from mcrisk.study.schema import PORTFOLIO, Study

# pandas is imported inside the functions that make tables: a run imports it in a background
# thread while its stages compile (risk.warm_imports).
if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (5, 25, 50, 75, 95)
QUANTITIES = {
    "initial_token_price_usd_per_mtok": "breakeven_price_usd_per_mtok",
    "mean_utilization": "breakeven_utilization",
}
RENTAL = "initial_rental_usd_per_gpu_hour"  # the price row of a system that rents GPU-hours
RENTAL_METRIC = "breakeven_rental_usd_per_gpu_hour"
COLUMNS = (
    "system",
    "quantity",
    *(f"breakeven_p{p}" for p in PERCENTILES),
    "breakeven_mean",
    *(f"market_p{p}" for p in PERCENTILES),
    "p_market_clears",
    "p_market_clears_mcse",
)


def prepare(study: Study) -> None:
    """Compute what :func:`breakeven_table` will ask of `study` (the token price's quantiles, a
    program compiled on the host CPU and then cached), so that a thread can do it while the run's
    stages compile."""
    _price_quantiles(study)


def _price_quantiles(study: Study) -> np.ndarray:
    return _quantiles(study.market.token_price.initial_usd_per_mtok)


def _quantiles(dist) -> np.ndarray:
    return (
        ppf(dist, [p / 100 for p in PERCENTILES])
        if not dist.is_fixed
        else np.full(len(PERCENTILES), float(dist.mean()))
    )


def breakeven_table(
    study: Study,
    host: red.HostState,
    npv_below_0: np.ndarray,
    systems: Sequence[str],
    spec: red.SketchSpec,
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """One row per system and quantity; `npv_below_0` is the exact count of NPV < 0 per system,
    `metrics` the reducers' metrics in order (the plan's: METRICS, then any extension's).

    `systems`: the run's rows; the portfolio row of a study with ``portfolio: true`` has no
    break-even price or utilization (one price or one utilization path of the fleet means
    nothing: its systems take different ones) and is left out."""
    import pandas as pd

    S = len(systems)
    probs = [p / 100 for p in PERCENTILES]
    q = red.quantiles(host, probs, spec)
    m = host.moments
    mean = red.stats(host).mean  # over the finite values; NaN when there are none
    price_market = _price_quantiles(study)
    metrics = list(metrics)
    h_npv = metrics.index("npv_usd") * S
    h_util = metrics.index("mean_utilization") * S
    rows = []
    for s, system in enumerate(systems):
        if study.portfolio and system == PORTFOLIO:
            continue
        n = int(m.count[h_npv + s] + m.nan[h_npv + s])
        p = (int(m.count[h_npv + s]) - int(npv_below_0[s])) / n if n else float("nan")
        mcse = float(np.sqrt(p * (1 - p) / n)) if n else float("nan")
        rental = _rental(study, system)
        for quantity, metric in QUANTITIES.items():
            if quantity == "mean_utilization":
                market = q[h_util + s]
            elif rental is not None:
                quantity, metric, market = RENTAL, RENTAL_METRIC, _quantiles(rental)
            else:
                market = price_market
            h = metrics.index(metric) * S + s
            rows.append((system, quantity, *q[h], float(mean[h]), *market, p, mcse))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _rental(study: Study, system: str):
    """The initial rental price's DIST of a system that rents GPU-hours, else None."""
    sys = study.systems.get(system)
    if sys is None or sys.revenue_mode != "gpu_hours" or sys.rental is None:
        return None
    return sys.rental.initial_usd_per_gpu_hour

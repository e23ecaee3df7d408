"""Summary and risk tables from the streamed reducers, and ArviZ diagnostics from retained draws.

Percentiles, VaR and CVaR come from the device-side quantile sketch over every scenario
(relative error <= ``SketchSpec.rel_accuracy``); means, sds and probabilities are exact over
every scenario. ESS, MCSE and R-hat are computed by ArviZ on the first ``n_diag`` scenarios
split into 4 chains of consecutive scenario indices (independent streams); where ``n_diag <
N`` they are scaled to N as for independent draws (ESS x N/n_diag, MCSE x sqrt(n_diag/N)).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mcrisk.stats import reduce as red

# pandas, ArviZ and xarray are imported inside the functions that use them: a run imports them in
# a background thread while its stages compile (warm_imports).
if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
CHAINS = 4
# The risk columns of a study with debt: (tail count, column); each has its _mcse column too.
DEBT_PROBABILITIES = (("min_dscr_below_1_2", "p_min_dscr_below_1_2"), ("equity_npv_below_0", "p_equity_loss"))
# Metrics that only take whole-month values: sketch quantiles are rounded back to them.
INTEGER_METRICS = ("payback_months",)


def _az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def warm_imports() -> None:
    """Import what a run needs only at its end (pandas, ArviZ, xarray, h5netcdf: about a second)
    ahead of use; safe from a background thread (:func:`mcrisk.engine.loop.execute` starts one once the
    stages are compiling, when the interpreter lock is free)."""
    import pandas  # noqa: F401

    _az()
    import h5netcdf  # noqa: F401  (summary.nc's writer)
    import xarray  # noqa: F401


def diagnostics(draws: np.ndarray, n_total: int) -> dict[str, np.ndarray]:
    """ArviZ ESS (mean), MCSE of the 5th percentile and rank R-hat per series.

    draws: (H, n) float64 values of the first n scenarios of H series. Returns arrays (H,)
    scaled to n_total draws as for independent draws.
    """
    az = _az()
    import xarray as xr

    H, n = draws.shape
    chains = CHAINS if n >= 4 * CHAINS else 1
    per = n // chains
    out = {k: np.full(H, np.nan) for k in ("ess", "mcse_p5", "r_hat")}
    if per < 4:
        return out
    x = draws[:, : per * chains].reshape(H, chains, per)
    # ArviZ needs finite, non-constant draws; the others keep NaN, which says so in the table.
    finite = np.isfinite(x).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):  # ptp of a series holding inf is NaN: not ok either
        ok = finite & (np.ptp(x.reshape(H, -1), axis=1) > 0)
    if not ok.any():
        return out
    ds = xr.Dataset({"x": (("series", "chain", "draw"), x[ok])}).transpose("chain", "draw", "series")
    scale = n_total / (per * chains)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["ess"][ok] = az.ess(ds, method="mean")["x"].values * scale
        out["mcse_p5"][ok] = az.mcse(ds, method="quantile", prob=0.05)["x"].values / np.sqrt(scale)
        if chains > 1:
            out["r_hat"][ok] = az.rhat(ds, method="rank")["x"].values
    return out


def summary_table(
    host: red.HostState,
    systems: Sequence[str],
    metrics: Sequence[str],
    diag: dict[str, np.ndarray],
    spec: red.SketchSpec,
) -> pd.DataFrame:
    """One row per system and metric: moments, percentiles, MCSE, ESS, R-hat, inf/NaN counts."""
    import pandas as pd

    S = len(systems)
    q = red.quantiles(host, [p / 100 for p in PERCENTILES], spec)
    m = host.moments
    st = red.stats(host)  # NaN where a metric has no value to summarize
    n_all = m.count.astype(np.float64)
    with np.errstate(all="ignore"):
        # IEEE mean over every non-NaN value: +-inf wherever a scenario is infinite.
        inf_part = np.where(m.posinf > 0, np.inf, 0.0) + np.where(m.neginf > 0, -np.inf, 0.0)
        mean = np.where((m.posinf + m.neginf) > 0, inf_part, st.mean)
        sd = np.where((m.posinf + m.neginf) > 0, np.nan, st.sd)
        mcse_mean = sd / np.sqrt(diag["ess"])
    rows = []
    for i, metric in enumerate(metrics):
        for s, system in enumerate(systems):
            h = i * S + s
            qs = q[h]
            if metric in INTEGER_METRICS:
                qs = np.where(np.isfinite(qs), np.round(qs), qs)
            rows.append(
                dict(
                    system=system,
                    metric=metric,
                    n=int(n_all[h]),
                    mean=mean[h],
                    sd=sd[h],
                    **{f"p{p}": qs[k] for k, p in enumerate(PERCENTILES)},
                    min=st.min[h],
                    max=st.max[h],
                    mcse_mean=mcse_mean[h],
                    mcse_p5=diag["mcse_p5"][h],
                    ess=diag["ess"][h],
                    r_hat=diag["r_hat"][h],
                    n_nan=int(m.nan[h]),
                    n_posinf=int(m.posinf[h]),
                    n_neginf=int(m.neginf[h]),
                )
            )
    return pd.DataFrame(rows)


def risk_table(
    host: red.HostState,
    tails: np.ndarray,
    tail_names: Sequence[str],
    systems: Sequence[str],
    metrics: Sequence[str],
    spec: red.SketchSpec,
) -> pd.DataFrame:
    """One row per system: P(loss), VaR and CVaR of NPV at 95/99%, payback odds, P(ROI >= 15x), and,
    where the tail counts hold them (a study with debt), P(min DSCR < 1.2) and P(equity NPV < 0).

    VaR and CVaR are losses (positive = money lost): VaR_a = -q_(1-a)(NPV), CVaR_a = -E[NPV | NPV <= q_(1-a)].
    Each probability comes with its Monte Carlo standard error sqrt(p(1-p)/N).
    """
    import pandas as pd

    S = len(systems)
    npv = metrics.index("npv_usd") * S
    pay = metrics.index("payback_months") * S
    q_npv = red.quantiles(host, [0.01, 0.05], spec)
    q_pay = red.quantiles(host, [0.5], spec)
    cvar95 = red.tail_mean(host, 0.05, spec)
    cvar99 = red.tail_mean(host, 0.01, spec)
    counts = dict(zip(tail_names, tails))
    rows = []
    for s, system in enumerate(systems):
        n = int(host.moments.count[npv + s] + host.moments.nan[npv + s])

        def prob(name: str, s: int = s, n: int = n) -> tuple[float, float]:
            p = counts[name][s] / n
            return p, float(np.sqrt(p * (1 - p) / n))

        p_loss, se_loss = prob("npv_below_0")
        p_pay, se_pay = prob("payback_within_horizon")
        p_roi, se_roi = prob("roi_multiple_at_least_15")
        med = q_pay[pay + s, 0]
        rows.append(
            dict(
                system=system,
                n=n,
                p_loss=p_loss,
                p_loss_mcse=se_loss,
                var95_usd=-q_npv[npv + s, 1],
                cvar95_usd=-cvar95[npv + s],
                var99_usd=-q_npv[npv + s, 0],
                cvar99_usd=-cvar99[npv + s],
                p_payback_within_horizon=p_pay,
                p_payback_within_horizon_mcse=se_pay,
                median_payback_months=float(np.round(med)) if np.isfinite(med) else med,
                p_roi_multiple_ge_15=p_roi,
                p_roi_multiple_ge_15_mcse=se_roi,
            )
        )
        for name, column in DEBT_PROBABILITIES:
            if name in counts:
                rows[-1][column], rows[-1][column + "_mcse"] = prob(name)
    return pd.DataFrame(rows)


def rescale(diag: dict[str, np.ndarray], n_from: int, n_to: int) -> dict[str, np.ndarray]:
    """Diagnostics computed as for `n_from` draws, restated for `n_to` independent draws (ESS
    grows and MCSE shrinks with the count; R-hat does not change)."""
    f = n_to / n_from if n_from else 1.0
    return {"ess": diag["ess"] * f, "mcse_p5": diag["mcse_p5"] / np.sqrt(f), "r_hat": diag["r_hat"]}

"""What drives a metric: rank correlations, first-order variance shares and tornado deciles.

Everything comes from the scenarios of one run (one row per scenario and system), so no extra
simulation is needed. Per system and per drawn input that varies:

* ``spearman``: the Spearman rank correlation of the input with the metric (average ranks for
  ties), in [-1, 1].
* ``first_order``: the first-order variance share Var(E[Y|X]) / Var(Y), a binned estimator of
  the first-order Sobol index, with a bootstrap 90% CI (``first_order_lo``, ``first_order_hi``).
* a tornado table: the metric's P50 and mean when the input lies in its bottom decile
  (X <= its P10) versus its top decile (X >= its P90), in the metric's own units.

**The first-order estimator.** Sort the N rows by the input and cut them into ``bins``
equal-count bins (ties stay in one bin, so a discrete input gets one bin per value; K is the
number of non-empty bins). With bin sizes n_k, bin means Ybar_k, and the one-way ANOVA sums

    SST = sum_i (Y_i - Ybar)^2,   SSW = sum_k sum_{i in k} (Y_i - Ybar_k)^2,   SSB = SST - SSW,

SSB/N estimates Var(E[Y|bin]) but is biased upwards: even when Y does not depend on X, each
bin mean carries noise of variance sigma^2/n_k, and E[SSB] = sum_k n_k (mu_k - mu)^2 +
(K - 1) sigma^2, while E[SSW] = (N - K) sigma^2 (sigma^2 = Var(Y | bin), the same in every bin;
with equal-count bins the identity also holds when it differs between bins, since both sums
then weigh the bin variances equally). So subtracting (K - 1)/(N - K) * SSW removes the bias:

    first_order = (SSB - (K - 1) / (N - K) * SSW) / SST

(Kelley's epsilon-squared). Pure noise then gives 0 on average instead of (K - 1)/(N - 1),
and an estimate may be slightly negative. What remains is the binning bias: E[Y|X] also varies
inside a bin, which the estimator cannot see; for Y linear in a uniform X it scales the share
by (1 - 1/K^2), 0.25% of it at K = 20. With correlated inputs (a study's ``correlations``) a
share includes what the input carries of its partners, so shares can sum to more than 1.

**The 90% CI** is a basic bootstrap: resample the rows (the same resamples for every input of
a system, drawn from ``seed`` and the system's name) with the bins held fixed, recompute the
share, and take the 5% and 95% quantiles of its error against the resampling world's true
share (the rows' own SSB/SST); the CI is the estimate minus those errors. Its cost is
3 x n_boot x N x inputs multiply-adds, done in batches through one sparse product.
"""

from __future__ import annotations

import difflib
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import rankdata

from mcrisk.model.metrics import ALL_METRICS as METRICS
from mcrisk.study.labels import input_label

KEYS = ("scenario", "system")
COLUMNS = (
    "system",
    "metric",
    "input",
    "label",
    "rank",
    "n",
    "n_dropped",
    "spearman",
    "first_order",
    "first_order_lo",
    "first_order_hi",
    "bins",
    "input_p10",
    "input_p90",
    "bottom_p50",
    "bottom_mean",
    "top_p50",
    "top_mean",
    "n_bottom",
    "n_top",
)
_BATCH_CELLS = 1 << 22  # rows x resamples held at once by the bootstrap (~100 MB of float64)


def drawn_inputs(rows: pd.DataFrame) -> list[str]:
    """The drawn-input columns of a scenarios table: every numeric column that is not a key or a metric."""
    return [c for c in rows.columns if c not in KEYS and c not in METRICS and pd.api.types.is_numeric_dtype(rows[c])]


def _check(rows: pd.DataFrame, names: Sequence[str], what: str) -> None:
    for name in names:
        if name not in rows.columns:
            close = difflib.get_close_matches(name, [str(c) for c in rows.columns], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{what} {name!r} is not a column of the scenarios table{hint}")
    if "system" not in rows.columns:
        raise ValueError("the scenarios table has no 'system' column (one row per scenario and system)")


def ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From one sort of `x`: the 0-based rank of the first of each value's run of ties, and the
    average ranks (1-based, as ``rankdata(x)``)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.concatenate([[True], xs[1:] != xs[:-1]])
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:], [len(x)]])  # one past each run's last position
    run = np.cumsum(new) - 1
    first, average = np.empty(len(x), np.int64), np.empty(len(x))
    first[order] = starts[run]
    average[order] = 0.5 * (starts + ends + 1)[run]
    return first, average


def bin_codes(x: np.ndarray, bins: int, first: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Equal-count bin of each value of `x` (0..K-1) and K; tied values always share a bin.
    `first`: ``ranks(x)[0]``, if the caller has it."""
    first = ranks(x)[0] if first is None else first  # 0-based rank of the first of each run of ties
    raw = (first * bins) // len(x)
    _, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1


def epsilon_squared(n: np.ndarray, s: np.ndarray, q: np.ndarray, corrected: bool = True) -> np.ndarray:
    """Bias-corrected first-order share from per-bin counts `n`, sums `s` and sums of squares `q`.

    Shapes (K, ...) for K bins; returns (...). (SSB - (K-1)/(N-K) SSW) / SST, see the module
    docstring; NaN where the metric is constant or N <= K. `corrected=False`: SSB / SST.
    """
    N, S, Q = n.sum(0), s.sum(0), q.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ssw = np.where(n > 0, q - s * s / np.where(n > 0, n, 1), 0.0).sum(0)
        K = (n > 0).sum(0)
        sst = Q - S * S / N
        ssb = sst - ssw
        out = (ssb - corrected * (K - 1) / (N - K) * ssw) / sst
    return np.where((N > K) & (sst > 0), out, np.nan)


def _first_order(
    codes: list[np.ndarray], kept: list[np.ndarray], y: np.ndarray, n_boot: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Point shares (J,) and their basic-bootstrap 90% CIs (2, J) for J inputs on one system's rows.

    `codes[j]` are the bins of input j on the rows `kept[j]` (indices into `y`). A sparse
    (bins x rows) indicator turns per-row weights into per-bin sums for every input at once.
    """
    N, J = len(y), len(codes)
    sizes = np.array([int(c.max()) + 1 for c in codes])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    bins, rows = np.concatenate([c + o for c, o in zip(codes, offsets)]), np.concatenate(kept)
    # Three stacked indicators, weighted by 1, y and y^2: one product gives the per-bin counts,
    # sums and sums of squares. CSC walks the rows in order: the weights are read once, and the
    # few hundred bin totals stay in cache.
    K = offsets[-1]
    indicator = sparse.csc_matrix(
        (
            np.concatenate([np.ones(len(rows)), y[rows], (y * y)[rows]]),
            (np.concatenate([bins, bins + K, bins + 2 * K]), np.tile(rows, 3)),
        ),
        shape=(3 * K, N),
    )

    def shares(w: np.ndarray, corrected: bool = True) -> np.ndarray:  # w: (N, B) multiplicities in B samples
        n, s, q = np.split(indicator @ w, 3, axis=0)
        out = np.empty((w.shape[1], J))
        for j in range(J):
            g = slice(offsets[j], offsets[j + 1])
            out[:, j] = epsilon_squared(n[g], s[g], q[g], corrected)
        return out

    point = shares(np.ones((N, 1)))[0]
    if n_boot == 0:
        return point, np.full((2, J), np.nan)
    boot = np.empty((n_boot, J))
    batch = max(1, min(n_boot, _BATCH_CELLS // max(N, 1)))
    for b0 in range(0, n_boot, batch):
        b = min(batch, n_boot - b0)
        w = np.empty((N, b))
        for k in range(b):
            w[:, k] = np.bincount(rng.integers(0, N, N), minlength=N)
        boot[b0 : b0 + b] = shares(w)
    # The rows' own between-bin share, SSB/SST, is the true share of the resampling world: the
    # resampled errors (boot - it) stand in for (estimate - truth). Percentiles of the raw
    # resamples would centre the CI on SSB/SST, (K-1)/(N-K) SSW/SST above the estimate.
    errors = boot - shares(np.ones((N, 1)), corrected=False)[0]
    e5, e95 = np.nanquantile(errors, [0.05, 0.95], axis=0)
    return point, np.stack([point - e95, point - e5])


def _spearman(rx: np.ndarray, ry: np.ndarray) -> float:
    """Spearman's rho from the average ranks of the two variables."""
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def _tornado(x: np.ndarray, y: np.ndarray) -> dict:
    lo, hi = np.quantile(x, [0.1, 0.9])
    bottom, top = y[x <= lo], y[x >= hi]
    return {
        "input_p10": float(lo),
        "input_p90": float(hi),
        "bottom_p50": float(np.median(bottom)),
        "bottom_mean": float(bottom.mean()),
        "top_p50": float(np.median(top)),
        "top_mean": float(top.mean()),
        "n_bottom": len(bottom),
        "n_top": len(top),
    }


def sensitivity(
    rows: pd.DataFrame,
    metric: str = "npv_usd",
    inputs: Sequence[str] | None = None,
    *,
    bins: int = 20,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Per system and drawn input: Spearman correlation, first-order variance share (90% CI), tornado deciles.

    `rows`: one row per scenario and system (a run's ``scenarios.parquet``), with a ``system``
    column, the `metric` column and the input columns (default: every numeric column that is not
    ``scenario``, ``system`` or a metric). Rows where the metric or the input is NaN or infinite
    are left out for that input and counted in ``n_dropped``; inputs constant within a system
    are skipped. Market inputs, shared by the systems, appear under every system.

    Returns one row per (system, input), sorted within each system by |first_order|, largest
    first (``rank`` 1). ``first_order*`` are shares of Var(metric) (dimensionless, may be
    slightly < 0 for an input that does not matter); ``input_p10``/``input_p90`` are in the
    input's units and ``bottom_*``/``top_*`` in the metric's units (e.g. USD for ``npv_usd``).
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    inputs = drawn_inputs(rows) if inputs is None else list(inputs)
    _check(rows, [metric], "metric")
    _check(rows, inputs, "input")
    out = []
    systems = (
        rows["system"].cat.categories
        if isinstance(rows["system"].dtype, pd.CategoricalDtype)
        else pd.unique(rows["system"])
    )
    for system in systems:
        part = rows[rows["system"] == system]
        if part.empty:
            continue
        y_all = part[metric].to_numpy(np.float64)
        ok_y = np.isfinite(y_all)
        y = y_all[ok_y]
        if len(y) < 2:
            continue
        ry = rankdata(y)
        y = (y - y.mean()) / (y.std() or 1.0)  # the shares do not change; the sums stay O(N)
        found, codes, kept = [], [], []
        for name in inputs:
            x = part[name].to_numpy(np.float64)[ok_y]
            idx = np.flatnonzero(np.isfinite(x))
            if len(idx) < 2 or np.ptp(x[idx]) == 0:
                continue
            first, rx = ranks(x[idx])
            c, k = bin_codes(x[idx], bins, first)
            found.append((name, x[idx], idx, k, rx))
            codes.append(c)
            kept.append(idx)
        if not found:
            continue
        # each system's resamples derive from (seed, its name): adding a system changes no other CI
        rng = np.random.default_rng([seed, zlib.crc32(str(system).encode())])
        point, (lo, hi) = _first_order(codes, kept, y, n_boot, rng)
        for j, (name, x, idx, k, rx) in enumerate(found):
            yj = y_all[ok_y][idx]
            out.append(
                {
                    "system": str(system),
                    "metric": metric,
                    "input": name,
                    "n": len(idx),
                    "n_dropped": len(y_all) - len(idx),
                    "spearman": _spearman(rx, ry[idx] if len(idx) == len(y) else rankdata(yj)),
                    "first_order": float(point[j]),
                    "first_order_lo": float(lo[j]),
                    "first_order_hi": float(hi[j]),
                    "bins": k,
                    **_tornado(x, yj),
                }
            )
    table = pd.DataFrame(out, columns=[c for c in COLUMNS if c not in ("rank", "label")])
    table["label"] = table["input"].map(input_label)
    if table.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    table["_order"] = table["system"].map({s: i for i, s in enumerate(dict.fromkeys(table["system"]))})
    table["_key"] = -table["first_order"].abs().fillna(-np.inf)
    table = table.sort_values(["_order", "_key"], kind="stable").drop(columns=["_order", "_key"])
    table["rank"] = table.groupby("system", sort=False).cumcount() + 1
    return table[list(COLUMNS)].reset_index(drop=True)

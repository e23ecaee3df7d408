"""Sensitivity: known answers on synthetic scenario tables (no simulation needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mcrisk.stats.sensitivity import COLUMNS, bin_codes, epsilon_squared, ranks, sensitivity

K = 20  # bins, the default
Z90 = stats.norm.ppf(0.95)  # half-width of a 90% CI in standard errors


def table(systems: dict[str, np.ndarray], **inputs: np.ndarray) -> pd.DataFrame:
    """A scenarios table: the same input draws (like market inputs) under every system, metric npv_usd."""
    n = len(next(iter(inputs.values())))
    parts = [
        pd.DataFrame({"scenario": np.arange(n), "system": name, "npv_usd": y, **inputs}) for name, y in systems.items()
    ]
    rows = pd.concat(parts, ignore_index=True)
    rows["system"] = rows["system"].astype("category")
    return rows


def test_an_input_built_to_dominate_ranks_first_in_every_system():
    rng = np.random.default_rng(0)
    x1, x2, x3 = rng.uniform(size=(3, 3000))
    noise = rng.standard_normal(3000)
    rows = table({"a": 10 * x1 + x2 + noise, "b": x1 + 10 * x2 + noise}, x1=x1, x2=x2, x3=x3)
    s = sensitivity(rows, n_boot=50)
    assert list(s.columns) == list(COLUMNS)
    a, b = s[s.system == "a"], s[s.system == "b"]
    assert a["input"].tolist()[:2] == ["x1", "x2"] and b["input"].tolist()[:2] == ["x2", "x1"]
    assert set(a["input"]) == set(b["input"]) == {"x1", "x2", "x3"}  # shared inputs appear under every system
    assert a["rank"].tolist() == [1, 2, 3]
    assert (np.diff(a["first_order"].abs()) <= 0).all()
    # the dominant input's share: 100/12 / (101/12 + 1) = 0.885
    assert a["first_order"].iloc[0] == pytest.approx(100 / 12 / (101 / 12 + 1), abs=0.02)
    assert a["spearman"].iloc[0] > 0.9


def test_first_order_shares_of_a_linear_model_match_its_variance_shares():
    """Y = a X1 + b X2 + s e, X uniform(0, 1): S_i = a_i^2 Var(X) / Var(Y), Var(X) = 1/12.

    Tolerance: 4 bootstrap standard errors (SE = CI half-width / 1.645; a 4-SE miss has
    probability 6e-5) around the share the binned estimator targets, S (1 - 1/K^2): inside an
    equal-count bin of a uniform X, Var(X | bin) = Var(X)/K^2 is invisible to bin means.
    """
    rng = np.random.default_rng(7)
    n, a, b, s = 20_000, 2.0, 1.0, 0.3
    x1, x2 = rng.uniform(size=(2, n))
    y = a * x1 + b * x2 + s * rng.standard_normal(n)
    var_y = (a * a + b * b) / 12 + s * s
    got = sensitivity(table({"sys": y}, x1=x1, x2=x2)).set_index("input")
    ses = (got.first_order_hi - got.first_order_lo) / (2 * Z90)
    assert ((0 < ses) & (ses < 0.01)).all()
    for name, coef in (("x1", a), ("x2", b)):
        truth = coef * coef / 12 / var_y
        r = got.loc[name]
        assert abs(r.first_order - truth * (1 - 1 / K**2)) < 4 * ses[name], (name, r.first_order, truth)
    # additive model: the first-order shares add up to R^2 (the SE of a sum is at most the sum of SEs)
    r2 = (a * a + b * b) / 12 / var_y * (1 - 1 / K**2)
    assert abs(got.first_order.sum() - r2) < 4 * ses.sum()


def test_bootstrap_ci_covers_the_true_share_about_90_percent_of_the_time():
    rng = np.random.default_rng(11)
    reps, n, truth = 100, 400, 4 / 12 / (4 / 12 + 0.25) * (1 - 1 / K**2)
    hits = 0
    for rep in range(reps):
        x = rng.uniform(size=n)
        r = sensitivity(table({"s": 2 * x + 0.5 * rng.standard_normal(n)}, x=x), n_boot=100, seed=rep).iloc[0]
        hits += r.first_order_lo <= truth <= r.first_order_hi
    assert 0.80 <= hits / reps <= 0.98  # binomial(100, 0.9): 3.3 sd either side


def test_the_bias_correction_makes_an_irrelevant_input_worth_zero():
    """Without it, pure noise would get E[SSB/SST] = (K-1)/(N-1) = 0.019 at N = 1000."""
    rng = np.random.default_rng(3)
    n, m = 1000, 200
    noise = {f"z{i}": rng.uniform(size=n) for i in range(m)}
    s = sensitivity(table({"s": rng.standard_normal(n)}, **noise), n_boot=0)
    assert len(s) == m and s.first_order_lo.isna().all()
    # each estimate has sd ~ sqrt(2 (K-1)) / N = 0.006, their mean ~ 0.0004
    assert abs(s.first_order.mean()) < 0.002
    assert s.first_order.mean() < (K - 1) / (n - 1) / 5


def test_tornado_deciles_of_a_monotone_input():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=10_000)
    rows = table({"up": x.copy(), "down": np.exp(-3 * x)}, x=x)
    s = sensitivity(rows, n_boot=0).set_index("system")
    up, down = s.loc["up"], s.loc["down"]
    # Y = X: bottom decile is uniform on [0, 0.1], top on [0.9, 1]
    assert up.bottom_p50 == pytest.approx(0.05, abs=0.005) and up.top_p50 == pytest.approx(0.95, abs=0.005)
    assert up.bottom_mean == pytest.approx(0.05, abs=0.005) and up.top_mean == pytest.approx(0.95, abs=0.005)
    assert up.input_p10 == pytest.approx(0.1, abs=0.01) and up.input_p90 == pytest.approx(0.9, abs=0.01)
    assert up.n_bottom == up.n_top == 1000
    assert down.bottom_p50 > down.top_p50 and down.bottom_mean > down.top_mean
    assert up.spearman == pytest.approx(1.0) and down.spearman == pytest.approx(-1.0)


def test_spearman_matches_scipy():
    rng = np.random.default_rng(2)
    x = rng.lognormal(size=500)
    y = np.round(x + rng.standard_normal(500), 1)  # ties in the metric
    s = sensitivity(table({"s": y}, x=x), n_boot=0)
    assert s.spearman.iloc[0] == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)


def test_non_finite_metric_rows_are_dropped_and_counted_and_constant_inputs_skipped():
    rng = np.random.default_rng(4)
    x = rng.uniform(size=2000)
    y = 5 * x + rng.standard_normal(2000)
    y[:7] = np.inf
    y[7:10] = np.nan
    s = sensitivity(table({"s": y}, x=x, fixed=np.full(2000, 3.0)), n_boot=20)
    assert s["input"].tolist() == ["x"]
    r = s.iloc[0]
    assert r.n == 1990 and r.n_dropped == 10
    assert np.isfinite(r[["spearman", "first_order", "first_order_lo", "bottom_mean", "top_mean"]].astype(float)).all()


def test_a_discrete_input_gets_one_bin_per_value():
    rng = np.random.default_rng(6)
    x = rng.choice([0.9, 1.0, 1.2], p=[0.25, 0.5, 0.25], size=4000)
    codes, k = bin_codes(x, K)
    assert k == 3 and all(len(set(codes[x == v])) == 1 for v in (0.9, 1.0, 1.2))
    y = 4 * x + 0.1 * rng.standard_normal(4000)
    r = sensitivity(table({"s": y}, x=x), n_boot=0).iloc[0]
    assert r.bins == 3
    # the decile cut falls on a value: every row at the lowest value is in the bottom decile
    assert r.n_bottom == (x == 0.9).sum() and r.n_top == (x == 1.2).sum()
    var_x = np.var(x)
    assert r.first_order == pytest.approx(16 * var_x / (16 * var_x + 0.01), abs=0.01)


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(3).standard_normal(1000),
        np.random.default_rng(4).integers(0, 7, 1000) / 3.0,
        np.array([2.0, 2.0, -1.0, 5.0, 2.0]),
        np.array([7.0]),
    ],
)
def test_ranks_are_scipys_min_and_average_ranks(x):
    first, average = ranks(x)
    np.testing.assert_array_equal(first, stats.rankdata(x, method="min") - 1)
    np.testing.assert_array_equal(average, stats.rankdata(x))


def test_the_same_seed_gives_the_same_table():
    rng = np.random.default_rng(8)
    x1, x2 = rng.uniform(size=(2, 500))
    rows = table({"s": x1 + rng.standard_normal(500)}, x1=x1, x2=x2)
    pd.testing.assert_frame_equal(sensitivity(rows, n_boot=30, seed=1), sensitivity(rows, n_boot=30, seed=1))


def test_unknown_metric_or_input_is_refused_with_a_suggestion():
    rows = table({"s": np.arange(10.0)}, x=np.arange(10.0))
    with pytest.raises(ValueError, match=r"metric 'npv_us' is not a column .* did you mean 'npv_usd'\?"):
        sensitivity(rows, metric="npv_us")
    with pytest.raises(ValueError, match="input 'y' is not a column"):
        sensitivity(rows, inputs=["y"])
    with pytest.raises(ValueError, match="bins must be >= 2, got 1"):
        sensitivity(rows, bins=1)


def test_epsilon_squared_of_bin_sums_is_the_one_way_anova_formula():
    """The share from per-bin counts, sums and sums of squares, against SSB, SSW and SST computed
    from the values themselves; several columns at once, NaN for a constant metric or N <= K."""
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 6, 400)
    y = codes * 0.3 + rng.standard_normal(400)
    groups = [y[codes == k] for k in range(6)]
    n = np.array([len(g) for g in groups], float)
    s = np.array([g.sum() for g in groups])
    q = np.array([(g * g).sum() for g in groups])
    sst = ((y - y.mean()) ** 2).sum()
    ssw = sum(((g - g.mean()) ** 2).sum() for g in groups)
    N, K = len(y), 6
    assert epsilon_squared(n, s, q) == pytest.approx((sst - ssw - (K - 1) / (N - K) * ssw) / sst, rel=1e-10)
    assert epsilon_squared(n, s, q, corrected=False) == pytest.approx((sst - ssw) / sst, rel=1e-10)
    # an empty bin does not count in K; columns are independent problems
    n2, s2, q2 = (np.stack([a, np.append(a[:-1], 0.0)], axis=1) for a in (n, s, q))
    got = epsilon_squared(n2, s2, q2)
    assert got[0] == pytest.approx(epsilon_squared(n, s, q), rel=1e-12)
    assert got[1] == pytest.approx(epsilon_squared(n[:-1], s[:-1], q[:-1]), rel=1e-12)
    # a constant metric, or no more rows than bins: NaN
    assert np.isnan(epsilon_squared(np.array([2.0, 2.0]), np.array([6.0, 6.0]), np.array([18.0, 18.0])))
    assert np.isnan(epsilon_squared(np.array([1.0, 1.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0])))

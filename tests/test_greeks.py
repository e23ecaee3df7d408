"""Pathwise Greeks, the reverse stress test and the FORM design point (issue 27), checked against
finite differences with common random numbers and against the run's own scenario rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from mcrisk.engine import greeks as eg
from mcrisk.engine.design_point import LimitState, design_points
from mcrisk.engine.plan import make_plan
from mcrisk.sampling.dist_grad import draw_tangents, parameters
from mcrisk.sampling.quantiles import quantile
from mcrisk.stats import greeks as sg
from mcrisk.study.distributions import parse_dist
from mcrisk.study.schema import load_study
from mcrisk.workflows import greeks as wg
from tests.conftest import CONFIGS, small_study

FORMS = [
    {"dist": "uniform", "low": 1.0, "high": 3.0},
    {"dist": "loguniform", "low": 1.1, "high": 3.0},
    {"dist": "triangular", "low": 0.05, "mode": 0.08, "high": 0.15},
    {"dist": "triangular", "low": 0.0, "mode": 0.0, "high": 0.19},  # mode at low: the right derivative
    {"dist": "normal", "mean": 190, "sd": 20, "low": 120},
    {"dist": "normal", "mean": 1.0, "sd": 0.5, "low": 1.5, "high": 3.0},  # both bounds above the mean
    {"dist": "lognormal", "p5": 0.5, "p95": 2.5},
    {"dist": "lognormal", "median": 6000, "sigma": 0.4},
    {"dist": "beta", "mean": 0.97, "sd": 0.015},
    {"dist": "beta", "mean": 30, "sd": 5, "low": 0, "high": 100},
    {"dist": "pert", "low": 0.2, "mode": 0.5, "high": 0.8},
]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(f"{v}" for v in f.values()))
def test_draw_tangents_are_the_derivatives_of_the_samplers_draws(form):
    """dx/dtheta at a fixed uniform against a central difference of the sampler's own inverse CDF."""
    dist = parse_dist(form)
    u = np.linspace(0.003, 0.997, 41)
    x = np.asarray(quantile(dist, u))
    tangents = draw_tangents(dist, u, x)
    for name, value in parameters(dist):
        h = 1e-5 * max(abs(value), 1e-2)
        at = {}
        for s in (1, 0, -1):  # central, or one-sided where a parameter sits on a bound (mode = low)
            try:
                at[s] = np.asarray(quantile(parse_dist(form | {name: value + s * h}), u))
            except ValueError:
                pass
        lo, hi = min(at), max(at)
        fd = (at[hi] - at[lo]) / ((hi - lo) * h)
        scale = np.abs(fd).max() + 1e-12
        np.testing.assert_allclose(np.asarray(tangents[name]), fd, atol=2e-4 * scale, err_msg=name)


def test_discrete_and_rounded_inputs_say_why_they_have_no_derivative():
    plan = make_plan(load_study(CONFIGS / "default.yaml"), scenarios=8, seed=1, precision="float64", chunk_size=None)
    notes = {(t.path, t.param): t.note for t in eg.targets(plan)}
    assert "whole months" in notes[("systems.gb200_nvl72.lead_months", "mode")]
    assert "default month" in notes[("systems.gb200_nvl72.contract.annual_default_probability", "high")]
    assert notes[("market.token_price.initial_usd_per_mtok", "mode")] is None
    small = make_plan(load_study(small_study()), scenarios=8, seed=1, precision="float64", chunk_size=None)
    notes = {(t.path, t.param): t.note for t in eg.targets(small)}
    assert "discrete" in notes[("systems.rack.price_multiplier", "values")]


N = 2048


@pytest.fixture(scope="module")
def small():
    """The small study's Greeks at N = 2048, and the programs to move a parameter with."""
    st = load_study(small_study())
    plan = eg.gradient_plan(make_plan(st, scenarios=N, seed=3, precision="float64", chunk_size=1024, monthly=False))
    tgts = tuple(eg.targets(plan))
    progs = eg.Programs(plan, "npv_usd", tgts)
    m, _ = wg.forward_pass(progs, N, 0)
    centers = {k: np.array([sg.quantile(r, a) for r in m]) for k, a in sg.LEVELS.items()}
    h = np.array([sg.bandwidth(r) for r in m])
    est = wg.gradient_pass(progs, N, sg.Sums(centers, h)).result()
    return st, plan, tgts, progs, m, est


def _fd(small, k, rel):
    st, plan, tgts, progs, m, est = small
    t = tgts[k]
    h = rel * max(abs(t.value), 1e-2)
    up, down = (wg.moved_metric(progs, st, t.path, t.param, t.value + s * h, N) for s in (1, -1))
    return up, down, h


def test_pathwise_mean_derivatives_match_common_random_number_differences(small):
    """Every parameter with a pathwise derivative: d mean / d theta against (mean(theta + h) -
    mean(theta - h)) / 2h on the same draws, within 3 standard errors plus the difference's own
    error (the metric is piecewise smooth: a few scenarios cross a kink between theta +- h)."""
    st, plan, tgts, progs, m, est = small
    checked = 0
    for k, t in enumerate(tgts):
        if t.note is not None:
            continue
        up, down, h = _fd(small, k, 1e-4)
        fd = (up.mean(1) - down.mean(1)) / (2 * h)
        pw, se = est["d_mean"][k], est["d_mean_se"][k]
        assert np.all(np.abs(pw - fd) <= 3 * se + 1e-3 * np.abs(fd) + 1e-9), (t, pw, fd, se)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    "path,param",
    [
        ("market.token_price.initial_usd_per_mtok", "p95"),
        ("systems.rack.capex_usd", "mode"),
        ("market.demand.utilization", "mean"),
        ("market.electricity.usd_per_kwh", "high"),
    ],
)
def test_var_and_p_loss_derivatives_match_common_random_number_differences(small, path, param):
    """The kernel estimator of d P5 / d theta, and the smoothed one of d P(loss) / d theta, against
    differences of the empirical P5 and P(loss) on the same draws: within 3 standard errors plus
    the difference's error (a step of 2% moves the quantile across a few order statistics)."""
    st, plan, tgts, progs, m, est = small
    k = next(i for i, t in enumerate(tgts) if (t.path, t.param) == (path, param))
    up, down, h = _fd(small, k, 0.02)
    fd_p5 = (np.quantile(up, 0.05, axis=1) - np.quantile(down, 0.05, axis=1)) / (2 * h)
    pw, se = est["d_p5"][k], est["d_p5_se"][k]
    assert np.all(np.abs(pw - fd_p5) <= 3 * se + 0.1 * np.abs(fd_p5)), (pw, fd_p5, se)
    fd_loss = ((up < 0).mean(1) - (down < 0).mean(1)) / (2 * h)
    pl, pl_se = est["d_p_loss"][k], est["d_p_loss_se"][k]
    fd_err = 2 / N / (2 * h) * np.sqrt(np.maximum(np.abs(up < 0).sum(1) - (down < 0).sum(1), 1))
    assert np.all(np.abs(pl - fd_loss) <= 3 * pl_se + 3 * fd_err + 0.1 * np.abs(fd_loss)), (pl, fd_loss, pl_se)


def test_design_point_is_on_the_limit_state_and_nearest_the_origin():
    st = load_study(small_study())
    plan = eg.gradient_plan(make_plan(st, scenarios=64, seed=3, precision="float64", chunk_size=64, monthly=False))
    points = design_points(plan, "npv_usd", plan.systems)
    ls = LimitState(plan, "npv_usd", len(points))
    rng = np.random.default_rng(0)
    for r, p in enumerate(points):
        assert p.note is None and p.converged
        assert abs(p.metric_at_point) <= 1e-3 * p.scale
        assert np.sign(p.beta) == np.sign(p.metric_at_median)
        assert 0 < ndtr(-p.beta) < 1
        z = p.z
        beta = np.linalg.norm(z)

        def g_grad(Z):
            (_, (g, _)), grad = ls.value_and_grad(Z)
            return np.asarray(g)[r], np.asarray(grad)[r]

        for _ in range(4):  # a step along the limit state, projected back onto it, is no nearer
            g0, n0 = g_grad(np.tile(z, (len(points), 1)))
            d = rng.normal(size=z.size)
            d -= d @ n0 / (n0 @ n0) * n0
            y = z + 0.3 * d / np.linalg.norm(d)
            for _ in range(20):
                gy, ny = g_grad(np.tile(y, (len(points), 1)))
                y = y - gy / (ny @ ny) * ny
            assert abs(gy) <= 1e-3 * p.scale
            assert np.linalg.norm(y) >= beta - 1e-6 * max(beta, 1)


def test_reverse_stress_medians_are_those_of_the_scenario_rows(tmp_path):
    """reverse_stress.csv's medians inside and outside the loss region against the same statistics
    recomputed from scenarios.parquet of a float64 run on the same seed and scenarios."""
    import mcrisk

    raw = small_study(scenarios=512, precision="float64")
    run = mcrisk.run_study(raw, out=tmp_path / "run", analyze=False, stress=False, monthly=False)
    res = wg.run_greeks(raw, out=tmp_path / "g", scenarios=512, design=False)
    rows = pd.read_parquet(run.folder / "scenarios.parquet")
    rs = pd.read_csv(res.folder / "reverse_stress.csv")
    assert set(rs["system"]) == {"rack", "server"}
    for (system, region), part in rs.groupby(["system", "region"]):
        s = rows[rows["system"] == system].sort_values("scenario")
        npv = s["npv_usd"].to_numpy()
        inside = npv < 0 if region == "npv_below_0" else npv <= np.quantile(npv, 0.05)
        assert part["scenarios_inside"].iloc[0] == inside.sum()
        for r in part.to_dict("records"):
            col = r["input"] if not r["input"].startswith("systems.") else "system." + r["input"].split(".", 2)[2]
            x = s[col].to_numpy()
            np.testing.assert_allclose(r["inside_median"], np.median(x[inside]), rtol=1e-9)
            np.testing.assert_allclose(r["outside_median"], np.median(x[~inside]), rtol=1e-9)
        assert list(part["rank"]) == list(range(1, len(part) + 1))
        assert np.all(np.diff(part["shift_sd"].abs().to_numpy()) <= 1e-12)
    g = pd.read_csv(res.folder / "greeks.csv")
    assert {"d_mean", "d_mean_se", "d_p5", "d_p1", "bandwidth", "d_p_loss", "p_loss_method", "elasticity"} <= set(g)
    lead = g[g["method"] == "not differentiable"]
    assert lead["d_mean"].isna().all() and (lead["note"].str.len() > 0).all()


def test_a_metric_without_derivative_says_so(tmp_path):
    res = wg.run_greeks(small_study(), out=tmp_path, scenarios=64, metric="payback_months", design=False)
    g = res.greeks
    assert (g["method"] == "not differentiable").all()
    assert g["d_mean"].isna().all() and g["note"].str.contains("step function").all()

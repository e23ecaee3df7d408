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
from mcrisk.errors import StudyError
from mcrisk.sampling.dist_grad import draw_tangents, parameters
from mcrisk.sampling.quantiles import quantile
from mcrisk.stats import greeks as sg
from mcrisk.study.columns import study_path
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


N = 4096


def _greeks(n: int):
    """The small study's Greeks at n scenarios, and the programs to move a parameter with."""
    st = load_study(small_study())
    plan = eg.gradient_plan(make_plan(st, scenarios=n, seed=3, precision="float64", chunk_size=1024, monthly=False))
    tgts = tuple(eg.targets(plan))
    progs = eg.Programs(plan, "npv_usd", tgts)
    m, _ = wg.forward_pass(progs, n, 0)
    centers = {k: np.array([sg.quantile(r, a) for r in m]) for k, a in sg.LEVELS.items()}
    h = np.array([sg.bandwidth(r) for r in m])
    est = wg.gradient_pass(progs, n, sg.Sums(centers, h)).result()
    return st, plan, tgts, progs, m, est


@pytest.fixture(scope="module")
def small():
    return _greeks(N)


@pytest.fixture(scope="module")
def large():
    """The same at 32,768 scenarios (the same compiled programs: the chunk is the same; 5 s)."""
    return _greeks(8 * N)


def _fd(small, k, rel):
    st, plan, tgts, progs, m, est = small
    n = m.shape[1]
    t = tgts[k]
    h = rel * max(abs(t.value), 1e-2)
    at = {}
    for s in (1, -1):  # one-sided where the parameter sits on its range's bound (a ramp of 0 months)
        try:
            at[s] = wg.moved_metric(progs, st, t.path, t.param, t.value + s * h, n)
        except StudyError:
            at[s] = m
    assert at[1] is not m or at[-1] is not m
    return at[1], at[-1], h * (2 - (at[1] is m) - (at[-1] is m)) / 2


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
def test_var_and_p_loss_derivatives_match_common_random_number_differences(large, path, param):
    """The local-linear kernel estimator of d P5 / d theta, and the smoothed one of d P(loss) / d
    theta, against differences of P5 (its Harrell-Davis estimate) and of P(loss) on the same
    draws (a step of 2%), at 32,768 scenarios.

    Such a difference is itself noisy: it follows the few scenarios that sit around the
    quantile (or cross 0). On this study's first 4,096 scenarios the difference of the
    electricity price's high read -1.72M against -1.12M to -1.14M on the next three batches of
    4,096, and -1.205M on 65,536 (the kernel: -1.26M on the first 4,096, -1.217M on 65,536).
    So its standard error is read from 8 batches of 4,096: a Harrell-Davis quantile averages
    about sqrt(N) order statistics, so the whole sample's difference has the batches' sd over
    8^(1/4) (over sqrt(8) for P(loss), a plain mean). Agreement: within 3 combined standard
    errors, plus 3% for the kernel's bias."""
    st, plan, tgts, progs, m, est = large
    k = next(i for i, t in enumerate(tgts) if (t.path, t.param) == (path, param))
    up, down, h = _fd(large, k, 0.02)
    stats = {  # statistic, and the power of the batch count that scales its batches' sd
        "p5": (lambda x: sg.harrell_davis(x, 0.05), 0.25),
        "p_loss": (lambda x: (x < 0).mean(-1), 0.5),
    }
    for name, (stat, power) in stats.items():
        fd = (stat(up) - stat(down)) / (2 * h)
        batches = [(stat(u) - stat(d)) / (2 * h) for u, d in zip(np.split(up, 8, 1), np.split(down, 8, 1))]
        fd_se = np.std(batches, axis=0, ddof=1) / 8**power
        pw, se = est[f"d_{name}"][k], est[f"d_{name}_se"][k]
        assert np.all(np.abs(pw - fd) <= 3 * np.hypot(se, fd_se) + 0.03 * np.abs(fd)), (name, pw, fd, se, fd_se)
        assert np.all(np.sign(pw) == np.sign(fd)), (name, pw, fd)


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

        def g_grad(Z, r=r):
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


@pytest.mark.slow  # 40-50 s on 2 cores: a float64 run and the Greeks' programs to compile
def test_reverse_stress_medians_are_those_of_the_scenario_rows(tmp_path):
    """reverse_stress.csv's medians inside and outside the loss region against the same statistics
    recomputed from scenarios.parquet of a float64 run on the same seed and scenarios."""
    import mcrisk

    raw = small_study(scenarios=512, precision="float64")
    run = mcrisk.run_study(raw, out=tmp_path / "run", analyze=False, stress=False, monthly=False)
    res = wg.run_greeks(
        raw, out=tmp_path / "g", scenarios=512, design=False, chunk_size=1024
    )  # (the fixtures' programs)
    rows = pd.read_parquet(run.folder / "scenarios.parquet").rename(columns=study_path)  # by dotted path
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
    assert res.reverse_stress.empty and res.design_point.empty  # no loss region: not an NPV


@pytest.mark.slow  # a run, the Greeks and the design point to compile: about a minute on 2 cores
def test_run_greeks_writes_the_tables_prints_them_and_reports_them(tmp_path):
    from typer.testing import CliRunner

    from mcrisk.cli.app import app
    from mcrisk.report.page import write_report
    from tests.conftest import write_study

    study = write_study(tmp_path / "s.yaml", small_study(scenarios=1024))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(study), "-o", str(out), "--greeks", "--no-stress", "--no-analyze"])
    assert result.exit_code == 0, result.output
    for name in ("greeks.csv", "reverse_stress.csv", "design_point.csv"):
        assert (out / name).is_file()
    assert "reverse stress test" in result.output and "most likely loss scenario" in result.output
    dp = pd.read_csv(out / "design_point.csv")
    assert (dp["metric_at_point"].abs() <= 1e-3 * dp["capex_usd"]).all()
    page = write_report(out).read_text()
    assert "Reverse stress test and sensitivities" in page and "beta" in page


def test_the_portfolio_rows_mean_derivatives_are_the_sums_of_the_systems(tmp_path):
    """The fleet's NPV is the sum of its systems' NPVs, so the derivative of its mean by any
    parameter is the sum of theirs (a market input reaches every system; a system's own input
    only its system), on a study with the extensions (each system reads its own copy of the
    market inputs in the single reverse pass)."""
    study = small_study()
    study["portfolio"] = True
    study["finance"] = {**study.get("finance", {}), "tax_rate": 0.21}
    res = wg.run_greeks(study, out=tmp_path, scenarios=256, design=False)
    g = res.greeks[res.greeks["method"] == "pathwise"].set_index(["system", "input", "parameter"])["d_mean"]
    fleet = g.xs("portfolio", level="system")
    systems = g.drop("portfolio", level="system").groupby(level=["input", "parameter"]).sum()
    assert len(fleet) > 0
    np.testing.assert_allclose(fleet.sort_index(), systems.reindex(fleet.index).sort_index(), rtol=1e-9, atol=1e-6)

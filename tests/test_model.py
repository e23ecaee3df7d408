"""The model's building blocks: market paths against closed forms, IRR edge cases, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcrisk.engine.plan import make_plan, sample, simulate
from mcrisk.model.irr import IRR_HIGH, irr
from mcrisk.model.market import MarketParams, Shocks, market_init, market_step
from mcrisk.study.schema import study_from_dict

from .conftest import small_study


def _paths(p: MarketParams, eps: Shocks, months: int):
    def step(state, x):
        e, t = x
        state, mkt = market_step(p, state, e, t)
        return state, mkt

    ts = jnp.arange(1, months + 1, dtype=p.price0.dtype)
    _, out = jax.lax.scan(step, market_init(p), (eps, ts))
    return out  # each (T, n)


def _params(n, dtype=jnp.float64, **kw):
    base = dict(
        price0=1.0,
        decline=0.0,
        price_vol=0.0,
        util_mean=0.7,
        ramp=0.0,
        persistence=0.8,
        util_vol=0.0,
        elec0=0.08,
        elec_vol=0.0,
        reversion=1.0,
    )
    base.update(kw)
    return MarketParams(**{k: jnp.full((n,), v, dtype) for k, v in base.items()})


def test_price_path_mean_is_p0_times_decline():
    n, T = 200_000, 36
    p = _params(n, price0=1.5, decline=0.6, price_vol=0.5)
    eps = Shocks(*jax.random.normal(jax.random.key(0), (3, T, n), jnp.float64))
    price = np.asarray(_paths(p, eps, T).price)
    t = np.arange(1, T + 1)
    expected = 1.5 * (1 - 0.6) ** (t / 12)
    se = price.std(axis=1) / np.sqrt(n)
    assert np.all(np.abs(price.mean(axis=1) - expected) < 4 * se)


def test_still_paths_are_exact():
    T = 24
    p = _params(3, price0=2.0, decline=0.5, util_mean=0.6, ramp=4.0)
    zeros = Shocks(*jnp.zeros((3, T, 3)))
    out = _paths(p, zeros, T)
    t = np.arange(1, T + 1)
    np.testing.assert_allclose(out.price[:, 0], 2.0 * 0.5 ** (t / 12), rtol=1e-14)
    np.testing.assert_allclose(out.utilization[:, 0], 0.6 * np.minimum(1, t / 4), rtol=1e-15)
    np.testing.assert_allclose(out.electricity[:, 0], 0.08, rtol=1e-15)


@pytest.mark.parametrize("u", [0.0, 1.0])
def test_utilization_at_the_bounds_is_exact_without_shocks(u):
    out = _paths(_params(2, util_mean=u), Shocks(*jnp.zeros((3, 12, 2))), 12)
    assert np.all(np.asarray(out.utilization) == u)


def test_electricity_log_is_an_ar1_with_the_stated_variance():
    n, T, k, se = 100_000, 240, 1.5, 0.3
    p = _params(n, elec_vol=se, reversion=k)
    eps = Shocks(*jax.random.normal(jax.random.key(1), (3, T, n), jnp.float64))
    y = np.log(np.asarray(_paths(p, eps, T).electricity[-1]) / 0.08)
    a = 1 - k / 12
    stationary = se**2 / 12 / (1 - a**2)
    assert abs(y.var() / stationary - 1) < 0.02
    assert abs(y.mean()) < 4 * np.sqrt(stationary / n)


# How the IRR's Newton steps evaluate NPV: Horner's rule 4 months a pass (CPUs), Estrin's scheme (accelerators).
SCHEMES = pytest.mark.parametrize("unroll", [4, None], ids=["horner", "estrin"])


@SCHEMES
def test_irr_edge_cases(unroll):
    T = 12
    I = jnp.array([[100.0, 100.0, 100.0, 100.0]])
    cf = np.zeros((T, 1, 4))
    cf[:, 0, 0] = 10.0  # pays back: finite IRR
    cf[0, 0, 1] = 1e6  # NPV still positive at +10,000 %/yr -> +inf
    cf[:, 0, 2] = 0.1  # NPV < 0 even at -99 %/yr (sum of 1.468^t is 310) -> -inf
    r_m = 0.02  # a project priced at exactly 2 % a month
    cf[:, 0, 3] = 100.0 * r_m / (1 - (1 + r_m) ** -T)
    out = np.asarray(irr(I, jnp.asarray(cf), jnp.zeros((1, 4)), unroll=unroll))[0]
    assert 0 < out[0] < IRR_HIGH
    assert out[1] == np.inf and out[2] == -np.inf
    assert out[3] == pytest.approx(1.02**12 - 1, rel=1e-12)


def test_npv_is_differentiable_end_to_end():
    """jax.grad through sampling, paths and cash flows: dNPV/dP0 = PV of revenue / P0."""
    study = study_from_dict(small_study(scenarios=64))
    plan = make_plan(study, scenarios=64, seed=1, precision="float64", chunk_size=64)
    draw = sample(plan, jnp.arange(64, dtype=jnp.uint32))
    p0 = draw.values["market.token_price.initial_usd_per_mtok"]

    def total_npv(scale):
        values = dict(draw.values, **{"market.token_price.initial_usd_per_mtok": p0 * scale})
        out = simulate(plan, draw._replace(values=values), 64)
        return out["npv_usd"].sum()

    grad = jax.jit(jax.grad(total_npv))(1.0)
    h, npv = 1e-6, jax.jit(total_npv)  # (compiled once: op by op, the month loop and IRR take 20 s)
    fd = (npv(1.0 + h) - npv(1.0 - h)) / (2 * h)
    assert np.isfinite(grad) and grad > 0
    assert grad == pytest.approx(float(fd), rel=1e-6)


def test_adding_an_uncertain_input_changes_no_other_draw():
    """Keys come from each input's study path, so a new input leaves every other draw alone."""
    from mcrisk.engine.plan import draw_inputs

    base = small_study(scenarios=256)
    more = small_study(scenarios=256)
    more["systems"]["server"]["license_usd_per_gpu_year"] = {"dist": "uniform", "low": 0, "high": 500}
    idx = jnp.arange(256, dtype=jnp.uint32)
    a = draw_inputs(make_plan(study_from_dict(base), scenarios=256, seed=1, precision="float32", chunk_size=256), idx)
    b = draw_inputs(make_plan(study_from_dict(more), scenarios=256, seed=1, precision="float32", chunk_size=256), idx)
    assert set(b) - set(a) == {"systems.server.license_usd_per_gpu_year"}
    for path, values in a.items():
        np.testing.assert_array_equal(np.asarray(values), np.asarray(b[path]), err_msg=path)


@SCHEMES
@pytest.mark.parametrize("eps, rows", [(1e3, 1), (1e1, 1), (1e1, 300)])
def test_irr_finds_a_pair_of_roots_between_two_grid_points(eps, rows, unroll):
    """-I + A z - B z^T peaks at +eps where the annual rate is 20% (A, B chosen so), between two
    of the 64 grid rates: both roots lie within one grid cell, NPV < 0 at every grid point, and
    the IRR is the larger root, not -inf. (300 rows: more than the searched rows gathered.)"""
    from scipy.optimize import brentq

    T, B = 48, 1.0e5
    zs = 1.2 ** (-1 / 12)
    A = T * zs ** (T - 1) * B
    I = (T - 1) * zs**T * B - eps
    cf = np.zeros((T, 1, rows))
    cf[0], cf[-1] = A, -B

    def npv(a):
        z = (1 + a) ** (-1 / 12)
        return -I + A * z - B * z**T

    assert npv(0.2) == pytest.approx(eps)
    want = brentq(npv, 0.2, IRR_HIGH, xtol=1e-15, rtol=1e-15)
    got = np.asarray(irr(jnp.full((1, rows), I), jnp.asarray(cf), jnp.zeros((1, rows)), unroll=unroll))
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_grid_masks_are_the_same_read_in_one_reduction_or_row_by_row():
    """Accelerators read the IRR grid's sign masks in one reduction, CPUs row by row in a loop
    (irr.grid_points): the same grid points, and the same IRRs."""
    from mcrisk.model.irr import grid_points

    rng = np.random.default_rng(3)
    nonneg, falls = (jnp.asarray(rng.random((64, 3, 500)) < p) for p in (0.1, 0.4))
    falls = falls.at[-1].set(True)  # as grid_marks makes them
    one = jax.jit(lambda a, b: grid_points(a, b))(nonneg, falls)
    rows = jax.jit(lambda a, b: grid_points(a, b, 8))(nonneg, falls)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(rows)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    t = np.arange(1, 49)
    cf = rng.uniform(0.5, 3, (256, 1)) * np.exp(-rng.uniform(0.0, 0.05, (256, 1)) * t) - rng.uniform(
        0.05, 0.6, (256, 1)
    )
    args = (jnp.asarray(rng.uniform(5, 100, (1, 256))), jnp.asarray(cf.T[:, None, :]), jnp.zeros((1, 256)))
    np.testing.assert_array_equal(np.asarray(irr(*args)), np.asarray(irr(*args, mask_rows_per_pass=8)))


def _irr_case() -> tuple[jax.Array, jax.Array, jax.Array]:
    """(capex (1, 300), cash flows (48, 1, 300), residual (1, 300)): decaying revenue against a
    fixed cost, with sign changes in every 7th scenario (some with two roots or none)."""
    rng = np.random.default_rng(11)
    t = np.arange(1, 49)
    cf = rng.uniform(0.5, 3, (300, 1)) * np.exp(-rng.uniform(0.0, 0.05, (300, 1)) * t) - rng.uniform(
        0.05, 0.6, (300, 1)
    )
    cf[::7, rng.integers(0, 48)] *= -4
    return (
        jnp.asarray(rng.uniform(5, 100, (1, 300))),
        jnp.asarray(cf.T[:, None, :]),
        jnp.asarray(rng.uniform(0, 5, (1, 300))),
    )


def test_irr_does_not_depend_on_the_horner_unroll():
    """CPUs unroll the IRR's Horner loop 4 months per pass and accelerators 8 (engine.irr_unroll):
    the same operations in the same order, so the same IRRs to the bit, whatever the unroll."""
    args = _irr_case()
    got = {u: np.asarray(jax.jit(lambda a, b, c, u=u: irr(a, b, c, unroll=u))(*args)) for u in (1, 4, 8, 47)}
    assert np.isfinite(got[4]).sum() > 200
    for u in (1, 8, 47):
        np.testing.assert_array_equal(got[u], got[4])


@SCHEMES
def test_irr_converges_over_long_horizons(unroll):
    """240 months: the NPV polynomial has degree 240, and the refinement takes more Newton steps
    (irr.irr_newton_steps). Revenue decaying at a random rate against a fixed cost, so that
    flows turn negative late and many IRRs are deeply negative (where 5 steps left a third of
    them off): every IRR agrees with the float64 reference's to 1e-10 in log(1 + a)."""
    from mcrisk.reference import irr_reference

    rng = np.random.default_rng(1)
    T, n = 240, 512
    t = np.arange(1, T + 1)
    cf = rng.uniform(0.5, 3, (n, 1)) * np.exp(-rng.uniform(0.005, 0.05, (n, 1)) * t) - rng.uniform(0.05, 0.6, (n, 1))
    capex = rng.uniform(5, 200, n)
    residual = capex * rng.uniform(0, 0.1, n)
    got = np.asarray(
        irr(jnp.asarray(capex[None]), jnp.asarray(cf.T[:, None, :]), jnp.asarray(residual[None]), unroll=unroll)
    )[0]
    want = irr_reference(capex, cf, residual)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    ok = np.isfinite(want)
    assert ok.mean() > 0.5 and (want[ok] < -0.5).sum() > 50  # the comparison covers deeply negative IRRs
    np.testing.assert_allclose(np.log1p(got[ok]), np.log1p(want[ok]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("T", [1, 2, 3, 5, 47, 48, 240])
def test_estrin_and_horner_evaluate_the_same_npv(T):
    """npv_at by Estrin's tree (unroll=None) against Horner's rule and a direct float64 sum, with
    its derivative, for horizons that pair up evenly and not; z from a rate of +10,000% a year
    (z^T tiny) to -99% (z^T huge), where the terms span many orders of magnitude."""
    from mcrisk.model.irr import npv_at

    rng = np.random.default_rng(T)
    n = 64
    cf = rng.normal(0.0, 1.0, (T, n)) * rng.uniform(1, 1e6, n)
    capex, residual = rng.uniform(1, 1e7, n), rng.uniform(0, 1e6, n)
    z = np.exp(rng.uniform(-np.log(101.0), -np.log(0.01), n) / 12)
    t = np.arange(1, T + 1)[:, None]
    terms = cf * z**t
    want = terms.sum(0) + residual * z**T - capex
    want_d = (t * cf * z ** (t - 1)).sum(0) + T * residual * z ** (T - 1)
    scale = np.abs(terms).sum(0) + residual * z**T + capex  # the size of the terms that cancel
    dscale = (t * np.abs(cf) * z ** (t - 1)).sum(0) + T * residual * z ** (T - 1)
    args = (jnp.asarray(capex), jnp.asarray(cf), jnp.asarray(residual))
    for unroll in (None, 4):
        f, df = (np.asarray(x) for x in jax.jit(lambda z, u=unroll: npv_at(z, *args, unroll=u))(jnp.asarray(z)))
        assert np.all(np.abs(f - want) <= 1e-13 * scale), unroll
        assert np.all(np.abs(df - want_d) <= 1e-13 * dscale), unroll


def test_estrin_irrs_agree_with_horner_and_their_gradients_too():
    """The IRR with each NPV scheme: the same infinities, finite IRRs within 1e-13 in log(1 + a),
    and the same gradient with respect to the cash flows (the IRR is differentiable either way)."""
    capex, flows, residual = _irr_case()
    got = {
        u: np.asarray(jax.jit(lambda a, b, c, u=u: irr(a, b, c, unroll=u))(capex, flows, residual)) for u in (4, None)
    }
    ok = np.isfinite(got[4])
    assert ok.sum() > 200
    np.testing.assert_array_equal(got[None][~ok], got[4][~ok])
    np.testing.assert_allclose(np.log1p(got[None][ok]), np.log1p(got[4][ok]), rtol=0, atol=1e-13)

    def total(b, u):
        a = irr(capex, b, residual, unroll=u)
        return jnp.where(jnp.isfinite(a), a, 0.0).sum()

    g = {u: np.asarray(jax.jit(jax.grad(lambda b, u=u: total(b, u)))(flows)) for u in (4, None)}
    assert np.abs(g[4]).max() > 0
    np.testing.assert_allclose(g[None], g[4], rtol=1e-8, atol=1e-12 * np.abs(g[4]).max())


def test_the_accelerator_simulate_stage_matches_the_cpu_one(monkeypatch):
    """What a GPU run compiles (month loop 4 months a step, the IRR's NPV by Estrin's scheme, its
    grid masks in one reduction), run here on the CPU: the same metrics as the CPU's program,
    to float rounding (the paths are float32)."""
    from mcrisk.engine import plan as engine

    study = study_from_dict(small_study(scenarios=512))
    cpu = make_plan(study, scenarios=512, seed=3, precision="float32", chunk_size=512, monthly=False)
    monkeypatch.setattr(engine, "on_accelerator", lambda: True)
    gpu = make_plan(study, scenarios=512, seed=3, precision="float32", chunk_size=512, monthly=False)
    assert engine.irr_unroll(48) is None and gpu.unroll == 4
    idx = jnp.arange(512, dtype=jnp.uint32)  # (the GPU's shocks are drawn month-major: the same numbers)
    a = jax.jit(lambda d: simulate(cpu, d, 512))(sample(cpu, idx))
    b = jax.jit(lambda d: simulate(gpu, d, 512))(sample(gpu, idx))
    for m in a:
        x, y = np.asarray(a[m]), np.asarray(b[m])
        np.testing.assert_array_equal(np.isfinite(x), np.isfinite(y), err_msg=m)
        fin = np.isfinite(x)
        np.testing.assert_allclose(y[fin], x[fin], rtol=1e-5, atol=1e-9, err_msg=m)
    assert np.isfinite(np.asarray(a["irr"])).mean() > 0.5


def test_estrin_and_horner_agree_on_extreme_and_non_finite_flows():
    """Infinite, NaN, zero, huge and tiny cash flows, an infinite capex or residual, and no capex:
    the same +inf / -inf / NaN under either scheme, and the same finite IRRs."""
    T = 48
    cases = [  # (monthly cash flows, capex, residual)
        (np.full(T, np.inf), 100.0, 0.0),
        (np.full(T, -np.inf), 100.0, 0.0),
        (np.r_[np.inf, np.zeros(T - 1)], 100.0, 0.0),
        (np.r_[np.zeros(T - 1), -np.inf], 100.0, 0.0),
        (np.r_[np.nan, np.ones(T - 1)], 100.0, 0.0),
        (np.zeros(T), 100.0, 0.0),
        (np.full(T, 1e300), 100.0, 0.0),
        (np.full(T, -1e300), 100.0, 0.0),
        (np.full(T, 1e-300), 100.0, 0.0),
        (np.full(T, 5.0), 0.0, 0.0),
        (np.full(T, -5.0), 0.0, 0.0),
        (np.full(T, 3.0), 100.0, np.inf),
        (np.full(T, 3.0), np.inf, 0.0),
        (np.r_[np.full(T // 2, 10.0), np.full(T // 2, -10.0)], 50.0, 0.0),
        (np.full(T, 3e38), 1e39, 0.0),
    ]
    cf = jnp.asarray(np.stack([c for c, _, _ in cases], axis=1)[:, None, :])
    capex, residual = (jnp.asarray([[case[k] for case in cases]]) for k in (1, 2))
    horner, estrin = (np.asarray(irr(capex, cf, residual, unroll=u))[0] for u in (4, None))
    np.testing.assert_array_equal(np.isnan(horner), np.isnan(estrin))
    np.testing.assert_array_equal(horner[~np.isfinite(horner)], estrin[~np.isfinite(horner)])
    fin = np.isfinite(horner)
    assert fin.sum() == 2 and np.isnan(horner).sum() == 1
    np.testing.assert_allclose(np.log1p(estrin[fin]), np.log1p(horner[fin]), rtol=0, atol=1e-12)

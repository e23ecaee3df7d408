"""Specification of mcrisk.study.distributions: each DIST form equals a scipy distribution."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest
from scipy import stats

from mcrisk.sampling.quantiles import quantile, quantiles
from mcrisk.study.distributions import Beta, Discrete, Fixed, LogNormal, Normal, Pert, Triangular, Uniform, parse_dist

Z95 = stats.norm.ppf(0.95)


def beta_ab(mean, sd, low=0.0, high=1.0):
    """Method of moments, written out independently of the module."""
    m, v = (mean - low) / (high - low), (sd / (high - low)) ** 2
    nu = m * (1 - m) / v - 1
    return m * nu, (1 - m) * nu


def beta_of(a, b):
    """The {dist: beta} mapping with shape parameters (a, b) on [0, 1]."""
    return {"dist": "beta", "mean": a / (a + b), "sd": np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))}


# (DIST mapping, the same distribution in scipy)
TABLE = [
    ({"dist": "uniform", "low": 2, "high": 5}, stats.uniform(2, 3)),
    ({"dist": "loguniform", "low": 1e-3, "high": 10}, stats.loguniform(1e-3, 10)),
    ({"dist": "triangular", "low": 3e6, "mode": 3.4e6, "high": 4e6}, stats.triang(0.4, 3e6, 1e6)),
    ({"dist": "triangular", "low": 0, "mode": 0, "high": 2}, stats.triang(0.0, 0, 2)),
    ({"dist": "pert", "low": 1, "mode": 2, "high": 6}, stats.beta(1.8, 4.2, 1, 5)),
    ({"dist": "pert", "low": 0, "mode": 9, "high": 10, "shape": 2}, stats.beta(2.8, 1.2, 0, 10)),
    ({"dist": "normal", "mean": 3, "sd": 2}, stats.norm(3, 2)),
    ({"dist": "normal", "mean": 0, "sd": 1, "low": 1.5}, stats.truncnorm(1.5, np.inf)),
    ({"dist": "normal", "mean": 10, "sd": 2, "high": 7}, stats.truncnorm(-np.inf, -1.5, 10, 2)),
    ({"dist": "normal", "mean": 0.1, "sd": 0.05, "low": 0, "high": 0.2}, stats.truncnorm(-2, 2, 0.1, 0.05)),
    ({"dist": "normal", "mean": 0, "sd": 1, "low": 3, "high": 6}, stats.truncnorm(3, 6)),
    ({"dist": "lognormal", "p5": 2, "p95": 8}, stats.lognorm(np.log(4) / (2 * Z95), scale=4.0)),
    ({"dist": "lognormal", "median": 0.5, "sigma": 0.3}, stats.lognorm(0.3, scale=0.5)),
    ({"dist": "beta", "mean": 0.3, "sd": 0.1}, stats.beta(*beta_ab(0.3, 0.1))),
    ({"dist": "beta", "mean": 30, "sd": 20, "low": 0, "high": 100}, stats.beta(*beta_ab(30, 20, 0, 100), 0, 100)),
    ({"dist": "beta", "mean": 0.4, "sd": 0.4}, stats.beta(0.2, 0.3)),  # U-shaped, a, b < 1
]
IDS = [f"{d['dist']}-{i}" for i, (d, _) in enumerate(TABLE)]
FLOAT32_CASES = [0, 2, 4, 7, 10, 11, 13, 15]
N = 20_000
ALL_FORMS = [spec for spec, _ in TABLE] + [0.08, {"dist": "discrete", "values": [1, 2], "weights": [1, 3]}]
U_POINTS = np.array([1e-6, 1e-3, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-3, 1 - 1e-6])
ENDS = [0.0, 0.5, 1.0]  # 0 and 1 are clamped to eps and 1 - eps


@functools.cache
def uniforms(dtype):
    """N random uniforms, then U_POINTS (float32: those it can hold usefully), then ENDS."""
    points = U_POINTS if dtype == jnp.float64 else U_POINTS[2:-2]
    random = jax.random.uniform(jax.random.key(0), (N,), dtype)
    return jnp.concatenate([random, jnp.asarray(points, dtype), jnp.asarray(ENDS, dtype)])


@functools.cache
def evaluate(spec_index, dtype):
    """(draws, points u, quantile at them, quantile at ENDS) of ALL_FORMS[spec_index] in dtype.

    One quantile call on one shape per dtype: eager JAX compiles each primitive once per
    shape, so sharing the shape across forms and tests keeps this file fast.
    """
    u = uniforms(dtype)
    x = quantile(parse_dist(ALL_FORMS[spec_index]), u)
    assert x.dtype == dtype and x.shape == u.shape
    x, u = np.asarray(x, np.float64), np.asarray(u, np.float64)
    return x[:N], u[N:-3], x[N:-3], x[-3:]


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("k", range(len(TABLE)), ids=IDS)
def test_draws_follow_the_scipy_distribution(k):
    x, *_ = evaluate(k, jnp.float64)
    assert stats.kstest(x, TABLE[k][1].cdf).pvalue > 1e-3


@pytest.mark.parametrize("k", FLOAT32_CASES, ids=[IDS[k] for k in FLOAT32_CASES])
def test_float32_draws_follow_the_scipy_distribution(k):
    x, *_ = evaluate(k, jnp.float32)
    assert stats.kstest(x, TABLE[k][1].cdf).pvalue > 1e-3


@pytest.mark.parametrize("k", range(len(TABLE)), ids=IDS)
def test_quantile_is_the_scipy_ppf_in_float64(k):
    _, u, got, _ = evaluate(k, jnp.float64)
    want = TABLE[k][1].ppf(u)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.max(np.abs(want)))


@pytest.mark.parametrize("k", FLOAT32_CASES, ids=[IDS[k] for k in FLOAT32_CASES])
def test_quantile_is_the_scipy_ppf_in_float32(k):
    _, u, got, _ = evaluate(k, jnp.float32)
    want = TABLE[k][1].ppf(u)  # the ppf of the float32 uniform itself
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))


@pytest.mark.parametrize(
    "a,b", [(0.3, 0.5), (0.5, 0.5), (5, 1), (1, 5), (2, 50), (0.05, 2), (3, 3), (200, 300), (1e4, 1e4)]
)
def test_beta_table_matches_scipy_ppf_to_1e9(a, b):
    # As many points as uniforms() holds, so the eager kernels compiled for it are reused.
    u = np.concatenate(
        [np.linspace(1e-6, 1 - 1e-6, N + 14 - 4000), np.geomspace(1e-6, 0.5, 2000), 1 - np.geomspace(1e-6, 0.5, 2000)]
    )
    got = np.asarray(quantile(parse_dist(beta_of(a, b)), jnp.asarray(u)))
    assert np.max(np.abs(got - stats.beta(a, b).ppf(u))) < 1e-9


def test_discrete_frequencies_and_boundaries():
    d = parse_dist({"dist": "discrete", "values": [3, 1, 2, 5], "weights": [1, 2, 0, 1]})
    # Sorted, zero weight dropped: values [1, 3, 5], F = [0.5, 0.75, 1]; Q(u) = min{x : F(x) >= u},
    # so a u on a step of F gives the value below the step.
    for dtype in (jnp.float32, jnp.float64):
        np.testing.assert_array_equal(quantile(d, jnp.array([0.5, 0.5000001, 0.75, 0.7500001], dtype)), [1, 3, 3, 5])
        x = np.asarray(quantile(d, uniforms(dtype)))[:N]
        counts = [np.sum(x == v) for v in (1, 2, 3, 5)]
        assert counts[1] == 0 and sum(counts) == N
        assert stats.chisquare([counts[0], counts[2], counts[3]], N * np.array([0.5, 0.25, 0.25])).pvalue > 1e-3
    assert d.support() == (1.0, 5.0) and d.mean() == pytest.approx(2.5) and not d.is_fixed
    assert parse_dist({"dist": "discrete", "values": [7, 8], "weights": [0, 3]}).is_fixed


def test_fixed_quantile_is_the_value():
    d = parse_dist(0.08)
    np.testing.assert_array_equal(quantile(d, jnp.array([0.0, 0.5, 1.0])), [0.08] * 3)
    assert d.is_fixed and d.support() == (0.08, 0.08) and d.mean() == 0.08


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("spec,frozen", TABLE, ids=IDS)
def test_support_and_mean_match_scipy(spec, frozen):
    d = parse_dist(spec)
    assert d.support() == pytest.approx(frozen.support(), rel=1e-12)
    assert d.mean() == pytest.approx(frozen.mean(), rel=1e-9)
    assert not d.is_fixed


@pytest.mark.parametrize("k", range(len(ALL_FORMS)))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_quantile_keeps_dtype_and_shape_and_clamps_the_ends(k, dtype):
    *_, ends = evaluate(k, dtype)  # evaluate() checks dtype and shape
    lo, hi = np.asarray(parse_dist(ALL_FORMS[k]).support(), dtype)  # the support as rounded to dtype
    assert np.all(np.isfinite(ends)) and np.all((ends >= lo) & (ends <= hi)) and np.all(np.diff(ends) >= 0)


@pytest.mark.parametrize("spec,frozen", TABLE, ids=IDS)
def test_derivative_is_one_over_the_pdf(spec, frozen):
    # Forward mode on all of uniforms(): quantile is elementwise, so a tangent of ones gives
    # dQ/du at every point, and the eager kernels compiled for the draws are reused.
    u = uniforms(jnp.float64)
    x, dx = jax.jvp(functools.partial(quantile, parse_dist(spec)), (u,), (jnp.ones_like(u),))
    assert np.all(np.isfinite(dx))
    inner = slice(N + 3, N + 8)  # u = 0.1, 0.3, 0.5, 0.7, 0.9
    np.testing.assert_allclose(dx[inner], 1 / frozen.pdf(frozen.ppf(u[inner])), rtol=1e-6)


def test_quantile_jits_on_any_shape_and_has_a_grad():
    # One of each code path in a single jit: compiling ndtri is what costs time on CPU.
    cases = [0, 1, 2, 4, 9, 10, 11]
    forms = [parse_dist(ALL_FORMS[k]) for k in cases] + [parse_dist(0.08), parse_dist(ALL_FORMS[-1])]

    @jax.jit
    def run(u):
        return [quantile(d, u) for d in forms], [jax.grad(functools.partial(quantile, d))(0.3) for d in forms]

    u = jnp.array([[0.05, 0.3], [0.5, 0.95]], jnp.float32)
    got, grads = run(u)
    want = [TABLE[k][1].ppf(np.asarray(u, np.float64)) for k in cases] + [np.full((2, 2), 0.08), [[1, 2], [2, 2]]]
    for x, w in zip(got, want):
        assert x.shape == (2, 2) and x.dtype == jnp.float32
        np.testing.assert_allclose(x, w, rtol=1e-5)
    want = [1 / TABLE[k][1].pdf(TABLE[k][1].ppf(0.3)) for k in cases] + [0.0, 0.0]  # 0 for fixed, discrete
    np.testing.assert_allclose(grads, want, rtol=1e-6)


def test_integer_uniforms_are_refused():
    with pytest.raises(TypeError, match="floating"):
        quantile(parse_dist(1.0), jnp.array([0, 1]))


def test_describe():
    assert parse_dist(0.08).describe() == "0.08"
    assert parse_dist(TABLE[2][0]).describe() == "triangular(low=3e+06, mode=3.4e+06, high=4e+06)"
    assert (
        parse_dist({"dist": "pert", "low": 0, "mode": 1, "high": 2, "shape": 6}).describe()
        == "pert(low=0, mode=1, high=2, shape=6)"
    )
    assert parse_dist({"dist": "normal", "mean": 1, "sd": 2, "high": 3}).describe() == "normal(mean=1, sd=2, high=3)"
    assert parse_dist({"dist": "lognormal", "p5": 2, "p95": 8}).describe() == "lognormal(p5=2, p95=8)"
    assert (
        parse_dist({"dist": "beta", "mean": 30, "sd": 20, "low": 0, "high": 100}).describe()
        == "beta(mean=30, sd=20, high=100)"
    )


def test_parameters_of_pert_beta_and_lognormal():
    assert parse_dist({"dist": "pert", "low": 1, "mode": 2, "high": 6}).shape_params() == pytest.approx((1.8, 4.2))
    assert parse_dist({"dist": "beta", "mean": 0.4, "sd": 0.4}).shape_params() == pytest.approx((0.2, 0.3))
    mu, sigma = parse_dist({"dist": "lognormal", "p5": 2, "p95": 8}).log_params()
    assert (mu, sigma) == pytest.approx((np.log(4), np.log(4) / (2 * Z95)))


# ---------------------------------------------------------------- parsing and validation


def test_bare_numbers_are_fixed_and_models_pass_through():
    assert parse_dist(0.08) == Fixed(value=0.08)
    assert parse_dist(3) == Fixed(value=3.0)
    assert parse_dist({"dist": "fixed", "value": 2}) == Fixed(value=2.0)
    u = Uniform(low=1, high=2)
    assert parse_dist(u) == u and parse_dist(u.model_dump()) == u
    # `mean` is both a parameter (alias) and a method: the field is mean_.
    n = Normal(mean=1, sd=2)
    assert n.mean() == 1.0 and n.model_dump()["mean"] == 1.0 and parse_dist(n.model_dump()) == n
    assert Beta(mean=0.5, sd=0.1).mean() == 0.5
    assert isinstance(parse_dist({"dist": "triangular", "low": 0, "mode": 1, "high": 2}), Triangular)
    assert isinstance(parse_dist({"dist": "pert", "low": 0, "mode": 1, "high": 2}), Pert)
    assert isinstance(parse_dist({"dist": "lognormal", "median": 1, "sigma": 1}), LogNormal)
    assert isinstance(parse_dist({"dist": "discrete", "values": [1], "weights": [1]}), Discrete)


def test_models_are_frozen_and_hashable():
    with pytest.raises(pydantic.ValidationError):
        Uniform(low=1, high=2).low = 0
    assert len({parse_dist(spec) for spec in ALL_FORMS + ALL_FORMS}) == len(ALL_FORMS)


def error(obj):
    """The single (loc, msg) that parse_dist reports for obj."""
    with pytest.raises(pydantic.ValidationError) as info:
        parse_dist(obj)
    (err,) = info.value.errors()
    return err["loc"], err["msg"]


BAD = [  # (DIST, last element of loc, text the message must contain)
    ({"dist": "uniform", "low": 3e6, "high": 2.5e6}, "high", "must be > low (3.0e+06), got 2.5e+06"),
    ({"dist": "uniform", "low": 1, "high": 1}, "high", "must be > low (1), got 1"),
    ({"dist": "loguniform", "low": 0, "high": 1}, "low", "must be > 0, got 0"),
    ({"dist": "loguniform", "low": 2, "high": 1}, "high", "must be > low (2), got 1"),
    ({"dist": "triangular", "low": 1, "mode": 5, "high": 3}, "mode", "must lie in [low, high] = [1, 3], got 5"),
    ({"dist": "triangular", "low": 3, "mode": 3, "high": 3}, "high", "must be > low (3), got 3"),
    ({"dist": "pert", "low": 1, "mode": 0, "high": 3}, "mode", "must lie in [low, high] = [1, 3], got 0"),
    ({"dist": "pert", "low": 0, "mode": 1, "high": 3, "shape": 0}, "shape", "must be > 0, got 0"),
    ({"dist": "normal", "mean": 0, "sd": -1}, "sd", "must be > 0, got -1"),
    ({"dist": "normal", "mean": 0, "sd": 1, "low": 2, "high": 1}, "high", "must be > low (2), got 1"),
    ({"dist": "normal", "mean": 0, "sd": 1, "low": 50}, "low", "leaves no probability mass"),
    ({"dist": "normal", "mean": 0, "sd": 1, "high": -50}, "high", "leaves no probability mass"),
    ({"dist": "lognormal", "p5": 2.5, "p95": 1.0}, "p95", "must be > p5 (2.5), got 1"),
    ({"dist": "lognormal", "p5": -1, "p95": 1.0}, "p5", "must be > 0, got -1"),
    ({"dist": "lognormal", "p5": 1}, "p95", "is required with p5"),
    ({"dist": "lognormal", "p95": 1}, "p95", "needs p5 as well"),
    ({"dist": "lognormal", "median": 1}, "sigma", "is required with median"),
    ({"dist": "lognormal", "median": 1, "sigma": 0}, "sigma", "must be > 0, got 0"),
    ({"dist": "lognormal", "p5": 1, "p95": 2, "median": 1.5}, "median", "not both"),
    ({"dist": "lognormal"}, "lognormal", "needs either {p5, p95} or {median, sigma}"),
    (
        {"dist": "beta", "mean": 0.97, "sd": 0.2},
        "sd",
        "too large for mean 0.97 on [0, 1]: need sd < sqrt((mean-low)*(high-mean)) = 0.1706, got 0.2",
    ),
    ({"dist": "beta", "mean": 1.2, "sd": 0.1}, "mean", "must lie strictly inside (low, high) = (0, 1), got 1.2"),
    ({"dist": "beta", "mean": 0.5, "sd": 0.1, "low": 1, "high": 0}, "high", "must be > low (1), got 0"),
    ({"dist": "beta", "mean": 0.5, "sd": 0}, "sd", "must be > 0, got 0"),
    (
        {"dist": "discrete", "values": [1, 2, 3], "weights": [1, 2]},
        "weights",
        "must have one weight per value (3 values, 2 weights)",
    ),
    ({"dist": "discrete", "values": [1, 2], "weights": [0, 0]}, "weights", "must sum to a positive number"),
    ({"dist": "discrete", "values": [1, 2], "weights": [1, -1]}, "weights", "must be >= 0, got -1 at position 1"),
    ({"dist": "discrete", "values": [], "weights": [1]}, "values", "at least 1 item"),
    ({"dist": "uniform", "low": float("nan"), "high": 1}, "low", "finite"),
    ({"dist": "normal", "mean": float("inf"), "sd": 1}, "mean", "finite"),
    ({"dist": "discrete", "values": [1, float("inf")], "weights": [1, 1]}, 1, "finite"),
    ({"dist": "fixed", "value": float("nan")}, "value", "finite"),
    ({"dist": "uniform", "low": True, "high": 2}, "low", "must be a number, got True"),
    ({"dist": "uniform", "low": 1, "high": 2, "mode": 1.5}, "mode", "Extra inputs are not permitted"),
    ({"dist": "fixed", "value": 1, "sd": 2}, "sd", "Extra inputs are not permitted"),
    ({"dist": "gamma", "shape": 2}, None, "'gamma'"),
    ({"low": 1, "high": 2}, None, "discriminator 'dist'"),
    (True, None, "got True"),
    ("0.08", None, "dictionary"),
]


@pytest.mark.parametrize("obj,field,text", BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_validation_errors_name_the_field_the_rule_and_the_values(obj, field, text):
    loc, msg = error(obj)
    if field is not None:
        assert loc[-1] == field
    assert text in msg


def test_quantiles_of_many_forms_at_once_equal_one_by_one():

    forms = [
        {"dist": "uniform", "low": 1, "high": 3},
        {"dist": "triangular", "low": 0, "mode": 1, "high": 4},
        {"dist": "beta", "mean": 0.6, "sd": 0.1},
        {"dist": "pert", "low": 0.2, "mode": 0.5, "high": 0.9},
        {"dist": "lognormal", "p5": 0.5, "p95": 2.5},
        {"dist": "normal", "mean": 190, "sd": 20, "low": 120},
        {"dist": "normal", "mean": 0, "sd": 1},
        {"dist": "loguniform", "low": 1.1, "high": 3},
        {"dist": "discrete", "values": [1, 2], "weights": [1, 3]},
        {"dist": "uniform", "low": -5, "high": 5},
        {"dist": "triangular", "low": 2, "mode": 2, "high": 3},
    ]
    dists = [parse_dist(f) for f in forms]
    for dtype in (jnp.float32, jnp.float64):
        u = jax.random.uniform(jax.random.key(5), (4096, len(dists)), dtype)
        together = quantiles(dists, u)
        for j, d in enumerate(dists):
            alone = quantile(d, u[:, j])
            assert together[j].dtype == dtype
            np.testing.assert_array_equal(np.asarray(together[j]), np.asarray(alone))

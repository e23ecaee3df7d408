"""Tests of the independent float64 NumPy reference model (mcrisk/reference.py).

They pin the reference to the worked checks of the model contract, to closed
forms, and to identities that follow from the definitions. They use NumPy and
SciPy only (no JAX), and run in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcrisk.reference import (
    HOURS_PER_MONTH,
    MARKET_KEYS,
    METRICS,
    SECONDS_PER_MONTH,
    SYSTEM_KEYS,
    irr_reference,
    market_paths,
    npv_reference,
    system_flows,
    system_metrics,
)

P0 = "market.token_price.initial_usd_per_mtok"
DECLINE = "market.token_price.annual_decline"
PVOL = "market.token_price.volatility"
UTIL = "market.demand.utilization"
RAMP = "market.demand.ramp_months"
PERSIST = "market.demand.persistence"
UVOL = "market.demand.volatility"
ELEC = "market.electricity.usd_per_kwh"
EVOL = "market.electricity.volatility"
REVERT = "market.electricity.mean_reversion"
PUE = "facility.pue"
COLO = "facility.colocation_usd_per_kw_month"
RATE = "finance.discount_rate"


def sig(x: float, digits: int) -> float:
    """x rounded to `digits` significant figures."""
    return float(f"{x:.{digits - 1}e}")


def flat_market(**over):
    """Full utilization, flat price, flat power: the seed claims' market."""
    m = {
        P0: 1.10,
        DECLINE: 0.0,
        PVOL: 0.0,
        UTIL: 1.0,
        RAMP: 0.0,
        UVOL: 0.0,
        ELEC: 0.08,
        EVOL: 0.0,
        PUE: 1.3,
        COLO: 190.0,
    }
    m.update(over)
    return m


GB200 = {
    "gpus_per_unit": 72,
    "capex_usd": 5.0e6,
    "it_power_kw": 132.0,
    "throughput_tokens_per_s_per_gpu": 10_000.0,
    "depreciation_years": 3,
}
B200 = {
    "gpus_per_unit": 8,
    "capex_usd": 400_000.0,
    "it_power_kw": 14.3,
    "throughput_tokens_per_s_per_gpu": 30_000.0,
    "depreciation_years": 4,
    "residual_value_fraction": 0.0,
    "maintenance_fraction_per_year": 0.0,
    "license_usd_per_gpu_year": 0.0,
}


def random_case(n: int, months: int, seed: int = 0):
    """A realistic uncertain study: every input varies, every shock is on."""
    rng = np.random.default_rng(seed)
    market = {
        P0: rng.lognormal(0.0, 0.5, n),
        DECLINE: rng.uniform(0.2, 0.8, n),
        PVOL: rng.uniform(0.0, 0.3, n),
        UTIL: rng.beta(6, 3, n),
        RAMP: rng.uniform(0, 6, n),
        PERSIST: rng.uniform(0.5, 0.95, n),
        UVOL: rng.uniform(0.1, 0.5, n),
        ELEC: rng.uniform(0.05, 0.15, n),
        EVOL: rng.uniform(0, 0.3, n),
        REVERT: rng.uniform(0.5, 2, n),
        PUE: rng.uniform(1.1, 1.5, n),
        COLO: rng.uniform(150, 220, n),
        RATE: rng.uniform(0.06, 0.15, n),
    }
    system = {
        "units": 2,
        "gpus_per_unit": 72,
        "capex_usd": rng.uniform(3e6, 4e6, n),
        "it_power_kw": rng.uniform(120, 140, n),
        "idle_power_fraction": 0.3,
        "throughput_tokens_per_s_per_gpu": rng.lognormal(np.log(6000), 0.3, n),
        "efficiency": rng.uniform(0.6, 0.9, n),
        "availability": rng.uniform(0.95, 1.0, n),
        "price_multiplier": 1.1,
        "software_speedup.ceiling": rng.uniform(1.1, 2.5, n),
        "software_speedup.time_constant_months": rng.uniform(2, 9, n),
        "maintenance_fraction_per_year": 0.02,
        "license_usd_per_gpu_year": 500.0,
        "residual_value_fraction": rng.uniform(0, 0.15, n),
        "depreciation_years": 4,
    }
    eps = tuple(rng.standard_normal((n, months)) for _ in range(3))
    return market, system, eps


# --------------------------------------------------------------------------- #
# the contract's worked checks
# --------------------------------------------------------------------------- #
def test_worked_check_gb200_roi_claim():
    m = system_metrics(flat_market(), GB200, 36)
    assert m["tokens"][0] == pytest.approx(72 * 10_000 * 36 * 2_629_800, rel=1e-15)
    assert sig(m["tokens"][0], 7) == 6.816442e13
    assert m["revenue_usd"][0] == pytest.approx(74_980_857.6, rel=1e-12)
    assert round(m["roi_multiple"][0], 3) == 14.996


@pytest.mark.parametrize("months, depreciation", [(48, 400_000.0), (36, 300_000.0)])
def test_worked_check_b200_cost_per_mtok(months, depreciation):
    f = system_flows(flat_market(), B200, months)
    assert np.allclose(f["energy_usd"], 14.3 * 1.3 * 730.5 * 0.08, rtol=1e-14, atol=0)
    assert round(f["energy_usd"][0, 0], 2) == 1086.40
    assert round(f["colocation_usd"][0, 0], 2) == 2717.00
    assert np.allclose(f["tokens"], 6.31152e11, rtol=1e-14, atol=0)
    m = system_metrics(flat_market(), B200, months)
    assert m["depreciation_usd"][0] == pytest.approx(depreciation, rel=1e-15)
    expected = (depreciation + months * (1086.3996 + 2717.0)) / (months * 631_152.0)
    assert m["cost_per_mtok_usd"][0] == pytest.approx(expected, rel=1e-12)
    assert sig(m["cost_per_mtok_usd"][0], 4) == 0.01923


# --------------------------------------------------------------------------- #
# market paths
# --------------------------------------------------------------------------- #
def test_price_without_volatility_is_the_deterministic_decline():
    t = np.arange(1, 61)
    p = market_paths({P0: [1.1, 2.0, 0.5], DECLINE: [0.0, 0.5, 0.9], UTIL: 0.5, ELEC: 0.1}, 60)["price"]
    expected = np.array([1.1, 2.0, 0.5])[:, None] * (1 - np.array([0.0, 0.5, 0.9]))[:, None] ** (t / 12)
    np.testing.assert_allclose(p, expected, rtol=1e-13, atol=0)


def test_price_is_mean_preserving_under_volatility():
    n, months, p0, d, sp = 100_000, 24, 1.5, 0.4, 0.5
    eps = np.random.default_rng(11).standard_normal((n, months))
    p = market_paths({P0: p0, DECLINE: d, PVOL: sp, UTIL: 0.5, ELEC: 0.1}, months, eps_price=eps)["price"]
    assert p.shape == (n, months)
    target = p0 * (1 - d) ** (np.arange(1, months + 1) / 12)
    stderr = p.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(p.mean(axis=0) - target) < 5 * stderr)
    # and the log price has the stated variance sp^2 t / 12
    var = np.log(p[:, -1]).var()
    assert var == pytest.approx(sp**2 * months / 12, rel=0.02)


def test_price_shock_accumulates_as_a_random_walk():
    eps = np.array([[1.0, -2.0, 0.5]])
    p = market_paths({P0: 1.0, PVOL: 0.3, UTIL: 1.0, ELEC: 0.1}, 3, eps_price=eps)["price"][0]
    t = np.arange(1, 4)
    expected = np.exp(-0.09 * t / 24 + 0.3 * math.sqrt(1 / 12) * np.cumsum(eps[0]))
    np.testing.assert_allclose(p, expected, rtol=1e-14)


def test_electricity_recursion():
    eps = np.random.default_rng(2).standard_normal((4, 10))
    market = {
        P0: 1.0,
        UTIL: 1.0,
        ELEC: [0.08, 0.08, 0.1, 0.1],
        EVOL: [0.0, 0.2, 0.2, 0.2],
        REVERT: [1.0, 12.0, 0.0, 3.0],
    }
    e = market_paths(market, 10, eps_elec=eps)["electricity"]
    np.testing.assert_array_equal(e[0], 0.08)  # no volatility: flat
    # k = 12: no memory, y_t is the current shock alone
    np.testing.assert_allclose(e[1], 0.08 * np.exp(0.2 * math.sqrt(1 / 12) * eps[1]), rtol=1e-14)
    # k = 0: a random walk in log price
    np.testing.assert_allclose(e[2], 0.1 * np.exp(0.2 * math.sqrt(1 / 12) * np.cumsum(eps[2])), rtol=1e-13)
    y, ys = 0.0, []
    for j in range(10):
        y = y * (1 - 3.0 / 12) + 0.2 * math.sqrt(1 / 12) * eps[3, j]
        ys.append(y)
    np.testing.assert_allclose(e[3], 0.1 * np.exp(ys), rtol=1e-13)


def test_utilization_without_shocks_is_ramp_times_mean_exactly():
    u = np.array([0.0, 1.0, 0.7, 0.7])
    R = np.array([0.0, 0.0, 0.0, 3.0])
    eps = np.random.default_rng(3).standard_normal((4, 6))  # ignored where su == 0
    U = market_paths({P0: 1.0, ELEC: 0.1, UTIL: u, RAMP: R, UVOL: 0.0}, 6, eps_util=eps)["utilization"]
    np.testing.assert_array_equal(U[0], 0.0)
    np.testing.assert_array_equal(U[1], 1.0)
    np.testing.assert_array_equal(U[2], 0.7)
    np.testing.assert_array_equal(U[3], np.minimum(1.0, np.arange(1, 7) / 3.0) * 0.7)


def test_utilization_logit_ar1():
    eps = np.random.default_rng(4).standard_normal((2, 8))
    u, phi, su = 0.6, 0.8, 0.4
    U = market_paths({P0: 1.0, ELEC: 0.1, UTIL: [u, 1.0], PERSIST: phi, UVOL: su, RAMP: [4.0, 0.0]}, 8, eps_util=eps)[
        "utilization"
    ]
    for row, (uu, R) in enumerate([(u, 4.0), (1.0, 0.0)]):
        m = math.log(min(max(uu, 1e-6), 1 - 1e-6) / (1 - min(max(uu, 1e-6), 1 - 1e-6)))
        x, want = m, []
        for j in range(8):
            x = m + phi * (x - m) + su * eps[row, j]
            ramp = 1.0 if R == 0 else min(1.0, (j + 1) / R)
            want.append(ramp / (1 + math.exp(-x)))
        np.testing.assert_allclose(U[row], want, rtol=1e-13)
    assert np.all((U > 0) & (U < 1))


# --------------------------------------------------------------------------- #
# one system's lines
# --------------------------------------------------------------------------- #
def test_monthly_lines_by_hand():
    market = flat_market(**{UTIL: 0.5, P0: 2.0, COLO: 100.0})
    system = {
        "units": 3,
        "gpus_per_unit": 8,
        "capex_usd": 250_000.0,
        "it_power_kw": 10.0,
        "idle_power_fraction": 0.3,
        "throughput_tokens_per_s_per_gpu": 1000.0,
        "efficiency": 0.8,
        "availability": 0.9,
        "price_multiplier": 1.2,
        "software_speedup.ceiling": 2.0,
        "software_speedup.time_constant_months": 6.0,
        "maintenance_fraction_per_year": 0.03,
        "license_usd_per_gpu_year": 1200.0,
    }
    f = system_flows(market, system, 12)
    t = np.arange(1, 13)
    S = 1 + (2.0 - 1) * (1 - np.exp(-t / 6.0))
    N = 3 * 8 * 1000.0 * 0.8 * S * 0.9 * SECONDS_PER_MONTH * 0.5
    np.testing.assert_allclose(f["tokens"][0], N, rtol=1e-14)
    np.testing.assert_allclose(f["revenue"][0], N / 1e6 * 2.0 * 1.2, rtol=1e-14)
    Q = 3 * 10.0 * (0.3 + 0.7 * 0.5) * 1.3 * HOURS_PER_MONTH
    np.testing.assert_allclose(f["energy_kwh"][0], Q, rtol=1e-14)
    O = Q * 0.08 + 3 * 10.0 * 100.0 + 3 * 250_000.0 * 0.03 / 12 + 3 * 8 * 1200.0 / 12
    np.testing.assert_allclose(f["opex"][0], O, rtol=1e-14)
    np.testing.assert_allclose(f["cash_flow"][0], N / 1e6 * 2.4 - O, rtol=1e-12)

    m = system_metrics(market, system, 12)
    rev = (N / 1e6 * 2.4).sum()
    assert m["capex_usd"][0] == 750_000.0
    assert m["maintenance_usd"][0] == pytest.approx(12 * 3 * 250_000.0 * 0.03 / 12, rel=1e-14)
    assert m["license_usd"][0] == pytest.approx(3 * 8 * 1200.0, rel=1e-14)
    assert m["depreciation_usd"][0] == pytest.approx(750_000.0 * 12 / 48, rel=1e-15)
    assert m["revenue_per_unit_year_usd"][0] == pytest.approx(rev / 3, rel=1e-13)
    assert m["revenue_per_mw_year_usd"][0] == pytest.approx(rev / (3 * 10.0 / 1000), rel=1e-13)
    assert m["opex_usd"][0] == pytest.approx(12 * O, rel=1e-14)
    assert m["net_roi"][0] == pytest.approx((rev - 12 * O - 750_000.0) / 750_000.0, rel=1e-12)
    assert m["roi_multiple"][0] == pytest.approx(rev / 750_000.0, rel=1e-13)
    assert m["energy_j_per_token"][0] == pytest.approx(12 * Q * 3.6e6 / N.sum(), rel=1e-13)
    assert m["mean_utilization"][0] == pytest.approx(0.5, rel=1e-15)
    assert m["ebitda_usd"][0] == pytest.approx(rev - 12 * O, rel=1e-12)
    op = rev - 12 * O - 187_500.0
    assert m["operating_margin"][0] == pytest.approx(op / rev, rel=1e-12)


def test_depreciation_is_capped_at_the_depreciable_base():
    for months, L, rho, want in [(24, 4, 0.0, 0.5), (48, 4, 0.1, 0.9), (60, 4, 0.1, 0.9), (18, 1.5, 0.2, 0.8)]:
        m = system_metrics(flat_market(), {**B200, "depreciation_years": L, "residual_value_fraction": rho}, months)
        assert m["depreciation_usd"][0] == pytest.approx(400_000.0 * want, rel=1e-15)


def test_npv_of_a_constant_annuity():
    # Flat price, full utilization, flat power: CF is the same every month.
    r, months, rho = 0.08, 36, 0.1
    market = flat_market(**{RATE: r})
    system = {**B200, "residual_value_fraction": rho}
    f = system_flows(market, system, months)
    C = f["cash_flow"][0, 0]
    np.testing.assert_allclose(f["cash_flow"][0], C, rtol=1e-14)
    rm = (1 + r) ** (1 / 12) - 1
    annuity = C * (1 - (1 + rm) ** -months) / rm
    expected = -400_000.0 + annuity + rho * 400_000.0 * (1 + rm) ** -months
    m = system_metrics(market, system, months)
    assert m["npv_usd"][0] == pytest.approx(expected, rel=1e-12)


def test_payback_month_and_never():
    from mcrisk.reference import _payback

    assert _payback(np.array([1000.0]), np.full((1, 12), 100.0))[0] == 10.0  # reached exactly: >= counts
    assert _payback(np.array([1000.0]), np.full((1, 9), 100.0))[0] == math.inf
    assert _payback(np.array([996.0]), np.array([[-5.0, 500.0, 500.0, 0.0]]))[0] == math.inf
    assert _payback(np.array([995.0]), np.array([[-5.0, 500.0, 500.0, 0.0]]))[0] == 3.0
    # a whole system that never pays back within its horizon
    m = system_metrics(flat_market(**{P0: 0.001}), B200, 48)
    assert m["payback_months"][0] == math.inf


# --------------------------------------------------------------------------- #
# IRR
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", ["brentq", "newton"])
@pytest.mark.parametrize("r_month", [-0.2, -0.05, 0.0005, 0.01, 0.05, 0.25])
@pytest.mark.parametrize("months, residual", [(48, 0.0), (36, 250.0), (1, 0.0)])
def test_irr_recovers_the_rate_of_a_constructed_project(method, r_month, months, residual):
    # Pay I, receive C a month and the residual at T, with C chosen so that NPV is 0 at r_month.
    I = 1000.0
    pv_residual = residual * (1 + r_month) ** -months
    C = (I - pv_residual) * r_month / (1 - (1 + r_month) ** -months)
    want = (1 + r_month) ** 12 - 1
    got = irr_reference(I, np.full((1, months), C), residual, method=method)[0]
    assert got == pytest.approx(want, rel=1e-8, abs=1e-10)
    assert npv_reference(I, np.full((1, months), C), residual, got)[0] == pytest.approx(0.0, abs=1e-9 * I)


@pytest.mark.parametrize("method", ["brentq", "newton"])
def test_irr_takes_the_largest_of_several_roots(method):
    # -100 + 230 x - 132 x^2 = 0 at x = 1/1.1 and 1/1.2: monthly rates 10% and 20%.
    got = irr_reference(100.0, [[230.0, -132.0]], 0.0, method=method)[0]
    assert got == pytest.approx(1.2**12 - 1, rel=1e-10)
    # the residual arrives at T and counts as a cash flow of that month
    got = irr_reference(100.0, [[230.0, -182.0]], 50.0, method=method)[0]
    assert got == pytest.approx(1.2**12 - 1, rel=1e-10)


def test_irr_infinite_cases():
    huge = irr_reference(1.0, np.full((1, 12), 1000.0), 0.0)[0]
    assert huge == math.inf  # NPV still positive at a = 100 (10,000% a year)
    assert irr_reference(1000.0, np.full((1, 12), -10.0), 0.0)[0] == -math.inf  # nothing ever comes back
    assert irr_reference(1000.0, np.zeros((1, 12)), 0.0)[0] == -math.inf  # NPV = -I at every rate
    # Returns too small even at -99% a year: NPV < 0 over the whole range.
    assert irr_reference(1e9, np.full((1, 12), 1.0), 0.0)[0] == -math.inf
    # NaN cash flows: undecidable
    assert np.isnan(irr_reference(1000.0, np.full((1, 12), np.nan), 0.0)[0])
    # +inf at the top takes precedence even where several roots lie below
    assert irr_reference(100.0, [[230.0, -132.0, 0.0, 1e6]], 0.0)[0] == math.inf


def test_irr_agrees_with_polynomial_roots():
    """Brute force: NPV is a polynomial in x = (1 + r_m)^-1; take all its real positive roots."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        T = int(rng.integers(2, 10))
        cf = rng.normal(0, 1, T) * rng.choice([1.0, 10.0])
        I, V = abs(rng.normal(3, 2)), abs(rng.normal(0, 1)) * rng.integers(0, 2)
        coef = np.concatenate([[-I], cf])
        coef[-1] += V
        roots = np.roots(coef[::-1])
        x = roots[np.abs(roots.imag) < 1e-9].real
        a = x[x > 0] ** -12.0 - 1
        a = a[(a >= -0.99) & (a <= 100)]
        if npv_reference(I, cf[None], V, 100.0)[0] > 0:
            want = math.inf
        elif a.size == 0:
            want = -math.inf
        else:
            want = a.max()
        for method in ("brentq", "newton"):
            got = irr_reference(I, cf[None], V, method=method)[0]
            assert got == want or got == pytest.approx(want, rel=1e-7, abs=1e-9), (cf, I, V, method)


def test_irr_methods_agree_on_a_batch_and_npv_vanishes_there():
    market, system, eps = random_case(2000, 48, seed=6)
    f = system_flows(market, system, 48, *eps)
    a = irr_reference(f["capex"], f["cash_flow"], f["residual"], method="brentq")
    b = irr_reference(f["capex"], f["cash_flow"], f["residual"], method="newton")
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    assert np.array_equal(a[~np.isfinite(a)], b[~np.isfinite(b)])
    ok = np.isfinite(a)
    assert ok.sum() > 1000
    np.testing.assert_allclose(a[ok], b[ok], rtol=1e-10, atol=1e-12)
    I, cf, V = f["capex"][ok], f["cash_flow"][ok], f["residual"][ok]
    npv = npv_reference(I, cf, V, a[ok])
    # NPV is zero up to the rounding of its own terms, which near a = -0.99 are
    # the cash flows blown up by discount factors up to 100^(T/12).
    df = (1 + a[ok][:, None]) ** (-np.arange(1, 49) / 12)
    scale = I + (np.abs(cf) * df).sum(axis=1) + V * df[:, -1]
    assert np.all(np.abs(npv) <= 1e-12 * scale)


def test_npv_at_the_irr_is_zero_through_the_model():
    market, system, eps = random_case(200, 36, seed=7)
    m = system_metrics(market, system, 36, *eps)
    ok = np.isfinite(m["irr"])
    assert ok.sum() > 100
    at_irr = {k: (v[ok] if np.ndim(v) else v) for k, v in {**market, RATE: m["irr"]}.items()}
    sys_ok = {k: (v[ok] if np.ndim(v) else v) for k, v in system.items()}
    m2 = system_metrics(at_irr, sys_ok, 36, *(e[ok] for e in eps))
    assert np.all(np.abs(m2["npv_usd"]) <= 1e-9 * m2["capex_usd"])


# --------------------------------------------------------------------------- #
# breakeven and levelized cost
# --------------------------------------------------------------------------- #
def test_breakeven_price_zeroes_the_npv():
    market, system, eps = random_case(500, 48, seed=8)
    m = system_metrics(market, system, 48, *eps)
    m2 = system_metrics({**market, P0: m["breakeven_price_usd_per_mtok"]}, system, 48, *eps)
    assert np.all(np.abs(m2["npv_usd"]) <= 1e-9 * m["capex_usd"])
    # and the IRR there is the discount rate
    np.testing.assert_allclose(m2["irr"], market[RATE], rtol=1e-7)


def test_breakeven_utilization_zeroes_the_npv():
    """Without utilization shocks U_t = ramp_t u, so scaling the path is scaling u: at the break-even
    mean utilization, u' = u * breakeven / mean_utilization gives NPV 0."""
    market, system, eps = random_case(500, 48, seed=9)
    market = {**market, UVOL: 0.0}
    m = system_metrics(market, system, 48, *eps)
    scale = m["breakeven_utilization"] / m["mean_utilization"]
    ok = np.isfinite(scale) & (market[UTIL] * scale <= 1.0) & (scale > 0)
    assert ok.sum() > 100  # most scenarios can break even at some utilization below 1
    sub = lambda d: {k: (v[ok] if np.ndim(v) else v) for k, v in d.items()}  # noqa: E731
    m2 = system_metrics({**sub(market), UTIL: market[UTIL][ok] * scale[ok]}, sub(system), 48, *(e[ok] for e in eps))
    assert np.all(np.abs(m2["npv_usd"]) <= 1e-9 * m["capex_usd"][ok])
    # a system that pays even idle breaks even at 0; one whose every sale loses money, never
    rich = system_metrics({**market, UTIL: 0.5}, {**system, "residual_value_fraction": 50.0}, 48, *eps)
    assert np.all(rich["breakeven_utilization"] == 0.0)
    dear = system_metrics({**market, P0: 1e-9}, system, 48, *eps)
    assert np.all(dear["breakeven_utilization"] == np.inf)


def test_levelized_cost_and_breakeven_price():
    # With a flat price (d = sp = 0) the system earns q * P0 on every token, so the
    # breakeven *market* price is the levelized cost divided by the price multiplier.
    market = flat_market(**{UTIL: 0.6, RAMP: 5.0, RATE: 0.12})
    system = {**B200, "price_multiplier": 1.25, "residual_value_fraction": 0.1, "software_speedup.ceiling": 1.8}
    m = system_metrics(market, system, 48)
    assert m["breakeven_price_usd_per_mtok"][0] * 1.25 == pytest.approx(m["levelized_cost_per_mtok_usd"][0], rel=1e-12)
    # In general: breakeven * q * sum(N_t (P_t / P0) DF_t) = levelized * sum(N_t DF_t).
    market, system, eps = random_case(300, 24, seed=9)
    f = system_flows(market, system, 24, *eps)
    m = system_metrics(market, system, 24, *eps)
    w_price = (f["tokens"] * f["price"] / market[P0][:, None] * f["discount_factor"]).sum(axis=1)
    w = (f["tokens"] * f["discount_factor"]).sum(axis=1)
    np.testing.assert_allclose(
        m["breakeven_price_usd_per_mtok"] * 1.1 * w_price, m["levelized_cost_per_mtok_usd"] * w, rtol=1e-12
    )
    # Levelized cost at a zero discount rate: (I - V + opex) per Mtok.
    m0 = system_metrics({**market, RATE: 0.0}, system, 24, *eps)
    want = (m0["capex_usd"] * (1 - system["residual_value_fraction"]) + m0["opex_usd"]) / (m0["tokens"] / 1e6)
    np.testing.assert_allclose(m0["levelized_cost_per_mtok_usd"], want, rtol=1e-12)


# --------------------------------------------------------------------------- #
# degenerate values follow IEEE
# --------------------------------------------------------------------------- #
def test_zero_utilization():
    m = system_metrics(flat_market(**{UTIL: 0.0}), B200, 24)
    assert m["revenue_usd"][0] == 0.0 and m["tokens"][0] == 0.0
    assert math.isnan(m["operating_margin"][0])
    assert m["cost_per_mtok_usd"][0] == math.inf
    assert m["levelized_cost_per_mtok_usd"][0] == math.inf
    assert m["breakeven_price_usd_per_mtok"][0] == math.inf
    assert m["energy_j_per_token"][0] == math.inf  # idle power, no tokens
    assert m["irr"][0] == -math.inf
    assert m["payback_months"][0] == math.inf
    assert m["roi_multiple"][0] == 0.0
    assert m["mean_utilization"][0] == 0.0
    assert m["net_roi"][0] == pytest.approx(-1 - m["opex_usd"][0] / 400_000.0, rel=1e-14)
    # no idle power and no energy either: 0/0
    m = system_metrics(flat_market(**{UTIL: 0.0}), {**B200, "idle_power_fraction": 0.0}, 24)
    assert math.isnan(m["energy_j_per_token"][0])


# --------------------------------------------------------------------------- #
# interface
# --------------------------------------------------------------------------- #
def test_shapes_dtypes_and_broadcasting():
    market, system, eps = random_case(64, 12, seed=10)
    m = system_metrics(market, system, 12, *eps)
    assert tuple(m) == METRICS
    for name, v in m.items():
        assert v.shape == (64,) and v.dtype == np.float64, name
    paths = market_paths(market, 12, *eps)
    assert set(paths) == {"price", "electricity", "utilization"}
    assert all(p.shape == (64, 12) and p.dtype == np.float64 for p in paths.values())
    # all-scalar inputs: one scenario
    m1 = system_metrics(flat_market(), B200, 12)
    assert all(v.shape == (1,) for v in m1.values())
    # a scenario computed alone equals the same scenario in a batch
    i = 17
    one = system_metrics(
        {k: (v[i] if np.ndim(v) else v) for k, v in market.items()},
        {k: (v[i] if np.ndim(v) else v) for k, v in system.items()},
        12,
        *(e[i : i + 1] for e in eps),
    )
    for name in METRICS:
        np.testing.assert_allclose(one[name], m[name][i : i + 1], rtol=1e-12, err_msg=name)


def test_keys_defaults_and_required_inputs():
    assert len(MARKET_KEYS) == 13 and len(SYSTEM_KEYS) == 15
    # "system." prefixed names are accepted, defaults fill the rest
    prefixed = {"system." + k: v for k, v in B200.items()}
    a = system_metrics(flat_market(), prefixed, 12)
    b = system_metrics(flat_market(), B200, 12)
    for name in METRICS:
        np.testing.assert_array_equal(a[name], b[name])
    explicit = {
        **B200,
        "units": 1,
        "idle_power_fraction": 0.3,
        "efficiency": 1.0,
        "availability": 1.0,
        "price_multiplier": 1.0,
        "software_speedup.ceiling": 1.0,
        "software_speedup.time_constant_months": 6.0,
    }
    c = system_metrics(flat_market(**{PERSIST: 0.8, REVERT: 1.0, RATE: 0.10}), explicit, 12)
    for name in METRICS:
        np.testing.assert_array_equal(b[name], c[name])
    with pytest.raises(KeyError):
        market_paths({P0: 1.0, UTIL: 0.5}, 12)  # electricity price is required
    with pytest.raises(KeyError):
        system_metrics(flat_market(), {"gpus_per_unit": 8}, 12)
    with pytest.raises(ValueError):
        market_paths(flat_market(), 12, eps_price=np.zeros((1, 11)))


def test_common_random_numbers_share_the_market():
    market, system, eps = random_case(50, 12, seed=12)
    other = {**system, "capex_usd": 1e6, "throughput_tokens_per_s_per_gpu": 2000.0}
    f1 = system_flows(market, system, 12, *eps)
    f2 = system_flows(market, other, 12, *eps)
    for key in ("price", "electricity", "utilization"):
        np.testing.assert_array_equal(f1[key], f2[key])


@pytest.mark.slow
def test_hundred_thousand_scenarios():
    market, system, eps = random_case(100_000, 48, seed=13)
    m = system_metrics(market, system, 48, *eps)
    for name in METRICS:
        assert m[name].shape == (100_000,)
    assert np.isfinite(m["npv_usd"]).all()
    assert not np.isnan(m["irr"]).any()

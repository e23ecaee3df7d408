"""Tests of the reference model's extensions (MODEL.md "How operators earn and finance").

They pin the float64 NumPy reference to the contract's worked checks 3 to 5, to cases
computed by hand month by month in plain Python, and to the rule that every extension
at its default leaves the base model's outputs unchanged bit for bit. NumPy and SciPy
only; a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from mcrisk.reference import (
    HOURS_PER_MONTH,
    METRICS,
    SECONDS_PER_MONTH,
    fold_outlays,
    irr_reference,
    npv_reference,
    portfolio_metrics,
    system_flows,
    system_metrics,
)
from mcrisk.reference.finance import debt_schedule, income_tax, taxable_income
from tests.test_reference import (
    B200,
    COLO,
    DECLINE,
    ELEC,
    P0,
    RAMP,
    RATE,
    UTIL,
    flat_market,
    random_case,
)

BASE_METRICS = METRICS[: METRICS.index("revenue_per_mw_year_usd") + 1]
TAX = "finance.tax_rate"
DEBT = "finance.debt.share"
DEBT_RATE = "finance.debt.annual_rate"
TENOR = "finance.debt.tenor_months"
EQUITY_RATE = "finance.cost_of_equity"
RENTAL_VOL = "market.rental.volatility"
FIRST, EVERY = "market.succession.first_month", "market.succession.every_months"
PRICE_STEP, RENTAL_STEP = "market.succession.token_price_step", "market.succession.rental_step"


def one(x) -> np.ndarray:
    return np.array([x], dtype=np.float64)


def brute_irr(flows: np.ndarray) -> float:
    """Largest annual rate in [-0.99, 100] with NPV 0, flows[t] at month t = 0..T: a dense scan, then brentq."""
    t = np.arange(len(flows))

    def npv(a):
        return float(np.sum(flows * (1.0 + a) ** (-t / 12.0)))

    if npv(100.0) > 0:
        return math.inf
    grid = np.expm1(np.linspace(math.log(0.01), math.log(101.0), 20_001))
    values = np.array([npv(a) for a in grid])
    above = np.flatnonzero(values >= 0)
    if above.size == 0:
        return -math.inf
    k = above[-1]
    return optimize.brentq(npv, grid[k], grid[k + 1], xtol=1e-15, rtol=1e-15) if values[k] > 0 else grid[k]


# --------------------------------------------------------------------------- #
# the contract's worked checks of the extensions
# --------------------------------------------------------------------------- #
def test_worked_check_3_lead_time_and_a_contract():
    system = {**B200, "lead_months": 3, "contract.share": 0.5, "contract.term_months": 24, "contract.price_multiple": 1}
    f = system_flows(flat_market(), system, 48)
    live = f["live"][0] == 1.0
    assert live.sum() == 45 and not live[:3].any()
    np.testing.assert_allclose(f["tokens"][0, live], 6.31152e11, rtol=1e-14, atol=0)
    assert np.all(np.round(f["revenue"][0, live], 2) == 694_267.20)
    assert np.all(f["revenue"][0, ~live] == 0.0) and np.all(f["opex"][0, ~live] == 0.0)
    # half of it under contract for the first 24 live months (months 4..27), at $1.10 too
    np.testing.assert_allclose(f["contract_revenue"][0, 3:27], 694_267.20 / 2, rtol=1e-14)
    assert np.all(f["contract_revenue"][0, 27:] == 0.0)
    m = system_metrics(flat_market(), system, 48)
    assert m["live_months"][0] == 45.0 and m["mean_utilization"][0] == 1.0
    assert m["revenue_usd"][0] == pytest.approx(45 * 694_267.20, rel=1e-14)
    assert m["contract_revenue_usd"][0] == pytest.approx(24 * 694_267.20 / 2, rel=1e-14)
    assert m["depreciation_usd"][0] == pytest.approx(400_000.0 * 45 / 48, rel=1e-15)
    assert m["revenue_per_unit_year_usd"][0] == pytest.approx(694_267.20 * 12, rel=1e-14)
    assert m["revenue_per_gpu_hour_usd"][0] == pytest.approx(694_267.20 / (8 * HOURS_PER_MONTH), rel=1e-14)
    assert m["contract_default_month"][0] == math.inf
    assert math.isnan(m["breakeven_rental_usd_per_gpu_hour"][0])


def test_worked_check_4_debt():
    d = debt_schedule(one(600_000.0), one(0.12), one(36.0), one(0.0), one(0.0), 48)
    assert round(d["payment"][0], 2) == 19_928.59
    assert d["payment"][0] == pytest.approx(600_000 * 0.01 / (1 - 1.01**-36), rel=1e-15)
    assert round(d["interest"][0, 0], 2) == 6_000.00
    assert round(d["principal"][0, 0], 2) == 13_928.59
    assert abs(d["balloon"][0]) < 0.005  # nothing owed after month 36
    assert np.all(d["interest"][0, 36:] == 0.0) and np.all(d["principal"][0, 36:] == 0.0)
    assert d["principal"][0].sum() == pytest.approx(600_000.0, rel=1e-14)
    # the same loan through a system: I = $1,000,000, db = 0.6
    system = {**B200, "capex_usd": 1_000_000.0}
    m = system_metrics(flat_market(**{DEBT: 0.6, DEBT_RATE: 0.12, TENOR: 36}), system, 48)
    assert m["interest_usd"][0] == pytest.approx(d["interest"][0].sum(), rel=1e-14)
    assert m["interest_usd"][0] == pytest.approx(36 * 19_928.5858877 - 600_000.0, rel=1e-9)


@pytest.mark.parametrize("cash, tax", [(50_000.0, 0.0), (60_000.0, 2_500.0)])
def test_worked_check_5_tax(cash, tax):
    cf = np.full((1, 24), cash)
    dx = np.full((1, 24), 1_200_000.0 / (12 * 2))
    y = taxable_income(cf, dx, 0.0, one(0.0), one(1_200_000.0 - dx.sum()))
    np.testing.assert_array_equal(income_tax(y, 0.25), tax)
    # through a system: price chosen so that CF_t is $50,000 or $60,000 a month (up to rounding)
    system = {
        "gpus_per_unit": 1,
        "capex_usd": 1_200_000.0,
        "it_power_kw": 1.0,
        "idle_power_fraction": 0.0,
        "throughput_tokens_per_s_per_gpu": 1e6,
        "depreciation_years": 2,
    }
    market = {P0: cash / SECONDS_PER_MONTH, UTIL: 1.0, ELEC: 0.0, TAX: 0.25}
    f = system_flows(market, system, 24)
    np.testing.assert_allclose(f["cash_flow"][0], cash, rtol=1e-14)
    np.testing.assert_array_equal(f["tax_depreciation"][0], 50_000.0)
    np.testing.assert_allclose(f["tax_unlevered"][0], tax, atol=1e-6)
    np.testing.assert_allclose(f["free_cash_flow"][0], cash - tax, rtol=1e-14)


# --------------------------------------------------------------------------- #
# timing and contracts by hand
# --------------------------------------------------------------------------- #
def hand_case():
    """Bought at month 2, 2.5 lead months (3), a ramp of 4 months, a 60% contract for 12 months at
    1.5x the initial price, used at 50%, whose counterparty defaults in month 10."""
    pd, w = 0.3, 1 - 0.7 ** (9.5 / 12)  # D = ceil(9.5) = 10
    market = flat_market(**{UTIL: 0.8, RAMP: 4.0, DECLINE: 0.4, RATE: 0.09, COLO: 150.0})
    system = {
        **B200,
        "units": 2,
        "purchase_month": 2,
        "lead_months": 2.5,
        "residual_value_fraction": 0.2,
        "maintenance_fraction_per_year": 0.03,
        "software_speedup.ceiling": 1.5,
        "contract.share": 0.6,
        "contract.term_months": 12,
        "contract.price_multiple": 1.5,
        "contract.usage": 0.5,
        "contract.annual_default_probability": pd,
    }
    return market, system, w


def hand_lines(T: int):
    """The hand case month by month in plain Python floats: (L, B, N, R, Rc, Q, CF) lists."""
    g, n = 5, 2  # bought at month 2, live after month 5
    rows = []
    for t in range(1, T + 1):
        live = t > g
        a = t - g
        U = min(1.0, a / 4.0) * 0.8 if live else 0.0
        c = 0.6 if (1 <= a <= 12 and t < 10) else 0.0
        B = c * 0.5 + (1 - c) * U
        S = 1 + 0.5 * (1 - math.exp(-t / 6.0))  # calendar months
        K = n * 8 * 30_000.0 * S * SECONDS_PER_MONTH
        P = 1.10 * 0.6 ** (t / 12)
        Rc = K / 1e6 * c * 1.5 * 1.10
        R = K / 1e6 * (1 - c) * U * P + Rc
        Q = (n * 14.3 * (0.3 + 0.7 * B) * 1.3 * HOURS_PER_MONTH) if live else 0.0
        O = (Q * 0.08 + n * 14.3 * 150.0 + n * 400_000.0 * 0.03 / 12) if live else 0.0
        rows.append((float(live), B, K * B, R, Rc, Q, R - O))
    return [list(col) for col in zip(*rows)]


def test_lead_time_and_contract_default_by_hand():
    T = 24
    market, system, w = hand_case()
    L, B, N, R, Rc, Q, CF = hand_lines(T)
    f = system_flows(market, system, T, default_uniform=w)
    for key, want in (
        ("live", L),
        ("busy", B),
        ("tokens", N),
        ("revenue", R),
        ("contract_revenue", Rc),
        ("energy_kwh", Q),
        ("cash_flow", CF),
    ):
        np.testing.assert_allclose(f[key][0], want, rtol=1e-12, atol=1e-9, err_msg=key)
    m = system_metrics(market, system, T, default_uniform=w)
    I, V = 800_000.0, 160_000.0
    rm = 1.09 ** (1 / 12) - 1
    npv = -I * (1 + rm) ** -2 + sum(cf * (1 + rm) ** -(t + 1) for t, cf in enumerate(CF)) + V * (1 + rm) ** -T
    assert m["npv_usd"][0] == pytest.approx(npv, rel=1e-12)
    assert m["contract_default_month"][0] == 10.0
    assert m["contract_revenue_usd"][0] == pytest.approx(sum(Rc), rel=1e-13)
    assert sum(x > 0 for x in Rc) == 4  # live from month 6, default in month 10: months 6..9
    assert m["live_months"][0] == 19.0
    assert m["mean_utilization"][0] == pytest.approx(sum(B) / 19, rel=1e-13)
    assert m["depreciation_usd"][0] == pytest.approx(I * 0.8 * 19 / 48, rel=1e-14)
    cum = np.cumsum(CF)
    assert m["payback_months"][0] == (np.argmax(cum >= I) + 1 if (cum >= I).any() else math.inf)
    flows = np.zeros(T + 1)
    flows[1:] = CF
    flows[2] -= I
    flows[T] += V
    assert m["irr"][0] == pytest.approx(brute_irr(flows), rel=1e-9)
    # without the default the contract runs its 12 months
    m2 = system_metrics(market, {**system, "contract.annual_default_probability": 0.0}, T)
    assert m2["contract_default_month"][0] == math.inf
    assert m2["contract_revenue_usd"][0] > m["contract_revenue_usd"][0]


def test_default_month_is_inf_beyond_the_horizon_and_needs_a_uniform():
    market, system, _ = hand_case()
    m = system_metrics(market, system, 24, default_uniform=1 - 0.7**3)  # D = ceil(36) = 36 > T
    assert m["contract_default_month"][0] == math.inf
    with pytest.raises(ValueError, match="default_uniform"):
        system_metrics(market, system, 24)


# --------------------------------------------------------------------------- #
# defaults reduce to the base model
# --------------------------------------------------------------------------- #
EXPLICIT_DEFAULTS_MARKET = {RENTAL_VOL: 0.0, PRICE_STEP: 0.0, RENTAL_STEP: 0.0, TAX: 0.0, DEBT: 0.0, DEBT_RATE: 0.0}
EXPLICIT_DEFAULTS_SYSTEM = {
    "purchase_month": 0,
    "lead_months": 0.4,
    "revenue_mode": "tokens",
    "contract.share": 0.0,
    "contract.term_months": 0,
    "contract.price_multiple": 1.0,
    "contract.usage": 1.0,
    "contract.annual_default_probability": 0.0,
}


@pytest.mark.parametrize("case", ["explicit defaults", "k = 0", "db = 0", "x = 0 with debt", "jp = 0"])
@pytest.mark.parametrize("n", [64, 2000])  # small and large arrays: NumPy lays out temporaries differently
def test_extensions_at_their_defaults_leave_the_base_model_bit_for_bit(case, n):
    market, system, eps = random_case(n, 36, seed=21)
    base = system_metrics(market, system, 36, *eps)
    rng = np.random.default_rng(22)
    w = rng.uniform(0, 1, n)
    mk, sy = dict(market), dict(system)
    if case == "explicit defaults":
        mk.update(EXPLICIT_DEFAULTS_MARKET, **{EQUITY_RATE: market[RATE], TENOR: 36})
        sy.update(EXPLICIT_DEFAULTS_SYSTEM)
    elif case == "k = 0":
        sy.update(
            {
                "contract.share": 0.0,
                "contract.term_months": 24,
                "contract.price_multiple": rng.uniform(1, 2, n),
                "contract.usage": 0.3,
                "contract.annual_default_probability": 0.2,
            }
        )
    elif case == "db = 0":
        mk.update({DEBT: 0.0, DEBT_RATE: 0.08, TENOR: 24})
    elif case == "x = 0 with debt":
        mk.update({TAX: 0.0, DEBT: 0.7, DEBT_RATE: 0.08, TENOR: 60})
    else:
        mk.update({FIRST: 6.0, EVERY: 12.0, PRICE_STEP: 0.0, RENTAL_STEP: 0.3})
    got = system_metrics(mk, sy, 36, *eps, default_uniform=w)
    for name in BASE_METRICS:
        assert np.array_equal(got[name], base[name], equal_nan=True), name
    if case != "x = 0 with debt":
        assert np.array_equal(got["equity_npv_usd"], base["npv_usd"])
        assert np.array_equal(got["equity_irr"], base["irr"], equal_nan=True)
        assert np.all(got["min_dscr"] == np.inf) and np.all(got["interest_usd"] == 0.0)
    assert np.all(got["tax_usd"] == 0.0) and np.all(got["equity_tax_usd"] == 0.0)
    assert np.all(got["live_months"] == 36.0)
    if case != "k = 0":  # a counterparty with nothing under contract still has a default month
        assert np.all(got["contract_default_month"] == np.inf)


def test_debt_and_its_tax_shield_leave_the_unlevered_metrics_alone():
    market, system, eps = random_case(300, 36, seed=23)
    market = {**market, TAX: 0.25}
    a = system_metrics(market, system, 36, *eps)
    b = system_metrics({**market, DEBT: 0.6, DEBT_RATE: 0.09}, system, 36, *eps)
    for name in ("npv_usd", "irr", "tax_usd", "payback_months", "net_roi"):
        assert np.array_equal(a[name], b[name], equal_nan=True), name
    assert np.all(b["equity_tax_usd"] <= b["tax_usd"] + 1e-6)  # interest is deductible


# --------------------------------------------------------------------------- #
# debt
# --------------------------------------------------------------------------- #
def test_debt_amortises_to_zero_at_the_tenor():
    d = debt_schedule(np.array([1e6, 2e6]), np.array([0.07, 0.0]), np.array([24.0, 24.0]), np.zeros(2), np.zeros(2), 48)
    assert np.all(np.abs(d["balloon"]) < 1e-6)
    np.testing.assert_allclose(d["principal"].sum(axis=1), [1e6, 2e6], rtol=1e-13)
    assert np.all(d["principal"][:, 24:] == 0.0)
    np.testing.assert_array_equal(d["interest"][1], 0.0)  # interest-free: equal principal
    np.testing.assert_allclose(d["principal"][1, :24], 2e6 / 24, rtol=1e-15)


def test_debt_capitalizes_interest_in_the_lead_time_and_balloons_past_the_horizon():
    i, P, p, g, nd, T = 0.06 / 12, 500_000.0, 2.0, 5.0, 60.0, 36
    d = debt_schedule(one(P), one(0.06), one(nd), one(p), one(g), T)
    bal_g = P * (1 + i) ** 3
    assert d["balance_at_go_live"][0] == pytest.approx(bal_g, rel=1e-15)
    pmt = bal_g * i / (1 - (1 + i) ** -nd)
    assert d["payment"][0] == pytest.approx(pmt, rel=1e-14)
    assert np.all(d["interest"][0, :5] == 0.0) and np.all(d["principal"][0, :5] == 0.0)  # nothing paid
    assert d["interest"][0, 5] == pytest.approx(i * bal_g, rel=1e-14)
    k = T - g  # payments made by T
    owed = bal_g * (1 + i) ** k - pmt * ((1 + i) ** k - 1) / i
    assert d["balloon"][0] == pytest.approx(owed, rel=1e-12)
    # never live within the horizon: the capitalized balance is owed at T
    d = debt_schedule(one(P), one(0.06), one(nd), one(30.0), one(40.0), T)
    assert d["balloon"][0] == pytest.approx(P * (1 + i) ** 6, rel=1e-14)
    assert np.all(d["interest"] == 0.0)
    # interest-free balloon: Bal_g (1 - paid months / nd)
    d = debt_schedule(one(P), one(0.0), one(nd), one(0.0), one(0.0), T)
    assert d["balloon"][0] == pytest.approx(P * (1 - T / nd), rel=1e-13)


def test_a_loan_at_the_cost_of_equity_is_npv_neutral():
    """Borrowing at the rate equity discounts at moves no value: equity NPV = project NPV (no tax)."""
    market, system, _ = hand_case()
    r = 1.01**12 - 1  # monthly 1% = rd / 12
    market = {**market, RATE: r, DEBT: 0.6, DEBT_RATE: 0.12}
    for tenor in (12, 60):  # repaid within the horizon, or a balloon at T
        m = system_metrics({**market, TENOR: tenor}, system, 24, default_uniform=0.5)
        assert m["equity_npv_usd"][0] == pytest.approx(m["npv_usd"][0], rel=1e-10)
        assert m["interest_usd"][0] > 0


def test_equity_flows_and_min_dscr_by_hand():
    market, system, w = hand_case()
    market = {**market, TAX: 0.2, DEBT: 0.5, DEBT_RATE: 0.1, TENOR: 12, EQUITY_RATE: 0.15}
    T = 24
    f = system_flows(market, system, T, default_uniform=w)
    m = system_metrics(market, system, T, default_uniform=w)
    eq = f["cash_flow"][0] - f["interest"][0] - f["principal"][0] - f["tax_levered"][0]
    np.testing.assert_allclose(f["equity_flow"][0], eq, rtol=1e-14)
    ds = f["interest"][0] + f["principal"][0]
    want = min((f["cash_flow"][0, j] - f["tax_levered"][0, j]) / ds[j] for j in range(T) if ds[j] > 0)
    assert m["min_dscr"][0] == pytest.approx(want, rel=1e-14)
    flows = np.zeros(T + 1)
    flows[1:] = eq
    flows[2] -= 0.5 * 800_000.0
    flows[T] += 160_000.0 - f["balloon"][0]
    re_m = 1.15 ** (1 / 12) - 1
    npv = sum(x * (1 + re_m) ** -t for t, x in enumerate(flows))
    assert m["equity_npv_usd"][0] == pytest.approx(npv, rel=1e-12)
    assert m["equity_irr"][0] == pytest.approx(brute_irr(flows), rel=1e-9)
    assert math.isnan(system_metrics({**market, DEBT: 1.0}, system, T, default_uniform=w)["equity_irr"][0])


# --------------------------------------------------------------------------- #
# tax
# --------------------------------------------------------------------------- #
def nol_tax_by_hand(y, x):
    nol, out = 0.0, []
    for v in y:
        out.append(x * max(0.0, v - nol))
        nol = max(0.0, nol - v)
    return out


def test_tax_carries_losses_forward_like_a_hand_loop():
    rng = np.random.default_rng(31)
    y = rng.normal(1_000.0, 5_000.0, (50, 36))
    got = income_tax(y, 0.3)
    for row in range(50):
        np.testing.assert_allclose(got[row], nol_tax_by_hand(y[row], 0.3), rtol=1e-15, atol=0)
    assert income_tax(np.array([[-100.0, 60.0, 60.0]]), 0.5).tolist() == [[0.0, 0.0, 10.0]]


def test_system_tax_with_lead_time_and_a_sale_by_hand():
    market, system, w = hand_case()
    market = {**market, TAX: 0.3, DEBT: 0.4, DEBT_RATE: 0.08}
    system = {**system, "depreciation_years": 2}  # 24 months from go-live in month 6: 19 by T = 24
    T = 24
    f = system_flows(market, system, T, default_uniform=w)
    I, V, g = 800_000.0, 160_000.0, 5
    dx = [I / 24 if g < t <= g + 24 else 0.0 for t in range(1, T + 1)]
    np.testing.assert_allclose(f["tax_depreciation"][0], dx, rtol=1e-15)
    basis = I - sum(dx)
    assert basis == pytest.approx(I * 5 / 24, rel=1e-12)
    for key, H in (("tax_unlevered", np.zeros(T)), ("tax_levered", f["interest"][0])):
        y = [f["cash_flow"][0, j] - dx[j] - H[j] for j in range(T)]
        y[-1] += V - basis
        np.testing.assert_allclose(f[key][0], nol_tax_by_hand(y, 0.3), rtol=1e-12, atol=1e-9, err_msg=key)
    m = system_metrics(market, system, T, default_uniform=w)
    assert m["tax_usd"][0] == pytest.approx(f["tax_unlevered"][0].sum(), rel=1e-15)
    assert m["net_roi"][0] == pytest.approx((f["free_cash_flow"][0].sum() + V - I) / I, rel=1e-14)


# --------------------------------------------------------------------------- #
# GPU-hours and hardware generations
# --------------------------------------------------------------------------- #
def test_generations_step_the_spot_prices():
    market = flat_market(**{FIRST: 3.4, EVERY: 2.5, PRICE_STEP: 0.5})  # F = 3, E = 3
    f = system_flows(market, B200, 10)
    np.testing.assert_array_equal(f["generations"][0], [0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    np.testing.assert_allclose(f["price"][0], 1.10 * 0.5 ** f["generations"][0], rtol=1e-15)
    single = system_flows(flat_market(**{FIRST: 4.0, PRICE_STEP: 0.5}), B200, 10)  # no spacing: one arrival
    np.testing.assert_array_equal(single["generations"][0], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1])


def test_gpu_hour_revenue_by_hand():
    T = 18
    eps_h = np.random.default_rng(41).standard_normal((1, T))
    market = flat_market(**{UTIL: 0.7, RENTAL_VOL: 0.2, FIRST: 6.0, EVERY: 12.0, PRICE_STEP: 0.5, RENTAL_STEP: 0.2})
    system = {
        **B200,
        "units": 2,
        "availability": 0.9,
        "price_multiplier": 1.1,
        "revenue_mode": "gpu_hours",
        "rental.initial_usd_per_gpu_hour": 2.5,
        "rental.annual_decline": 0.3,
        "contract.share": 0.25,
        "contract.term_months": 10,
        "contract.price_multiple": 1.2,
    }
    f = system_flows(market, system, T, eps_rental=eps_h)
    walk = np.cumsum(eps_h[0])
    R, h = [], []
    for t in range(1, T + 1):
        J = 0 if t < 6 else 1 + (t - 6) // 12
        ht = 2.5 * math.exp(t / 12 * math.log(0.7) - 0.04 * t / 24 + 0.2 * math.sqrt(1 / 12) * walk[t - 1]) * 0.8**J
        c = 0.25 if t <= 10 else 0.0
        R.append(1.1 * 2 * 8 * 0.9 * HOURS_PER_MONTH * (c * 1.2 * 2.5 + (1 - c) * 0.7 * ht))
        h.append(ht)
    np.testing.assert_allclose(f["rental_price"][0], h, rtol=1e-13)
    np.testing.assert_allclose(f["revenue"][0], R, rtol=1e-13)
    B = np.where(np.arange(1, T + 1) <= 10, 0.25 + 0.75 * 0.7, 0.7)
    np.testing.assert_allclose(f["tokens"][0], 2 * 8 * 30_000.0 * 0.9 * SECONDS_PER_MONTH * B, rtol=1e-14)
    m = system_metrics(market, system, T, eps_rental=eps_h)
    assert math.isnan(m["breakeven_price_usd_per_mtok"][0])
    assert m["revenue_per_gpu_hour_usd"][0] == pytest.approx(sum(R) / (2 * 8 * HOURS_PER_MONTH * T), rel=1e-13)
    # the break-even rental price makes the (pre-tax) NPV 0
    h0 = m["breakeven_rental_usd_per_gpu_hour"][0]
    at = system_metrics(market, {**system, "rental.initial_usd_per_gpu_hour": h0}, T, eps_rental=eps_h)
    assert abs(at["npv_usd"][0]) <= 1e-9 * m["capex_usd"][0]
    with pytest.raises(KeyError, match="rental"):
        system_metrics(market, {**B200, "revenue_mode": "gpu_hours"}, T)


def test_breakeven_utilization_with_a_contract_and_lead_time_zeroes_the_npv():
    market, system, w = hand_case()
    market = {**market, P0: 0.05}
    m = system_metrics(market, system, 24, default_uniform=w)
    spot = system_flows(market, system, 24, default_uniform=w)
    share = (m["breakeven_utilization"][0] * 19 - spot["contract_busy"][0].sum()) / spot["spot_utilization"][0].sum()
    assert 0 < share < 1 / 0.8
    at = system_metrics({**market, UTIL: 0.8 * share}, system, 24, default_uniform=w)
    assert abs(at["npv_usd"][0]) <= 1e-9 * m["capex_usd"][0]


# --------------------------------------------------------------------------- #
# IRR with the outlay in a later month
# --------------------------------------------------------------------------- #
def test_irr_with_a_later_outlay():
    cf = np.array([[0.0, 0.0, 0.0, 30.0, 40.0, 50.0, 20.0]])
    got = irr_reference(100.0, cf, 10.0, outlay_month=2)[0]
    flows = np.concatenate([[0.0], cf[0]])
    flows[2] -= 100.0
    flows[-1] += 10.0
    assert got == pytest.approx(brute_irr(flows), rel=1e-10)
    assert npv_reference(100.0, cf, 10.0, got, outlay_month=2)[0] == pytest.approx(0.0, abs=1e-10)
    assert np.array_equal(irr_reference(100.0, cf, 10.0, outlay_month=0), irr_reference(100.0, cf, 10.0))
    with pytest.raises(ValueError, match="outlay_month"):
        irr_reference(100.0, cf, 10.0, outlay_month=7)
    capex, folded = fold_outlays(cf, [(100.0, 2), (5.0, 0), (7.0, 0)])
    assert capex[0] == 12.0 and folded[0, 1] == -100.0 and folded[0, 3] == 30.0


# --------------------------------------------------------------------------- #
# the portfolio row
# --------------------------------------------------------------------------- #
def two_systems():
    market, a, w = hand_case()
    market = {**market, TAX: 0.25, DEBT: 0.5, DEBT_RATE: 0.1, TENOR: 18}
    b = {
        **B200,
        "gpus_per_unit": 4,
        "capex_usd": 150_000.0,
        "it_power_kw": 9.0,
        "depreciation_years": 3,
        "revenue_mode": "gpu_hours",
        "rental.initial_usd_per_gpu_hour": 3.0,
        "rental.annual_decline": 0.2,
        "residual_value_fraction": 0.1,
    }
    return market, {"a": a, "b": b}, {"a": w}


def test_portfolio_sums_and_ratios():
    T = 24
    market, systems, uniforms = two_systems()
    ma = system_metrics(market, systems["a"], T, default_uniform=uniforms["a"])
    mb = system_metrics(market, systems["b"], T)
    fa = system_flows(market, systems["a"], T, default_uniform=uniforms["a"])
    fb = system_flows(market, systems["b"], T)
    pf = portfolio_metrics(market, systems, T, default_uniforms=uniforms)
    assert tuple(pf) == METRICS
    for name in (
        "capex_usd",
        "revenue_usd",
        "tokens",
        "energy_kwh",
        "energy_usd",
        "colocation_usd",
        "maintenance_usd",
        "license_usd",
        "opex_usd",
        "depreciation_usd",
        "ebitda_usd",
        "operating_profit_usd",
        "contract_revenue_usd",
        "tax_usd",
        "equity_tax_usd",
        "interest_usd",
        "npv_usd",
        "equity_npv_usd",
    ):
        assert pf[name][0] == ma[name][0] + mb[name][0], name
    rev, I = pf["revenue_usd"][0], pf["capex_usd"][0]
    assert pf["roi_multiple"][0] == pytest.approx(rev / I, rel=1e-15)
    assert pf["operating_margin"][0] == pytest.approx(pf["operating_profit_usd"][0] / rev, rel=1e-15)
    fcf = fa["free_cash_flow"][0] + fb["free_cash_flow"][0]
    V = 160_000.0 + 15_000.0
    assert pf["net_roi"][0] == pytest.approx((fcf.sum() + V - I) / I, rel=1e-13)
    live_a, live_b = 19.0, 24.0
    assert pf["revenue_per_mw_year_usd"][0] == pytest.approx(
        rev / (2 * 14.3 / 1000 * live_a / 12 + 9.0 / 1000 * live_b / 12), rel=1e-14
    )
    assert pf["revenue_per_gpu_hour_usd"][0] == pytest.approx(rev / (730.5 * (16 * live_a + 4 * live_b)), rel=1e-14)
    busy = 16 * fa["busy"][0].sum() + 4 * fb["busy"][0].sum()
    assert pf["mean_utilization"][0] == pytest.approx(busy / (16 * live_a + 4 * live_b), rel=1e-14)
    DF = fa["discount_factor"][0]
    cost = 800_000.0 * DF[1] + 150_000.0 - V * DF[-1] + ((fa["opex"][0] + fb["opex"][0]) * DF).sum()
    assert pf["levelized_cost_per_mtok_usd"][0] == pytest.approx(
        cost / (((fa["tokens"][0] + fb["tokens"][0]) * DF).sum() / 1e6), rel=1e-13
    )
    for name in (
        "breakeven_price_usd_per_mtok",
        "breakeven_rental_usd_per_gpu_hour",
        "revenue_per_unit_year_usd",
        "live_months",
        "contract_default_month",
    ):
        assert math.isnan(pf[name][0]), name


def test_portfolio_flows_irr_payback_and_dscr():
    T = 24
    market, systems, uniforms = two_systems()
    fa = system_flows(market, systems["a"], T, default_uniform=uniforms["a"])
    fb = system_flows(market, systems["b"], T)
    pf = portfolio_metrics(market, systems, T, default_uniforms=uniforms)
    fcf = fa["free_cash_flow"][0] + fb["free_cash_flow"][0]
    flows = np.concatenate([[-150_000.0], fcf])
    flows[2] -= 800_000.0  # system a is bought at month 2
    flows[T] += 175_000.0
    assert pf["irr"][0] == pytest.approx(brute_irr(flows), rel=1e-9)
    cum = np.cumsum(fcf)
    want = float(np.argmax(cum >= 950_000.0) + 1) if (cum >= 950_000.0).any() else math.inf
    assert pf["payback_months"][0] == want
    eq = np.concatenate([[-75_000.0], fa["equity_flow"][0] + fb["equity_flow"][0]])
    eq[2] -= 400_000.0
    eq[T] += 175_000.0 - fa["balloon"][0] - fb["balloon"][0]
    assert pf["equity_irr"][0] == pytest.approx(brute_irr(eq), rel=1e-9)
    ds = fa["debt_service"][0] + fb["debt_service"][0]
    cover = fa["cash_flow"][0] - fa["tax_levered"][0] + fb["cash_flow"][0] - fb["tax_levered"][0]
    assert pf["min_dscr"][0] == pytest.approx(min(cover[ds > 0] / ds[ds > 0]), rel=1e-14)


def test_a_portfolio_of_one_is_that_system():
    market, system, eps = random_case(200, 24, seed=51)
    market = {**market, TAX: 0.2, DEBT: 0.3, DEBT_RATE: 0.07}
    system = {**system, "purchase_month": 3, "lead_months": 2}
    one_row = system_metrics(market, system, 24, *eps)
    pf = portfolio_metrics(market, {"only": system}, 24, *eps)
    for name in METRICS:
        if name in (
            "breakeven_price_usd_per_mtok",
            "breakeven_rental_usd_per_gpu_hour",
            "revenue_per_unit_year_usd",
            "live_months",
            "contract_default_month",
            "breakeven_utilization",
        ):
            assert np.isnan(pf[name]).all(), name
        else:
            np.testing.assert_allclose(pf[name], one_row[name], rtol=1e-12, err_msg=name)

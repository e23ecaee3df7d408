"""MODEL.md's extensions in the engine: timing, contracts, GPU-hours, generations, tax, debt.

The worked checks 3, 4 and 5 of MODEL.md, run through the engine's stages in float64, and the
study fields' validation.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mcrisk.engine.plan import make_plan, sample, simulate
from mcrisk.errors import StudyError
from mcrisk.model.metrics import ALL_METRICS, METRICS
from mcrisk.study.schema import study_from_dict

B200 = {
    "units": 1,
    "gpus_per_unit": 8,
    "capex_usd": 400_000,
    "it_power_kw": 14.3,
    "throughput_tokens_per_s_per_gpu": 30_000,
    "depreciation_years": 4,
}


def _study(system: dict, months: int = 48, finance: dict | None = None, market: dict | None = None, **top) -> dict:
    mk = {
        "token_price": {"initial_usd_per_mtok": 1.10},
        "demand": {"utilization": 1.0, "volatility": 0.0},
        "electricity": {"usd_per_kwh": 0.08},
    }
    mk.update(market or {})
    return {
        "name": "econ",
        "simulation": {"scenarios": 4, "horizon_months": months, "precision": "float64"},
        "market": mk,
        "facility": {"pue": 1.3, "colocation_usd_per_kw_month": 190},
        "finance": {"discount_rate": 0.1, **(finance or {})},
        "systems": {"b200": system},
        **top,
    }


def _run(raw: dict, n: int = 4, precision: str = "float64") -> dict[str, np.ndarray]:
    st = study_from_dict(copy.deepcopy(raw))
    plan = make_plan(st, scenarios=n, seed=0, precision=precision, chunk_size=None, monthly=False)
    idx = np.arange(plan.chunk, dtype=np.uint32)
    out = simulate(plan, sample(plan, idx), plan.chunk)
    return {k: np.asarray(v)[:, :n] for k, v in out.items()}


def test_check_3_lead_time_and_contract():
    system = {**B200, "lead_months": 3, "contract": {"share": 0.5, "term_months": 24, "price_multiple": 1}}
    out = _run(_study(system))
    assert out["live_months"][0, 0] == 45
    # capacity per live month 6.31152e11 tokens at $1.10: $694,267.20 a live month, contract or spot
    np.testing.assert_allclose(out["tokens"][0], 45 * 6.31152e11, rtol=1e-12)
    np.testing.assert_allclose(out["revenue_usd"][0], 45 * 694_267.20, rtol=1e-12)
    np.testing.assert_allclose(out["contract_revenue_usd"][0], 24 * 694_267.20 / 2, rtol=1e-12)
    np.testing.assert_allclose(out["revenue_per_gpu_hour_usd"][0], 45 * 694_267.20 / (8 * 730.5 * 45), rtol=1e-12)
    # the first live year (months 4-15) earns the same $694,267.20 a month
    np.testing.assert_allclose(out["first_year_revenue_per_gpu_hour_usd"][0], 694_267.20 / (8 * 730.5), rtol=1e-12)
    # opex only in live months; book depreciation over the 45 live months of 48
    np.testing.assert_allclose(out["colocation_usd"][0], 45 * 2_717.0, rtol=1e-12)
    np.testing.assert_allclose(out["energy_usd"][0], 45 * 14.3 * 1.3 * 730.5 * 0.08, rtol=1e-12)
    np.testing.assert_allclose(out["depreciation_usd"][0], 400_000 * 45 / 48, rtol=1e-12)
    np.testing.assert_allclose(out["mean_utilization"][0], 1.0, rtol=1e-12)
    assert np.all(np.isinf(out["contract_default_month"]))


def test_no_lead_time_and_no_contract_is_the_base_model():
    base = _run(_study(dict(B200)))
    ext = _run(_study({**B200, "lead_months": 0, "contract": {"share": 0.0}}, finance={"tax_rate": 0.0}))
    assert set(ext) == set(ALL_METRICS) and set(base) == set(METRICS)
    for m in METRICS:
        np.testing.assert_allclose(ext[m], base[m], rtol=1e-10, err_msg=m)
    np.testing.assert_allclose(ext["equity_npv_usd"], base["npv_usd"], rtol=1e-10)
    assert np.all(np.isinf(ext["min_dscr"])) and np.all(ext["tax_usd"] == 0)


def test_check_4_debt_schedule_pays_off_within_the_tenor():
    # I = 1e6, db = 0.6, rd = 0.12, nd = 36: PMT = 19,928.59, month 1 interest 6,000, nothing owed after 36.
    system = {**B200, "capex_usd": 1_000_000}
    out = _run(_study(system, months=48, finance={"debt": {"share": 0.6, "annual_rate": 0.12, "tenor_months": 36}}))
    pmt = 600_000 * 0.01 / (1 - 1.01**-36)
    assert round(pmt, 2) == 19_928.59
    np.testing.assert_allclose(out["interest_usd"][0], 36 * pmt - 600_000, rtol=1e-10)
    # no tax: the equity's flows are the project's less debt service, and the loan is repaid
    cf_month = 694_267.20 - 14.3 * 1.3 * 730.5 * 0.08 - 2_717.0
    np.testing.assert_allclose(out["min_dscr"][0], cf_month / pmt, rtol=1e-10)
    r = 1.1 ** (1 / 12)
    t = np.arange(1, 49)
    eq = np.where(t <= 36, cf_month - pmt, cf_month)
    expected = -400_000 + np.sum(eq / r**t)
    np.testing.assert_allclose(out["equity_npv_usd"][0], expected, rtol=1e-10)
    assert np.all(out["equity_irr"][0] >= out["irr"][0])  # leverage at 12% on a project that earns more


def test_check_5_tax_with_straight_line_depreciation():
    # CF_t = 50,000 a month, I = 1.2e6, L = 2, T = 24, V = 0: Y_t = 0, no tax; CF_t = 60,000: 2,500 a month.
    for cf, tax in ((50_000.0, 0.0), (60_000.0, 2_500.0 * 24)):
        system = {
            "units": 1,
            "gpus_per_unit": 1,
            "capex_usd": 1_200_000,
            "it_power_kw": 1.0,
            "idle_power_fraction": 0.0,
            "throughput_tokens_per_s_per_gpu": cf / 2_629_800 * 1e6,
            "depreciation_years": 2,
        }
        raw = _study(
            system,
            months=24,
            finance={"tax_rate": 0.25},
            market={"token_price": {"initial_usd_per_mtok": 1.0}, "electricity": {"usd_per_kwh": 0.0}},
        )
        raw["facility"] = {"pue": 1.0, "colocation_usd_per_kw_month": 0}
        out = _run(raw)
        np.testing.assert_allclose(out["revenue_usd"][0], 24 * cf, rtol=1e-12)
        np.testing.assert_allclose(out["tax_usd"][0], tax, atol=1e-6)
        np.testing.assert_allclose(out["equity_tax_usd"][0], tax, atol=1e-6)
        np.testing.assert_allclose(out["net_roi"][0], (24 * cf - tax - 1_200_000) / 1_200_000, rtol=1e-12)


def test_loss_carry_forward_defers_tax():
    # Purchase at month 2, lead 2: live from month 5; losses (none here: no opex) and depreciation
    # at 12 L = 48 months leave taxable income CF - I/48.
    system = {**B200, "purchase_month": 2, "lead_months": 2}
    out = _run(_study(system, finance={"tax_rate": 0.2}))
    cf = 694_267.20 - 14.3 * 1.3 * 730.5 * 0.08 - 2_717.0
    live = 44
    dep = 400_000 / 48
    basis_left = 400_000 - live * dep
    expected = 0.2 * (live * (cf - dep) - basis_left)  # the basis left is a loss on the sale at T (V = 0)
    np.testing.assert_allclose(out["tax_usd"][0], expected, rtol=1e-10)
    assert out["payback_months"][0, 0] == 4 + np.ceil(400_000 / (cf - 0.2 * (cf - dep)))


def test_gpu_hours_revenue_and_generations():
    system = {**B200, "revenue_mode": "gpu_hours", "rental": {"initial_usd_per_gpu_hour": 2.0, "annual_decline": 0.0}}
    market = {"succession": {"first_month": 13, "every_months": 12, "token_price_step": 0.5, "rental_step": 0.25}}
    out = _run(_study(system, months=36, market=market))
    t = np.arange(1, 37)
    J = np.where(t < 13, 0, 1 + (t - 13) // 12)
    expected = np.sum(8 * 730.5 * 2.0 * 0.75**J)
    np.testing.assert_allclose(out["revenue_usd"][0], expected, rtol=1e-12)
    assert np.isnan(out["breakeven_price_usd_per_mtok"][0]).all()
    assert np.isfinite(out["breakeven_rental_usd_per_gpu_hour"][0]).all()
    tok = _run(_study(dict(B200), months=36, market=market))
    np.testing.assert_allclose(tok["revenue_usd"][0], np.sum(6.31152e11 * 1e-6 * 1.10 * 0.5**J), rtol=1e-12)


def test_contract_default_month_follows_the_uniform():
    system = {
        **B200,
        "contract": {"share": 1.0, "term_months": 48, "price_multiple": 2.0, "annual_default_probability": 0.5},
    }
    out = _run(_study(system), n=64)
    D = out["contract_default_month"][0]
    assert np.all((D >= 1) & ((D <= 48) | np.isinf(D)))
    assert np.isfinite(D).mean() > 0.5
    # contracted at twice the spot price until the default, spot after
    month = 694_267.20
    live_before = np.where(np.isinf(D), 48, D - 1)
    np.testing.assert_allclose(out["contract_revenue_usd"][0], 2 * month * live_before, rtol=1e-12)
    np.testing.assert_allclose(out["revenue_usd"][0], month * (48 + live_before), rtol=1e-12)


@pytest.mark.parametrize(
    "change, path",
    [
        ({"purchase_month": 48}, "systems.b200.purchase_month"),
        ({"revenue_mode": "gpu_hours"}, "systems.b200"),
        ({"contract": {"share": 1.5}}, "systems.b200.contract.share"),
        ({"lead_months": -1}, "systems.b200.lead_months"),
    ],
)
def test_bad_extension_fields_name_their_path(change, path):
    with pytest.raises(StudyError) as exc:
        study_from_dict(_study({**B200, **change}))
    assert any(p.path == path for p in exc.value.problems), exc.value.problems


def test_bad_finance_fields_name_their_path():
    with pytest.raises(StudyError) as exc:
        study_from_dict(_study(dict(B200), finance={"tax_rate": 1.0, "debt": {"tenor_months": 0}}))
    paths = {p.path for p in exc.value.problems}
    assert {"finance.tax_rate", "finance.debt.tenor_months"} <= paths, paths


def test_a_study_without_extensions_resolves_as_before():
    st = study_from_dict(_study(dict(B200)))
    text = str(st.resolved())
    for key in ("purchase_month", "contract", "tax_rate", "debt", "portfolio", "succession", "rental"):
        assert key not in text


def test_first_year_revenue_per_gpu_hour_counts_the_first_twelve_live_months():
    """A price that falls 50% a year: the first live year's revenue per GPU-hour is the mean of its
    twelve monthly prices, whether the year starts at month 1 or after a 6-month lead time."""
    market = {"token_price": {"initial_usd_per_mtok": 1.10, "annual_decline": 0.5, "volatility": 0.0}}
    hours = 8 * 730.5
    for lead in (None, 6):
        system = dict(B200, **({"lead_months": lead} if lead else {}))
        out = _run(_study(system, market=market))
        g = lead or 0
        # P_t = P0 (1 - d)^(t / 12), the month's revenue capacity * P_t / 1e6 (utilization 1)
        price = 1.10 * 0.5 ** (np.arange(g + 1, g + 13) / 12)
        want = (6.31152e11 * price / 1e6).sum() / (12 * hours)
        np.testing.assert_allclose(out["first_year_revenue_per_gpu_hour_usd"][0], want, rtol=1e-9)
        assert out["first_year_revenue_per_gpu_hour_usd"][0, 0] > out["revenue_per_gpu_hour_usd"][0, 0]

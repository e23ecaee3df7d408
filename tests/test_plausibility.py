"""Warnings for valid but implausible magnitudes: each names the field, the value and the likely slip."""

from __future__ import annotations

import pytest

from mcrisk.study.plausibility import plausibility_warnings
from mcrisk.study.schema import study_from_dict

from .conftest import small_study


def _warnings(edit) -> dict[str, str]:
    raw = small_study()
    edit(raw)
    return {p.path: p.message for p in plausibility_warnings(study_from_dict(raw))}


def test_a_plausible_study_gets_no_warning():
    assert _warnings(lambda raw: None) == {}


def test_electricity_in_cents_is_called_a_slip():
    def edit(raw):
        raw["market"]["electricity"]["usd_per_kwh"] = 8

    msg = _warnings(edit)["market.electricity.usd_per_kwh"]
    assert msg.startswith("mean 8 $/kWh") and "cents typed as dollars?" in msg


@pytest.mark.parametrize(
    ("capex", "slip"),
    [
        (40_000.0, "capex per GPU typed where capex per unit belongs"),
        (3.4e8, "capex of the whole fleet typed per unit"),
    ],
)
def test_capex_per_gpu_outside_5k_to_500k(capex, slip):
    def edit(raw):
        raw["systems"]["rack"]["capex_usd"] = capex  # 72 GPUs a unit

    msg = _warnings(edit)["systems.rack.capex_usd"]
    assert slip in msg and "per GPU" in msg


def test_capex_per_gpu_at_the_bounds_is_quiet():
    def edit(raw):
        raw["systems"]["rack"]["capex_usd"] = 72 * 5_000.0
        raw["systems"]["server"]["capex_usd"] = 8 * 500_000.0

    assert not any(k.endswith("capex_usd") for k in _warnings(edit))


def test_a_speedup_ceiling_that_can_fall_below_one_is_flagged():
    def edit(raw):
        raw["systems"]["rack"]["software_speedup"]["ceiling"] = {"dist": "lognormal", "median": 2.0, "sigma": 0.4}

    msg = _warnings(edit)["systems.rack.software_speedup.ceiling"]
    assert "below 1" in msg and "slowdown" in msg


def test_revenue_per_gpu_hour_over_20_dollars_names_the_throughput():
    # 6,000 tok/s at the median, times efficiency 0.75, availability 0.97 and utilization 0.6: about
    # 9.4 million tokens sold a GPU-hour, which at about $29/Mtok is some $270 an hour.
    def edit(raw):
        raw["market"]["token_price"]["initial_usd_per_mtok"] = {"dist": "lognormal", "p5": 20.0, "p95": 40.0}

    msg = _warnings(edit)["systems.rack.throughput_tokens_per_s_per_gpu"]
    assert "GPU-hour earns" in msg and "above $20" in msg


def test_a_price_per_thousand_tokens_is_flagged():
    def edit(raw):
        raw["market"]["token_price"]["initial_usd_per_mtok"] = {"dist": "uniform", "low": 900.0, "high": 1100.0}

    assert "per thousand tokens" in _warnings(edit)["market.token_price.initial_usd_per_mtok"]


@pytest.mark.parametrize(
    ("path", "value", "slip"),
    [
        ("finance.discount_rate", 10, "a percentage typed as a fraction (10 for 0.10)?"),
        ("facility.colocation_usd_per_kw_month", 2_280, "a price per kW-year typed per month?"),
        ("systems.rack.maintenance_fraction_per_year", 2, "a percentage typed as a fraction (2 for 0.02)?"),
        ("systems.rack.depreciation_years", 48, "months typed as years?"),
        ("systems.rack.it_power_kw", 130_000, "watts typed as kilowatts?"),
        ("systems.rack.it_power_kw", 0.13, "megawatts typed as kilowatts"),
    ],
)
def test_unit_slips_name_the_field_and_the_slip(path, value, slip):
    def edit(raw):
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[leaf] = value

    assert slip in _warnings(edit)[path]


def test_a_debt_rate_in_percent_is_flagged():
    def edit(raw):
        raw["finance"]["debt"] = {"share": 0.6, "annual_rate": 9}

    assert "percentage typed as a fraction" in _warnings(edit)["finance.debt.annual_rate"]


def test_a_gpu_hour_system_is_judged_by_its_rental_price_not_its_tokens():
    def edit(raw):
        raw["market"]["token_price"]["initial_usd_per_mtok"] = {"dist": "lognormal", "p5": 30.0, "p95": 50.0}
        raw["systems"]["rack"]["revenue_mode"] = "gpu_hours"
        raw["systems"]["rack"]["rental"] = {"initial_usd_per_gpu_hour": 3.0}

    got = _warnings(edit)
    assert "systems.rack.throughput_tokens_per_s_per_gpu" not in got
    assert "systems.server.throughput_tokens_per_s_per_gpu" in got  # (still selling tokens)

    def per_server(raw):
        raw["systems"]["rack"]["revenue_mode"] = "gpu_hours"
        raw["systems"]["rack"]["rental"] = {"initial_usd_per_gpu_hour": 3.0 * 72}

    msg = _warnings(per_server)["systems.rack.rental.initial_usd_per_gpu_hour"]
    assert "a whole server or rack typed per GPU?" in msg

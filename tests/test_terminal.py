"""What the terminal prints: number formats, labels, tables that fit 80 columns, the decision
headline (hand-computed on small synthetic tables) and notes that follow the options used."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from mcrisk.cli import layout, terminal
from mcrisk.cli.app import app
from mcrisk.stats import formats as ft
from mcrisk.stats.headline import best_sentence, calibration_text, headline_table, why_no_comparison
from mcrisk.study.labels import input_label, metric_label, short_unit, unit_of

from .conftest import small_study, write_study

runner = CliRunner()


# --------------------------------------------------------------------------- numbers and names


def test_money_is_three_figures_with_a_step():
    assert ft.money(6.0e6) == "$6.00M"
    assert ft.money(20_327_444) == "$20.3M"
    assert ft.money(-2_857_570) == "-$2.86M"
    assert ft.money(491_630) == "$492k"
    assert ft.money(999_600) == "$1.00M"  # rounds up into the next step, never "$1000k"
    assert ft.money(950) == "$950"
    assert ft.money(0) == "$0"
    assert ft.money(1.5e9) == "$1.50B"
    assert ft.money(math.nan) == "n/a" and ft.money(math.inf) == "+inf"
    assert ft.signed_money(1.2e6) == "+$1.20M" and ft.signed_money(-972_000) == "-$972k"


def test_rates_months_and_unreachable_break_evens():
    assert ft.per_year(2.59) == "259%/yr"
    assert ft.per_year(0.7886) == "78.9%/yr"
    assert ft.per_year(-0.0146) == "-1.46%/yr"
    assert ft.per_year(math.nan) == "n/a"
    assert ft.months(20.0) == "20 mo" and ft.months(math.inf) == "never"
    assert ft.utilization(0.53) == "53%"
    assert ft.utilization(1.0) == "100%"
    assert ft.utilization(3.43) == "unreachable" and ft.utilization(26.27) == "unreachable"
    assert ft.utilization(math.inf) == "unreachable"
    assert ft.value("cost_per_mtok_usd", 0.07468) == "0.0747 $/Mtok"
    assert ft.value("roi_multiple", 1.2) == "1.20x"
    assert ft.value("breakeven_rental_usd_per_gpu_hour", 4.744) == "$4.74/GPU-h"
    assert ft.value("npv_usd", 6.02e6) == "$6.02M"
    assert ft.value("operating_margin", 0.709) == "70.9%"


def test_inputs_read_as_words_with_units():
    assert input_label("market.token_price.initial_usd_per_mtok") == "initial token price ($/Mtok)"
    assert input_label("market.electricity.usd_per_kwh") == "electricity price ($/kWh)"
    assert input_label("systems.gb200.demand.utilization") == "gb200 utilization"
    assert input_label("systems.gb200.rental.initial_usd_per_gpu_hour") == "gb200 initial GPU rental price ($/GPU-h)"
    # a scenario column names the row's own system
    assert input_label("system.efficiency") == "efficiency (production / benchmark)"
    # a path the table does not know: its own name, readably, the unit from its ending
    assert input_label("systems.rack.cooling_overhead_usd") == "rack cooling overhead ($)"
    assert input_label("market.storage.price_usd_per_kwh") == "market storage price ($/kWh)"


def test_the_three_costs_per_mtok_have_distinct_labels():
    labels = {
        metric_label(m) for m in ("cost_per_mtok_usd", "levelized_cost_per_mtok_usd", "breakeven_price_usd_per_mtok")
    }
    assert labels == {
        "cost per Mtok sold ($/Mtok)",
        "levelized cost per Mtok ($/Mtok)",
        "break-even initial token price ($/Mtok)",
    }
    assert metric_label("roi_multiple") == "revenue per $ of capex (x)"
    assert metric_label("irr") == "IRR (%/yr)" and metric_label("npv_usd") == "NPV ($)"
    # one table for the files' units too (summary.nc), in their long form
    assert unit_of("cost_per_mtok_usd") == "USD per million tokens"
    assert unit_of("systems.a.capex_usd") == "USD" and unit_of("unknown") is None
    assert short_unit("revenue_per_gpu_hour_usd") == "$/GPU-h"


# --------------------------------------------------------------------------- tables that fit


def _widths_ok(lines: list[str], width: int) -> None:
    assert lines
    for line in lines:
        assert len(line) <= width, line
        assert "…" not in line and "..." not in line, line


def test_a_table_that_fits_is_one_block():
    lines = layout.table(["system", "NPV P50"], [["gb200_nvl72", "$20.3M"], ["b", "$1.00k"]], 80)
    assert lines == [
        "system       NPV P50",
        "───────────  ───────",
        "gb200_nvl72   $20.3M",
        "b             $1.00k",
    ]


def test_a_wide_table_stacks_its_columns_beside_its_keys():
    headers = ["system", *(f"column {k}" for k in range(8))]
    rows = [[name, *(f"{k * 1.5:10.3f}" for k in range(8))] for name in ("gb200_nvl72", "h200_hgx")]
    lines = layout.table(headers, rows, 40)
    _widths_ok(lines, 40)
    assert sum(line.startswith("gb200_nvl72") for line in lines) >= 3  # the key again in every block
    for k in range(8):
        assert any(f"column {k}" in line for line in lines)
    # unlimited width (--wide): one line per row
    wide = layout.table(headers, rows, layout.UNLIMITED)
    assert len(wide) == 4


def test_a_key_too_long_for_any_column_is_abbreviated_with_a_legend():
    long = "a_very_long_system_name_that_does_not_fit_anything"
    lines = layout.table(["system", "NPV P50", "P(loss)"], [[long, "$1.00M", "3.0%"], ["b", "$2.00M", "1.0%"]], 40)
    _widths_ok(lines[:-1], 40)
    short = layout.abbreviations([long], 40 - 2 - 7)[long]
    assert short.endswith("~1") and any(line.startswith(short) for line in lines)
    assert lines[-2].startswith(f"{short} =") and lines[-1].strip() == long  # the legend


def test_text_wraps_at_spaces_only():
    text = "the input market.token_price.initial_usd_per_mtok drives " * 3
    lines = layout.wrap(text, 30)
    assert "market.token_price.initial_usd_per_mtok" in " ".join(lines).split()
    assert all(len(line) <= 30 or " " not in line.strip() for line in lines)


# --------------------------------------------------------------------------- the headline


def _tables():
    summary = pd.DataFrame(
        [
            ("a", "npv_usd", -1.0e6, 2.0e6),
            ("a", "irr", -0.05, 0.15),
            ("b", "npv_usd", 0.5e6, 3.0e6),
            ("b", "irr", 0.02, 0.25),
            ("portfolio", "npv_usd", 1.0e6, 5.0e6),
            ("portfolio", "irr", 0.03, 0.2),
        ],
        columns=["system", "metric", "p5", "p50"],
    )
    risk = pd.DataFrame(
        [("a", 0.3, 1.5e6, 30.0), ("b", 0.1, -0.2e6, math.inf), ("portfolio", 0.05, -0.4e6, 28.0)],
        columns=["system", "p_loss", "cvar95_usd", "median_payback_months"],
    )
    calibration = pd.DataFrame(
        [("a", 3.0, 2.0, 4.0, "inside"), ("b", 9.5, 2.5, 7.5, "above")],
        columns=["system", "p50", "band_low", "band_high", "status"],
    )
    comparison = pd.DataFrame(
        [
            ("npv_usd", "b", "a", 0.72, 0.9e6),
            ("npv_usd", "a", "b", 0.28, -0.9e6),
            ("cost_per_mtok_usd", "b", "a", 0.1, 0),
        ],
        columns=["metric", "system_a", "system_b", "p_a_greater", "diff_p50"],
    )
    return summary, risk, calibration, comparison


def test_the_headline_takes_each_number_from_its_table():
    summary, risk, calibration, _ = _tables()
    t = headline_table(summary, risk, calibration).set_index("system")
    assert list(t.index) == ["a", "b", "portfolio"]
    assert t.loc["a", "npv_p50"] == 2.0e6 and t.loc["a", "npv_p5"] == -1.0e6
    assert t.loc["b", "irr_p50"] == 0.25 and t.loc["b", "p_loss"] == 0.1
    # risk.csv writes CVaR as a loss: the mean NPV of the worst 5% is its negative
    assert t.loc["a", "npv_cvar95"] == -1.5e6 and t.loc["portfolio", "npv_cvar95"] == 0.4e6
    assert t.loc["b", "payback_p50_months"] == math.inf
    assert calibration_text(t.loc["b"].to_dict()) == "$9.50/GPU-h vs market $2.50-$7.50: above"
    assert math.isnan(t.loc["portfolio", "calibration_p50"])  # no calibration row: no line


def test_the_best_system_sentence_names_the_pair_by_median_npv():
    summary, risk, calibration, comparison = _tables()
    t = headline_table(summary, risk, calibration)
    # b has the higher P50 (3.0M > 2.0M); the portfolio (5.0M) is the fleet, not a choice
    assert best_sentence(t, comparison) == (
        "b has the highest median NPV ($3.00M), ahead of a ($2.00M): it has the higher NPV in 72.0% "
        "of the same scenarios, by a median of $900k."
    )
    assert best_sentence(t, None, "mcrisk analyze RUN adds them") == (
        "b has the highest median NPV ($3.00M), ahead of a ($2.00M) (no paired comparison: mcrisk analyze RUN adds them)."
    )
    one = headline_table(summary[summary.system == "a"], risk[risk.system == "a"])
    assert best_sentence(one, comparison) == "a has the highest median NPV ($2.00M)."


def test_why_there_is_no_comparison_follows_the_options():
    assert "--no-scenarios" in why_no_comparison({"options": {"write_scenarios": False, "analyze": True}})
    assert "--no-analyze" in why_no_comparison({"options": {"write_scenarios": True, "analyze": False}})
    assert "--columns" in why_no_comparison({"options": {"analyze": True, "columns": ["irr"]}})


# --------------------------------------------------------------------------- the command at 80 columns


@pytest.fixture
def eighty(monkeypatch):
    monkeypatch.setattr(terminal.out_console, "_width", 80)
    monkeypatch.setattr(terminal, "_wide", {"on": False})


def test_run_at_80_columns_abbreviates_nothing_it_need_not_and_notes_the_skipped_stress(tmp_path, eighty):
    raw = small_study(scenarios=300)
    raw["systems"]["a_rack_with_a_name_far_too_long_for_eighty_columns_of_terminal_x"] = raw["systems"].pop("rack")
    raw["correlations"] = raw["correlations"][:1]
    raw["stress"] = {"price-war": {"market.token_price.annual_decline": 0.9}}
    path = write_study(tmp_path / "s.yaml", raw)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "--no-stress", "--no-analyze"])
    assert result.exit_code == 0, result.stdout + (result.stderr or "")
    lines = result.stdout.splitlines()
    _widths_ok(lines, 80)
    for header in ("NPV P50", "NPV P5", "P(loss)", "CVaR 95", "IRR P50", "payback"):
        assert header in result.stdout
    assert "a_rack_with_a_n~1 =" in result.stdout or "~1 =" in result.stdout  # the legend of the long name
    assert "server" in result.stdout
    text = " ".join(result.stdout.split())
    assert "not run (--no-stress); run without --no-stress" in text
    assert "add a stress" not in text
    assert "not run (--no-analyze); mcrisk analyze" in text
    assert "ROI" not in result.stdout and "revenue per $ of capex" in text


def test_catalog_at_80_columns_keeps_each_entry_on_its_line(eighty):
    from mcrisk.study import catalog

    listing = runner.invoke(app, ["catalog"])
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    _widths_ok(lines, 80)
    for row in catalog.list_entries():
        assert f"  {row['name']}: " in listing.stdout  # name and title on one line, not a word per line
    one = runner.invoke(app, ["catalog", "gb200-nvl72"])
    assert one.exit_code == 0
    assert all(len(line) <= 80 for line in one.stdout.splitlines() if " " in line.strip())

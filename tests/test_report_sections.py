"""The report's portfolio, financing, reverse stress and Greeks sections and its notes, on hand-made
run tables whose numbers are checked by hand; the notes say what to run given the options the run
was made with (one real `mcrisk run --no-stress --no-monthly --no-analyze --report`)."""

from __future__ import annotations

import math
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.report import finance_section, greeks_section, sections
from mcrisk.report.page import render, shown_sections

from .conftest import small_study, write_study
from .test_report import Page

runner = CliRunner()


def summary_rows(values: dict[tuple[str, str], dict[str, float]]) -> pd.DataFrame:
    """summary.csv rows: (system, metric) -> {column: value}; the percentiles not given are the mean."""
    cols = ("p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99")
    rows = []
    for (system, metric), v in values.items():
        rows.append({"system": system, "metric": metric, "mean": v["mean"], "mcse_mean": 0.0,
                     **{c: v.get(c, v["mean"]) for c in cols}})  # fmt: skip
    return pd.DataFrame(rows)


def fake_run(folder: Path, summary: pd.DataFrame, risk: pd.DataFrame, **extra) -> dict:
    run = {
        "folder": folder,
        "manifest": {"study": "t", "scenarios": 1000, "seed": 5, "horizon_months": 24, "options": {}},
        "summary": summary,
        "risk": risk,
        "study": {},
        "systems": list(dict.fromkeys(risk["system"])),
        "scenarios": None,
        **dict.fromkeys(("sensitivity", "comparison", "stress", "breakeven", "claims", "calibration", "monthly")),
    }
    run.update(extra)
    return run


@pytest.fixture
def fleet(tmp_path) -> dict:
    """Two systems and the portfolio row, with debt."""
    summary = summary_rows(
        {
            ("a", "npv_usd"): {"mean": 10e6, "p5": -2e6, "p50": 8e6, "p95": 20e6},
            ("b", "npv_usd"): {"mean": 1e6, "p5": -3e6, "p50": 0.5e6, "p95": 5e6},
            ("portfolio", "npv_usd"): {"mean": 11e6, "p5": -1e6, "p50": 9e6, "p95": 23e6},
            ("a", "capex_usd"): {"mean": 4e6},
            ("b", "capex_usd"): {"mean": 2e6},
            ("portfolio", "capex_usd"): {"mean": 6e6},
            ("a", "equity_npv_usd"): {"mean": 5e6, "p5": -1e6, "p50": 4e6, "p95": 9e6},
            ("a", "equity_irr"): {"mean": 0.3, "p50": 0.25},
            ("a", "min_dscr"): {"mean": 1.5, "p5": 0.85, "p50": 1.4},
            ("b", "min_dscr"): {"mean": math.inf, "p5": math.inf, "p50": math.inf},
            ("a", "interest_usd"): {"mean": 0.7e6},
            ("a", "tax_usd"): {"mean": 1.2e6},
        }
    )
    risk = pd.DataFrame(
        {
            "system": ["a", "b", "portfolio"],
            "p_loss": [0.1, 0.4, 0.05],
            "cvar95_usd": [1e6, 2e6, 1.5e6],
            "p_equity_loss": [0.25, 0.5, 0.2],
            "p_equity_loss_mcse": [0.01, 0.02, 0.01],
            "p_min_dscr_below_1_2": [0.4, 0.0, 0.3],
            "p_min_dscr_below_1_2_mcse": [0.015, 0.0, 0.014],
        }
    )
    return fake_run(tmp_path, summary, risk)


def test_the_portfolio_section_sets_the_fleet_against_the_sum_of_its_systems(fleet):
    html = finance_section.portfolio(fleet)
    # Sum of the systems' P5: -2M + -3M = -5M; the fleet's -1M: $4M better. CVaR: 1M + 2M = 3M against 1.5M.
    assert "the 1-in-20 bad case is $4M better than the systems&#x27; own 1-in-20 bad cases added up" in html
    assert "the mean loss in the worst 5% $1.5M smaller" in html
    rows = {r[0]: r[1:] for r in _cells(html)}
    assert rows["NPV P5 (1 in 20 worse)"] == ["-$2M", "-$3M", "-$5M", "-$1M", "+$4M"]
    assert rows["mean NPV"] == ["$10M", "$1M", "$11M", "$11M", "$0"]  # a sum: no difference
    assert rows["CVaR 95% (mean loss of the worst 5%)"] == ["$1M", "$2M", "$3M", "$1.5M", "-$1.5M"]
    assert rows["P(NPV < 0)"] == ["10.0%", "40.0%", "", "5.0%", ""]


def test_the_financing_section_reads_equity_and_debt_from_the_run(fleet):
    html = finance_section.financing(fleet)
    assert "a: owners lose money in 25.0% of scenarios, cover falls below 1.2x in 40.0%" in html
    assert "b: owners lose money in 50.0% of scenarios, cover falls below 1.2x in 0.0%" in html
    assert "portfolio: owners" not in html  # the sentence is about the systems
    equity, cover = (t for t in html.split("<table")[1:])
    rows = {r[0]: r[1:] for r in _cells("<table" + equity)}
    assert rows["a"] == ["-$1M", "$4M", "$9M", "25.0% ± 1.0%", "25.0%", "$8M"]
    rows = {r[0]: r[1:] for r in _cells("<table" + cover)}
    assert rows["a"] == ["0.85x", "1.40x", "40.0% ± 1.5%", "$700k", "$1.2M"]
    assert rows["b"][:2] == ["no debt", "no debt"]


def test_sections_without_their_data_are_left_out_and_the_nav_lists_those_shown(fleet, tmp_path):
    bare = fake_run(
        tmp_path,
        summary_rows({("a", "npv_usd"): {"mean": 1.0}, ("a", "tax_usd"): {"mean": 0.0}}),
        pd.DataFrame({"system": ["a"], "p_loss": [0.1], "cvar95_usd": [1.0]}),
    )
    assert finance_section.portfolio(bare) == finance_section.financing(bare) == ""
    assert finance_section.financing(fake_run(tmp_path, bare["summary"].assign(mean=5.0), bare["risk"])) != ""  # tax
    bodies = {"portfolio": "", "financing": "x", "drivers": "y", "stress": "z"}
    shown = dict(shown_sections(bare, {sid: bodies.get(sid, "") for sid, _ in shown_sections(fleet, _all())}))
    assert list(shown) == ["drivers", "financing", "stress"]


def _all() -> dict:
    from mcrisk.report.page import SECTIONS

    return dict.fromkeys((sid for sid, _ in SECTIONS), "x")


def _cells(html: str) -> list[list[str]]:
    """The body rows of the first table in `html`, as text."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = []
    for tr in body.split("<tr>")[1:]:
        cells = [unescape(c.split(">", 1)[1].split("</td>", 1)[0]) for c in tr.split("<td")[1:]]
        rows.append(cells)
    return rows


def test_the_drivers_section_is_titled_by_its_metric_with_its_unit(fleet):
    fleet["sensitivity"] = pd.DataFrame(
        {
            "system": ["a"],
            "metric": ["cost_per_mtok_usd"],
            "input": ["market.token_price.initial_usd_per_mtok"],
            "rank": [1],
            "first_order": [0.5],
            "bottom_p50": [0.1],
            "top_p50": [0.2],
        }
    )
    fleet["summary"] = pd.concat([fleet["summary"], summary_rows({("a", "cost_per_mtok_usd"): {"mean": 0.15}})])
    assert sections.drivers_title(fleet) == "What drives cost per Mtok sold"
    drawn = {}
    html = sections.drivers(fleet, lambda fig, name, alt, cap: drawn.setdefault(name, (fig, cap))[1])
    fig, cap = drawn["drivers"]
    assert "cost per Mtok sold ($/Mtok)" in html and "NPV" not in cap
    assert "($/Mtok)" in fig.axes[-1].get_xlabel()
    fleet["sensitivity"] = None
    assert sections.drivers_title(fleet) == "What drives NPV"


def _notes(html: str) -> str:
    return " ".join(Page(html).notes)


def test_the_stress_note_follows_the_options_and_the_study(fleet):
    fleet["study"] = {"stress": {"price-war": {}, "power-spike": {}}}
    fleet["manifest"]["options"] = {"stress": False}
    note = _notes(sections.stress(fleet))
    assert "it was made with --no-stress: run it again without --no-stress" in note
    assert "the study's 2 stresses (price-war, power-spike)" in note and "add" not in note
    fleet["manifest"]["options"] = {"stress": True}
    fleet["manifest"]["merged_from"] = ["s0", "s1"]
    assert "run in shards (--shard), which skip the stresses" in _notes(sections.stress(fleet))
    fleet["study"] = {}
    assert "its study has no stress: section. Add one" in _notes(sections.stress(fleet))


def test_the_scenario_notes_follow_the_options(fleet):
    fleet["manifest"]["options"] = {"write_scenarios": False, "monthly": False}
    assert "made with --no-scenarios: run it again without --no-scenarios" in _notes(sections.utilization(fleet, None))
    assert "made with --no-monthly: run it again without --no-monthly" in _notes(sections.cash_flow(fleet, None))
    assert "made with --no-scenarios" in _notes(sections.drivers(fleet, None))
    fleet["manifest"]["options"] = {"write_scenarios": True, "columns": ["npv_usd"], "analyze": False}
    fleet["scenarios"] = pd.DataFrame({"scenario": [0], "system": ["a"], "npv_usd": [1.0]})
    note = _notes(sections.utilization(fleet, None))
    assert "kept only --columns npv_usd: run it again with mean_utilization, operating_margin among them" in note
    assert f"(it was made with --no-analyze): run  mcrisk analyze {fleet['folder']}" in _notes(
        sections.drivers(fleet, None)
    )


def test_the_greeks_notes_give_the_command_for_this_run_folder(fleet):
    note = _notes(greeks_section.reverse_stress(fleet)) + _notes(greeks_section.greeks(fleet))
    f = fleet["folder"]
    assert f"mcrisk greeks {f / 'study.yaml'} --out {f} -n 1000 --seed 5 --force" in note
    assert "no reverse_stress.csv or design_point.csv" in note and "no greeks.csv" in note


def test_a_no_stress_run_of_a_study_with_stresses_says_run_without_no_stress(tmp_path):
    study = small_study(scenarios=300)
    study["stress"] = {"cheap": {"market.token_price.initial_usd_per_mtok": 0.5}}
    out = tmp_path / "run"
    args = ["run", str(write_study(tmp_path / "s.yaml", study)), "--out", str(out), "-q"]
    result = runner.invoke(app, [*args, "--no-stress", "--no-monthly", "--no-analyze", "--report"])
    assert result.exit_code == 0, result.output
    notes = " ".join(Page((out / "report.html").read_text()).notes)
    assert "made with --no-stress: run it again without --no-stress to see the study's 1 stress (cheap)" in notes
    assert "add a stress" not in notes.lower()
    assert "made with --no-monthly: run it again without --no-monthly" in notes
    assert f"(it was made with --no-analyze): run  mcrisk analyze {out}" in notes


def test_the_page_renders_the_fleet_with_its_sections(fleet, tmp_path):
    html = render(fleet, lambda fig, name, alt, cap: "")
    ids = Page(html).ids
    assert "portfolio" in ids and "financing" in ids
    assert html.count('class="means"') >= 2

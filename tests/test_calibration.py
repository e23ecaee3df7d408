"""calibration.csv, its terminal table and warning lines, plausibility warnings in `validate` and
`run`, and risk.csv's debt columns (P(min DSCR < 1.2), P(equity NPV < 0)) against the scenarios."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.stats.calibration import calibration_table, classify, portfolio_band, system_band, warning_line
from mcrisk.study import catalog
from mcrisk.study.schema import study_from_dict

from .conftest import small_study

runner = CliRunner()


def _output(result) -> str:
    return result.stdout + (result.stderr or "")


# --------------------------------------------------------------------------- arithmetic


def test_status_and_ratio_on_arrays():
    median = np.array([11.8, 4.0, 1.0, 2.9, 7.91, np.nan, 5.0, 0.0])
    low = np.array([2.9, 2.9, 2.9, 2.9, 2.9, 2.9, np.nan, 2.0])
    high = np.array([7.91, 7.91, 7.91, 7.91, 7.91, 7.91, np.nan, 4.0])
    ratio, status = classify(median, low, high)
    assert list(status) == ["above", "inside", "below", "inside", "inside", "no value", "no band", "below"]
    # the median over the band's nearest edge; 1 inside, NaN without a band or a value
    np.testing.assert_allclose(ratio, [11.8 / 7.91, 1.0, 1.0 / 2.9, 1.0, 1.0, np.nan, np.nan, 0.0])


def test_classify_broadcasts_one_band_over_many_medians():
    ratio, status = classify([1.0, 5.0, 10.0], 2.0, 8.0)
    assert list(status) == ["below", "inside", "above"]
    np.testing.assert_allclose(ratio, [0.5, 1.0, 1.25])


def test_the_warning_line_says_how_far_and_which_way():
    kind = warning_line("hgx-b200", "above", 11.8 / 3.6875, 11.8, 2.8, 3.6875, tokens=True)
    assert kind == (
        "hgx-b200: the study's token economics pay 3.2x what the rental market pays for this GPU at most "
        "(median $11.80 vs $2.80-$3.69 a GPU-hour in the first live year): too kind?"
    )
    harsh = warning_line("h200", "below", 0.4, 0.64, 1.6, 3.5, tokens=True)
    assert harsh.startswith("h200: the study's token economics pay 0.4x what the rental market pays")
    assert "at least" in harsh and harsh.endswith("too harsh?")
    assert "the study's economics pay" in warning_line("gpu", "above", 2.0, 7.0, 1.0, 3.5, tokens=False)
    assert warning_line("x", "inside", 1.0, 3.0, 2.0, 4.0, tokens=True) == ""
    assert warning_line("x", "no band", math.nan, 3.0, math.nan, math.nan, tokens=True) == ""


# --------------------------------------------------------------------------- bands


def _preset_study() -> dict:
    raw = small_study()
    raw["systems"]["rack"]["preset"] = "gb200-nvl72"  # 2 units x 72 GPUs
    return raw


def test_a_preset_maps_to_its_catalog_band_and_a_hand_written_system_has_none():
    st = study_from_dict(_preset_study())
    band = system_band("rack", st.systems["rack"])
    assert band.catalog_system == "gb200-nvl72"
    assert (band.low, band.high) == catalog.rental_band("gb200-nvl72")
    assert band.source.startswith("catalog gb200-nvl72: low = reserved_3y (") and "high = on_demand (" in band.source
    none = system_band("server", st.systems["server"])
    assert none.catalog_system is None and not none.found and "no catalog system" in none.source


def test_a_system_named_as_a_catalog_system_takes_its_band():
    raw = small_study()
    raw["systems"]["hgx-h200"] = raw["systems"].pop("server")
    raw["correlations"] = raw["correlations"][:1]
    st = study_from_dict(raw)
    band = system_band("hgx-h200", st.systems["hgx-h200"])
    assert band.catalog_system == "hgx-h200" and (band.low, band.high) == catalog.rental_band("hgx-h200")


def test_a_catalog_system_without_two_rental_tiers_has_no_band():
    raw = small_study()
    raw["systems"]["server"]["preset"] = "hgx-b300"
    band = system_band("server", study_from_dict(raw).systems["server"])
    assert band.catalog_system == "hgx-b300" and not band.found and "NOT FOUND" in band.source


def test_the_portfolio_band_weights_each_system_by_its_installed_gpus():
    raw = _preset_study()
    raw["systems"]["server"]["preset"] = "hgx-h200"  # 1 unit x 8 GPUs
    st = study_from_dict(raw)
    (rl, rh), (sl, sh) = catalog.rental_band("gb200-nvl72"), catalog.rental_band("hgx-h200")
    band = portfolio_band(st)
    assert band.low == pytest.approx((144 * rl + 8 * sl) / 152) and band.high == pytest.approx(
        (144 * rh + 8 * sh) / 152
    )
    assert not portfolio_band(study_from_dict(_preset_study())).found  # the server has no band


def test_calibration_table_reads_the_summary_and_handles_a_portfolio_row():
    raw = _preset_study()
    raw["systems"]["server"]["preset"] = "hgx-h200"
    st = study_from_dict(raw)
    summary = pd.DataFrame(
        [
            {"system": s, "metric": m, "p5": p50 / 2, "p50": p50, "p95": p50 * 2}
            for s, p50 in (("rack", 20.0), ("server", 2.0), ("portfolio", 18.0))
            for m in ("npv_usd", "first_year_revenue_per_gpu_hour_usd")
        ]
    )
    table = calibration_table(st, summary, ("rack", "server", "portfolio")).set_index("system")
    assert list(table["status"]) == ["above", "inside", "above"]
    assert table.loc["rack", "ratio_to_band"] == pytest.approx(20.0 / catalog.rental_band("gb200-nvl72")[1])
    assert table.loc["rack", "warning"].startswith("rack: the study's token economics pay")
    assert table.loc["server", "warning"] == "" and table.loc["portfolio", "catalog_system"] == ""
    assert "installed-GPU-weighted" in table.loc["portfolio", "band_source"]
    assert calibration_table(st, summary[summary["metric"] == "npv_usd"], ("rack",)) is None


# --------------------------------------------------------------------------- a run


def _debt_study() -> dict:
    raw = _preset_study()
    raw["simulation"]["scenarios"] = 600
    raw["finance"]["debt"] = {"share": 0.6, "annual_rate": 0.09, "tenor_months": 24}
    return raw


@pytest.fixture(scope="module")
def debt_run(tmp_path_factory):
    import mcrisk

    out = tmp_path_factory.mktemp("calib") / "run"
    return mcrisk.run_study(_debt_study(), out=out, analyze=False, stress=False, monthly=False)


def test_a_run_writes_calibration_csv_from_its_summary(debt_run):
    folder = debt_run.folder
    cal = pd.read_csv(folder / "calibration.csv", dtype={"system": str}, keep_default_na=False, na_values=[""])
    assert list(cal["system"]) == ["rack", "server"]
    rack, server = cal.iloc[0], cal.iloc[1]
    assert rack["catalog_system"] == "gb200-nvl72"
    assert (rack["band_low"], rack["band_high"]) == catalog.rental_band("gb200-nvl72")
    assert server["status"] == "no band" and math.isnan(server["band_low"]) and math.isnan(server["ratio_to_band"])
    # the run's own percentiles: the same numbers as summary.csv's
    s = pd.read_csv(folder / "summary.csv").set_index(["system", "metric"])
    for _, row in cal.iterrows():
        for p in ("p5", "p50", "p95"):
            assert row[p] == s.loc[(row["system"], "first_year_revenue_per_gpu_hour_usd"), p]
    ratio, status = classify(rack["p50"], rack["band_low"], rack["band_high"])
    assert rack["status"] == status.item() and rack["ratio_to_band"] == pytest.approx(ratio.item())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["outputs"]["calibration"] == "calibration.csv"
    assert manifest["warnings"] == []  # a plausible study


def test_risk_csv_debt_columns_match_the_scenarios(debt_run):
    folder = debt_run.folder
    risk = pd.read_csv(folder / "risk.csv").set_index("system")
    rows = pq.read_table(folder / "scenarios.parquet", columns=["system", "min_dscr", "equity_npv_usd"]).to_pandas()
    for system, g in rows.groupby("system", observed=True):
        n = len(g)
        for column, hits in (
            ("p_min_dscr_below_1_2", (g["min_dscr"] < 1.2).sum()),
            ("p_equity_loss", (g["equity_npv_usd"] < 0).sum()),
        ):
            p = hits / n
            assert risk.loc[str(system), column] == pytest.approx(p, abs=1e-12), column
            assert risk.loc[str(system), column + "_mcse"] == pytest.approx(math.sqrt(p * (1 - p) / n), abs=1e-12)
    assert 0 < risk["p_min_dscr_below_1_2"].max() < 1  # the study is one where the test means something


def test_the_terminal_and_the_report_show_the_debt_odds(debt_run, capsys):
    from mcrisk.cli.terminal import print_headline
    from mcrisk.report.page import write_report

    print_headline(debt_run)
    shown = capsys.readouterr().out
    assert "P(min DSCR < 1.2)" in shown and "P(equity NPV < 0)" in shown
    page = write_report(debt_run.folder).read_text()
    assert "P(min DSCR &lt; 1.2)" in page and "P(equity NPV &lt; 0)" in page


def test_a_study_without_debt_keeps_risk_csv_as_it_was():
    from mcrisk.engine.plan import TAIL_COUNTS, make_plan

    plain = make_plan(study_from_dict(small_study()), scenarios=10, seed=0, precision="float64", chunk_size=None)
    debt = make_plan(study_from_dict(_debt_study()), scenarios=10, seed=0, precision="float64", chunk_size=None)
    assert plain.tail_counts == TAIL_COUNTS
    assert [n for n, _, _ in debt.tail_counts] == [n for n, _, _ in TAIL_COUNTS] + [
        "min_dscr_below_1_2",
        "equity_npv_below_0",
    ]


# --------------------------------------------------------------------------- the command line


def _slipped_study(tmp_path) -> str:
    raw = _preset_study()
    raw["simulation"]["scenarios"] = 300
    raw["market"]["electricity"]["usd_per_kwh"] = 8  # cents typed as dollars
    raw["systems"]["rack"]["price_multiplier"] = 3.0  # well above the rental band
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def test_validate_prints_plausibility_warnings_and_still_passes(tmp_path):
    result = runner.invoke(app, ["validate", _slipped_study(tmp_path)])
    assert result.exit_code == 0, _output(result)
    assert "warning: market.electricity.usd_per_kwh: mean 8 $/kWh" in result.stderr
    assert "cents typed as dollars?" in result.stderr
    assert "plausibility warning(s) on stderr" in result.stdout


def test_run_prints_warnings_the_calibration_table_and_its_lines(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["run", _slipped_study(tmp_path), "--out", str(out), "--no-stress", "--no-analyze", "--no-monthly"]
    )
    assert result.exit_code == 0, _output(result)
    assert "warning: market.electricity.usd_per_kwh" in result.stderr and "cents typed as dollars?" in result.stderr
    assert "calibration: revenue per installed GPU-hour" in result.stdout
    assert "P(min DSCR" not in result.stdout  # no debt: risk.csv as before
    assert not {"p_min_dscr_below_1_2", "p_equity_loss"} & set(pd.read_csv(out / "risk.csv").columns)
    cal = pd.read_csv(out / "calibration.csv")
    lines = [w for w in cal["warning"] if isinstance(w, str) and w]
    shown = " ".join(result.stdout.split())  # (a line wraps at the terminal's width)
    for line in lines:
        assert f"warning: {' '.join(line.split())}" in shown
    assert any(line.startswith("rack: the study's token economics pay") for line in lines), lines
    manifest = json.loads((out / "manifest.json").read_text())
    assert "market.electricity.usd_per_kwh" in [w["path"] for w in manifest["warnings"]]
    # the report shows the calibration table, its lines and the warnings beside the headline
    from mcrisk.report.page import write_report

    page = write_report(out).read_text()
    assert "Calibration against GPU rental prices" in page and "Plausibility warnings" in page
    assert "market.electricity.usd_per_kwh" in page and "no band" in page

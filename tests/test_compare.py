"""Paired comparisons (known answers on synthetic tables), then `analyze_run` and `mcrisk analyze` on real runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from mcrisk import METRICS, RunFolderError, StudyError, run_study
from mcrisk.cli.app import app
from mcrisk.stats.compare import COLUMNS, paired_comparisons, win_matrix
from mcrisk.stats.sensitivity import COLUMNS as SENSITIVITY_COLUMNS
from mcrisk.workflows.analyze import analyze_run

from .conftest import small_study


def two_systems(n: int, shift: float, noise: float, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A = F + shift + noise e1, B = F + noise e2: a common factor F ~ N(0, 1) both systems share."""
    rng = np.random.default_rng(seed)
    f, e1, e2 = rng.standard_normal((3, n))
    a, b = f + shift + noise * e1, f + noise * e2
    rows = pd.DataFrame(
        {
            "scenario": np.tile(np.arange(n), 2),
            "system": pd.Categorical(np.repeat(["A", "B"], n), categories=["A", "B"]),
            "npv_usd": np.concatenate([a, b]),
        }
    )
    return rows, a, b


def test_pairing_shrinks_the_error_of_a_difference():
    n, noise = 20_000, 0.1
    rows, _, _ = two_systems(n, shift=0.1, noise=noise)
    r = paired_comparisons(rows, ["npv_usd"]).set_index(["system_a", "system_b"]).loc[("A", "B")]
    # paired: sd(A - B) = noise sqrt(2); independent draws: sqrt(Var A + Var B) = sqrt(2 (1 + noise^2))
    assert r.mcse_mean_paired == pytest.approx(noise * np.sqrt(2 / n), rel=0.03)
    assert r.mcse_mean_independent == pytest.approx(np.sqrt(2 * (1 + noise**2) / n), rel=0.03)
    assert r.mcse_mean_paired < r.mcse_mean_independent / 5
    assert r.pairing_gain == pytest.approx((1 + noise**2) / noise**2, rel=0.06)
    # and the paired MCSE is the real error: the mean difference lands within 4 of them of 0.1
    assert abs(r.diff_mean - 0.1) < 4 * r.mcse_mean_paired


def test_p_a_beats_b_and_the_difference_quantiles_match_the_normal_answer():
    n, shift, noise = 20_000, 0.1, 0.1
    rows, a, b = two_systems(n, shift, noise, seed=1)
    c = paired_comparisons(rows, ["npv_usd"])
    assert list(c.columns) == list(COLUMNS) and len(c) == 2  # both ordered pairs
    ab = c.set_index(["system_a", "system_b"]).loc[("A", "B")]
    ba = c.set_index(["system_a", "system_b"]).loc[("B", "A")]
    sd = noise * np.sqrt(2)  # A - B ~ N(shift, 2 noise^2)
    assert abs(ab.p_a_greater - stats.norm.cdf(shift / sd)) < 4 * ab.p_a_greater_mcse
    assert ab.p_a_greater_mcse == pytest.approx(np.sqrt(ab.p_a_greater * (1 - ab.p_a_greater) / n))
    for q, col in ((0.05, "diff_p5"), (0.5, "diff_p50"), (0.95, "diff_p95")):
        assert ab[col] == pytest.approx(stats.norm.ppf(q, shift, sd), abs=0.01)
        assert ab[col] == pytest.approx(np.percentile(a - b, 100 * q))
    assert ab.p_a_greater + ba.p_a_greater == pytest.approx(1.0)
    assert ba.diff_p5 == pytest.approx(-ab.diff_p95) and ba.diff_mean == pytest.approx(-ab.diff_mean)
    wins = win_matrix(c)
    assert wins.loc["A", "B"] == ab.p_a_greater and np.isnan(wins.loc["A", "A"])


def test_non_finite_pairs_are_dropped_and_counted():
    rows, _, _ = two_systems(100, shift=0.0, noise=1.0)
    rows.loc[3, "npv_usd"] = np.inf  # A in scenario 3
    rows.loc[100 + 5, "npv_usd"] = np.nan  # B in scenario 5
    r = paired_comparisons(rows, ["npv_usd"]).iloc[0]
    assert r.n == 98 and r.n_dropped == 2 and np.isfinite(r.diff_mean)


def test_a_repeated_scenario_cannot_be_paired():
    rows, _, _ = two_systems(10, 0.0, 1.0)
    with pytest.raises(ValueError, match="scenario 0 of system 'A' appears more than once"):
        paired_comparisons(pd.concat([rows, rows.iloc[:1]]), ["npv_usd"])


# --------------------------------------------------------------------------- on real run folders


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small run with scenarios and one with --no-scenarios (same compiled programs)."""
    base = tmp_path_factory.mktemp("analyze")
    full = run_study(small_study(scenarios=2000), out=base / "full").folder
    bare = run_study(small_study(scenarios=200), out=base / "bare", write_scenarios=False).folder
    return full, bare


def test_analyze_run_writes_both_tables(runs):
    full, _ = runs
    done = analyze_run(full)
    paths = done.paths
    assert paths == {"sensitivity": full / "sensitivity.csv", "comparison": full / "comparison.csv"}
    assert done.skipped == {} and done.scenarios == 2000
    assert not list(full.glob(".*.tmp*"))  # written atomically, nothing left behind
    sens, comp = pd.read_csv(paths["sensitivity"]), pd.read_csv(paths["comparison"])
    assert list(sens.columns) == list(SENSITIVITY_COLUMNS)
    assert set(sens.system) == {"rack", "server"} and (sens.metric == "npv_usd").all()
    assert not set(sens.input) & set(METRICS)
    # market inputs under every system; the server's fixed speedup is not a driver
    for system in ("rack", "server"):
        assert "market.token_price.initial_usd_per_mtok" in set(sens[sens.system == system].input)
    assert "system.software_speedup.ceiling" not in set(sens[sens.system == "server"].input)
    assert sens.groupby("system").n.max().tolist() == [2000, 2000]
    assert list(comp.columns) == list(COLUMNS)
    assert set(comp.metric) == {"npv_usd", "cost_per_mtok_usd"} and len(comp) == 4
    assert (comp.n + comp.n_dropped == 2000).all()


def test_analyze_run_refuses_a_folder_without_scenarios_or_an_unknown_metric(runs, tmp_path):
    full, bare = runs
    with pytest.raises(RunFolderError, match="--no-scenarios"):
        analyze_run(bare)
    with pytest.raises(RunFolderError, match="no such folder"):
        analyze_run(tmp_path / "nowhere")
    with pytest.raises(StudyError, match="--metric: unknown metric 'npv'; did you mean 'npv_usd'"):
        analyze_run(full, metric="npv")


def test_a_run_that_kept_some_columns_is_analyzed_as_far_as_they_allow(tmp_path):
    """--columns may drop the drawn inputs or the metrics: the run writes the tables it can and
    says why not the others (it wrote none, silently), and `mcrisk analyze` does the same, or
    names the columns kept where the metric asked for is not one of them (a traceback before)."""
    study = small_study(scenarios=600)
    run = run_study(study, out=tmp_path / "two", columns=["npv_usd", "irr"], stress=False)
    outputs = run.manifest["outputs"]
    assert outputs["sensitivity"] is None and outputs["comparison"] == "comparison.csv"
    assert "no sensitivity.csv: the run kept no drawn input" in outputs["analysis_skipped"]
    assert set(pd.read_csv(run.folder / "comparison.csv").metric) == {"npv_usd"}

    cli = lambda *a: CliRunner().invoke(app, ["analyze", str(run.folder), *a], env={"COLUMNS": "200"})  # noqa: E731
    irr = cli("--metric", "irr")
    assert irr.exit_code == 0, irr.output
    assert "no sensitivity.csv: the run kept no drawn input" in irr.output
    assert "P(row > column) in IRR (%/yr)" in irr.output
    assert set(pd.read_csv(run.folder / "comparison.csv").metric) == {"npv_usd", "irr"}
    missing = cli("--metric", "roi_multiple")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "the run kept only the metrics npv_usd, irr (--columns), not 'roi_multiple'" in " ".join(
        missing.output.split()
    )

    bare = run_study(study, out=tmp_path / "one", columns=["irr"], stress=False)
    assert bare.manifest["outputs"]["sensitivity"] is None and bare.manifest["outputs"]["comparison"] is None
    assert "nothing to analyze" in bare.manifest["outputs"]["analysis_skipped"]
    npv = CliRunner().invoke(app, ["analyze", str(bare.folder)])  # NPV by default
    assert npv.exit_code == 2 and "Traceback" not in npv.output
    assert "the run kept only the metrics irr (--columns), not 'npv_usd'" in " ".join(npv.output.split())
    irr = CliRunner().invoke(app, ["analyze", str(bare.folder), "--metric", "irr"], env={"COLUMNS": "200"})
    assert irr.exit_code == 0 and "P(row > column) in IRR (%/yr)" in irr.output, irr.output


def test_mcrisk_analyze_prints_drivers_and_the_win_matrix(runs):
    full, _ = runs
    result = CliRunner().invoke(app, ["analyze", str(full), "--metric", "roi_multiple"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (
        "what drives revenue per $ of capex (x)" in result.output
        and "P(row > column) in revenue per $ of capex (x), scenario by scenario" in result.output
    )
    sens = pd.read_csv(full / "sensitivity.csv")
    assert (sens.metric == "roi_multiple").all()
    assert sens[sens["rank"] == 1].label.iloc[0] in result.output  # the input in words, with its unit
    assert set(pd.read_csv(full / "comparison.csv").metric) == {"npv_usd", "cost_per_mtok_usd", "roi_multiple"}


def test_mcrisk_analyze_on_a_no_scenarios_run_exits_2_without_a_traceback(runs):
    _, bare = runs
    result = CliRunner().invoke(app, ["analyze", str(bare)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "--no-scenarios" in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)

"""`mcrisk claims`: each published claim reproduced at its point to 4 significant figures by hand
arithmetic, then put under uncertainty with P(claim holds), its MCSE and P5/P50/P95.

One run of every shipped claim (2,000 scenarios each) is shared by the tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.study import catalog
from mcrisk.study.schema import study_from_dict
from mcrisk.workflows import claims
from mcrisk.workflows.claims import ClaimError, load_claim, point_metrics, studies

runner = CliRunner()
N = 2000
MONTH_S = 2_629_800  # seconds in a month of 730.5 h
HOURS_4Y = 4 * 8766

# The point value of each check, by hand from its stated assumptions (MODEL.md's equations).
B200_MONTHLY_OPEX = 14.3 * 1.3 * 730.5 * 0.08 + 14.3 * 190  # energy at PUE 1.3 and $0.08/kWh, plus colocation
B200_MTOK_PER_MONTH = 8 * 30_000 * MONTH_S / 1e6
GB300_COST = 2.652 / (6000 * 3600) * 1e6  # NVIDIA's formula: $/GPU-hr / (tok/s/GPU x 3600) x 1e6
H200_COST = 1.41 / (90 * 3600) * 1e6
EXPECTED = {
    "gb200-roi-15x": 72 * 10_000 * 36 * MONTH_S / 1e6 * 1.10 / 5e6,  # 14.996 (MODEL.md check 1)
    "b200-two-cents": (400_000 / 48 + B200_MONTHLY_OPEX) / B200_MTOK_PER_MONTH,  # 0.01923 (MODEL.md check 2)
    "trtllm-5x": 30_000 / 6_000,  # same server and costs: the throughput ratio
    "gb300-12-cents": GB300_COST,  # 0.1228
    "h200-420-cents": H200_COST,  # 4.352: the published $4.20 is not reproduced
    "blackwell-35x": H200_COST / GB300_COST,  # 35.44
}
NOT_REPRODUCED = {"h200-420-cents"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims")
    result = runner.invoke(app, ["claims", "--out", str(out), "--scenarios", str(N)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stdout + (result.stderr or "")
    return out, result.stdout, pd.read_csv(out / "claims.csv").set_index("check")


def test_every_shipped_claim_is_run(run):
    _, _, table = run
    assert sorted(table.index) == sorted(EXPECTED)
    assert sorted(set(table["claim"])) == claims.claim_names()
    assert list(table.columns) == [c for c in claims.COLUMNS if c != "check"]


def test_point_claims_reproduce_to_4_significant_figures(run):
    _, _, table = run
    for check, expected in EXPECTED.items():
        got = table.loc[check, "point_value"]
        assert f"{got:.4g}" == f"{expected:.4g}", check
        assert got == pytest.approx(expected, rel=1e-9), check
    assert round(table.loc["gb200-roi-15x", "point_value"], 3) == 14.996
    assert round(table.loc["b200-two-cents", "point_value"], 5) == 0.01923


def test_each_point_is_checked_against_the_published_figure(run):
    _, stdout, table = run
    for check in EXPECTED:
        assert bool(table.loc[check, "reproduced"]) == (check not in NOT_REPRODUCED), check
    assert "$4.20 needs 93.3 tok/s/GPU" in table.loc["h200-420-cents", "reproduction"]
    assert 1.41 / (4.20e-6 * 3600) == pytest.approx(93.25, abs=0.01)
    assert "h200-420-cents: Not reproduced from the published inputs" in " ".join(stdout.split())


def test_probabilities_come_with_their_mcse_and_spread(run):
    _, stdout, table = run
    for check, r in table.iterrows():
        assert r["scenarios"] == N and r["n_nan"] == 0
        assert 0 <= r["p_holds"] <= 1, check
        assert r["p_holds_mcse"] == pytest.approx(math.sqrt(r["p_holds"] * (1 - r["p_holds"]) / N)), check
        assert r["p5"] <= r["p50"] <= r["p95"], check
    assert 0.5 < table.loc["blackwell-35x", "p_holds"] < 1  # an uncertain claim, not a foregone one
    # the gain reached by month 2 with a ceiling drawn around 5x: the claim holds in some scenarios, not most
    assert 0.05 < table.loc["trtllm-5x", "p_holds"] < 0.5
    assert table.loc["trtllm-5x", "p5"] < 5 < table.loc["trtllm-5x", "p95"]
    for check in EXPECTED:
        assert check in stdout
    assert "P(holds) ± MCSE" in stdout


def test_probabilities_recount_from_the_run_folders(run):
    out, _, table = run
    rows = pd.read_parquet(
        out / "blackwell-vs-hopper" / "scenarios.parquet", columns=["scenario", "system", "cost_per_mtok_usd"]
    )
    wide = rows.pivot(index="scenario", columns="system", values="cost_per_mtok_usd")
    ratio = wide["h200"].to_numpy(np.float64) / wide["gb300"].to_numpy(np.float64)
    assert table.loc["blackwell-35x", "p_holds"] == pytest.approx(np.mean(ratio >= 35))
    assert table.loc["blackwell-35x", "p50"] == pytest.approx(np.quantile(ratio, 0.5))
    risk = pd.read_csv(out / "gb200-roi" / "risk.csv").set_index("system")  # the engine's own count agrees
    assert table.loc["gb200-roi-15x", "p_holds"] == pytest.approx(risk.loc["gb200", "p_roi_multiple_ge_15"])


def test_every_uncertain_input_names_its_source(run):
    out, _, _ = run
    inputs = pd.read_csv(out / "inputs.csv")
    uncertain = inputs[inputs["study"] == "uncertain"].set_index(["claim", "path"])["source"]
    assert uncertain[("gb200-roi", "market.demand.utilization")].startswith("prior fleet-utilization: DeepSeek")
    assert uncertain[("gb200-roi", "market.token_price.initial_usd_per_mtok")].startswith(
        "workload deepseek-r1-8k1k price [0, 100) tok/s/user"
    )
    assert uncertain[("blackwell-vs-hopper", "systems.h200.capex_usd")].startswith(
        "TCO hgx-h200: costh $1.41 to costn $1.74"
    )
    assert uncertain[("b200-two-cents", "systems.b200.capex_usd")].startswith("preset hgx-b200: ")
    assert "prior production-efficiency" in (out / "gb200-roi" / "study.yaml").read_text()


# --------------------------------------------------------------------------- claim files


@pytest.mark.parametrize("name", claims.claim_names())
def test_shipped_claim_files_are_complete(name):
    name, claim = load_claim(name)
    point, uncertain, _, _ = studies(name, claim)
    point_study, uncertain_study = study_from_dict(point), study_from_dict(uncertain)
    values = point_metrics(point_study)  # raises if any point input is uncertain
    assert set(values) == set(point_study.systems)
    assert any(not i.dist.is_fixed for i in uncertain_study.inputs())
    for check in claim.checks:
        assert set(check.systems) <= set(point_study.systems) & set(uncertain_study.systems)


def test_tco_capex_books_the_tco_over_the_life():
    value, line = claims._catalog_value(
        {"tco_capex": "hgx-h200", "basis": "costh", "years": 4}, "systems.h200.capex_usd"
    )
    assert value == pytest.approx(1.41 * 8 * HOURS_4Y)
    assert line.startswith("TCO hgx-h200: costh $1.41/GPU-hr x 8 GPUs x 4 yr x 8766 h; SemiAnalysisAI/InferenceX-app")
    value, _ = claims._catalog_value({"tco_capex": "gb300-nvl72", "basis": ["costh", "costn"]}, "x")
    t = catalog.get_entry("gb300-nvl72").tco_usd_per_gpu_hour
    assert value == {
        "dist": "uniform",
        "low": pytest.approx(t.costh * 72 * HOURS_4Y),
        "high": pytest.approx(t.costn * 72 * HOURS_4Y),
    }


def test_catalog_values_in_claim_files_are_checked():
    with pytest.raises(ClaimError, match="prior 'pue' is a value for facility.pue, not for market.demand.utilization"):
        claims._resolve({"market": {"demand": {"utilization": {"prior": "pue"}}}}, "", {})
    with pytest.raises(
        ClaimError, match=r"systems.a.efficiency: unknown catalog prior 'efficiency'.*production-efficiency"
    ):
        claims._resolve({"systems": {"a": {"efficiency": {"prior": "efficiency"}}}}, "", {})
    with pytest.raises(ClaimError, match="workload_price: ...} takes interactivity_tok_s_user, workload_price, got"):
        claims._resolve({"p": {"workload_price": "gpt-oss-120b", "interactivity": 50}}, "", {})
    assert claims._resolve({"systems": {"a": {"efficiency": {"prior": "production-efficiency"}}}}, "", {}) == {
        "systems": {"a": {"efficiency": catalog.prior_value("production-efficiency")[1]}}
    }


def test_unknown_claim_exits_2_with_the_shipped_ones(tmp_path):
    result = runner.invoke(app, ["claims", "nope", "--out", str(tmp_path / "c")])
    text = result.stdout + (result.stderr or "")
    assert result.exit_code == 2 and "Traceback" not in text
    for name in claims.claim_names():
        assert name in text
    assert not (tmp_path / "c").exists()


def test_library_does_not_import_the_cli_stack():
    text = Path(claims.__file__).read_text()
    assert "typer" not in text and "rich" not in text

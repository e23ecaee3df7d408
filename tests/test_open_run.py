"""`mcrisk.open_run`: a finished run folder read back in a notebook: its tables, manifest, study,
scenario rows (only the parts its manifest lists), summary draws, certainty, and a short repr."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import mcrisk
from mcrisk.errors import RunFolderError
from mcrisk.io.integrity import digest
from mcrisk.study.columns import column_name, study_path
from mcrisk.workflows import display

from .conftest import small_study

DOTTED = "market.token_price.initial_usd_per_mtok"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    study = small_study(scenarios=600)
    study["stress"] = {"hot": {"facility.pue": 1.6}}
    return mcrisk.run_study(study, out=tmp_path_factory.mktemp("open") / "run")


@pytest.fixture(scope="module")
def run(result):
    return mcrisk.open_run(result.folder)


@pytest.fixture(scope="module")
def rows(result) -> pd.DataFrame:
    """The scenario rows as pyarrow reads the folder itself."""
    return pq.read_table(result.folder / "scenarios.parquet").to_pandas()


def _copy(run, dest):
    shutil.copytree(run.folder, dest)
    return dest


def test_tables_manifest_and_study_are_the_runs(result, run):
    pd.testing.assert_frame_equal(run.summary, result.summary, check_dtype=False, check_categorical=False)
    pd.testing.assert_frame_equal(run.risk, result.risk, check_dtype=False, check_categorical=False)
    pd.testing.assert_frame_equal(run.breakeven, result.breakeven, check_dtype=False, check_categorical=False)
    assert run.manifest == json.loads((result.folder / "manifest.json").read_text())
    assert run.systems == ["rack", "server"]
    assert run.study.digest() == run.manifest["study_sha256"]
    for name in ("summary", "risk", "breakeven", "calibration", "stress", "sensitivity", "comparison", "monthly"):
        assert name in run.tables
    assert list(run.stress["stress"].unique()) == ["base", "hot"]
    assert set(run.monthly["quantity"]) == {"cumulative_cash_flow_usd", "revenue_usd", "utilization"}
    assert run.greeks is None  # (not written without --greeks)
    with pytest.raises(ValueError, match=r"table\(name='sumary'\).*did you mean 'summary'"):
        run.table("sumary")
    # a copy each time: a notebook that edits a table leaves the run's alone
    edited = run.summary
    edited["mean"] = 0.0
    assert (run.summary["mean"] != 0).any()
    assert run.verify() == []


def test_scenarios_reads_the_rows_asked_for(run, rows):
    every = run.scenarios()
    assert list(every.columns) == list(rows.columns) and len(every) == 600 * 2
    assert (every["scenario"].to_numpy() == rows["scenario"].to_numpy()).all()
    rack = run.scenarios(["npv_usd", DOTTED], systems="rack")
    assert list(rack.columns) == ["scenario", "system", "npv_usd", DOTTED]
    want = rows[rows["system"] == "rack"]
    np.testing.assert_array_equal(rack["npv_usd"].to_numpy(), want["npv_usd"].to_numpy())
    np.testing.assert_array_equal(rack["scenario"].to_numpy(), np.arange(600))
    losses = run.scenarios(["npv_usd"], filter=pc.field("npv_usd") < 0)
    assert len(losses) == int((rows["npv_usd"] < 0).sum()) and (losses["npv_usd"] < 0).all()
    assert list(run.scenarios("npv_usd").columns) == ["scenario", "system", "npv_usd"]  # one column by name
    table = run.scenarios(["irr"], systems=["server"], as_arrow=True)
    assert isinstance(table, pa.Table) and table.num_rows == 600
    with pytest.raises(
        ValueError, match="columns: the scenario rows have no column 'npv_usdd'.*did you mean 'npv_usd'"
    ):
        run.scenarios(["npv_usdd"])
    with pytest.raises(ValueError, match="systems: the run has no system 'gpu'; it has rack, server"):
        run.scenarios(["npv_usd"], systems="gpu")


def test_a_study_path_finds_its_column_under_either_spelling(run, rows, tmp_path):
    """The Parquet columns are named with double underscores (SQL-friendly); a folder written
    before that has dots. A column asked for by its study path is found either way and comes back
    under the name asked for."""
    sql = column_name(DOTTED)
    assert sql in run.columns() and DOTTED not in run.columns()
    want = rows[rows["system"] == "rack"]
    got = run.scenarios([DOTTED, "system.capex_usd"], systems="rack")
    assert list(got.columns) == ["scenario", "system", DOTTED, "system.capex_usd"]
    np.testing.assert_array_equal(got[DOTTED].to_numpy(), want[sql].to_numpy())
    by_sql = run.scenarios([sql], systems="rack")
    np.testing.assert_array_equal(by_sql[sql].to_numpy(), want[sql].to_numpy())
    # a folder whose files name the columns by their dotted paths
    other = _copy(run, tmp_path / "dotted")
    parts = other / "scenarios.parquet"
    manifest = json.loads((other / "manifest.json").read_text())
    for name in manifest["parts"]:
        table = pq.read_table(parts / name)
        pq.write_table(table.rename_columns([study_path(c) for c in table.column_names]), parts / name)
        size, sha = digest(parts / name)
        manifest["parts"][name] |= {"bytes": size, "sha256": sha}
    (other / "manifest.json").write_text(json.dumps(manifest))
    dotted = mcrisk.open_run(other)
    assert DOTTED in dotted.columns()
    for asked in (DOTTED, sql):
        got = dotted.scenarios([asked], systems="rack")
        np.testing.assert_array_equal(got[asked].to_numpy(), want[sql].to_numpy())


def test_only_the_parts_the_manifest_lists_are_read(run, tmp_path):
    other = _copy(run, tmp_path / "extra")
    part = next((other / "scenarios.parquet").iterdir())
    shutil.copy(part, part.with_name("part-000099-000.parquet"))  # a part no run wrote
    opened = mcrisk.open_run(other)  # (the tables are still there to read)
    with pytest.raises(RunFolderError, match="holds part.s. it did not write: part-000099-000.parquet"):
        opened.scenarios(["npv_usd"])


def test_cdf_is_the_share_of_rows_at_or_below_x(run, rows):
    rack = rows[rows["system"] == "rack"]["npv_usd"].to_numpy(np.float64)
    x = float(np.median(rack))
    c = run.cdf("npv_usd", x, system="rack")
    p = np.count_nonzero(rack <= x) / len(rack)
    assert c.p == p and c.n == 600 and math.isclose(c.mcse, math.sqrt(p * (1 - p) / 600), rel_tol=1e-12)
    every = run.cdf("npv_usd", 0)
    assert list(every["system"]) == ["rack", "server"]
    for system, got in zip(every["system"], every["p"]):
        v = rows[rows["system"] == system]["npv_usd"].to_numpy(np.float64)
        assert got == np.count_nonzero(v <= 0) / len(v)
    # a value never reached and one always exceeded
    assert run.cdf("npv_usd", -1e30, system="rack").p == 0.0 and run.cdf("npv_usd", 1e30, system="rack").p == 1.0
    with pytest.raises(ValueError, match="x: must be a number"):
        run.cdf("npv_usd", float("nan"), system="rack")


def test_idata_opens_the_summary_draws(run):
    idata = run.idata
    group = idata["scenario_draws"]  # (an InferenceData's group, or a DataTree's node)
    assert "npv_usd" in group and DOTTED in group
    assert dict(group["npv_usd"].sizes) == {"chain": 4, "draw": 150, "system": 2}


def test_repr_is_short_and_html_is_escaped(result, run, tmp_path):
    text = repr(run)
    assert len(text.splitlines()) <= 10 and len(text) < 600, text
    p50 = result.summary.set_index(["system", "metric"]).loc[("rack", "npv_usd"), "p50"]
    assert "'small'" in text and "600 scenarios" in text and display.money(p50) in text and str(run.folder) in text
    short = repr(result)
    assert short.replace("mcrisk.RunResult", "mcrisk.Run") == text  # the same glance, named by its class
    assert "<table>" in result._repr_html_()
    odd = mcrisk.open_run(_copy(run, tmp_path / "a<b>&c"))
    page = odd._repr_html_()
    assert "a&lt;b&gt;&amp;c" in page and "<b>" not in page
    g = display.Glance("x", "<script>", 1, 1, tmp_path, tuple((f"s{i}", 1e6, 0.5) for i in range(9)))
    assert "&lt;script&gt;" in display.to_html(g) and "<script>" not in display.to_html(g)
    assert len(display.text(g).splitlines()) == 10 and "3 more system(s)" in display.text(g)


def test_a_folder_that_is_not_a_finished_run_is_named(run, tmp_path):
    with pytest.raises(RunFolderError, match="no such folder"):
        mcrisk.open_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match=r"'.*empty' is not a run folder: it has no manifest.json"):
        mcrisk.open_run(tmp_path / "empty")
    (tmp_path / ".gone.partial").mkdir()
    with pytest.raises(RunFolderError, match="interrupted.*mcrisk run --resume .*gone"):
        mcrisk.open_run(tmp_path / "gone")
    with pytest.raises(RunFolderError, match="partial folder, not a finished run"):
        mcrisk.open_run(tmp_path / ".gone.partial")
    damaged = _copy(run, tmp_path / "damaged")
    (damaged / "summary.csv").write_bytes(b"\xff\xfe not a table")
    with pytest.raises(RunFolderError, match="summary.csv is damaged"):
        mcrisk.open_run(damaged)
    bare = _copy(run, tmp_path / "bare")  # a run that kept no rows
    shutil.rmtree(bare / "scenarios.parquet")
    with pytest.raises(RunFolderError, match="kept no scenario rows .*write_scenarios=False"):
        mcrisk.open_run(bare).scenarios()


def test_reading_tables_and_rows_imports_no_jax(run):
    code = textwrap.dedent(
        f"""
        import sys
        import mcrisk
        run = mcrisk.open_run({str(run.folder)!r})
        repr(run), run.summary, run.scenarios(["npv_usd"]), run.cdf("npv_usd", 0)
        assert "jax" not in sys.modules, "jax was imported"
        run.idata  # (ArviZ 1.x imports JAX itself where it is installed)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

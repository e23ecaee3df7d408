"""The data a run leaves for other tools: Parquet column names that SQL takes unquoted (the
dotted path in each field's metadata), money in float64, `mcrisk query` (DuckDB) and
`mcrisk export --xlsx` (openpyxl)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import typing

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.model.metrics import METRICS
from mcrisk.study.columns import PATH_KEY, column_name, study_path
from mcrisk.study.distributions import DistBase
from mcrisk.study.schema import Study
from mcrisk.workflows.run import run_study

from .conftest import small_study

runner = CliRunner()
IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")  # a plain SQL identifier with no double underscore


def _field_names(model: type[BaseModel], seen: set) -> set[str]:
    """Every field name of a pydantic model and of the models its fields hold, recursively, up to
    the distributions (an input's path ends where its value, a number or a distribution, is)."""
    if model in seen or issubclass(model, DistBase):
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for f in model.model_fields.values():
        todo = [f.annotation]
        while todo:
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                names |= _field_names(t, seen)
            todo += list(typing.get_args(t))
    return names


def test_every_study_path_part_makes_a_column_name_that_maps_back():
    """The mapping runs both ways only if no part of a path starts or ends with an underscore or
    holds two in a row: true of every field a study has (and so of every input's path)."""
    bad = sorted(n for n in _field_names(Study, set()) if not IDENTIFIER.fullmatch(n))
    assert not bad
    for path in ("market.token_price.initial_usd_per_mtok", "system.software_speedup.ceiling", "npv_usd"):
        name = column_name(path)
        assert re.fullmatch(r"[a-z0-9_]+", name) and study_path(name) == path
    assert column_name("facility.pue") == "facility__pue" and study_path("npv_usd") == "npv_usd"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_study(small_study(scenarios=2000), out=tmp_path_factory.mktemp("data") / "run", stress=False)


def test_rows_have_sql_names_the_path_in_metadata_and_money_in_float64(run):
    schema = pq.read_schema(next((run.folder / "scenarios.parquet").glob("part-*.parquet")))
    assert not [n for n in schema.names if not re.fullmatch(r"[a-z][a-z0-9_]*", n)]
    inputs = {f.name: f.metadata[PATH_KEY.encode()].decode() for f in schema if f.metadata}
    assert inputs["market__token_price__initial_usd_per_mtok"] == "market.token_price.initial_usd_per_mtok"
    assert inputs["system__capex_usd"] == "system.capex_usd" and inputs["system__units"] == "system.units"
    assert all(study_path(name) == path for name, path in inputs.items())
    types = {f.name: str(f.type) for f in schema}
    # a float32 run: every amount of dollars in float64; rates, the other metrics and the drawn inputs in float32
    assert types["npv_usd"] == types["capex_usd"] == types["ebitda_usd"] == "double"
    assert types["irr"] == types["tokens"] == types["cost_per_mtok_usd"] == types["revenue_per_gpu_hour_usd"] == "float"
    assert types["facility__pue"] == types["system__capex_usd"] == "float"
    assert sorted(n for n, t in types.items() if t == "double" and n in METRICS) == sorted(
        m for m in METRICS if m.endswith("_usd") and "_per_" not in m
    )
    rows = pd.read_parquet(run.folder / "scenarios.parquet")
    npv = rows["npv_usd"].to_numpy()
    assert (npv.astype(np.float32).astype(np.float64) != npv).mean() > 0.9  # finer than float32 could hold
    # the tables keep naming the inputs by their dotted paths
    drivers = pd.read_csv(run.folder / "sensitivity.csv")
    assert "market.token_price.initial_usd_per_mtok" in set(drivers["input"])


def test_columns_may_be_named_by_path_or_by_column(tmp_path):
    kept = ["npv_usd", "facility.pue", "market__demand__utilization"]
    res = run_study(small_study(scenarios=300), out=tmp_path / "r", columns=kept, stress=False, monthly=False)
    names = pq.read_schema(next((res.folder / "scenarios.parquet").glob("part-*.parquet"))).names
    assert names == ["scenario", "system", "npv_usd", "market__demand__utilization", "facility__pue"]


def test_the_issues_duckdb_query_works_as_written(run):
    duckdb = pytest.importorskip("duckdb")
    glob = f"{run.folder}/scenarios.parquet/*.parquet"
    got = sorted(duckdb.sql(f"select system, avg(npv_usd) from '{glob}' group by 1").fetchall())  # (as in issue 26)
    rows = pd.read_parquet(run.folder / "scenarios.parquet")
    want = rows.groupby("system", observed=True)["npv_usd"].mean().sort_index()
    assert [g[0] for g in got] == list(want.index)
    np.testing.assert_allclose([g[1] for g in got], want.to_numpy(), rtol=1e-12)
    # a drawn input, unquoted
    ((p0,),) = duckdb.sql(f"select avg(market__token_price__initial_usd_per_mtok) from '{glob}'").fetchall()
    assert p0 == pytest.approx(rows["market__token_price__initial_usd_per_mtok"].astype(float).mean(), rel=1e-12)


def test_mcrisk_query_prints_a_table_csv_and_json(run):
    pytest.importorskip("duckdb")
    sql = "select system, avg(npv_usd) as npv, count(*) as n from scenarios group by 1 order by 1"
    table = runner.invoke(app, ["query", str(run.folder), sql])
    assert table.exit_code == 0, table.output
    assert "rack" in table.output and "server" in table.output
    csv = runner.invoke(app, ["query", str(run.folder), sql, "--csv"])
    got = pd.read_csv(__import__("io").StringIO(csv.output))
    rows = pd.read_parquet(run.folder / "scenarios.parquet")
    want = rows.groupby("system", observed=True)["npv_usd"].mean()
    assert list(got["system"]) == ["rack", "server"] and list(got["n"]) == [2000, 2000]
    np.testing.assert_allclose(got["npv"], want.loc[["rack", "server"]].to_numpy(), rtol=1e-12)
    # the CSV tables are views, their infinities numbers (JSON: null)
    out = runner.invoke(
        app, ["query", str(run.folder), "select system, max from summary where metric = 'irr'", "--json"]
    )
    records = json.loads(out.output)
    summary = pd.read_csv(run.folder / "summary.csv").set_index(["system", "metric"])
    for r in records:
        x = summary.loc[(r["system"], "irr"), "max"]
        assert r["max"] == (x if np.isfinite(x) else None)
    inf = runner.invoke(app, ["query", str(run.folder), "select count(*) from summary where max = 'inf'::double"])
    assert inf.exit_code == 0 and str(int(np.isinf(summary["max"]).sum())) in inf.output


def test_mcrisk_query_reads_only_the_listed_parts_and_says_what_is_wrong(run, tmp_path):
    pytest.importorskip("duckdb")
    bad = runner.invoke(app, ["query", str(run.folder), "selec 1"])
    assert bad.exit_code == 2 and "syntax error" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    missing = runner.invoke(app, ["query", str(run.folder), "select * from greeks"])
    assert missing.exit_code == 2 and "the run's tables: " in missing.output and "scenarios" in missing.output
    copy = tmp_path / "copy"
    shutil.copytree(run.folder, copy)
    part = next((copy / "scenarios.parquet").glob("part-*.parquet"))
    shutil.copy(part, part.with_name("part-000099-000.parquet"))  # a part the manifest does not list
    refused = runner.invoke(app, ["query", str(copy), "select count(*) from scenarios"])
    assert refused.exit_code == 2 and "manifest" in refused.output


def test_the_commands_say_what_to_install_without_their_extra(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    q = runner.invoke(app, ["query", str(run.folder), "select 1"])
    assert q.exit_code == 2 and "mcrisk[query]" in q.output and "Traceback" not in q.output
    x = runner.invoke(app, ["export", str(run.folder), "--xlsx", "-o", str(tmp_path / "t.xlsx")])
    assert x.exit_code == 2 and "mcrisk[xlsx]" in x.output and not (tmp_path / "t.xlsx").exists()


def test_export_xlsx_writes_a_sheet_per_table_and_infinities_as_text(run, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    out = tmp_path / "tables.xlsx"
    res = runner.invoke(app, ["export", str(run.folder), "--xlsx", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert not [p for p in tmp_path.iterdir() if p.name != "tables.xlsx"]  # (written under a temporary name)
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == [
        "about",
        "summary",
        "risk",
        "calibration",
        "breakeven",
        "sensitivity",
        "comparison",
        "monthly",
    ]
    about = {r[0]: r[1] for r in wb["about"].iter_rows(values_only=True) if r[0]}
    assert about["scenarios"] == 2000 and about["seed"] == 3 and about["study"] == "small"
    assert "inf or -inf" in about["cells"]

    def sheet(name):
        values = list(wb[name].iter_rows(values_only=True))
        return pd.DataFrame(values[1:], columns=values[0])

    summary, csv = sheet("summary"), pd.read_csv(run.folder / "summary.csv")
    assert list(summary.columns[:3]) == ["system", "metric", "unit"]
    npv = summary[(summary.system == "rack") & (summary.metric == "npv_usd")].iloc[0]
    want = csv[(csv.system == "rack") & (csv.metric == "npv_usd")].iloc[0]
    assert npv["unit"] == "USD"  # (openpyxl writes 16 significant digits; Excel shows 15)
    assert npv["mean"] == pytest.approx(want["mean"], rel=1e-15) and npv["p5"] == pytest.approx(want["p5"], rel=1e-15)
    risk = sheet("risk").set_index("system")
    assert risk.loc["server", "median_payback_months"] == "inf"  # no payback within the horizon in most scenarios
    header, *cells = wb["summary"].iter_rows(values_only=True)
    irr = dict(zip(header, next(r for r in cells if r[:2] == ("rack", "irr"))))
    assert irr["max"] == "inf" and irr["mcse_mean"] is None  # an infinite IRR; no MCSE of a mean that is not finite
    assert runner.invoke(app, ["export", str(run.folder)]).exit_code == 2  # (no format given: it says to choose --xlsx)

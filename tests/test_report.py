"""The report page: every section present, images that decode, numbers from the run, notes for what is missing."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.errors import RunFolderError
from mcrisk.report import sections
from mcrisk.report.data import load_run, scenario_sample
from mcrisk.report.page import CONDITIONAL, FIGURES, SECTIONS, write_report
from mcrisk.stats import formats as ft
from mcrisk.workflows.analyze import analyze_run

from .conftest import small_study, write_study

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
OPTIONAL = (
    "sensitivity.csv",
    "comparison.csv",
    "stress.csv",
    "breakeven.csv",
    "monthly.parquet",
    "scenarios.parquet",
    "claims.csv",
)


class Page(HTMLParser):
    """The ids, images and notes of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.notes, self._in_note = [], [], [], False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a)
        self._in_note = tag == "p" and a.get("class") == "note"

    def handle_data(self, data):
        if self._in_note:
            self.notes.append(data)
            self._in_note = False


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def synthetic_outputs(folder: Path, systems: list[str], months: int) -> None:
    """The decision-analytics files in the formats of docs/outputs.md, where the run did not write them."""
    summary = pd.read_csv(folder / "summary.csv").set_index(["system", "metric"])
    qs = ("p5", "p10", "p25", "p50", "p75", "p90", "p95")
    z = dict(zip(qs, (-1.645, -1.2816, -0.6745, 0.0, 0.6745, 1.2816, 1.645)))
    if not (folder / "monthly.parquet").exists():
        rows = []
        for s in systems:
            capex = summary.loc[(s, "capex_usd"), "mean"]
            for t in range(1, months + 1):
                mid, sd = -capex + capex * 0.09 * t, capex * 0.02 * np.sqrt(t)
                rows.append(
                    {
                        "system": s,
                        "quantity": "cumulative_cash_flow_usd",
                        "month": t,
                        "n": 2000,
                        "mean": mid,
                        **{q: mid + z[q] * sd for q in qs},
                    }
                )
                rows.append(
                    {
                        "system": s,
                        "quantity": "utilization",
                        "month": t,
                        "n": 2000,
                        "mean": 0.6,
                        **{q: 0.6 + 0.1 * z[q] for q in qs},
                    }
                )
        pd.DataFrame(rows).to_parquet(folder / "monthly.parquet")
    if not (folder / "breakeven.csv").exists():
        be = [
            {
                "system": s,
                "quantity": q,
                **{f"breakeven_{k}": v * (1 + z[k] / 5) for k in ("p5", "p25", "p50", "p75", "p95")},
                "breakeven_mean": v,
                **{f"market_{k}": m * (1 + z[k] / 5) for k in ("p5", "p25", "p50", "p75", "p95")},
                "p_market_clears": 0.6,
                "p_market_clears_mcse": 0.01,
            }
            for s in systems
            for q, v, m in (("initial_token_price_usd_per_mtok", 0.9, 1.1), ("mean_utilization", 0.5, 0.6))
        ]
        pd.DataFrame(be).to_csv(folder / "breakeven.csv", index=False)
    stress = []
    for name, overrides in (("base", ""), ("cheap tokens", "market.token_price.initial_usd_per_mtok=0.5 <&>")):
        for s in systems:
            g = lambda m, q, s=s, k=(0.5 if name != "base" else 1): summary.loc[(s, m), q] * k  # noqa: E731
            stress.append(
                {
                    "stress": name,
                    "system": s,
                    "overrides": overrides,
                    "npv_usd_mean": g("npv_usd", "mean"),
                    "npv_usd_p5": g("npv_usd", "p5"),
                    "npv_usd_p50": g("npv_usd", "p50"),
                    "npv_usd_p95": g("npv_usd", "p95"),
                    "p_loss": 0.3,
                    "cvar95_usd": 1e6,
                    "roi_multiple_p5": g("roi_multiple", "p5"),
                    "roi_multiple_p50": g("roi_multiple", "p50"),
                    "irr_p50": 0.2,
                    "payback_months_p50": 14.0,
                    "cost_per_mtok_usd_p50": g("cost_per_mtok_usd", "p50"),
                    "operating_margin_p50": 0.4,
                    "npv_usd_p50_change": g("npv_usd", "p50") - summary.loc[(s, "npv_usd"), "p50"],
                }
            )
    pd.DataFrame(stress).to_csv(folder / "stress.csv", index=False)
    claims = {
        "claim": "toy",
        "check": "toy-roi",
        "text": "a rack returns 15x <b>",
        "source": "vendor",
        "date": "2025",
        "tag": "V",
        "quantity": f"roi_multiple of {systems[0]}",
        "holds_if": ">= 15",
        "published": 15.0,
        "point_value": 14.996,
        "reproduced": True,
        "reproduction": "",
        "scenarios": 2000,
        "p_holds": 0.01,
        "p_holds_mcse": 0.002,
        "p5": 0.8,
        "p50": 1.6,
        "p95": 3.3,
        "n_nan": 0,
        "uncertainty": "",
        "run_folder": str(folder),
    }
    pd.DataFrame([claims]).to_csv(folder / "claims.csv", index=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real small run through `mcrisk run --report`, then its analysis and the other optional files."""
    tmp = tmp_path_factory.mktemp("report")
    study = small_study(scenarios=2000)
    study["description"] = "A <test> study & its description."
    out = tmp / "run"
    result = runner.invoke(
        app, ["run", str(write_study(tmp / "study.yaml", study)), "--out", str(out), "--report", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()  # --report wrote a page before the optional files existed
    analyze_run(out, n_boot=20)
    synthetic_outputs(out, ["rack", "server"], study["simulation"]["horizon_months"])
    return out


@pytest.fixture(scope="module")
def page(run_dir) -> tuple[Page, str]:
    """The page `mcrisk report RUN_DIR` writes once every optional file is there."""
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    assert not list(run_dir.glob(".report.html*"))  # the temporary file was renamed into place
    text = (run_dir / "report.html").read_text()
    return Page(text), text


def test_every_section_is_present_with_every_figure(run_dir, page):
    parsed, _ = page
    assert [sid for sid, _ in SECTIONS if sid not in parsed.ids and sid not in CONDITIONAL] == []
    assert len(parsed.images) == len(FIGURES)
    for img in parsed.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,") and img.get("alt")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        w, h = png_size(data)
        assert 300 < w <= 1200 and 100 < h < 1600
        assert len(data) < 400_000  # modest: the page stays small enough to mail
    saved = {p.stem: p.read_bytes() for p in (run_dir / "figures").glob("*.png")}
    assert sorted(saved) == sorted(FIGURES)
    embedded = {base64.b64decode(i["src"].split(",", 1)[1]) for i in parsed.images}
    assert set(saved.values()) == embedded


def test_the_headline_numbers_come_from_the_run(run_dir, page):
    _, text = page
    summary = pd.read_csv(run_dir / "summary.csv").set_index(["system", "metric"])
    risk = pd.read_csv(run_dir / "risk.csv").set_index("system")
    head = text[text.index('id="headline"') : text.index('id="distributions"')]
    assert "2,000 scenarios, seed 3, a horizon of 24 months" in head
    for s in ("rack", "server"):  # decision first: NPV P50 and P5, P(loss), CVaR 95, IRR, payback
        cells = [
            ft.money(summary.loc[(s, "npv_usd"), "p50"]),
            ft.money(summary.loc[(s, "npv_usd"), "p5"]),
            f"{risk.loc[s, 'p_loss']:.1%}",
            ft.money(-risk.loc[s, "cvar95_usd"]),
            ft.per_year(summary.loc[(s, "irr"), "p50"]),
            ft.months(risk.loc[s, "median_payback_months"]),
        ]
        assert f"<tr><td>{s}</td><td>" + "</td><td>".join(cells) + "</td>" in head, s
    assert "has the highest median NPV" in head
    table = head[head.index('<table class="headline">') :]
    assert "ROI" not in table[: table.index("</table>")]  # the ROI multiple left the headline


def test_text_from_the_run_folder_is_escaped(page):
    _, text = page
    assert "A &lt;test&gt; study &amp; its description." in text
    assert "initial_usd_per_mtok=0.5 &lt;&amp;&gt;" in text and "15x &lt;b&gt;" in text
    assert "<script" not in text and "http://" not in text and "https://" not in text  # nothing to fetch


def test_the_tables_show_stress_breakeven_claims_and_manifest(page):
    _, text = page
    for sid, expected in (
        ("stress", "cheap tokens"),
        ("breakeven", "initial token price ($/Mtok)"),
        ("claims", "toy-roi"),
        ("manifest", "seed 3"),
        ("methods", "0.05%"),
    ):
        start = text.index(f'id="{sid}"')
        assert expected in text[start : text.index("</section>", start)], sid


def test_every_axis_of_every_figure_has_its_unit(run_dir):
    from mcrisk.report.page import render

    drawn = {}
    render(load_run(run_dir), lambda fig, name, alt, cap: drawn.setdefault(name, fig) and "")
    assert sorted(drawn) == sorted(FIGURES)
    categorical = {"row system (A)", "column system (B)", ""}  # the win matrix's systems; the tornado's inputs
    for name, fig in drawn.items():
        for ax in fig.axes:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert label in categorical or ("(" in label and ")" in label), (name, label)
        assert any(ax.get_xlabel() not in categorical for ax in fig.axes) or name == "comparison", name


def test_missing_optional_inputs_give_notes_not_errors(run_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    for name in OPTIONAL:
        path = bare / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    parsed = Page(write_report(bare).read_text())
    assert [sid for sid, _ in SECTIONS if sid not in parsed.ids and sid not in CONDITIONAL] == []
    notes = " ".join(parsed.notes)
    for expected in (
        "no monthly.parquet",
        "Needs the scenarios",
        "then mcrisk analyze, to see what drives NPV",
        "no stress.csv",
        "no breakeven.csv",
        "Not a claims run",
    ):
        assert expected in notes, expected
    # NPV and ROI from the summary percentiles, and the cost structure; stale figures are gone
    assert len(parsed.images) == 3
    assert sorted(p.stem for p in (bare / "figures").glob("*.png")) == ["cost_structure", "npv", "roi_multiple"]
    assert "summary percentiles" in (bare / "report.html").read_text()


def test_a_run_with_scenarios_but_no_analysis_says_to_run_analyze(run_dir):
    run = load_run(run_dir)
    run["sensitivity"] = run["comparison"] = None
    assert f"run  mcrisk analyze {run_dir}  to see what drives NPV" in sections.drivers(run, figs=None)
    assert "to see which system wins" in sections.comparison(run, figs=None)
    run["systems"] = ["rack"]
    assert "One system only" in sections.comparison(run, figs=None)


def test_the_scenario_sample_is_bounded_fixed_and_paired(run_dir):
    a = scenario_sample(run_dir, 2, limit=500)
    b = scenario_sample(run_dir, 2, limit=500)
    pd.testing.assert_frame_equal(a, b)
    counts = a.groupby("system")["scenario"].apply(lambda x: sorted(x))
    assert counts["rack"] == counts["server"]  # the same scenarios for every system
    assert 350 < len(counts["rack"]) < 650
    assert len(scenario_sample(run_dir, 2)) == 4000  # under the limit: every row


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="no manifest.json"):
        write_report(tmp_path)
    with pytest.raises(RunFolderError, match="no such folder"):
        write_report(tmp_path / "missing")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run folder" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "report.html").exists()


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "damage, file, says",
    [
        (lambda d: (d / "manifest.json").write_text("[]"), "manifest.json", "a JSON array, not an object"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json", "not valid JSON"),
        (lambda d: (d / "summary.csv").write_text("garbage\n"), "summary.csv", "no column 'system', 'metric'"),
        (
            lambda d: (d / "risk.csv").write_text("system,p_loss\nrack,lots\n"),
            "risk.csv",
            "text where numbers belong, in column 'p_loss'",
        ),
        (
            lambda d: next((d / "scenarios.parquet").glob("part-*.parquet")).write_text("garbage\n"),
            "scenarios.parquet/part-",
            "Parquet magic bytes not found",
        ),
        (lambda d: (d / "monthly.parquet").write_text("garbage\n"), "monthly.parquet", "Parquet magic bytes not found"),
        (lambda d: (d / "sensitivity.csv").write_bytes(b"\xff\xfe\x00garbage"), "sensitivity.csv", "damaged"),
    ],
    ids=[
        "manifest-list",
        "manifest-not-json",
        "summary-garbage",
        "risk-text",
        "parquet-part",
        "monthly",
        "sensitivity-binary",
    ],
)
def test_a_damaged_run_folder_is_named_and_the_report_writes_nothing(run_dir, tmp_path, damage, file, says):
    """`mcrisk report` on a run folder with a damaged file: exit 2 naming the file and why, no
    traceback, and neither report.html nor figures/ is written (an earlier report is left alone)."""
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    damage(bad)
    before = _listing(bad)
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"cannot read run folder '{bad}': {file}" in text and "is damaged or not what mcrisk wrote" in text, text
    assert says in text and "Traceback" not in text
    assert _listing(bad) == before  # the earlier report.html and figures untouched, no temporary file left
    shutil.rmtree(bad / "figures")
    (bad / "report.html").unlink()
    assert runner.invoke(app, ["report", str(bad)]).exit_code == 2
    assert not (bad / "figures").exists() and not (bad / "report.html").exists()


def test_a_report_that_fails_midway_leaves_no_figures(run_dir, tmp_path, monkeypatch):
    """The figures are made before the page: a failure after some of them leaves none in place."""
    fresh = tmp_path / "fresh"
    shutil.copytree(run_dir, fresh)
    shutil.rmtree(fresh / "figures")
    (fresh / "report.html").unlink()
    monkeypatch.setattr(sections, "comparison", lambda run, figs: 1 / 0)  # after npv, cash flow, costs, drivers
    with pytest.raises(ZeroDivisionError):
        write_report(fresh)
    assert sorted(p.name for p in fresh.iterdir() if p.name.startswith((".", "figures", "report"))) == []


def test_a_sweep_folder_or_a_file_is_not_a_run_folder(run_dir, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "manifest.json").write_text(json.dumps({"study": "s", "study_sha256": "0" * 64, "grid": [], "points": []}))
    result = runner.invoke(app, ["report", str(sweep)])
    assert result.exit_code == 2
    assert f"'{sweep}' is a sweep folder (mcrisk sweep), not a run folder" in result.output
    for command in ("report", "analyze"):
        result = runner.invoke(app, [command, str(run_dir / "summary.csv")])
        assert result.exit_code == 2, result.output
        assert f"'{run_dir / 'summary.csv'}' is not a run folder: it is a file, not a folder" in result.output
        assert "Traceback" not in result.output
    assert not list(tmp_path.glob("**/report.html"))


def test_analyze_names_a_damaged_parquet_part(run_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    part = sorted((bad / "scenarios.parquet").glob("part-*.parquet"))[-1]
    part.write_text("garbage\n")
    before = _listing(bad)
    result = runner.invoke(app, ["analyze", str(bad)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"cannot read run folder '{bad}': scenarios.parquet/{part.name} is damaged or not what mcrisk wrote" in text
    assert "Traceback" not in text
    assert _listing(bad) == before  # sensitivity.csv and comparison.csv as they were


def test_the_methods_section_links_the_model_documentation_of_a_source_checkout(run_dir):
    html = sections.methods(load_run(run_dir))
    assert "docs/model.md</a>" in html and (Path(sections.__file__).parents[2] / "docs" / "model.md").is_file()

"""Studies that use the catalog: presets, workloads, software curves, serving modes and sizing.

Field by field the study's own values win over the catalog's; every resolved value says where it
came from; an unknown or incomplete catalog reference exits 2 naming its path, and what exists.
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.errors import StudyError
from mcrisk.study import catalog
from mcrisk.study.schema import CATALOG_KEYS, load_study, load_study_with_provenance, study_from_dict
from mcrisk.workflows.run import run_study

from .conftest import write_study

runner = CliRunner()
MARKET = {
    "token_price": {"initial_usd_per_mtok": 1.0},
    "demand": {"utilization": 0.7},
    "electricity": {"usd_per_kwh": 0.08},
}
# Every catalog system, with a workload figure where the catalog has one, else a throughput, and a
# capex where the catalog has no public price (NOT FOUND).
EVERY_PRESET = {
    "h100": {"preset": "hgx-h100", "workload": "gpt-oss-120b", "interactivity_tok_s_user": 90},
    "h200": {"preset": "hgx-h200", "workload": "deepseek-r1-8k1k", "interactivity_tok_s_user": 50},
    "b200": {"preset": "hgx-b200", "workload": "gpt-oss-120b", "interactivity_tok_s_user": 100},
    "b300": {"preset": "hgx-b300", "throughput_tokens_per_s_per_gpu": 8000, "capex_usd": 550000},
    "gb200": {
        "preset": "gb200-nvl72",
        "workload": "deepseek-r1-8k1k",
        "interactivity_tok_s_user": 50,
        "serving": "disaggregated",
        "software_curve": "launch-ramp",
    },
    "gb300": {"preset": "gb300-nvl72", "throughput_tokens_per_s_per_gpu": 6000, "software_curve": "mature"},
    "mi300x": {"preset": "mi300x", "workload": "gpt-oss-120b", "interactivity_tok_s_user": 90, "capex_usd": 250000},
    "mi325x": {"preset": "mi325x", "throughput_tokens_per_s_per_gpu": 1500, "capex_usd": 300000},
    "mi355x": {
        "preset": "mi355x",
        "workload": "gpt-oss-120b",
        "interactivity_tok_s_user": 90,
        "capex_usd": 350000,
        "software_curve": "plateau",
    },
}


def study(systems: dict, **top) -> dict:
    return {
        "name": "presets",
        "simulation": {"scenarios": 50, "horizon_months": 12, "seed": 1},
        "market": copy.deepcopy(MARKET),
        "systems": copy.deepcopy(systems),
        **top,
    }


def gb200(**fields) -> dict:
    return study({"gb200": {**EVERY_PRESET["gb200"], **fields}})


# --------------------------------------------------------------------------- every preset runs


@pytest.fixture(scope="module")
def every_preset_run(tmp_path_factory):
    return run_study(study(EVERY_PRESET), out=tmp_path_factory.mktemp("presets") / "run")


def test_every_catalog_system_is_covered():
    assert sorted(s["preset"] for s in EVERY_PRESET.values()) == sorted(catalog.names("system"))
    for spec in EVERY_PRESET.values():  # capex is supplied exactly where the catalog has none
        assert ("capex_usd" in spec) == ("capex_usd" in catalog.system_missing(spec["preset"]))


def test_every_preset_validates_and_runs(every_preset_run):
    r = every_preset_run
    assert sorted(r.risk["system"]) == sorted(EVERY_PRESET)
    revenue = r.summary.set_index(["system", "metric"])["mean"].xs("revenue_usd", level="metric")
    assert (revenue > 0).all() and revenue.map(math.isfinite).all()
    assert r.manifest["scenarios"] == 50 and r.manifest["horizon_months"] == 12


def test_run_folder_study_reloads_as_a_plain_study(every_preset_run):
    text = (every_preset_run.folder / "study.yaml").read_text()
    raw = yaml.safe_load(text)
    for spec in raw["systems"].values():
        assert not set(spec) & set(CATALOG_KEYS)
    reloaded = load_study(every_preset_run.folder / "study.yaml")
    assert reloaded.digest() == every_preset_run.study.digest() == every_preset_run.manifest["study_sha256"]
    assert "#   systems.gb200.throughput_tokens_per_s_per_gpu: workload deepseek-r1-8k1k on gb200-nvl72" in text
    assert "#   systems.h100.capex_usd: preset hgx-h100: " in text


# --------------------------------------------------------------------------- resolution order


def test_the_study_wins_field_by_field():
    st, prov = load_study_with_provenance(gb200(capex_usd=3.6e6, software_speedup={"ceiling": 2.0}))
    s = st.systems["gb200"]
    assert s.capex_usd.value == 3.6e6 and prov["systems.gb200.capex_usd"] == "study"
    assert s.it_power_kw.describe() == "triangular(low=120, mode=132, high=140)"
    assert prov["systems.gb200.it_power_kw"].startswith("preset gb200-nvl72: ")
    assert s.gpus_per_unit == 72 and s.depreciation_years == 4
    assert s.software_speedup.ceiling.value == 2.0 and prov["systems.gb200.software_speedup.ceiling"] == "study"
    assert s.software_speedup.time_constant_months.describe() == "uniform(low=0.667, high=2)"
    assert prov["systems.gb200.software_speedup.time_constant_months"].startswith("curve launch-ramp: ")
    assert prov["systems.gb200.throughput_tokens_per_s_per_gpu"].startswith("workload deepseek-r1-8k1k on gb200-nvl72")
    assert prov["systems.gb200.idle_power_fraction"] == "default; preset gb200-nvl72 has no public figure (NOT FOUND)"
    assert prov["systems.gb200.efficiency"] == "default" and prov["market.demand.utilization"] == "study"


def test_a_study_throughput_wins_over_the_workload():
    st, prov = load_study_with_provenance(gb200(throughput_tokens_per_s_per_gpu=4000))
    assert st.systems["gb200"].throughput_tokens_per_s_per_gpu.value == 4000
    assert prov["systems.gb200.throughput_tokens_per_s_per_gpu"] == "study"


@pytest.mark.parametrize("serving", ["disaggregated", "colocated", None])
def test_workload_throughput_is_converted_to_the_serving_mode(serving):
    fields = {"serving": serving} if serving else {}
    spec = {k: v for k, v in EVERY_PRESET["gb200"].items() if k != "serving"}
    st = study_from_dict(study({"gb200": {**spec, **fields}}))
    got = st.systems["gb200"].throughput_tokens_per_s_per_gpu.value
    if serving == "disaggregated":  # the mode the 10,000 was measured in: the published number, exactly
        assert got == 10000
    else:  # co-located is the default
        assert got == pytest.approx(10000 / catalog.serving_factor("disaggregated", 50))


def test_preset_and_spelled_out_study_are_the_same_study():
    with_catalog = study_from_dict(gb200(capex_usd=3.6e6))
    plain = with_catalog.resolved()
    assert not set(plain["systems"]["gb200"]) & set(CATALOG_KEYS)
    again = study_from_dict(plain)
    assert again.digest() == with_catalog.digest()
    assert set(again.provenance().values()) <= {"study", "default"}


# --------------------------------------------------------------------------- bad references

KNOWN_SYSTEMS = ", ".join(catalog.names("system"))
BAD = [
    (
        "unknown-preset",
        {"preset": "gb200-nv72"},
        f"systems.gb200.preset: unknown catalog system 'gb200-nv72'; did you mean 'gb200-nvl72'? (known system entries: {KNOWN_SYSTEMS})",
    ),
    ("preset-of-another-kind", {"preset": "launch-ramp"}, "systems.gb200.preset: unknown catalog system 'launch-ramp'"),
    (
        "unknown-workload",
        {"workload": "x"},
        "systems.gb200.workload: unknown catalog workload 'x' (known workload entries: deepseek-r1-8k1k, deepseek-r1-1k1k, gpt-oss-120b, llama-3.3-70b)",
    ),
    (
        "unknown-curve",
        {"software_curve": "ramp"},
        "systems.gb200.software_curve: unknown catalog software_curve 'ramp' (known software_curve entries: launch-ramp, mature, plateau)",
    ),
    (
        "unknown-serving",
        {"serving": "disagg"},
        "systems.gb200.serving: unknown catalog serving 'disagg'; did you mean 'disaggregated'? (known serving entries: colocated, disaggregated)",
    ),
    (
        "tier-without-figure",
        {"interactivity_tok_s_user": 60},
        "systems.gb200.interactivity_tok_s_user: workload 'deepseek-r1-8k1k' has no throughput for gb200-nvl72 at 60 tok/s/user; gb200-nvl72 has figures at: 50 tok/s/user",
    ),
    (
        "system-without-figure",
        {"workload": "gpt-oss-120b", "interactivity_tok_s_user": 100},
        "systems.gb200.workload: workload 'gpt-oss-120b' has no throughput for gb200-nvl72 at 100 tok/s/user; it has no figure for gb200-nvl72",
    ),
    (
        "workload-without-preset",
        {"preset": None},
        f"systems.gb200.workload: throughput figures are per catalog system: set preset too (one of: {KNOWN_SYSTEMS})",
    ),
    (
        "tier-without-workload",
        {"workload": None, "throughput_tokens_per_s_per_gpu": 5000},
        "systems.gb200.interactivity_tok_s_user: only applies with a workload",
    ),
    ("negative-tier", {"interactivity_tok_s_user": -5}, "systems.gb200.interactivity_tok_s_user: must be > 0"),
    (
        "not-found-capex",
        {"preset": "mi300x", "workload": "gpt-oss-120b", "interactivity_tok_s_user": 90, "serving": "colocated"},
        "systems.gb200.capex_usd: required, and preset mi300x has no value: NOT FOUND in public sources",
    ),
    (
        "preset-without-throughput",
        {"workload": None, "interactivity_tok_s_user": None, "serving": None},
        "systems.gb200.throughput_tokens_per_s_per_gpu: required field is missing: a preset gives hardware only",
    ),
]


@pytest.mark.parametrize("case, change, expected", BAD, ids=[c[0] for c in BAD])
def test_bad_catalog_reference_exits_2_naming_the_field(tmp_path, case, change, expected):
    spec = {**EVERY_PRESET["gb200"], **change}
    path = write_study(tmp_path / "s.yaml", study({"gb200": {k: v for k, v in spec.items() if v is not None}}))
    for args in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "run"), "-q"]):
        result = runner.invoke(app, args)
        text = result.stdout + (result.stderr or "")
        assert result.exit_code == 2, text
        assert expected in " ".join(text.split()), text
        assert "Traceback" not in text
    assert not (tmp_path / "run").exists()


def test_an_unknown_preset_is_not_followed_by_the_fields_it_would_have_given():
    with pytest.raises(StudyError) as err:
        study_from_dict(study({"x": {"preset": "nope", "workload": "gpt-oss-120b"}}))
    assert [p.path for p in err.value.problems] == ["systems.x.preset"]


# --------------------------------------------------------------------------- sizing

RACK_AND_SERVER = {
    "gb200": EVERY_PRESET["gb200"],  # it_power_kw triangular(120, 132, 140): mean 130.667 kW; capex mean $3.4667M
    "b200": EVERY_PRESET["b200"],  # 14.3 kW; capex triangular(314.6k, 344.25k, 374.9k): mean $344.58k
}


@pytest.mark.parametrize(
    "sizing, units",
    [
        ({"power_kw": 1000}, {"gb200": math.floor(1000 / ((120 + 132 + 140) / 3)), "b200": math.floor(1000 / 14.3)}),
        (
            {"capex_usd": 5.0e7},
            {
                "gb200": math.floor(5e7 / ((3.0e6 + 3.4e6 + 4.0e6) / 3)),
                "b200": math.floor(5e7 / ((314600 + 344250 + 374900) / 3)),
            },
        ),
        ({"power_kw": 14.3 * 10}, {"gb200": 1, "b200": 10}),  # an exact multiple; less than one rack still buys one
    ],
)
def test_sizing_gives_each_system_its_units(sizing, units):
    st, prov = load_study_with_provenance(study(RACK_AND_SERVER, sizing=sizing))
    assert {n: s.units for n, s in st.systems.items()} == units
    assert units["gb200"] in (7, 14, 1) and units["b200"] in (69, 145, 10)
    key = next(iter(sizing))
    assert prov["systems.b200.units"].startswith(f"sizing {key} ")
    assert prov["systems.b200.units"].endswith(f"= {units['b200']}")
    plain = st.resolved()
    assert "sizing" not in plain and plain["systems"]["gb200"]["units"] == units["gb200"]
    assert study_from_dict(plain).digest() == st.digest()


def test_sizing_and_explicit_units_conflict():
    systems = copy.deepcopy(RACK_AND_SERVER)
    systems["b200"]["units"] = 3
    with pytest.raises(StudyError, match=r"systems.b200.units: is set by sizing \(power_kw: 1,000\)"):
        study_from_dict(study(systems, sizing={"power_kw": 1000}))


@pytest.mark.parametrize("sizing", [{}, {"power_kw": 1000, "capex_usd": 5e7}])
def test_sizing_takes_exactly_one_budget(sizing):
    with pytest.raises(StudyError, match="sizing: give exactly one budget"):
        study_from_dict(study(RACK_AND_SERVER, sizing=sizing))


def test_sizing_budget_must_be_positive():
    with pytest.raises(StudyError, match="sizing.power_kw: must be > 0"):
        study_from_dict(study(RACK_AND_SERVER, sizing={"power_kw": 0}))


# --------------------------------------------------------------------------- the CLI


def test_validate_shows_each_value_and_its_source(tmp_path):
    path = write_study(tmp_path / "s.yaml", study(RACK_AND_SERVER, sizing={"power_kw": 1000}))
    result = runner.invoke(app, ["validate", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.stdout
    text = " ".join(result.stdout.split())  # (the sources wrap at the terminal's width)
    assert "units: 7" in text and "units: 69" in text and "sizing" not in text.split("where each value")[0]
    for source in (
        "sizing power_kw 1,000: floor(1,000 / 130.667 kW",
        "preset gb200-nvl72: ",
        "workload gpt-oss-120b on hgx-b200",
        "curve launch-ramp: ",
        "default",
        "study",
    ):
        assert source in text, source
    assert "triangular(low=120, mode=132, high=140)" in text


def test_catalog_lists_entries_and_shows_one_with_its_sources():
    listing = runner.invoke(app, ["catalog"], env={"COLUMNS": "250"})
    assert listing.exit_code == 0
    for name in catalog.names():
        assert name in listing.stdout
    one = runner.invoke(app, ["catalog", "hgx-h200"], env={"COLUMNS": "250"})
    assert one.exit_code == 0
    assert "NOT FOUND" in one.stdout and "InferenceX-app gpu-specs" in one.stdout and "costh" in one.stdout


def test_catalog_unknown_name_exits_2_with_the_known_ones():
    result = runner.invoke(app, ["catalog", "gb200"])
    text = result.stdout + (result.stderr or "")
    assert result.exit_code == 2 and "Traceback" not in text
    for name in catalog.names():
        assert name in text

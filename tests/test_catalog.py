"""The catalog: every number traceable to a source, presets shaped like study values, clear errors."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from mcrisk.study import catalog, yaml12
from mcrisk.study.catalog import CatalogError, Sourced, check_dist

SYSTEMS = ["hgx-h100", "hgx-h200", "hgx-b200", "hgx-b300", "gb200-nvl72", "gb300-nvl72", "mi300x", "mi325x", "mi355x"]
WORKLOADS = ["deepseek-r1-8k1k", "deepseek-r1-1k1k", "gpt-oss-120b", "llama-3.3-70b"]
CURVES = ["launch-ramp", "mature", "plateau"]
SERVING = ["colocated", "disaggregated"]
PRIORS = [
    "fleet-utilization",
    "token-price-decline",
    "production-efficiency",
    "electricity-price",
    "pue",
    "colocation",
    "token-price-dsr1-class",
    "token-price-gpt-oss-1k8k",
    "residual-value",
    "discount-rate",
    "cost-of-equity",
    "tax-rate",
    "debt-share",
    "debt-rate",
    "lead-time",
    "contract-share",
    "contract-term",
    "contract-price-multiple",
    "contract-usage",
    "contract-default-probability",
    "succession-first-month",
    "succession-every-months",
    "succession-token-price-step",
    "succession-rental-step",
    "rental-decline-hopper",
    "rental-decline-blackwell",
]
# Study paths of STUDY.md's extensions ("How operators earn and finance") that a prior may fill even
# where this checkout's study model does not have them yet.
EXTENSION_PATHS = {
    "finance.cost_of_equity",
    "finance.tax_rate",
    "finance.debt.share",
    "finance.debt.annual_rate",
    "market.succession.first_month",
    "market.succession.every_months",
    "market.succession.token_price_step",
    "market.succession.rental_step",
    "systems.*.lead_months",
    "systems.*.rental.annual_decline",
    "systems.*.contract.share",
    "systems.*.contract.term_months",
    "systems.*.contract.price_multiple",
    "systems.*.contract.usage",
    "systems.*.contract.annual_default_probability",
}
DATA = resources.files("mcrisk") / "data" / "catalog"
FILES = ["systems.yaml", "workloads.yaml", "software_curves.yaml", "serving.yaml", "priors.yaml"]
# Numbers that place a figure (its tier) rather than report one; the figure beside them is sourced.
STRUCTURAL = {"interactivity_tok_s_user", "interactivity_min", "interactivity_max"}


def _all_dists():
    """(where, DIST or number) for every value the catalog hands to a study."""
    for s in SYSTEMS:
        for f, v in catalog.system_fields(s).items():
            yield f"{s}.{f}", v
    for w in WORKLOADS:
        e = catalog.get_entry(w)
        for p in e.throughput:
            yield f"{w}.{p.system}@{p.interactivity_tok_s_user}", p.tokens_per_s_per_gpu.value
        for b in e.prices:
            yield f"{w}.price{b.label()}", b.usd_per_mtok.value
    for c in CURVES:
        for f, v in catalog.software_curve_fields(c)["software_speedup"].items():
            yield f"{c}.{f}", v
    for p in PRIORS:
        yield p, catalog.prior_value(p)[1]


# --------------------------------------------------------------------------- loading and sources


def test_every_entry_loads_with_the_expected_names():
    rows = catalog.list_entries()
    assert {r["kind"] for r in rows} == set(catalog.KINDS)
    assert catalog.names("system") == SYSTEMS
    assert catalog.names("workload") == WORKLOADS
    assert catalog.names("software_curve") == CURVES
    assert catalog.names("serving") == SERVING
    assert catalog.names("prior") == PRIORS
    for r in rows:
        assert r["title"].strip() and r["summary"].strip() and "\n" not in r["summary"]
        assert catalog.get_entry(r["name"]).name == r["name"]
        assert catalog.entry_details(r["name"])


def test_every_number_has_source_date_and_tag_or_says_not_found():
    for name in catalog.names():
        for row in catalog.entry_details(name):
            where = f"{name}: {row['field']}"
            assert set(row) >= {"field", "value", "source", "date", "tag"}, where
            if row["value"] is None:
                assert "NOT FOUND" in row["note"], where
                continue
            assert row["source"].strip() and row["date"].strip(), where
            assert row["tag"] in catalog.TAGS, where
            if row["tag"] == "D":
                assert row["derivation"].strip(), f"{where}: a [D] figure must state its arithmetic"


def _walk(node, sourced, path):
    """Yield the path of every number not covered by a source/date/tag mapping."""
    if isinstance(node, dict):
        if "source" in node:
            sourced = all(str(node.get(k) or "").strip() for k in ("source", "date", "tag"))
        for k, v in node.items():
            if k not in STRUCTURAL:
                yield from _walk(v, sourced, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, sourced, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool) and not sourced:
        yield path


@pytest.mark.parametrize("fname", FILES)
def test_raw_yaml_has_no_unsourced_number(fname):
    raw = yaml12.load((DATA / fname).read_text(encoding="utf-8"))
    assert list(_walk(raw, False, fname)) == []


def test_null_values_are_explicit_not_found():
    assert catalog.system_fields("mi355x").get("capex_usd") is None
    assert "NOT FOUND" in catalog.system_missing("mi355x")["capex_usd"]
    with pytest.raises(ValidationError, match="NOT FOUND"):
        Sourced(value=None, note="unknown")
    with pytest.raises(ValidationError, match="source"):
        Sourced(value=1.0, date="2025", tag="I")
    with pytest.raises(ValidationError, match="derivation"):
        Sourced(value=1.0, source="x", date="2025", tag="D")
    with pytest.raises(ValidationError, match="extra"):
        Sourced(value=1.0, source="x", date="2025", tag="I", url="y")


# --------------------------------------------------------------------------- study values


def _check_study_value(where, v, floor_ok=False):
    """A number or DIST with ordered parameters, all > 0 (>= 0 where ``floor_ok``: shares, steps, rates)."""
    ok = (lambda x: x >= 0) if floor_ok else (lambda x: x > 0)  # noqa: E731
    if isinstance(v, dict):
        check_dist(v)
        keys = [k for k in ("low", "mode", "high") if k in v]
        vals = [v[k] for k in keys]
        assert vals == sorted(vals), f"{where}: need low <= mode <= high, got {v}"
        assert all(ok(x) for x in vals), where
    else:
        assert isinstance(v, (int, float)) and not isinstance(v, bool) and ok(v), f"{where}: {v!r}"


@pytest.mark.parametrize("name", SYSTEMS)
def test_system_fields_are_study_values_with_provenance(name):
    fields = catalog.system_fields(name)
    missing = catalog.system_missing(name)
    assert set(fields) | set(missing) == set(catalog.STUDY_SYSTEM_FIELDS)
    assert not set(fields) & set(missing)
    assert isinstance(fields["gpus_per_unit"], int) and fields["gpus_per_unit"] >= 1
    assert isinstance(fields["depreciation_years"], (int, float)) and fields["depreciation_years"] > 0
    assert "it_power_kw" in fields
    for f, v in fields.items():
        _check_study_value(f"{name}.{f}", v)
    prov = catalog.system_provenance(name)
    assert set(prov) == set(fields)
    for line in prov.values():
        assert line.startswith(f"preset {name}: ") and line.rstrip().endswith("]")


def test_every_dist_parses_with_the_engine():
    parse_dist = pytest.importorskip("mcrisk.study.distributions").parse_dist
    for where, v in _all_dists():
        try:
            parse_dist(v)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{where}: {v} does not parse: {exc}")


def test_study_values_are_copies_not_the_cache():
    catalog.system_fields("gb200-nvl72")["capex_usd"]["low"] = -1
    catalog.workload_price("gpt-oss-120b", 100)["low"] = -1
    assert catalog.system_fields("gb200-nvl72")["capex_usd"]["low"] == 3_000_000
    assert catalog.workload_price("gpt-oss-120b", 100)["low"] == 0.10


# --------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    "call, known",
    [
        (lambda: catalog.get_entry("gb200-nv72"), SYSTEMS + WORKLOADS + CURVES + SERVING + PRIORS),
        (lambda: catalog.system_fields("gb200-nv72"), SYSTEMS),
        (lambda: catalog.system_provenance("launch-ramp"), SYSTEMS),
        (lambda: catalog.workload_fields("dsr1", "gb200-nvl72", 50), WORKLOADS),
        (lambda: catalog.workload_fields("deepseek-r1-8k1k", "h200", 50), SYSTEMS),
        (lambda: catalog.workload_price("gpt-oss", 100), WORKLOADS),
        (lambda: catalog.software_curve_fields("ramp"), CURVES),
        (lambda: catalog.serving_factor("disagg", 50), SERVING),
        (lambda: catalog.prior_value("utilization"), PRIORS),
    ],
)
def test_unknown_names_fail_with_the_known_ones(call, known):
    with pytest.raises(CatalogError) as err:
        call()
    assert isinstance(err.value, KeyError)
    for name in known:
        assert name in str(err.value)


def test_unknown_name_suggests_a_close_match():
    with pytest.raises(KeyError, match="did you mean 'gb200-nvl72'"):
        catalog.system_fields("gb200-nv72")
    assert str(pytest.raises(KeyError, catalog.get_entry, "nope").value).startswith("unknown catalog entry 'nope'")


# --------------------------------------------------------------------------- serving


def test_colocated_factor_is_one_everywhere():
    assert [catalog.serving_factor("colocated", x) for x in (0, 20, 35, 50, 100, 1000)] == [1.0] * 6


def test_disaggregated_factor_interpolates_linearly_and_is_flat_outside():
    f = lambda x: catalog.serving_factor("disaggregated", x)  # noqa: E731
    assert f(10) == f(35) == 4.0
    assert f(100) == f(500) == 1.0
    assert f(67.5) == pytest.approx(2.5)
    assert f(60) == pytest.approx(4 - 3 * 25 / 65)  # "just under 3x" at 60 (InferenceX v2)
    xs = range(0, 200, 5)
    assert all(f(a) >= f(b) for a, b in zip(xs, xs[1:]))


# --------------------------------------------------------------------------- workloads


def test_throughput_is_converted_between_serving_modes_without_double_counting():
    k50 = catalog.serving_factor("disaggregated", 50)
    dis = catalog.workload_fields("deepseek-r1-8k1k", "gb200-nvl72", 50, "disaggregated")
    assert dis["throughput_tokens_per_s_per_gpu"] == 10000  # measured disaggregated: as published
    col = catalog.workload_fields("deepseek-r1-8k1k", "gb200-nvl72", 50)
    assert col["throughput_tokens_per_s_per_gpu"] == pytest.approx(10000 / k50)
    h200 = catalog.workload_fields("deepseek-r1-8k1k", "hgx-h200", 50.0, "disaggregated")
    assert h200["throughput_tokens_per_s_per_gpu"] == pytest.approx(666.7 * k50)
    line = dis["provenance"]["throughput_tokens_per_s_per_gpu"]
    assert "InferenceMAX" in line and "[V]" in line and "2025-10" in line


def test_missing_tier_says_which_tiers_exist():
    with pytest.raises(CatalogError, match=r"gb200-nvl72 has figures at: 50 tok/s/user"):
        catalog.workload_fields("deepseek-r1-8k1k", "gb200-nvl72", 60)
    with pytest.raises(CatalogError, match="no figure for hgx-b300"):
        catalog.workload_fields("gpt-oss-120b", "hgx-b300", 100)


def test_unstated_tier_is_selected_by_none_and_cannot_be_converted():
    out = catalog.workload_fields("llama-3.3-70b", "hgx-b200", None)
    assert out["throughput_tokens_per_s_per_gpu"] == 10000
    with pytest.raises(CatalogError, match="unstated interactivity"):
        catalog.workload_fields("llama-3.3-70b", "hgx-b200", None, "disaggregated")


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_data_is_consistent(name):
    w = catalog.get_entry(name)
    tiers = [(p.system, p.interactivity_tok_s_user) for p in w.throughput]
    assert len(tiers) == len(set(tiers)), "two figures for one system and tier"
    bands = sorted(w.prices, key=lambda b: b.interactivity_min)
    assert bands[0].interactivity_min == 0 and bands[-1].interactivity_max is None
    for a, b in zip(bands, bands[1:]):
        assert a.interactivity_max == b.interactivity_min, "price bands must tile [0, inf)"
    for x in (1, 35, 50, 99.9, 100, 167, 1000):
        _check_study_value(f"{name} price @ {x}", catalog.workload_price(name, x))
        assert catalog.workload_price_provenance(name, x).startswith(f"workload {name} price ")


def test_price_follows_the_interactivity_band():
    assert catalog.workload_price("deepseek-r1-8k1k", 50)["mode"] == 0.732
    assert catalog.workload_price("deepseek-r1-8k1k", 167)["mode"] == 2.444
    assert catalog.workload_price("gpt-oss-120b", None) == {
        "dist": "triangular",
        "low": 0.10,
        "mode": 0.25,
        "high": 0.45,
    }
    with pytest.raises(CatalogError, match=r"\[0, 100\) tok/s/user, \[100, inf\)"):
        catalog.workload_price("deepseek-r1-8k1k", None)


# --------------------------------------------------------------------------- software curves


def _speedup(c, tau, t):
    return 1 + (c - 1) * (1 - math.exp(-t / tau))


def test_software_curves_have_study_shape():
    for name in CURVES:
        out = catalog.software_curve_fields(name)
        assert set(out) == {"software_speedup"}
        assert set(out["software_speedup"]) == {"ceiling", "time_constant_months"}
        for f, v in out["software_speedup"].items():
            _check_study_value(f"{name}.{f}", v)
        assert set(catalog.software_curve_provenance(name)) == {
            "software_speedup.ceiling",
            "software_speedup.time_constant_months",
        }


def test_launch_ramp_reaches_1_5_to_5x_within_2_to_6_months():
    s = catalog.software_curve_fields("launch-ramp")["software_speedup"]
    assert (s["ceiling"]["low"], s["ceiling"]["high"]) == (1.5, 5.0)
    tau = s["time_constant_months"]
    assert 3 * tau["low"] == pytest.approx(2, abs=0.01) and 3 * tau["high"] == pytest.approx(6)
    assert _speedup(5.0, tau["high"], 6) >= 1 + 0.95 * 4  # 95% of the gain by month 6 even at the slowest


def test_mature_curve_gives_0_to_30_percent_in_the_first_year():
    s = catalog.software_curve_fields("mature")["software_speedup"]
    tau = s["time_constant_months"]
    assert _speedup(s["ceiling"]["low"], tau, 12) == pytest.approx(1.0)
    assert _speedup(s["ceiling"]["high"], tau, 12) == pytest.approx(1.30, abs=1e-3)
    assert _speedup(s["ceiling"]["high"], tau, 48) < 1.3**4  # saturating: slower than compounding later


def test_plateau_has_no_gain():
    assert catalog.software_curve_fields("plateau")["software_speedup"]["ceiling"] == 1


# --------------------------------------------------------------------------- spot checks against domain_facts.md


@pytest.mark.parametrize(
    "name, gpus, hbm, costh, costn, costr, kw",
    [
        ("hgx-h100", 8, 80, 1.30, 1.69, 1.30, 1.73),
        ("hgx-h200", 8, 141, 1.41, 1.74, 1.60, 1.73),
        ("hgx-b200", 8, 180, 1.95, 2.34, 2.90, 2.17),
        ("hgx-b300", 8, 268, 2.34, 2.808, 3.48, 2.17),
        ("gb200-nvl72", 72, 192, 2.21, 2.75, 3.30, 2.10),
        ("gb300-nvl72", 72, 288, 2.652, 3.30, 3.96, 2.10),
        ("mi300x", 8, 192, 1.12, 1.40, 1.55, 1.79),
        ("mi325x", 8, 256, 1.28, 1.59, 1.80, 2.18),
        ("mi355x", 8, 288, 1.48, 1.90, 2.10, 2.65),
    ],
)
def test_system_numbers_match_domain_facts(name, gpus, hbm, costh, costn, costr, kw):
    e = catalog.get_entry(name)
    assert e.gpus_per_unit.value == gpus and e.hbm_gb_per_gpu.value == hbm
    t = e.tco_usd_per_gpu_hour
    assert (t.costh, t.costn, t.costr) == (costh, costn, costr)
    assert e.all_in_provisioned_kw_per_gpu.value == kw
    assert e.depreciation_years.value == 4


def test_capex_and_power_follow_their_stated_arithmetic():
    f = catalog.system_fields
    assert f("hgx-h100")["capex_usd"] == pytest.approx(
        {"dist": "triangular", "low": (8 * 25e3 + 30e3) * 1.10, "mode": 270e3 * 1.125, "high": (8 * 30e3 + 70e3) * 1.15}
    )
    gpu = round(0.39 * 5.9e6 / 72, -3)  # Bernstein's GPU share of a GB200 rack, per GPU
    assert f("hgx-b200")["capex_usd"] == pytest.approx(
        {
            "dist": "triangular",
            "low": (8 * gpu + 30e3) * 1.10,
            "mode": (8 * gpu + 50e3) * 1.125,
            "high": (8 * gpu + 70e3) * 1.15,
        }
    )
    assert f("gb200-nvl72")["capex_usd"] == {"dist": "triangular", "low": 3.0e6, "mode": 3.4e6, "high": 4.0e6}
    assert f("gb200-nvl72")["it_power_kw"] == {"dist": "triangular", "low": 120, "mode": 132, "high": 140}
    assert (f("hgx-h100")["it_power_kw"], f("hgx-b200")["it_power_kw"], f("hgx-b300")["it_power_kw"]) == (
        10.2,
        14.3,
        14.5,
    )
    # H200's purchase price is not published: H100's basis scaled by SemiAnalysis' TCO ratio 1.41 / 1.30
    h100 = f("hgx-h100")["capex_usd"]
    h200 = f("hgx-h200")["capex_usd"]
    for k in ("low", "mode", "high"):
        assert h200[k] == pytest.approx(h100[k] * 1.41 / 1.30, abs=30), k
    for name in ("hgx-b300", "mi300x", "mi325x", "mi355x"):
        assert "capex_usd" not in f(name), f"{name}: no public price, so no preset capex"
    ratios = [8 * 1.73 / 10.2, 8 * 2.17 / 14.3, 8 * 2.17 / 14.5, 72 * 2.10 / 132]  # all-in / IT, NVIDIA systems
    mid = sorted(ratios)[1:3]
    for name, kw in (("mi300x", 1.79), ("mi325x", 2.18), ("mi355x", 2.65)):
        p = f(name)["it_power_kw"]
        assert p["low"] == round(8 * kw / max(ratios), 1) and p["high"] == round(8 * kw / min(ratios), 1)
        assert p["mode"] == round(8 * kw / (sum(mid) / 2), 1)


def test_workload_numbers_match_domain_facts():
    tput = lambda w, s, x: catalog.workload_fields(w, s, x)["throughput_tokens_per_s_per_gpu"]  # noqa: E731
    assert tput("gpt-oss-120b", "hgx-b200", 100) == 30000
    assert tput("deepseek-r1-1k1k", "gb200-nvl72", 125) / tput("deepseek-r1-1k1k", "hgx-b200", 125) == pytest.approx(
        4.39, abs=0.005
    )
    for system, per_mw, kw in (
        ("hgx-h100", 0.90e6, 1.73),
        ("hgx-b200", 2.8e6, 2.17),
        ("mi300x", 0.75e6, 1.79),
        ("mi355x", 2.55e6, 2.65),
    ):
        assert tput("gpt-oss-120b", system, 90) == pytest.approx(per_mw * kw / 1000)
    blend = lambda i, o, a, b: (a * i + b * o) / (a + b)  # noqa: E731
    p = catalog.workload_price("deepseek-r1-8k1k", 36)
    assert (p["low"], p["mode"], p["high"]) == pytest.approx(
        (blend(0.50, 2.15, 8, 1), blend(0.55, 2.19, 8, 1), blend(1.35, 5.40, 8, 1)), abs=5e-4
    )
    implied = [r for r in catalog.get_entry("deepseek-r1-8k1k").reference_points if r.figure.value == 1.10]
    assert implied and 75e6 / (72 * 10000 * 26298 * 3600 / 1e6) == pytest.approx(1.10, abs=0.005)


def test_library_does_not_import_the_cli_stack():
    for module in (catalog.__file__, Path(catalog.__file__).with_name("rentals.py")):
        text = Path(module).read_text()
        assert "typer" not in text and "rich" not in text


# --------------------------------------------------------------------------- priors


@pytest.mark.parametrize("name", PRIORS)
def test_priors_are_sourced_values_for_a_study_path(name):
    from mcrisk.study.schema import Study

    path, value, line = catalog.prior_value(name)
    assert line.startswith(f"prior {name}: ") and line.endswith("]")
    _check_study_value(name, value, floor_ok=True)
    if path in EXTENSION_PATHS:
        return
    section, *rest = path.split(".")
    model = Study.model_fields[section].annotation
    if section == "systems":
        assert rest[0] == "*", "a system prior applies to any system"
        model, rest = model.__args__[1], rest[1:]
    for part in rest[:-1]:
        model = model.model_fields[part].annotation
    assert rest[-1] in model.model_fields, f"{name}: {path} is not a study path"


def _tri(name):
    return tuple(catalog.prior_value(name)[1][k] for k in ("low", "mode", "high"))


def test_priors_match_domain_facts():
    assert _tri("fleet-utilization") == (0.50, 0.80, 0.95)  # §10 LBNL/Uptime 75-85%, contracted 95%+
    assert _tri("token-price-decline") == (0.1, 0.3, 0.6)  # §10: a fixed model, not LLMflation
    assert _tri("production-efficiency") == (0.5, round(14.8 / 22.3, 2), 1.0)
    assert _tri("electricity-price") == (0.05, 0.08, 0.15)
    assert _tri("pue") == (1.10, 1.25, 1.56)
    assert _tri("colocation") == (150, 190, 220)
    assert _tri("residual-value")[0] == 0.10 and _tri("residual-value")[2] == 0.35  # §10: 10-35% at 4 years
    blend = lambda i, o, a, b: round((a * i + b * o) / (a + b), 3)  # noqa: E731
    assert _tri("token-price-dsr1-class") == (
        blend(0.135, 0.55, 8, 1),
        blend(0.28, 0.42, 8, 1),
        blend(0.50, 2.15, 8, 1),
    )
    assert _tri("token-price-gpt-oss-1k8k") == (
        blend(0.04, 0.19, 1, 8),
        blend(0.15, 0.60, 1, 8),
        blend(0.24, 0.96, 1, 8),
    )


def test_finance_priors_are_fixed_where_a_committee_fixes_them():
    value = lambda n: catalog.prior_value(n)[1]  # noqa: E731
    assert isinstance(value("discount-rate"), float) and 0.10 <= value("discount-rate") <= 0.12  # a hurdle, not a draw
    assert value("tax-rate") == 0.21 and value("debt-share") == 0.60 and value("contract-term") == 48
    wacc = value("debt-share") * _tri("debt-rate")[1] * (1 - value("tax-rate")) + (1 - value("debt-share")) * value(
        "cost-of-equity"
    )
    assert wacc == pytest.approx(value("discount-rate"), abs=0.002)
    for n in (
        "contract-share",
        "contract-usage",
        "contract-default-probability",
        "succession-token-price-step",
        "succession-rental-step",
        "rental-decline-hopper",
        "rental-decline-blackwell",
        "token-price-decline",
    ):
        assert 0 <= _tri(n)[0] and _tri(n)[2] < 1, n  # shares in [0, 1], steps and declines in [0, 1)
    assert _tri("succession-first-month")[0] >= 1 and _tri("succession-every-months")[0] >= 1


# --------------------------------------------------------------------------- rentals and calibration


BANDS = {"hgx-h100": (1.30, 4.70), "hgx-h200": (1.60, 3.50), "hgx-b200": (2.90, 7.91), "gb200-nvl72": (3.30, 9.00)}


def test_every_system_has_sourced_rental_tiers():
    for name in SYSTEMS:
        quotes = catalog.rental_quotes(name)
        assert set(quotes) == {"on_demand", "reserved_1y", "reserved_3y"}
        assert quotes["reserved_3y"] == (catalog.get_entry(name).tco_usd_per_gpu_hour.costr,) * 2  # SemiAnalysis costr
        rows = {r["field"]: r for r in catalog.entry_details(name)}
        for tier, q in quotes.items():
            row = rows[f"rental_usd_per_gpu_hour.{tier}"]
            if q is None:
                assert "NOT FOUND" in row["note"], (name, tier)
            else:
                assert row["source"].strip() and row["date"].strip() and row["tag"] in catalog.TAGS, (name, tier)
        assert "rental_band (calibration)" in rows


def test_rental_band_is_3y_reserved_low_to_on_demand_high():
    for name, band in BANDS.items():
        assert catalog.rental_band(name) == band
        q = catalog.rental_quotes(name)
        assert band == (q["reserved_3y"][0], q["on_demand"][1])
    assert catalog.rental_band("hgx-b200")[1] == round(9.00 * 2.90 / 3.30, 2)  # GB200 on-demand scaled by costr
    for name in set(SYSTEMS) - set(BANDS):  # one tier only: no band, and the error says so
        with pytest.raises(CatalogError, match="NOT FOUND"):
            catalog.rental_band(name)
    with pytest.raises(CatalogError, match="did you mean 'gb200-nvl72'"):
        catalog.rental_band("gb200-nv72")


def test_rental_tiers_are_validated():
    from mcrisk.study.rentals import CalibrationPoint, RentalTier

    with pytest.raises(ValidationError, match="NOT FOUND"):
        RentalTier(low=None, note="unknown")
    with pytest.raises(ValidationError, match="low <= high"):
        RentalTier(low=3.0, high=2.0, source="x", date="2025", tag="I")
    with pytest.raises(ValidationError, match="derivation"):
        RentalTier(low=1.0, high=2.0, source="x", date="2025", tag="D")
    with pytest.raises(ValidationError, match="extra"):
        RentalTier(low=1.0, high=2.0, source="x", date="2025", tag="I", url="y")
    with pytest.raises(ValidationError, match="NOT FOUND"):
        CalibrationPoint(note="none")


def _median(v):
    """Median of a fixed value, uniform or triangular DIST, by plain arithmetic."""
    if not isinstance(v, dict):
        return float(v)
    if v["dist"] == "uniform":
        return (v["low"] + v["high"]) / 2
    assert v["dist"] == "triangular", v
    a, c, b = v["low"], v["mode"], v["high"]
    if (c - a) / (b - a) >= 0.5:
        return a + math.sqrt((b - a) * (c - a) / 2)
    return b - math.sqrt((b - a) * (b - c) / 2)


def implied_revenue_per_gpu_hour(name):
    """First-year revenue per installed GPU-hour from the catalog's medians: throughput x efficiency x
    utilization x price, the price averaged over months 1-12 of its fixed-model decline."""
    c = catalog.get_entry(name).calibration
    tput = _median(
        catalog.workload_fields(c.workload, name, c.interactivity_tok_s_user, c.serving)[
            "throughput_tokens_per_s_per_gpu"
        ]
    )
    price = _median(
        catalog.prior_value(c.price_prior)[1]
        if c.price_prior
        else catalog.workload_price(c.workload, c.interactivity_tok_s_user)
    )
    eff = _median(catalog.prior_value("production-efficiency")[1])
    util = _median(catalog.prior_value("fleet-utilization")[1])
    decline = _median(catalog.prior_value("token-price-decline")[1])
    year1 = sum((1 - decline) ** (t / 12) for t in range(1, 13)) / 12
    return tput * eff * util * price * year1 * 3600 / 1e6


def test_median_helper_matches_known_values():
    assert _median({"dist": "triangular", "low": 0, "mode": 1, "high": 2}) == pytest.approx(1)
    assert _median({"dist": "triangular", "low": 0, "mode": 0, "high": 1}) == pytest.approx(1 - math.sqrt(0.5))
    assert _median({"dist": "triangular", "low": 0, "mode": 1, "high": 1}) == pytest.approx(math.sqrt(0.5))


@pytest.mark.parametrize("name", SYSTEMS)
def test_token_revenue_per_gpu_hour_lies_in_the_rental_band(name):
    """The calibration: what the catalog's token economics earn per installed GPU-hour in the first
    year (medians) lies between the 3-year reserved and the on-demand rental price of the same GPU."""
    point = catalog.get_entry(name).calibration
    if name not in BANDS:  # one rental tier only: no band to hold it against, and the catalog says so
        assert "NOT FOUND" in point.note
        return
    assert point.workload is not None, f"{name}: a system with a rental band needs a calibration point"
    low, high = catalog.rental_band(name)
    revenue = implied_revenue_per_gpu_hour(name)
    assert low <= revenue <= high, f"{name}: ${revenue:.2f} per GPU-hour outside its rental band ${low}-{high}"


def test_calibration_uses_the_default_studys_workload_for_rack_and_hopper():
    for name in ("gb200-nvl72", "hgx-h200", "hgx-h100"):
        c = catalog.get_entry(name).calibration
        assert (c.workload, c.price_prior) == ("deepseek-r1-8k1k", "token-price-dsr1-class")
    # NVIDIA's single-node H200 baseline at 50 tok/s/user earns under a third of the band's floor.
    h200_nvidia = catalog.workload_fields("deepseek-r1-8k1k", "hgx-h200", 50)["throughput_tokens_per_s_per_gpu"]
    assert h200_nvidia / 5687 * implied_revenue_per_gpu_hour("hgx-h200") < catalog.rental_band("hgx-h200")[0] / 3


def test_software_speedup_ceilings_cannot_fall_below_one():
    for name in CURVES:
        c = catalog.software_curve_fields(name)["software_speedup"]["ceiling"]
        support_low = c if not isinstance(c, dict) else c.get("value", c.get("low"))
        assert support_low is not None and support_low >= 1, f"{name}: ceiling {c} can fall below 1"
        assert not isinstance(c, dict) or c["dist"] in ("fixed", "uniform", "triangular", "pert"), name


def test_capex_per_gpu_is_on_one_basis_across_systems():
    def per_gpu(name: str) -> dict[str, float]:
        fields = catalog.system_fields(name)
        return {k: fields["capex_usd"][k] / fields["gpus_per_unit"] for k in ("low", "mode", "high")}

    gb200, b200 = per_gpu("gb200-nvl72"), per_gpu("hgx-b200")
    assert all(gb200[k] >= b200[k] for k in gb200), (gb200, b200)  # a rack GPU carries NVLink switches and Grace
    assert sum(gb200.values()) / 3 >= sum(b200.values()) / 3
    assert per_gpu("hgx-h100")["mode"] < b200["mode"]  # Hopper (2023 prices) below Blackwell

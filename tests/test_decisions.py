"""Decision analytics with known answers: overrides, stress tests, sweeps, break-even, convergence."""

from __future__ import annotations

import contextlib
import copy
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from mcrisk.engine.plan import draw_inputs, make_plan
from mcrisk.errors import StudyError
from mcrisk.stats import reduce as red
from mcrisk.stats.convergence import mcse, parse_target
from mcrisk.study.columns import column_name
from mcrisk.study.schema import study_from_dict
from mcrisk.study.variants import apply, grid, parse_assignment
from mcrisk.workflows.run import run_study
from mcrisk.workflows.sweep import run_sweep

from .conftest import small_study

P0 = "market.token_price.initial_usd_per_mtok"
UTIL = "market.demand.utilization"


def point_study() -> dict:
    """Every input fixed, no shocks: one scenario is the whole answer."""
    return {
        "name": "point",
        "simulation": {"scenarios": 1, "horizon_months": 36, "precision": "float64"},
        "market": {
            "token_price": {"initial_usd_per_mtok": 1.1, "annual_decline": 0.3},
            "demand": {"utilization": 0.6, "ramp_months": 4},
            "electricity": {"usd_per_kwh": 0.09},
        },
        "facility": {"pue": 1.25, "colocation_usd_per_kw_month": 180},
        "systems": {
            "rack": {
                "gpus_per_unit": 72,
                "capex_usd": 3.4e6,
                "it_power_kw": 132,
                "throughput_tokens_per_s_per_gpu": 2500,
                "maintenance_fraction_per_year": 0.03,
                "license_usd_per_gpu_year": 400,
                "residual_value_fraction": 0.1,
            },
        },
    }


def one(result, metric: str, system: str = "rack") -> float:
    return float(result.summary.set_index(["system", "metric"]).loc[(system, metric), "mean"])


# --------------------------------------------------------------------------- --set


def test_parse_assignment_reads_yaml_values():
    assert parse_assignment("market.token_price.annual_decline=0.9") == ("market.token_price.annual_decline", [0.9])
    path, [v] = parse_assignment("systems.rack.capex_usd={dist: uniform, low: 3e6, high: 4e6}")
    assert v == {"dist": "uniform", "low": 3e6, "high": 4e6}
    assert parse_assignment("systems.rack.units=1,2,4", many=True)[1] == [1, 2, 4]
    assert parse_assignment("facility.pue={dist: uniform, low: 1.1, high: 1.3},1.5", many=True)[1] == [
        {"dist": "uniform", "low": 1.1, "high": 1.3},
        1.5,
    ]
    with pytest.raises(StudyError, match="expected PATH=VALUE"):
        parse_assignment("market.token_price.annual_decline")
    # what cannot be set says where it is changed (it said "simulation settings have their own
    # options" of the horizon too, which has none)
    for text, where in [
        ("simulation.seed=3", "use --seed for simulation.seed"),
        ("simulation.horizon_months=12", "simulation.horizon_months is part of the study: change it in the study file"),
        ("name=x", "name is part of the study"),
        ("markt.x=1", "did you mean 'market'?"),
    ]:
        with pytest.raises(StudyError, match="only market, facility") as e:
            parse_assignment(text)
        assert where in str(e.value)


def test_override_problems_name_the_override():
    raw = small_study()
    with pytest.raises(StudyError) as e:
        apply(raw, {"market.token_price.annual_decline": 1.5, "market.token_price.initial_usd_per_mtk": 1.0})
    text = str(e.value)
    assert "--set market.token_price.annual_decline" in text and "--set market.token_price.initial_usd_per_mtk" in text
    with pytest.raises(StudyError, match="is a value, not a section"):
        apply(raw, {"market.token_price.volatility.low": 1.0})
    # a field of a system the study does not have (it was reported as that system's missing fields)
    with pytest.raises(StudyError) as e:
        apply(raw, {"systems.rak.units": 2})
    assert (
        "--set systems.rak.units: unknown system 'rak': did you mean 'rack'? the study's systems are rack, server"
        in str(e.value)
    )
    assert "required" not in str(e.value)
    with pytest.raises(StudyError, match="is set twice"):
        grid([("facility.pue", [1.1]), ("facility.pue", [1.2])])


def test_set_on_run_changes_the_study_as_run(tmp_path):
    base = run_study(point_study(), out=tmp_path / "a", diagnostic_draws=0)
    doubled = run_study(point_study(), out=tmp_path / "b", diagnostic_draws=0, overrides={"systems.rack.units": 2})
    assert one(doubled, "npv_usd") == pytest.approx(2 * one(base, "npv_usd"), rel=1e-12)
    assert "units: 2" in (doubled.folder / "study.yaml").read_text()
    assert doubled.manifest["options"]["overrides"] == {"systems.rack.units": 2}


def test_breakeven_price_plugged_back_gives_npv_zero(tmp_path):
    base = run_study(point_study(), out=tmp_path / "a", diagnostic_draws=0)
    price = one(base, "breakeven_price_usd_per_mtok")
    again = run_study(point_study(), out=tmp_path / "b", diagnostic_draws=0, overrides={P0: price})
    assert abs(one(again, "npv_usd")) <= 1e-8 * one(base, "capex_usd")
    assert one(again, "irr") == pytest.approx(0.10, abs=1e-9)  # the discount rate


def test_breakeven_utilization_plugged_back_gives_npv_zero(tmp_path):
    base = run_study(point_study(), out=tmp_path / "a", diagnostic_draws=0)
    target = one(base, "breakeven_utilization")
    assert 0 < target < 1
    u = 0.6 * target / one(base, "mean_utilization")  # U_t = ramp_t u: scaling the path is scaling u
    again = run_study(point_study(), out=tmp_path / "b", diagnostic_draws=0, overrides={UTIL: u})
    assert abs(one(again, "npv_usd")) <= 1e-8 * one(base, "capex_usd")
    assert one(again, "mean_utilization") == pytest.approx(target, rel=1e-12)


# --------------------------------------------------------------------------- stress


STRESS = {
    "nothing": {},
    "price-war": {"market.token_price.annual_decline": 0.9},
    "power-spike": {"market.electricity.usd_per_kwh": {"dist": "uniform", "low": 0.3, "high": 0.4}},
}


@pytest.fixture(scope="module")
def stressed(tmp_path_factory):
    raw = small_study(scenarios=1500)
    raw["stress"] = STRESS
    return run_study(raw, out=tmp_path_factory.mktemp("stress") / "run", write_scenarios=False, diagnostic_draws=0)


def test_a_stress_that_overrides_nothing_equals_the_base_case(stressed):
    table = stressed.stress
    base = table[table.stress == "base"].drop(columns=["stress", "overrides"]).reset_index(drop=True)
    none = table[table.stress == "nothing"].drop(columns=["stress", "overrides"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(base, none, check_exact=True)
    sub = pd.read_csv(stressed.folder / "stress" / "nothing" / "summary.csv")
    pd.testing.assert_frame_equal(
        sub.drop(columns=["ess", "r_hat", "mcse_p5"]),
        stressed.summary.drop(columns=["ess", "r_hat", "mcse_p5"]),
        check_exact=True,
    )


def test_stresses_move_npv_the_way_they_should(stressed):
    t = stressed.stress.set_index(["stress", "system"])
    for system in ("rack", "server"):
        assert t.loc[("price-war", system), "npv_usd_p50"] < t.loc[("base", system), "npv_usd_p50"]
        assert t.loc[("power-spike", system), "npv_usd_p50"] < t.loc[("base", system), "npv_usd_p50"]
        assert t.loc[("price-war", system), "npv_usd_p50_change"] < 0
        # a power price changes no revenue: same scenarios, same ROI multiple
        assert t.loc[("power-spike", system), "roi_multiple_p50"] == t.loc[("base", system), "roi_multiple_p50"]
    assert (stressed.folder / "stress.csv").exists()
    assert sorted(p.name for p in (stressed.folder / "stress").iterdir()) == sorted(STRESS)
    assert t.loc[("price-war", "rack"), "overrides"] == "market.token_price.annual_decline=0.9"


def test_stress_section_is_validated_at_load_time():
    raw = small_study()
    raw["stress"] = {"bad": {"market.token_price.annual_decline": 1.2, "market.nope": 1}, "base": {}}
    with pytest.raises(StudyError) as e:
        study_from_dict(raw)
    text = str(e.value)
    assert "stress: stress names must" in text and "'base'" in text
    raw["stress"] = {"bad": {"market.token_price.annual_decline": 1.2, "market.nope": 1}}
    with pytest.raises(StudyError) as e:
        study_from_dict(raw)
    paths = {p.path for p in e.value.problems}
    assert "stress.bad.market.token_price.annual_decline" in paths and "stress.bad.market.nope" in paths
    raw["stress"] = {"sim": {"simulation.seed": 4}}
    with pytest.raises(StudyError, match="only market, facility"):
        study_from_dict(raw)


_COMPILING: list[list[str]] = []  # the lists xla_compilations() is filling
_COMPILING_LISTENS: list[bool] = []


def _on_event(event: str, duration: float, **kw) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        for names in _COMPILING:
            names.append(kw.get("fun_name", "?"))


@contextlib.contextmanager
def xla_compilations():
    """The names of the programs XLA compiles (or loads from a disk cache) inside the block."""
    if not _COMPILING_LISTENS:  # registered once per process (older JAX cannot unregister)
        jax.monitoring.register_event_duration_secs_listener(_on_event)
        _COMPILING_LISTENS.append(True)
    names: list[str] = []
    _COMPILING.append(names)
    try:
        yield names
    finally:
        _COMPILING.remove(names)


def test_a_variant_that_changes_only_distribution_values_compiles_nothing(tmp_path):
    """Distribution parameters and the copula factor are arguments of the sample stage, as fixed
    values are of the simulate stage: a second study with the same forms in the same columns (a
    stress, a sweep point) compiles no program, and gives what it gives when run from scratch."""
    from mcrisk.engine import programs

    raw = small_study(scenarios=600)
    variant = copy.deepcopy(raw)
    market, rack = variant["market"], variant["systems"]["rack"]
    market["token_price"]["initial_usd_per_mtok"] = {"dist": "lognormal", "p5": 0.3, "p95": 3.0}
    market["token_price"]["annual_decline"] = {"dist": "pert", "low": 0.4, "mode": 0.6, "high": 0.95}
    market["demand"]["utilization"] = {"dist": "beta", "mean": 0.45, "sd": 0.1}
    market["electricity"]["usd_per_kwh"] = {"dist": "triangular", "low": 0.1, "mode": 0.18, "high": 0.25}
    variant["facility"]["colocation_usd_per_kw_month"] = {
        "dist": "normal",
        "mean": 150,
        "sd": 30,
        "low": 100,
        "high": 250,
    }
    rack["price_multiplier"] = {"dist": "discrete", "values": [0.8, 1.0, 1.1, 1.3], "weights": [1, 1, 2, 1]}
    rack["software_speedup"]["ceiling"] = {"dist": "loguniform", "low": 1.2, "high": 2.0}
    variant["correlations"] = [[a, b, -rho] for a, b, rho in raw["correlations"]]
    opts = dict(chunk_size=200, diagnostic_draws=0, stress=False)
    run_study(raw, out=tmp_path / "base", **opts)
    with xla_compilations() as compiled:
        reused = run_study(variant, out=tmp_path / "variant", **opts)
    assert compiled == []
    programs._EXECUTABLES.clear()  # from scratch: every stage compiled again, for the variant alone
    with xla_compilations() as compiled:
        fresh = run_study(copy.deepcopy(variant), out=tmp_path / "fresh", **opts)
    assert compiled
    a, b = (pd.read_parquet(r.folder / "scenarios.parquet") for r in (reused, fresh))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(reused.summary, fresh.summary, check_exact=True)
    # and the draws are those of a sample program with the values baked in as constants
    plan = make_plan(study_from_dict(variant), scenarios=600, seed=3, precision="float32", chunk_size=200)
    baked = jax.jit(lambda i: draw_inputs(plan, i))(jnp.arange(600, dtype=jnp.uint32))
    for inp in plan.uncertain:
        system = inp.path.split(".")[1] if inp.path.startswith("systems.") else "rack"
        rows = a[a.system == system].sort_values("scenario")
        np.testing.assert_array_equal(
            rows[column_name(inp.column)].to_numpy(), np.asarray(baked[inp.path]), err_msg=inp.path
        )


def test_runs_of_other_sizes_in_one_chunk_shape_compile_nothing(tmp_path):
    """A run smaller than a chunk takes a power-of-two chunk of at least 512 scenarios, and the
    scenario count is an argument of its programs: a run of 500 after one of 300 compiles nothing,
    and its first 300 rows are the smaller run's (the padding is masked out)."""
    opts = dict(stress=False, analyze=False, diagnostic_draws=100)
    small = run_study(small_study(scenarios=300), out=tmp_path / "small", **opts)
    with xla_compilations() as compiled:
        large = run_study(small_study(scenarios=500), out=tmp_path / "large", **opts)
    assert compiled == []
    assert small.manifest["chunk_size"] == large.manifest["chunk_size"] == 512
    a, b = (pd.read_parquet(r.folder / "scenarios.parquet") for r in (small, large))
    b = b[b.scenario < 300].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_variants_keep_the_base_case_draws_with_sobol():
    """A stress that fixes one input leaves every other input's Sobol' points where they were."""
    raw = small_study(sampler="sobol")
    base = study_from_dict(raw)
    variant = apply(raw, {"market.token_price.annual_decline": 0.9, "facility.pue": 1.2})
    idx = jnp.arange(256, dtype=jnp.uint32)
    p_base = make_plan(base, scenarios=256, seed=3, precision="float64", chunk_size=256)
    p_var = make_plan(variant, scenarios=256, seed=3, precision="float64", chunk_size=256, dims=p_base.dims)
    a, b = draw_inputs(p_base, idx), draw_inputs(p_var, idx)
    assert set(a) - set(b) == {"market.token_price.annual_decline", "facility.pue"}
    for path in b:
        np.testing.assert_array_equal(np.asarray(a[path]), np.asarray(b[path]), err_msg=path)
    # without the base dimensions the Sobol' columns shift, and the draws change
    p_own = make_plan(variant, scenarios=256, seed=3, precision="float64", chunk_size=256)
    c = draw_inputs(p_own, idx)
    assert any(not np.array_equal(np.asarray(a[p]), np.asarray(c[p])) for p in c)


# --------------------------------------------------------------------------- sweep


def test_sweep_grid_on_common_random_numbers(tmp_path):
    raw = small_study(scenarios=400)
    folder, table = run_sweep(
        raw, [("systems.rack.units", [2, 4]), ("facility.pue", [1.2, 1.4])], out=tmp_path / "sw", chunk_size=200
    )
    assert (folder / "sweep.csv").exists() and (folder / "manifest.json").exists()
    assert list(table.columns[:4]) == ["point", "systems.rack.units", "facility.pue", "system"]
    assert len(table) == 4 * 2 and sorted(table.point.unique()) == [0, 1, 2, 3]
    t = table.set_index(["systems.rack.units", "facility.pue", "system"])
    # twice the racks on the same scenarios: exactly twice the NPV of each scenario, so of its mean
    assert t.loc[(4, 1.2, "rack"), "npv_usd_mean"] == pytest.approx(
        2 * t.loc[(2, 1.2, "rack"), "npv_usd_mean"], rel=1e-9
    )
    assert t.loc[(4, 1.2, "server"), "npv_usd_mean"] == t.loc[(2, 1.2, "server"), "npv_usd_mean"]
    assert t.loc[(2, 1.4, "rack"), "npv_usd_mean"] < t.loc[(2, 1.2, "rack"), "npv_usd_mean"]
    # a grid point equals a plain run with the same --set values
    single = run_study(
        copy.deepcopy(raw),
        out=tmp_path / "one",
        chunk_size=200,
        write_scenarios=False,
        overrides={"systems.rack.units": 4, "facility.pue": 1.4},
        diagnostic_draws=0,
    )
    assert t.loc[(4, 1.4, "rack"), "npv_usd_p50"] == one_stat(single, "npv_usd", "p50")


def one_stat(result, metric, stat, system="rack"):
    return float(result.summary.set_index(["system", "metric"]).loc[(system, metric), stat])


# --------------------------------------------------------------------------- convergence


def test_target_mcse_stops_at_the_right_chunk(tmp_path):
    raw = small_study(scenarios=20_000)
    result = run_study(raw, out=tmp_path / "r", chunk_size=500, target_mcse="npv_usd:mean:400000", diagnostic_draws=0)
    conv = result.manifest["convergence"]
    n = conv["scenarios"]
    assert conv["met"] and conv["reached_mcse"] <= 400_000 and n < 20_000 and n % 500 == 0
    assert result.manifest["scenarios"] == n and int(result.summary["n"].iloc[0]) == n
    # the bands cover the scenarios that ran, and the manifest says so (it said the cap, 20,000)
    assert result.manifest["monthly_scenarios"] == n
    assert set(pd.read_parquet(result.folder / "monthly.parquet")["n"]) == {n}
    # recompute the criterion after every chunk from the written scenarios
    rows = pd.read_parquet(result.folder / "scenarios.parquet", columns=["scenario", "system", "npv_usd"])
    assert rows.scenario.max() == n - 1
    wide = rows.pivot(index="scenario", columns="system", values="npv_usd").to_numpy()
    for k in range(1, n // 500 + 1):
        x = wide[: 500 * k]
        err = (x.std(axis=0, ddof=1) / np.sqrt(len(x))).max()
        assert err == pytest.approx(conv["trace"][k - 1][1], rel=1e-9)  # (NPV is float64 in the rows too)
        assert (err <= 400_000) == (k == n // 500)


def test_target_mcse_reports_when_the_maximum_is_reached(tmp_path):
    result = run_study(
        small_study(scenarios=1000),
        out=tmp_path / "r",
        chunk_size=500,
        target_mcse="npv_usd:p5:1",
        write_scenarios=False,
        diagnostic_draws=0,
    )
    conv = result.manifest["convergence"]
    assert not conv["met"] and conv["scenarios"] == 1000 and len(conv["trace"]) == 2
    assert conv["reached_mcse"] > 1
    assert conv["reason"] == f"maximum reached: the largest MCSE, {conv['reached_mcse']:.4g}, is above 1"


def test_mcse_of_a_statistic_that_is_not_finite_is_not_finite():
    """A mean over values holding +-inf is +-inf or NaN (summary.csv), a percentile at +inf is +inf:
    their MCSE is infinite, not that of the finite values alone, and computing it warns of nothing."""
    spec = red.SketchSpec(rel_accuracy=0.01, min_abs=1e-3, max_abs=1e3)
    rng = np.random.default_rng(5)
    x = np.stack([rng.normal(10.0, 2.0, 400) for _ in range(4)])
    x[1, :7] = np.inf  # a few +inf: mean +inf
    x[2, :5], x[2, 5:9] = np.inf, -np.inf  # both: mean NaN
    x[3, :300] = np.inf  # mostly +inf: the median and its interval are +inf
    x[0, :50] = np.nan  # NaN is left out, as in summary.csv: sd / sqrt(N) of the rest
    state = red.to_host(red.update(red.init_state(4, spec), jnp.asarray(x), jnp.ones(400, bool), spec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = mcse(state, parse_target("irr:mean:1"), spec)
        median = mcse(state, parse_target("irr:p50:1"), spec)
    fin = x[0, 50:]
    assert mean[0] == pytest.approx(fin.std(ddof=1) / np.sqrt(fin.size), rel=1e-12)
    assert list(mean[1:]) == [np.inf] * 3
    assert np.all(np.isfinite(median[:3])) and median[3] == np.inf


def test_target_mcse_is_not_met_where_the_statistic_is_not_finite(tmp_path, recwarn, capsys):
    """The rack's IRR holds +inf and -inf (summary.csv's mean: NaN) and the server's median payback
    is beyond the horizon (+inf): no target is met, the record says why, and nothing warns."""
    from mcrisk.cli.terminal import print_sections

    runs = {}
    for target in ("irr:mean:1e9", "payback_months:p50:1e9"):
        runs[target] = run_study(
            small_study(scenarios=1000),
            out=tmp_path / target.split(":")[0],
            chunk_size=500,
            target_mcse=target,
            write_scenarios=False,
            diagnostic_draws=0,
            monthly=False,
        )
    irr = runs["irr:mean:1e9"]
    assert np.isnan(one_stat(irr, "irr", "mean")) and one_stat(irr, "irr", "n_posinf") > 0
    conv = irr.manifest["convergence"]
    assert not conv["met"] and conv["reached_mcse"] == np.inf and conv["scenarios"] == 1000
    assert conv["reason"] == (
        "MCSE not finite: irr holds infinite values (summary.csv's n_posinf, n_neginf), "
        "so its mean is +-inf or NaN for rack"
    )
    assert list(conv) == ["target", "method", "reached_mcse", "met", "reason", "scenarios", "maximum", "trace"]
    payback = runs["payback_months:p50:1e9"]
    assert one_stat(payback, "payback_months", "p50", "server") == np.inf
    conv = payback.manifest["convergence"]
    assert not conv["met"] and conv["reason"] == "MCSE not finite: the p50 of payback_months is +inf for server"

    # the file is strict JSON (it held Infinity, which jq and JavaScript refuse): null for the infinite MCSE
    def refuse(constant):
        raise AssertionError(f"manifest.json holds {constant}")

    on_disk = json.loads((payback.folder / "manifest.json").read_text(), parse_constant=refuse)["convergence"]
    assert on_disk["reason"] == conv["reason"] and on_disk["reached_mcse"] is None
    assert not [w for w in recwarn if "convergence" in w.filename], [str(w.message) for w in recwarn]
    capsys.readouterr()
    print_sections(payback)
    printed = " ".join(capsys.readouterr().out.split())
    assert (
        "convergence: MCSE of payback_months:p50:1e+09 NOT met: inf after 1,000 of at most 1,000 scenarios" in printed
    )
    assert "why: MCSE not finite: the p50 of payback_months is +inf for server" in printed


@pytest.mark.parametrize(
    "text, message",
    [
        ("npv_usd:p5", "expected METRIC:STAT:VALUE"),
        ("npv:p5:100", "did you mean 'npv_usd'"),
        ("npv_usd:p500:100", "STAT must be"),
        ("npv_usd:median:100", "STAT must be"),
        ("npv_usd:p5:-3", "VALUE must be a positive number"),
    ],
)
def test_target_mcse_errors(text, message):
    with pytest.raises(StudyError, match=message):
        parse_target(text)


# --------------------------------------------------------------------------- the CLI


def test_cli_run_with_set_and_target_and_the_sweep_command(tmp_path):
    from typer.testing import CliRunner

    from mcrisk.cli.app import app

    from .conftest import write_study

    runner = CliRunner()
    study = write_study(tmp_path / "s.yaml", small_study(scenarios=4000))
    r = runner.invoke(
        app,
        [
            "run",
            str(study),
            "--out",
            str(tmp_path / "r"),
            "--chunk-size",
            "1000",
            "--no-scenarios",
            "--set",
            "facility.pue=1.2",
            "--target-mcse",
            "npv_usd:mean:1e12",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "what must be true" in r.output and "convergence: MCSE of npv_usd:mean:1e+12 met" in r.output
    assert "after 1,000 of at most 4,000 scenarios" in r.output
    assert "pue: 1.2" in (tmp_path / "r" / "study.yaml").read_text()
    bad = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "bad"), "--set", "facility.pue=0.5"])
    assert bad.exit_code == 2 and "--set facility.pue" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
    r = runner.invoke(
        app,
        [
            "sweep",
            str(study),
            "--out",
            str(tmp_path / "sw"),
            "-n",
            "300",
            "--chunk-size",
            "300",
            "--set",
            "systems.rack.units=1,3",
        ],
    )
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert len(table) == 4 and set(table["systems.rack.units"]) == {1, 3}
    bad = runner.invoke(app, ["sweep", str(study), "--out", str(tmp_path / "sw2"), "--set", "systems.rack.units=1,0"])
    assert bad.exit_code == 2 and "--set systems.rack.units" in bad.output and not (tmp_path / "sw2").exists()

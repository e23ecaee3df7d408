"""Studies: YAML 1.2 numbers, defaults, inputs, and a table of malformed studies.

Every malformed study exits 2 with one message per problem naming its path, shows no
traceback, and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.errors import StudyError
from mcrisk.study.schema import load_study, parse_yaml, study_from_dict

from .conftest import CONFIGS, small_study, write_study

runner = CliRunner()


def test_yaml_12_numbers_are_numbers():
    assert parse_yaml("a: 3.0e6\nb: 1e5\nc: -2.5E-3\nd: 1_000\ne: 12\nf: .5") == {
        "a": 3.0e6,
        "b": 1e5,
        "c": -2.5e-3,
        "d": 1000,
        "e": 12,
        "f": 0.5,
    }


def test_yaml_11_forms_are_not_numbers_booleans_or_dates():
    """PyYAML's YAML 1.1 reads 010 as 8, 1:30 as 90, `on` as True and 2025-10-01 as a date."""
    got = parse_yaml("a: 010\nb: 1:30\nc: on\nd: yes\ne: 2025-10-01\nf: 0o17\ng: 0x1F\nh: 1__0\ni: =\nj: True\nk: ~")
    assert got == {
        "a": 10,
        "b": "1:30",
        "c": "on",
        "d": "yes",
        "e": "2025-10-01",
        "f": 15,
        "g": 31,
        "h": "1__0",
        "i": "=",
        "j": True,
        "k": None,
    }


def test_merge_keys_copy_a_mapping_and_may_be_overridden():
    got = parse_yaml("base: &b {low: 1, high: 2}\nx:\n  <<: *b\n  high: 3\n  dist: uniform\n")
    assert got["x"] == {"low": 1, "high": 3, "dist": "uniform"}


@pytest.mark.parametrize("text", ["a: 1\nb: 2\na: 3\n", "x: {<<: {a: 1}, a: 2, a: 3}\n"])
def test_duplicate_keys_are_refused(text):
    with pytest.raises(StudyError, match="duplicate key 'a'"):
        parse_yaml(text)


def test_what_mcrisk_writes_reads_back_the_same_in_yaml_11_and_12():
    import yaml

    from mcrisk.study import yaml12

    data = {
        "s": ["1e5", "yes", "on", "010", "1_000", "1:30", "2025-10-01", "=", "~", "null", "True", "x"],
        "n": [1e-5, 3.0e6, 12, float("inf"), -0.5, True, None],
    }
    text = yaml12.dump(data)
    assert yaml12.load(text) == data
    assert yaml.safe_load(text) == data


@pytest.mark.parametrize(
    "field, value",
    [
        ("simulation.scenarios", "'1000'"),
        ("simulation.seed", "1:30"),
        ("simulation.scenarios", "yes"),
        ("systems.server.units", '"2"'),
        ("systems.server.depreciation_years", "'3'"),
    ],
)
def test_text_in_a_number_field_is_refused_by_name(field, value):
    import yaml

    study = small_study()
    _set(field, "@@")(study)
    text = yaml.safe_dump(study, sort_keys=False).replace("'@@'", value)
    with pytest.raises(StudyError) as err:
        study_from_dict(parse_yaml(text))
    assert f"{field}: must be a number, got " in str(err.value)


def test_a_whole_float_is_a_count_and_a_nonsense_container_is_named():
    study = small_study(scenarios=1e3)
    assert study_from_dict(study).simulation.scenarios == 1000
    study["correlations"] = 5
    with pytest.raises(StudyError, match="correlations: must be a list such as"):
        study_from_dict(study)
    study = small_study()
    study["systems"] = {}
    with pytest.raises(StudyError, match="systems: must have at least 1 entry, got 0"):
        study_from_dict(study)


@pytest.mark.parametrize("name", ["default.yaml", "seed_claims.yaml"])
def test_shipped_studies_validate(name):
    study = load_study(CONFIGS / name)
    assert study.systems


def test_defaults_are_filled_in():
    study = load_study(CONFIGS / "seed_claims.yaml")
    gb = study.systems["gb200"]
    assert gb.units == 1 and gb.idle_power_fraction.value == 0.3 and gb.efficiency.value == 1.0
    assert study.market.demand.persistence.value == 0.8
    assert study.finance.discount_rate.value == 0.10
    assert study.simulation.sampler == "random" and study.simulation.precision == "float32"
    resolved = study.resolved()
    assert resolved["systems"]["gb200"]["software_speedup"] == {"ceiling": 1.0, "time_constant_months": 6.0}


def test_inputs_are_named_by_study_path():
    study = study_from_dict(small_study())
    paths = [i.path for i in study.inputs()]
    cols = {i.path: i.column for i in study.inputs()}
    assert paths[0] == "market.token_price.initial_usd_per_mtok"
    assert cols["systems.rack.software_speedup.ceiling"] == "system.software_speedup.ceiling"
    assert cols["facility.pue"] == "facility.pue"
    assert len(paths) == len(set(paths))


def test_digest_ignores_key_order_and_defaults():
    a = small_study()
    b = small_study()
    b["systems"]["server"]["units"] = 1  # the default, written out
    b["market"] = dict(reversed(list(b["market"].items())))
    assert study_from_dict(a).digest() == study_from_dict(b).digest()


def _set(path: str, value):
    def mutate(study: dict):
        *parents, last = path.split(".")
        node = study
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return mutate


def _drop(path: str):
    def mutate(study: dict):
        *parents, last = path.split(".")
        node = study
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


# (case id, how the study is broken, text that must appear in the error)
MALFORMED = [
    ("unknown-top-level", _set("simulaton", {}), "simulaton: unknown field; did you mean 'simulation'"),
    ("missing-name", _drop("name"), "name: required field is missing"),
    ("missing-utilization", _drop("market.demand.utilization"), "market.demand.utilization: required field is missing"),
    ("missing-market", _drop("market"), "market: required field is missing"),
    ("no-systems", _set("systems", {}), "systems:"),
    (
        "unknown-system-field",
        _set("systems.rack.capex", 1),
        "systems.rack.capex: unknown field; did you mean 'capex_usd'",
    ),
    ("missing-capex", _drop("systems.server.capex_usd"), "systems.server.capex_usd: required field is missing"),
    ("horizon-zero", _set("simulation.horizon_months", 0), "simulation.horizon_months: must be >= 1, got 0"),
    ("horizon-too-long", _set("simulation.horizon_months", 241), "simulation.horizon_months: must be <= 240"),
    ("negative-scenarios", _set("simulation.scenarios", -5), "simulation.scenarios: must be >= 1, got -5"),
    ("huge-scenarios", _set("simulation.scenarios", 10**12), "simulation.scenarios: must be <= 4294967295"),
    ("unknown-sampler", _set("simulation.sampler", "halton"), "simulation.sampler: must be one of"),
    ("bad-precision", _set("simulation.precision", "float16"), "simulation.precision: must be one of"),
    (
        "utilization-above-1",
        _set("market.demand.utilization", 1.2),
        "market.demand.utilization: must lie in [0, 1], got 1.2",
    ),
    (
        "utilization-unbounded-normal",
        _set("market.demand.utilization", {"dist": "normal", "mean": 0.5, "sd": 0.1}),
        "truncate it with low/high",
    ),
    (
        "decline-of-1",
        _set("market.token_price.annual_decline", 1.0),
        "market.token_price.annual_decline: must lie in [0, 1)",
    ),
    ("pue-below-1", _set("facility.pue", 0.9), "facility.pue: must lie in [1, inf]"),
    (
        "uniform-low-above-high",
        _set("systems.rack.capex_usd", {"dist": "uniform", "low": 3.0e6, "high": 2.0e6}),
        "systems.rack.capex_usd.high: must be > low",
    ),
    (
        "triangular-mode-outside",
        _set("systems.rack.capex_usd", {"dist": "triangular", "low": 1, "mode": 5, "high": 3}),
        "systems.rack.capex_usd.mode",
    ),
    (
        "lognormal-p95-below-p5",
        _set("systems.rack.throughput_tokens_per_s_per_gpu", {"dist": "lognormal", "p5": 5000, "p95": 4000}),
        "systems.rack.throughput_tokens_per_s_per_gpu.p95",
    ),
    (
        "normal-sd-negative",
        _set("facility.colocation_usd_per_kw_month", {"dist": "normal", "mean": 190, "sd": -1, "low": 0}),
        "facility.colocation_usd_per_kw_month.sd",
    ),
    (
        "discrete-weights-zero",
        _set("systems.rack.price_multiplier", {"dist": "discrete", "values": [1, 2], "weights": [0, 0]}),
        "systems.rack.price_multiplier.weights",
    ),
    (
        "beta-sd-too-large",
        _set("market.demand.utilization", {"dist": "beta", "mean": 0.97, "sd": 0.3}),
        "market.demand.utilization.sd",
    ),
    (
        "unknown-dist",
        _set("systems.rack.capex_usd", {"dist": "gamma", "shape": 2}),
        "systems.rack.capex_usd: unknown distribution 'gamma'",
    ),
    (
        "dist-without-tag",
        _set("systems.rack.capex_usd", {"low": 1, "high": 2}),
        "systems.rack.capex_usd: a distribution needs a 'dist' key",
    ),
    (
        "text-for-number",
        _set("systems.rack.it_power_kw", "lots"),
        "systems.rack.it_power_kw: must be a number or a distribution",
    ),
    ("fractional-gpus", _set("systems.rack.gpus_per_unit", 2.5), "systems.rack.gpus_per_unit: must be a whole number"),
    ("zero-units", _set("systems.rack.units", 0), "systems.rack.units: must be >= 1"),
    ("dotted-system-name", _set("systems", {"a.b": small_study()["systems"]["server"]}), "no dots"),
    # the name is the default run folder outputs/<name>/: one plain folder name, never a path
    ("name-dot", _set("name", "."), "name: the study name must use letters, digits, '_' and '-'"),
    ("name-parent-path", _set("name", "../../x"), "name: the study name must use letters, digits, '_' and '-'"),
    ("name-absolute-path", _set("name", "/abs/path"), "name: the study name must use letters, digits, '_' and '-'"),
    ("name-with-space", _set("name", "my run"), "name: the study name must use letters, digits, '_' and '-'"),
    ("name-trailing-newline", _set("name", "run\n"), "name: the study name must use letters, digits, '_' and '-'"),
    (
        "correlation-unknown-input",
        _set("correlations", [["market.demand.utilisation", "facility.pue", 0.2]]),
        "correlations.0.0: unknown input 'market.demand.utilisation'; did you mean 'market.demand.utilization'",
    ),
    (
        "correlation-fixed-input",
        _set("correlations", [["facility.pue", "systems.server.it_power_kw", 0.2]]),
        "correlations.0.1: 'systems.server.it_power_kw' is fixed",
    ),
    (
        "correlation-out-of-range",
        _set("correlations", [["facility.pue", "finance.discount_rate", 1.5]]),
        "correlations.0.2: must be <= 1",
    ),
    ("correlation-self", _set("correlations", [["facility.pue", "facility.pue", 0.5]]), "pairs an input with itself"),
    (
        "correlation-not-psd",
        _set(
            "correlations",
            [
                ["facility.pue", "finance.discount_rate", 0.9],
                ["facility.pue", "market.demand.utilization", 0.9],
                ["finance.discount_rate", "market.demand.utilization", -0.9],
            ],
        ),
        "correlations: ",
    ),
]


@pytest.mark.parametrize("case, mutate, expected", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_study_exits_2_naming_the_field(tmp_path, case, mutate, expected):
    study = small_study()
    mutate(study)
    path = write_study(tmp_path / "study.yaml", study)
    out = tmp_path / "run"
    for args in (["validate", str(path)], ["run", str(path), "--out", str(out), "-q"]):
        result = runner.invoke(app, args)
        text = result.stdout + (result.stderr or "")
        assert result.exit_code == 2, text
        assert expected in text, text
        assert "Traceback" not in text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["study.yaml"]


RAW_FILES = [
    ("bad-yaml", b"name: [unclosed\nmarket: {", "not valid YAML at line"),
    ("empty-file", b"", "got an empty file"),
    ("a-list", b"- 1\n- 2\n", "a study must be a mapping of sections, got a list"),
    ("not-utf8", b"name: caf\xe9\n", "not UTF-8"),
    ("duplicate-key", b"name: a\nname: b\n", "duplicate key 'name'"),
]


@pytest.mark.parametrize("case, content, expected", RAW_FILES, ids=[c[0] for c in RAW_FILES])
def test_unreadable_study_exits_2(tmp_path, case, content, expected):
    path = tmp_path / "study.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "-q"])
    text = result.stdout + (result.stderr or "")
    assert result.exit_code == 2, text
    assert expected in text, text
    assert not (tmp_path / "run").exists()


def test_all_problems_are_reported_at_once(tmp_path):
    study = small_study()
    _set("simulation.horizon_months", 0)(study)
    _set("market.demand.utilization", 1.5)(study)
    _drop("systems.server.capex_usd")(study)
    result = runner.invoke(app, ["validate", str(write_study(tmp_path / "s.yaml", study))])
    assert result.exit_code == 2
    text = result.stdout + (result.stderr or "")
    for path in ("simulation.horizon_months", "market.demand.utilization", "systems.server.capex_usd"):
        assert path in text


@pytest.mark.parametrize(
    "flag",
    [
        ["--scenarios", "0"],
        ["--chunk-size", "0"],
        ["--precision", "half"],
        ["--seed", "-1"],
        ["--shard", "3/2"],
        ["--shard", "x"],
        ["--columns", "npv"],
        ["--columns", ""],
        ["--columns", " , "],
        ["--sample-fraction", "0"],
        ["--monthly-scenarios", "0"],
        ["--monthly-scenarios", "many"],
    ],
)
def test_bad_cli_flags_exit_2(tmp_path, flag):
    path = write_study(tmp_path / "s.yaml", small_study())
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "-q", *flag])
    text = result.stdout + (result.stderr or "")
    assert result.exit_code == 2, text
    assert flag[0] in text
    assert not (tmp_path / "run").exists()


def test_shard_in_out_without_a_shard_is_refused(tmp_path):
    """{shard} in --out is filled in by --shard only: without it the run made a folder named with the braces."""
    path = write_study(tmp_path / "s.yaml", small_study())
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run-{shard}"), "-q"])
    assert result.exit_code == 2 and "--out" in result.output and "only --shard fills in" in result.output
    assert list(tmp_path.iterdir()) == [path]


def test_a_real_process_shows_no_traceback(tmp_path):
    study = small_study()
    _set("systems.rack.capex_usd", {"dist": "uniform", "low": 3.0e6, "high": 2.0e6})(study)
    path = write_study(tmp_path / "s.yaml", study)
    proc = subprocess.run(
        [sys.executable, "-m", "mcrisk.cli.app", "run", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "systems.rack.capex_usd.high: must be > low (3.0e+06), got 2.0e+06" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- what importing costs


def _python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


def test_importing_mcrisk_leaves_jax_in_float32_until_enable_float64():
    code = (
        "import mcrisk, jax.numpy as jnp; print(jnp.arange(3.0).dtype); "
        "mcrisk.enable_float64(); print(jnp.arange(3.0).dtype)"
    )
    assert _python(code).split() == ["float32", "float64"]


def test_the_study_layer_imports_no_jax():
    modules = (
        "catalog",
        "checks",
        "correlations",
        "distributions",
        "overrides",
        "presets",
        "schema",
        "variants",
        "yaml12",
    )
    code = f"import sys; import {', '.join('mcrisk.study.' + m for m in modules)}; print('jax' in sys.modules)"
    assert _python(code) == "False"

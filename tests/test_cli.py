"""The `mcrisk` command as a user runs it: a real process, the default study, the printed table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app

from .conftest import CONFIGS

runner = CliRunner()


def test_mcrisk_run_without_arguments_runs_the_default_study(tmp_path):
    # at 80 columns, as in a pipe or a Slurm log
    env = dict(os.environ, MCRISK_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="80")
    proc = subprocess.run(
        [sys.executable, "-m", "mcrisk.cli.app", "run", "--scenarios", "3000", "--chunk-size", "1024"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for system in ("gb200_nvl72", "b200_hgx", "h200_hgx"):
        assert system in proc.stdout
    for line in proc.stdout.splitlines():  # no line over 80 characters, no name cut short
        assert len(line) <= 80 and "…" not in line and "..." not in line, line
    # the decision first: NPV P50 and P5, P(loss), CVaR 95, IRR and payback per system and the portfolio
    head = proc.stdout.split("calibration:")[0]
    for header in ("NPV P50", "NPV P5", "P(loss)", "CVaR 95", "IRR P50", "payback", "portfolio"):
        assert header in head, header
    assert "has the highest median NPV" in proc.stdout
    # the decision-analytics sections: what must be true, the default study's stresses, drivers
    for section in (
        "what must be true",
        "rental $/GPU-h",  # b200_hgx rents GPU-hours: its break-even rental, not a token price
        "stress tests on the same scenarios",
        "price-war",
        "what drives NPV ($)",
        "initial token price ($/Mtok)",
        "P(row > column)",
    ):
        assert section in proc.stdout, section
    folder = tmp_path / "outputs" / "ai-fleet-2026"
    for name in ("breakeven.csv", "monthly.parquet", "stress.csv", "sensitivity.csv", "comparison.csv"):
        assert (folder / name).is_file(), name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scenarios"] == 3000 and manifest["chunk_size"] == 1024
    # a second run into the same folder is refused, and leaves it alone
    again = subprocess.run(
        [sys.executable, "-m", "mcrisk.cli.app", "run", "--scenarios", "10"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert json.loads((folder / "manifest.json").read_text())["scenarios"] == 3000


def test_validate_prints_the_resolved_study():
    result = runner.invoke(app, ["validate", str(CONFIGS / "seed_claims.yaml")])
    assert result.exit_code == 0, result.stdout
    assert "idle_power_fraction: 0.3" in result.stdout  # a default, filled in
    assert "# valid: 2 system(s)" in result.stdout


def test_timings_table_shows_each_stage_and_its_throughput(tmp_path):
    from .conftest import small_study, write_study

    path = write_study(tmp_path / "s.yaml", small_study(scenarios=100))
    # (counts as users write them: 6e2 is 600)
    result = runner.invoke(
        app,
        [
            "run",
            str(path),
            "-n",
            "6e2",
            "--chunk-size",
            "1_024",
            "--out",
            str(tmp_path / "r"),
            "--no-stress",
            "--no-analyze",
            "--timings",
        ],
    )
    assert result.exit_code == 0, result.stdout
    text = result.stdout
    assert "where the time went: 600 scenarios" in text
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    for stage in ("compile", "sample", "simulate", "summarize", "wall"):
        assert f"│ {stage}" in text
    # the simulate row's throughput is the manifest's scenario-months over its seconds
    sim = manifest["seconds"]["simulate"]
    assert f"{600 * manifest['horizon_months'] / sim:.3g}" in text


# --------------------------------------------------------------------------- options refused up front


def _text(result) -> str:
    return result.stdout + (result.stderr or "")


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    from mcrisk import run_study

    from .conftest import small_study

    root = tmp_path_factory.mktemp("cli")
    return run_study(small_study(scenarios=600), out=root / "whole", analyze=False, stress=False).folder


@pytest.mark.parametrize(
    "extra, named",
    [
        (
            ["-n", "500", "--seed", "99", "--no-scenarios", "--set", "facility.pue=1.5"],
            "--scenarios, --seed, --no-scenarios, --set",
        ),
        (["--shard", "0/2"], "--shard"),
        (["STUDY"], "STUDY"),
        (["--resume", "somewhere"], "--resume"),
    ],
    ids=["counts-and-overrides", "shard", "study", "resume"],
)
def test_from_manifest_refuses_the_options_it_fixes(tmp_path, whole_run, extra, named):
    extra = [str(CONFIGS / "default.yaml") if x == "STUDY" else x for x in extra]
    result = runner.invoke(
        app, ["run", "--from-manifest", str(whole_run / "manifest.json"), "--out", str(tmp_path / "E"), *extra]
    )
    text = _text(result)
    assert result.exit_code == 2, text
    assert f"--from-manifest: cannot be combined with {named}" in text and "Traceback" not in text
    assert not (tmp_path / "E").exists() and not (tmp_path / ".E.partial").exists()


def test_resume_refuses_the_options_it_fixes(tmp_path):
    (tmp_path / ".run.partial" / "checkpoint").mkdir(parents=True)
    result = runner.invoke(
        app, ["run", "--resume", str(tmp_path / "run"), "-n", "3", "--out", str(tmp_path / "B"), "--force"]
    )
    text = _text(result)
    assert result.exit_code == 2, text
    assert "--resume: cannot be combined with --scenarios, --out, --force" in text and "Traceback" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.partial"]


def test_merge_of_a_whole_run_says_so(tmp_path, whole_run):
    result = runner.invoke(app, ["merge", str(whole_run), "--out", str(tmp_path / "merged")])
    text = _text(result)
    assert result.exit_code == 2, text
    assert "is a whole run, not a shard" in text and "checkpoint.json" not in text
    assert not (tmp_path / "merged").exists()


def test_merge_of_shards_of_different_runs_names_what_differs(tmp_path):
    from mcrisk import run_study

    from .conftest import small_study

    a = run_study(small_study(scenarios=512), out=tmp_path / "a", chunk_size=256, shard=(0, 2), seed=1, stress=False)
    b = run_study(small_study(scenarios=512), out=tmp_path / "b", chunk_size=256, shard=(1, 2), seed=2, stress=False)
    result = runner.invoke(app, ["merge", str(a.folder), str(b.folder), "--out", str(tmp_path / "merged")])
    text = _text(result)
    assert result.exit_code == 2, text
    assert "is a shard of another run (seeds differ)" in text
    assert not (tmp_path / "merged").exists()


def _edited_manifest(whole_run, **changes) -> dict:
    m = json.loads((whole_run / "manifest.json").read_text())
    for key, value in changes.items():
        target, _, field = key.rpartition("__")
        (m[target] if target else m)[field] = value
    return m


@pytest.mark.parametrize(
    "write, says",
    [
        (lambda w: "[]", "it is damaged or not a run manifest (a JSON array, not an object)"),
        (lambda w: '{"seed": 1', "it is damaged or not a run manifest (not valid JSON"),
        (
            lambda w: json.dumps({"seed": 1}),
            "it is damaged or not a run manifest (no fields 'study_sha256', 'options')",
        ),
        (
            lambda w: json.dumps(_edited_manifest(w, options__scenarios="many", options__colour=1)),
            "('options.scenarios' must be a whole number, got 'many'; 'options.colour': not an option of this version of mcrisk run)",
        ),
        (
            lambda w: json.dumps(_edited_manifest(w, options__shard=["a", "b"])),
            "('options.shard' must be a list of whole numbers, got ['a', 'b'])",
        ),
        (
            lambda w: json.dumps(
                {"study": "s", "study_sha256": "0" * 64, "grid": [], "points": [], "outputs": {"sweep": "sweep.csv"}}
            ),
            "is a sweep's manifest (mcrisk sweep), not a run manifest: each point of the sweep is a run folder with its own",
        ),
    ],
    ids=["array", "not-json", "missing-fields", "bad-options", "bad-shard", "sweep"],
)
def test_from_manifest_names_what_is_wrong_with_a_manifest(tmp_path, whole_run, write, says):
    """--from-manifest with JSON that is not a run manifest: exit 2, the file and what is wrong
    (not an object, the fields missing or mistyped, another kind of manifest), nothing written."""
    manifest = tmp_path / "m" / "manifest.json"
    shutil.copytree(whole_run, manifest.parent)  # beside its study.yaml, as a run's
    manifest.write_text(write(whole_run))
    result = runner.invoke(app, ["run", "--from-manifest", str(manifest), "--out", str(tmp_path / "E")])
    text = " ".join(_text(result).split())
    assert result.exit_code == 2, text
    assert str(manifest) in text and says in text and "Traceback" not in text
    assert not (tmp_path / "E").exists() and not (tmp_path / ".E.partial").exists()


@pytest.mark.parametrize(
    "damage, says",
    [
        (
            lambda d: (d / "manifest.json").write_text("[]"),
            "manifest.json is damaged or not what mcrisk wrote (a JSON array, not an object)",
        ),
        (
            lambda d: (d / "manifest.json").write_text(json.dumps(_edited_manifest(d, shard="0/2"))),
            "manifest.json is damaged or not what mcrisk wrote ('shard' must be an object or null, got '0/2')",
        ),
        (
            lambda d: (d / "manifest.json").write_text(json.dumps(_edited_manifest(d, shard={"index": 0, "count": 2}))),
            "it has no reducers/checkpoint.json",
        ),
    ],
    ids=["manifest-array", "shard-text", "no-reducers"],
)
def test_merge_names_a_damaged_shard_folder(tmp_path, whole_run, damage, says):
    shard = tmp_path / "s0"
    shutil.copytree(whole_run, shard)
    damage(shard)
    result = runner.invoke(app, ["merge", str(shard), str(whole_run), "--out", str(tmp_path / "merged")])
    text = " ".join(_text(result).split())
    assert result.exit_code == 2, text
    assert f"cannot read run folder '{shard}': {says}" in text and "Traceback" not in text
    assert not (tmp_path / "merged").exists() and not (tmp_path / ".merged.partial").exists()


def test_an_error_quoting_square_brackets_is_printed_as_written(tmp_path):
    """A message quotes paths and values from the user's files; rich must not read them as markup."""
    result = runner.invoke(app, ["report", str(tmp_path / "[/]run [bold]")])
    text = _text(result)
    assert result.exit_code == 2, text
    assert f"'{tmp_path / '[/]run [bold]'}' is not a run folder (no such folder)" in text and "Traceback" not in text


@pytest.mark.parametrize(
    "count, says",
    [
        ("1.5", "must be a whole number, got '1.5'"),
        ("lots", "must be a whole number (200000, 200_000 or 2e5), got 'lots'"),
    ],
)
def test_a_count_that_is_not_a_whole_number_is_refused_by_name(tmp_path, count, says):
    result = runner.invoke(app, ["run", "-n", count, "--out", str(tmp_path / "r")])
    text = " ".join(_text(result).replace("│", " ").split())  # (typer's box wraps the message)
    assert result.exit_code == 2, text
    assert "'--scenarios' / '-n'" in text and says in text and "Traceback" not in text
    assert not (tmp_path / "r").exists() and not (tmp_path / ".r.partial").exists()


def test_claims_check_the_scenario_count_before_running(tmp_path):
    result = runner.invoke(app, ["claims", "-n", "0", "--out", str(tmp_path / "claims")])
    text = _text(result)
    assert result.exit_code == 2, text
    assert "--scenarios: must be between 1" in text and "running" not in text
    assert not (tmp_path / "claims").exists()


def test_analyze_refuses_a_non_positive_top(whole_run):
    result = runner.invoke(app, ["analyze", str(whole_run), "--top", "-3"])
    text = _text(result)
    assert result.exit_code == 2, text
    assert "--top: must be a whole number >= 1, got -3" in text
    assert not (whole_run / "sensitivity.csv").exists()


def test_an_input_beyond_float32_is_refused_by_name(tmp_path):
    """1e39 kW would be inf in a float32 run, and every metric with it: refused, naming the
    input and the way out (float64), before any folder is published."""
    import yaml

    from .conftest import small_study

    study = small_study(scenarios=200)
    study["systems"]["server"]["it_power_kw"] = 1.0e39
    study["systems"]["rack"]["capex_usd"] = {"dist": "triangular", "low": 3e6, "mode": 4e6, "high": 1e39}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--no-stress", "--no-analyze", "-q"])
    assert res.exit_code == 2, res.output
    assert "systems.server.it_power_kw" in res.output and "systems.rack.capex_usd" in res.output
    assert "--precision float64" in res.output and "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / ".run.partial").exists()
    res = runner.invoke(
        app, ["run", str(path), "--out", str(out), "--precision", "float64", "--no-stress", "--no-analyze", "-q"]
    )
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "argv, starts",
    [
        (["run", "-n", "1e4"], True),
        (["-q", "claims"], True),
        (["sweep", "s.yaml", "--grid", "a=1,2"], True),
        (["report", "outputs/run"], False),  # never touches the device
        (["validate", "s.yaml"], False),
        ([], False),
        (["run", "--shard", "auto"], False),  # jax.distributed must start first
        (["run", "--shard=auto"], False),
    ],
)
def test_the_backend_starts_early_only_for_commands_that_simulate(monkeypatch, argv, starts):
    from mcrisk.cli import app as cli

    started = []
    monkeypatch.setattr(
        "threading.Thread", lambda target, name, daemon: type("T", (), {"start": lambda self: started.append(name)})()
    )
    from mcrisk.engine.cluster import COORDINATOR_ENV

    for key in COORDINATOR_ENV:
        monkeypatch.delenv(key, raising=False)
    cli._start_backend_early(argv)
    assert started == (["mcrisk-backend"] if starts else [])
    monkeypatch.setenv("MCRISK_COORDINATOR", "host:1234")  # under jax.distributed's launcher: never
    started.clear()
    cli._start_backend_early(argv)
    assert started == []


def test_a_run_imports_what_only_its_end_needs_while_it_compiles():
    """`mcrisk run` imports the CLI and the engine, not pandas or ArviZ (about a second, needed
    only for the summaries at the end): the chunk loop imports those in a thread once the stages
    are compiling, when the interpreter's lock is free, instead of before the run, on the path
    every run waits on."""
    code = (
        "import sys, mcrisk.cli.app, mcrisk.workflows.run, mcrisk.engine.loop; "
        "print(sorted(m for m in ('pandas', 'arviz', 'xarray', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_option_a_run_records_is_one_the_manifest_reader_knows(tmp_path):
    """RunOptions checks a manifest's options against its own list (an unknown one is refused as not
    this version's): the list and what run_study records must stay the same set."""
    from mcrisk import run_study
    from mcrisk.engine.options import OPTIONAL, RECORDED, RunOptions

    from .conftest import small_study

    result = run_study(small_study(scenarios=200), out=tmp_path / "r", stress=False, analyze=False, diagnostic_draws=0)
    assert set(result.manifest["options"]) == set(RECORDED) | set(OPTIONAL)
    assert RunOptions.record_problems(result.manifest["options"]) == []

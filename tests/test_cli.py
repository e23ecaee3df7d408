"""The `mcrisk` command as a user runs it: a real process, the default study, the printed table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from mcrisk.cli import app

from .conftest import CONFIGS

runner = CliRunner()


def test_mcrisk_run_without_arguments_runs_the_default_study(tmp_path):
    env = dict(os.environ, MCRISK_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "mcrisk.cli", "run", "--scenarios", "3000", "--chunk-size", "1024"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for system in ("gb200_nvl72", "b200_hgx", "h200_hgx"):
        assert system in proc.stdout
    assert "P(loss)" in proc.stdout and "NPV" in proc.stdout
    # the decision-analytics sections: what must be true, the default study's stresses, drivers
    for section in ("what must be true", "stress tests on the same scenarios", "price-war", "what drives npv_usd", "P(row > column)"):
        assert section in proc.stdout, section
    folder = tmp_path / "outputs" / "dsr1-rack-economics"
    for name in ("breakeven.csv", "monthly.parquet", "stress.csv", "sensitivity.csv", "comparison.csv"):
        assert (folder / name).is_file(), name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scenarios"] == 3000 and manifest["chunk_size"] == 1024
    # a second run into the same folder is refused, and leaves it alone
    again = subprocess.run(
        [sys.executable, "-m", "mcrisk.cli", "run", "--scenarios", "10"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
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

    path = write_study(tmp_path / "s.yaml", small_study(scenarios=600))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r"), "--no-stress", "--no-analyze", "--timings"])
    assert result.exit_code == 0, result.stdout
    text = result.stdout
    assert "where the time went: 600 scenarios" in text
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    for stage in ("compile", "sample", "simulate", "summarize", "wall"):
        assert f"│ {stage}" in text
    # the simulate row's throughput is the manifest's scenario-months over its seconds
    sim = manifest["seconds"]["simulate"]
    assert f"{600 * manifest['horizon_months'] / sim:.3g}" in text

"""Clean errors where a traceback was (issue 25, case 7): the study's size limits, enforced as it
is read, and a full disk or a read-only folder named in one line (exit 2)."""

from __future__ import annotations

import errno
import json
import shutil
import time

import pytest
from typer.testing import CliRunner

from mcrisk import run_study
from mcrisk.cli.app import app
from mcrisk.study import limits

from .conftest import small_study, write_study

runner = CliRunner()


def _text(result) -> str:
    return " ".join((result.stdout + (result.stderr or "")).split())


def _refused(args: list[str], says: str) -> str:
    result = runner.invoke(app, args)
    text = _text(result)
    assert result.exit_code == 2, text
    assert says in text and "Traceback" not in text, text
    return text


def _study_text(tmp_path, **changes) -> str:
    study = small_study(scenarios=64)
    study.update(changes)
    return write_study(tmp_path / "base.yaml", study).read_text()


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda t: t + "description: " + "[" * 500 + "]" * 500 + "\n", "nested more than 32 levels deep"),
        (lambda t: t.replace("units: 2", "units: 1e29"), "systems.rack.units: must be a whole number within ±"),
        (lambda t: t.replace("units: 2", "units: " + "9" * 5000), "a whole number of 5000 characters"),
        (lambda t: t.replace("name: small", "name: " + "n" * 300), "name: String should have at most 100 characters"),
        (lambda t: t + "description: " + "x" * 20_000 + "\n", "a text of 20,000 characters; at most 10,000"),
        (lambda t: t.replace("  server:", "  " + "s" * 150 + ":"), "a key (a name) of 150 characters; at most 100"),
    ],
    ids=["nesting", "units-1e29", "int-digits", "long-name", "long-text", "long-key"],
)
def test_a_study_beyond_the_limits_is_refused_by_validate_and_run(tmp_path, edit, says):
    path = tmp_path / "study.yaml"
    path.write_text(edit(_study_text(tmp_path)))
    _refused(["validate", str(path)], says)
    _refused(["run", str(path), "-q", "--out", str(tmp_path / "run")], says)
    assert not (tmp_path / "run").exists()


def test_a_deeply_nested_set_value_is_refused(tmp_path):
    study = write_study(tmp_path / "s.yaml", small_study(scenarios=64))
    value = "[" * 500 + "]" * 500
    text = _refused(
        ["run", str(study), "--set", f"market.demand.volatility={value}", "-q", "--out", str(tmp_path / "r")],
        "nested more than 32 levels deep",
    )
    assert len(text) < 600  # the value is shown cut short


def test_validate_refuses_a_huge_file_at_once(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(_study_text(tmp_path) + "description: " + "x" * (50 << 20) + "\n")
    t0 = time.perf_counter()
    _refused(["validate", str(path)], f"a study is at most {limits.MAX_BYTES:,}")
    assert time.perf_counter() - t0 < 5


def test_an_output_folder_name_too_long_for_the_file_system_is_refused(tmp_path):
    study = write_study(tmp_path / "s.yaml", small_study(scenarios=64))
    _refused(["run", str(study), "-q", "--out", str(tmp_path / ("o" * 300))], "at most 200")


def test_a_full_disk_is_one_line_and_keeps_the_run_for_resume(tmp_path, monkeypatch):
    """ENOSPC at the second checkpoint: exit 2, the reason and how to continue, no traceback."""
    import mcrisk.io.checkpoint as ck

    real, calls = ck.np.savez, {"n": 0}

    def savez(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(ck.np, "savez", savez)
    study = write_study(tmp_path / "s.yaml", small_study(scenarios=1024))
    args = ["run", str(study), "-q", "--out", str(tmp_path / "run"), "--chunk-size", "256", "--checkpoint-every", "1"]
    text = _refused(args, "No space left on device")
    assert f"mcrisk run --resume {tmp_path / 'run'} continues it" in text
    monkeypatch.setattr(ck.np, "savez", real)
    assert runner.invoke(app, ["run", "--resume", str(tmp_path / "run"), "-q"]).exit_code == 0


def test_report_and_analyze_of_a_read_only_folder_say_so(tmp_path, monkeypatch):
    """The file system refuses every write (EROFS, as a read-only mount does; the tests run as root,
    whom chmod does not stop): one line naming the folder, no traceback from the cleanup."""
    from pathlib import Path

    import pandas as pd

    run = run_study(small_study(scenarios=256), out=tmp_path / "run", stress=False).folder
    before = sorted(p.name for p in run.rglob("*"))

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    for name in ("write_bytes", "unlink", "mkdir"):
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)
    monkeypatch.setattr(shutil, "rmtree", refuse)
    _refused(["report", str(run)], "Read-only file system")
    _refused(["analyze", str(run)], "Read-only file system")
    monkeypatch.undo()
    assert sorted(p.name for p in run.rglob("*")) == before


def test_from_manifest_refuses_a_negative_count(tmp_path):
    run = run_study(small_study(scenarios=64), out=tmp_path / "run", stress=False, analyze=False).folder
    m = json.loads((run / "manifest.json").read_text())
    m["options"]["diagnostic_draws"] = -5
    (run / "manifest.json").write_text(json.dumps(m))
    _refused(
        ["run", "--from-manifest", str(run / "manifest.json"), "--out", str(tmp_path / "again")],
        "'options.diagnostic_draws' must be >= 0, got -5",
    )

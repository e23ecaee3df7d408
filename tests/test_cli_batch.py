"""The command in batch jobs and scripts: progress lines through logging when stderr is not a
terminal, the choices of an option in --help, and a --help that imports no JAX."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from mcrisk.cli.app import app
from mcrisk.cli.common import batch_log
from mcrisk.workflows.progress_log import ProgressLog, duration, log_interval

from .conftest import small_study, write_study

runner = CliRunner()
HEAVY = ("jax", "pandas", "pyarrow", "matplotlib", "scipy", "mcrisk.engine.loop")


# --------------------------------------------------------------------------- a light --help
@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["run", "--help"], ["sweep", "--help"], ["greeks", "--help"], ["merge", "--help"]],
)
def test_help_and_version_import_no_jax(argv):
    """What `mcrisk ...` imports before it exits (main ends the process with os._exit, after the atexit hooks)."""
    code = textwrap.dedent(
        f"""
        import atexit, sys
        atexit.register(lambda: print("HEAVY:", [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))
        sys.argv = ["mcrisk", *{argv!r}]
        from mcrisk.cli.app import main
        main()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stderr, out.stderr


def test_importing_the_command_imports_no_jax():
    code = f"import sys, mcrisk.cli.app; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# --------------------------------------------------------------------------- choices
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_help_shows_the_choices_of_precision(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "float32|float64" in result.stdout


def test_an_invalid_choice_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["run", "--precision", "float16", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    text = result.stdout + (result.stderr or "")
    assert "'float16' is not one of 'float32', 'float64'" in " ".join(text.replace("│", " ").split())
    assert "Traceback" not in text and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- the progress lines
class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_lines_at_a_steady_interval_with_rate_and_eta(caplog):
    clock = Clock()
    log = ProgressLog("simulating 'x'", interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="mcrisk"):
        log.start(0, 10_000)
        clock.t = 30.0  # compiling, then the first chunk
        log(1_000, 10_000)
        for k in range(2, 11):  # then a chunk every 4 s: 250 scenarios/s
            clock.t = 30.0 + 4 * (k - 1)
            log(1_000 * k, 10_000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "simulating 'x': starting, 0% (0/10,000 scenarios)",
        "simulating 'x': 10% (1,000/10,000 scenarios), first chunk after 30 s",
        # 12 s after the last line (chunks end at 34, 38, 42): 3,000 scenarios in 12 s, 6,000 left
        "simulating 'x': 40% (4,000/10,000 scenarios), 250 scenarios/s, ETA 24 s",
        "simulating 'x': 70% (7,000/10,000 scenarios), 250 scenarios/s, ETA 12 s",
        "simulating 'x': 100% (10,000/10,000 scenarios) in 1 min 6 s, 250 scenarios/s",
    ]


def test_a_resumed_pass_says_where_it_continues(caplog):
    clock = Clock()
    log = ProgressLog("simulating 'x'", interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="mcrisk"):
        log.start(4_096, 8_192)
        clock.t = 5.0
        log(8_192, 8_192)  # one chunk left: its time is all there is
    assert [r.getMessage() for r in caplog.records] == [
        "simulating 'x': resuming, 50% (4,096/8,192 scenarios)",
        "simulating 'x': 100% (8,192/8,192 scenarios) in 5 s, 819 scenarios/s",
    ]


def test_no_lines_and_no_work_without_a_listener(caplog):
    log = ProgressLog("x", interval=0.0)
    log.start(0, 10)
    log(10, 10)
    assert not [r for r in caplog.records if r.name == "mcrisk"]  # INFO is below the default WARNING


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MCRISK_LOG_INTERVAL", "2.5")
    assert log_interval() == 2.5
    monkeypatch.setenv("MCRISK_LOG_INTERVAL", "soon")
    with pytest.warns(RuntimeWarning, match="MCRISK_LOG_INTERVAL must be a number of seconds > 0, got 'soon'"):
        assert log_interval() == 10.0
    assert duration(59.6) == "1 min 0 s" and duration(7_300) == "2 h 1 min"


def test_batch_log_installs_a_handler_only_for_a_batch_job(monkeypatch):
    monkeypatch.delenv("MCRISK_LOG_INTERVAL", raising=False)
    logger = logging.getLogger("mcrisk")
    before, level = list(logger.handlers), logger.level
    with batch_log(quiet=True, interval=None):
        assert logger.handlers == before
    with batch_log(quiet=False, interval=2.5):  # (pytest's stderr is not a terminal)
        assert len(logger.handlers) == len(before) + 1 and logger.level == logging.INFO
        assert log_interval() == 2.5
    assert logger.handlers == before and logger.level == level and "MCRISK_LOG_INTERVAL" not in os.environ


def test_a_batch_run_prints_timestamped_progress_lines(tmp_path):
    path = write_study(tmp_path / "s.yaml", small_study(scenarios=100))
    env = dict(os.environ, COLUMNS="200")
    env.pop("FORCE_COLOR", None)
    args = [sys.executable, "-m", "mcrisk", "run", str(path), "-n", "2048", "--chunk-size", "512"]
    args += ["--no-stress", "--no-analyze", "--no-monthly", "--log-interval", "0.1"]
    proc = subprocess.run([*args, "-o", str(tmp_path / "r")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO mcrisk: "
    lines = proc.stderr.splitlines()
    assert re.fullmatch(stamp + r"simulating 'small': starting, 0% \(0/2,048 scenarios\)", lines[0]), lines
    assert any(
        re.fullmatch(stamp + r"simulating 'small': 25% \(512/2,048 scenarios\), first chunk after .*", x) for x in lines
    )
    end = stamp + r"simulating 'small': 100% \(2,048/2,048 scenarios\) in \d+ s, [\d,]+ scenarios/s"
    assert any(re.fullmatch(end, x) for x in lines), lines
    quiet = subprocess.run(
        [*args, "-q", "-o", str(tmp_path / "q")], env=env, capture_output=True, text=True, timeout=300
    )
    assert quiet.returncode == 0 and "INFO mcrisk" not in quiet.stderr, quiet.stderr

"""Integrity of run folders (issue 25): one writer per folder, verified resumes and merges,
`mcrisk verify`, inputs never destroyed, and what killed processes left cleaned up."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcrisk import run_study
from mcrisk.cli.app import app
from mcrisk.errors import RunFolderError
from mcrisk.io.verify import verify_run
from mcrisk.workflows.merge import merge_runs

from .conftest import small_study, write_study
from .test_reliability import same_outputs

runner = CliRunner()
N, CHUNK = 1024, 256  # 4 chunks


def _text(result) -> str:
    return " ".join((result.stdout + (result.stderr or "")).split())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A whole run (a checkpoint every chunk) and the two shards of the same run, never changed: copy before tampering."""
    root = tmp_path_factory.mktemp("integrity")
    study = small_study(scenarios=N)
    whole = run_study(study, out=root / "whole", chunk_size=CHUNK, checkpoint_every=1, stress=False).folder
    shards = [run_study(study, out=root / f"s{i}", chunk_size=CHUNK, shard=(i, 2), stress=False).folder for i in (0, 1)]
    return root, whole, shards


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _parts(folder: Path) -> list[Path]:
    return sorted((folder / "scenarios.parquet").glob("part-*.parquet"))


class Holder:
    """Another process holding a folder's lock, as a run does (flock on .NAME.lock, PID and host inside)."""

    def __init__(self, folder: Path):
        lock = folder.parent / f".{folder.name}.lock"
        code = (
            "import fcntl, os, socket, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()} {socket.gethostname()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def says(self) -> str:
        return f"in use by process {self.proc.pid} on {socket.gethostname()}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


# ----------------------------------------------------------------------------------------- one writer


def test_every_writer_refuses_a_locked_folder_and_names_its_holder(runs, tmp_path):
    """run --force, --resume, merge --out, report and analyze on a folder another process is
    writing: exit 2, naming the process and host, and nothing changed; once it is gone, they work."""
    _, whole, shards = runs
    run = _copy(whole, tmp_path / "run")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*"))
    holder = Holder(run)
    try:
        study = write_study(tmp_path / "s.yaml", small_study(scenarios=N))
        commands = {
            "force": ["run", str(study), "-n", "256", "--out", str(run), "--force", "-q"],
            "resume": ["run", "--resume", str(run), "-q"],
            "merge": ["merge", *map(str, shards), "--out", str(run), "--force", "-q"],
            "report": ["report", str(run)],
            "analyze": ["analyze", str(run)],
        }
        for name, args in commands.items():
            result = runner.invoke(app, args)
            text = _text(result)
            assert result.exit_code == 2, (name, text)
            assert holder.says() in text and "Traceback" not in text, (name, text)
        assert verify_run(run) == [f"it is being written by process {holder.proc.pid} on {socket.gethostname()}"]
        assert runner.invoke(app, ["verify", str(run)]).exit_code == 2
    finally:
        holder.stop()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    # the holder was killed: its lock file stays, stale, and is taken over
    assert (tmp_path / ".run.lock").exists()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    assert not (tmp_path / ".run.lock").exists()
    assert verify_run(run) == []


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / ".run.lock").write_text("999999999 some-host\n")
    result = run_study(small_study(scenarios=64), out=tmp_path / "run", stress=False)
    assert verify_run(result.folder) == []
    assert not (tmp_path / ".run.lock").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcrisk.cli.app", *args]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError


def test_force_and_resume_on_a_live_run_are_refused_and_it_finishes_whole(tmp_path):
    """Issue 25, cases 1 and 2: `--force` and `--resume` on the folder of a run still running are
    refused with exit 2 naming its process; the run finishes unharmed, and its folder verifies."""
    study = write_study(tmp_path / "study.yaml", small_study(scenarios=32768))
    out = tmp_path / "run"
    args = [str(study), "--out", str(out), "--chunk-size", "256", "--checkpoint-every", "2", "-q", "--no-stress"]
    proc = subprocess.Popen(_cli("run", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if not _wait_for(tmp_path / ".run.partial" / "checkpoint" / "checkpoint.json", proc):
            pytest.skip("the run finished before its first checkpoint was seen")
        seconds = [  # both at once, while the run goes on
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cmd in (
                _cli("run", *args, "--force", "-n", "512", "--seed", "99"),
                _cli("run", "--resume", str(out), "-q"),
            )
        ]
        for other in seconds:
            _, other_err = other.communicate(timeout=240)
            if proc.poll() == 0 and "in use by process" not in other_err:  # (the run published first)
                pytest.skip("the run finished before the second command could meet it")
            assert other.returncode == 2, other_err
            assert f"in use by process {proc.pid}" in other_err and "Traceback" not in other_err
    finally:
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert verify_run(out) == []
    assert json.loads((out / "manifest.json").read_text())["scenarios"] == 32768


# ----------------------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run interrupted after chunk 3 of 8 (a checkpoint every 2 chunks), and the same run uninterrupted."""
    root = tmp_path_factory.mktemp("interrupted")
    study = small_study(scenarios=2048)
    ref = run_study(study, out=root / "ref", chunk_size=256, checkpoint_every=2, stress=False).folder
    calls = {"n": 0}

    def stop(done, total):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, out=root / "run", chunk_size=256, checkpoint_every=2, stress=False, progress=stop)
    other = small_study(scenarios=2048)
    other["simulation"]["seed"] = 4
    with pytest.raises(KeyboardInterrupt):
        calls["n"] = 0
        run_study(other, out=root / "other", chunk_size=256, checkpoint_every=2, stress=False, progress=stop)
    return root, ref


def _edit_json(path: Path, **changes) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def _tamper_partial(root: Path, partial: Path, how: str) -> None:
    ck = partial / "checkpoint" / "checkpoint.json"
    parts = _parts(partial)
    if how == "study-edited":
        text = (partial / "study.yaml").read_text().replace("seed: 3", "seed: 5")
        assert text != (partial / "study.yaml").read_text()
        (partial / "study.yaml").write_text(text)
    elif how == "foreign-checkpoint":
        shutil.rmtree(partial / "checkpoint")
        shutil.copytree(root / ".other.partial" / "checkpoint", partial / "checkpoint")
    elif how == "next-chunk-99":
        _edit_json(ck, next_chunk=99)
    elif how == "next-chunk-behind":
        _edit_json(ck, next_chunk=2)
    elif how == "part-deleted":
        parts[1].unlink()
    elif how == "part-truncated":
        parts[1].write_bytes(parts[1].read_bytes()[:-100])
    elif how == "part-foreign":
        shutil.copy(_parts(root / ".other.partial")[0], parts[0])


@pytest.mark.parametrize(
    "how, says",
    [
        ("study-edited", "study.yaml is not the study the checkpoint was written for"),
        ("foreign-checkpoint", "study.yaml is not the study the checkpoint was written for"),
        ("next-chunk-99", "next_chunk 99 is outside the run's chunks 0-7"),
        ("next-chunk-behind", "its parts do not match next_chunk 2: parts of chunk(s) 2, 3 outside"),
        ("part-deleted", "part-000001-000.parquet is missing"),
        ("part-truncated", "part-000001-000.parquet has"),
        ("part-foreign", "its parts are not those its checkpoint recorded: scenarios.parquet/part-000000-000"),
    ],
)
def test_resume_verifies_the_partial_folder_first(interrupted, tmp_path, how, says):
    """Issue 25, case 3: a partial folder whose study, checkpoint or parts were changed is refused
    by --resume (exit 2, what is wrong, nothing changed) where it had published a blend."""
    root, _ = interrupted
    partial = _copy(root / ".run.partial", tmp_path / ".run.partial")
    _tamper_partial(root, partial, how)
    result = runner.invoke(app, ["run", "--resume", str(tmp_path / "run"), "-q"])
    text = _text(result)
    assert result.exit_code == 2, text
    assert says in text and "Traceback" not in text, text
    assert "the run cannot be resumed" in text
    assert not (tmp_path / "run").exists() and partial.is_dir()


def test_resume_of_an_untouched_partial_folder_equals_the_uninterrupted_run(interrupted, tmp_path):
    root, ref = interrupted
    partial = _copy(root / ".run.partial", tmp_path / ".run.partial")
    ck = json.loads((partial / "checkpoint" / "checkpoint.json").read_text())
    assert sorted(ck["parts"]) == [p.name for p in _parts(partial)][: len(ck["parts"])]
    assert ck["study_sha256"] and ck["options"]["seed"] == 3
    done = run_study(out=tmp_path / "run", resume=True)
    same_outputs(ref, done.folder)
    assert verify_run(done.folder) == []


# ----------------------------------------------------------------------------------------- merge


def _tamper_shards(s0: Path, s1: Path, how: str) -> None:
    if how == "part-deleted":
        _parts(s0)[0].unlink()
    elif how == "part-truncated":
        p = _parts(s0)[0]
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif how == "part-extra":
        shutil.copy(_parts(s1)[0], s0 / "scenarios.parquet")
    elif how == "reducers-swapped":
        tmp = s0.parent / "r"
        (s0 / "reducers").rename(tmp)
        (s1 / "reducers").rename(s0 / "reducers")
        tmp.rename(s1 / "reducers")


@pytest.mark.parametrize(
    "how, says",
    [
        ("part-deleted", "scenarios.parquet/part-000000-000.parquet is missing"),
        ("part-truncated", "scenarios.parquet/part-000000-000.parquet has"),
        ("part-extra", "scenarios.parquet/ holds part(s) it did not write: part-000002-000.parquet"),
        ("reducers-swapped", "reducers/state-000002.npz is missing"),
    ],
)
def test_merge_verifies_each_shard(runs, tmp_path, how, says):
    """Issue 25, case 4: a shard whose parts or reducers are not what its run wrote is refused by
    name (exit 2), where it had merged into a wrong run with exit 0."""
    _, _, shards = runs
    s0, s1 = (_copy(s, tmp_path / s.name) for s in shards)
    _tamper_shards(s0, s1, how)
    result = runner.invoke(app, ["merge", str(s0), str(s1), "--out", str(tmp_path / "merged"), "-q"])
    text = _text(result)
    assert result.exit_code == 2, text
    assert "is not what its run wrote" in text and says in text and "Traceback" not in text, text
    assert not (tmp_path / "merged").exists()


def test_merge_never_destroys_its_inputs(runs, tmp_path):
    """`merge P/s0 P/s1 --out P --force` (the output contains the shards) and an output inside a
    shard are refused, the shards untouched; a merge beside them verifies."""
    _, _, shards = runs
    p = tmp_path / "P"
    p.mkdir()
    s0, s1 = (_copy(s, p / s.name) for s in shards)
    for out in (p, s0 / "inner"):
        result = runner.invoke(app, ["merge", str(s0), str(s1), "--out", str(out), "--force", "-q"])
        assert result.exit_code == 2 and "which writing it would destroy" in _text(result), _text(result)
    assert verify_run(s0) == [] and verify_run(s1) == []
    merged = merge_runs([s0, s1], out=tmp_path / "merged")
    assert verify_run(merged.folder) == []
    assert merged.manifest["parts"] == {
        **json.loads((s0 / "manifest.json").read_text())["parts"],
        **json.loads((s1 / "manifest.json").read_text())["parts"],
    }


def test_force_never_replaces_a_folder_holding_its_study(tmp_path):
    out = tmp_path / "run"
    run_study(small_study(scenarios=64), out=out, stress=False)
    study = write_study(out / "mine.yaml", small_study(scenarios=64))
    with pytest.raises(RunFolderError, match="contains the input"):
        run_study(study, out=out, force=True)
    assert study.is_file()
    result = runner.invoke(app, ["run", "--from-manifest", str(out / "manifest.json"), "--out", str(out), "--force"])
    assert result.exit_code == 2 and "contains the input" in _text(result), _text(result)
    assert verify_run(out) == []


# ----------------------------------------------------------------------------------------- verify, readers


def _tamper_run(run: Path, other: Path, how: str) -> None:
    if how == "part-deleted":
        _parts(run)[-1].unlink()
    elif how == "part-truncated":
        p = _parts(run)[0]
        p.write_bytes(p.read_bytes()[:-10])
    elif how == "part-foreign":
        shutil.copy(_parts(other)[0], run / "scenarios.parquet" / "part-000009-000.parquet")
    elif how == "part-byte-changed":
        data = bytearray(_parts(run)[0].read_bytes())
        data[len(data) // 2] ^= 1
        _parts(run)[0].write_bytes(bytes(data))
    elif how == "summary-edited":
        text = (run / "summary.csv").read_text()
        (run / "summary.csv").write_text(text.replace("rack", "rock", 1))
    elif how == "study-edited":
        (run / "study.yaml").write_text((run / "study.yaml").read_text().replace("seed: 3", "seed: 4"))
    elif how == "checkpoint-left":
        (run / "checkpoint").mkdir()
    elif how == "manifest-parts-removed":
        m = json.loads((run / "manifest.json").read_text())
        del m["parts"]
        (run / "manifest.json").write_text(json.dumps(m))


TAMPERING = [
    ("part-deleted", "part-000003-000.parquet is missing"),
    ("part-truncated", "part-000000-000.parquet has"),
    ("part-foreign", "holds part(s) it did not write: part-000009-000.parquet"),
    ("part-byte-changed", "part-000000-000.parquet does not have the SHA-256"),
    ("summary-edited", "summary.csv does not have the SHA-256"),
    ("study-edited", "study.yaml is not the study the manifest was written for"),
    ("checkpoint-left", "it holds what a killed process left: checkpoint"),
    ("manifest-parts-removed", "it records no parts or files"),
]


@pytest.mark.parametrize("how, says", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_verify_names_each_tampering(runs, tmp_path, how, says):
    _, whole, shards = runs
    assert runner.invoke(app, ["verify", str(whole)]).exit_code == 0
    run = _copy(whole, tmp_path / "run")
    _tamper_run(run, shards[1], how)
    result = runner.invoke(app, ["verify", str(run)])
    text = _text(result)
    assert result.exit_code == 2 and says in text and "Traceback" not in text, text


@pytest.mark.parametrize("how", ["part-foreign", "part-deleted", "part-truncated"])
def test_report_and_analyze_read_only_the_parts_the_manifest_lists(runs, tmp_path, how):
    """Issue 25, case 4: a foreign part in scenarios.parquet/ (or one missing or cut short) makes
    report and analyze refuse the folder (exit 2), where they had silently used it."""
    _, whole, shards = runs
    run = _copy(whole, tmp_path / "run")
    _tamper_run(run, shards[1], how)
    for command in ("report", "analyze"):
        result = runner.invoke(app, [command, str(run)])
        text = _text(result)
        assert result.exit_code == 2, (command, text)
        # (a part cut short is no longer Parquet: it is named for that)
        said = "is damaged or not what mcrisk wrote" if how == "part-truncated" else "are not those its manifest lists"
        assert said in text and "part-" in text and "Traceback" not in text, text
    assert not (run / "report.html").exists()


# ----------------------------------------------------------------------------------------- leftovers, symlinks


def test_report_never_writes_through_a_figures_symlink(runs, tmp_path):
    _, whole, _ = runs
    run = _copy(whole, tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "npv.png").write_text("precious")
    (run / "figures").symlink_to(outside)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "not a folder (a symbolic link" in _text(result), _text(result)
    assert [p.name for p in outside.iterdir()] == ["npv.png"] and (outside / "npv.png").read_text() == "precious"


def test_what_killed_processes_left_is_removed_by_the_next_command(runs, tmp_path):
    """A killed report's .figures.tmp-PID, a killed publish's .NAME.old-PID and a checkpoint/ left
    in a published folder go at the next report, or the next run of the folder."""
    _, whole, _ = runs
    run = _copy(whole, tmp_path / "run")
    (run / ".figures.tmp-4242").mkdir()
    (run / ".figures.tmp-4242" / "npv.png").write_text("x")
    (run / ".report.html.tmp-4242").write_text("x")
    (run / "checkpoint").mkdir()
    assert verify_run(run) != []
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.name == "checkpoint") == []
    assert verify_run(run) == []
    old = _copy(whole, tmp_path / ".run.old-4242")
    run_study(small_study(scenarios=64), out=run, force=True, stress=False)
    assert not old.exists() and verify_run(run) == []


def test_a_publish_killed_between_its_renames_resumes_and_leaves_nothing(tmp_path):
    """SIGKILL after the old folder was set aside and before the new one is in place: the run
    resumes (its partial folder is complete) and the set-aside folder is removed."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import mcrisk.io.folder as f\n"
        "from tests.conftest import small_study\n"
        "from mcrisk import run_study\n"
        "real = Path.rename\n"
        "def rename(self, target):\n"
        "    out = real(self, target)\n"
        "    if '.old-' in str(target):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return out\n"
        "Path.rename = rename\n"
        f"run_study(small_study(scenarios=512), out={str(tmp_path / 'run')!r}, force=True, stress=False, chunk_size=256)\n"
    )
    first = run_study(small_study(scenarios=512), out=tmp_path / "run", stress=False, chunk_size=256)
    ref = _copy(first.folder, tmp_path / "ref")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "run").exists() and list(tmp_path.glob(".run.old-*"))
    done = run_study(out=tmp_path / "run", resume=True)
    same_outputs(ref, done.folder)
    assert not list(tmp_path.glob(".run.old-*")) and verify_run(done.folder) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_lock_is_released_and_removed_after_every_command(runs, tmp_path):
    _, whole, shards = runs
    run = _copy(whole, tmp_path / "run")
    assert runner.invoke(app, ["analyze", str(run)]).exit_code == 0
    with pytest.raises(RunFolderError):
        run_study(small_study(scenarios=64), out=run)  # exists without --force
    merge_runs(shards, out=tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")) == []
    assert sorted(p.name for p in shards[0].parent.iterdir() if p.name.endswith(".lock")) == []
    fd = os.open(tmp_path / ".run.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------- the report on degenerate runs


@pytest.mark.parametrize(
    "override, note",
    [
        ("market.demand.utilization=0", None),
        ("market.token_price.initial_usd_per_mtok=1e-300", "Too few scenarios with a finite operating margin"),
    ],
)
def test_the_report_of_a_degenerate_run_notes_what_it_cannot_draw(tmp_path, override, note):
    """Issue 25, case 5: `run --set ... --report` on valid, degenerate studies (every margin NaN:
    margin_bins raised IndexError) writes the page, with a note in place of the figure."""
    study = write_study(tmp_path / "s.yaml", small_study(scenarios=300))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(study), "--set", override, "--report", "-q", "--out", str(out)])
    assert result.exit_code == 0, _text(result)
    html = (out / "report.html").read_text()
    assert note is None or note in html
    assert verify_run(out) == []


def test_empty_nan_and_infinite_series_become_notes(runs, tmp_path):
    """The report's figures of series with no finite value (all NaN, all infinite, none at all)
    are one-line notes, never an error."""
    import numpy as np

    from mcrisk.report.data import load_run, margin_bins
    from mcrisk.report.markup import Figures
    from mcrisk.report.page import render

    _, whole, _ = runs
    run = load_run(_copy(whole, tmp_path / "run"))
    summary, rows = run["summary"], run["scenarios"]
    p = [c for c in summary.columns if c[:1] == "p" and c[1:].isdigit()]
    summary.loc[summary["metric"] == "roi_multiple", p] = np.inf  # all-infinite ROI
    summary.loc[summary["metric"] == "npv_usd", p] = np.nan  # all-NaN NPV
    rows["roi_multiple"] = np.inf
    rows["operating_margin"] = np.nan
    run["monthly"][["p5", "p25", "p50", "p75", "p95"]] = np.nan
    assert margin_bins(rows).empty and margin_bins(rows.iloc[:0]).empty
    html = render(run, Figures(tmp_path / "figs"))
    assert html.count("No distribution of") == 2
    assert "Too few scenarios with a finite operating margin" in html
    assert "No cash flow by month to draw" in html


@pytest.mark.parametrize("systems", [[1, {"x": 2}], [], ["nope"], "rack"])
def test_the_report_refuses_a_hostile_manifest(runs, tmp_path, systems):
    _, whole, _ = runs
    run = _copy(whole, tmp_path / "run")
    m = json.loads((run / "manifest.json").read_text())
    m["systems"] = systems
    (run / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(app, ["report", str(run)])
    text = _text(result)
    assert result.exit_code == 2 and "manifest.json is damaged" in text and "Traceback" not in text, text


# ----------------------------------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .test_reliability import data_hash  # noqa: E402

PROPS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
# What may happen to a part before a resume or a merge: (kind, which part, how much).
DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(["delete", "truncate", "flip", "foreign"]),
        st.integers(0, 7),
        st.floats(0.0, 1.0),
    ),
    max_size=2,
)


def _damage(parts: list[Path], foreign: list[Path], ops) -> None:
    for kind, k, x in ops:
        part = parts[k % len(parts)]
        if not part.exists():
            continue
        if kind == "delete":
            part.unlink()
        elif kind == "truncate":
            part.write_bytes(part.read_bytes()[: int(x * part.stat().st_size)])
        elif kind == "flip":
            data = bytearray(part.read_bytes())
            if not data:  # (truncated to nothing already: no byte to flip)
                continue
            data[min(len(data) - 1, int(x * len(data)))] ^= 0xFF
            part.write_bytes(bytes(data))
        else:
            shutil.copy(foreign[k % len(foreign)], part.parent / f"part-{k:06d}-{int(x * 3):03d}.parquet")


@settings(max_examples=6, **PROPS)
@given(ops=DAMAGE)
def test_resume_after_random_damage_is_refused_or_equals_the_uninterrupted_run(interrupted, tmp_path_factory, ops):
    """Parts of an interrupted run deleted, truncated, changed or added at random: --resume either
    refuses with a RunFolderError (the partial folder kept) or publishes a folder that verifies and
    equals the uninterrupted run (damage only to what the checkpoint does not cover)."""
    root, ref = interrupted
    where = tmp_path_factory.mktemp("resume-damage")
    partial = _copy(root / ".run.partial", where / ".run.partial")
    _damage(_parts(partial), _parts(root / ".other.partial"), ops)
    try:
        done = run_study(out=where / "run", resume=True)
    except RunFolderError as exc:
        assert "cannot" in str(exc) and partial.is_dir()
        return
    assert verify_run(done.folder) == []
    same_outputs(ref, done.folder)


@settings(max_examples=5, **PROPS)
@given(ops=DAMAGE, which=st.sampled_from([0, 1]))
def test_merge_after_random_damage_is_refused_or_equals_the_whole_run(runs, tmp_path_factory, ops, which):
    root, whole, shards = runs
    where = tmp_path_factory.mktemp("merge-damage")
    copies = [_copy(s, where / s.name) for s in shards]
    _damage(_parts(copies[which]), _parts(copies[1 - which]), ops)
    try:
        merged = merge_runs(copies, out=where / "merged")
    except RunFolderError as exc:
        assert "is not what its run wrote" in str(exc) and not (where / "merged").exists()
        return
    assert verify_run(merged.folder) == []
    assert data_hash(merged.folder) == data_hash(whole)


@settings(max_examples=4, **PROPS)
@given(
    pause=st.integers(1, 3),
    second=st.sampled_from(["run", "force", "resume", "merge", "report", "analyze"]),
    then=st.sampled_from(["finish", "interrupt"]),
)
def test_a_second_writer_during_a_run_is_refused_and_the_run_stays_whole(runs, tmp_path_factory, pause, second, then):
    """Two writers on one folder, interleaved at random: the run, paused after chunk `pause`, and a
    second command on its folder (refused: the run holds the lock); then the run finishes, or is
    interrupted and resumed. The folder verifies and equals the uninterrupted run."""
    import threading

    _, ref, shards = runs
    where = tmp_path_factory.mktemp("interleave")
    out = where / "run"
    if second in ("report", "analyze"):  # a finished folder there, being replaced by the run
        _copy(ref, out)
    paused, go, outcome = threading.Event(), threading.Event(), {}

    def progress(done, total):
        if done == pause * CHUNK:
            paused.set()
            go.wait(120)
            if then == "interrupt":
                raise KeyboardInterrupt

    def first():
        try:
            outcome["result"] = run_study(
                small_study(scenarios=N),
                out=out,
                chunk_size=CHUNK,
                checkpoint_every=1,
                stress=False,
                force=out.exists(),
                progress=progress,
            )
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert paused.wait(120)
    try:
        with pytest.raises(RunFolderError, match="(in use by|already writing) "):
            if second in ("run", "force"):
                run_study(small_study(scenarios=256), out=out, force=second == "force", stress=False)
            elif second == "resume":
                run_study(out=out, resume=True)
            elif second == "merge":
                merge_runs(shards, out=out, force=True)
            elif second == "report":
                from mcrisk.report.page import write_report

                write_report(out)
            else:
                from mcrisk.workflows.analyze import analyze_run

                analyze_run(out)
    finally:
        go.set()
        thread.join(300)
    if then == "interrupt":
        assert isinstance(outcome.get("error"), KeyboardInterrupt)
        if not (where / ".run.partial" / "checkpoint").is_dir():  # stopped before its first checkpoint
            return
        outcome["result"] = run_study(out=out, resume=True)
    assert verify_run(outcome["result"].folder) == []
    same_outputs(ref, outcome["result"].folder)

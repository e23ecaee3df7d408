"""Reliability: killed runs lose nothing and resume to the same outputs; runs reproduce; degenerate inputs are counted."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mcrisk import run_study
from mcrisk.errors import RunFolderError
from mcrisk.workflows.run import rerun_manifest

from .conftest import CONFIGS, small_study, write_study

# 24 chunks of 256 scenarios, a checkpoint every 3 chunks.
N, CHUNK, EVERY = 6144, 256, 3


def data_hash(folder: Path) -> str:
    """Hash of the scenario data (not of the file bytes): every column of every row, in order."""
    table = pq.read_table(folder / "scenarios.parquet")
    h = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).to_pandas()
        h.update(name.encode())
        if name == "system":
            h.update("\0".join(col.astype(str)).encode())
        else:
            h.update(np.ascontiguousarray(col.to_numpy()).tobytes())
    return h.hexdigest()


def same_outputs(a: Path, b: Path) -> None:
    assert data_hash(a) == data_hash(b)
    for name in ("summary.csv", "risk.csv", "study.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _cli(*args: str, env: dict) -> list[str]:
    return [sys.executable, "-m", "mcrisk.cli.app", "run", *args]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    study = write_study(root / "study.yaml", small_study(scenarios=N))
    env = dict(os.environ, MCRISK_CACHE_DIR=str(root / "xla-cache"))
    reference = root / "reference"
    args = [str(study), "--out", str(reference), "--chunk-size", str(CHUNK), "--checkpoint-every", str(EVERY), "-q"]
    subprocess.run(_cli(*args, env=env), env=env, check=True, timeout=600)
    return root, study, env, reference


def _wait_for_checkpoint(partial: Path, at_least: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    ck = partial / "checkpoint" / "checkpoint.json"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return -1
        try:
            done = json.loads(ck.read_text())["next_chunk"]
            if done >= at_least:
                return done
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    raise TimeoutError


@pytest.mark.parametrize(
    "sig, after_chunks",
    [(signal.SIGINT, 3), (signal.SIGTERM, 9), (signal.SIGKILL, 15), (signal.SIGKILL, 21)],
    ids=["sigint-early", "sigterm-middle", "sigkill-late", "sigkill-last-checkpoint"],
)
def test_killed_run_resumes_to_the_same_outputs(setup, sig, after_chunks):
    root, study, env, reference = setup
    out = root / f"killed-{sig.name}-{after_chunks}"
    args = [str(study), "--out", str(out), "--chunk-size", str(CHUNK), "--checkpoint-every", str(EVERY), "-q"]
    proc = subprocess.Popen(_cli(*args, env=env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out.parent / f".{out.name}.partial"
    reached = _wait_for_checkpoint(partial, after_chunks, proc)
    if reached < 0:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    # as shells report a stop by a signal: 128 + its number (SIGTERM exited 130, Ctrl-C's, before)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}[sig], err
    assert not out.exists(), "a killed run must not leave a folder that looks complete"
    assert partial.is_dir()
    if sig != signal.SIGKILL:
        assert "--resume" in err and "Traceback" not in err
    resumed = subprocess.run(
        _cli("--resume", str(out), "-q", env=env), env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not partial.exists()
    same_outputs(reference, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from_chunk"] >= after_chunks


def test_a_run_killed_before_its_first_checkpoint_says_so(setup, tmp_path):
    _, study, env, _ = setup
    out = tmp_path / "early"
    proc = subprocess.Popen(
        _cli(str(study), "--out", str(out), "-q", env=env), env=env, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.5)  # still importing or compiling
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists()
    resumed = subprocess.run(_cli("--resume", str(out), env=env), env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 2 and "nothing to resume" in resumed.stderr
    assert "Traceback" not in resumed.stderr


def test_a_run_interrupted_before_its_first_checkpoint_keeps_nothing_and_says_so(setup, tmp_path):
    """Ctrl-C before the first checkpoint: there is nothing to resume, so the partial folder goes
    (a new run is not refused because of it) and the message does not offer --resume."""
    _, study, env, _ = setup
    out = tmp_path / "early"
    partial = tmp_path / ".early.partial"
    # 782 chunks and one checkpoint, at the end: the signal lands while compiling or simulating.
    args = [
        str(study),
        "--out",
        str(out),
        "-n",
        "200000",
        "--chunk-size",
        str(CHUNK),
        "--checkpoint-every",
        "1000",
        "--no-scenarios",
        "-q",
    ]
    proc = subprocess.Popen(_cli(*args, env=env), env=env, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (partial / "study.yaml").is_file() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run ended before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if (partial / "checkpoint" / "checkpoint.json").is_file() or out.exists():
        pytest.skip(f"the run reached its checkpoint before the signal ({proc.returncode}: {err[-300:]})")
    assert proc.returncode == 130, err
    assert "nothing was kept" in err and "--resume" not in err and "Traceback" not in err
    assert not partial.exists() and not out.exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception, on purpose
def test_a_ctrl_c_dropped_inside_a_gc_callback_still_stops_the_run(tmp_path):
    """Python drops an exception raised in a garbage-collector callback (JAX runs one at every
    collection): the signal handler's record of the request stops the run at the next chunk."""
    import gc

    from mcrisk.engine import interrupt
    from mcrisk.errors import RunInterrupted

    def callback(phase, info):
        interrupt._handler(signal.SIGINT, None)  # what a Ctrl-C during a collection does

    gc.callbacks.append(callback)
    try:
        gc.collect()  # prints "Exception ignored in ...": the KeyboardInterrupt is lost
    finally:
        gc.callbacks.remove(callback)
    assert interrupt.requested()
    out = tmp_path / "run"
    try:
        with pytest.raises(RunInterrupted) as stopped:
            run_study(small_study(scenarios=64), out=out, analyze=False, stress=False)
    finally:
        requested = interrupt.requested()
        interrupt.clear()  # whatever happened, no later test in this process inherits the request
    assert not requested  # honoured, then forgotten: the next run goes on
    assert stopped.value.resume_from is None  # stopped before its first checkpoint: nothing kept
    assert not out.exists() and not (tmp_path / ".run.partial").exists()
    assert run_study(small_study(scenarios=64), out=out, analyze=False, stress=False).folder == out


def test_a_partial_folder_without_a_checkpoint_is_named_for_what_it_is(tmp_path):
    """A run killed (SIGKILL) before its first checkpoint leaves a partial folder with its study
    only: --resume and a new run both say there is no checkpoint in it, and --force starts over."""
    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    partial.mkdir()
    (partial / "study.yaml").write_text("name: x\n")
    # (through the Python API the errors name its arguments; the command's, its flags: test_cli)
    with pytest.raises(RunFolderError, match="holds no checkpoint.*overwrite=True"):
        run_study(small_study(scenarios=64), out=out, resume=True)
    with pytest.raises(RunFolderError, match="has no checkpoint.*overwrite=True"):
        run_study(small_study(scenarios=64), out=out, write_scenarios=False)
    (partial / "checkpoint").mkdir()  # a checkpoint being written: its JSON comes last
    with pytest.raises(RunFolderError, match="holds no checkpoint"):
        run_study(small_study(scenarios=64), out=out, resume=True)


def test_a_shard_with_no_chunk_is_refused_by_name(tmp_path):
    """Shards are slices of whole chunks: more shards than chunks leaves one empty (it crashed
    writing its state); it is refused, naming --shard and what would fit, and nothing is left."""
    from mcrisk.errors import StudyError

    with pytest.raises(
        StudyError, match=r"--shard: shard 0/2 would hold no scenarios: 300 scenarios make 1 chunk\(s\) of 512"
    ):
        run_study(small_study(scenarios=300), out=tmp_path / "s0", shard=(0, 2))
    assert list(tmp_path.iterdir()) == []


def _checkpoint_meta(**changes) -> dict:
    """A checkpoint.json as a run writes it (after chunk 1 of a 2-chunk run), with `changes`."""
    options = {
        "scenarios": 128,
        "seed": 1,
        "precision": "float32",
        "chunk_size": 64,
        "write_scenarios": True,
        "diagnostic_draws": 16,
        "checkpoint_every": 1,
    }
    meta = {
        "study_sha256": "0" * 64,
        "options": options,
        "chunk_size": 64,
        "n_chunks": 2,
        "every": 1,
        "month_loop_unroll": 1,
        "next_chunk": 1,
        "arrays": "state-000001.npz",
    }
    for key, value in changes.items():
        if key.startswith("options__"):
            options.pop(key.removeprefix("options__")) if value is None else options.update(
                {key.removeprefix("options__"): value}
            )
        else:
            meta.pop(key) if value is None else meta.update({key: value})
    return meta


@pytest.mark.parametrize(
    "json_text, npz, says",
    [
        ("garbage", None, "checkpoint/checkpoint.json is damaged or not what mcrisk wrote (not valid JSON"),
        ("[]", None, "checkpoint/checkpoint.json is damaged or not what mcrisk wrote (a JSON array, not an object)"),
        (
            "{}",
            None,
            "checkpoint/checkpoint.json is damaged or not what mcrisk wrote (no fields 'arrays', 'next_chunk')",
        ),
        (
            json.dumps(_checkpoint_meta(options__seed=None, every="1")),
            "tails-only",
            "checkpoint/checkpoint.json is damaged or not what mcrisk wrote ('every' must be a whole number, got '1')",
        ),
        (
            json.dumps(_checkpoint_meta(options__seed=None)),
            "tails-only",
            "checkpoint/checkpoint.json is damaged or not what mcrisk wrote (no field 'options.seed')",
        ),
        (
            json.dumps(_checkpoint_meta()),
            b"garbage",
            "checkpoint/state-000001.npz is damaged or not what mcrisk wrote (not an .npz archive)",
        ),
        (
            json.dumps(_checkpoint_meta()),
            "tails-only",
            "checkpoint/state-000001.npz is damaged or not what mcrisk wrote (no array 'retained'",
        ),
        (json.dumps(_checkpoint_meta()), None, "it has no checkpoint/state-000001.npz"),
    ],
    ids=["not-json", "array", "empty", "every-text", "no-seed", "npz-garbage", "npz-lacks-arrays", "npz-missing"],
)
def test_resume_names_a_damaged_checkpoint_and_keeps_the_partial_folder(tmp_path, json_text, npz, says):
    """--resume of a partial folder whose checkpoint is damaged: exit 2 naming the file and what is
    wrong, no traceback, and the partial folder stays as it was (nothing discarded)."""
    from typer.testing import CliRunner

    from mcrisk.cli.app import app

    ck = tmp_path / ".run.partial" / "checkpoint"
    ck.mkdir(parents=True)
    (ck.parent / "study.yaml").write_text(write_study(tmp_path / "s.yaml", small_study(scenarios=128)).read_text())
    (ck / "checkpoint.json").write_text(json_text)
    if npz == "tails-only":
        np.savez(ck / "state-000001.npz", tails=np.zeros((2, 2), np.int64))
    elif isinstance(npz, bytes):
        (ck / "state-000001.npz").write_bytes(npz)
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "run")])
    text = " ".join((result.stdout + (result.stderr or "")).split())
    assert result.exit_code == 2, text
    assert f"cannot read run folder '{tmp_path / '.run.partial'}': {says}" in text, text
    assert "the run cannot be resumed: start it again with --force" in text and "Traceback" not in text
    assert sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before
    assert not (tmp_path / "run").exists()


def test_an_interrupted_run_is_not_silently_replaced(tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    (partial / "checkpoint").mkdir(parents=True)
    (partial / "checkpoint" / "checkpoint.json").write_text("{}")
    with pytest.raises(RunFolderError, match="resume=True"):
        run_study(small_study(scenarios=50), out=out)
    assert partial.is_dir()


def _raising_at_chunk(k: int, exc: BaseException):
    """A progress callback that raises `exc` as chunk k (1-based) finishes."""
    calls = {"n": 0}

    def progress(done, total):
        calls["n"] += 1
        if calls["n"] == k:
            raise exc

    return progress


def test_resume_matches_in_process(tmp_path):
    """In-process: an interrupt after a checkpoint, then resume=True, equals one uninterrupted run."""
    study = small_study(scenarios=2048)
    ref = run_study(study, out=tmp_path / "ref", chunk_size=256, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        run_study(
            study,
            out=tmp_path / "run",
            chunk_size=256,
            checkpoint_every=2,
            progress=_raising_at_chunk(5, KeyboardInterrupt()),
        )
    assert (tmp_path / ".run.partial" / "checkpoint" / "checkpoint.json").is_file()
    done = run_study(out=tmp_path / "run", resume=True)
    assert done.manifest["resumed_from_chunk"] == 4
    same_outputs(ref.folder, done.folder)


def test_a_run_that_fails_after_a_checkpoint_keeps_it_for_resume(tmp_path):
    """A failure mid-run (here a full disk as the fifth chunk finishes) keeps the checkpoints and
    says how to continue (every failure deleted them); --resume then gives the uninterrupted run.
    A failure before the first checkpoint still leaves nothing."""
    study = small_study(scenarios=2048)
    ref = run_study(study, out=tmp_path / "ref", chunk_size=256, checkpoint_every=2)
    disk_full = lambda k: _raising_at_chunk(k, OSError(28, "No space left on device"))  # noqa: E731
    with pytest.raises(OSError) as e:
        run_study(study, out=tmp_path / "run", chunk_size=256, checkpoint_every=2, progress=disk_full(5))
    assert f"mcrisk run --resume {tmp_path / 'run'} continues it" in " ".join(e.value.__notes__)
    assert (tmp_path / ".run.partial" / "checkpoint" / "checkpoint.json").is_file()
    done = run_study(out=tmp_path / "run", resume=True)
    assert done.manifest["resumed_from_chunk"] == 4
    same_outputs(ref.folder, done.folder)

    # the failure at the first chunk, before the first checkpoint (after the second)
    with pytest.raises(OSError) as e:
        run_study(study, out=tmp_path / "early", chunk_size=256, checkpoint_every=2, progress=disk_full(1))
    assert not getattr(e.value, "__notes__", None)
    assert not (tmp_path / ".early.partial").exists() and not (tmp_path / "early").exists()


def test_same_study_and_seed_reproduce_bit_for_bit_from_the_manifest(tmp_path):
    first = run_study(small_study(scenarios=700), out=tmp_path / "first", chunk_size=300)
    again = rerun_manifest(first.folder / "manifest.json", out=tmp_path / "again")
    same_outputs(first.folder, again.folder)
    other_chunks = run_study(small_study(scenarios=700), out=tmp_path / "chunks", chunk_size=128)
    assert data_hash(first.folder) == data_hash(other_chunks.folder)


def degenerate_study(scenarios: int) -> dict:
    """No demand: no tokens and no revenue, so operating margin (0/0) is NaN in every scenario."""
    study = small_study(scenarios=scenarios)
    study["market"]["demand"] = {"utilization": 0.0}  # no tokens, no revenue
    study["correlations"] = []
    for system in study["systems"].values():
        system["residual_value_fraction"] = 0.0  # else a residual alone can make NPV > 0 at -99 %/yr
    return study


# Counts, not statistics: the summary.csv columns that hold a number when a metric has no value.
COUNTS = ["n", "n_nan", "n_posinf", "n_neginf"]


def test_degenerate_inputs_give_defined_values_and_are_counted(tmp_path):
    result = run_study(degenerate_study(200), out=tmp_path / "run")
    df = pq.read_table(result.folder / "scenarios.parquet").to_pandas()
    assert (df.revenue_usd == 0).all() and df.operating_margin.isna().all()
    assert np.isinf(df.cost_per_mtok_usd).all() and (df.cost_per_mtok_usd > 0).all()
    assert (df.irr == -np.inf).all() and np.isinf(df.payback_months).all()
    assert np.isinf(df.energy_j_per_token).all()  # idle power over zero tokens
    status = result.manifest["status"]
    assert status["rack.operating_margin"]["nan"] == 200
    assert status["rack.irr"]["neginf"] == 200
    assert status["server.payback_months"]["posinf"] == 200
    risk = result.risk.set_index("system")
    assert (risk.p_loss == 1.0).all() and (risk.p_payback_within_horizon == 0.0).all()
    # a metric with no value has no statistic either (its mean read 0.0, a 0% margin; min +inf, max -inf)
    summary = pd.read_csv(result.folder / "summary.csv").set_index(["system", "metric"])
    for system in ("rack", "server"):
        margin = summary.loc[(system, "operating_margin")]
        assert list(margin[COUNTS]) == [0, 200, 0, 0] and margin.drop(COUNTS).isna().all()
        irr = summary.loc[(system, "irr")]  # -inf everywhere: values, so a mean and a range
        assert irr["n"] == 200 and irr["mean"] == irr["min"] == irr["max"] == -np.inf


def test_float32_and_float64_agree_on_the_default_study(tmp_path):
    """The summary statistics agree to 1e-4 relative (means) and to the sketch's accuracy (percentiles)."""
    a = run_study(
        CONFIGS / "default.yaml",
        out=tmp_path / "f32",
        scenarios=4000,
        write_scenarios=False,
        stress=False,
        analyze=False,
    ).summary
    b = run_study(
        CONFIGS / "default.yaml",
        out=tmp_path / "f64",
        scenarios=4000,
        precision="float64",
        write_scenarios=False,
        stress=False,
        analyze=False,
    ).summary
    key = ["system", "metric"]
    a, b = a.set_index(key), b.set_index(key)
    finite = np.isfinite(a["mean"]) & np.isfinite(b["mean"])
    scale = (a["sd"].abs() + a["mean"].abs())[finite]
    assert (np.abs(a["mean"] - b["mean"])[finite] <= 1e-4 * scale).all()
    for p in ("p5", "p50", "p95"):
        ok = np.isfinite(a[p]) & np.isfinite(b[p])
        tol = 2e-3 * np.abs(b[p][ok]) + 1e-6 * scale.reindex(b[p][ok].index).fillna(1)
        assert (np.abs(a[p] - b[p])[ok] <= tol).all(), p
    pd.testing.assert_series_equal(a["n_nan"], b["n_nan"])


def test_shard_auto_under_jax_distributed_merges_into_the_single_run(tmp_path):
    """Two processes joined by jax.distributed (on this machine's CPU), each `--shard auto`
    with `{shard}` in --out, merge into the run one process writes."""
    import socket

    from mcrisk.workflows.merge import merge_runs

    path = write_study(tmp_path / "s.yaml", small_study(scenarios=1200))
    single = run_study(str(path), out=tmp_path / "single", chunk_size=256, analyze=False)
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    procs = []
    for i in range(2):
        env = dict(
            os.environ,
            MCRISK_COORDINATOR=f"localhost:{port}",
            MCRISK_NUM_PROCESSES="2",
            MCRISK_PROCESS_ID=str(i),
            MCRISK_CACHE_DIR="off",
        )
        cmd = [
            sys.executable,
            "-m",
            "mcrisk",
            "run",
            str(path),
            "--shard",
            "auto",
            "--chunk-size",
            "256",
            "--no-analyze",
            "--out",
            str(tmp_path / "shard-{shard}"),
            "-q",
        ]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    manifests = [json.loads((tmp_path / f"shard-{i}" / "manifest.json").read_text()) for i in range(2)]
    assert [m["shard"]["index"] for m in manifests] == [0, 1] and all(m["shard"]["count"] == 2 for m in manifests)
    assert all(m["processes"]["count"] == 2 for m in manifests)
    merged = merge_runs([tmp_path / "shard-0", tmp_path / "shard-1"], out=tmp_path / "merged")
    assert data_hash(single.folder) == data_hash(merged.folder)
    pd.testing.assert_frame_equal(pd.read_csv(single.folder / "risk.csv"), pd.read_csv(merged.folder / "risk.csv"))


def test_shard_auto_without_a_cluster_is_a_clear_error(tmp_path):
    path = write_study(tmp_path / "s.yaml", small_study(scenarios=100))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "OMPI_", "MCRISK_COORDINATOR", "MCRISK_NUM", "MCRISK_PROCESS"))
    }
    env["MCRISK_COORDINATOR"] = "localhost:1"  # only one of the three: refused before any connection
    proc = subprocess.run(
        [sys.executable, "-m", "mcrisk", "run", str(path), "--shard", "auto", "--out", str(tmp_path / "r")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--shard" in proc.stderr and "MCRISK_NUM_PROCESSES" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_shards_merge_into_the_single_run(tmp_path):
    """--shard i/k slices, merged, equal one run: data and counts exactly, moments to rounding."""
    from mcrisk.workflows.merge import merge_runs

    study = small_study(scenarios=2500)
    single = run_study(study, out=tmp_path / "single", chunk_size=256)
    shards = [run_study(study, out=tmp_path / f"shard{i}", chunk_size=256, shard=(i, 3)) for i in (2, 0, 1)]
    assert sum(s.manifest["shard"]["chunks"][1] - s.manifest["shard"]["chunks"][0] for s in shards) == 10
    merged = merge_runs([s.folder for s in shards], out=tmp_path / "merged")
    assert data_hash(single.folder) == data_hash(merged.folder)
    a = pd.read_csv(single.folder / "summary.csv").set_index(["system", "metric"])
    b = pd.read_csv(merged.folder / "summary.csv").set_index(["system", "metric"])
    exact = [
        c for c in a.columns if c.startswith("p") or c.startswith("n") or c in ("min", "max", "ess", "mcse_p5", "r_hat")
    ]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    pd.testing.assert_frame_equal(a[["mean", "sd", "mcse_mean"]], b[["mean", "sd", "mcse_mean"]], rtol=1e-12)
    pd.testing.assert_frame_equal(pd.read_csv(single.folder / "risk.csv"), pd.read_csv(merged.folder / "risk.csv"))
    with pytest.raises(RunFolderError, match="exactly once"):
        merge_runs([shards[0].folder, shards[1].folder], out=tmp_path / "incomplete")
    assert not (tmp_path / "incomplete").exists()


def test_shards_of_a_metric_without_values_merge_to_nan(tmp_path):
    """Merging shards keeps the empty moments empty: NaN statistics, as in the single run."""
    from mcrisk.workflows.merge import merge_runs

    study = degenerate_study(600)
    single = run_study(study, out=tmp_path / "single", chunk_size=256, write_scenarios=False)
    shards = [
        run_study(study, out=tmp_path / f"shard{i}", chunk_size=256, write_scenarios=False, shard=(i, 2))
        for i in (0, 1)
    ]
    merged = merge_runs([s.folder for s in shards], out=tmp_path / "merged")
    a = pd.read_csv(single.folder / "summary.csv").set_index(["system", "metric"])
    b = pd.read_csv(merged.folder / "summary.csv").set_index(["system", "metric"])
    for system in ("rack", "server"):
        margin = b.loc[(system, "operating_margin")]
        assert list(margin[COUNTS]) == [0, 600, 0, 0] and margin.drop(COUNTS).isna().all()
    pd.testing.assert_frame_equal(
        a.drop(columns=["mean", "sd", "mcse_mean"]), b.drop(columns=["mean", "sd", "mcse_mean"])
    )
    pd.testing.assert_frame_equal(a[["mean", "sd", "mcse_mean"]], b[["mean", "sd", "mcse_mean"]], rtol=1e-12)
    pd.testing.assert_frame_equal(
        pd.read_csv(single.folder / "breakeven.csv"), pd.read_csv(merged.folder / "breakeven.csv")
    )


# --------------------------------------------------------------------------- output folders


def _precious(tmp_path: Path) -> Path:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("important\n")
    return folder


def test_force_replaces_only_a_run_folder(tmp_path):
    """--force replaces a run folder (manifest.json) or an empty one, never any other folder."""
    from mcrisk.io.folder import RunFolder
    from mcrisk.workflows.sweep import run_sweep

    precious = _precious(tmp_path)
    study = small_study(scenarios=300)
    with pytest.raises(RunFolderError, match="not an mcrisk run folder"):
        run_study(study, out=precious, force=True)
    with pytest.raises(RunFolderError, match="not an mcrisk run folder"):
        run_sweep(study, [("facility.pue", [1.2, 1.3])], out=precious, force=True)
    with pytest.raises(RunFolderError, match="not an mcrisk run folder"):
        RunFolder(precious, force=True)  # as mcrisk merge opens its --out
    assert (precious / "notes.txt").read_text() == "important\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]

    # a folder in the way of the partial folder that is not an interrupted run is not removed either
    (tmp_path / ".run.partial").mkdir()
    (tmp_path / ".run.partial" / "notes.txt").write_text("mine\n")
    with pytest.raises(RunFolderError, match="not an interrupted mcrisk run"):
        run_study(study, out=tmp_path / "run", force=True)
    assert (tmp_path / ".run.partial" / "notes.txt").read_text() == "mine\n"

    # a run folder, and an empty folder, are replaced
    first = run_study(study, out=tmp_path / "old", analyze=False, stress=False)
    again = run_study(study, out=first.folder, seed=9, force=True, analyze=False, stress=False)
    assert json.loads((again.folder / "manifest.json").read_text())["seed"] == 9
    (tmp_path / "empty").mkdir()
    assert run_study(study, out=tmp_path / "empty", force=True, analyze=False, stress=False).folder.is_dir()


def test_force_on_a_plain_folder_exits_2_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from mcrisk.cli.app import app

    precious = _precious(tmp_path)
    path = write_study(tmp_path / "s.yaml", small_study(scenarios=300))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(precious), "--force", "-q"])
    text = result.stdout + (result.stderr or "")
    assert result.exit_code == 2, text
    assert "not an mcrisk run folder" in text and "Traceback" not in text
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("where", ["below-a-file", "proc", "cwd", "parent-of-cwd", "dot-dot"])
def test_an_unusable_output_folder_is_refused_before_simulating(tmp_path, monkeypatch, where):
    from typer.testing import CliRunner

    from mcrisk.cli.app import app

    path = write_study(tmp_path / "s.yaml", small_study(scenarios=300))
    (tmp_path / "afile").write_text("a file\n")
    inside = tmp_path / "work" / "here"
    inside.mkdir(parents=True)
    (inside / "manifest.json").write_text(json.dumps({"study_sha256": "x"}))  # even a run folder: it holds the cwd
    monkeypatch.chdir(inside)
    out = {
        "below-a-file": str(tmp_path / "afile" / "run"),
        "proc": "/proc/mcrisk_test_run",
        "cwd": ".",
        "parent-of-cwd": str(tmp_path / "work"),
        "dot-dot": "sub/..",
    }[where]
    expected = {"below-a-file": "is a file, not a folder", "proc": "cannot create the output folder"}.get(
        where, "is the current folder or contains it"
    )
    simulated = []
    with pytest.raises(RunFolderError, match=expected):
        run_study(str(path), out=out, force=True, progress=lambda done, total: simulated.append(done))
    assert not simulated
    result = CliRunner().invoke(app, ["run", str(path), "--out", out, "--force", "-q"])
    text = result.stdout + (result.stderr or "")
    assert result.exit_code == 2, text
    assert expected in text and "Traceback" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "s.yaml", "work"]
    assert sorted(p.name for p in inside.iterdir()) == ["manifest.json"]


def test_a_run_that_cannot_be_published_is_kept(tmp_path, monkeypatch):
    """If the final rename fails, the error says where the finished run is, and it is still there."""
    out = tmp_path / "run"
    real_rename = Path.rename

    def busy(self, target):
        if Path(target) == out:
            raise OSError(16, "Device or resource busy", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", busy)
    with pytest.raises(RunFolderError, match=r"kept in .*\.run\.partial"):
        run_study(small_study(scenarios=300), out=out, analyze=False, stress=False)
    assert not out.exists()
    assert (tmp_path / ".run.partial" / "manifest.json").is_file()
    assert (tmp_path / ".run.partial" / "summary.csv").is_file()


def test_resume_refuses_options_it_would_ignore(tmp_path):
    from mcrisk.errors import StudyError

    (tmp_path / ".run.partial" / "checkpoint").mkdir(parents=True)
    with pytest.raises(StudyError, match="resume: cannot be combined with scenarios, seed"):
        run_study(out=tmp_path / "run", resume=True, scenarios=10, seed=4)
    assert sorted(p.name for p in (tmp_path / ".run.partial").iterdir()) == ["checkpoint"]


def test_from_manifest_inside_the_run_folder_writes_beside_it(tmp_path, monkeypatch):
    first = run_study(small_study(scenarios=300), out=tmp_path / "first", analyze=False, stress=False)
    monkeypatch.chdir(first.folder)
    again = rerun_manifest("manifest.json")
    assert again.folder.resolve() == (tmp_path / "first-rerun").resolve()
    same_outputs(first.folder, again.folder)

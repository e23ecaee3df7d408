"""`run_study`: a study in, a run folder out (scenario Parquet, summaries, ArviZ data, manifest).

The workflow of a run: its options checked once (:class:`~mcrisk.engine.options.RunOptions`), the
run folder opened (or an interrupted one resumed from its checkpoint, read once), the chunk loop
driven into it (:func:`~mcrisk.workflows.drive.drive`), then the study's stresses on the same
draws, and the tables, ArviZ data and manifest published (:func:`~mcrisk.workflows.publish.finish`).
"""

from __future__ import annotations

import functools
import inspect
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mcrisk.errors as errors
from mcrisk._x64 import enable_float64
from mcrisk.engine import interrupt
from mcrisk.engine.loop import ChunkLoop, Resume
from mcrisk.engine.options import DIAGNOSTIC_DRAWS, RunOptions
from mcrisk.engine.plan import MONTHLY_SCENARIOS
from mcrisk.engine.programs import cancel_pending
from mcrisk.engine.state import checkpoint_arrays, missing_arrays, state_from
from mcrisk.engine.timings import Timings
from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError
from mcrisk.io.checkpoint import load_checkpoint, save_checkpoint
from mcrisk.io.folder import CHECKPOINT_DIR, SHARD_STATE, RunFolder, check_inputs
from mcrisk.io.readers import damaged, field_problems, read_manifest
from mcrisk.io.verify import check_partial
from mcrisk.study import variants
from mcrisk.study.schema import Study, default_study_path, load_study
from mcrisk.workflows.drive import drive
from mcrisk.workflows.progress_log import LOG
from mcrisk.workflows.publish import RunResult, finish

ProgressFn = Callable[[int, int], None]
Checkpoint = tuple[dict, dict]  # a checkpoint's JSON and arrays


def _python_wording(fn):
    """Errors of a folder named in Python's words (overwrite=True, not --force) unless the command
    line called (`mcrisk.errors.COMMAND_LINE`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RunFolderError as exc:
            if errors.COMMAND_LINE:
                raise
            new = errors.api_wording(exc)
            for note in getattr(exc, "__notes__", ()):
                new.add_note(note)
            raise new from None

    return wrapper


@_python_wording
def run_study(
    study: str | Path | Mapping | Study | None = None,
    *,
    out: str | Path | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    precision: str | None = None,
    overwrite: bool = False,
    force: bool = False,
    write_scenarios: bool = True,
    diagnostic_draws: int = DIAGNOSTIC_DRAWS,
    checkpoint_every: int | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    columns: Sequence[str] | None = None,
    sample_fraction: float | None = None,
    monthly: bool = True,
    monthly_scenarios: int | None = MONTHLY_SCENARIOS,
    analyze: bool = True,
    stress: bool = True,
    sampler_dims: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    target_mcse: str | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Simulate a study and write its run folder; return the summary and risk tables.

    `study` is a YAML path, a dict, a Study, or None for the embedded default study. Options
    override the study's `simulation` section; `checkpoint_every` is in chunks. Nothing is
    written if the study is invalid (StudyError) or the folder exists without `overwrite`
    (RunFolderError; `force` is its older name). An interrupted run (Ctrl-C, SIGTERM, SIGKILL) leaves `.NAME.partial`
    beside `out`; `resume=True` continues it from its last checkpoint and produces the same
    outputs as an uninterrupted run (its study and options come from the partial folder).
    `shard=(i, k)` runs the i-th of k disjoint, contiguous slices of the chunks (for job
    arrays); `merge_runs` combines the k shard folders into the run a single job would write.
    `target_mcse` ('METRIC:STAT:VALUE') stops at the first chunk where that MCSE is met for
    every system, `scenarios` being the maximum (see mcrisk.stats.convergence).
    `overrides` (dotted study path -> value, `--set`) change the study before it runs; the run
    folder's study.yaml is the study as run. A study's `stress:` section runs after the base
    case on the same draws (stress.csv) unless `stress=False`. `sampler_dims` are a base run's sampler dimensions,
    for variants that must share its draws.
    `columns` keeps only those Parquet columns (scenario and system always stay) and
    `sample_fraction` only a fixed pseudo-random share of the scenarios (by index, so the same
    scenarios whatever the chunking); summaries always cover every scenario.
    """
    enable_float64()
    if resume:  # the interrupted run fixes everything but the study (checked) and the progress callback
        given = {k: v for k, v in locals().items() if k in _RESUME_FIXED}
        fixed = [k for k, v in given.items() if v is not _RESUME_FIXED[k] and v != _RESUME_FIXED[k]]
        if fixed:
            raise StudyError(
                [
                    Problem(
                        "resume",
                        f"cannot be combined with {', '.join(fixed)}: the interrupted run fixes its seed and options",
                    )
                ],
                "options",
            )
        return _resume(study, out, progress, time.perf_counter())
    t_total = time.perf_counter()
    source = default_study_path() if study is None else study
    st = load_study(source)
    if overrides:  # --set: applied to the study as written, so presets and sizing follow
        st = variants.apply(variants.raw_study(source), overrides, label="--set")
    opts = RunOptions.for_study(
        st,
        scenarios=scenarios,
        seed=seed,
        precision=precision,
        chunk_size=chunk_size,
        write_scenarios=write_scenarios,
        diagnostic_draws=diagnostic_draws,
        checkpoint_every=checkpoint_every,
        shard=shard,
        columns=columns,
        sample_fraction=sample_fraction,
        monthly=monthly,
        monthly_scenarios=monthly_scenarios,
        sampler_dims=sampler_dims,
        overrides=overrides,
        target_mcse=target_mcse,
        analyze=analyze,
        stress=stress,
    )
    inputs = [source] if isinstance(source, (str, Path)) else []
    folder = RunFolder(
        Path(out) if out is not None else Path("outputs") / st.name, force=overwrite or force, inputs=inputs
    )

    def start() -> RunResult:
        folder.write_study(st.to_yaml())
        return _execute(st, folder, opts, None, progress, t_total)

    return _guarded(folder, start)


# run_study's options that resume=True cannot take, with their defaults.
_RESUME_FIXED = {
    k: p.default
    for k, p in inspect.signature(run_study).parameters.items()
    if k not in ("study", "out", "resume", "progress")
}


def _resume(
    study: str | Path | Mapping | Study | None, out: str | Path | None, progress: ProgressFn | None, t_total: float
) -> RunResult:
    """Continue the interrupted run of `out` from its checkpoint (read once, checked here, before
    the run starts, so that a damaged checkpoint is named); `study`, if given, must be its study."""
    if out is None:
        raise RunFolderError("--resume needs the run folder of the interrupted run (--out DIR)")
    folder = RunFolder(out, resume=True)
    try:
        try:
            meta, arrays = load_checkpoint(folder.tmp)
            opts = _checked_checkpoint(meta, arrays, folder.tmp)
            st = check_partial(folder.tmp, meta)
        except RunFolderError as exc:
            raise RunFolderError(f"{exc}; the run cannot be resumed: start it again with --force") from None
        if study is not None and load_study(study).digest() != st.digest():
            raise RunFolderError(f"the study differs from the one the interrupted run in {out} was started with")
    except BaseException:
        folder.release()
        raise
    return _guarded(folder, lambda: _execute(st, folder, opts, (meta, arrays), progress, t_total))


def _guarded(folder: RunFolder, run: Callable[[], RunResult]) -> RunResult:
    """`run()` into `folder`; on failure or interruption keep the partial folder where a checkpoint
    lets `--resume` continue it (and say so), else remove it."""
    try:
        return run()
    except KeyboardInterrupt:
        interrupt.clear()
        if folder.resumable():  # keep the partial folder: `--resume` continues from its last checkpoint
            raise RunInterrupted(folder.final) from None
        folder.discard()  # stopped before its first checkpoint: nothing to continue
        raise RunInterrupted(None) from None
    except SystemExit:
        raise
    except BaseException as exc:
        if folder.kept or not folder.resumable():
            folder.discard()  # (a kept folder stays, and its error says where)
            raise
        # The checkpoints hold the run so far (hours, perhaps): keep them for --resume once the
        # cause (a full disk, a lost device) is fixed.
        kept = f"the run so far is kept in {folder.tmp.name}: mcrisk run --resume {folder.final} continues it"
        if isinstance(exc, RunFolderError):
            raise RunFolderError(f"{exc}; {kept}") from None
        exc.add_note(kept)
        raise
    finally:
        folder.release()
        cancel_pending()  # a failed or stopped run does not wait at exit for programs it will not call


def _execute(
    st: Study,
    folder: RunFolder,
    opts: RunOptions,
    checkpoint: Checkpoint | None,
    progress: ProgressFn | None,
    t_total: float,
) -> RunResult:
    """Run the chunks (from `checkpoint`, if given) into `folder`, then the study's stresses; publish."""
    times = Timings()
    loop = ChunkLoop(st, opts, times)
    resume = None
    if checkpoint is not None:
        meta, arrays = checkpoint
        if (
            meta["chunk_size"] != loop.plan.chunk
            or meta["every"] != loop.every
            or meta.get("month_loop_unroll", 1) != loop.plan.unroll
        ):
            raise RunFolderError(
                f"cannot resume: the interrupted run used chunks of {meta['chunk_size']} on other devices "
                f"(now {loop.plan.chunk}); rerun with the same number of devices"
            )
        resume = Resume(state_from(arrays), meta["next_chunk"], meta.get("trace", []), meta.get("stopped"))
    done = drive(loop, folder, resume, progress, checkpoint[0].get("parts") if checkpoint is not None else None)
    extra = done.extra
    if opts.shard_index[1] > 1:  # what `merge_runs` needs to combine the shards exactly
        save_checkpoint(folder.tmp, {"next_chunk": loop.chunks[1]}, checkpoint_arrays(done.state), name=SHARD_STATE)
    stresses = None
    if st.stress and opts.shard_index[1] == 1 and opts.stress:
        t0 = time.perf_counter()
        stresses = run_stresses(
            st, folder.path("stress"), opts.replace(scenarios=extra["scenarios_run"]), loop.plan.dims, progress
        )
        times["stress"] = time.perf_counter() - t0
        extra["stress"] = {name: variants.describe(o) for name, o in st.stress.items()}
    return finish(st, loop.plan, folder, opts, done.state, times, t_total, extra, stresses, done.diagnostics)


def run_stresses(
    study: Study, where: Path, opts: RunOptions, dims: Sequence[str], progress: ProgressFn | None = None
) -> list[tuple]:
    """Run each stress of `study` into `where/NAME` with the base case's `opts` (scenarios, seed,
    chunking, precision) and sampler dimensions `dims`, so on its draws; return (name, overrides,
    summary, risk) per stress."""
    raw = study.resolved()
    shutil.rmtree(where, ignore_errors=True)  # a resumed run starts its stresses again
    where.mkdir(parents=True)
    out = []
    for k, (name, overrides) in enumerate(study.stress.items()):
        LOG.info("stress %r (%d of %d), on the base case's draws", name, k + 1, len(study.stress))
        variant = variants.apply(raw, overrides, label=f"stress.{name}")
        result = run_study(
            variant,
            out=where / name,
            scenarios=opts.scenarios,
            seed=opts.seed,
            chunk_size=opts.chunk_size,
            # No monthly bands (stress.csv does not use them; they were 0.7 s of each 200k-scenario
            # stress on a 2-core CPU); the simulate program is the base case's all the same.
            precision=opts.precision,
            write_scenarios=False,
            monthly=False,
            diagnostic_draws=0,
            sampler_dims=dims,
            progress=progress,
        )
        out.append((name, overrides, result.summary, result.risk))
    return out


def _checked_checkpoint(meta: dict, arrays: dict, partial: Path) -> RunOptions:
    """The options of a checkpoint of `partial`; RunFolderError naming the checkpoint file a resume could not use."""
    ck = partial / CHECKPOINT_DIR
    problems = field_problems(
        meta, ("options", "chunk_size", "every"), {"options": dict, "chunk_size": int, "every": int}
    )
    if not problems:
        problems = RunOptions.record_problems(meta["options"])
    if problems:
        raise damaged(ck / "checkpoint.json", "; ".join(problems), partial)
    if missing_arrays(arrays):
        raise damaged(ck / meta["arrays"], f"no array {', '.join(map(repr, missing_arrays(arrays)))}", partial)
    return RunOptions.from_record(meta["options"])


def rerun_manifest(
    manifest: str | Path, *, out: str | Path | None = None, force: bool = False, progress: ProgressFn | None = None
) -> RunResult:
    """Run again what a manifest describes: the study beside it, with the same seed and options.

    RunFolderError, naming the file and what is wrong, for a manifest that is not a run's."""
    path = Path(manifest)
    m = read_manifest(path, types={"study_sha256": str, "options": dict})
    problems = RunOptions.record_problems(m["options"])
    if problems:
        raise damaged(path, "; ".join(problems), what="not a run manifest")
    opts = RunOptions.from_record(m["options"])
    st = load_study(path.parent / "study.yaml")
    if st.digest() != m["study_sha256"]:
        raise RunFolderError(f"{path.parent / 'study.yaml'} does not match the study hash in {path}")
    run_dir = path.parent if path.parent.name else path.resolve().parent  # manifest.json given from inside its folder
    target = Path(out) if out is not None else run_dir.with_name(run_dir.name + "-rerun")
    check_inputs(target, [path])
    given = {k: v for k, v in opts.record().items() if k != "overrides"}  # (already in study.yaml)
    return run_study(st, out=target, force=force, progress=progress, **given)

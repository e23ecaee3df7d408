"""`run_study`: a study in, a run folder out (scenario Parquet, summaries, ArviZ data, manifest)."""

from __future__ import annotations

import difflib
import inspect
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mcrisk._x64 import enable_float64
from mcrisk.engine import interrupt
from mcrisk.engine.loop import execute
from mcrisk.stats.convergence import parse_target
from mcrisk.engine.plan import METRICS, MONTHLY_SCENARIOS, PLAIN_SYSTEM_FIELDS
from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError
from mcrisk.study.variants import apply as apply_overrides
from mcrisk.study.variants import raw_study
from mcrisk.engine.programs import cancel_pending
from mcrisk.workflows.publish import RunResult
from mcrisk.io.readers import damaged, field_problems, option_problems, read_manifest
from mcrisk.engine.state import missing_arrays
from mcrisk.io.folder import CHECKPOINT_DIR, RunFolder, load_checkpoint
from mcrisk.study.schema import Study, load_study

DIAGNOSTIC_DRAWS = 1 << 14  # scenarios kept on the host for ArviZ (ESS, MCSE of p5, R-hat)
Progress = Callable[[int, int], None]


def _check_counts(scenarios, seed, chunk_size, precision, checkpoint_every=None, shard=None, monthly_scenarios=None) -> None:
    problems = []
    if monthly_scenarios is not None and not (isinstance(monthly_scenarios, int) and monthly_scenarios >= 1):
        problems.append(Problem("--monthly-scenarios", f"must be a whole number >= 1 (or all), got {monthly_scenarios!r}"))
    if shard is not None and not (len(shard) == 2 and 1 <= shard[1] and 0 <= shard[0] < shard[1]):
        problems.append(Problem("--shard", f"must be i/k with 0 <= i < k, got {shard}"))
    if scenarios is not None and not (1 <= scenarios <= 2**32 - 1):
        problems.append(Problem("--scenarios", f"must be between 1 and 4294967295, got {scenarios}"))
    if seed is not None and not (0 <= seed <= 2**63 - 1):
        problems.append(Problem("--seed", f"must be a non-negative integer, got {seed}"))
    if chunk_size is not None and not (1 <= chunk_size <= 1 << 26):
        problems.append(Problem("--chunk-size", f"must be between 1 and 67108864, got {chunk_size}"))
    if checkpoint_every is not None and checkpoint_every < 1:
        problems.append(Problem("--checkpoint-every", f"must be >= 1 chunk, got {checkpoint_every}"))
    if precision is not None and precision not in ("float32", "float64"):
        problems.append(Problem("--precision", f"must be float32 or float64, got {precision!r}"))
    if problems:
        raise StudyError(problems, "options")


def _check_output_options(st: Study, columns, sample_fraction) -> None:
    problems = []
    if sample_fraction is not None and not (0.0 < sample_fraction <= 1.0):
        problems.append(Problem("--sample-fraction", f"must be in (0, 1], got {sample_fraction}"))
    if columns is not None and not list(columns):  # ("--columns ''" kept every column)
        problems.append(Problem("--columns", "names no column: give the columns to keep, or leave the option out to keep every one"))
    if columns is not None:
        known = {*METRICS, *(i.column for i in st.inputs()), *(f"system.{p}" for p in PLAIN_SYSTEM_FIELDS)}
        for c in columns:
            if c not in known and c not in ("scenario", "system"):
                close = difflib.get_close_matches(c, sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(Problem("--columns", f"unknown column {c!r}{hint}"))
    if problems:
        raise StudyError(problems, "options")



def run_study(
    study: str | Path | Mapping | Study | None = None,
    *,
    out: str | Path | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
    precision: str | None = None,
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
    progress: Progress | None = None,
) -> RunResult:
    """Simulate a study and write its run folder; return the summary and risk tables.

    `study` is a YAML path, a dict, a Study, or None for the embedded default study. Options
    override the study's `simulation` section; `checkpoint_every` is in chunks. Nothing is
    written if the study is invalid (StudyError) or the folder exists without `force`
    (RunFolderError). An interrupted run (Ctrl-C, SIGTERM, SIGKILL) leaves `.NAME.partial`
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
    from mcrisk.study.schema import default_study_path

    if resume:  # the interrupted run fixes everything but the study (checked) and the progress callback
        given = {k: v for k, v in locals().items() if k in _RESUME_FIXED}
        fixed = [k for k, v in given.items() if v is not _RESUME_FIXED[k] and v != _RESUME_FIXED[k]]
        if fixed:
            raise StudyError([Problem("resume", f"cannot be combined with {', '.join(fixed)}: the interrupted run fixes "
                                                "its seed and options")], "options")
    t_total = time.perf_counter()
    if resume:
        if out is None:
            raise RunFolderError("--resume needs the run folder of the interrupted run (--out DIR)")
        folder = RunFolder(out, resume=True)
        try:  # checked here, before the run starts, so that a damaged checkpoint is named
            meta, arrays = load_checkpoint(folder.tmp)
            _check_checkpoint(meta, arrays, folder.tmp)
        except RunFolderError as exc:
            raise RunFolderError(f"{exc}; the run cannot be resumed: start it again with --force") from None
        st = load_study(folder.path("study.yaml"))
        if study is not None and load_study(study).digest() != st.digest():
            raise RunFolderError(f"the study differs from the one the interrupted run in {out} was started with")
        opts = meta["options"]
    else:
        source = default_study_path() if study is None else study
        st = load_study(source)
        if overrides:  # --set: applied to the study as written, so presets and sizing follow
            st = apply_overrides(raw_study(source), overrides, label="--set")
        _check_counts(scenarios, seed, chunk_size, precision, checkpoint_every, shard, monthly_scenarios)
        _check_output_options(st, columns, sample_fraction)
        if target_mcse is not None:
            parse_target(target_mcse)
            if shard is not None:
                raise StudyError([Problem("--target-mcse", "cannot be combined with --shard (each shard would stop on its own)")], "options")
        sim = st.simulation
        opts = dict(
            scenarios=scenarios or sim.scenarios,
            seed=sim.seed if seed is None else seed,
            precision=precision or sim.precision,
            chunk_size=chunk_size,
            write_scenarios=write_scenarios,
            diagnostic_draws=diagnostic_draws,
            checkpoint_every=checkpoint_every,
            shard=list(shard) if shard is not None else None,
            columns=list(columns) if columns is not None else None,
            sample_fraction=sample_fraction,
            monthly=monthly,
            monthly_scenarios=monthly_scenarios,
            sampler_dims=list(sampler_dims) if sampler_dims is not None else None,
            overrides=dict(overrides) if overrides else None,  # a record: study.yaml already has them
            target_mcse=target_mcse,
            analyze=analyze,
            stress=stress,
        )
        folder = RunFolder(Path(out) if out is not None else Path("outputs") / st.name, force=force)
    try:
        if not resume:
            folder.write_study(st.to_yaml())
        return execute(st, folder, opts, resume, progress, t_total)
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
        # cause (a full disk, a lost device) is fixed. (Every failure discarded them.)
        kept = f"the run so far is kept in {folder.tmp.name}: mcrisk run --resume {folder.final} continues it"
        if isinstance(exc, RunFolderError):
            raise RunFolderError(f"{exc}; {kept}") from None
        exc.add_note(kept)
        raise
    finally:
        cancel_pending()  # a failed or stopped run does not wait at exit for programs it will not call



# run_study's options that resume=True cannot take, with their defaults.
_RESUME_FIXED = {k: p.default for k, p in inspect.signature(run_study).parameters.items()
                 if k not in ("study", "out", "resume", "progress")}


def _check_checkpoint(meta: dict, arrays: dict, partial: Path) -> None:
    """RunFolderError naming the checkpoint file of `partial` that a resume could not use."""
    ck = partial / CHECKPOINT_DIR
    problems = field_problems(meta, ("options", "chunk_size", "every"), {"options": dict, "chunk_size": int, "every": int})
    if not problems:
        problems = option_problems(meta["options"])
    if problems:
        raise damaged(ck / "checkpoint.json", "; ".join(problems), partial)
    if missing_arrays(arrays):
        raise damaged(ck / meta["arrays"], f"no array {', '.join(map(repr, missing_arrays(arrays)))}", partial)


def rerun_manifest(manifest: str | Path, *, out: str | Path | None = None, force: bool = False, progress: Progress | None = None) -> RunResult:
    """Run again what a manifest describes: the study beside it, with the same seed and options.

    RunFolderError, naming the file and what is wrong, for a manifest that is not a run's."""
    path = Path(manifest)
    m = read_manifest(path, types={"study_sha256": str, "options": dict})
    problems = option_problems(m["options"])
    if problems:
        raise damaged(path, "; ".join(problems), what="not a run manifest")
    opts = m["options"]
    st = load_study(path.parent / "study.yaml")
    if st.digest() != m["study_sha256"]:
        raise RunFolderError(f"{path.parent / 'study.yaml'} does not match the study hash in {path}")
    run_dir = path.parent if path.parent.name else path.resolve().parent  # manifest.json given from inside its folder
    target = Path(out) if out is not None else run_dir.with_name(run_dir.name + "-rerun")
    opts = {k: v for k, v in opts.items() if k != "overrides"}  # already in study.yaml
    opts.setdefault("monthly_scenarios", None)  # runs from before the cap kept bands over every scenario
    return run_study(st, out=target, force=force, progress=progress, **opts)

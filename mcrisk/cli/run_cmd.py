"""`mcrisk run`: simulate a study into its run folder, print the headline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mcrisk.cli.common import (
    Paper,
    Precision,
    batch_log,
    count,
    err_console,
    fail,
    log_interval_option,
    parse_sets,
    precision_value,
    warn,
    write_report,
)
from mcrisk.cli.terminal import out_console, print_headline, print_sections, print_timings, set_wide
from mcrisk.engine import interrupt
from mcrisk.engine.cluster import distributed_shard
from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError


def run(
    ctx: typer.Context,
    study: Path | None = typer.Argument(None, help="Study YAML file; the embedded default study if omitted."),
    scenarios: int | None = typer.Option(
        None,
        "--scenarios",
        "-n",
        parser=count,
        metavar="N",
        help="Number of scenarios (overrides simulation.scenarios).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Root seed (overrides simulation.seed)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default outputs/<study name>/)."),
    chunk_size: int | None = typer.Option(
        None,
        "--chunk-size",
        parser=count,
        metavar="N",
        help="Scenarios per chunk; changes no scenario row or percentile (means and SDs only by float64 rounding).",
    ),
    precision: Precision | None = typer.Option(
        None, "--precision", help="Floating-point type of the paths (overrides simulation.precision)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    no_scenarios: bool = typer.Option(
        False, "--no-scenarios", help="Write summaries only, no per-scenario Parquet (for very large N)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, progress lines or table."),
    log_interval: float | None = log_interval_option(),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the interrupted run of this run folder from its last checkpoint."
    ),
    from_manifest: Path | None = typer.Option(
        None, "--from-manifest", help="Run again what a manifest.json describes (its study, seed and options)."
    ),
    checkpoint_every: int | None = typer.Option(
        None,
        "--checkpoint-every",
        parser=count,
        metavar="N",
        help="Chunks between checkpoints (default: about every 4M scenarios).",
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="Run slice i of k (i/k, 0-based) of the scenarios, for job arrays, or auto (this process's slice under jax.distributed); {shard} in --out becomes i; combine with mcrisk merge.",
    ),
    columns: str | None = typer.Option(
        None, "--columns", help="Comma-separated Parquet columns to keep (scenario and system always stay)."
    ),
    sample_fraction: float | None = typer.Option(
        None,
        "--sample-fraction",
        help="Write only this share of the scenarios to Parquet (a fixed random subset); summaries use all.",
    ),
    report: bool = typer.Option(
        False, "--report", help="Also write report.html (the mcrisk report page) into the run folder."
    ),
    pdf: bool = typer.Option(
        False,
        "--pdf",
        help="Also write report.html and print it to report.pdf with headless Chromium (mcrisk report --pdf).",
    ),
    paper: Paper = typer.Option(Paper.a4, "--paper", help="Paper size of report.pdf."),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        help="Override a study value: PATH=VALUE (YAML, e.g. market.token_price.annual_decline=0.9); repeatable.",
    ),
    target_mcse: str | None = typer.Option(
        None,
        "--target-mcse",
        help="METRIC:STAT:VALUE, e.g. npv_usd:p5:50000: stop adding chunks once that MCSE is met for every system (--scenarios is the maximum).",
    ),
    no_monthly: bool = typer.Option(False, "--no-monthly", help="Skip the monthly percentile bands (monthly.parquet)."),
    monthly_scenarios: str | None = typer.Option(
        None, "--monthly-scenarios", help="Monthly bands from the first N scenarios, or 'all' (default 262144)."
    ),
    no_analyze: bool = typer.Option(False, "--no-analyze", help="Skip sensitivity.csv and comparison.csv."),
    no_stress: bool = typer.Option(False, "--no-stress", help="Skip the study's stress tests (stress.csv)."),
    greeks: bool = typer.Option(
        False, "--greeks", help="Also write greeks.csv, reverse_stress.csv and design_point.csv (mcrisk greeks)."
    ),
    timings: bool = typer.Option(
        False, "--timings", help="Also print where the time went: each stage's seconds, share and throughput."
    ),
    wide: bool = typer.Option(
        False, "--wide", help="Print each table row on one line whatever the terminal's width (as mcrisk --wide)."
    ),
) -> None:
    """Simulate a study and write its run folder (scenarios.parquet, summary.csv, risk.csv, summary.nc, manifest.json)."""
    if wide:
        set_wide(True)
    bar, progress = _progress_bar(quiet)
    try:
        _refuse_fixed_options(ctx, from_manifest, resume)
        shard_ik = _parse_shard(shard) if shard is not None else None
        if shard_ik is not None and out is not None:  # one folder per shard: --out runs/shard-{shard}
            out = Path(str(out).replace("{shard}", str(shard_ik[0])))
        elif out is not None and "{shard}" in str(out):  # (it made a folder named with the braces)
            raise StudyError([Problem("--out", f"{str(out)!r} has {{shard}}, which only --shard fills in")], "options")
        options = dict(
            scenarios=scenarios,
            seed=seed,
            chunk_size=chunk_size,
            precision=precision_value(precision),
            force=force,
            write_scenarios=not no_scenarios,
            checkpoint_every=checkpoint_every,
            shard=shard_ik,
            columns=[x.strip() for x in columns.split(",") if x.strip()] if columns is not None else None,
            sample_fraction=sample_fraction,
            target_mcse=target_mcse,
            monthly=not no_monthly,
            analyze=not no_analyze,
            stress=not no_stress,
        )
        if monthly_scenarios is not None:  # (else run_study's default cap)
            options["monthly_scenarios"] = _parse_monthly_scenarios(monthly_scenarios)
        options["overrides"] = parse_sets(set_)
        with bar, batch_log(quiet, log_interval):
            result = _run(study, out, from_manifest, resume, force, progress, options)
    except (StudyError, RunFolderError, OSError) as exc:
        fail(exc)
    except RunInterrupted as exc:
        if exc.resume_from is None:
            err_console.print("interrupted before the run's first checkpoint: nothing was kept", highlight=False)
        else:
            err_console.print(f"interrupted: continue with  mcrisk run --resume {exc.resume_from}", highlight=False)
        # (run_study cancelled its compiles; _leave does not wait for a running one)
        raise typer.Exit(interrupt.exit_code()) from None
    except KeyboardInterrupt:  # before the run had a folder
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(interrupt.exit_code()) from None
    warn(result.manifest.get("warnings") or ())
    if not quiet:
        print_headline(result)
        print_sections(result)
        secs = result.manifest["seconds"]["total"]
        out_console.print(f"wrote {result.folder} in {secs:.1f} s", highlight=False)
    if timings:
        print_timings(result.manifest)
    if greeks:
        with batch_log(quiet, log_interval):
            _greeks(result, quiet)
    if report or pdf:
        write_report(result.folder, quiet, pdf=pdf, paper=paper.value)


def _run(
    study: Path | None,
    out: Path | None,
    from_manifest: Path | None,
    resume: Path | None,
    force: bool,
    progress: Callable[[int, int], None],
    options: dict,
) -> Any:
    """The run the command asks for: again from a manifest, resumed, or a study with `options`."""
    # The engine is imported here, once the command is known: meanwhile the backend starts (app.main).
    from mcrisk.workflows.run import rerun_manifest, run_study

    if from_manifest is not None:
        return rerun_manifest(from_manifest, out=out, force=force, progress=progress)
    if resume is not None:
        return run_study(study, out=resume, resume=True, progress=progress)
    return run_study(study, out=out, progress=progress, **options)


def _greeks(result: Any, quiet: bool) -> None:
    """`mcrisk greeks` on the run's own study (overrides applied), seed and scenario count, into its folder."""
    from mcrisk.cli.greeks_cmd import print_greeks, print_reverse_stress
    from mcrisk.workflows.greeks import run_greeks

    m = result.manifest
    try:
        g = run_greeks(
            result.folder / "study.yaml", out=result.folder, scenarios=m["scenarios"], seed=m["seed"], force=True
        )
    except (StudyError, RunFolderError) as exc:
        fail(exc)
    if not quiet:
        print_greeks(g.greeks)
        print_reverse_stress(g.reverse_stress, g.design_point)


def _progress_bar(quiet: bool) -> tuple[Progress, Callable[[int, int], None]]:
    """The progress bar (shown on a terminal unless `quiet`) and the run's progress callback that moves it."""
    show = not quiet and err_console.is_terminal
    bar = Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
        transient=True,
    )
    task = bar.add_task("run", total=None, rate="")

    def progress(done: int, total: int) -> None:
        el = bar.tasks[0].elapsed or 0.0
        rate = f"{done / el:,.0f} scenarios/s" if el > 0 else ""
        bar.update(task, completed=done, total=total, rate=rate)

    return bar, progress


# The options that go with --from-manifest and --resume; the manifest or the interrupted run fixes every other
# (--resume also takes the study, checked against the one the run was started with).
WITH_FROM_MANIFEST = {
    "from_manifest",
    "out",
    "force",
    "quiet",
    "log_interval",
    "report",
    "pdf",
    "paper",
    "timings",
    "wide",
}
WITH_RESUME = {"resume", "study", "quiet", "log_interval", "report", "pdf", "paper", "timings", "wide"}


def _given(ctx: typer.Context) -> list:
    """The parameters of the command that were given (on the command line or by environment), not defaulted."""
    # By name: typer carries its own copy of click, whose ParameterSource is another class than click's.
    given = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    return [p for p in ctx.command.params if getattr(ctx.get_parameter_source(p.name), "name", None) in given]


def _flag(param) -> str:
    """An option as the user writes it (--seed), an argument by its name (STUDY)."""
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0] if longs else str(param.name).upper()


def _refuse_fixed_options(ctx: typer.Context, from_manifest: Path | None, resume: Path | None) -> None:
    """--from-manifest and --resume run what was already decided: refuse the options they would ignore."""

    if from_manifest is not None:
        which, allowed, why = "--from-manifest", WITH_FROM_MANIFEST, "the manifest fixes the study, seed and options"
    elif resume is not None:
        which, allowed, why = "--resume", WITH_RESUME, "the interrupted run fixes its folder, seed and options"
    else:
        return
    bad = [_flag(p) for p in _given(ctx) if p.name not in allowed]
    if bad:
        ok = ", ".join(
            _flag(p) for p in ctx.command.params if p.name in allowed and p.name not in ("from_manifest", "resume")
        )
        raise StudyError(
            [Problem(which, f"cannot be combined with {', '.join(bad)}: {why} (it takes only {ok})")], "options"
        )


def _parse_monthly_scenarios(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        n = count(text)
    except typer.BadParameter:
        n = None
    if n is None or n < 1:
        raise StudyError(
            [Problem("--monthly-scenarios", f"must be a whole number >= 1 or 'all', got {text!r}")], "options"
        )
    return n


def _parse_shard(text: str) -> tuple[int, int]:
    if text.strip() == "auto":  # under jax.distributed: this process's index of the process count
        return distributed_shard()
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise StudyError([Problem("--shard", f"must be i/k (e.g. 0/8) or auto, got {text!r}")], "options") from None
    return i, k

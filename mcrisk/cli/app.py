"""The `mcrisk` command: a thin typer shell over the library (`run_study`, `load_study`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mcrisk._x64 import enable_float64
from mcrisk.engine import interrupt
from mcrisk.errors import Problem, RunFolderError, RunInterrupted, StudyError
from mcrisk.study.presets import leaves
from mcrisk.cli.terminal import money, out_console, print_analysis, print_claims, print_headline, print_sections, print_timings, value_text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Monte Carlo risk for the economics of AI inference: a study file in, scenario economics and risk tables out.",
)
err_console = Console(stderr=True, soft_wrap=True)

EXIT_INVALID = 2


def _fail(exc: Exception) -> None:
    """Show a user error (invalid study, refused folder) without a traceback; exit 2."""
    from rich.markup import escape  # a message quotes paths and values, which may hold [tags]

    if isinstance(exc, StudyError):
        where = f" {escape(exc.source)}" if exc.source else ""
        err_console.print(f"[bold red]error:[/] invalid study{where} ({len(exc.problems)} problem(s)):", highlight=False)
        for p in exc.problems:
            err_console.print(f"  {p}", highlight=False, markup=False)
    else:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def _count(text: str) -> int:
    """A count as 200000, 200_000 or 2e5: scenario counts are written in powers of ten (1e8)."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        x = float(text.strip().replace("_", ""))
    except ValueError:
        raise typer.BadParameter(f"must be a whole number (200000, 200_000 or 2e5), got {text!r}") from None
    if not x.is_integer():
        raise typer.BadParameter(f"must be a whole number, got {text!r}")
    return int(x)


@app.command()
def run(
    ctx: typer.Context,
    study: Optional[Path] = typer.Argument(None, help="Study YAML file; the embedded default study if omitted."),
    scenarios: Optional[int] = typer.Option(None, "--scenarios", "-n", parser=_count, metavar="N", help="Number of scenarios (overrides simulation.scenarios)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Root seed (overrides simulation.seed)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default outputs/<study name>/)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", parser=_count, metavar="N", help="Scenarios per chunk; changes no scenario row or percentile (means and SDs only by float64 rounding)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="float32 or float64 (overrides simulation.precision)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    no_scenarios: bool = typer.Option(False, "--no-scenarios", help="Write summaries only, no per-scenario Parquet (for very large N)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run of this run folder from its last checkpoint."),
    from_manifest: Optional[Path] = typer.Option(None, "--from-manifest", help="Run again what a manifest.json describes (its study, seed and options)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", parser=_count, metavar="N", help="Chunks between checkpoints (default: about every 4M scenarios)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Run slice i of k (i/k, 0-based) of the scenarios, for job arrays, or auto (this process's slice under jax.distributed); {shard} in --out becomes i; combine with mcrisk merge."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated Parquet columns to keep (scenario and system always stay)."),
    sample_fraction: Optional[float] = typer.Option(None, "--sample-fraction", help="Write only this share of the scenarios to Parquet (a fixed random subset); summaries use all."),
    report: bool = typer.Option(False, "--report", help="Also write report.html (the mcrisk report page) into the run folder."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a study value: PATH=VALUE (YAML, e.g. market.token_price.annual_decline=0.9); repeatable."),
    target_mcse: Optional[str] = typer.Option(None, "--target-mcse", help="METRIC:STAT:VALUE, e.g. npv_usd:p5:50000: stop adding chunks once that MCSE is met for every system (--scenarios is the maximum)."),
    no_monthly: bool = typer.Option(False, "--no-monthly", help="Skip the monthly percentile bands (monthly.parquet)."),
    monthly_scenarios: Optional[str] = typer.Option(None, "--monthly-scenarios", help="Monthly bands from the first N scenarios, or 'all' (default 262144)."),
    no_analyze: bool = typer.Option(False, "--no-analyze", help="Skip sensitivity.csv and comparison.csv."),
    no_stress: bool = typer.Option(False, "--no-stress", help="Skip the study's stress tests (stress.csv)."),
    timings: bool = typer.Option(False, "--timings", help="Also print where the time went: each stage's seconds, share and throughput."),
) -> None:
    """Simulate a study and write its run folder (scenarios.parquet, summary.csv, risk.csv, summary.nc, manifest.json)."""
    from mcrisk.workflows.run import rerun_manifest, run_study

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

    try:
        _refuse_fixed_options(ctx, from_manifest, resume)
        shard_ik = _parse_shard(shard) if shard is not None else None
        if shard_ik is not None and out is not None:  # one folder per shard: --out runs/shard-{shard}
            out = Path(str(out).replace("{shard}", str(shard_ik[0])))
        elif out is not None and "{shard}" in str(out):  # (it made a folder named with the braces)
            raise StudyError([Problem("--out", f"{str(out)!r} has {{shard}}, which only --shard fills in")], "options")
        band_n = _parse_monthly_scenarios(monthly_scenarios)
        with bar:
            if from_manifest is not None:
                result = rerun_manifest(from_manifest, out=out, force=force, progress=progress)
            elif resume is not None:
                result = run_study(study, out=resume, resume=True, progress=progress)
            else:
                result = run_study(
                    study,
                    out=out,
                    scenarios=scenarios,
                    seed=seed,
                    chunk_size=chunk_size,
                    precision=precision,
                    force=force,
                    write_scenarios=not no_scenarios,
                    checkpoint_every=checkpoint_every,
                    shard=shard_ik,
                    columns=[x.strip() for x in columns.split(",") if x.strip()] if columns is not None else None,
                    sample_fraction=sample_fraction,
                    overrides=_parse_sets(set_),
                    target_mcse=target_mcse,
                    monthly=not no_monthly,
                    monthly_scenarios=band_n,
                    analyze=not no_analyze,
                    stress=not no_stress,
                    progress=progress,
                )
    except (StudyError, RunFolderError) as exc:
        _fail(exc)
    except RunInterrupted as exc:
        if exc.resume_from is None:
            err_console.print("interrupted before the run's first checkpoint: nothing was kept", highlight=False)
        else:
            err_console.print(f"interrupted: continue with  mcrisk run --resume {exc.resume_from}", highlight=False)
        raise typer.Exit(interrupt.exit_code())  # (run_study cancelled its compiles; _leave does not wait for a running one)
    except KeyboardInterrupt:  # before the run had a folder
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(interrupt.exit_code())
    if not quiet:
        print_headline(result)
        print_sections(result)
        secs = result.manifest["seconds"]["total"]
        out_console.print(f"wrote {result.folder} in {secs:.1f} s", highlight=False)
    if timings:
        print_timings(result.manifest)
    if report:
        _write_report(result.folder, quiet)


# The options that go with --from-manifest and --resume; the manifest or the interrupted run fixes every other
# (--resume also takes the study, checked against the one the run was started with).
WITH_FROM_MANIFEST = {"from_manifest", "out", "force", "quiet", "report", "timings"}
WITH_RESUME = {"resume", "study", "quiet", "report", "timings"}


def _given(ctx: typer.Context) -> list:
    """The parameters of the command that were given (on the command line or by environment), not defaulted."""
    # By name: typer carries its own copy of click, whose ParameterSource is another class than click's.
    given = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    return [p for p in ctx.command.params if getattr(ctx.get_parameter_source(p.name), "name", None) in given]


def _flag(param) -> str:
    """An option as the user writes it (--seed), an argument by its name (STUDY)."""
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0] if longs else str(param.name).upper()


def _refuse_fixed_options(ctx: typer.Context, from_manifest: Optional[Path], resume: Optional[Path]) -> None:
    """--from-manifest and --resume run what was already decided: refuse the options they would ignore."""

    if from_manifest is not None:
        which, allowed, why = "--from-manifest", WITH_FROM_MANIFEST, "the manifest fixes the study, seed and options"
    elif resume is not None:
        which, allowed, why = "--resume", WITH_RESUME, "the interrupted run fixes its folder, seed and options"
    else:
        return
    bad = [_flag(p) for p in _given(ctx) if p.name not in allowed]
    if bad:
        ok = ", ".join(_flag(p) for p in ctx.command.params if p.name in allowed and p.name not in ("from_manifest", "resume"))
        raise StudyError([Problem(which, f"cannot be combined with {', '.join(bad)}: {why} (it takes only {ok})")], "options")


def _parse_monthly_scenarios(text: str | None) -> int | None:
    from mcrisk.engine.plan import MONTHLY_SCENARIOS

    if text is None:
        return MONTHLY_SCENARIOS
    if text.strip().lower() == "all":
        return None
    try:
        n = _count(text)
    except typer.BadParameter:
        n = None
    if n is None or n < 1:
        raise StudyError([Problem("--monthly-scenarios", f"must be a whole number >= 1 or 'all', got {text!r}")], "options")
    return n


def _parse_shard(text: str) -> tuple[int, int]:

    if text.strip() == "auto":  # under jax.distributed: this process's index of the process count
        from mcrisk.engine.cluster import distributed_shard

        return distributed_shard()
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise StudyError([Problem("--shard", f"must be i/k (e.g. 0/8) or auto, got {text!r}")], "options") from None
    return i, k


@app.command()
def merge(
    shards: list[Path] = typer.Argument(..., help="The run folders of every shard (mcrisk run --shard i/k)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write the merged run into."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
) -> None:
    """Combine the shard folders of one run into the run folder a single job would have written."""
    from mcrisk.workflows.merge import merge_runs

    try:
        result = merge_runs(shards, out=out, force=force)
    except (StudyError, RunFolderError) as exc:
        _fail(exc)
    if not quiet:
        print_headline(result)
        print_sections(result)
        out_console.print(f"merged {len(shards)} shards into {result.folder}", highlight=False)


@app.command()
def validate(study: Path = typer.Argument(..., help="Study YAML file to check.")) -> None:
    """Check a study without simulating; print it resolved (defaults, catalog values and sized units
    filled in) and where each value came from (study, default, preset, workload, curve, sizing)."""
    from rich.table import Table

    from mcrisk.study.schema import load_study_with_provenance

    try:
        st, provenance = load_study_with_provenance(study)
    except StudyError as exc:
        _fail(exc)
    inputs = st.inputs()
    uncertain = [i for i in inputs if not i.dist.is_fixed]
    out_console.print(st.to_yaml(provenance=False), markup=False, highlight=False, end="")
    values = dict(leaves(st.resolved()))
    table = Table(title="where each value came from")
    for col in ("path", "value", "source"):
        table.add_column(col, overflow="fold")
    for path, source in provenance.items():
        table.add_row(path, value_text(values.get(path)), source)
    out_console.print(table)
    out_console.print(
        f"# valid: {len(st.systems)} system(s), {len(inputs)} inputs ({len(uncertain)} uncertain), "
        f"{st.simulation.scenarios:,} scenarios x {st.simulation.horizon_months} months",
        markup=False,
        highlight=False,
    )


@app.command("catalog")
def catalog_command(name: Optional[str] = typer.Argument(None, help="An entry to show with its sources; all entries if omitted.")) -> None:
    """List the catalog (systems, workloads, software curves, serving modes, priors), or show one entry's numbers and sources."""
    from rich.table import Table

    from mcrisk.study import catalog

    if name is None:
        table = Table(title="mcrisk catalog (mcrisk catalog NAME shows one with its sources)")
        for col in ("kind", "name", "title", "summary"):
            table.add_column(col, overflow="fold")
        for row in catalog.list_entries():
            table.add_row(row["kind"], row["name"], row["title"], row["summary"])
        out_console.print(table)
        return
    try:
        entry = catalog.get_entry(name)
    except catalog.CatalogError as exc:
        _fail(exc)
    out_console.print(f"[bold]{entry.name}[/] ({entry.kind}): {entry.title}", highlight=False)
    out_console.print(entry.summary, markup=False, highlight=False)
    table = Table(show_lines=True)
    for col in ("field", "value", "source", "date", "tag", "derivation / note"):
        table.add_column(col, overflow="fold")
    for r in catalog.entry_details(name):
        extra = "\n".join(x for x in (r["derivation"], r["note"]) if x)
        value = "NOT FOUND" if r["value"] is None else value_text(r["value"])
        table.add_row(r["field"], value, r["source"] or "", r["date"] or "", r["tag"] or "", extra)
    out_console.print(table)


@app.command()
def claims(
    names: Optional[list[str]] = typer.Argument(None, help="Claims to run (shipped names or claim files); all shipped claims if omitted."),
    out: Path = typer.Option(Path("outputs") / "claims", "--out", "-o", help="Folder for claims.csv, inputs.csv and one run folder per claim (replaced)."),
    scenarios: Optional[int] = typer.Option(None, "--scenarios", "-n", parser=_count, metavar="N", help="Scenarios of each uncertain run (default: the claim's, 20,000)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Root seed of the uncertain runs (default: the claim's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or table."),
) -> None:
    """Reproduce the vendors' published claims from their stated assumptions, then give P(claim holds)
    under realistic uncertainty from the catalog, with its MCSE and P5/P50/P95."""
    from mcrisk.workflows.claims import ClaimError, run_claims

    def progress(msg: str) -> None:
        if not quiet:
            err_console.print(f"running {msg}", highlight=False)

    try:
        result = run_claims(names or None, out=out, scenarios=scenarios, seed=seed, progress=progress)
    except (StudyError, RunFolderError, ClaimError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(interrupt.exit_code())
    if not quiet:
        print_claims(result.table)
        out_console.print(f"wrote {result.csv} and {result.inputs_csv}", highlight=False)




def _parse_sets(items: Optional[list[str]], many: bool = False) -> dict | list | None:
    """--set PATH=VALUE options: {path: value} (run), or [(path, [values])] with `many` (sweep)."""
    from mcrisk.study.variants import check_unique, parse_assignment

    if not items:
        return None
    try:
        pairs = [parse_assignment(x, many=many) for x in items]
        check_unique([p for p, _ in pairs])
    except StudyError as exc:
        _fail(exc)
    if many:
        return pairs
    return {path: values[0] for path, values in pairs}


@app.command()
def sweep(
    study: Optional[Path] = typer.Argument(None, help="Study YAML file; the embedded default study if omitted."),
    set_: list[str] = typer.Option(..., "--set", help="PATH=V1,V2,...: values of one study field (YAML); repeat for a grid."),
    scenarios: Optional[int] = typer.Option(None, "--scenarios", "-n", parser=_count, metavar="N", help="Scenarios per grid point (overrides simulation.scenarios)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Root seed, the same for every point (common random numbers)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Sweep folder (default outputs/<study name>-sweep/)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", parser=_count, metavar="N", help="Scenarios per chunk; changes no scenario row or percentile (means and SDs only by float64 rounding)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="float32 or float64."),
    force: bool = typer.Option(False, "--force", help="Replace an existing sweep folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
) -> None:
    """Run a grid of study variants on the same scenarios and write sweep.csv (grid point x system x key statistics)."""
    from rich.table import Table

    from mcrisk.workflows.stress import run_sweep

    grid = _parse_sets(set_, many=True)

    def point_done(k: int, total: int, point) -> None:
        if not quiet:
            err_console.print(f"point {k + 1}/{total} done: {point}", highlight=False, markup=False)

    try:
        folder, table = run_sweep(study, grid, out=out, scenarios=scenarios, seed=seed, chunk_size=chunk_size,
                                  precision=precision, force=force, point_done=point_done)
    except (StudyError, RunFolderError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(interrupt.exit_code())
    if quiet:
        return
    paths = [p for p, _ in grid]
    t = Table(title=f"sweep: {len(table) // max(1, table['system'].nunique())} points x {table['system'].nunique()} systems, same scenarios")
    for col in (*paths, "system", "NPV P5 / P50 / P95", "P(loss)", "ROI P50", "cost $/Mtok P50"):
        t.add_column(col, justify="left" if col in (*paths, "system") else "right", overflow="fold")
    for r in table.to_dict("records"):
        t.add_row(*(str(r[p]) for p in paths), r["system"], " / ".join(money(r[f"npv_usd_p{p}"]) for p in (5, 50, 95)),
                  f"{r['p_loss']:.1%}", f"{r['roi_multiple_p50']:.2f}x", f"{r['cost_per_mtok_usd_p50']:.4g}")
    out_console.print(t)
    out_console.print(f"wrote {folder / 'sweep.csv'}", highlight=False)


@app.command()
def analyze(
    run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run (with its scenarios.parquet)."),
    metric: str = typer.Option("npv_usd", "--metric", "-m", help="The metric whose drivers to rank (a column of scenarios.parquet)."),
    top: int = typer.Option(5, "--top", help="Drivers shown per system (sensitivity.csv holds them all)."),
) -> None:
    """Rank what drives a metric (sensitivity.csv) and compare the systems scenario by scenario (comparison.csv)."""
    import pandas as pd

    from mcrisk.workflows.analyze import analyze_run

    try:
        if top < 1:
            raise StudyError([Problem("--top", f"must be a whole number >= 1, got {top}")], "options")
        done = analyze_run(run_dir, metric=metric)
    except (StudyError, RunFolderError) as exc:
        _fail(exc)
    print_analysis(*(pd.read_csv(done.paths[k]) if k in done.paths else None for k in ("sensitivity", "comparison")), metric, top)
    for key, why in done.skipped.items():
        out_console.print(f"no {key}.csv: {why}", highlight=False)
    out_console.print(f"wrote {' and '.join(str(p) for p in done.paths.values())}", highlight=False)


@app.command("report")
def report_command(run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run.")) -> None:
    """Write report.html into a run folder: one self-contained page (figures embedded, also saved in figures/)
    with the headline, distributions, cash flow, costs, drivers, comparisons and the tables."""
    _write_report(run_dir, quiet=False)


def _write_report(run_dir: Path, quiet: bool) -> None:
    from mcrisk.report.page import write_report

    try:
        path = write_report(run_dir)
    except RunFolderError as exc:
        _fail(exc)
    if not quiet:
        out_console.print(f"wrote {path}", highlight=False)


def _compilation_cache() -> None:
    """Keep compiled XLA programs between runs (same study shape -> no recompiling).

    MCRISK_CACHE_DIR chooses the folder (default ~/.cache/mcrisk/xla); 'off' disables it.
    """
    import os

    where = os.environ.get("MCRISK_CACHE_DIR", str(Path.home() / ".cache" / "mcrisk" / "xla"))
    if where.lower() in ("off", "0", "none", ""):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _leave(code: int) -> None:
    """End the process now: the atexit handlers run (JAX's, a jax.distributed shutdown) and the
    output is flushed; the interpreter's teardown is skipped.

    That teardown took about 1 s after every command on 2 cores (every module, XLA's client and
    its thread pools destroyed; a short run took 8.95 s from start to exit, now 8.14 s), and after
    Ctrl-C it waited for a compile still running, which XLA cannot stop (8 s on 2 cores). Every
    file a command writes is complete before the command returns, and a run folder is kept safe
    against SIGKILL (checkpoints are written whole, then renamed), so against this too."""
    import atexit
    import os

    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or debugger writes its results after the program returns
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (mcrisk ... | head)
            pass
    os._exit(code)


# Commands that simulate, and so start the accelerator (cli.main starts it early for them).
SIMULATING = ("run", "claims", "sweep")


def _start_backend_early(argv: list[str]) -> None:
    """Start JAX's backend in a thread while the command imports the engine and reads its study.

    On a GPU host the start (the driver, the CUDA libraries, the device memory pool) takes
    seconds, and it runs outside the interpreter lock, so the imports, the study's validation and
    the run folder's checks go on beside it. JAX reserves the pool (75% of the card's memory) on
    the first array, not when the backend starts, so the thread makes one: on an H200 the
    reservation took 1.2-2.8 s, which the run's first arrays had waited for. Only for commands
    that simulate (others never touch the device), and never under `--shard auto`, whose
    jax.distributed must be set up before the backend starts. A start that fails fails again,
    with its message, where the run needs it."""
    import os
    import threading

    from mcrisk.engine.cluster import COORDINATOR_ENV

    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in SIMULATING or "auto" in argv or "--shard=auto" in argv:
        return
    if any(os.environ.get(k) for k in COORDINATOR_ENV):  # set for --shard auto's jax.distributed
        return

    def start() -> None:
        import jax

        try:
            jax.devices()
            if jax.default_backend() != "cpu":  # the device's memory pool is reserved on its first array
                import numpy as np

                jax.device_put(np.zeros((), np.float32)).block_until_ready()
        except Exception:  # reported by the run itself
            pass

    threading.Thread(target=start, name="mcrisk-backend", daemon=True).start()


def main() -> None:
    enable_float64()
    _compilation_cache()
    _start_backend_early(sys.argv[1:])
    # SIGTERM (a batch scheduler's stop) ends a run like Ctrl-C: the partial folder stays for --resume.
    interrupt.install()
    try:
        app()
        code = 0
    except KeyboardInterrupt:  # outside a command (typer makes one inside a command exit 130)
        err_console.print("interrupted")
        code = interrupt.exit_code()
    except SystemExit as exc:  # how typer ends every command
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    _leave(code)


if __name__ == "__main__":
    main()

"""The commands besides `mcrisk run`: merge, validate, catalog, claims, sweep, analyze, report.

Each command imports its workflow when it runs: the engine (JAX), pandas and the catalog's data
are heavy to import, and a command that simulates starts the backend meanwhile (app.main)."""

from __future__ import annotations

from pathlib import Path

import typer

from mcrisk.cli import layout
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
from mcrisk.cli.terminal import (
    emit,
    money,
    out_console,
    print_analysis,
    print_claims,
    print_headline,
    print_sections,
    say,
    value_text,
    width,
)
from mcrisk.engine import interrupt
from mcrisk.errors import Problem, RunFolderError, StudyError
from mcrisk.stats import formats as ft


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
    except (StudyError, RunFolderError, OSError) as exc:
        fail(exc)
    if not quiet:
        print_headline(result)
        print_sections(result)
        out_console.print(f"merged {len(shards)} shards into {result.folder}", highlight=False)


def validate(study: Path = typer.Argument(..., help="Study YAML file to check.")) -> None:
    """Check a study without simulating; print it resolved (defaults, catalog values and sized units
    filled in) and where each value came from (study, default, preset, workload, curve, sizing)."""
    from mcrisk.study.presets import leaves
    from mcrisk.study.schema import load_study_with_provenance

    try:
        st, provenance = load_study_with_provenance(study)
    except StudyError as exc:
        fail(exc)
    from mcrisk.study.plausibility import plausibility_warnings

    warnings = plausibility_warnings(st)
    warn(warnings)
    inputs = st.inputs()
    uncertain = [i for i in inputs if not i.dist.is_fixed]
    out_console.print(st.to_yaml(provenance=False), markup=False, highlight=False, end="")
    values = dict(leaves(st.resolved()))
    say("where each value came from:")
    for path, source in provenance.items():
        say(f"{path} = {value_text(values.get(path))}  [{source}]", "  ", "      ")
    out_console.print(
        f"# valid: {len(st.systems)} system(s), {len(inputs)} inputs ({len(uncertain)} uncertain), "
        f"{st.simulation.scenarios:,} scenarios x {st.simulation.horizon_months} months"
        + (f"; {len(warnings)} plausibility warning(s) on stderr" if warnings else ""),
        markup=False,
        highlight=False,
    )


def catalog_command(
    name: str | None = typer.Argument(None, help="An entry to show with its sources; all entries if omitted."),
) -> None:
    """List the catalog (systems, workloads, software curves, serving modes, priors), or show one entry's numbers and sources."""
    from mcrisk.study import catalog

    if name is None:
        say("mcrisk catalog (mcrisk catalog NAME shows one entry with its sources)")
        kind = None
        for row in catalog.list_entries():
            if row["kind"] != kind:
                kind = row["kind"]
                emit(["", f"{kind}:"])
            say(f"{row['name']}: {row['title']}", "  ", "    ")
            say(row["summary"], "      ", "      ")
        return
    try:
        entry = catalog.get_entry(name)
    except catalog.CatalogError as exc:
        fail(exc)
    say(f"{entry.name} ({entry.kind}): {entry.title}")
    say(entry.summary)
    for r in catalog.entry_details(name):
        value = "NOT FOUND" if r["value"] is None else value_text(r["value"])
        when = ", ".join(x for x in (r["tag"], r["date"]) if x)
        emit([""])
        say(f"{r['field']} = {value}" + (f"  [{when}]" if when else ""), "", "    ")
        for what in ("source", "derivation", "note"):
            if r[what]:
                say(f"{what}: {r[what]}", "    ", "      ")


def claims(
    names: list[str] | None = typer.Argument(
        None, help="Claims to run (shipped names or claim files); all shipped claims if omitted."
    ),
    out: Path = typer.Option(
        Path("outputs") / "claims",
        "--out",
        "-o",
        help="Folder for claims.csv, inputs.csv and one run folder per claim (replaced).",
    ),
    scenarios: int | None = typer.Option(
        None,
        "--scenarios",
        "-n",
        parser=count,
        metavar="N",
        help="Scenarios of each uncertain run (default: the claim's, 20,000).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Root seed of the uncertain runs (default: the claim's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or table."),
    log_interval: float | None = log_interval_option(),
) -> None:
    """Reproduce the vendors' published claims from their stated assumptions, then give P(claim holds)
    under realistic uncertainty from the catalog, with its MCSE and P5/P50/P95."""
    from mcrisk.workflows.claims import ClaimError, run_claims

    def progress(msg: str) -> None:
        if not quiet:
            err_console.print(f"running {msg}", highlight=False)

    try:
        with batch_log(quiet, log_interval):
            result = run_claims(names or None, out=out, scenarios=scenarios, seed=seed, progress=progress)
    except (StudyError, RunFolderError, ClaimError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(interrupt.exit_code()) from None
    if not quiet:
        print_claims(result.table)
        out_console.print(f"wrote {result.csv} and {result.inputs_csv}", highlight=False)


def sweep(
    study: Path | None = typer.Argument(None, help="Study YAML file; the embedded default study if omitted."),
    set_: list[str] = typer.Option(
        ..., "--set", help="PATH=V1,V2,...: values of one study field (YAML); repeat for a grid."
    ),
    scenarios: int | None = typer.Option(
        None,
        "--scenarios",
        "-n",
        parser=count,
        metavar="N",
        help="Scenarios per grid point (overrides simulation.scenarios).",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Root seed, the same for every point (common random numbers)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Sweep folder (default outputs/<study name>-sweep/)."),
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
    force: bool = typer.Option(False, "--force", help="Replace an existing sweep folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines or table."),
    log_interval: float | None = log_interval_option(),
) -> None:
    """Run a grid of study variants on the same scenarios and write sweep.csv (grid point x system x key statistics)."""
    from mcrisk.workflows.sweep import run_sweep

    grid = parse_sets(set_, many=True)

    def point_done(k: int, total: int, point) -> None:
        if not quiet:
            err_console.print(f"point {k + 1}/{total} done: {point}", highlight=False, markup=False)

    try:
        with batch_log(quiet, log_interval):
            folder, table = run_sweep(
                study,
                grid,
                out=out,
                scenarios=scenarios,
                seed=seed,
                chunk_size=chunk_size,
                precision=precision_value(precision),
                force=force,
                point_done=point_done,
            )
    except (StudyError, RunFolderError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(interrupt.exit_code()) from None
    if quiet:
        return
    paths = [p for p, _ in grid]
    title = f"sweep: {len(table) // max(1, table['system'].nunique())} points x {table['system'].nunique()} systems, same scenarios"
    rows = [
        [
            *(str(r[p]) for p in paths),
            r["system"],
            " / ".join(money(r[f"npv_usd_p{p}"]) for p in (5, 50, 95)),
            ft.share(r["p_loss"]),
            ft.value("roi_multiple", r["roi_multiple_p50"]),
            ft.value("cost_per_mtok_usd", r["cost_per_mtok_usd_p50"]),
        ]
        for r in table.to_dict("records")
    ]
    headers = [*paths, "system", "NPV P5 / P50 / P95", "P(loss)", "revenue per\n$ capex P50", "cost per Mtok\nsold P50"]
    emit(layout.table(headers, rows, width(), keys=len(paths) + 1, title=title))
    out_console.print(f"wrote {folder / 'sweep.csv'}", highlight=False)


def analyze(
    run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run (with its scenarios.parquet)."),
    metric: str = typer.Option(
        "npv_usd", "--metric", "-m", help="The metric whose drivers to rank (a column of scenarios.parquet)."
    ),
    top: int = typer.Option(5, "--top", help="Drivers shown per system (sensitivity.csv holds them all)."),
) -> None:
    """Rank what drives a metric (sensitivity.csv) and compare the systems scenario by scenario (comparison.csv)."""
    import pandas as pd

    from mcrisk.workflows.analyze import analyze_run

    try:
        if top < 1:
            raise StudyError([Problem("--top", f"must be a whole number >= 1, got {top}")], "options")
        done = analyze_run(run_dir, metric=metric)
    except (StudyError, RunFolderError, OSError) as exc:
        fail(exc)
    print_analysis(
        *(pd.read_csv(done.paths[k]) if k in done.paths else None for k in ("sensitivity", "comparison")), metric, top
    )
    for key, why in done.skipped.items():
        out_console.print(f"no {key}.csv: {why}", highlight=False)
    out_console.print(f"wrote {' and '.join(str(p) for p in done.paths.values())}", highlight=False)


def verify(run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run or mcrisk merge.")) -> None:
    """Check a run folder end to end against its manifest: the study, every output's SHA-256, and
    exactly the Parquet parts it lists, each as written; exit 0 if it verifies, 2 with what is wrong."""
    from mcrisk.io.verify import verify_run

    try:
        problems = verify_run(run_dir)
    except RunFolderError as exc:
        fail(exc)
    if problems:
        fail(RunFolderError(f"{str(run_dir)!r} does not verify:\n  " + "\n  ".join(problems)))
    out_console.print(f"{run_dir}: verified", highlight=False)


def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by mcrisk run."),
    pdf: bool = typer.Option(
        False, "--pdf", help="Also print the page to report.pdf with headless Chromium (needs playwright and chromium)."
    ),
    paper: Paper = typer.Option(Paper.a4, "--paper", help="Paper size of report.pdf."),
) -> None:
    """Write report.html into a run folder: one self-contained page (figures embedded, also saved in figures/)
    with the headline, distributions, cash flow, costs, drivers, comparisons and the tables; with --pdf
    also report.pdf."""
    write_report(run_dir, quiet=False, pdf=pdf, paper=paper.value)

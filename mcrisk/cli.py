"""The `mcrisk` command: a thin typer shell over the library (`run_study`, `load_study`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .errors import RunFolderError, StudyError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Monte Carlo risk for the economics of AI inference: a study file in, scenario economics and risk tables out.",
)
out_console = Console()
err_console = Console(stderr=True, soft_wrap=True)

EXIT_INVALID = 2


def _fail(exc: Exception) -> None:
    """Show a user error (invalid study, refused folder) without a traceback; exit 2."""
    if isinstance(exc, StudyError):
        where = f" {exc.source}" if exc.source else ""
        err_console.print(f"[bold red]error:[/] invalid study{where} ({len(exc.problems)} problem(s)):", highlight=False)
        for p in exc.problems:
            err_console.print(f"  {p}", highlight=False, markup=False)
    else:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def money(x: float) -> str:
    """$ amounts in k/M/B with 3 significant figures."""
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:,.3g}{suffix}"
    return f"{x:,.3g}"


def _fmt(metric: str, x: float) -> str:
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if metric.endswith("_usd") and "per_mtok" not in metric:
        return money(x)
    if metric == "operating_margin":
        return f"{x:.1%}"
    if metric == "roi_multiple":
        return f"{x:.2f}x"
    return f"{x:.4g}"


def print_headline(result) -> None:
    from rich.table import Table

    t = Table(title=f"{result.study.name}: {result.manifest['scenarios']:,} scenarios, {result.manifest['horizon_months']} months (P5 / P50 / P95)")
    t.add_column("system")
    labels = {"npv_usd": "NPV $", "roi_multiple": "ROI multiple", "operating_margin": "operating margin", "cost_per_mtok_usd": "cost $/Mtok"}
    for label in labels.values():
        t.add_column(label, justify="right")
    t.add_column("P(loss)", justify="right")
    for row in result.headline().to_dict("records"):
        cells = [" / ".join(_fmt(m, row[f"{m}:{p}"]) for p in ("p5", "p50", "p95")) for m in labels]
        t.add_row(row["system"], *cells, f"{row['p_loss']:.1%}")
    out_console.print(t)


@app.command()
def run(
    study: Optional[Path] = typer.Argument(None, help="Study YAML file; the embedded default study if omitted."),
    scenarios: Optional[int] = typer.Option(None, "--scenarios", "-n", help="Number of scenarios (overrides simulation.scenarios)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Root seed (overrides simulation.seed)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default outputs/<study name>/)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Scenarios per chunk; never changes a result."),
    precision: Optional[str] = typer.Option(None, "--precision", help="float32 or float64 (overrides simulation.precision)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
    no_scenarios: bool = typer.Option(False, "--no-scenarios", help="Write summaries only, no per-scenario Parquet (for very large N)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Simulate a study and write its run folder (scenarios.parquet, summary.csv, risk.csv, summary.nc, manifest.json)."""
    from .run import run_study

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
        with bar:
            result = run_study(
                study,
                out=out,
                scenarios=scenarios,
                seed=seed,
                chunk_size=chunk_size,
                precision=precision,
                force=force,
                write_scenarios=not no_scenarios,
                progress=progress,
            )
    except (StudyError, RunFolderError) as exc:
        _fail(exc)
    if not quiet:
        print_headline(result)
        secs = result.manifest["seconds"]["total"]
        out_console.print(f"wrote {result.folder} in {secs:.1f} s", highlight=False)


@app.command()
def validate(study: Path = typer.Argument(..., help="Study YAML file to check.")) -> None:
    """Check a study without simulating; print the resolved study (every default filled in)."""
    from .study import load_study

    try:
        st = load_study(study)
    except StudyError as exc:
        _fail(exc)
    inputs = st.inputs()
    uncertain = [i for i in inputs if not i.dist.is_fixed]
    out_console.print(st.to_yaml(), markup=False, highlight=False, end="")
    out_console.print(
        f"# valid: {len(st.systems)} system(s), {len(inputs)} inputs ({len(uncertain)} uncertain), "
        f"{st.simulation.scenarios:,} scenarios x {st.simulation.horizon_months} months",
        markup=False,
        highlight=False,
    )


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


def main() -> None:
    _compilation_cache()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

"""`mcrisk greeks`: exact sensitivities, the reverse stress test and the most likely loss scenario."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mcrisk.cli.common import batch_log, count, fail, log_interval_option
from mcrisk.cli.terminal import money, out_console
from mcrisk.errors import RunFolderError, StudyError

if TYPE_CHECKING:  # (pandas is imported by the command's workflow, not by the CLI's start)
    import pandas as pd


def greeks(
    study: Path | None = typer.Argument(None, help="Study YAML file; the embedded default study if omitted."),
    scenarios: int | None = typer.Option(
        None, "--scenarios", "-n", parser=count, metavar="N", help="Number of scenarios (default: the study's)."
    ),
    metric: str = typer.Option("npv_usd", "--metric", help="The metric to differentiate (a metric of summary.csv)."),
    seed: int | None = typer.Option(None, "--seed", help="Root seed (overrides simulation.seed)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder to write into (default outputs/<study>-greeks/)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace greeks.csv and its companions there."),
    no_design_point: bool = typer.Option(False, "--no-design-point", help="Skip the FORM design point."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines or tables."),
    log_interval: float | None = log_interval_option(),
) -> None:
    """Write greeks.csv (pathwise derivatives of the mean, P5, P1 and P(loss) of a metric by every
    input and distribution parameter), reverse_stress.csv and design_point.csv (docs/greeks.md)."""
    from mcrisk.workflows.greeks import run_greeks

    try:
        with batch_log(quiet, log_interval):
            result = run_greeks(
                study, out=out, scenarios=scenarios, seed=seed, metric=metric, force=force, design=not no_design_point
            )
    except (StudyError, RunFolderError) as exc:
        fail(exc)
    if not quiet:
        print_greeks(result.greeks)
        print_reverse_stress(result.reverse_stress, result.design_point)
    out_console.print(f"wrote greeks.csv, reverse_stress.csv, design_point.csv to {result.folder}", highlight=False)


def print_greeks(g: pd.DataFrame, top: int = 6) -> None:
    """Per row, the parameters that move the metric's mean most for a step in their own unit."""
    from rich.table import Table

    if g.empty:
        return
    if (g["method"] == "not differentiable").all():
        out_console.print(f"[bold]{g['note'].iloc[0]}[/]", highlight=False)
        return
    for system, part in g.groupby("system", sort=False):
        part = part[part["method"] != "not differentiable"]
        part = part.reindex(part["d_mean_per_step"].abs().sort_values(ascending=False).index).head(top)
        t = Table(title=f"{system}: what one step of each parameter is worth (pathwise, {part['metric'].iloc[0]})")
        for c in ("input", "parameter", "step effect on the mean", "d mean (± se)", "d P5", "d P(loss)"):
            t.add_column(c, overflow="fold")
        for r in part.to_dict("records"):
            t.add_row(
                r["input"],
                r["parameter"],
                r["reading"].split(": ", 1)[-1] + f" per +{r['step']:g}",
                f"{r['d_mean']:.4g} ± {r['d_mean_se']:.2g}",
                f"{r['d_p5']:.4g}",
                f"{r['d_p_loss']:.3g}",
            )
        out_console.print(t)


def print_reverse_stress(rs: pd.DataFrame, dp: pd.DataFrame, top: int = 4) -> None:
    """The inputs that set the losing scenarios apart, and each row's most likely loss scenario."""
    from rich.table import Table

    if not rs.empty:
        t = Table(title="reverse stress test: NPV < 0 against the rest (inputs ranked by shift)")
        for c in ("system", "share", "input", "median inside", "median outside", "shift (sd)"):
            t.add_column(c, overflow="fold")
        for r in rs[(rs["region"] == "npv_below_0") & (rs["rank"] <= top)].to_dict("records"):
            t.add_row(
                r["system"],
                f"{r['share_inside']:.1%}",
                r["input"],
                f"{r['inside_median']:.4g}",
                f"{r['outside_median']:.4g}",
                f"{r['shift_sd']:+.2f}",
            )
        out_console.print(t)
    if dp.empty:
        return
    t = Table(title="most likely loss scenario (FORM design point, monthly shocks at 0)")
    for c in ("system", "beta", "Phi(-beta)", "MC P(loss)", "nearest losing inputs (value, median)"):
        t.add_column(c, overflow="fold")
    for system, part in dp.groupby("system", sort=False):
        first = part.iloc[0]
        if isinstance(first["note"], str) and first["note"]:
            t.add_row(system, "", "", f"{first['mc_p_loss']:.1%}", first["note"])
            continue
        moves = "; ".join(
            f"{r['input'].split('.')[-1]} {r['value']:.4g} ({r['median']:.4g})" for _, r in part.head(top).iterrows()
        )
        t.add_row(system, f"{first['beta']:.2f}", f"{first['form_p_loss']:.1%}", f"{first['mc_p_loss']:.1%}", moves)
    out_console.print(t)
    out_console.print(
        f"(capex at the median: {', '.join(money(float(x)) for x in dp.groupby('system', sort=False)['capex_usd'].first())})",
        highlight=False,
    )

"""`mcrisk greeks`: exact sensitivities, the reverse stress test and the most likely loss scenario."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mcrisk.cli import layout
from mcrisk.cli.common import batch_log, count, fail, log_interval_option
from mcrisk.cli.terminal import emit, out_console, say, width
from mcrisk.errors import RunFolderError, StudyError
from mcrisk.stats import formats as ft
from mcrisk.study.labels import input_label, metric_label

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
    if g.empty:
        return
    if (g["method"] == "not differentiable").all():
        say(str(g["note"].iloc[0]))
        return
    for system, part in g.groupby("system", sort=False):
        part = part[part["method"] != "not differentiable"]
        part = part.reindex(part["d_mean_per_step"].abs().sort_values(ascending=False).index).head(top)
        metric = str(part["metric"].iloc[0])
        say(f"{system}: what one step of each parameter is worth to the mean {metric_label(metric)} (pathwise)")
        rows = [
            [
                input_label(str(r["input"])),
                str(r["parameter"]),
                f"+{r['step']:g}",
                ft.value(metric, r["d_mean_per_step"]),
                f"{ft.number(r['d_mean'])} ± {ft.number(r['d_mean_se'])}",
                ft.number(r["d_p5"]),
                f"{r['d_p_loss']:.3g}",
            ]
            for r in part.to_dict("records")
        ]
        headers = ["input", "param.", "step", "mean\nper step", "d mean\n± se", "d P5", "d P(loss)"]
        emit(layout.table(headers, rows, width(), keys=2))


def print_reverse_stress(rs: pd.DataFrame, dp: pd.DataFrame, top: int = 4) -> None:
    """The inputs that set the losing scenarios apart, and each row's most likely loss scenario."""
    if not rs.empty:
        part = rs[(rs["region"] == "npv_below_0") & (rs["rank"] <= top)]
        rows = [
            [
                str(r["system"]),
                input_label(str(r["input"])),
                f"{r['share_inside']:.1%}",
                f"{r['inside_median']:.4g}",
                f"{r['outside_median']:.4g}",
                f"{r['shift_sd']:+.2f}",
            ]
            for r in part.to_dict("records")
        ]
        headers = ["system", "input", "share\nin loss", "median\nin loss", "median\nelsewhere", "shift\n(sd)"]
        title = "reverse stress test: NPV < 0 against the rest (inputs ranked by shift)"
        emit(layout.table(headers, rows, width(), keys=2, title=title))
    if dp.empty:
        return
    say("most likely loss scenario (FORM design point, monthly shocks at 0): the nearest losing inputs, value (median)")
    for system, part in dp.groupby("system", sort=False):
        first = part.iloc[0]
        if isinstance(first["note"], str) and first["note"]:
            say(f"{system}: MC P(loss) {first['mc_p_loss']:.1%}; {first['note']}")
            continue
        moves = "; ".join(
            f"{input_label(str(r['input']))} {r['value']:.4g} ({r['median']:.4g})" for _, r in part.head(top).iterrows()
        )
        say(
            f"{system}: beta {first['beta']:.2f}, Phi(-beta) {first['form_p_loss']:.1%}, MC P(loss) "
            f"{first['mc_p_loss']:.1%}, capex at the median {ft.money(float(first['capex_usd']))}: {moves}",
            "",
            "  ",
        )

"""How a run shows itself in a notebook or a shell: a few lines of text (``repr``) and a small
HTML table (``_repr_html_``) with the study, the scenario count, the seed, the P50 NPV and
P(loss) of each system and the folder. :class:`~mcrisk.workflows.publish.RunResult` (what
`run_study` returns) and :class:`~mcrisk.workflows.opened.Run` (what `open_run` returns) share it.

Light to import (no pandas, no JAX): the command line's number formats come from here too."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcrisk.stats.formats import money

MAX_SYSTEMS = 6  # rows of the text and the HTML table; the rest are counted


def _share(p: float) -> str:
    return f"{p:.1%}" if math.isfinite(p) else "-"


@dataclass(frozen=True)
class Glance:
    """What a run's repr shows: its kind (the class), study, scenarios, seed, folder, and per
    system (in the risk table's order) the P50 NPV and P(loss); NaN where the run lacks one."""

    kind: str
    study: str
    scenarios: int | None
    seed: int | None
    folder: Path
    rows: tuple[tuple[str, float, float], ...]


def glance(kind: str, manifest: Mapping[str, Any], summary: Any, risk: Any, folder: Path) -> Glance:
    """The glance of a run from its manifest, summary and risk tables (pandas DataFrames)."""
    p50: dict[str, float] = {}
    if {"system", "metric", "p50"} <= set(summary.columns):
        npv = summary[summary["metric"] == "npv_usd"]
        p50 = {str(s): float(v) for s, v in zip(npv["system"], npv["p50"])}
    p_loss = risk["p_loss"] if "p_loss" in risk.columns else [math.nan] * len(risk)
    rows = tuple((str(s), p50.get(str(s), math.nan), float(p)) for s, p in zip(risk["system"], p_loss))
    scenarios, seed = manifest.get("scenarios"), manifest.get("seed")
    return Glance(
        kind,
        str(manifest.get("study", "?")),
        scenarios if isinstance(scenarios, int) else None,
        seed if isinstance(seed, int) else None,
        Path(folder),
        rows,
    )


def _title(g: Glance) -> str:
    n = f"{g.scenarios:,} scenarios" if g.scenarios is not None else "? scenarios"
    systems = f"{len(g.rows)} system{'s' if len(g.rows) != 1 else ''}"
    seed = f", seed {g.seed}" if g.seed is not None else ""
    return f"study {g.study!r}: {n} x {systems}{seed}"


def text(g: Glance) -> str:
    """At most MAX_SYSTEMS + 4 lines: the title, a table of the systems, and the folder."""
    shown = g.rows[:MAX_SYSTEMS]
    width = max([len("system"), *(len(s) for s, _, _ in shown)])
    lines = [f"<{g.kind} {_title(g)}>", f"  {'system':<{width}}  {'P50 NPV':>9}  {'P(loss)':>7}"]
    lines += [f"  {s:<{width}}  {money(v):>9}  {_share(p):>7}" for s, v, p in shown]
    if len(g.rows) > len(shown):
        lines.append(f"  ... and {len(g.rows) - len(shown)} more system(s)")
    lines.append(f"  folder: {g.folder}")
    return "\n".join(lines)


def to_html(g: Glance) -> str:
    """The same as a compact HTML table, every text escaped."""
    e = html.escape
    cells = "".join(
        f"<tr><td>{e(s)}</td><td style='text-align:right'>{e(money(v))}</td>"
        f"<td style='text-align:right'>{e(_share(p))}</td></tr>"
        for s, v, p in g.rows[:MAX_SYSTEMS]
    )
    more = len(g.rows) - MAX_SYSTEMS
    if more > 0:
        cells += f"<tr><td colspan='3'>... and {more} more system(s)</td></tr>"
    return (
        f"<div><strong>{e(g.kind)}</strong> {e(_title(g))}"
        "<table><thead><tr><th>system</th><th>P50 NPV</th><th>P(loss)</th></tr></thead>"
        f"<tbody>{cells}</tbody></table>"
        f"<small>folder: <code>{e(str(g.folder))}</code></small></div>"
    )

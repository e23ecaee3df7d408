"""The report's calibration block, shown with the headline: each system's first-year revenue per
installed GPU-hour against the GPU rental market's band (calibration.csv), the lines of the
systems outside it, and the study's plausibility warnings (the manifest's ``warnings``)."""

from __future__ import annotations

import math

from mcrisk.report import markup as mu


def _usd(x) -> str:
    return f"${float(x):.2f}" if x is not None and math.isfinite(float(x)) else "n/a"


def _means(table) -> str:
    """The block's one-line reading: which systems earn what the rental market pays, which do not."""
    by = {k: [str(r["system"]) for r in table.to_dict("records") if str(r["status"]) == k] for k in ("above", "below")}
    inside = [str(r["system"]) for r in table.to_dict("records") if str(r["status"]) == "inside"]
    said = []
    if inside:
        said.append(f"{', '.join(inside)} earn{'s' if len(inside) == 1 else ''} what GPUs rent for")
    if by["above"]:
        said.append(f"{', '.join(by['above'])} above any rental price (the study may be optimistic)")
    if by["below"]:
        said.append(f"{', '.join(by['below'])} below the cheapest rental (renting the GPUs out would pay more)")
    if not said:
        return ""
    return mu.means("What this means: in its first live year, " + "; ".join(said) + ".")


def calibration(run: dict) -> str:
    """The calibration table and its warnings; a note if the run has no calibration.csv."""
    table = run.get("calibration")
    out = ["<h3>Calibration against GPU rental prices</h3>"]
    if table is None:
        out.append(mu.note("No calibration.csv in this run folder (a run written before it existed): run it again."))
    else:
        rows = []
        for r in table.to_dict("records"):
            status = str(r["status"])
            banded = status != "no band"
            ratio = f" ({float(r['ratio_to_band']):.3g}x)" if status in ("above", "below") else ""
            rows.append(
                [
                    r["system"],
                    f"{_usd(r['p50'])} ({_usd(r['p5'])}-{_usd(r['p95'])})",
                    f"{_usd(r['band_low'])}-{_usd(r['band_high'])}" if banded else "-",
                    status + ratio,
                ]
            )
        out.append(_means(table))
        out.append(
            mu.table(
                ["system", "median (P5-P95) $/GPU-hour, first live year", "rental band $/GPU-hour", "status"], rows
            )
        )
        lines = [str(w) for w in table.get("warning", ()) if isinstance(w, str) and w]
        out += [f'<p class="note">{mu.esc(line)}</p>' for line in lines]
        out.append(
            mu.note(
                "Revenue of each system's first 12 live months per installed GPU-hour (P5, median, P95 over "
                "every scenario), against the catalog's rental band for its GPU: 3-year reserved low to "
                "on-demand high. The ratio is the median over the band's nearest edge (calibration.csv "
                "names each band's sources)."
            )
        )
    warnings = run["manifest"].get("warnings") or []
    if warnings:
        items = "".join(
            f"<li><code>{mu.esc(w.get('path', ''))}</code>: {mu.esc(w.get('message', ''))}</li>"
            for w in warnings
            if isinstance(w, dict)
        )
        out.append(f"<h3>Plausibility warnings</h3><ul>{items}</ul>")
    return "".join(out)

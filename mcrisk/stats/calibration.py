"""calibration.csv: each system's first-year revenue per installed GPU-hour held against the GPU
rental market's prices for the same GPU (the catalog's rental band).

An owner who earns less per installed GPU-hour than the rental market pays would do better
leasing the hardware out; a buyer who pays more could rent GPUs by the hour and serve the model
itself. So where a study's median falls outside its system's band, its economics are too harsh
or too kind, and the run says so.

* The run's quantity is ``first_year_revenue_per_gpu_hour_usd`` (revenue of the first 12 live
  months per installed GPU-hour): its P5, median and P95 are the run's own sketch percentiles,
  the same numbers as in summary.csv.
* A system maps to a catalog system through its ``preset``, or else its name where that is a
  catalog system's name. The band is :func:`mcrisk.study.rentals.band`: 3-year reserved low to
  on-demand high. A system with no catalog system, or whose catalog system has fewer than two
  rental tiers, has no band.
* The ``portfolio`` row (the fleet as one investment) is held against the bands of the study's
  systems weighted by their installed GPUs (units x gpus_per_unit), when every system has one.
* ``ratio_to_band`` is the median over the band's nearest edge: above 1 above the band (the high
  edge), below 1 below it (the low edge), 1 inside. ``status`` is ``inside``, ``above``,
  ``below``, ``no band``, or ``no value`` (a band but no finite median: no live month in the
  horizon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mcrisk.study import catalog, rentals
from mcrisk.study.schema import Study

if TYPE_CHECKING:
    import pandas as pd

METRIC = "first_year_revenue_per_gpu_hour_usd"
PORTFOLIO = "portfolio"
COLUMNS = (
    "system",
    "catalog_system",
    "p5",
    "p50",
    "p95",
    "band_low",
    "band_high",
    "ratio_to_band",
    "status",
    "band_source",
    "warning",
)


@dataclass(frozen=True)
class Band:
    """A rental band in $/GPU-hour, the catalog system it belongs to and where it comes from;
    ``low``/``high`` NaN where there is none (``source`` then says why)."""

    catalog_system: str | None
    low: float
    high: float
    source: str

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


def catalog_system(name: str, system) -> str | None:
    """The catalog system a study system maps to: its preset, else its own name if the catalog has it."""
    systems = set(catalog.names("system"))
    for candidate in (getattr(system, "preset", None), name):
        if candidate in systems:
            return candidate
    return None


def system_band(name: str, system) -> Band:
    """The rental band of one study system (NaN edges where it has none)."""
    entry_name = catalog_system(name, system)
    if entry_name is None:
        return Band(None, np.nan, np.nan, "no catalog system (neither a preset nor a catalog name)")
    r = catalog.get_entry(entry_name, "system").rental_usd_per_gpu_hour
    try:
        low, high = rentals.band(r, entry_name)
    except ValueError as exc:
        return Band(entry_name, np.nan, np.nan, f"catalog {entry_name}: {exc}")
    return Band(entry_name, low, high, rentals.band_source(r, entry_name))


def portfolio_band(study: Study) -> Band:
    """The fleet's band: each edge the installed-GPU-weighted mean of the systems' (none unless all have one)."""
    bands = {n: system_band(n, s) for n, s in study.systems.items()}
    missing = [n for n, b in bands.items() if not b.found]
    if missing:
        return Band(None, np.nan, np.nan, f"no band for {', '.join(missing)}: no fleet band")
    gpus = np.array([s.units * s.gpus_per_unit for s in study.systems.values()], np.float64)
    w = gpus / gpus.sum()
    low = float(np.dot(w, [b.low for b in bands.values()]))
    high = float(np.dot(w, [b.high for b in bands.values()]))
    parts = ", ".join(f"{n} ({b.catalog_system}) x {int(g):,} GPUs" for (n, b), g in zip(bands.items(), gpus))
    return Band(None, low, high, f"installed-GPU-weighted bands of {parts}")


def classify(median, low, high) -> tuple[np.ndarray, np.ndarray]:
    """(ratio_to_band, status) of medians against bands, elementwise (NaN edges: no band)."""
    median, low, high = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (median, low, high)))
    banded = np.isfinite(low) & np.isfinite(high)
    valued = banded & np.isfinite(median)
    above, below = valued & (median > high), valued & (median < low)
    edge = np.where(above, high, np.where(below, low, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(above | below, median / edge, np.where(valued, 1.0, np.nan))
    status = np.where(
        ~banded, "no band", np.where(~valued, "no value", np.where(above, "above", np.where(below, "below", "inside")))
    )
    return ratio, status.astype(object)


def warning_line(system: str, status: str, ratio: float, median: float, low: float, high: float, tokens: bool) -> str:
    """The line a run prints for a system outside its band ('' inside or without one)."""
    if status not in ("above", "below"):
        return ""
    what = "token economics" if tokens else "economics"
    edge, verdict = ("at most", "too kind?") if status == "above" else ("at least", "too harsh?")
    return (
        f"{system}: the study's {what} pay {ratio:.3g}x what the rental market pays for this GPU {edge} "
        f"(median ${median:.2f} vs ${low:.2f}-${high:.2f} a GPU-hour in the first live year): {verdict}"
    )


def calibration_table(study: Study, summary: pd.DataFrame, systems) -> pd.DataFrame | None:
    """calibration.csv from a run's summary table: one row per system (in `systems` order); None
    if the summary has no ``first_year_revenue_per_gpu_hour_usd`` (a run written before it)."""
    import pandas as pd

    rows = summary[summary["metric"] == METRIC].set_index("system")
    if rows.empty:
        return None
    out = []
    for name in systems:
        band = (
            system_band(name, study.systems[name])
            if name in study.systems
            else portfolio_band(study)
            if name == PORTFOLIO
            else Band(None, np.nan, np.nan, "not a system of the study")
        )
        p5, p50, p95 = (float(rows.loc[name, p]) if name in rows.index else np.nan for p in ("p5", "p50", "p95"))
        ratio, status = (x.item() for x in classify(p50, band.low, band.high))
        tokens = name in study.systems and study.systems[name].revenue_mode != "gpu_hours"
        out.append(
            dict(
                system=name,
                catalog_system=band.catalog_system or "",
                p5=p5,
                p50=p50,
                p95=p95,
                band_low=band.low,
                band_high=band.high,
                ratio_to_band=ratio,
                status=status,
                band_source=band.source,
                warning=warning_line(name, status, ratio, p50, band.low, band.high, tokens),
            )
        )
    return pd.DataFrame(out, columns=list(COLUMNS))

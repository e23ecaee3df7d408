"""GPU rental prices per catalog system, the rental band a run's revenue is held against, and the
catalog's calibration points (the workload, tier and price each system's band check uses).

A system's ``rental_usd_per_gpu_hour`` holds three tiers in $/GPU-hour: ``on_demand``,
``reserved_1y`` and ``reserved_3y``. Each tier is a band ``{low, high}`` (``low == high`` where only
one figure exists) with its source, date and tag, or ``low: null`` with a NOT FOUND note.

The rental band of a system is ``(low, high)``:
  * low = the lowest 3-year reserved figure: an owner who earns less than this per installed
    GPU-hour would do better leasing the hardware out for three years;
  * high = the highest on-demand figure: a buyer of tokens who pays more than this per GPU-hour
    could rent GPUs by the hour and serve the model itself.
A missing tier is stood in for by the 1-year reserved tier. A system with fewer than two tiers has
no band (CatalogError, NOT FOUND).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

TIERS = ("on_demand", "reserved_1y", "reserved_3y")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RentalTier(_Closed):
    """One rental tier as a $/GPU-hour band (a point where low == high); ``low: null`` says NOT FOUND."""

    low: float | None = None
    high: float | None = None
    source: str | None = None
    date: str | None = None
    tag: Literal["V", "I", "O", "D", "LQ"] | None = None
    derivation: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _traceable(self) -> RentalTier:
        if self.low is None and self.high is None:
            if "NOT FOUND" not in (self.note or ""):
                raise ValueError("a tier without figures: the note must say 'NOT FOUND ...' and why")
            return self
        if self.low is None or self.high is None or not 0 < self.low <= self.high:
            raise ValueError(f"a rental tier needs 0 < low <= high, got low={self.low}, high={self.high}")
        missing = [f for f in ("source", "date", "tag") if not (getattr(self, f) or "").strip()]
        if missing:
            raise ValueError(f"rental {self.low}-{self.high} needs a non-empty {', '.join(missing)}")
        if self.tag == "D" and not (self.derivation or "").strip():
            raise ValueError("a derived [D] rental tier must state its arithmetic in 'derivation'")
        return self

    @property
    def found(self) -> bool:
        return self.low is not None


class Rentals(_Closed):
    """Rental prices of one system's GPUs, $/GPU-hour, by tier."""

    on_demand: RentalTier
    reserved_1y: RentalTier
    reserved_3y: RentalTier


class CalibrationPoint(_Closed):
    """The catalog figures a system's band check uses: a workload's throughput at a tier, and a price.

    ``price_prior`` names a prior for market.token_price.initial_usd_per_mtok; without it the
    workload's own price band at the tier is used. ``workload: null`` needs a NOT FOUND note."""

    workload: str | None = None
    interactivity_tok_s_user: float | None = None  # None: the figure whose source states no tier
    serving: Literal["colocated", "disaggregated"] = "colocated"
    price_prior: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _named(self) -> CalibrationPoint:
        if self.workload is None and "NOT FOUND" not in (self.note or ""):
            raise ValueError("a calibration point without a workload: the note must say 'NOT FOUND ...' and why")
        return self


def _tier(x: float | None) -> str:
    return "an unstated tier" if x is None else f"{x:g} tok/s/user"


def quotes(rentals: Rentals) -> dict[str, tuple[float, float] | None]:
    """``{tier: (low, high) or None}`` in $/GPU-hour (tiers as in TIERS)."""
    return {
        t: (getattr(rentals, t).low, getattr(rentals, t).high) if getattr(rentals, t).found else None for t in TIERS
    }


def band_tiers(rentals: Rentals, system: str) -> tuple[str, str]:
    """The tiers the band's low and high come from: ('reserved_3y' or 'reserved_1y', 'on_demand' or
    'reserved_1y'). ValueError for a system with fewer than two rental tiers."""
    q = quotes(rentals)
    low_tier = next((t for t in ("reserved_3y", "reserved_1y") if q[t]), None)
    high_tier = next((t for t in ("on_demand", "reserved_1y") if q[t]), None)
    if low_tier is None or high_tier is None or low_tier == high_tier:
        have = ", ".join(f"{t} {v[0]:g}-{v[1]:g}" for t, v in q.items() if v) or "none"
        raise ValueError(
            f"system {system!r} has no rental band: NOT FOUND, it needs a 3-year (or 1-year) "
            f"reserved and an on-demand (or 1-year) figure; it has: {have}"
        )
    return low_tier, high_tier


def band(rentals: Rentals, system: str) -> tuple[float, float]:
    """(low, high) $/GPU-hour: 3-year reserved low to on-demand high (1-year reserved stands in for
    a missing one). ValueError for a system with fewer than two rental tiers."""
    low_tier, high_tier = band_tiers(rentals, system)
    return getattr(rentals, low_tier).low, getattr(rentals, high_tier).high


def band_source(rentals: Rentals, system: str) -> str:
    """Where a system's band comes from, in one line: each edge's tier, source and date."""

    def one(edge: str, tier: str) -> str:
        r = getattr(rentals, tier)
        return f"{edge} = {tier} ({' '.join(str(r.source).split())}; {' '.join(str(r.date).split())} [{r.tag}])"

    low_tier, high_tier = band_tiers(rentals, system)
    return f"catalog {system}: {one('low', low_tier)}; {one('high', high_tier)}"


def rental_rows(rentals: Rentals) -> list[dict]:
    """One row per tier for ``mcrisk catalog SYSTEM``: field, value, source, date, tag, derivation, note."""
    rows = []
    for t in TIERS:
        r = getattr(rentals, t)
        value = None if not r.found else r.low if r.low == r.high else {"low": r.low, "high": r.high}
        rows.append(
            {
                "field": f"rental_usd_per_gpu_hour.{t}",
                "value": value,
                "source": r.source,
                "date": r.date,
                "tag": r.tag,
                "derivation": r.derivation,
                "note": r.note,
            }
        )
    return rows


def calibration_row(rentals: Rentals, system: str, point: CalibrationPoint) -> dict:
    """The calibration point and rental band as one row (band NOT FOUND where the system has none)."""
    try:
        low, high = band(rentals, system)
        value: object = {"low": low, "high": high}
    except ValueError:
        value = None
    where = (
        "NOT FOUND"
        if point.workload is None
        else (
            f"{point.workload} @ {_tier(point.interactivity_tok_s_user)}, {point.serving}; "
            f"price {point.price_prior or 'the workload band'}"
        )
    )
    note = " ".join(x for x in (where + ".", point.note or "") if x).strip()
    if value is None:
        note = f"NOT FOUND: no rental band (fewer than two tiers). {note}"
    return {
        "field": "rental_band (calibration)",
        "value": value,
        "source": "rental tiers above",
        "date": "see the tiers",
        "tag": "D" if value is not None else None,
        "derivation": "low = 3-year reserved low; high = on-demand high (1-year reserved stands in)",
        "note": note,
    }


def check_calibration(entries: dict) -> None:
    """ValueError unless every system's calibration point names a catalog workload and prior."""
    for e in entries.values():
        c = getattr(e, "calibration", None)
        bad = c and [
            (k, n)
            for k, n in (("workload", c.workload), ("prior", c.price_prior))
            if n is not None and getattr(entries.get(n), "kind", None) != k
        ]
        if bad:
            raise ValueError(f"catalog system {e.name!r}: calibration names unknown {bad}")

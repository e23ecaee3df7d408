"""The catalog: sourced presets for systems, workloads, software-gain curves, serving modes, priors
and GPU rental prices (catalog_rentals.py).

Data: YAML under ``mcrisk/data/catalog``; every number has a source, date and tag (V vendor,
I independent, O operator, D derived here with its arithmetic, LQ low quality), and a figure
no public source gives is ``value: null`` with a "NOT FOUND" note, never a guess.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
from importlib import resources
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mcrisk.study import rentals, yaml12
from mcrisk.study.catalog_dists import check_dist, scale_dist  # noqa: F401  (public: catalog.scale_dist)
from mcrisk.study.rentals import CalibrationPoint, Rentals, calibration_row, check_calibration, rental_rows

TAGS = ("V", "I", "O", "D", "LQ")
Tag = Literal["V", "I", "O", "D", "LQ"]
KINDS = ("system", "workload", "software_curve", "serving", "prior")
STUDY_SYSTEM_FIELDS = ("gpus_per_unit", "capex_usd", "it_power_kw", "idle_power_fraction", "depreciation_years")


class CatalogError(KeyError):
    """An unknown catalog name, or a figure the catalog does not have; the message lists what exists."""

    def __str__(self) -> str:  # a plain KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- models


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Closed):
    """One number (or DIST mapping) with where it came from; ``value: null`` must say NOT FOUND."""

    value: int | float | dict[str, Any] | None
    source: str | None = None
    date: str | None = None
    tag: Tag | None = None
    derivation: str | None = None  # the arithmetic, required for [D]
    note: str | None = None

    @model_validator(mode="after")
    def _traceable(self) -> Sourced:
        if self.value is None:
            if "NOT FOUND" not in (self.note or ""):
                raise ValueError("value is null: the note must say 'NOT FOUND ...' and why")
            return self
        missing = [f for f in ("source", "date", "tag") if not (getattr(self, f) or "").strip()]
        if missing:
            raise ValueError(f"value {self.value!r} needs a non-empty {', '.join(missing)}")
        if self.tag == "D" and not (self.derivation or "").strip():
            raise ValueError(f"value {self.value!r} is derived [D]: state its arithmetic in 'derivation'")
        if isinstance(self.value, dict):
            check_dist(self.value)
        return self


class Tco(_Closed):
    """SemiAnalysis all-in $/GPU-hour: hyperscaler-owned (costh), neocloud-owned (costn), 3-yr rental (costr)."""

    costh: float
    costn: float
    costr: float
    source: str
    date: str
    tag: Tag
    note: str | None = None


class RefPoint(_Closed):
    """A published figure kept for claims and cross-checks, not used as a preset."""

    system: str | None = None
    metric: str
    conditions: str
    figure: Sourced


class _Entry(_Closed):
    kind: ClassVar[str] = ""
    name: str
    title: str
    summary: str


class System(_Entry):
    kind: ClassVar[str] = "system"
    gpus_per_unit: Sourced
    capex_usd: Sourced
    it_power_kw: Sourced
    idle_power_fraction: Sourced
    hbm_gb_per_gpu: Sourced
    depreciation_years: Sourced
    all_in_provisioned_kw_per_gpu: Sourced
    tco_usd_per_gpu_hour: Tco
    rental_usd_per_gpu_hour: Rentals
    calibration: CalibrationPoint


class ThroughputPoint(_Closed):
    system: str
    interactivity_tok_s_user: float | None  # None: the source states no tier
    serving: Literal["colocated", "disaggregated"]  # the mode the figure was measured in
    conditions: str
    tokens_per_s_per_gpu: Sourced


class PriceBand(_Closed):
    interactivity_min: float = 0.0
    interactivity_max: float | None = None  # None: no upper bound
    usd_per_mtok: Sourced

    def covers(self, x: float) -> bool:
        return self.interactivity_min <= x and (self.interactivity_max is None or x < self.interactivity_max)

    def label(self) -> str:
        top = "inf" if self.interactivity_max is None else f"{self.interactivity_max:g}"
        return f"[{self.interactivity_min:g}, {top}) tok/s/user"


class Workload(_Entry):
    kind: ClassVar[str] = "workload"
    model: str
    isl_osl: str
    price_blend: str
    throughput: list[ThroughputPoint]
    prices: list[PriceBand]
    reference_points: list[RefPoint] = []


class SoftwareCurve(_Entry):
    kind: ClassVar[str] = "software_curve"
    ceiling: Sourced
    time_constant_months: Sourced
    approximation: str | None = None
    evidence: list[RefPoint] = []


class FactorPoint(_Closed):
    interactivity_tok_s_user: float
    factor: Sourced


class ServingMode(_Entry):
    kind: ClassVar[str] = "serving"
    interpolation: str
    points: list[FactorPoint]
    evidence: list[RefPoint] = []

    @model_validator(mode="after")
    def _usable(self) -> ServingMode:
        xs, ys = [p.interactivity_tok_s_user for p in self.points], [p.factor.value for p in self.points]
        ok = xs and all(a < b for a, b in zip(xs, xs[1:])) and all(isinstance(y, (int, float)) and y > 0 for y in ys)
        if not ok:
            raise ValueError(f"points need strictly increasing interactivity and factors > 0, got {list(zip(xs, ys))}")
        return self


class Prior(_Entry):
    """A market or operating input that no system, workload or curve fixes (utilization, PUE, ...)."""

    kind: ClassVar[str] = "prior"
    applies_to: str  # the study path it is a value for; 'systems.*.' stands for any system
    figure: Sourced


Entry = System | Workload | SoftwareCurve | ServingMode | Prior
_FILES = (
    ("systems.yaml", "systems", System),
    ("workloads.yaml", "workloads", Workload),
    ("software_curves.yaml", "software_curves", SoftwareCurve),
    ("serving.yaml", "serving_modes", ServingMode),
    ("priors.yaml", "priors", Prior),
)


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, Entry]:
    """Every entry by name (names are unique across kinds), validated once and cached."""
    root = resources.files("mcrisk") / "data" / "catalog"
    entries: dict[str, Entry] = {}
    for fname, key, model in _FILES:
        raw = yaml12.load((root / fname).read_text(encoding="utf-8"))  # an unquoted 2025-10-09 stays text
        if not isinstance(raw, dict) or set(raw) != {key}:
            raise ValueError(f"catalog {fname}: expected one top-level key {key!r}")
        for name, body in raw[key].items():
            if name in entries:
                raise ValueError(f"catalog {fname}: name {name!r} is already a {entries[name].kind}")
            try:
                entries[name] = model.model_validate({"name": name, **body})
            except ValidationError as exc:
                raise ValueError(f"catalog {fname}: entry {name!r} is invalid:\n{exc}") from None
    systems = {n for n, e in entries.items() if e.kind == "system"}
    for e in entries.values():
        refs = [p.system for p in getattr(e, "throughput", [])]
        refs += [r.system for r in getattr(e, "reference_points", []) + getattr(e, "evidence", []) if r.system]
        if set(refs) - systems:
            raise ValueError(f"catalog {e.kind} {e.name!r} names unknown systems {sorted(set(refs) - systems)}")
    check_calibration(entries)
    return entries


def names(kind: str | None = None) -> list[str]:
    """Entry names in file order, of one kind (see KINDS) or all."""
    return [n for n, e in _catalog().items() if kind is None or e.kind == kind]


def get_entry(name: str, kind: str | None = None) -> Entry:
    """One entry by name; an unknown name raises CatalogError listing the known names (of ``kind`` if given)."""
    entry = _catalog().get(name)
    if entry is not None and (kind is None or entry.kind == kind):
        return entry
    close = difflib.get_close_matches(str(name), names(kind), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if kind is not None:
        listing = f"known {kind} entries: {', '.join(names(kind))}"
    else:
        listing = "known entries: " + "; ".join(f"{k}: {', '.join(names(k))}" for k in KINDS)
    raise CatalogError(f"unknown catalog {kind or 'entry'} {name!r}{hint} ({listing})")


def list_entries() -> list[dict]:
    """One row per entry: kind, name, title, summary (for ``mcrisk catalog``)."""
    return [{"kind": e.kind, "name": n, "title": e.title, "summary": e.summary} for n, e in _catalog().items()]


def _row(field: str, s: Sourced) -> dict:
    return {
        "field": field,
        "value": copy.deepcopy(s.value),
        "source": s.source,
        "date": s.date,
        "tag": s.tag,
        "derivation": s.derivation,
        "note": s.note,
    }


def _tier(x: float | None) -> str:
    return "interactivity not stated" if x is None else f"{x:g} tok/s/user"


def _prov(label: str, s: Sourced) -> str:
    return f"{label}: {s.source}, {s.date} [{s.tag}]"


def rental_quotes(system: str) -> dict[str, tuple[float, float] | None]:
    """``{tier: (low, high) or None}`` in $/GPU-hour for one catalog system."""
    return rentals.quotes(get_entry(system, "system").rental_usd_per_gpu_hour)


def rental_band(system: str) -> tuple[float, float]:
    """(low, high) $/GPU-hour that a run's revenue per GPU-hour is held against: 3-year reserved low
    to on-demand high. CatalogError for an unknown system or one with fewer than two tiers."""
    try:
        return rentals.band(get_entry(system, "system").rental_usd_per_gpu_hour, system)
    except ValueError as exc:
        raise CatalogError(str(exc)) from None


def entry_details(name: str) -> list[dict]:
    """Every number of one entry as rows: field, value, source, date, tag (plus derivation, note)."""
    e = get_entry(name)
    if isinstance(e, System):
        rows = [_row(f, getattr(e, f)) for f in System.model_fields if isinstance(getattr(e, f), Sourced)]
        t = e.tco_usd_per_gpu_hour
        meta = {"source": t.source, "date": t.date, "tag": t.tag, "note": t.note}
        rows += [
            _row(f"tco_usd_per_gpu_hour.{c}", Sourced(value=getattr(t, c), **meta)) for c in ("costh", "costn", "costr")
        ]
        rows += rental_rows(e.rental_usd_per_gpu_hour) + [
            calibration_row(e.rental_usd_per_gpu_hour, name, e.calibration)
        ]
    elif isinstance(e, Workload):
        rows = [
            _row(f"throughput[{p.system} @ {_tier(p.interactivity_tok_s_user)}, {p.serving}]", p.tokens_per_s_per_gpu)
            for p in e.throughput
        ]
        rows += [_row(f"price_usd_per_mtok[{b.label()}]", b.usd_per_mtok) for b in e.prices]
    elif isinstance(e, SoftwareCurve):
        rows = [_row("ceiling", e.ceiling), _row("time_constant_months", e.time_constant_months)]
    elif isinstance(e, Prior):
        rows = [_row(e.applies_to, e.figure)]
    else:
        rows = [_row(f"factor[{p.interactivity_tok_s_user:g} tok/s/user]", p.factor) for p in e.points]
    for r in getattr(e, "reference_points", []) + getattr(e, "evidence", []):
        rows.append(_row(f"reference[{r.system or '-'}: {r.metric}; {r.conditions}]", r.figure))
    return rows


# --------------------------------------------------------------------------- study values


def _study_items(name: str) -> dict[str, Sourced]:
    e = get_entry(name, "system")
    return {f: getattr(e, f) for f in STUDY_SYSTEM_FIELDS}


def system_fields(name: str) -> dict:
    """The study ``systems.NAME`` fields this preset provides (only those with a value), as plain study values."""
    return {f: copy.deepcopy(s.value) for f, s in _study_items(name).items() if s.value is not None}


def system_provenance(name: str) -> dict[str, str]:
    """One line per field of system_fields: 'preset NAME: source, date [tag]'."""
    return {f: _prov(f"preset {name}", s) for f, s in _study_items(name).items() if s.value is not None}


def system_missing(name: str) -> dict[str, str]:
    """Study fields this preset cannot provide (no public figure), with the catalog's NOT FOUND note."""
    return {f: s.note for f, s in _study_items(name).items() if s.value is None}


def serving_factor(mode: str, interactivity_tok_s_user: float) -> float:
    """Throughput factor of a serving mode relative to co-located; linear between points, flat outside."""
    pts = [(p.interactivity_tok_s_user, float(p.factor.value)) for p in get_entry(mode, "serving").points]
    x = float(interactivity_tok_s_user)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def _same_tier(a: float | None, b: float | None) -> bool:
    return a is b is None or (None not in (a, b) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9))


def workload_fields(
    workload: str, system: str, interactivity_tok_s_user: float | None, serving: str = "colocated"
) -> dict:
    """``{"throughput_tokens_per_s_per_gpu": value, "provenance": {field: line}}`` for one system at one tier.

    The figure is converted to the asked serving mode by factor(asked) / factor(measured);
    ``interactivity_tok_s_user=None`` selects a figure whose source states no tier."""
    w = get_entry(workload, "workload")
    get_entry(system, "system"), get_entry(serving, "serving")
    x = None if interactivity_tok_s_user is None else float(interactivity_tok_s_user)
    point = next((p for p in w.throughput if p.system == system and _same_tier(p.interactivity_tok_s_user, x)), None)
    if point is None:
        tiers = [_tier(p.interactivity_tok_s_user) for p in w.throughput if p.system == system]
        where = f"{system} has figures at: {', '.join(tiers)}" if tiers else f"it has no figure for {system}"
        have = "; ".join(f"{p.system} @ {_tier(p.interactivity_tok_s_user)}" for p in w.throughput)
        raise CatalogError(
            f"workload {workload!r} has no throughput for {system} at {_tier(x)}; {where} "
            f"(all figures: {have}); set throughput_tokens_per_s_per_gpu in the study"
        )
    k = 1.0  # an exact 1 keeps the published number untouched
    if serving != point.serving:
        if x is None:
            raise CatalogError(
                f"workload {workload!r} on {system}: the figure was measured {point.serving} at an "
                f"unstated interactivity, so it cannot be converted to {serving}"
            )
        k = serving_factor(serving, x) / serving_factor(point.serving, x)
    value = copy.deepcopy(point.tokens_per_s_per_gpu.value)
    line = _prov(f"workload {workload} on {system} @ {_tier(x)}", point.tokens_per_s_per_gpu)
    line += f"; measured {point.serving}, served {serving} (x{k:.4g})"
    return {
        "throughput_tokens_per_s_per_gpu": value if k == 1.0 else scale_dist(value, k),
        "provenance": {"throughput_tokens_per_s_per_gpu": line},
    }


def _price_band(workload: str, interactivity_tok_s_user: float | None) -> PriceBand:
    bands = get_entry(workload, "workload").prices
    if interactivity_tok_s_user is None:  # only unambiguous when one band covers every tier
        band = bands[0] if len(bands) == 1 else None
    else:
        band = next((b for b in bands if b.covers(float(interactivity_tok_s_user))), None)
    if band is None:
        raise CatalogError(
            f"workload {workload!r} has no price band for {_tier(interactivity_tok_s_user)}; "
            f"bands: {', '.join(b.label() for b in bands)}"
        )
    return band


def workload_price(workload: str, interactivity_tok_s_user: float | None) -> Any:
    """Market price DIST (USD per million total tokens) for market.token_price.initial_usd_per_mtok."""
    return copy.deepcopy(_price_band(workload, interactivity_tok_s_user).usd_per_mtok.value)


def workload_price_provenance(workload: str, interactivity_tok_s_user: float | None) -> str:
    """The provenance line of workload_price."""
    band = _price_band(workload, interactivity_tok_s_user)
    return _prov(f"workload {workload} price {band.label()}", band.usd_per_mtok)


def software_curve_fields(name: str) -> dict:
    """``{"software_speedup": {"ceiling": DIST, "time_constant_months": DIST}}`` for a study system."""
    e = get_entry(name, "software_curve")
    return {
        "software_speedup": {
            "ceiling": copy.deepcopy(e.ceiling.value),
            "time_constant_months": copy.deepcopy(e.time_constant_months.value),
        }
    }


def software_curve_provenance(name: str) -> dict[str, str]:
    """One line per field of software_curve_fields, keyed by its path inside the system."""
    e = get_entry(name, "software_curve")
    return {f"software_speedup.{f}": _prov(f"curve {name}", getattr(e, f)) for f in ("ceiling", "time_constant_months")}


def prior_value(name: str) -> tuple[str, Any, str]:
    """One prior as (the study path it applies to, its value as a study DIST, its provenance line)."""
    e = get_entry(name, "prior")
    return e.applies_to, copy.deepcopy(e.figure.value), _prov(f"prior {name}", e.figure)

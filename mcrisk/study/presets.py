"""Systems built from catalog entries, and units sized from a budget: the study's presets.

A system may start from catalog entries. Field by field, later sources win:
preset (hardware) -> workload (throughput at an interactivity, converted to the serving mode)
-> software curve -> the study's own fields. Only system fields come from the catalog; market
prices and the rest are the study's. `sizing` then sets every system's units from a budget.
Each function returns the problems it found instead of raising, so that a study's problems
are all reported at once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcrisk.errors import MISSING, Problem
from mcrisk.study import catalog

if TYPE_CHECKING:
    from mcrisk.study.schema import Study

CATALOG_KEYS = ("preset", "workload", "interactivity_tok_s_user", "software_curve", "serving")


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _has(tree: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return False
        tree = tree[part]
    return True


def _tier_match(a: float | None, b: float | None) -> bool:
    return a is None and b is None or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9))


def _resolve_system(name: str, spec: dict) -> tuple[dict, list[Problem], dict[str, str]]:
    """One system's fields from its catalog entries, under the study's own; (spec, problems, provenance)."""
    where = f"systems.{name}"
    base: dict = {}
    lines: dict[str, str] = {}
    problems: list[Problem] = []
    preset, workload, curve = spec.get("preset"), spec.get("workload"), spec.get("software_curve")
    serving = spec.get("serving", "colocated")
    tier = spec.get("interactivity_tok_s_user")

    def lookup(field: str, fn, *args):
        try:
            return fn(*args)
        except catalog.CatalogError as exc:
            problems.append(Problem(f"{where}.{field}", str(exc)))
            return None

    if _is_name(preset) and lookup("preset", catalog.get_entry, preset, "system") is not None:
        base.update(catalog.system_fields(preset))
        lines.update(catalog.system_provenance(preset))
        lines.update(
            {f: f"default; preset {preset} has no public figure (NOT FOUND)" for f in catalog.system_missing(preset)}
        )
    if workload is None:
        for key in ("interactivity_tok_s_user", "serving"):
            if key in spec:
                problems.append(
                    Problem(
                        f"{where}.{key}",
                        "only applies with a workload (it picks the workload's "
                        f"throughput figure); set workload or drop {key}",
                    )
                )
    elif _is_name(workload) and lookup("workload", catalog.get_entry, workload, "workload") is not None:
        serving_ok = _is_name(serving) and lookup("serving", catalog.get_entry, serving, "serving") is not None
        tier_ok = tier is None or (_is_number(tier) and tier > 0)  # else the schema reports it
        if preset is None:
            problems.append(
                Problem(
                    f"{where}.workload",
                    "throughput figures are per catalog system: set preset too "
                    f"(one of: {', '.join(catalog.names('system'))})",
                )
            )
        # The study's own throughput wins, so the figure is looked up only when the study has none.
        elif (
            _is_name(preset)
            and not problems
            and serving_ok
            and tier_ok
            and "throughput_tokens_per_s_per_gpu" not in spec
        ):
            try:
                got = catalog.workload_fields(workload, preset, tier, serving)
            except catalog.CatalogError as exc:
                tiers = [
                    p.interactivity_tok_s_user for p in catalog.get_entry(workload).throughput if p.system == preset
                ]
                x = None if tier is None else float(tier)
                field = (
                    "serving"
                    if any(_tier_match(t, x) for t in tiers)
                    else "interactivity_tok_s_user"
                    if tiers
                    else "workload"
                )
                problems.append(Problem(f"{where}.{field}", str(exc)))
            else:
                lines.update(got.pop("provenance"))
                base.update(got)
    if _is_name(curve) and lookup("software_curve", catalog.get_entry, curve, "software_curve") is not None:
        base = _deep_merge(base, catalog.software_curve_fields(curve))
        lines.update(catalog.software_curve_provenance(curve))
    lines = {f"{where}.{f}": line for f, line in lines.items() if not _has(spec, f)}
    return _deep_merge(base, spec), problems, lines


def apply_catalog(raw: dict) -> tuple[dict, list[Problem], dict[str, str]]:
    """Fill each system's fields from its catalog entries; (raw, problems, provenance of filled values)."""
    systems = raw.get("systems")
    if not isinstance(systems, dict):
        return raw, [], {}
    raw = copy.deepcopy(raw)
    problems: list[Problem] = []
    lines: dict[str, str] = {}
    for name, spec in systems.items():
        if isinstance(spec, dict) and any(k in spec for k in CATALOG_KEYS):
            raw["systems"][name], p, l = _resolve_system(name, spec)
            problems += p
            lines.update(l)
    return raw, problems, lines


def explain_missing(problems: list[Problem], raw: dict, failed: set[str]) -> list[Problem]:
    """Say why a required system field is missing where a catalog entry was meant to give it."""
    out = []
    for p in problems:
        parts = p.path.split(".")
        if p.message != MISSING or len(parts) != 3 or parts[0] != "systems":
            out.append(p)
            continue
        name, field = parts[1], parts[2]
        if name in failed:  # an unknown catalog name is reported already; the gaps follow from it
            continue
        spec = raw["systems"].get(name)
        preset = spec.get("preset") if isinstance(spec, dict) else None
        missing = catalog.system_missing(preset) if _is_name(preset) else {}
        if field in missing:
            note = missing[field].strip()
            fix = "" if f"Set {field}" in note else f" Set {field} in the study."
            out.append(Problem(p.path, f"required, and preset {preset} has no value: {note}{fix}"))
        elif field == "throughput_tokens_per_s_per_gpu" and preset:
            out.append(
                Problem(
                    p.path,
                    f"{MISSING}: a preset gives hardware only; set it, or pick a workload "
                    f"({', '.join(catalog.names('workload'))}) and interactivity_tok_s_user",
                )
            )
        else:
            out.append(p)
    return out


def _deep_merge(base: dict, top: Mapping) -> dict:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and "dist" not in v:
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def apply_sizing(study: Study, raw: dict) -> tuple[Study, list[Problem], dict[str, str]]:
    """Units of each system from the study's sizing budget; a system may not also set units."""
    sz = study.sizing
    if sz is None:
        return study, [], {}
    key, field, budget, unit = (
        ("power_kw", "it_power_kw", sz.power_kw, "kW")
        if sz.power_kw is not None
        else ("capex_usd", "capex_usd", sz.capex_usd, "USD")
    )
    text = f"{budget:,.10g}"
    problems, lines, systems = [], {}, {}
    for name, system in study.systems.items():
        if _has(raw, f"systems.{name}.units"):
            problems.append(
                Problem(
                    f"systems.{name}.units",
                    f"is set by sizing ({key}: {text}); drop units "
                    "here, or drop sizing and give every system its units",
                )
            )
            continue
        per_unit = float(getattr(system, field).mean())
        units = max(1, math.floor(budget / per_unit + 1e-9))  # 1e-9: an exact multiple is not lost to rounding
        short = " (the budget buys less than one unit; 1 is the minimum)" if budget < per_unit else ""
        each = f"{per_unit:,.0f}" if per_unit >= 1e4 else f"{per_unit:.6g}"
        lines[f"systems.{name}.units"] = (
            f"sizing {key} {text}: floor({text} / {each} {unit}, the mean per-unit {field}) = {units}{short}"
        )
        systems[name] = system.model_copy(update={"units": units})
    if problems:
        return study, problems, {}
    return study.model_copy(update={"systems": systems}), [], lines


def leaves(tree: Mapping, prefix: str = ""):
    """(dotted path, value) of every leaf of a study tree; a DIST mapping is a leaf."""
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and "dist" not in v:
            yield from leaves(v, path + ".")
        else:
            yield path, v


def provenance_map(study: Study, raw: dict, filled: dict[str, str]) -> dict[str, str]:
    resolved = study.resolved()
    tree = {k: resolved[k] for k in ("market", "facility", "finance", "systems")}
    return {p: filled.get(p) or ("study" if _has(raw, p) else "default") for p, _ in leaves(tree)}

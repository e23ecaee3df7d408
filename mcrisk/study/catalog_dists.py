"""The DIST mappings written in catalog files: checked as plain data, and scaled into another unit."""

from __future__ import annotations

from typing import Any

_DIST_FORMS: dict[str, tuple[set[str], set[str]]] = {  # form -> (required keys, optional keys); lognormal below
    "fixed": ({"value"}, set()),
    "uniform": ({"low", "high"}, set()),
    "loguniform": ({"low", "high"}, set()),
    "triangular": ({"low", "mode", "high"}, set()),
    "pert": ({"low", "mode", "high"}, {"shape"}),
    "normal": ({"mean", "sd"}, {"low", "high"}),
    "beta": ({"mean", "sd"}, {"low", "high"}),
    "discrete": ({"values", "weights"}, set()),
}
_LISTS = ("dist", "values", "weights")  # keys whose values are not plain numbers
_SCALED_KEYS = {"value", "low", "mode", "high", "mean", "sd", "median", "p5", "p95"}  # carry the figure's unit


def check_dist(d: dict) -> None:
    """Raise ValueError unless ``d`` is one of STUDY.md's DIST mappings with ordered parameters."""
    form = d.get("dist")
    forms = {**_DIST_FORMS, "lognormal": ({"p5", "p95"} if "p5" in d else {"median", "sigma"}, set())}
    if form not in forms:
        raise ValueError(f"unknown dist {form!r}; use one of {sorted(forms)}")
    required, optional = forms[form]
    have = set(d) - {"dist"}
    if required - have or have - required - optional:
        raise ValueError(f"dist {form} takes {sorted(required)} (optional {sorted(optional)}), got {sorted(have)}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for k, v in d.items() if k not in _LISTS):
        raise ValueError(f"dist {form}: parameters must be numbers, got {d}")
    order = [k for k in ("low", "mode", "high", "p5", "p95") if k in d]
    vals = [d[k] for k in order]
    if any(a > b for a, b in zip(vals, vals[1:])) or (form in ("uniform", "loguniform") and vals[0] == vals[-1]):
        raise ValueError(f"dist {form}: need {' <= '.join(order)} (low < high for {form}), got {vals}")
    if d.get("sd", 1) <= 0 or d.get("sigma", 1) <= 0 or (form == "loguniform" and d["low"] <= 0):
        raise ValueError(f"dist {form}: sd, sigma and a loguniform low must be > 0, got {d}")


def scale_dist(value: Any, k: float) -> Any:
    """Multiply a number or a location-scale DIST by ``k`` > 0 (every parameter in the figure's unit scales)."""
    if not isinstance(value, dict):
        return value * k
    if value.get("dist") == "beta":
        raise ValueError("a beta DIST lives on [0, 1] and cannot be scaled; give the figure in another form")
    scaled = {key: v * k for key, v in value.items() if key in _SCALED_KEYS}
    return {**value, **scaled, **({"values": [v * k for v in value["values"]]} if "values" in value else {})}

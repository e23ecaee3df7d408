"""Overrides by dotted path on a study's plain data: which sections may be set, setting a path,
and an override set applied to a tree. No validation here: `schema.study_from_dict` validates
the tree (it checks each stress this way), and `variants.apply` does both.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

from mcrisk.errors import Problem

__all__ = ["VARIABLE_SECTIONS", "OverrideError", "not_settable", "set_path", "override_tree", "relabel"]

# Sections an override may change; the rest (simulation, name, stress) defines the run itself.
VARIABLE_SECTIONS = ("market", "facility", "finance", "systems", "sizing", "correlations")


class OverrideError(ValueError):
    """A dotted path runs into a value where it needs a section."""


# The simulation settings a run takes as options of its own.
_SIMULATION_OPTIONS = {"scenarios": "-n/--scenarios", "seed": "--seed", "precision": "--precision"}


def not_settable(path: str) -> str:
    """Why `path` (outside VARIABLE_SECTIONS) cannot be set, and what to do instead."""
    head, _, rest = path.partition(".")
    can = f"only {', '.join(VARIABLE_SECTIONS)} can be set"
    key = rest.split(".")[0]
    if head == "simulation" and key in _SIMULATION_OPTIONS:
        return f"{can}; use {_SIMULATION_OPTIONS[key]} for simulation.{key}"
    if head in ("simulation", "name", "description", "stress"):
        return f"{can}; {head if head != 'simulation' else 'simulation.' + key} is part of the study: change it in the study file"
    close = difflib.get_close_matches(head, VARIABLE_SECTIONS, n=1)
    return f"{can}" + (f"; did you mean {close[0]!r}?" if close else "")


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for `dotted` = 'a.b.c', making sections as needed; None removes it."""
    *parents, last = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise OverrideError(f"{dotted}: {p} is a value, not a section")
    if value is None:
        node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)


def _is_fixed(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
        isinstance(value, dict) and value.get("dist") == "fixed"
    )


def _where(label: str, path: str) -> str:
    sep = " " if label.startswith("--") else "."
    return f"{label}{sep}{path}" if path else label


def relabel(problems: list[Problem], label: str) -> list[Problem]:
    """Problems of a tree with overrides, each named after the override set (`label`):
    ``--set market.token_price.annual_decline``, ``stress.crash.market.token_price``."""
    return [Problem(_where(label, p.path), p.message) for p in problems]


def override_tree(raw: Mapping, overrides: Mapping[str, Any], label: str) -> tuple[dict, list[Problem]]:
    """The plain study `raw` with `overrides` (dotted path -> value) set, and the problems of
    paths that cannot be set (named after `label`); the tree is only meaningful without them.

    Its `stress` section is dropped. An override that fixes a correlated input drops that input's
    pairs from ``correlations``."""
    tree = copy.deepcopy(dict(raw))
    tree.pop("stress", None)
    problems = []
    for path, value in overrides.items():
        if path.split(".")[0] not in VARIABLE_SECTIONS:
            problems.append(Problem(_where(label, path), not_settable(path)))
            continue
        parts = path.split(".")
        systems = tree.get("systems")
        if parts[0] == "systems" and len(parts) > 2 and isinstance(systems, dict) and parts[1] not in systems:
            close = difflib.get_close_matches(parts[1], list(systems), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                Problem(
                    _where(label, path),
                    f"unknown system {parts[1]!r}: {hint}the study's systems are {', '.join(systems)}",
                )
            )
            continue
        try:
            set_path(tree, path, value)
        except OverrideError as exc:
            problems.append(Problem(_where(label, path), str(exc)))
    if problems:
        return tree, problems
    fixed = {p for p, v in overrides.items() if _is_fixed(v)}
    if fixed and isinstance(tree.get("correlations"), list):
        # An input fixed by an override has nothing left to correlate: its pairs go with it.
        tree["correlations"] = [c for c in tree["correlations"] if not (isinstance(c, list) and set(c[:2]) & fixed)]
    return tree, []

"""Variants of a study by dotted path: ``--set path=value``, the ``stress:`` section, sweep grids.

A value is written in YAML, so ``--set market.token_price.annual_decline=0.9`` and
``--set "systems.gb200.capex_usd={dist: uniform, low: 3e6, high: 4e6}"`` both work. A variant
is validated like any study and its problems name the override that caused them.

Every variant of a run uses the same seed and scenario indices as the study it varies, and
its sampler keeps the base study's dimensions (``engine.make_plan(dims=...)``), so an input
that an override leaves alone has the same value in the same scenario: the comparison is
paired (common random numbers).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcrisk.errors import Problem, StudyError, _shown
from mcrisk.study import yaml12
from mcrisk.study.overrides import VARIABLE_SECTIONS, not_settable, override_tree, relabel
from mcrisk.study.schema import Study, parse_yaml, study_from_dict


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and braces: '1,{a: 1, b: 2},[3, 4]' -> 3 parts."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_assignment(text: str, *, many: bool = False, option: str = "--set") -> tuple[str, list[Any]]:
    """'path=value' (or 'path=v1,v2,...' with `many`) -> (path, [values]); StudyError naming `option`."""
    path, eq, rhs = text.partition("=")
    path = path.strip()
    if not eq or not path or not rhs.strip():
        raise StudyError([Problem(option, f"expected PATH=VALUE, got {text!r}")], "options")
    if path.split(".")[0] not in VARIABLE_SECTIONS:
        raise StudyError([Problem(option, f"{path!r}: {not_settable(path)}")], "options")
    pieces = _split_top(rhs) if many else [rhs.strip()]
    values = []
    for piece in pieces:
        try:
            values.append(parse_yaml(piece, option))
        except StudyError as exc:
            raise StudyError(
                [Problem(option, f"{path}: cannot read the value {_shown(piece)}: {exc.problems[0].message}")],
                "options",
            ) from None
    if any(v is None for v in values):
        raise StudyError([Problem(option, f"{path}: empty value in {text!r}")], "options")
    return path, values


def raw_study(source: str | Any) -> dict:
    """The plain data of a study: the file's own mapping (so presets and sizing still apply to
    overrides), or a loaded Study's resolved form. Callers validate `source` first (load_study),
    so that the file's own problems are reported against the file."""
    if isinstance(source, Study):
        return source.resolved()
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    return parse_yaml(Path(source).read_text(encoding="utf-8"), str(source))


def apply(raw: Mapping, overrides: Mapping[str, Any], *, label: str = "--set") -> Study:
    """The study `raw` with `overrides` (dotted path -> value) applied and validated.

    Problems name the override: ``--set market.token_price.annual_decline: must be < 1``.
    An override that fixes a correlated input drops that input's pairs from ``correlations``.
    """
    tree, problems = override_tree(raw, overrides, label)
    if problems:
        raise StudyError(problems, "options")
    try:
        return study_from_dict(tree, label)
    except StudyError as exc:
        raise StudyError(relabel(exc.problems, label), "options") from None


def check_unique(paths: Sequence[str], hint: str = "") -> None:
    """StudyError (option --set) if a path is given more than once."""
    dup = sorted({p for p in paths if list(paths).count(p) > 1})
    if dup:
        raise StudyError([Problem("--set", f"{dup[0]!r} is set twice{hint}")], "options")


def grid(assignments: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the assigned values, the first path varying slowest."""
    paths = [p for p, _ in assignments]
    check_unique(paths, "; give its values once, comma-separated")
    return [dict(zip(paths, combo)) for combo in itertools.product(*(v for _, v in assignments))]


def describe(overrides: Mapping[str, Any]) -> str:
    """'path=value; path=value', values in flow YAML."""

    def flow(v):
        return yaml12.dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()

    return "; ".join(f"{p}={flow(v)}" for p, v in overrides.items())
